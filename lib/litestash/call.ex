defmodule LiteStash.Call do
  @moduledoc false
  # The protocol between LiteStash's functions and the NIF: which term names
  # the store, the telemetry span, and how a write's answer comes back.
  #
  # Every operation is one NIF call. A read answers directly. A write
  # answers directly when it committed inline (or was refused), or returns
  # `:queued`: its shard's writer then sends `{ref, answer}` after the
  # commit, and the caller waits for it in a receive that skips the rest of
  # its mailbox (the reference is made just before the call).

  @doc "Runs the read `fun` with the NIF's term for `server`."
  @spec read(LiteStash.server(), atom(), (atom() | pid() -> result)) :: result
        when result: term()
  def read(server, command, fun) do
    with {:ok, target} <- target(server) do
      span(server, command, fn -> fun.(target) end)
    end
  end

  @doc "Runs the write `fun` with the NIF's term for `server` and a reply reference."
  @spec write(LiteStash.server(), atom(), (atom() | pid(), reference() -> term())) :: term()
  def write(server, command, fun) do
    with {:ok, target} <- target(server) do
      span(server, command, fn -> attempt(fn ref -> fun.(target, ref) end) end)
    end
  end

  @doc """
  Runs the write `fun` with the NIF's term for `server`, a reply reference
  and `values`, the term of the values it stores. When the NIF finds a
  struct in them (`:encode_structs`), the structs are encoded through
  `LiteStash.Encoder` and the write is made once more.
  """
  @spec write(LiteStash.server(), atom(), term(), (atom() | pid(), reference(), term() -> term())) ::
          term()
  def write(server, command, values, fun) do
    with {:ok, target} <- target(server) do
      span(server, command, fn ->
        case attempt(fn ref -> fun.(target, ref, values) end) do
          :encode_structs -> encoded_attempt(target, values, fun)
          answer -> answer
        end
      end)
    end
  end

  defp encoded_attempt(target, values, fun) do
    with {:ok, encoded} <- LiteStash.Encoder.Deep.encode(values) do
      case attempt(fn ref -> fun.(target, ref, encoded) end) do
        :encode_structs ->
          {:error,
           %LiteStash.Error{reason: :internal, message: "a struct was left after encoding"}}

        answer ->
          answer
      end
    end
  end

  defp attempt(fun) do
    ref = make_ref()

    case fun.(ref) do
      :queued -> await(ref)
      answer -> answer
    end
  end

  defp await(ref) do
    receive do
      {^ref, answer} -> answer
    end
  end

  @doc """
  The term the NIF resolves: a name atom or a pid as given; a `:via` or
  `:global` name is looked up to its pid. A wrong kind of term raises.
  """
  @spec target(term()) :: {:ok, atom() | pid()} | {:error, LiteStash.Error.t()}
  def target(server) when is_atom(server) and server not in [nil, true, false], do: {:ok, server}
  def target(server) when is_pid(server), do: {:ok, server}
  def target({:global, _} = name), do: whereis(name)
  def target({:via, module, _} = name) when is_atom(module), do: whereis(name)

  def target(server) when is_binary(server) do
    raise ArgumentError,
          "a LiteStash server is a name (an atom, {:global, term} or {:via, module, term}) " <>
            "or a pid, got the string #{inspect(server)}: a string is a key, and the " <>
            "server comes before it (or is left out for the store named LiteStash)"
  end

  def target(server) do
    raise ArgumentError,
          "a LiteStash server is a name (an atom, {:global, term} or {:via, module, term}) " <>
            "or a pid, got: #{inspect(server)}"
  end

  defp whereis(name) do
    case GenServer.whereis(name) do
      pid when is_pid(pid) ->
        {:ok, pid}

      _ ->
        {:error,
         %LiteStash.Error{
           reason: :closed,
           message: "no LiteStash store #{inspect(name)} is running"
         }}
    end
  end

  defp span(server, command, fun) do
    if LiteStash.Telemetry.listening_now?() do
      LiteStash.Telemetry.span(server, command, fun)
    else
      fun.()
    end
  end
end
