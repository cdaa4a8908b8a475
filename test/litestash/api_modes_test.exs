defmodule LiteStash.ApiModesTest do
  # The main API, run against a store on disk and an in-memory one
  # (`data_dir: :memory`): both must behave the same. Each test starts its
  # own store and calls it by pid, as a user's async tests would.
  use ExUnit.Case, async: true

  alias LiteStash.Error

  @moduletag :tmp_dir

  defp start!(:file, %{tmp_dir: dir}), do: start_pid!(Path.join(dir, "kv"))
  defp start!(:memory, _context), do: start_pid!(:memory)

  defp start_pid!(data_dir) do
    name = :"api_#{System.unique_integer([:positive])}"
    start_supervised!({LiteStash, data_dir: data_dir, name: name, sweep_interval: 50})
  end

  for mode <- [:file, :memory] do
    describe "#{mode} store:" do
      @describetag mode: mode

      setup context, do: %{s: start!(context.mode, context)}

      test "set/get/delete, a stored nil, a missing key", %{s: s} do
        assert :ok = LiteStash.set(s, "user:1001", %{name: "Alice", score: 99})
        assert {:ok, %{"name" => "Alice", "score" => 99}} = LiteStash.get(s, "user:1001")
        assert :ok = LiteStash.set(s, "nil", nil)
        assert LiteStash.get(s, "nil") == {:ok, nil}
        assert LiteStash.exists?(s, "nil")
        assert :ok = LiteStash.delete(s, "user:1001")
        assert {:error, %Error{reason: :not_found}} = LiteStash.get(s, "user:1001")
        assert_raise Error, fn -> LiteStash.get!(s, "user:1001") end
        assert {:error, %Error{reason: :unsupported_value}} = LiteStash.set(s, "t", {1, 2})
      end

      test "mset/mget, keys and count with a prefix, clear", %{s: s} do
        pairs = for i <- 1..300, do: {"user:#{i}", %{"i" => i}}
        assert :ok = LiteStash.mset(s, [{"other", 0} | pairs])
        assert {:ok, %{"user:7" => %{"i" => 7}}} = LiteStash.mget(s, ["user:7", "nobody"])
        assert {:ok, keys} = LiteStash.keys(s, prefix: "user:")
        assert length(keys) == 300
        assert {:ok, 301} = LiteStash.count(s)
        assert {:ok, 300} = LiteStash.count(s, prefix: "user:")
        assert :ok = LiteStash.clear(s)
        assert {:ok, 0} = LiteStash.count(s)
      end

      test "a stream sees one snapshot per shard while writers go on", %{s: s} do
        :ok = LiteStash.mset(s, for(i <- 1..1_000, do: {"k#{i}", i}))
        writer = Task.async(fn -> for i <- 1..200, do: :ok = LiteStash.set(s, "w#{i}", i) end)

        walked =
          LiteStash.stream(s, prefix: "k", chunk_size: 7)
          |> Enum.map(fn {k, v} -> {k, v} end)

        Task.await(writer, 60_000)
        assert length(walked) == 1_000
        assert Enum.sort(walked) == Enum.sort(for i <- 1..1_000, do: {"k#{i}", i})
        assert {:ok, 1_200} = LiteStash.count(s)
      end

      test "expiry: ttl, expire, persist, and keys that expire vanish", %{s: s} do
        :ok = LiteStash.set(s, "session", %{"u" => 1}, ttl: 60_000)
        assert {:ok, ms} = LiteStash.ttl(s, "session")
        assert ms > 0 and ms <= 60_000
        assert :ok = LiteStash.persist(s, "session")
        assert {:ok, :infinity} = LiteStash.ttl(s, "session")
        :ok = LiteStash.set(s, "brief", 1, ttl: 30)
        assert :ok = LiteStash.expire(s, "session", 30)
        Process.sleep(60)
        assert {:error, %Error{reason: :not_found}} = LiteStash.get(s, "brief")
        refute LiteStash.exists?(s, "session")
        assert {:ok, 0} = LiteStash.count(s)
        assert LiteStash.stream(s) |> Enum.to_list() == []
        assert {:error, %Error{reason: :not_found}} = LiteStash.expire(s, "brief", 1_000)
      end

      test "incr from many processes loses no update", %{s: s} do
        1..16
        |> Enum.map(fn _ ->
          Task.async(fn -> for _ <- 1..50, do: LiteStash.incr(s, "hits") end)
        end)
        |> Enum.each(&Task.await(&1, 60_000))

        assert LiteStash.get(s, "hits") == {:ok, 800}
        assert {:ok, 810} = LiteStash.incr(s, "hits", 10)
        :ok = LiteStash.set(s, "text", "x")
        assert {:error, %Error{reason: :not_an_integer}} = LiteStash.incr(s, "text")
      end

      test "put_new and compare_and_set", %{s: s} do
        assert :ok = LiteStash.put_new(s, "lock", "owner-a")
        assert {:error, %Error{reason: :exists}} = LiteStash.put_new(s, "lock", "owner-b")
        assert :ok = LiteStash.compare_and_set(s, "lock", "owner-a", "owner-b")

        assert {:error, %Error{reason: :mismatch}} =
                 LiteStash.compare_and_set(s, "lock", "owner-a", "owner-c")

        assert :ok = LiteStash.compare_and_set(s, "absent", nil, 1)
        assert LiteStash.get(s, "lock") == {:ok, "owner-b"}
      end

      test "backup to a real dir, info and compact", %{s: s, tmp_dir: dir} do
        :ok = LiteStash.mset(s, for(i <- 1..200, do: {"k#{i}", i}))
        dest = Path.join(dir, "backup")
        assert :ok = LiteStash.backup(s, dest)
        assert {:ok, shards} = LiteStash.info(s)
        assert shards |> Enum.map(& &1.keys) |> Enum.sum() == 200
        for i <- 1..100, do: :ok = LiteStash.delete(s, "k#{i}")
        assert :ok = LiteStash.compact(s)
        assert {:ok, 100} = LiteStash.count(s)

        copy =
          start_supervised!({LiteStash, data_dir: dest, name: :"copy_#{System.unique_integer()}"},
            id: :copy
          )

        assert {:ok, 200} = LiteStash.count(copy)
      end

      test "stop/1 releases it and later calls are :closed", %{s: s} do
        :ok = LiteStash.set(s, "k", 1)
        assert :ok = LiteStash.stop(s)
        assert {:error, %Error{reason: :closed}} = LiteStash.get(s, "k")
      end
    end
  end
end
