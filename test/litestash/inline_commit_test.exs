defmodule LiteStash.InlineCommitTest do
  # A single-key write whose shard writer is idle commits on the caller's
  # dirty IO scheduler and its answer comes back from the NIF directly;
  # otherwise it is queued and the answer comes by message.
  # Not async: the inline count is shared by every store of the VM.
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers
  alias LiteStash.{Error, Native}

  @moduletag :tmp_dir

  test "an idle shard's writes commit on the dirty scheduler and answer directly",
       %{tmp_dir: dir} do
    s = start_store!(dir, inline_commits: 16, sweep_interval: 3_600_000)
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
    s = start_store!(dir, inline_commits: 16, sweep_interval: 3_600_000)
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

  test "a value too large for a normal scheduler is converted on a dirty one, then queued",
       %{tmp_dir: dir} do
    s = start_store!(dir, inline_commits: 0)
    {store, _name, _telemetry} = Native.lookup(s)
    big = Enum.to_list(1..200_000)

    ref = make_ref()
    assert Native.set(store, ref, "big", big, {:set, nil}) == :reschedule
    assert Native.set_dirty(store, ref, "big", big, {:set, nil}) == :queued
    assert_receive {^ref, :ok}, 10_000

    # The same through LiteStash.set: :reschedule, then :queued, then the
    # writer thread's message.
    assert LiteStash.set(s, "big2", big) == :ok
    assert LiteStash.get(s, "big2") == {:ok, big}
    refute_received {_, _}
  end
end
