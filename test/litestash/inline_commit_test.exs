defmodule LiteStash.InlineCommitTest do
  # A single-key write whose shard writer is idle commits on the caller's
  # dirty IO scheduler and its answer comes back from the NIF directly;
  # otherwise it is queued and the answer comes by message.
  # Not async: the inline count is shared by every store of the VM.
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers
  alias LiteStash.{Error, Native}

  @moduletag :tmp_dir

  test "an idle store's single-key writes commit inline and answer from the one call",
       %{tmp_dir: dir} do
    s = start_store!(dir, inline_commits: 16, sweep_interval: 3_600_000)

    ref = make_ref()
    # One NIF call each: it continues itself on a dirty IO scheduler, commits
    # there and returns the answer; nothing comes by message.
    assert Native.set(s, ref, "k", 1, nil) == :ok
    assert {:error, %Error{reason: :exists}} = Native.put_new(s, ref, "k", 2, nil)
    assert Native.compare_and_set(s, ref, "k", 1, 3, nil) == :ok
    assert Native.incr(s, ref, "n", 5) == {:ok, 5}
    assert Native.delete(s, ref, "n") == :ok
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

    for {call, answer} <- [
          {&Native.set(s, &1, "k", 1, nil), :ok},
          {&Native.set(s, &1, "k", 2, nil), :ok},
          {&Native.incr(s, &1, "n", 1), {:ok, 1}},
          {&Native.incr(s, &1, "n", 1), {:ok, 2}},
          {&Native.delete(s, &1, "n"), :ok}
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
    big = Enum.to_list(1..200_000)

    ref = make_ref()
    # Still one call: it continues on a dirty scheduler to convert the term.
    assert Native.set(s, ref, "big", big, nil) == :queued
    assert_receive {^ref, :ok}, 10_000

    assert LiteStash.set(s, "big2", big) == :ok
    assert LiteStash.get(s, "big2") == {:ok, big}
    refute_received {_, _}
  end

  test "a store can be called by its owner's pid", %{tmp_dir: dir} do
    s = start_store!(dir)
    pid = Process.whereis(s)
    assert LiteStash.set(pid, "k", 1) == :ok
    assert LiteStash.get(pid, "k") == {:ok, 1}
    assert {:ok, _store} = Native.lookup(pid)
  end
end
