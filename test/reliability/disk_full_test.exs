defmodule LiteStash.Reliability.DiskFullTest do
  # A real full disk: a 12 MiB tmpfs mounted for the test (root only; see
  # test_helper.exs). The store fills it with its own WAL long before its
  # data would: each commit of a 1 KB value appends whole 4 KiB pages.
  use ExUnit.Case, async: false

  alias LiteStash.Error

  @moduletag :tmp_dir
  @moduletag :tmpfs

  @disk_bytes 12 * 1024 * 1024
  @reserve 4 * 1024 * 1024

  setup %{tmp_dir: dir} do
    mount = Path.join(dir, "disk")
    File.mkdir_p!(mount)
    {_, 0} = System.cmd("mount", ["-t", "tmpfs", "-o", "size=#{@disk_bytes}", "tmpfs", mount])
    on_exit(fn -> System.cmd("umount", ["-l", mount]) end)
    %{data_dir: Path.join(mount, "data")}
  end

  defp reserve_bytes(data_dir) do
    case File.stat(Path.join(data_dir, "litestash.reserve")) do
      {:ok, %{size: size}} -> size
      {:error, :enoent} -> nil
    end
  end

  defp wal_bytes(store) do
    {:ok, shards} = LiteStash.info(store)
    Enum.sum(Enum.map(shards, & &1.wal_bytes))
  end

  # Sets keys of 1,000-byte values until one fails: how many were stored.
  defp fill(store) do
    value = :binary.copy("v", 1_000)

    Enum.reduce_while(1..1_000_000, 0, fn i, stored ->
      case LiteStash.set(store, "k#{i}", value) do
        :ok -> {:cont, stored + 1}
        {:error, %Error{reason: :disk_full}} -> {:halt, stored}
      end
    end)
  end

  test "the WAL's space is given back, then deletes and clear make room on a disk full of data",
       %{data_dir: data_dir} do
    {:ok, store} = LiteStash.start_link(data_dir: data_dir, name: nil)
    assert reserve_bytes(data_dir) == @reserve

    stored = fill(store)

    # Without giving the WAL back the first write failed at 677 keys (0.7 MB
    # of values, 12 MiB of WAL); now the disk is full of data: more than
    # 2.5 MB of it in the 8 MiB the reserve leaves.
    assert stored > 2_500, "only #{stored} keys fit"

    # Nothing stored was lost on the way.
    value = :binary.copy("v", 1_000)
    for i <- 1..stored, do: assert(LiteStash.get(store, "k#{i}") == {:ok, value})

    # The disk is full, yet the store lets the user make room through it.
    for i <- 1..20, do: assert(LiteStash.delete(store, "k#{i}") == :ok)
    assert LiteStash.clear(store) == :ok
    assert LiteStash.count(store) == {:ok, 0}
    assert LiteStash.set(store, "after", %{"fits" => true}) == :ok
    assert LiteStash.get(store, "after") == {:ok, %{"fits" => true}}

    # Compaction gives the freed pages to the file system; the reserve is
    # allocated again once there is room for it.
    assert LiteStash.compact(store) == :ok
    LiteStash.Test.Helpers.wait_until(fn -> reserve_bytes(data_dir) == @reserve end, 5_000)
    :ok = LiteStash.stop(store)
  end

  test "with disk_reserve: 0 there is no reserve file, and a disk the WAL filled stays full",
       %{data_dir: data_dir} do
    {:ok, store} = LiteStash.start_link(data_dir: data_dir, name: nil, disk_reserve: 0)
    assert reserve_bytes(data_dir) == nil

    # The trade-off the option documents, and the proof that the reserve is
    # what lets the first test through: with no byte free, every
    # checkpoint must grow its file first, and none can.
    stored = fill(store)
    assert stored < 1_000, "#{stored} keys fit"
    assert wal_bytes(store) > 8 * 1024 * 1024
    assert {:error, %Error{reason: :disk_full}} = LiteStash.delete(store, "k1")
    :ok = LiteStash.stop(store)
  end
end
