defmodule LiteStash.InlineCommitTest do
  # A single-key write whose shard writer is idle commits on the caller's
  # dirty IO scheduler and its answer comes back from the NIF directly;
  # otherwise it is queued and the answer comes by message.
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.{Error, Native}

  @moduletag :tmp_dir

  test "an idle shard's writes commit on the dirty scheduler and answer directly",
       %{tmp_dir: dir} do
    s = start_store!(dir)
    {store, _name, _telemetry} = Native.lookup(s)

    ref = make_ref()
    # The normal-scheduler call sees the idle writer and asks for the dirty one.
    assert Native.set(store, ref, "k", 1, {:set, nil}) == :reschedule
    assert Native.set_dirty(store, ref, "k", 1, {:set, nil}) == :ok
    assert {:error, %Error{reason: :exists}} = Native.set_dirty(store, ref, "k", 2, :put_new)
    assert Native.compare_and_set_dirty(store, ref, "k", 1, 3) == :ok
    assert Native.incr_dirty(store, ref, "n", 5) == {:ok, 5}
    assert Native.delete_dirty(store, ref, "n") == :ok
    refute_receive {^ref, _}, 200

    assert LiteStash.get(s, "k") == {:ok, 3}
    assert LiteStash.exists?(s, "n") == false

    # Committed like any other write: they are there after a restart.
    :ok = LiteStash.stop(s)
    s = start_store!(dir)
    assert LiteStash.get(s, "k") == {:ok, 3}
  end

  test "with inline_commits: 0 every write is queued and answered by message",
       %{tmp_dir: dir} do
    s = start_store!(dir, inline_commits: 0)
    {store, _name, _telemetry} = Native.lookup(s)

    for {call, answer} <- [
          {&Native.set(store, &1, "k", 1, {:set, nil}), :ok},
          {&Native.set_dirty(store, &1, "k", 2, {:set, nil}), :ok},
          {&Native.incr(store, &1, "n", 1), {:ok, 1}},
          {&Native.incr_dirty(store, &1, "n", 1), {:ok, 2}},
          {&Native.delete_dirty(store, &1, "n"), :ok}
        ] do
      ref = make_ref()
      assert call.(ref) == :queued
      assert_receive {^ref, ^answer}, 5_000
    end

    assert LiteStash.get(s, "k") == {:ok, 2}
  end

  test "one process's writes, inline or queued, read back in order under 63 other writers",
       %{tmp_dir: dir} do
    s = start_store!(dir)

    others =
      for p <- 1..63 do
        Task.async(fn -> for i <- 1..200, do: :ok = LiteStash.set(s, "o#{p}:#{i}", i) end)
      end

    for i <- 1..500 do
      :ok = LiteStash.set(s, "mine", i)
      assert LiteStash.get(s, "mine") == {:ok, i}
    end

    Enum.each(others, &Task.await(&1, 60_000))
    assert LiteStash.count(s) == {:ok, 63 * 200 + 1}
  end
end
