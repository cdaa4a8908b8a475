defmodule Mix.Tasks.Litestash.BenchTest do
  # The benchmark's machinery, on tiny inputs. No timing is asserted: the
  # numbers of a run depend on the machine and on what else it is doing.
  use ExUnit.Case, async: false

  # Mnesia logs each stop.
  @moduletag :capture_log

  alias LiteStash.Bench.{Maintenance, Raw, Slices, Store, Workloads}

  doctest Mix.Tasks.Litestash.Bench
  doctest LiteStash.Bench.Workloads
  doctest LiteStash.Bench.Raw
  doctest LiteStash.Bench.Maintenance

  describe "run/1" do
    test "--help prints the usage and measures nothing" do
      Mix.shell(Mix.Shell.Process)

      try do
        Mix.Tasks.Litestash.Bench.run(["--help"])
        assert_received {:mix_shell, :info, [usage]}
        assert usage =~ "usage: mix litestash.bench [options]"
        assert usage =~ "--only maintenance"
        assert Mix.Tasks.Litestash.Bench.run(["-h"]) == :ok
      after
        Mix.shell(Mix.Shell.IO)
      end
    end

    test "a run on ETS alone prints every workload, W5 included, and the targets" do
      args = ~w(--stores ets --no-raw --n 40 --vector-n 5 --scales 20)

      progress =
        ExUnit.CaptureIO.capture_io(:stderr, fn ->
          report = ExUnit.CaptureIO.capture_io(fn -> Mix.Tasks.Litestash.Bench.run(args) end)
          send(self(), {:report, report})
        end)

      assert_received {:report, report}
      # Mnesia's log level, lowered by the run, back to the tests' own.
      Logger.configure(level: :warning)

      for title <-
            ["W1 set seq", "W2 get random", "W3 set 64 procs", "W4 get 64 procs"] ++
              ["W5 set 1,024 procs", "W1 set 1KiB", "W2 get vec1536"] do
        assert report =~ ~r/^#{title} +ETS /m
      end

      assert report =~ ~r/^W5 set 1,024 procs +ETS +40,960 /m
      assert report =~ "W5 LiteStash / Mnesia W5"

      assert report =~
               ~r/high-priority probe p99 during W5 +- +\(target < 2000 us\)  not measured/

      # Two rows per store, the high- then the normal-priority probe; one
      # that never woke up during a workload (too short) reports "-".
      assert [_, _] = Regex.scan(~r/^  ETS( +(\d+\.\d|-)){4}$/m, report)
      assert report =~ "at normal priority"
      refute report =~ ~r/issue/i
      assert progress =~ ~r/^# \d+:\d\d ETS W5, 1,024 processes x 40 new keys$/m
    end
  end

  describe "parse_args!/1" do
    test "rejects unknown options, bad numbers and unknown stores" do
      assert_raise Mix.Error, fn -> Mix.Tasks.Litestash.Bench.parse_args!(["--bogus"]) end
      assert_raise Mix.Error, fn -> Mix.Tasks.Litestash.Bench.parse_args!(["--n", "0"]) end
      assert_raise Mix.Error, fn -> Mix.Tasks.Litestash.Bench.parse_args!(["--repeat", "0"]) end
      assert_raise Mix.Error, fn -> Mix.Tasks.Litestash.Bench.parse_args!(["--scales", "1,x"]) end

      assert_raise Mix.Error, fn ->
        Mix.Tasks.Litestash.Bench.parse_args!(["--stores", "redis"])
      end
    end

    test "keeps the stores asked for, in the report's order" do
      config = Mix.Tasks.Litestash.Bench.parse_args!(["--stores", "dets,litestash", "--no-raw"])
      assert config.stores == [LiteStash.Bench.Store.LiteStash, LiteStash.Bench.Store.DETS]
      refute config.raw
    end

    test "--maintenance adds the section, --only maintenance runs it alone" do
      config = Mix.Tasks.Litestash.Bench.parse_args!([])
      refute config.maintenance
      assert config.only == nil
      assert {config.maintenance_n, config.overhead_n} == {1_000_000, 20_000}

      config = Mix.Tasks.Litestash.Bench.parse_args!(["--maintenance", "--quick"])
      assert config.maintenance
      assert config.only == nil
      assert config.raw
      assert {config.maintenance_n, config.overhead_n} == {100_000, 5_000}

      config =
        Mix.Tasks.Litestash.Bench.parse_args!([
          "--only",
          "maintenance",
          "--maintenance-n",
          "2000",
          "--overhead-n",
          "300"
        ])

      assert {config.only, config.maintenance, config.raw} == {:maintenance, true, false}
      assert {config.maintenance_n, config.overhead_n} == {2_000, 300}
    end

    test "--only slices runs the normal-scheduler section alone, --no-slices skips it" do
      config = Mix.Tasks.Litestash.Bench.parse_args!(["--only", "slices"])

      assert {config.only, config.slices, config.maintenance, config.cache, config.raw} ==
               {:slices, true, false, false, false}

      assert Mix.Tasks.Litestash.Bench.parse_args!([]).slices
      refute Mix.Tasks.Litestash.Bench.parse_args!(["--no-slices"]).slices
      refute Mix.Tasks.Litestash.Bench.parse_args!(["--stores", "ets"]).slices
    end

    test "rejects an unknown --only section and non-positive maintenance sizes" do
      assert_raise Mix.Error, fn -> Mix.Tasks.Litestash.Bench.parse_args!(["--only", "w1"]) end

      assert_raise Mix.Error, fn ->
        Mix.Tasks.Litestash.Bench.parse_args!(["--maintenance-n", "0"])
      end

      assert_raise Mix.Error, fn ->
        Mix.Tasks.Litestash.Bench.parse_args!(["--overhead-n", "-1"])
      end
    end

    test "reads scales with underscores and always includes n" do
      config = Mix.Tasks.Litestash.Bench.parse_args!(["--n", "2000", "--scales", "1_000,3000"])
      assert config.scales == [1000, 2000, 3000]
    end
  end

  describe "workloads" do
    @describetag :tmp_dir

    test "every adapter stores and reads back what the workloads write", %{tmp_dir: dir} do
      for store <- Store.all() do
        store_dir = Path.join(dir, String.downcase(store.label()))
        File.mkdir_p!(store_dir)
        handle = store.open(store_dir, [])

        try do
          w1 = Workloads.put_sequential(store, handle, 1..20, :small)
          w2 = Workloads.get_sequential(store, handle, Workloads.shuffled(20))
          w3 = Workloads.put_concurrent(store, handle, 21..60, :kib, 8)
          w4 = Workloads.get_concurrent(store, handle, Enum.to_list(1..60), 8)

          assert {w1.n, w2.n, w3.n, w4.n} == {20, 20, 40, 60}
          assert store.fetch(handle, "user:7") == Workloads.value(:small, 7)
          assert store.fetch(handle, "user:42") == Workloads.value(:kib, 42)
          assert Enum.all?([w1, w2, w3, w4], &(&1.p50_us <= &1.p99_us))
        after
          store.close(handle)
        end
      end
    end

    test "a read of a key that is not stored raises", %{tmp_dir: dir} do
      handle = Store.ETS.open(dir, [])
      assert_raise MatchError, fn -> Workloads.get_sequential(Store.ETS, handle, [1]) end
      Store.ETS.close(handle)
    end

    test "the WAL watch and the probe report numbers", %{tmp_dir: dir} do
      handle = Store.LiteStash.open(dir, [])
      watch = Workloads.start_wal_watch(dir)
      probe = Workloads.start_probe()
      assert Process.info(probe, :priority) == {:priority, :high}
      Workloads.put_sequential(Store.LiteStash, handle, 1..50, :small)
      Process.sleep(30)
      assert is_float(Workloads.stop_probe(probe))

      {:done, high, normal} = Workloads.probed_both(fn -> Process.sleep(30) && :done end)
      assert is_float(high) and is_float(normal)
      assert Workloads.stop_wal_watch(watch) > 0
      Store.LiteStash.close(handle)
    end
  end

  describe "Slices" do
    test "times each call it makes on the caller's scheduler and renders the targets" do
      progress =
        ExUnit.CaptureIO.capture_io(:stderr, fn ->
          send(self(), Slices.run(%{slices_calls: 64, slices_largest: 3_000}))
        end)

      assert progress =~ "normal-scheduler slices: set, map of string keys"
      assert_received %{repeated: repeated, sweeps: sweeps} = result

      # A read is one NIF call on the caller's scheduler (what misses the
      # cache continues on a dirty one, uncounted): exactly one per read.
      reads = Enum.filter(repeated, fn {what, _, _} -> what =~ ~r/^(get|exists\?|ttl)/ end)
      assert length(reads) == 8
      assert Enum.all?(reads, fn {_, d, _} -> d.calls == 64 end)
      assert length(repeated) == 14
      assert Enum.all?(repeated, fn {_, d, _} -> d.calls >= 64 and d.max_cpu_ns > 0 end)
      # W5's shape: 1,024 processes, one write each at this size.
      assert {_, %{calls: w5_calls}, _} =
               List.keyfind(
                 repeated,
                 "set ~100 B map, 1,024 processes x 1 new keys (W5's shape)",
                 0
               )

      assert w5_calls >= 1_024

      assert Enum.map(sweeps, & &1.shape) ==
               ["set, binary", "set, list of integers", "set, list of strings"] ++
                 ["set, map of string keys", "set, list of small maps", "set, nested lists"] ++
                 ["mset, ~100 B pairs", "mset, 5 KB pairs", "compare_and_set, binary to binary"] ++
                 ["set, 3,000-element list"]

      # Ten calls per size (three of the inputs over 1 MiB), each timed.
      assert Enum.all?(sweeps, &(&1.calls >= 3 and &1.worst_p50_ns > 0))
      assert hd(sweeps).sizes == "16-3,000 bytes"

      text = IO.iodata_to_binary(Slices.render(result))
      assert text =~ ~r/^get, cache hit, ~100 B map +64 /m

      assert text =~
               ~r/^slowest input's median call, CPU +\d+\.\d us  \(target <= 100 us\)  (PASS|MISS)$/m

      assert text =~ ~r/^calls over 100 us of CPU +\d\.\d{3} % .* (PASS|MISS)$/m
      # Off again: nothing more is counted.
      {:ok, _} = Application.ensure_all_started(:litestash)
      assert %{calls: 0} = LiteStash.Slices.take()
    end
  end

  describe "Maintenance" do
    test "measures and renders every figure on a tiny store" do
      result =
        ExUnit.CaptureIO.capture_io(:stderr, fn ->
          send(self(), Maintenance.run(%{maintenance_n: 200, overhead_n: 20, procs: 4}))
        end)

      assert result =~ "maintenance: compact"
      assert_received %{store: store} = figures

      assert store.stream.plain.rows == 200
      assert store.stream.live.rows == 200
      assert store.keys_left == 100 + store.backup.writes
      assert store.backup.bytes > 0

      text = IO.iodata_to_binary(Maintenance.render(figures))
      assert text =~ "with a 1 h TTL"
      assert length(figures.ttl) == 4

      assert text =~
               ~r/W1 set seq( +[\d,]+->[\d,]+){4}\n +ratios( \d+\.\d\d){4}; median \d+\.\d\d\dx/

      assert text =~ "after compact/1"
      # Nothing loads a :telemetry module here, so the comparison ran, with
      # the benchmark's stand-in loaded for its "on" rounds only.
      assert length(figures.telemetry) == 4
      refute Code.ensure_loaded?(:telemetry)
    end
  end

  describe "Raw.parse/1" do
    test "ignores lines that are not results" do
      assert Raw.parse("   Compiling x\nraw W2 n=3 ops_per_sec=1.5\n\n") == %{
               "W2" => %{n: 3, ops_per_sec: 1.5, p50_us: nil, p99_us: nil}
             }
    end
  end
end
