defmodule LiteStash.Test.RandomTerm do
  @moduledoc false
  # Random terms of every shape, drawn from the calling process's :rand
  # state (seed it first), each with what LiteStash must answer for it:
  # `{:ok, term it reads back as}` or `{:error, reason}`. A term breaks the
  # contract in at most one way, so the reason does not depend on the order
  # in which the NIF walks it.

  @max_depth 512

  @doc "A random term and its expected outcome."
  @spec generate() :: {term(), {:ok, term()} | {:error, atom()}}
  def generate do
    case :rand.uniform(20) do
      n when n <= 14 ->
        valid = value(3)
        {valid, {:ok, normalize(valid)}}

      n when n <= 18 ->
        {inject(value(3), refused()), {:error, :unsupported_value}}

      _ ->
        levels = @max_depth - 3 + :rand.uniform(6)
        inner = scalar()
        term = nest(inner, levels)

        if levels <= @max_depth,
          do: {term, {:ok, normalize(term)}},
          else: {term, {:error, :too_deep}}
    end
  end

  @doc "What a stored term reads back as: atoms become strings, in map keys too."
  @spec normalize(term()) :: term()
  def normalize(atom) when is_atom(atom) and atom not in [nil, true, false],
    do: Atom.to_string(atom)

  def normalize(list) when is_list(list), do: Enum.map(list, &normalize/1)

  def normalize(map) when is_map(map),
    do: Map.new(map, fn {k, v} -> {normalize(k), normalize(v)} end)

  def normalize(other), do: other

  # `levels` lists or maps around `inner`, `inner` itself at depth `levels`.
  defp nest(inner, levels) do
    Enum.reduce(1..levels, inner, fn _, acc ->
      if :rand.uniform(2) == 1, do: [acc], else: %{"k" => acc}
    end)
  end

  defp value(0), do: scalar()

  defp value(depth) do
    case :rand.uniform(10) do
      n when n <= 5 -> scalar()
      n when n <= 7 -> for _ <- 1..:rand.uniform(6)//1, do: value(depth - 1)
      8 -> []
      9 -> map(depth)
      10 -> %{}
    end
  end

  # A map whose keys never collide once atoms become strings.
  defp map(depth) do
    for _ <- 1..:rand.uniform(6), reduce: %{} do
      acc ->
        key = scalar()

        if Enum.any?(Map.keys(acc), &(normalize(&1) === normalize(key))),
          do: acc,
          else: Map.put(acc, key, value(depth - 1))
    end
  end

  defp scalar do
    case :rand.uniform(13) do
      1 ->
        Enum.random([nil, true, false])

      2 ->
        :rand.uniform(1000) - 500

      3 ->
        Enum.random(int_edges())

      4 ->
        :rand.uniform(18_446_744_073_709_551_616) - 9_223_372_036_854_775_809

      5 ->
        :rand.uniform() * :math.pow(10, :rand.uniform(600) - 300) * Enum.random([1, -1])

      6 ->
        Enum.random([0.0, -0.0, 1.0, 1.5, 1.7976931348623157e308, 5.0e-324, -2.5e-308])

      7 ->
        text()

      8 ->
        bytes()

      9 ->
        Enum.random([
          :ok,
          :name,
          :héllo,
          :日本語,
          :"✓ done",
          :"",
          String.to_atom(String.duplicate("a", 255))
        ])

      10 ->
        Enum.random([
          "",
          "a",
          String.duplicate("x", 31),
          String.duplicate("y", 32),
          String.duplicate("z", 256)
        ])

      11 ->
        :binary.copy(<<:rand.uniform(255)>>, Enum.random([255, 256, 65_535, 65_536, 70_000]))

      12 ->
        binary_part("a sub-binary of a larger binary", :rand.uniform(5), 10)

      13 ->
        Enum.random([18_446_744_073_709_551_615, -9_223_372_036_854_775_808])
    end
  end

  defp int_edges do
    [0, 127, 128, 255, 256, 65_535, 65_536, 4_294_967_295, 4_294_967_296, -32, -33, -128, -129] ++
      [-32_768, -32_769, -2_147_483_648, -2_147_483_649, 9_223_372_036_854_775_807]
  end

  defp text do
    chars = [?a, ?Z, ?0, ?\s, ?\n, 0, ?é, ?€, ?日, 0x1F600, 0x10FFFF, ?"]
    for _ <- 1..:rand.uniform(40)//1, into: "", do: <<Enum.random(chars)::utf8>>
  end

  # Bytes that are not UTF-8 (they read back as the same binary).
  defp bytes do
    body = for _ <- 1..:rand.uniform(40)//1, into: <<>>, do: <<:rand.uniform(256) - 1>>
    <<body::binary, 0xFF>>
  end

  # A term the contract refuses, of any kind.
  defp refused do
    case :rand.uniform(12) do
      1 -> {1, "tuple"}
      2 -> self()
      3 -> make_ref()
      4 -> fn -> :ok end
      5 -> Enum.random(Port.list())
      6 -> [1 | 2]
      7 -> 18_446_744_073_709_551_616
      8 -> -9_223_372_036_854_775_809
      9 -> <<1::3>>
      10 -> %{[1] => "list key"}
      11 -> %{%{} => "map key"}
      12 -> %{:clash => 1, "clash" => 2}
    end
  end

  # `bad` put somewhere inside `term`.
  defp inject(term, bad) when is_list(term) and term != [] do
    i = :rand.uniform(length(term)) - 1

    if :rand.uniform(2) == 1,
      do: List.update_at(term, i, &inject(&1, bad)),
      else: List.insert_at(term, i, bad)
  end

  defp inject(term, bad) when is_map(term) and map_size(term) > 0 do
    key = Enum.random(Map.keys(term))

    if :rand.uniform(2) == 1,
      do: Map.update!(term, key, &inject(&1, bad)),
      else: Map.put(term, key, bad)
  end

  defp inject(_term, bad) do
    case :rand.uniform(3) do
      1 -> bad
      2 -> [bad]
      3 -> %{"v" => [1, bad]}
    end
  end
end
