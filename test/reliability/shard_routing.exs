defmodule LiteStash.Test.ShardRouting do
  @moduledoc false
  # Which shard file a key lands in (contract sections 2 and 3), computed
  # independently of the NIF with :crypto's BLAKE2b-512. Loaded with
  # Code.require_file by the tests that need it rather than compiled with
  # test/support, because LiteStash itself does not depend on :crypto.

  @doc "The shard name of `key`."
  @spec shard_of(String.t()) :: String.t()
  def shard_of(key) do
    <<c, _::binary>> = :crypto.hash(:blake2b, key) |> Base.url_encode64()

    cond do
      c in ?0..?3 -> "tables_03"
      c in ?4..?7 -> "tables_47"
      c in [?8, ?9, ?-, ?_] -> "tables_89hu"
      true -> pair_shard(String.downcase(<<c>>))
    end
  end

  defp pair_shard(<<l>>) do
    first = ?a + div(l - ?a, 2) * 2
    "tables_" <> <<first, first + 1>>
  end

  @doc "`n` keys (with `prefix`) that land in `shard`."
  @spec keys_on(String.t(), pos_integer(), String.t()) :: [String.t()]
  def keys_on(shard, n, prefix \\ "key") do
    Stream.iterate(0, &(&1 + 1))
    |> Stream.map(&"#{prefix}:#{&1}")
    |> Stream.filter(&(shard_of(&1) == shard))
    |> Enum.take(n)
  end
end
