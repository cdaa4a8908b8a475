defmodule LiteStash.NowaitTest do
  # `nowait_reads:` through the public API: a `get` that misses the value
  # cache is answered on the calling scheduler when the file's pages are
  # in memory, with the same answers as a read on a dirty IO scheduler.
  # (The pages-evicted case is in native/litestash_core/tests/nowait.rs;
  # the scheduler probe over misses read in place is in cache_test.exs.)
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers

  @moduletag :tmp_dir

  defp tally(store) do
    {:ok, shards} = LiteStash.info(store)

    {Enum.sum(Enum.map(shards, & &1.nowait_reads)),
     Enum.sum(Enum.map(shards, & &1.nowait_deferred))}
  end

  defp read_all(store, n) do
    for i <- 1..n do
      assert LiteStash.get(store, "k:#{i}") == {:ok, %{"i" => i}}
    end

    assert {:error, %LiteStash.Error{reason: :not_found}} = LiteStash.get(store, "k:absent")
    big = :binary.copy("x", 10_000)
    :ok = LiteStash.set(store, "big", big)
    assert LiteStash.get(store, "big") == {:ok, big}
  end

  test "misses are read in place, with the answers a dirty read gives", %{tmp_dir: dir} do
    store = start_store!(dir, cache_size: 0)
    :ok = LiteStash.mset(store, for(i <- 1..1_000, do: {"k:#{i}", %{"i" => i}}))
    read_all(store, 1_000)
    {answered, deferred} = tally(store)
    # Just written, so in the OS page cache: nearly every read stays on
    # the caller's scheduler (the 10 KB value never does).
    assert answered >= 900, "#{answered} in place, #{deferred} deferred"
    assert deferred >= 1
  end

  test "exists? and ttl misses are read in place too, answering as a dirty read does",
       %{tmp_dir: dir} do
    in_place = start_store!(Path.join(dir, "in_place"), cache_size: 0)
    dirty = start_store!(Path.join(dir, "dirty"), cache_size: 0, nowait_reads: false)

    for store <- [in_place, dirty] do
      :ok = LiteStash.mset(store, for(i <- 1..200, do: {"k:#{i}", i}))
      :ok = LiteStash.set(store, "expiring", 1, ttl: 3_600_000)
      :ok = LiteStash.set(store, "gone", 1, ttl: 1)
      :ok = LiteStash.set(store, "big", :binary.copy("x", 10_000))
    end

    Process.sleep(5)
    keys = ["expiring", "gone", "big", "absent"] ++ for(i <- 1..200, do: "k:#{i}")

    answers = fn store ->
      for k <- keys do
        ttl =
          case LiteStash.ttl(store, k) do
            # The time left moves on between the two stores' reads.
            {:ok, ms} when is_integer(ms) -> {:ok, div(ms + 30_000, 60_000)}
            other -> other
          end

        {k, LiteStash.exists?(store, k), ttl}
      end
    end

    assert answers.(in_place) == answers.(dirty)
    assert {"expiring", true, {:ok, 60}} = List.keyfind(answers.(in_place), "expiring", 0)

    assert {"gone", false, {:error, %LiteStash.Error{reason: :not_found}}} =
             List.keyfind(answers.(in_place), "gone", 0)

    # 204 keys, exists? and ttl, three times over: all but the 10 KB value
    # (never read in place) on the caller's scheduler.
    {answered, deferred} = tally(in_place)
    assert answered >= 3 * 2 * 200, "#{answered} in place, #{deferred} deferred"
    assert deferred >= 3 * 2
    assert tally(dirty) == {0, 0}
  end

  test "nowait_reads: false sends every miss to a dirty IO scheduler", %{tmp_dir: dir} do
    store = start_store!(dir, cache_size: 0, nowait_reads: false)
    :ok = LiteStash.mset(store, for(i <- 1..300, do: {"k:#{i}", %{"i" => i}}))
    read_all(store, 300)
    assert tally(store) == {0, 0}
  end

  test "an in-memory store reads as before", %{tmp_dir: _} do
    store = start_store!(:memory, cache_size: 0)
    :ok = LiteStash.mset(store, for(i <- 1..100, do: {"k:#{i}", %{"i" => i}}))
    read_all(store, 100)
    assert tally(store) == {0, 0}
  end

  test "nowait_reads must be a boolean", %{tmp_dir: dir} do
    assert_raise ArgumentError, ~r/nowait_reads.*a boolean/, fn ->
      LiteStash.start_link(data_dir: dir, nowait_reads: :yes)
    end
  end
end
