defmodule LiteStash.MaintenanceTest do
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.Error

  @moduletag :tmp_dir

  describe "backup/2" do
    test "copies a consistent image while writers keep writing", %{tmp_dir: dir} do
      s = start_store!(Path.join(dir, "live"))
      base = for i <- 1..2_000, into: %{}, do: {"base:#{i}", %{"i" => i}}
      :ok = LiteStash.mset(s, base)

      writer =
        Task.async(fn ->
          for i <- 1..2_000, do: :ok = LiteStash.set(s, "during:#{i}", i)
        end)

      dest = Path.join(dir, "copy")
      assert LiteStash.backup(s, dest) == :ok
      Task.await(writer, 60_000)

      # The copy is a LiteStash data dir holding at least the base data.
      copy = start_store!(dest)
      assert LiteStash.mget(copy, Map.keys(base)) == {:ok, base}
      {:ok, copied} = LiteStash.count(copy)
      assert copied >= 2_000 and copied <= 4_000
      LiteStash.stop(copy)
      assert {:ok, reports} = LiteStash.Native.inspect_dir(dest, true, 1_000)
      assert Enum.all?(reports, &(&1.problems == [])), inspect(reports)
    end

    test "refuses a destination that is not empty", %{tmp_dir: dir} do
      s = start_store!(Path.join(dir, "live"))
      dest = Path.join(dir, "full")
      File.mkdir_p!(dest)
      File.write!(Path.join(dest, "x"), "x")

      assert {:error, %Error{reason: :invalid_argument, message: msg}} = LiteStash.backup(s, dest)
      assert msg =~ dest
    end
  end

  describe "info/1" do
    test "reports keys, file and WAL sizes per shard", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.mset(s, for(i <- 1..1_000, do: {"k#{i}", i}))
      assert {:ok, shards} = LiteStash.info(s)
      assert length(shards) == 16
      assert shards |> Enum.map(& &1.keys) |> Enum.sum() == 1_000
      assert Enum.all?(shards, &(&1.file_bytes > 0 and is_integer(&1.wal_bytes)))
    end
  end

  describe "compact/1" do
    test "gives the space of deleted rows back to the file system", %{tmp_dir: dir} do
      s = start_store!(dir)
      blob = String.duplicate("x", 1_000)
      keys = for i <- 1..8_000, do: "k#{i}"

      for chunk <- Enum.chunk_every(keys, 1_000),
          do: :ok = LiteStash.mset(s, Map.new(chunk, &{&1, blob}))

      :ok = LiteStash.compact(s)
      before = total_file_bytes(s)

      for chunk <- Enum.chunk_every(Enum.take_every(keys, 2), 500) do
        for k <- chunk, do: :ok = LiteStash.delete(s, k)
      end

      :ok = LiteStash.compact(s)
      after_compact = total_file_bytes(s)
      assert after_compact < before * 0.75, "#{before} -> #{after_compact} bytes"
      assert LiteStash.count(s) == {:ok, 4_000}
      assert LiteStash.get(s, "k2") == {:ok, blob}
    end
  end

  defp total_file_bytes(s) do
    {:ok, shards} = LiteStash.info(s)
    shards |> Enum.map(& &1.file_bytes) |> Enum.sum()
  end
end
