defmodule LiteStash.Test.JSON do
  @moduledoc false
  # A small JSON reader for the contract's vectors.json (Elixir 1.14 has no
  # JSON module and the project takes no hex dependencies).

  @spec decode!(binary()) :: term()
  def decode!(text) do
    {value, rest} = value(skip(text))
    "" = skip(rest)
    value
  end

  defp skip(<<c, rest::binary>>) when c in ~c" \t\r\n", do: skip(rest)
  defp skip(text), do: text

  defp value("{" <> rest), do: object(skip(rest), %{})
  defp value("[" <> rest), do: array(skip(rest), [])
  defp value("\"" <> rest), do: string(rest, [])
  defp value("true" <> rest), do: {true, rest}
  defp value("false" <> rest), do: {false, rest}
  defp value("null" <> rest), do: {nil, rest}
  defp value(text), do: number(text)

  defp object("}" <> rest, acc), do: {acc, rest}

  defp object(text, acc) do
    {key, rest} = value(text)
    ":" <> rest = skip(rest)
    {val, rest} = value(skip(rest))
    acc = Map.put(acc, key, val)

    case skip(rest) do
      "," <> rest -> object(skip(rest), acc)
      "}" <> rest -> {acc, rest}
    end
  end

  defp array("]" <> rest, acc), do: {Enum.reverse(acc), rest}

  defp array(text, acc) do
    {val, rest} = value(text)

    case skip(rest) do
      "," <> rest -> array(skip(rest), [val | acc])
      "]" <> rest -> {Enum.reverse([val | acc]), rest}
    end
  end

  defp string("\"" <> rest, acc), do: {IO.iodata_to_binary(Enum.reverse(acc)), rest}

  defp string("\\u" <> <<hex::binary-size(4), rest::binary>>, acc) do
    code = String.to_integer(hex, 16)

    if code in 0xD800..0xDBFF do
      "\\u" <> <<low::binary-size(4), rest::binary>> = rest
      low = String.to_integer(low, 16)
      string(rest, [<<0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)::utf8>> | acc])
    else
      string(rest, [<<code::utf8>> | acc])
    end
  end

  defp string("\\" <> <<c, rest::binary>>, acc) do
    char = %{
      ?" => "\"",
      ?\\ => "\\",
      ?/ => "/",
      ?b => "\b",
      ?f => "\f",
      ?n => "\n",
      ?r => "\r",
      ?t => "\t"
    }

    string(rest, [Map.fetch!(char, c) | acc])
  end

  defp string(<<c, rest::binary>>, acc), do: string(rest, [c | acc])

  defp number(text) do
    {num, rest} = take_number(text, [])

    if String.contains?(num, [".", "e", "E"]) do
      # Float.parse, unlike String.to_float, takes "1e+100" as Python writes it.
      {float, ""} = Float.parse(num)
      {float, rest}
    else
      {String.to_integer(num), rest}
    end
  end

  defp take_number(<<c, rest::binary>>, acc) when c in ~c"0123456789+-.eE",
    do: take_number(rest, [c | acc])

  defp take_number(rest, acc), do: {acc |> Enum.reverse() |> to_string(), rest}
end
