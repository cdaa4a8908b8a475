defmodule LiteStash.Test.TaggedJSON do
  @moduledoc false
  # The exchange format of the interop oracle test/interop/contract.py
  # ("Tagged JSON" in test/interop/README.md), for values as LiteStash reads
  # them back:
  #
  #   nil, true, false, integers    null, true, false, 5
  #   floats                        1.5, 1.0e100 (always with "." or "e")
  #   a binary that is UTF-8        "text" (str)
  #   any other binary              {"bin": "<base64>"} (bin)
  #   lists                         [...]
  #   maps                          {"map": [[key, value], ...]}
  #   :nan, :infinity, :neg_infinity  {"float": "nan" | "inf" | "-inf"}
  #
  # Decoding gives binaries for str and bin alike, as LiteStash does. Other
  # atoms are refused: LiteStash stores them as str, so expected data states
  # the string it should find.

  alias LiteStash.Test.JSON

  @specials %{nan: "nan", infinity: "inf", neg_infinity: "-inf"}

  @doc "Renders `{key => value}` (a map or a list of pairs) as a tagged JSON object."
  @spec encode!(map() | [{String.t(), term()}]) :: binary()
  def encode!(pairs) do
    body =
      Enum.map_intersperse(pairs, ",\n", fn {key, value} -> [string(key), ": ", render(value)] end)

    IO.iodata_to_binary(["{\n", body, "\n}\n"])
  end

  @doc "Renders keys as a JSON array of strings (the KEYS_JSON of `read`)."
  @spec encode_keys!([String.t()]) :: binary()
  def encode_keys!(keys) do
    IO.iodata_to_binary(["[\n", Enum.map_intersperse(keys, ",\n", &string/1), "\n]\n"])
  end

  @doc "Parses a tagged JSON object into `%{key => value}`."
  @spec decode!(binary()) :: %{String.t() => term()}
  def decode!(text) do
    text |> JSON.decode!() |> Map.new(fn {key, node} -> {key, value(node)} end)
  end

  ## Encoding

  defp render(nil), do: "null"
  defp render(true), do: "true"
  defp render(false), do: "false"

  defp render(atom) when is_map_key(@specials, atom),
    do: [~s({"float": "), @specials[atom], ~s("})]

  defp render(int) when is_integer(int), do: Integer.to_string(int)
  # Float.to_string gives the shortest text that reads back to the same
  # float, always with a "." (1.0e100), which the oracle needs to tell 1.0 from 1.
  defp render(float) when is_float(float), do: Float.to_string(float)

  defp render(bin) when is_binary(bin) do
    if String.valid?(bin), do: string(bin), else: [~s({"bin": "), Base.encode64(bin), ~s("})]
  end

  defp render(list) when is_list(list),
    do: ["[", Enum.map_intersperse(list, ", ", &render/1), "]"]

  defp render(map) when is_map(map) do
    pairs =
      Enum.map_intersperse(map, ", ", fn {k, v} -> ["[", render(k), ", ", render(v), "]"] end)

    [~s({"map": [), pairs, "]}"]
  end

  defp render(other) do
    raise ArgumentError,
          "no tagged JSON for #{inspect(other, limit: 5)}; " <>
            "write atoms as the strings LiteStash stores them as"
  end

  defp string(text) when is_binary(text) do
    unless String.valid?(text), do: raise(ArgumentError, "not UTF-8: #{inspect(text, limit: 5)}")
    [?", escape(text), ?"]
  end

  defp escape(text), do: for(<<byte <- text>>, into: "", do: escape_byte(byte))

  defp escape_byte(?"), do: "\\\""
  defp escape_byte(?\\), do: "\\\\"

  defp escape_byte(byte) when byte < 0x20,
    do: "\\u" <> String.pad_leading(Integer.to_string(byte, 16), 4, "0")

  defp escape_byte(byte), do: <<byte>>

  ## Decoding

  defp value(node) when is_list(node), do: Enum.map(node, &value/1)
  defp value(node) when is_map(node) and map_size(node) == 1, do: node |> Enum.at(0) |> tagged()

  defp value(node) when is_map(node),
    do: raise(ArgumentError, "not tagged JSON: #{inspect(node)}")

  defp value(scalar), do: scalar

  defp tagged({"bin", base64}) when is_binary(base64), do: Base.decode64!(base64)
  defp tagged({"float", "nan"}), do: :nan
  defp tagged({"float", "inf"}), do: :infinity
  defp tagged({"float", "-inf"}), do: :neg_infinity

  defp tagged({"map", pairs}) when is_list(pairs) do
    map = Map.new(pairs, fn [key, val] -> {value(key), value(val)} end)

    if map_size(map) != length(pairs) do
      raise ArgumentError, "tagged JSON map with duplicate keys: #{inspect(pairs, limit: 5)}"
    end

    map
  end

  defp tagged(other), do: raise(ArgumentError, "not tagged JSON: #{inspect(other)}")
end
