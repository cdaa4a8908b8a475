defmodule LiteStash.Reliability.CrashTest do
  # A separate BEAM writes through LiteStash and prints each key once its
  # `set` returned :ok; it is killed with SIGKILL at random moments. Set
  # LITESTASH_CRASH_SEED to replay the moments of a failed run.
  # Heavy on CPU (other BEAMs, 64 MiB values): run apart from the async
  # tests, some of which measure short TTLs.
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers
  alias LiteStash.Native
  alias LiteStash.Test.ChildBeam

  @moduletag :tmp_dir
  @moduletag :slow

  @rounds 6

  for sync <- [:normal, :full] do
    test "every write acknowledged before a SIGKILL reads back after reopening (synchronous: #{sync})",
         %{tmp_dir: dir} do
      seed = seed()
      :rand.seed(:exsss, seed)
      data = Path.join(dir, "data")

      found =
        Enum.reduce(0..(@rounds - 1), %{}, fn round, pinned ->
          context = "round #{round}, synchronous: #{unquote(sync)}, LITESTASH_CRASH_SEED=#{seed}"
          acked = crash_round(dir, data, unquote(sync), round)
          check_after_crash(data, round, acked, pinned, context)
        end)

      assert map_size(found) > 0, "no write was acknowledged (LITESTASH_CRASH_SEED=#{seed})"
    end
  end

  test "a clean stop commits every write still queued", %{tmp_dir: dir} do
    # No inline commits: every write goes through a writer thread's queue.
    s = start_store!(Path.join(dir, "data"), inline_commits: 0)
    {:ok, store} = Native.lookup(s)

    # Queued straight through the NIF, without waiting for any commit, then
    # stopped at once: most of them are still queued when the stop begins.
    refs =
      for i <- 1..5_000 do
        ref = make_ref()
        :queued = Native.set(store, ref, "q#{i}", %{"i" => i}, nil)
        ref
      end

    :ok = LiteStash.stop(s)
    for ref <- refs, do: assert_receive({^ref, :ok}, 10_000)

    s = start_store!(Path.join(dir, "data"))
    assert LiteStash.count(s) == {:ok, 5_000}
    expected = Map.new(1..5_000, &{"q#{&1}", %{"i" => &1}})
    assert LiteStash.mget(s, Map.keys(expected)) == {:ok, expected}
  end

  test "a backup killed at any moment is complete or not there: no dir opens with shards missing",
       %{tmp_dir: dir} do
    seed = seed()
    :rand.seed(:exsss, seed)
    data = Path.join(dir, "data")
    backups = Path.join(dir, "backups")
    s = start_store!(data)
    pad = :binary.copy(<<7>>, 20_000)
    expected = Map.new(1..600, &{"k#{&1}", %{"i" => &1, "pad" => pad}})
    :ok = LiteStash.mset(s, expected)
    :ok = LiteStash.stop(s)

    for round <- 1..4 do
      child = ChildBeam.start(["backup", data, backups], dir)
      ChildBeam.await_line(child, "backup 2")
      # Somewhere inside a backup of 16 shard files.
      Process.sleep(:rand.uniform(300))
      ChildBeam.kill(child)

      for copy <- File.ls!(backups) do
        path = Path.join(backups, copy)
        context = "round #{round}, #{copy}, LITESTASH_CRASH_SEED=#{seed}"

        case LiteStash.start_link(data_dir: path, name: :backup_copy) do
          {:ok, _} ->
            assert LiteStash.count(:backup_copy) == {:ok, 600}, context
            assert LiteStash.mget(:backup_copy, Map.keys(expected)) == {:ok, expected}, context
            :ok = LiteStash.stop(:backup_copy)

          {:error, error} ->
            assert error.reason == :incomplete_backup, "#{context}: #{inspect(error)}"
        end
      end

      File.rm_rf!(backups)
    end
  end

  defp seed do
    case System.get_env("LITESTASH_CRASH_SEED") do
      nil -> :erlang.unique_integer([:positive]) + System.os_time()
      seed -> String.to_integer(seed)
    end
  end

  # Even rounds: one writer; odd rounds: 32 writers, whose writes share
  # group commits. Round 0 is killed at a random moment of the first open
  # (the 16 files being created), the others at a random moment of writing.
  defp crash_round(dir, data, sync, round) do
    processes = if rem(round, 2) == 0, do: 1, else: 32
    child = ChildBeam.start(["crash", data, "#{sync}", "#{processes}", "#{round}"], dir)

    early =
      if round == 0 do
        lines = ChildBeam.await_line(child, "opening")
        Process.sleep(:rand.uniform(60) - 1)
        lines
      else
        lines = ChildBeam.await_line(child, "ready")
        Process.sleep(100 + :rand.uniform(900))
        lines
      end

    for "ack " <> rest <- early ++ ChildBeam.kill(child), reduce: %{} do
      acked ->
        [p, n] = rest |> String.split(" ") |> Enum.map(&String.to_integer/1)
        Map.update(acked, {round, p}, [n], &[n | &1])
    end
  end

  # The files as the kill left them pass `PRAGMA integrity_check` and the
  # contract checks (in round 0 some may not exist yet, or be empty); every
  # key of this round holds its last acknowledged value, or the value of the
  # one write per writer that was in flight at the kill; every key of an
  # earlier round still holds what was found then; and after the reopened
  # store is stopped, all 16 files pass again. Returns the keys found.
  defp check_after_crash(data, round, acked, pinned, context) do
    if round > 0, do: assert_sound(data, context)
    store = start_store!(data)

    {:ok, still} = LiteStash.mget(store, Map.keys(pinned))
    assert still == pinned, context

    found =
      for {{^round, p}, ns} <- acked, reduce: pinned do
        found ->
          in_flight = hd(ns) + 1

          {:ok, stored} =
            LiteStash.mget(store, for({_, key} <- ChildBeam.slots(round, p), do: key))

          for {slot, key} <- ChildBeam.slots(round, p) do
            last = Enum.find(ns, &(rem(&1, ChildBeam.slot_count()) == slot))
            may_be_in_flight = rem(in_flight, ChildBeam.slot_count()) == slot

            ok =
              case {Map.fetch(stored, key), last} do
                {:error, nil} ->
                  true

                {{:ok, v}, nil} ->
                  may_be_in_flight and v === ChildBeam.value(p, in_flight)

                {:error, _} ->
                  false

                {{:ok, v}, n} ->
                  v === ChildBeam.value(p, n) or
                    (may_be_in_flight and v === ChildBeam.value(p, in_flight))
              end

            assert ok,
                   "#{key}: stored n #{inspect(stored[key]["n"])}, " <>
                     "last acknowledged n #{inspect(last)} (#{context})"
          end

          Map.merge(found, stored)
      end

    :ok = LiteStash.stop(store)
    assert_sound(data, context)
    found
  end

  defp assert_sound(data, context) do
    assert {:ok, reports} = Native.inspect_dir(data, true, 100)
    assert length(reports) == 16

    for report <- reports do
      assert report.problems == [], "#{report.path}: #{inspect(report.problems)} (#{context})"
    end
  end
end
