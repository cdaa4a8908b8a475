defmodule LiteStashTest do
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.Error

  @moduletag :tmp_dir

  describe "get/2" do
    test "a missing key is :not_found and a stored nil is {:ok, nil}", %{tmp_dir: dir} do
      s = start_store!(dir)
      assert {:error, %Error{reason: :not_found, message: msg}} = LiteStash.get(s, "nope")
      assert msg =~ "nope"
      :ok = LiteStash.set(s, "nil", nil)
      assert LiteStash.get(s, "nil") == {:ok, nil}
    end

    test "a key that is not a binary raises ArgumentError", %{tmp_dir: dir} do
      s = start_store!(dir)
      assert_raise ArgumentError, ~r/must be a binary/, fn -> LiteStash.get(s, :atom_key) end
      assert_raise ArgumentError, fn -> LiteStash.set(s, 1, "v") end
    end

    test "an invalid binary key gives :invalid_key", %{tmp_dir: dir} do
      s = start_store!(dir)

      for key <- ["", String.duplicate("k", 1025), <<0xFF, 0xFE>>] do
        assert {:error, %Error{reason: :invalid_key}} = LiteStash.get(s, key)
        assert {:error, %Error{reason: :invalid_key}} = LiteStash.set(s, key, 1)
      end

      assert :ok = LiteStash.set(s, String.duplicate("k", 1024), 1)
    end
  end

  describe "set!/3 and get!/2" do
    test "return plain values and raise LiteStash.Error", %{tmp_dir: dir} do
      s = start_store!(dir)
      assert LiteStash.set!(s, "a", 1) == :ok
      assert LiteStash.get!(s, "a") == 1
      assert_raise Error, ~r/not found/, fn -> LiteStash.get!(s, "missing") end
      assert_raise Error, ~r/tuple/, fn -> LiteStash.set!(s, "a", {:tuple}) end
    end
  end

  describe "delete/2, exists?/2, mset/2, mget/2, keys/1, count/1, clear/1" do
    test "behave as documented", %{tmp_dir: dir} do
      s = start_store!(dir)
      assert LiteStash.mset(s, %{"a" => 1, "b" => [2], "c" => %{"d" => 3}}) == :ok
      assert LiteStash.mset(s, [{"e", 5}]) == :ok
      assert LiteStash.mset(s, []) == :ok
      assert LiteStash.mget(s, ["a", "b", "zz"]) == {:ok, %{"a" => 1, "b" => [2]}}
      assert LiteStash.exists?(s, "c")
      refute LiteStash.exists?(s, "zz")
      assert {:ok, keys} = LiteStash.keys(s)
      assert Enum.sort(keys) == ["a", "b", "c", "e"]
      assert LiteStash.count(s) == {:ok, 4}
      assert LiteStash.delete(s, "a") == :ok
      assert LiteStash.delete(s, "a") == :ok
      refute LiteStash.exists?(s, "a")
      assert LiteStash.count(s) == {:ok, 3}
      assert LiteStash.clear(s) == :ok
      assert LiteStash.count(s) == {:ok, 0}
    end

    test "mset refuses the whole call when one pair is bad", %{tmp_dir: dir} do
      s = start_store!(dir)

      assert {:error, %Error{reason: :unsupported_value}} =
               LiteStash.mset(s, [{"ok1", 1}, {"bad", {1}}, {"ok2", 2}])

      assert LiteStash.count(s) == {:ok, 0}
      assert_raise ArgumentError, fn -> LiteStash.mset(s, [{:k, 1}]) end
    end
  end

  @refused_labels [
    "a tuple",
    "a pid",
    "a reference",
    "a function",
    "a port",
    "an improper list",
    "an integer above 2^64-1",
    "an integer below -2^63",
    "a bitstring",
    "colliding map keys",
    "a list as map key",
    "a tuple inside a map"
  ]

  describe "refused values" do
    for label <- @refused_labels do
      test "#{label} gives :unsupported_value and keeps the earlier value", %{tmp_dir: dir} do
        {_, term} = List.keyfind(refused_terms(), unquote(label), 0)
        s = start_store!(dir)
        :ok = LiteStash.set(s, "k", "earlier")

        assert {:error, %Error{reason: :unsupported_value, message: msg}} =
                 LiteStash.set(s, "k", term)

        assert is_binary(msg) and msg != ""
        assert {:error, %Error{reason: :unsupported_value}} = LiteStash.set(s, "new", term)
        assert LiteStash.get(s, "k") == {:ok, "earlier"}
        refute LiteStash.exists?(s, "new")
      end
    end

    test "values nested 512 levels round-trip on every scheduler; 513 are refused",
         %{tmp_dir: dir} do
      # A 512-deep value once overflowed a dirty scheduler's stack.
      s = start_store!(dir)
      list = Enum.reduce(1..512, "leaf", fn _, acc -> [acc] end)
      map = Enum.reduce(1..512, 1, fn i, acc -> %{"k#{i}" => acc} end)
      :ok = LiteStash.set(s, "list", list)
      :ok = LiteStash.set(s, "map", map)
      assert LiteStash.get(s, "list") == {:ok, list}
      assert LiteStash.get(s, "map") == {:ok, map}
      assert Enum.to_list(LiteStash.stream(s)) |> Map.new() == %{"list" => list, "map" => map}
      assert {:error, %Error{reason: :too_deep}} = LiteStash.set(s, "deeper", [list])

      assert {:error, %Error{reason: :too_deep}} =
               LiteStash.set(s, "deep", Enum.reduce(1..200_000, [], &[&2 | [&1]]))

      assert LiteStash.get(s, "list") == {:ok, list}
    end

    test "atoms of any name are stored as their names", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "atoms", [:plain, :é, :"✓ check", :日本, %{k: :"🔑"}])
      assert LiteStash.get(s, "atoms") == {:ok, ["plain", "é", "✓ check", "日本", %{"k" => "🔑"}]}

      assert {:error, %Error{reason: :unsupported_value}} =
               LiteStash.set(s, "c", %{:"✓" => 1, "✓" => 2})
    end

    test "the integer bounds themselves are stored", %{tmp_dir: dir} do
      s = start_store!(dir)

      for n <- [-9_223_372_036_854_775_808, 18_446_744_073_709_551_615] do
        :ok = LiteStash.set(s, "n", n)
        assert LiteStash.get(s, "n") == {:ok, n}
      end
    end
  end

  # Built at run time: pids, ports and references cannot be module attributes.
  defp refused_terms do
    [
      {"a tuple", {1, 2}},
      {"a pid", self()},
      {"a reference", make_ref()},
      {"a function", &Function.identity/1},
      {"a port", Port.open({:spawn, "true"}, [])},
      {"an improper list", [1 | 2]},
      {"an integer above 2^64-1", 18_446_744_073_709_551_616},
      {"an integer below -2^63", -9_223_372_036_854_775_809},
      {"a bitstring", <<1::3>>},
      {"colliding map keys", %{:a => 1, "a" => 2}},
      {"a list as map key", %{[1] => 2}},
      {"a tuple inside a map", %{"x" => [1, {2}]}}
    ]
  end

  describe "start_link/1" do
    test "unknown options and bad values raise ArgumentError naming them", %{tmp_dir: dir} do
      assert_raise ArgumentError, ~r/unknown LiteStash option :dta_dir/, fn ->
        LiteStash.start_link(dta_dir: dir)
      end

      assert_raise ArgumentError, ~r/:synchronous.*:sometimes/, fn ->
        LiteStash.start_link(data_dir: dir, synchronous: :sometimes)
      end

      assert_raise ArgumentError, ~r/:name/, fn -> LiteStash.start_link(name: "str") end
    end

    test "concurrent_commits takes 1 to 16 or :auto, and one slot commits every write",
         %{tmp_dir: dir} do
      for bad <- [0, 17, -1, :all, 2.0] do
        assert_raise ArgumentError, ~r/:concurrent_commits.*1 to 16 or :auto/, fn ->
          LiteStash.start_link(data_dir: dir, concurrent_commits: bad)
        end
      end

      auto = start_store!(Path.join(dir, "auto"), concurrent_commits: :auto)
      :ok = LiteStash.set(auto, "k", 1)
      assert LiteStash.get(auto, "k") == {:ok, 1}

      # 256 writers over the 16 shards take turns at one commit slot.
      s = start_store!(Path.join(dir, "one"), concurrent_commits: 1)

      1..256
      |> Enum.map(fn p ->
        Task.async(fn -> for i <- 1..20, do: :ok = LiteStash.set(s, "w:#{p}:#{i}", [p, i]) end)
      end)
      |> Task.await_many(60_000)

      assert LiteStash.count(s) == {:ok, 5_120}
      assert LiteStash.get(s, "w:256:20") == {:ok, [256, 20]}
    end

    test "a data dir that cannot be opened is an error naming the path", %{tmp_dir: dir} do
      file = Path.join(dir, "plain_file")
      File.write!(file, "not a dir")

      assert {:error, %Error{reason: :not_a_directory, message: msg}} =
               LiteStash.start_link(data_dir: file, name: :cannot_open)

      assert msg =~ file
      refute Process.whereis(:cannot_open)
    end

    test "a second store on an open data dir is refused", %{tmp_dir: dir} do
      _s = start_store!(dir)

      assert {:error, %Error{reason: :already_open, message: msg}} =
               LiteStash.start_link(data_dir: dir, name: :second)

      assert msg =~ "already open"
    end

    test "several named stores on different dirs run at once", %{tmp_dir: dir} do
      a = start_store!(Path.join(dir, "a"))
      b = start_store!(Path.join(dir, "b"))
      :ok = LiteStash.set(a, "k", "in a")
      :ok = LiteStash.set(b, "k", "in b")
      assert LiteStash.get(a, "k") == {:ok, "in a"}
      assert LiteStash.get(b, "k") == {:ok, "in b"}
    end

    test "stop and start on the same dir keeps everything", %{tmp_dir: dir} do
      s = start_store!(dir)
      pairs = for i <- 1..500, into: %{}, do: {"key:#{i}", %{"i" => i, "s" => "v#{i}"}}
      :ok = LiteStash.mset(s, pairs)
      :ok = LiteStash.set(s, "last", [1.5, nil, true])
      :ok = LiteStash.stop(s)
      assert {:error, %Error{reason: :closed}} = LiteStash.get(s, "last")

      s = start_store!(dir)
      assert LiteStash.count(s) == {:ok, 501}
      assert LiteStash.get(s, "last") == {:ok, [1.5, nil, true]}
      assert LiteStash.mget(s, Map.keys(pairs)) == {:ok, pairs}
    end

    test "stops that race each other return :ok or :closed, never exit", %{tmp_dir: dir} do
      for round <- 1..5 do
        s = start_store!(Path.join(dir, "r#{round}"))
        # Writes in flight keep the first stop busy while the others call.
        for i <- 1..5_000, do: spawn(fn -> LiteStash.set(s, "k#{i}", i) end)

        results =
          1..3
          |> Enum.map(fn _ ->
            Task.async(fn ->
              try do
                LiteStash.stop(s)
              catch
                kind, reason -> {:caught, kind, reason}
              end
            end)
          end)
          |> Task.await_many(30_000)

        assert Enum.all?(results, &(&1 == :ok or match?({:error, %Error{reason: :closed}}, &1))),
               inspect(results)

        assert :ok in results
      end
    end

    test "the pid works as the server too", %{tmp_dir: dir} do
      {:ok, pid} = LiteStash.start_link(data_dir: dir, name: :by_pid)
      on_exit(fn -> stop_quietly(:by_pid) end)
      :ok = LiteStash.set(pid, "k", 1)
      assert LiteStash.get(pid, "k") == {:ok, 1}
    end
  end

  describe "concurrency" do
    test "10,000 concurrent writers all commit without exhausting a scheduler pool",
         %{tmp_dir: dir} do
      # Each caller waits in a receive, not on a dirty scheduler: with only
      # 10 dirty IO schedulers, blocking ones would serialize or stall.
      s = start_store!(dir)
      parent = self()

      pids =
        for i <- 1..10_000 do
          spawn_link(fn -> send(parent, {:done, i, LiteStash.set(s, "w:#{i}", i)}) end)
        end

      results = for _ <- pids, do: receive(do: ({:done, i, r} -> {i, r}))
      assert Enum.all?(results, fn {_, r} -> r == :ok end)
      assert LiteStash.count(s, prefix: "w:") == {:ok, 10_000}
      assert LiteStash.get(s, "w:9999") == {:ok, 9999}
    end

    test "50 processes writing and reading different keys all see their values", %{tmp_dir: dir} do
      s = start_store!(dir)

      1..50
      |> Task.async_stream(
        fn p ->
          for i <- 1..40 do
            key = "p#{p}:#{i}"
            value = %{"p" => p, "i" => i, "blob" => :binary.copy(<<p>>, i)}
            :ok = LiteStash.set(s, key, value)
            {:ok, ^value} = LiteStash.get(s, key)
          end

          :done
        end,
        max_concurrency: 50,
        timeout: 60_000
      )
      |> Enum.each(fn result -> assert result == {:ok, :done} end)

      assert LiteStash.count(s) == {:ok, 2000}

      for p <- 1..50, i <- [1, 40] do
        assert {:ok, %{"p" => ^p, "i" => ^i}} = LiteStash.get(s, "p#{p}:#{i}")
      end
    end
  end
end
