defmodule LiteStash.Reliability.LimitsTest do
  # The value limit is per value, never per call: a call carries as many
  # values of up to 64 MiB as it likes (the writers bound their batches by
  # bytes themselves). Big: run apart from the async tests.
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers
  alias LiteStash.Error

  @moduletag :tmp_dir
  @mib 1_048_576

  test "mset of 65 values of 1 MiB each is stored", %{tmp_dir: dir} do
    s = start_store!(dir)
    pairs = for i <- 1..65, do: {"big:#{i}", :binary.copy(<<i>>, @mib)}
    assert LiteStash.mset(s, pairs) == :ok
    assert LiteStash.count(s) == {:ok, 65}

    for {key, value} <- pairs, do: assert(LiteStash.get(s, key) == {:ok, value}, key)
  end

  test "mset of 1,500 values of 50 KB each is stored", %{tmp_dir: dir} do
    s = start_store!(dir)
    pairs = Map.new(1..1_500, &{"k:#{&1}", :binary.copy(<<rem(&1, 251)>>, 50_000)})
    assert LiteStash.mset(s, pairs) == :ok
    assert LiteStash.mget(s, Map.keys(pairs)) == {:ok, pairs}
  end

  test "compare_and_set from one 40 MB value to another succeeds", %{tmp_dir: dir} do
    s = start_store!(dir)
    old = :binary.copy(<<1>>, 40_000_000)
    new = :binary.copy(<<2>>, 40_000_000)
    :ok = LiteStash.set(s, "big", old)
    assert LiteStash.compare_and_set(s, "big", old, new) == :ok
    assert {:ok, ^new} = LiteStash.get(s, "big")
    assert {:error, %Error{reason: :mismatch}} = LiteStash.compare_and_set(s, "big", old, "x")
  end

  test "one value over 64 MiB is still refused, alone or in an mset", %{tmp_dir: dir} do
    s = start_store!(dir)
    too_big = :binary.copy(<<0>>, 64 * @mib + 1)

    assert {:error, %Error{reason: :value_too_large}} =
             LiteStash.mset(s, [{"ok", 1}, {"too big", too_big}])

    assert {:error, %Error{reason: :not_found}} = LiteStash.get(s, "ok")
  end
end
