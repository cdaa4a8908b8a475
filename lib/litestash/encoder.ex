defprotocol LiteStash.Encoder do
  @moduledoc """
  Turns a struct into a value LiteStash can store.

  LiteStash refuses a struct with `reason: :unsupported_value` unless its
  module implements this protocol: a struct is not a map to the data
  contract (other languages read the files too), so what it is stored as is
  the struct's own decision. `encode/1` returns any storable value (see
  "Value types" in `LiteStash`); structs inside that value are encoded in
  turn. What reads back is that value, not the struct.

  Implemented for `Date`, `Time`, `NaiveDateTime` and `DateTime` (ISO 8601
  strings, as `Date.to_iso8601/1` and its kin write them) and `MapSet` (a
  list of its members).

  ## Deriving

  A struct of your own can derive an implementation that stores it as a
  map of its fields (atom keys read back as strings), all of them or some:

      defmodule User do
        @derive {LiteStash.Encoder, only: [:id, :name]}
        defstruct [:id, :name, :password_hash]
      end

  `@derive LiteStash.Encoder` keeps every field; `except: [...]` leaves
  the fields named out. Or implement it by hand:

      defimpl LiteStash.Encoder, for: URI do
        def encode(uri), do: URI.to_string(uri)
      end

  Encoding runs only for values that hold a struct: the NIF finds the
  struct while it converts the value and hands it back to be encoded, so a
  value without structs costs no extra walk.
  """

  @doc "A storable value for `struct`."
  @spec encode(struct()) :: LiteStash.value()
  def encode(struct)
end

defimpl LiteStash.Encoder, for: Any do
  defmacro __deriving__(module, struct, opts) do
    fields = LiteStash.Encoder.Fields.select(module, struct, opts)

    quote do
      defimpl LiteStash.Encoder, for: unquote(module) do
        def encode(struct), do: Map.take(struct, unquote(fields))
      end
    end
  end

  def encode(%module{}) do
    raise Protocol.UndefinedError,
      protocol: LiteStash.Encoder,
      value: module,
      description: "derive or implement LiteStash.Encoder for #{inspect(module)}"
  end
end

defimpl LiteStash.Encoder, for: Date do
  def encode(date), do: Date.to_iso8601(date)
end

defimpl LiteStash.Encoder, for: Time do
  def encode(time), do: Time.to_iso8601(time)
end

defimpl LiteStash.Encoder, for: NaiveDateTime do
  def encode(datetime), do: NaiveDateTime.to_iso8601(datetime)
end

defimpl LiteStash.Encoder, for: DateTime do
  def encode(datetime), do: DateTime.to_iso8601(datetime)
end

defimpl LiteStash.Encoder, for: MapSet do
  def encode(set), do: MapSet.to_list(set)
end

defmodule LiteStash.Encoder.Fields do
  @moduledoc false
  # The fields a derived implementation keeps, checked when it is derived.

  @spec select(module(), struct(), keyword()) :: [atom()]
  def select(module, struct, opts) do
    fields = struct |> Map.keys() |> List.delete(:__struct__)

    case Keyword.validate(opts, [:only, :except]) do
      {:ok, [only: only]} -> check!(module, fields, only, :only) && only
      {:ok, [except: except]} -> check!(module, fields, except, :except) && fields -- except
      {:ok, []} -> fields
      _ -> raise ArgumentError, bad_options(module, opts)
    end
  end

  defp check!(module, fields, named, option) do
    unless is_list(named) and named -- fields == [] do
      raise ArgumentError,
            "@derive {LiteStash.Encoder, #{option}: #{inspect(named)}} on #{inspect(module)}: " <>
              "expected a list of its fields #{inspect(fields)}"
    end

    true
  end

  defp bad_options(module, opts) do
    "@derive {LiteStash.Encoder, ...} on #{inspect(module)} takes only: [fields] " <>
      "or except: [fields], got: #{inspect(opts)}"
  end
end

defmodule LiteStash.Encoder.Deep do
  @moduledoc false
  # Replaces every struct in a value by its LiteStash.Encoder encoding, on
  # the path where the NIF found a struct (never before the first attempt).
  # Tuples are walked too, for the argument lists of mset and
  # compare_and_set; the NIF still refuses tuples inside values.

  alias LiteStash.Error

  @spec encode(term()) :: {:ok, term()} | {:error, Error.t()}
  def encode(term) do
    {:ok, walk(term)}
  catch
    {:unsupported_struct, message} ->
      {:error, %Error{reason: :unsupported_value, message: message}}
  end

  defp walk(%module{} = struct) do
    case LiteStash.Encoder.impl_for(struct) do
      nil -> throw({:unsupported_struct, no_impl(module)})
      LiteStash.Encoder.Any -> throw({:unsupported_struct, no_impl(module)})
      impl -> struct |> impl.encode() |> walk_encoded(module)
    end
  end

  defp walk(map) when is_map(map), do: Map.new(map, fn {k, v} -> {walk(k), walk(v)} end)
  defp walk(list) when is_list(list), do: walk_list(list)

  defp walk(tuple) when is_tuple(tuple),
    do: tuple |> Tuple.to_list() |> walk_list() |> List.to_tuple()

  defp walk(other), do: other

  # Improper lists stay improper, for the NIF to refuse.
  defp walk_list([head | tail]), do: [walk(head) | walk_list(tail)]
  defp walk_list([]), do: []
  defp walk_list(tail), do: walk(tail)

  defp walk_encoded(%same{}, same) do
    throw(
      {:unsupported_struct,
       "LiteStash.Encoder for #{inspect(same)} returned a %#{inspect(same)}{} struct"}
    )
  end

  defp walk_encoded(encoded, _module), do: walk(encoded)

  defp no_impl(module) do
    "cannot store a %#{inspect(module)}{} struct: implement or derive LiteStash.Encoder " <>
      "for #{inspect(module)} to store it (see LiteStash.Encoder)"
  end
end
