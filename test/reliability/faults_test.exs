Code.require_file("shard_routing.exs", __DIR__)

defmodule LiteStash.Reliability.FaultsTest do
  # Heavy on CPU (other BEAMs, 64 MiB values): run apart from the async
  # tests, some of which measure short TTLs.
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers
  alias LiteStash.{Error, Native}
  alias LiteStash.Test.{ChildBeam, ShardRouting}

  @moduletag :tmp_dir

  # The NIF's handle of a running store, for calls that bypass the API.
  defp handle(name), do: elem(Native.lookup(name), 1)

  describe "a full disk" do
    test "fails the write with :disk_full, keeps earlier data, and recovers once space returns",
         %{tmp_dir: dir} do
      # 13 pages hold a new shard's 12 b-trees and its schema: 32 leave
      # about 76 KiB for values.
      s = start_store!(dir, max_page_count: 32)
      [full | others] = ShardRouting.keys_on("tables_ef", 200)
      value = fn i -> %{"i" => i, "blob" => :binary.copy(<<i>>, 3000)} end

      {stored, [{failed, i_failed} | _]} =
        others
        |> Enum.with_index()
        |> Enum.split_while(fn {key, i} -> LiteStash.set(s, key, value.(i)) == :ok end)

      assert {:error, %Error{reason: :disk_full, message: msg}} =
               LiteStash.set(s, failed, value.(i_failed))

      assert msg =~ "tables_ef.db"
      assert length(stored) > 5

      # Nothing committed earlier is lost, and the failed write left nothing.
      for {key, i} <- stored, do: assert(LiteStash.get(s, key) == {:ok, value.(i)})
      refute LiteStash.exists?(s, failed)

      # The other shards have room of their own and keep working.
      for shard <- ["tables_03", "tables_qr", "tables_yz"] do
        [key] = ShardRouting.keys_on(shard, 1, "elsewhere")
        assert LiteStash.set(s, key, value.(1)) == :ok
        assert LiteStash.get(s, key) == {:ok, value.(1)}
      end

      # Space returns when keys are deleted: the same store writes again.
      for {key, _} <- Enum.take(stored, 5), do: assert(LiteStash.delete(s, key) == :ok)
      assert LiteStash.set(s, failed, value.(i_failed)) == :ok
      assert LiteStash.set(s, full, value.(0)) == :ok
      assert LiteStash.get(s, failed) == {:ok, value.(i_failed)}
    end

    test "fails only the writes that do not fit when many share a commit", %{tmp_dir: dir} do
      s = start_store!(dir, max_page_count: 32)
      keys = ShardRouting.keys_on("tables_mn", 120)
      small = fn i -> %{"i" => i} end

      # Fill the shard, then race big writes that cannot fit against small
      # overwrites of existing keys that can.
      Enum.reduce_while(keys, 0, fn key, i ->
        case LiteStash.set(s, key, :binary.copy(<<1>>, 2000)) do
          :ok -> {:cont, i + 1}
          {:error, %Error{reason: :disk_full}} -> {:halt, i}
        end
      end)

      {:ok, existing} = LiteStash.keys(s)
      smalls = Enum.map(Enum.take(existing, 10), &{&1, small.(1)})

      bigs =
        Enum.map(ShardRouting.keys_on("tables_mn", 10, "big"), &{&1, :binary.copy(<<2>>, 50_000)})

      assert length(smalls) == 10

      results =
        (smalls ++ bigs)
        |> Task.async_stream(fn {k, v} -> {k, v, LiteStash.set(s, k, v)} end, max_concurrency: 20)
        |> Enum.map(fn {:ok, r} -> r end)

      # Each small overwrite commits; each big write fails, alone.
      for {k, v, result} <- results do
        case result do
          :ok -> assert LiteStash.get(s, k) == {:ok, v}
          {:error, %Error{reason: :disk_full}} -> assert is_binary(v) and byte_size(v) > 1000
        end
      end

      assert Enum.all?(Enum.take(results, 10), fn {_, _, r} -> r == :ok end)
      assert Enum.all?(Enum.drop(results, 10), fn {_, _, r} -> r != :ok end)
    end
  end

  describe "a stopped store" do
    test "answers every call with :closed, by name and by handle", %{tmp_dir: dir} do
      s = start_store!(dir)
      store = handle(s)
      :ok = LiteStash.set(s, "k", 1)
      :ok = LiteStash.stop(s)

      for call <- [
            fn -> LiteStash.set(s, "k", 2) end,
            fn -> LiteStash.get(s, "k") end,
            fn -> LiteStash.delete(s, "k") end,
            fn -> LiteStash.mset(s, %{"a" => 1}) end,
            fn -> LiteStash.mget(s, ["k"]) end,
            fn -> LiteStash.keys(s) end,
            fn -> LiteStash.count(s) end,
            fn -> LiteStash.clear(s) end,
            fn -> LiteStash.incr(s, "n", 1) end,
            fn -> LiteStash.expire(s, "k", 1_000) end,
            fn -> LiteStash.ttl(s, "k") end,
            fn -> LiteStash.compact(s) end,
            fn -> LiteStash.info(s) end,
            fn -> Native.get(store, "k") end,
            fn -> Native.get_many(store, ["k"]) end,
            fn -> Native.exists(store, "k") end,
            fn -> Native.keys(store, "") end,
            fn -> Native.count(store, "") end,
            fn -> Native.ttl(store, "k") end,
            fn -> Native.info(store) end,
            fn -> Native.snapshot_open(store, 0, "") end,
            fn -> Native.set(store, make_ref(), "k", 2, nil) end,
            fn -> Native.put_new(store, make_ref(), "k", 2, nil) end,
            fn -> Native.compare_and_set(store, make_ref(), "k", 1, 2, nil) end,
            fn -> Native.expire(store, make_ref(), "k", 5) end,
            fn -> Native.incr(store, make_ref(), "n", 1) end,
            fn -> Native.set_many(store, make_ref(), [{"k", 2}]) end,
            fn -> Native.delete(store, make_ref(), "k") end,
            fn -> Native.clear(store, make_ref()) end,
            fn -> Native.compact(store, make_ref()) end
          ] do
        assert {:error, %Error{reason: :closed}} = call.()
      end

      assert_raise Error, ~r/no LiteStash store/, fn -> LiteStash.exists?(s, "k") end
      assert_raise Error, fn -> LiteStash.get!(s, "k") end
      refute_received {_, _}
    end

    test "can be closed twice, and by several processes at once", %{tmp_dir: dir} do
      s = start_store!(dir)
      store = handle(s)
      :ok = LiteStash.set(s, "k", 1)

      closers = for _ <- 1..8, do: Task.async(fn -> Native.close(store) end)
      assert Enum.map(closers, &Task.await/1) == List.duplicate(:ok, 8)
      assert Native.close(store) == :ok
      assert LiteStash.stop(s) == :ok
      assert {:error, %Error{reason: :closed}} = Native.get(store, "k")

      s = start_store!(dir)
      assert LiteStash.get(s, "k") == {:ok, 1}
    end

    test "closing while other processes are mid-call loses no acknowledged write",
         %{tmp_dir: dir} do
      s = start_store!(dir)
      store = handle(s)
      parent = self()

      callers =
        for p <- 1..24 do
          Task.async(fn ->
            send(parent, {:started, p})
            call_until_closed(s, store, p, 0, [])
          end)
        end

      for p <- 1..24, do: assert_receive({:started, ^p}, 5_000)
      Process.sleep(100)

      closers =
        [fn -> LiteStash.stop(s) end, fn -> Native.close(store) end] ++
          for(_ <- 1..4, do: fn -> Native.close(store) end)

      closers |> Enum.map(&Task.async/1) |> Enum.each(&assert(Task.await(&1) == :ok))

      acknowledged = callers |> Enum.flat_map(&Task.await(&1, 30_000))
      assert length(acknowledged) > 24

      s = start_store!(dir)
      {:ok, found} = LiteStash.mget(s, Enum.map(acknowledged, &elem(&1, 0)))
      assert found == Map.new(acknowledged)
    end
  end

  describe "a handle held across a stop" do
    # Handles once lived in :persistent_term. Erasing the entry at stop, while
    # a process holding the handle was in a dirty NIF call, could leave that
    # process pointing at freed memory (OTP 25.2: badarg, about 1 round in
    # 50 here, or the VM aborting). The registry in the NIF gives each caller
    # a reference of its own.
    test "answers :closed, round after round, while other processes close it too",
         %{tmp_dir: dir} do
      for round <- 1..100 do
        name = :"held_#{round}_#{System.unique_integer([:positive])}"
        {:ok, _} = LiteStash.start_link(data_dir: Path.join(dir, "#{round}"), name: name)
        store = handle(name)
        :ok = LiteStash.set(name, "k", round)

        closers = for _ <- 1..4, do: Task.async(fn -> Native.close(store) end)
        Enum.each(closers, &Task.await/1)
        :ok = LiteStash.stop(name)

        assert {:error, %Error{reason: :closed}} = Native.get(store, "k")
        assert {:error, %Error{reason: :closed}} = Native.get_many(store, ["k"])
        assert {:error, %Error{reason: :closed}} = LiteStash.get(name, "k")
      end
    end
  end

  # Writes, reads and lists through the name and through the handle until
  # the store is closed; every answer is a result or :closed, never a crash
  # or a hang. Returns the writes that returned :ok.
  defp call_until_closed(s, store, p, i, acked) do
    key = "p#{p}:#{i}"

    results = [
      set: LiteStash.set(s, key, %{"p" => p, "i" => i}),
      get: LiteStash.get(s, key),
      mget: Native.get_many(store, [key, "p#{p}:0"]),
      count: Native.count(store, ""),
      keys: if(rem(i, 50) == 0, do: Native.keys(store, ""), else: {:ok, []})
    ]

    for {op, result} <- results do
      case result do
        :ok -> :ok
        {:ok, _} -> :ok
        {:error, %Error{reason: :closed}} -> :ok
        {:error, %Error{reason: :not_found}} when op == :get -> :ok
        other -> flunk("#{op} on a closing store gave #{inspect(other)}")
      end
    end

    acked = if results[:set] == :ok, do: [{key, %{"p" => p, "i" => i}} | acked], else: acked

    if match?({:error, %Error{reason: :closed}}, results[:set]),
      do: acked,
      else: call_until_closed(s, store, p, i + 1, acked)
  end

  describe "an owner process that is killed" do
    test "closes its store, and a new store opens the same dir right away", %{tmp_dir: dir} do
      for round <- 1..25 do
        name = :"killed_owner_#{round}_#{System.unique_integer([:positive])}"
        {:ok, pid} = LiteStash.start_link(data_dir: dir, name: name)
        Process.unlink(pid)
        store = handle(name)
        :ok = LiteStash.set(name, "round", round)

        ref = Process.monitor(pid)
        Process.exit(pid, :kill)
        assert_receive {:DOWN, ^ref, :process, ^pid, :killed}
        # Its name no longer finds it: once no process holds the handle,
        # the store is freed.
        assert {:error, %Error{reason: :closed}} = Native.lookup(name)
        assert {:error, %Error{reason: :closed}} = LiteStash.get(name, "round")

        next = start_store!(dir)
        assert LiteStash.get(next, "round") == {:ok, round}
        assert {:error, %Error{reason: :closed}} = Native.get(store, "round")
        :ok = LiteStash.stop(next)
      end
    end
  end

  describe "two BEAMs on one data dir" do
    @tag :slow
    test "both write at once, waiting on SQLite's locks, and nothing is lost", %{tmp_dir: dir} do
      data = Path.join(dir, "data")
      n = 1_500
      children = for id <- ["a", "b"], do: ChildBeam.start(["share", data, id, "#{n}"], dir)

      for {child, id} <- Enum.zip(children, ["a", "b"]) do
        {status, lines} = ChildBeam.await_exit(child, 120_000)
        assert status == 0, "BEAM #{id} exited with #{status}: #{inspect(lines)}"
        assert Enum.any?(lines, &String.starts_with?(&1, "done #{id} #{n}"))
      end

      s = start_store!(data)
      assert LiteStash.count(s) == {:ok, 2 * n}

      expected =
        for id <- ["a", "b"],
            i <- 0..(n - 1),
            into: %{},
            do: {"#{id}:#{i}", %{"by" => id, "i" => i}}

      assert LiteStash.mget(s, Map.keys(expected)) == {:ok, expected}
      :ok = LiteStash.stop(s)
      {:ok, reports} = Native.inspect_dir(data, true, 100)
      for r <- reports, do: assert(r.problems == [], "#{r.path}: #{inspect(r.problems)}")
    end
  end

  describe "a panic in the NIF" do
    test "reaches its caller as :internal while the VM and other callers carry on",
         %{tmp_dir: dir} do
      s = start_store!(dir)

      writers =
        for p <- 1..8 do
          Task.async(fn ->
            for i <- 1..200 do
              :ok = LiteStash.set(s, "p#{p}:#{i}", i)
              {:ok, ^i} = LiteStash.get(s, "p#{p}:#{i}")
            end

            :done
          end)
        end

      # The hook's one line per panic is captured, not printed.
      Native.debug_capture_panics(true)

      for _ <- 1..3 do
        assert {:error, %Error{reason: :internal, message: msg}} = Native.debug_panic()
        assert msg =~ "panic"
      end

      lines = Native.debug_capture_panics(false)
      assert length(lines) == 3

      assert Enum.all?(
               lines,
               &(&1 =~ ~r/^litestash: internal error \(panic caught\) at .*: debug_panic called$/)
             )

      assert Enum.map(writers, &Task.await(&1, 30_000)) == List.duplicate(:done, 8)
      assert LiteStash.count(s) == {:ok, 1_600}
    end
  end

  describe "a poisoned lock" do
    test "is recovered: reads, writes, stop and a new open all still work", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "before", 1)
      Native.debug_capture_panics(true)
      assert Native.debug_poison_locks(handle(s)) == :ok
      assert [line] = Native.debug_capture_panics(false)
      assert line =~ "poisoning LiteStash's locks for a test"

      assert LiteStash.get(s, "before") == {:ok, 1}
      :ok = LiteStash.mset(s, for(i <- 1..100, do: {"after:#{i}", i}))
      assert LiteStash.count(s) == {:ok, 101}
      assert {:ok, _} = LiteStash.keys(s)
      :ok = LiteStash.stop(s)

      s = start_store!(dir)
      assert LiteStash.count(s) == {:ok, 101}

      assert {:error, %Error{reason: :already_open}} =
               LiteStash.start_link(data_dir: dir, name: :x)
    end
  end
end
