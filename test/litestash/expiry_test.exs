defmodule LiteStash.ExpiryTest do
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.Error

  @moduletag :tmp_dir

  describe "set/4 with :ttl" do
    test "an expired key is invisible to every read before any sweep", %{tmp_dir: dir} do
      # No sweep runs during the test: only the read-time check can hide it.
      s = start_store!(dir, sweep_interval: 600_000)
      :ok = LiteStash.set(s, "gone", "v", ttl: 800)
      :ok = LiteStash.set(s, "kept", "v")
      assert LiteStash.get(s, "gone") == {:ok, "v"}
      assert {:ok, ms} = LiteStash.ttl(s, "gone")
      assert ms > 0 and ms <= 800
      Process.sleep(850)

      assert {:error, %Error{reason: :not_found}} = LiteStash.get(s, "gone")
      assert LiteStash.mget(s, ["gone", "kept"]) == {:ok, %{"kept" => "v"}}
      refute LiteStash.exists?(s, "gone")
      assert LiteStash.keys(s) == {:ok, ["kept"]}
      assert LiteStash.count(s) == {:ok, 1}
      assert Enum.to_list(LiteStash.stream(s)) == [{"kept", "v"}]
      assert {:error, %Error{reason: :not_found}} = LiteStash.ttl(s, "gone")
      # Reads hide it before any sweep; the read handed it to the writer,
      # which deleted it.
      assert LiteStash.count(s) == {:ok, 1}
    end

    test "expired rows are deleted from the files by the sweep", %{tmp_dir: dir} do
      s = start_store!(dir)
      # Long enough that a loaded machine finishes writing before any expire.
      for i <- 1..300, do: :ok = LiteStash.set(s, "tmp:#{i}", i, ttl: 3_000)
      :ok = LiteStash.set(s, "kept", 1)
      assert rows_in_files(dir) == 301
      assert expiry_rows_in_files(dir) == 300

      # Sweeps run every second on each shard's writer, without any read.
      wait_until(fn -> rows_in_files(dir) == 1 end, 15_000)
      assert expiry_rows_in_files(dir) == 0
      assert LiteStash.get(s, "kept") == {:ok, 1}
    end

    test "set without :ttl clears the expiry, delete clears it too", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "k", 1, ttl: 60_000)
      assert {:ok, ms} = LiteStash.ttl(s, "k")
      assert is_integer(ms)
      :ok = LiteStash.set(s, "k", 2)
      assert LiteStash.ttl(s, "k") == {:ok, :infinity}

      assert expiry_rows_in_files(dir) == 0
      :ok = LiteStash.set(s, "d", 1, ttl: 60_000)
      assert expiry_rows_in_files(dir) == 1
      :ok = LiteStash.delete(s, "d")
      assert expiry_rows_in_files(dir) == 0
    end

    test "a bad :ttl raises ArgumentError", %{tmp_dir: dir} do
      s = start_store!(dir)
      assert_raise ArgumentError, ~r/:ttl/, fn -> LiteStash.set(s, "k", 1, ttl: 0) end
      assert_raise ArgumentError, ~r/unknown option/, fn -> LiteStash.set(s, "k", 1, tll: 5) end
      assert_raise ArgumentError, ~r/:ttl/, fn -> LiteStash.set("k", 1, ttl: -1) end
    end
  end

  describe "expire/3, persist/2, ttl/2" do
    test "set and clear the expiry of a stored key", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "k", "v")
      assert LiteStash.ttl(s, "k") == {:ok, :infinity}
      assert LiteStash.expire(s, "k", 60_000) == :ok
      assert {:ok, ms} = LiteStash.ttl(s, "k")
      assert ms > 55_000 and ms <= 60_000
      assert LiteStash.persist(s, "k") == :ok
      assert LiteStash.ttl(s, "k") == {:ok, :infinity}

      assert LiteStash.expire(s, "k", 30) == :ok
      Process.sleep(60)
      assert {:error, %Error{reason: :not_found}} = LiteStash.get(s, "k")
    end

    test "on a missing key give :not_found", %{tmp_dir: dir} do
      s = start_store!(dir)
      assert {:error, %Error{reason: :not_found}} = LiteStash.expire(s, "none", 100)
      assert {:error, %Error{reason: :not_found}} = LiteStash.persist(s, "none")
      assert {:error, %Error{reason: :not_found}} = LiteStash.ttl(s, "none")
    end
  end

  defp rows_in_files(dir), do: sum_sql(dir, &"SELECT count(*) FROM \"#{&1}\"")

  defp expiry_rows_in_files(dir),
    do: sum_sql(dir, fn _ -> "SELECT count(*) FROM litestash_expiry" end, :once)

  # Counts rows with sqlite3 from Python's standard library: an outside reader.
  defp sum_sql(dir, sql, mode \\ :per_table) do
    script = """
    import sqlite3, sys, glob
    total = 0
    for path in glob.glob(sys.argv[1] + '/*/*.db'):
        c = sqlite3.connect(path)
        names = [r[0] for r in c.execute("select name from sqlite_master where type='table' and name like 'tables_%'")]
        queries = #{if mode == :once, do: "[sys.argv[2]]", else: "[sys.argv[2].replace('TABLE', n) for n in names]"}
        for q in queries:
            total += c.execute(q).fetchone()[0]
        c.close()
    print(total)
    """

    template = sql.("TABLE")
    {out, 0} = System.cmd("python3", ["-c", script, dir, template])
    out |> String.trim() |> String.to_integer()
  end

  describe "the expiry rule: a write that stores a value sets its own :ttl or none" do
    # Long TTLs: the test reads them, it never waits for them.
    @hour 3_600_000

    defp ttl_set?(s, key) do
      case LiteStash.ttl(s, key) do
        {:ok, :infinity} -> false
        {:ok, ms} when ms > 0 and ms <= @hour -> true
      end
    end

    test "set, mset, put_new and compare_and_set without :ttl clear an expiry", %{tmp_dir: dir} do
      s = start_store!(dir)

      for key <- ~w(set mset cas), do: :ok = LiteStash.set(s, key, 1, ttl: @hour)
      :ok = LiteStash.set(s, "set", 2)
      :ok = LiteStash.mset(s, %{"mset" => 2})
      :ok = LiteStash.compare_and_set(s, "cas", 1, 2)

      for key <- ~w(set mset cas) do
        refute ttl_set?(s, key), key
        assert LiteStash.get(s, key) == {:ok, 2}
      end

      :ok = LiteStash.set(s, "put_new", 1, ttl: 300)
      Process.sleep(350)
      :ok = LiteStash.put_new(s, "put_new", 2)
      refute ttl_set?(s, "put_new")
    end

    test "put_new and compare_and_set with :ttl set it, atomically with the value",
         %{tmp_dir: dir} do
      s = start_store!(dir)
      assert LiteStash.put_new(s, "lock", "a", ttl: @hour) == :ok
      assert ttl_set?(s, "lock")
      assert {:error, %Error{reason: :exists}} = LiteStash.put_new(s, "lock", "b", ttl: @hour)

      :ok = LiteStash.set(s, "plain", 1)
      assert LiteStash.compare_and_set(s, "plain", 1, 2, ttl: @hour) == :ok
      assert ttl_set?(s, "plain")
      assert LiteStash.get(s, "plain") == {:ok, 2}
      # A mismatch changes neither the value nor the expiry.
      assert {:error, %Error{reason: :mismatch}} = LiteStash.compare_and_set(s, "plain", 1, 3)

      assert ttl_set?(s, "plain")

      # An empty option list is no :ttl.
      assert LiteStash.compare_and_set(s, "plain", 2, 3, []) == :ok
      refute ttl_set?(s, "plain")
    end

    test "an expiring lock taken by put_new with :ttl can be taken again once it expires",
         %{tmp_dir: dir} do
      s = start_store!(dir)
      assert LiteStash.put_new(s, "lock", "a", ttl: 300) == :ok
      assert {:error, %Error{reason: :exists}} = LiteStash.put_new(s, "lock", "b", ttl: 300)
      Process.sleep(350)
      assert LiteStash.put_new(s, "lock", "b", ttl: 300) == :ok
      assert LiteStash.get(s, "lock") == {:ok, "b"}
    end

    test "incr keeps the expiry, the one exception", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "n", 1, ttl: @hour)
      assert LiteStash.incr(s, "n", 5) == {:ok, 6}
      assert ttl_set?(s, "n")
      assert LiteStash.incr(s, "fresh") == {:ok, 1}
      refute ttl_set?(s, "fresh")
    end

    test "a bad :ttl or an unknown option raises ArgumentError naming it", %{tmp_dir: dir} do
      s = start_store!(dir)

      assert_raise ArgumentError, ~r/option :ttl.*got: 0/, fn ->
        LiteStash.put_new(s, "k", 1, ttl: 0)
      end

      assert_raise ArgumentError, ~r/option :ttl.*got: "1"/, fn ->
        LiteStash.compare_and_set(s, "k", nil, 1, ttl: "1")
      end

      assert_raise ArgumentError, ~r/unknown option :ttl_ms.*compare_and_set\/5/, fn ->
        LiteStash.compare_and_set(s, "k", nil, 1, ttl_ms: 5)
      end

      assert {:error, %Error{reason: :not_found}} = LiteStash.get(s, "k")
    end
  end
end
