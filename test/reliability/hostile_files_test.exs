Code.require_file("shard_routing.exs", __DIR__)

defmodule LiteStash.Reliability.HostileFilesTest do
  # Files LiteStash must not write to are refused at open with their own
  # reason and a message naming the path, and left as they were; a damaged
  # shard is :corrupt while the other 15 serve; a damaged value is
  # :corrupt_value for its key alone.
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.Error
  alias LiteStash.Test.{ShardFiles, ShardRouting}

  @moduletag :tmp_dir

  @application_id 0x4C534B56

  # A data dir with keys in every shard, stopped cleanly (no -wal left).
  defp written_dir(dir) do
    s = start_store!(dir)

    for shard <- ShardFiles.shards(), key <- ShardRouting.keys_on(shard, 3) do
      :ok = LiteStash.set(s, key, %{"key" => key})
    end

    :ok = LiteStash.stop(s)
    dir
  end

  defp assert_refused(data_dir, reason, names) do
    before = ShardFiles.snapshot(data_dir)
    name = :"refused_#{System.unique_integer([:positive])}"

    assert {:error, %Error{reason: ^reason, message: message}} =
             LiteStash.start_link(data_dir: data_dir, name: name)

    assert message =~ names
    refute Process.whereis(name)
    assert ShardFiles.changes(before, ShardFiles.snapshot(data_dir)) == ""
  end

  describe "refused at open and left unmodified" do
    test "a data dir that is a regular file", %{tmp_dir: dir} do
      file = Path.join(dir, "data")
      File.write!(file, "not a directory")
      assert_refused(file, :not_a_directory, file)
    end

    test "a shard path that is a directory", %{tmp_dir: dir} do
      shard = ShardFiles.path(dir, "tables_mn")
      File.mkdir_p!(shard)
      File.write!(Path.join(shard, "inside"), "keep me")
      assert_refused(dir, :not_a_directory, shard)
    end

    test "an SQLite file whose application_id is another program's", %{tmp_dir: dir} do
      written_dir(dir)
      path = ShardFiles.path(dir, "tables_ij")
      ShardFiles.put_header!(path, 0x12345678, 1)
      assert_refused(dir, :not_litestash, path)
    end

    test "a file from a newer contract (user_version 2)", %{tmp_dir: dir} do
      written_dir(dir)
      path = ShardFiles.path(dir, "tables_qr")
      ShardFiles.put_header!(path, @application_id, 2)
      assert_refused(dir, :newer_version, path)
    end

    test "a Python litestash 0.1 data dir (tables present, user_version 0)", %{tmp_dir: dir} do
      written_dir(dir)

      for shard <- ShardFiles.shards() do
        ShardFiles.put_header!(ShardFiles.path(dir, shard), 0, 0)
      end

      assert_refused(dir, :legacy_format, ShardFiles.path(dir, "tables_03"))
    end

    test "a Python litestash 0.1 data dir with only some shard files gets no new ones",
         %{tmp_dir: dir} do
      written_dir(dir)

      for shard <- ShardFiles.shards() -- ["tables_gh"] do
        File.rm_rf!(Path.join(dir, shard))
      end

      ShardFiles.put_header!(ShardFiles.path(dir, "tables_gh"), 0, 0)
      assert_refused(dir, :legacy_format, ShardFiles.path(dir, "tables_gh"))
    end
  end

  describe "a damaged shard file" do
    # Every call that touches `broken` is :corrupt and names its file; the
    # other 15 shards read and write.
    defp assert_only_corrupt(s, dir, broken) do
      path = ShardFiles.path(dir, broken)

      for shard <- ShardFiles.shards() do
        [a, b, c] = ShardRouting.keys_on(shard, 3)

        if shard == broken do
          for result <- [
                LiteStash.get(s, a),
                LiteStash.set(s, b, 1),
                LiteStash.mget(s, [c]),
                LiteStash.delete(s, a)
              ] do
            assert {:error, %Error{reason: :corrupt, message: message}} = result
            assert message =~ path
          end
        else
          assert LiteStash.get(s, a) == {:ok, %{"key" => a}}
          assert LiteStash.set(s, b, "new") == :ok
          assert LiteStash.get(s, b) == {:ok, "new"}
        end
      end

      assert {:error, %Error{reason: :corrupt}} = LiteStash.count(s)
    end

    test "with garbage over its header is :corrupt at open; the other 15 serve",
         %{tmp_dir: dir} do
      written_dir(dir)
      ShardFiles.garble!(ShardFiles.path(dir, "tables_st"), 0, 100)
      s = start_store!(dir)
      assert_only_corrupt(s, dir, "tables_st")
    end

    test "with garbage over its pages is :corrupt on first touch; the other 15 serve",
         %{tmp_dir: dir} do
      written_dir(dir)
      path = ShardFiles.path(dir, "tables_cd")
      %{size: size} = File.stat!(path)
      # Page 1 (header and schema) intact, every b-tree page after it not.
      ShardFiles.garble!(path, 4096, size - 4096)
      s = start_store!(dir)
      assert_only_corrupt(s, dir, "tables_cd")
    end
  end

  describe "a stored value that is not contract MessagePack" do
    test "is :corrupt_value for that key only, and can be overwritten", %{tmp_dir: dir} do
      s = start_store!(dir)
      marker = :binary.copy("MARKER", 8)
      [damaged | others] = ShardRouting.keys_on("tables_kl", 20)
      :ok = LiteStash.set(s, damaged, <<0xFF, marker::binary>>)
      for key <- others, do: :ok = LiteStash.set(s, key, key)
      :ok = LiteStash.stop(s)

      # The value is bin8 (0xc4, length 49); 0xc1 is never valid MessagePack.
      path = ShardFiles.path(dir, "tables_kl")
      bytes = File.read!(path)
      {at, _} = :binary.match(bytes, <<0xC4, 49, 0xFF, marker::binary>>)

      File.write!(path, [
        binary_part(bytes, 0, at),
        0xC1,
        binary_part(bytes, at + 1, byte_size(bytes) - at - 1)
      ])

      s = start_store!(dir)

      assert {:error, %Error{reason: :corrupt_value, message: message}} =
               LiteStash.get(s, damaged)

      assert message =~ damaged
      # Read again (from the value cache, which holds the bytes as stored).
      assert {:error, %Error{reason: :corrupt_value, message: ^message}} =
               LiteStash.get(s, damaged)

      assert LiteStash.exists?(s, damaged)
      for key <- others, do: assert(LiteStash.get(s, key) == {:ok, key})
      assert LiteStash.mget(s, others) == {:ok, Map.new(others, &{&1, &1})}

      # mget and stream give every good key, and the bad one its error.
      assert {:ok, got} = LiteStash.mget(s, [damaged | others])

      assert {{:error, %Error{reason: :corrupt_value, message: in_mget}}, good} =
               Map.pop(got, damaged)

      assert in_mget =~ damaged
      assert good == Map.new(others, &{&1, &1})

      for chunk_size <- [1, 500] do
        streamed = LiteStash.stream(s, chunk_size: chunk_size) |> Enum.to_list()
        assert length(streamed) == 20

        assert {{:error, %Error{reason: :corrupt_value, message: in_stream}}, rest} =
                 streamed |> Map.new() |> Map.pop(damaged)

        assert in_stream =~ damaged
        assert rest == Map.new(others, &{&1, &1})
      end

      :ok = LiteStash.set(s, damaged, "repaired")
      assert LiteStash.get(s, damaged) == {:ok, "repaired"}
    end
  end
end
