defmodule LiteStash.ReplicaTest do
  # The replica primitives through the NIF; the Rust suite
  # (native/litestash_core/tests/replica.rs) covers the semantics in depth.
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.{Error, Replica}

  @moduletag :tmp_dir

  defp keys_on(shard, n) do
    Stream.iterate(0, &(&1 + 1))
    |> Stream.map(&"k#{&1}")
    |> Stream.filter(&(Replica.shard_of(&1) == {:ok, shard}))
    |> Enum.take(n)
  end

  test "an entry applies once, answers per op, and ordinary writes are refused", %{tmp_dir: dir} do
    s = start_store!(dir, replica: true)
    [key, counter] = keys_on(2, 2)

    assert {:ok, [:ok, {:ok, 5}, {:error, %Error{reason: :exists}}]} =
             Replica.apply_entry(s, 2, 1, 1_000, [
               {:set, key, %{"a" => 1}, nil},
               {:incr, counter, 5},
               {:put_new, key, 1, nil}
             ])

    assert Replica.apply_entry(s, 2, 1, 1_000, [{:delete, key}]) == {:ok, :skipped}
    assert Replica.applied(s, 2) == {:ok, 1}
    assert LiteStash.get(s, key) == {:ok, %{"a" => 1}}
    assert {:error, %Error{reason: :replicated}} = LiteStash.set(s, key, 2)
    assert {:error, %Error{reason: :invalid_key}} = Replica.shard_of("")
  end

  test "a snapshot of one replica installs on another", %{tmp_dir: dir} do
    a = start_store!(Path.join(dir, "a"), replica: true)
    b = start_store!(Path.join(dir, "b"), replica: true)
    [key] = keys_on(7, 1)
    {:ok, [:ok]} = Replica.apply_entry(a, 7, 3, 0, [{:set, key, "v", nil}])
    snap = Path.join(dir, "shard.db")
    assert Replica.snapshot(a, 7, snap) == :ok
    assert Replica.install(b, 7, snap) == :ok
    assert Replica.applied(b, 7) == {:ok, 3}
    assert LiteStash.get(b, key) == {:ok, "v"}
  end
end
