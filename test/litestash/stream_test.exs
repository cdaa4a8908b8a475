defmodule LiteStash.StreamTest do
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers

  @moduletag :tmp_dir

  describe "stream/2" do
    test "yields every pair once, by key within a shard", %{tmp_dir: dir} do
      s = start_store!(dir)
      pairs = for i <- 1..3_000, into: %{}, do: {"k:#{i}", %{"i" => i}}
      :ok = LiteStash.mset(s, pairs)

      streamed = LiteStash.stream(s, chunk_size: 37) |> Enum.to_list()
      assert length(streamed) == 3_000
      assert Map.new(streamed) == pairs

      # Within each shard's run the keys ascend (as bytes).
      streamed
      |> Enum.chunk_by(fn {k, _} -> shard_of(k) end)
      |> Enum.each(fn run ->
        keys = Enum.map(run, &elem(&1, 0))
        assert keys == Enum.sort(keys)
      end)
    end

    test "prefix: restricts to keys that start with it", %{tmp_dir: dir} do
      s = start_store!(dir)

      :ok =
        LiteStash.mset(s, %{
          "user:1" => 1,
          "user:2" => 2,
          "user:" => 0,
          "user;" => :no,
          "usex" => :no,
          "users" => :no,
          "ü:1" => :u
        })

      assert LiteStash.stream(s, prefix: "user:") |> Enum.sort() ==
               [{"user:", 0}, {"user:1", 1}, {"user:2", 2}]

      assert LiteStash.stream(s, prefix: "ü") |> Enum.to_list() == [{"ü:1", "u"}]
      assert {:ok, keys} = LiteStash.keys(s, prefix: "user:")
      assert Enum.sort(keys) == ["user:", "user:1", "user:2"]
      assert LiteStash.count(s, prefix: "user") == {:ok, 5}
      assert LiteStash.count(s, prefix: "nothing") == {:ok, 0}
    end

    test "is lazy: it reads when enumerated, a chunk at a time", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.mset(s, for(i <- 1..2_000, do: {"k#{i}", i}))
      stream = LiteStash.stream(s, chunk_size: 10)
      # Written after the stream was made, before it is enumerated: seen.
      :ok = LiteStash.set(s, "later", 0)
      assert stream |> Enum.to_list() |> length() == 2_001
      assert stream |> Enum.take(3) |> length() == 3
      # Made on a running store, enumerated after it stopped: fails then.
      stopped = LiteStash.stream(s)
      LiteStash.stop(s)
      assert_raise LiteStash.Error, ~r/closed|running/, fn -> Enum.take(stopped, 1) end
    end

    test "memory stays bounded by the chunk size while walking 100,000 keys",
         %{tmp_dir: dir} do
      s = start_store!(dir)
      blob = String.duplicate("x", 200)

      for batch <- Enum.chunk_every(1..100_000, 5_000) do
        :ok = LiteStash.mset(s, for(i <- batch, do: {"big:#{i}", blob}))
      end

      # The walk runs in its own process; its heap peaks at a few chunks,
      # where the whole data set would be over 20 MB.
      task =
        Task.async(fn ->
          count =
            LiteStash.stream(s, chunk_size: 500)
            |> Enum.reduce(0, fn {_k, v}, n -> byte_size(v) && n + 1 end)

          {count, Process.info(self(), :memory) |> elem(1)}
        end)

      {count, memory} = Task.await(task, 120_000)
      assert count == 100_000
      assert memory < 4_000_000, "walker process holds #{memory} bytes"
    end

    test "a walk does not see writes made after it began on a shard", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.mset(s, for(i <- 1..500, do: {"a#{i}", i}))
      stream = LiteStash.stream(s, chunk_size: 1)

      # Pull one element (opening shard 0's snapshot), then write more keys.
      {[first], continuation} = step(stream)
      :ok = LiteStash.mset(s, for(i <- 1..500, do: {"b#{i}", i}))
      rest = continuation.()
      all = [first | rest]
      assert length(all) >= 500
      assert Enum.count(all, fn {k, _} -> String.starts_with?(k, "a") end) == 500
    end
  end

  defp shard_of(key) do
    <<c, _::binary>> = Base.url_encode64(:crypto.hash(:blake2b, key))

    c
    |> then(fn c ->
      Enum.find_index(
        ~w(0123 4567 89-_ abAB cdCD efEF ghGH ijIJ klKL mnMN opOP qrQR stST uvUV wxWX yzYZ),
        &String.contains?(&1, <<c>>)
      )
    end)
  end

  defp step(stream) do
    parent = self()

    pid =
      spawn_link(fn ->
        stream
        |> Enum.each(fn item ->
          send(parent, {:item, item})

          receive do
            :next -> :ok
          end
        end)

        send(parent, :done)
      end)

    first =
      receive do
        {:item, item} -> item
      end

    continuation = fn ->
      send(pid, :next)
      collect(pid, [])
    end

    {[first], continuation}
  end

  defp collect(pid, acc) do
    receive do
      {:item, item} ->
        send(pid, :next)
        collect(pid, [item | acc])

      :done ->
        Enum.reverse(acc)
    end
  end

  describe "stream/2 bounds" do
    alias LiteStash.Native

    # Every chunk of shard `shard`'s walk, as the stream reads them.
    defp chunks(s, shard, chunk_size) do
      {:ok, cursor} = Native.snapshot_open(s, shard, "")

      Stream.repeatedly(fn -> Native.snapshot_next(cursor, chunk_size, true) end)
      |> Enum.take_while(&(&1 != {:ok, []}))
      |> Enum.map(fn {:ok, chunk} -> chunk end)
    end

    test "a chunk holds at most chunk_size pairs", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.mset(s, for(i <- 1..3_000, do: {"k#{i}", i}))

      for chunk_size <- [1, 10, 37] do
        sizes = for shard <- 0..15, chunk <- chunks(s, shard, chunk_size), do: length(chunk)
        assert Enum.sum(sizes) == 3_000
        assert Enum.max(sizes) <= chunk_size, "chunk_size #{chunk_size}: #{Enum.max(sizes)}"
      end
    end

    test "a chunk holds about 4 MiB at most, whatever chunk_size", %{tmp_dir: dir} do
      s = start_store!(dir)
      mib = :binary.copy(<<0xFF>>, 1024 * 1024)
      :ok = LiteStash.mset(s, for(i <- 1..40, do: {"big#{i}", mib}))

      sizes = for shard <- 0..15, chunk <- chunks(s, shard, 500), do: length(chunk)
      assert Enum.sum(sizes) == 40
      assert Enum.max(sizes) <= 4
      assert LiteStash.stream(s) |> Enum.count() == 40
    end

    test "past max_streams a stream raises :too_many_streams until one is done",
         %{tmp_dir: dir} do
      s = start_store!(dir, max_streams: 2)
      :ok = LiteStash.set(s, "k", 1)
      {:ok, first} = Native.snapshot_open(s, 0, "")
      {:ok, _second} = Native.snapshot_open(s, 1, "")

      error = assert_raise LiteStash.Error, fn -> LiteStash.stream(s) |> Enum.to_list() end
      assert error.reason == :too_many_streams
      assert error.message =~ "max_streams"

      :ok = Native.snapshot_close(first)
      assert LiteStash.stream(s) |> Enum.to_list() == [{"k", 1}]
      # Done and halted streams give their place back.
      assert LiteStash.stream(s) |> Enum.take(1) == [{"k", 1}]
      assert LiteStash.stream(s) |> Enum.to_list() == [{"k", 1}]
    end

    test "open streams cannot use up the VM's file descriptors", %{tmp_dir: dir} do
      s = start_store!(dir)
      # Only this store's descriptors: other tests open stores meanwhile.
      mine = fn fd ->
        case File.read_link("/proc/self/fd/#{fd}") do
          {:ok, target} -> String.starts_with?(target, dir)
          {:error, _} -> false
        end
      end

      fds = fn -> Enum.count(File.ls!("/proc/self/fd"), mine) end
      before = fds.()
      opened = for shard <- 0..299, do: Native.snapshot_open(s, rem(shard, 16), "")
      {ok, refused} = Enum.split_with(opened, &match?({:ok, _}, &1))
      assert length(ok) == 64

      assert Enum.all?(
               refused,
               &match?({:error, %LiteStash.Error{reason: :too_many_streams}}, &1)
             )

      # Each snapshot holds one connection: its file, WAL and shared memory.
      assert fds.() - before <= 64 * 3
      Enum.each(ok, fn {:ok, cursor} -> Native.snapshot_close(cursor) end)
    end

    test "max_streams must be a positive integer" do
      assert_raise ArgumentError, ~r/max_streams/, fn -> LiteStash.start_link(max_streams: 0) end
    end
  end
end
