defmodule LiteStash.ContractTest do
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.Native
  alias LiteStash.Test.JSON

  @moduletag :tmp_dir

  describe "the project's copy of the contract" do
    # CI lays the steering repo's shared/ beside the clone; a developer's
    # checkout has it too. The copy must stay byte-identical to it.
    @shared Path.expand("../../shared/contract", __DIR__)

    @tag skip: not File.dir?(@shared) && "no ../shared/contract beside this checkout"
    test "is byte-identical to shared/contract" do
      ours = contract_path(".")

      files =
        for path <- Path.wildcard(Path.join(@shared, "**"), match_dot: false),
            File.regular?(path),
            not String.ends_with?(path, ["-wal", "-shm"]),
            do: Path.relative_to(path, @shared)

      assert "vectors.json" in files and "fixture_v1.exs" in files
      assert length(files) >= 18

      for file <- files do
        assert File.read!(Path.join(ours, file)) == File.read!(Path.join(@shared, file)), file
      end
    end
  end

  describe "value encoding" do
    test "every value of vectors.json encodes to its exact bytes and decodes back" do
      vectors = contract_path("vectors.json") |> File.read!() |> JSON.decode!()
      assert length(vectors["values"]) >= 30

      for %{"name" => name, "msgpack_hex" => hex, "elixir" => source} <- vectors["values"] do
        {term, _} = Code.eval_string(source)
        bytes = Base.decode16!(hex, case: :lower)
        assert Native.encode_value(term) == {:ok, bytes}, name
        assert Native.decode_value(bytes) == {:ok, term}, name
      end
    end
  end

  describe "fixture_v1" do
    test "every key of fixture_v1.exs reads back from a copy of fixture_v1/", %{tmp_dir: dir} do
      s = start_store!(copy_fixture!(Path.join(dir, "fixture")))
      entries = fixture_entries()
      assert length(entries) > 100
      assert LiteStash.count(s) == {:ok, length(entries)}

      for {key, value} <- entries do
        assert LiteStash.get(s, key) === {:ok, value}, key
      end
    end

    test "the same terms written into a fresh dir read back equal", %{tmp_dir: dir} do
      s = start_store!(Path.join(dir, "fresh"))
      entries = fixture_entries()
      for {key, value} <- entries, do: :ok = LiteStash.set(s, key, value)
      {:ok, found} = LiteStash.mget(s, Enum.map(entries, &elem(&1, 0)))
      assert found === Map.new(entries)
    end

    test "a fresh data dir has all 16 files and 64 tables", %{tmp_dir: dir} do
      _ = start_store!(dir)
      vectors = contract_path("vectors.json") |> File.read!() |> JSON.decode!()

      for shard <- vectors["shards"] do
        assert File.regular?(Path.join([dir, shard, shard <> ".db"])), shard
      end

      tables = vectors["routing"] |> Map.values() |> Enum.map(& &1["table"]) |> Enum.uniq()
      assert length(tables) == 64
    end
  end
end
