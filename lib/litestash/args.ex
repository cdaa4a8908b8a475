defmodule LiteStash.Args do
  @moduledoc false
  # Checks of the arguments of LiteStash's functions, raising ArgumentError
  # that says what the caller passed and what the function takes. Nothing
  # here looks inside a value: the NIF's walker does that.

  @max_ttl 9_223_372_036_854_775_807
  @max_chunk 100_000
  @min_int -9_223_372_036_854_775_808
  @max_int 9_223_372_036_854_775_807

  @doc "The key, which must be a binary."
  @spec key!(term()) :: binary()
  def key!(key) when is_binary(key), do: key

  def key!(key) do
    raise ArgumentError, "a LiteStash key must be a binary (a UTF-8 string), got: #{inspect(key)}"
  end

  @doc "The key of `fun`'s default-store form, whose first argument is the key."
  @spec key!(term(), String.t()) :: binary()
  def key!(key, _fun) when is_binary(key), do: key

  def key!(key, fun) do
    raise ArgumentError,
          "the first argument of #{fun} is the key, which must be a binary (a UTF-8 string), " <>
            "got: #{inspect(key)}"
  end

  @doc "`opts`, which must be a keyword list; `where` names the argument."
  @spec options!(term(), String.t()) :: keyword()
  def options!(opts, where) do
    if is_list(opts) and Keyword.keyword?(opts) do
      opts
    else
      raise ArgumentError, "#{where} is a keyword list of options, got: #{inspect(opts)}"
    end
  end

  @doc "The `:ttl` of `opts` (nil without one); no other option is known."
  @spec ttl_option!(keyword(), String.t()) :: pos_integer() | nil
  def ttl_option!(opts, fun) do
    Enum.reduce(opts, nil, fn
      {:ttl, ms}, _ ->
        ttl!(ms, "option :ttl")

      {key, value}, _ ->
        raise ArgumentError,
              "unknown option #{inspect(key)} (with value #{inspect(value)}) for #{fun}; known: :ttl"
    end)
  end

  @doc "A time to live in milliseconds: 1..2^63-1."
  @spec ttl!(term(), String.t()) :: pos_integer()
  def ttl!(ms, _what) when is_integer(ms) and ms > 0 and ms <= @max_ttl, do: ms

  def ttl!(ms, what) do
    raise ArgumentError,
          "invalid value for #{what}: expected an integer of milliseconds in " <>
            "1..#{@max_ttl} (2^63-1), got: #{inspect(ms)}"
  end

  @doc "The `:prefix` of `opts` (`\"\"` without one); `also_allowed` are other known options."
  @spec prefix_option!(keyword(), [atom()]) :: String.t()
  def prefix_option!(opts, also_allowed) do
    Enum.reduce(opts, "", fn
      {:prefix, prefix}, _ when is_binary(prefix) ->
        if String.valid?(prefix) do
          prefix
        else
          raise ArgumentError,
                "invalid value for option :prefix: expected a UTF-8 string (keys are UTF-8), " <>
                  "got: #{inspect(prefix)}"
        end

      {:prefix, prefix}, _ ->
        raise ArgumentError,
              "invalid value for option :prefix: expected a string, got: #{inspect(prefix)}"

      {key, value}, acc ->
        if key in also_allowed do
          acc
        else
          raise ArgumentError,
                "unknown option #{inspect(key)} (with value #{inspect(value)}); known: " <>
                  Enum.map_join([:prefix | also_allowed], ", ", &inspect/1)
        end
    end)
  end

  @doc "The `:chunk_size` of `opts`: 1..100_000, default 500."
  @spec chunk_size!(keyword()) :: pos_integer()
  def chunk_size!(opts) do
    case Keyword.get(opts, :chunk_size, 500) do
      n when is_integer(n) and n > 0 and n <= @max_chunk ->
        n

      n ->
        raise ArgumentError,
              "invalid value for option :chunk_size: expected an integer in 1..#{@max_chunk}, " <>
                "got: #{inspect(n)}"
    end
  end

  @doc "The amount `fun` adds: an integer in -2^63..2^63-1."
  @spec amount!(term(), String.t()) :: integer()
  def amount!(by, _fun) when is_integer(by) and by >= @min_int and by <= @max_int, do: by

  def amount!(by, fun) do
    raise ArgumentError,
          "#{fun}'s amount must be an integer in -2^63..2^63-1, got: #{inspect(by)}"
  end

  @doc "A path given to the store: a UTF-8 string."
  @spec path!(term(), String.t()) :: String.t()
  def path!(path, what) do
    if is_binary(path) and path != "" and String.valid?(path) do
      path
    else
      raise ArgumentError, "#{what} must be a non-empty UTF-8 path string, got: #{inspect(path)}"
    end
  end

  @doc "Refuses a string where the server or an options list goes."
  @spec not_a_key!(term(), String.t()) :: :ok
  def not_a_key!(first, fun) when is_binary(first) do
    raise ArgumentError,
          "the first argument of #{fun} is a server or a keyword list of options, " <>
            "got the string #{inspect(first)} (for a prefix, pass prefix: #{inspect(first)})"
  end

  def not_a_key!(_first, _fun), do: :ok

  @doc "The keys of `fun` (mget): a list of binaries."
  @spec keys!(term(), String.t()) :: [binary()]
  def keys!(keys, _fun) when is_list(keys) do
    Enum.map(keys, &key!/1)
  end

  def keys!(keys, fun) do
    raise ArgumentError, "#{fun}'s keys must be a list of binaries, got: #{inspect(keys)}"
  end

  @doc "The pairs of `fun` (mset): a map or a list of `{key, value}` tuples, keys binaries."
  @spec pairs!(term(), String.t()) :: [{binary(), term()}]
  def pairs!(pairs, fun) when is_map(pairs) or is_list(pairs) do
    Enum.map(pairs, fn
      {key, value} ->
        {key!(key), value}

      other ->
        raise ArgumentError,
              "#{fun} takes a map or a list of {key, value} tuples, got the element " <>
                inspect(other)
    end)
  end

  def pairs!(pairs, fun) do
    raise ArgumentError,
          "#{fun} takes a map or a list of {key, value} tuples, got: #{inspect(pairs)}"
  end

  @doc "A function of one argument given to `fun`."
  @spec fun!(term(), String.t()) :: (term() -> term())
  def fun!(f, _fun) when is_function(f, 1), do: f

  def fun!(f, fun) do
    raise ArgumentError, "#{fun}'s fun must be a function of one argument, got: #{inspect(f)}"
  end
end
