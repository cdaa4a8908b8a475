defmodule LiteStash.OpenModesTest do
  # Where a store may be opened and how: a directory of other files is
  # refused, a backup never goes inside the data dir, `read_only: true`,
  # and `data_dir: :memory`.
  # Not async: one test changes the VM's working directory, which every
  # process shares (an async test would create its files there).
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers
  alias LiteStash.Error
  alias LiteStash.Test.ChildBeam

  @moduletag :tmp_dir

  defp listing(dir), do: dir |> Path.join("**") |> Path.wildcard(match_dot: true) |> Enum.sort()

  describe "start_link/1 with a data dir of other files" do
    test "is refused with :not_litestash and adds nothing to it", %{tmp_dir: dir} do
      File.write!(Path.join(dir, "notes.txt"), "mine")
      before = listing(dir)

      assert {:error, %Error{reason: :not_litestash, message: msg}} =
               LiteStash.start_link(data_dir: dir, name: :"foreign_#{System.unique_integer()}")

      assert msg =~ dir and msg =~ "not empty"
      assert listing(dir) == before
    end

    test "an empty dir and an existing data dir open", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "k", 1)
      :ok = LiteStash.stop(s)
      s = start_store!(dir)
      assert LiteStash.get(s, "k") == {:ok, 1}
    end
  end

  describe "backup/2" do
    test "into the store's own data dir or under it is refused", %{tmp_dir: dir} do
      data = Path.join(dir, "kv")
      s = start_store!(data)
      :ok = LiteStash.set(s, "k", 1)

      for dest <- [data, Path.join(data, "backup"), Path.join(data, "tables_03/x")] do
        assert {:error, %Error{reason: :invalid_argument, message: msg}} =
                 LiteStash.backup(s, dest)

        assert msg =~ "inside the store's own data dir", msg
      end

      refute File.exists?(Path.join(data, "backup"))
      assert :ok = LiteStash.backup(s, Path.join(dir, "kv-copy"))
    end
  end

  defp write_then_stop(dir) do
    s = start_store!(dir)
    :ok = LiteStash.mset(s, %{"a" => 1, "b" => %{"x" => [1, 2]}, "user:1" => "u"})
    :ok = LiteStash.set(s, "t", "soon", ttl: 600_000)
    :ok = LiteStash.stop(s)
    dir
  end

  # Every write function, each given the store; each must answer :read_only.
  defp every_write(s) do
    [
      set: fn -> LiteStash.set(s, "a", 2) end,
      set_ttl: fn -> LiteStash.set(s, "a", 2, ttl: 1_000) end,
      set_bad_value: fn -> LiteStash.set(s, "a", {:not, :storable}) end,
      mset: fn -> LiteStash.mset(s, %{"a" => 2}) end,
      delete: fn -> LiteStash.delete(s, "a") end,
      clear: fn -> LiteStash.clear(s) end,
      expire: fn -> LiteStash.expire(s, "a", 1_000) end,
      persist: fn -> LiteStash.persist(s, "t") end,
      incr: fn -> LiteStash.incr(s, "n") end,
      put_new: fn -> LiteStash.put_new(s, "new", 1) end,
      compare_and_set: fn -> LiteStash.compare_and_set(s, "a", 1, 2) end,
      compact: fn -> LiteStash.compact(s) end
    ]
  end

  defp assert_read_only(s, data) do
    assert LiteStash.get(s, "a") == {:ok, 1}
    assert {:ok, %{"a" => 1, "user:1" => "u"}} = LiteStash.mget(s, ["a", "user:1"])
    assert LiteStash.exists?(s, "b")
    assert {:ok, ms} = LiteStash.ttl(s, "t")
    assert ms > 0
    assert {:ok, ["user:1"]} = LiteStash.keys(s, prefix: "user:")
    assert {:ok, 4} = LiteStash.count(s)
    assert LiteStash.stream(s) |> Enum.count() == 4
    assert {:ok, shards} = LiteStash.info(s)
    assert length(shards) == 16

    for {what, write} <- every_write(s) do
      assert {:error, %Error{reason: :read_only, message: msg}} = write.(), "#{what}"
      assert msg =~ data and msg =~ "read_only", "#{what}: #{msg}"
    end

    assert_raise Error, ~r/read_only/, fn -> LiteStash.set!(s, "a", 2) end
    assert LiteStash.get(s, "a") == {:ok, 1}
  end

  describe "start_link/1 with read_only: true" do
    test "on a stopped store's data dir serves reads and refuses every write", %{tmp_dir: dir} do
      data = write_then_stop(Path.join(dir, "kv"))
      s = start_store!(data, read_only: true)
      assert_read_only(s, data)
      # A backup only reads the store.
      assert :ok = LiteStash.backup(s, Path.join(dir, "copy"))
      :ok = LiteStash.stop(s)
      # The files are the store's as before: a writer opens them as they were.
      s = start_store!(data)
      assert {:ok, 4} = LiteStash.count(s)
    end

    test "beside a store of this VM that has the dir open, it sees its writes",
         %{tmp_dir: dir} do
      data = write_then_stop(Path.join(dir, "kv"))
      writer = start_store!(data)
      reader = start_store!(data, read_only: true)
      assert_read_only(reader, data)
      :ok = LiteStash.set(writer, "fresh", 42)
      assert LiteStash.get(reader, "fresh") == {:ok, 42}
      :ok = LiteStash.stop(reader)
      assert :ok = LiteStash.set(writer, "after", 1)
    end

    test "reads what another OS process is writing", %{tmp_dir: dir} do
      data = Path.join(dir, "kv")
      child = ChildBeam.start(["crash", data, "normal", "1", "0"], dir)

      try do
        lines = ChildBeam.await_line(child, "ack 0 5")
        assert Enum.any?(lines, &(&1 == "ack 0 5"))
        s = start_store!(data, read_only: true)
        assert {:ok, %{"p" => 0}} = LiteStash.get(s, ChildBeam.key(0, 0, 5))
        assert {:error, %Error{reason: :read_only}} = LiteStash.set(s, "mine", 1)
        assert {:ok, n} = LiteStash.count(s)
        assert n >= 6
      after
        ChildBeam.kill(child)
      end
    end

    test "a missing data dir is an error and is not created", %{tmp_dir: dir} do
      missing = Path.join(dir, "missing")

      assert {:error, %Error{message: msg}} =
               LiteStash.start_link(data_dir: missing, read_only: true, name: :ro_missing)

      assert msg =~ missing
      refute File.exists?(missing)
    end

    test "is refused for data_dir: :memory and must be a boolean" do
      assert_raise ArgumentError, ~r/in-memory/, fn ->
        LiteStash.start_link(data_dir: :memory, read_only: true)
      end

      assert_raise ArgumentError, ~r/:read_only.*boolean/, fn ->
        LiteStash.start_link(data_dir: :memory, read_only: :yes)
      end
    end
  end

  describe "start_link/1 with data_dir: :memory" do
    test "writes no file, and its data is gone when it stops", %{tmp_dir: dir} do
      File.cd!(dir, fn ->
        s = start_store!(:memory)
        :ok = LiteStash.set(s, "k", 1)
        assert LiteStash.get(s, "k") == {:ok, 1}
        assert listing(dir) == []
        :ok = LiteStash.stop(s)
        s = start_store!(:memory)
        assert LiteStash.get(s, "k") |> elem(1) |> Map.get(:reason) == :not_found
      end)
    end

    test "two in-memory stores share nothing" do
      a = start_store!(:memory)
      b = start_store!(:memory)
      :ok = LiteStash.set(a, "k", "a")
      assert {:error, %Error{reason: :not_found}} = LiteStash.get(b, "k")
    end

    test "backs up to a real data dir that opens as a file store", %{tmp_dir: dir} do
      s = start_store!(:memory)
      :ok = LiteStash.mset(s, for(i <- 1..100, do: {"k#{i}", i}))
      assert :ok = LiteStash.backup(s, Path.join(dir, "copy"))
      :ok = LiteStash.stop(s)
      copy = start_store!(Path.join(dir, "copy"))
      assert {:ok, 100} = LiteStash.count(copy)
      assert LiteStash.get(copy, "k7") == {:ok, 7}
    end
  end
end
