defmodule LiteStash.Bench.Report do
  @moduledoc """
  The text `mix litestash.bench` prints: the workloads' table, the W1/W2
  scale table, the targets (ratios of ops/s within the run, and the
  probe's wake-up delays) with PASS or MISS, and what the BEAM, the disk and
  the memory did meanwhile.
  """

  alias LiteStash.Bench.{Maintenance, Workloads}

  @million 1_000_000

  # LiteStash's probe p99 per workload, in microseconds: what a 1 ms sleeper
  # may be late by while LiteStash works.
  @probe_targets [
    {"W2", :probe_w2, 2_000},
    {"W3", :probe_w3, 5_000},
    {"W4", :probe_w4, 2_000},
    {"W5", :probe_w5, 2_000}
  ]

  @doc """
  The report of a run: `config` as `Mix.Tasks.Litestash.Bench.parse_args!/1`
  made it, `report` what the workloads measured (`nil` when only the
  maintenance section ran), `maintenance` what `Maintenance.run/1` measured
  (`nil` when it did not run).
  """
  @spec render(map(), map() | nil, Maintenance.result() | nil) :: iodata()
  def render(config, nil, nil), do: header(config)

  def render(config, nil, maintenance) do
    [header(config), "\n", Maintenance.render(maintenance)]
  end

  def render(config, report, maintenance) do
    [
      header(config),
      "\n",
      main_table(config, report),
      "\n",
      scale_table(config, report),
      "\n",
      targets(config, report),
      "\n",
      extras(config, report),
      if(maintenance, do: ["\n", Maintenance.render(maintenance)], else: [])
    ]
  end

  defp header(config) do
    {os_family, os_name} = :os.type()

    [
      "LiteStash benchmark: mix litestash.bench #{Enum.join(config.args, " ")}\n",
      sizes(config),
      "machine: #{:erlang.system_info(:logical_processors_available) |> cores()} logical CPUs, ",
      "#{System.schedulers_online()} schedulers, OTP #{:erlang.system_info(:otp_release)}, ",
      "Elixir #{System.version()}, #{os_family}/#{os_name}, #{System.tmp_dir!()}\n"
    ]
  end

  defp sizes(%{only: :maintenance} = config) do
    "maintenance n = #{int(config.maintenance_n)} keys, TTL/telemetry n = #{int(config.overhead_n)}\n"
  end

  defp sizes(config) do
    [
      "n = #{int(config.n)} keys, vectors #{int(config.vector_n)}, #{config.procs} processes in W3/W4, ",
      "W5 #{int(config.w5_procs)} processes x #{config.w5_keys_each} keys",
      if(config.repeat > 1, do: ", best of #{config.repeat} rounds", else: ""),
      if(config.maintenance,
        do:
          "; maintenance n = #{int(config.maintenance_n)}, TTL/telemetry n = #{int(config.overhead_n)}\n",
        else: "\n"
      )
    ]
  end

  defp cores(:unknown), do: "?"
  defp cores(n), do: Integer.to_string(n)

  @columns "~-20s ~-10s ~10s ~12s ~10s ~10s~n"

  defp line(workload, store, result) do
    :io_lib.format(@columns, [
      workload,
      store,
      int(result.n),
      int(result.ops_per_sec),
      us(result.p50_us),
      us(result.p99_us)
    ])
  end

  defp main_table(config, report) do
    rows = [
      {"W1 set seq", :w1},
      {"W2 get random", :w2},
      {"W3 set #{config.procs} procs", :w3},
      {"W4 get #{config.procs} procs", :w4},
      {"W5 set #{int(config.w5_procs)} procs", :w5},
      {"W1 set 1KiB", [:kib, :w1]},
      {"W2 get 1KiB", [:kib, :w2]},
      {"W1 set vec1536", [:vector, :w1]},
      {"W2 get vec1536", [:vector, :w2]}
    ]

    body =
      for {title, path} <- rows do
        stores =
          for label <- report.order,
              do: line(title, label, get_in(report.main[label], List.wrap(path)))

        raw =
          case {report.raw, path} do
            {nil, _} ->
              []

            {raw, :w1} ->
              [
                line(title, "raw 1/txn", raw["W1"]),
                line(title, "raw 1k/txn", raw["W1x1000"]),
                line(title, "raw 4/txn", raw["W1x4"])
              ]

            {raw, :w2} ->
              [line(title, "raw", raw["W2"])]

            _ ->
              []
          end

        [stores, raw]
      end

    sync =
      case report.sync do
        nil ->
          []

        sync ->
          [
            line("W3 sync normal", "LiteStash", sync.normal),
            line("W3 sync full", "LiteStash", sync.full),
            for {title, level} <- [{"W3 sync normal", :normal}, {"W3 sync full", :full}],
                raw = sync[level].raw_x4 do
              line(title, "raw 4/txn", raw)
            end
          ]
      end

    [
      "== Workloads (ops/s; latency per operation in microseconds) ==\n",
      :io_lib.format(@columns, ["workload", "store", "n", "ops/s", "p50 us", "p99 us"]),
      body,
      sync
    ]
  end

  defp scale_table(config, report) do
    scales = config.scales
    header = IO.iodata_to_binary(["~-12s ~-4s", Enum.map(scales, fn _ -> " ~12s" end), "~n"])

    rows =
      for label <- report.order ++ raw_labels(report), workload <- [:w1, :w2] do
        cells = Enum.map(scales, &scale_cell(report.scales[&1], label, workload))
        :io_lib.format(header, [label, workload |> to_string() |> String.upcase() | cells])
      end

    [
      "== W1/W2 by number of keys (ops/s) ==\n",
      :io_lib.format(header, ["store", "" | Enum.map(scales, &int/1)]),
      rows
    ]
  end

  defp raw_labels(%{raw: nil}), do: []
  defp raw_labels(_), do: ["raw 1/txn"]

  defp scale_cell(%{raw: raw}, "raw 1/txn", workload) do
    case raw do
      nil -> "-"
      raw -> int(raw[raw_name(workload)].ops_per_sec)
    end
  end

  defp scale_cell(%{stores: stores}, label, workload) do
    case stores[label] do
      nil -> "-"
      result -> int(result[workload].ops_per_sec)
    end
  end

  defp raw_name(:w1), do: "W1"
  defp raw_name(:w2), do: "W2"

  defp ops(report, label, path) do
    case report.main[label] do
      nil -> nil
      result -> get_in(result, List.wrap(path)).ops_per_sec
    end
  end

  defp raw_ops(%{raw: nil}, _name), do: nil
  defp raw_ops(%{raw: raw}, name), do: raw[name].ops_per_sec

  defp targets(_config, report) do
    ls = &ops(report, "LiteStash", &1)

    ratios = [
      {"W1 LiteStash / DETS", ls.(:w1), ops(report, "DETS", :w1), 1.5},
      {"W1 LiteStash / raw 1 write per txn", ls.(:w1), raw_ops(report, "W1"), 0.8},
      {"W2 LiteStash / DETS", ls.(:w2), ops(report, "DETS", :w2), 2.0},
      {"W2 LiteStash / raw point reads", ls.(:w2), raw_ops(report, "W2"), 0.7},
      {"W3 LiteStash / LiteStash W1", ls.(:w3), ls.(:w1), 2.5},
      {"W3 LiteStash / Mnesia W3", ls.(:w3), ops(report, "Mnesia", :w3), 1.5},
      {"W3 LiteStash / raw 1,000 writes per txn", ls.(:w3), raw_ops(report, "W1x1000"), 0.6},
      {"W4 LiteStash / DETS", ls.(:w4), ops(report, "DETS", :w4), 2.0},
      {"W2 LiteStash / Mnesia W2 (hot)", ls.(:w2), ops(report, "Mnesia", :w2), 0.7},
      {"W4 LiteStash / Mnesia W4 (hot)", ls.(:w4), ops(report, "Mnesia", :w4), 0.5},
      {"W5 LiteStash / Mnesia W5", ls.(:w5), ops(report, "Mnesia", :w5), 1.5},
      {"W3 sync full / sync normal", sync_ops(report, :full), sync_ops(report, :normal), 0.8}
    ]

    [
      "== Targets (ratios of ops/s within this run) ==\n",
      Enum.map(ratios, fn {name, a, b, goal} -> ratio_line(name, a, b, goal) end),
      # Not targets: what W3's batch size gives raw SQLite on one thread.
      # 64 callers, each waiting for its write, share 64 / 16 = 4 writes per
      # commit of a file on average.
      info_line(
        "W3 LiteStash / raw 4 writes per txn",
        ls.(:w3),
        raw_ops(report, "W1x4"),
        "64 callers make batches of about 4 per file"
      ),
      info_line(
        "raw 4 writes per txn, sync full / normal",
        sync_raw_ops(report, :full),
        sync_raw_ops(report, :normal),
        "what :full costs at W3's batch size"
      ),
      for {workload, key, limit} <- @probe_targets do
        probe_line(workload, get_in(report, [:main, "LiteStash", key]), limit)
      end
    ]
  end

  defp probe_line(workload, probe, limit) do
    :io_lib.format("~-42s ~10s  (target < ~B us)  ~s~n", [
      "high-priority probe p99 during #{workload}",
      us(probe),
      limit,
      if(probe, do: verdict(probe < limit), else: "not measured")
    ])
  end

  defp sync_raw_ops(%{sync: nil}, _level), do: nil

  defp sync_raw_ops(%{sync: sync}, level) do
    case sync[level].raw_x4 do
      nil -> nil
      raw -> raw.ops_per_sec
    end
  end

  defp sync_ops(%{sync: nil}, _level), do: nil
  defp sync_ops(%{sync: sync}, level), do: sync[level].ops_per_sec

  defp ratio_line(name, a, b, goal) when is_number(a) and is_number(b) and b > 0 do
    ratio = a / b

    :io_lib.format("~-42s ~9.2fx  (target >= ~.1fx)  ~s~n", [
      name,
      ratio,
      goal / 1,
      verdict(ratio >= goal)
    ])
  end

  defp ratio_line(name, _a, _b, goal) do
    :io_lib.format("~-42s ~10s  (target >= ~.1fx)  not measured~n", [name, "-", goal / 1])
  end

  defp info_line(name, a, b, note) when is_number(a) and is_number(b) and b > 0 do
    :io_lib.format("~-42s ~9.2fx  (~s)~n", [name, a / b, note])
  end

  defp info_line(_name, _a, _b, _note), do: []

  defp verdict(pass?), do: Workloads.verdict(pass?)

  @probe_columns "  ~-12s ~10s ~10s ~10s ~10s~n"

  defp probe_rows(report, keys) do
    for label <- report.order do
      m = report.main[label]
      :io_lib.format(@probe_columns, [label | Enum.map(keys, &us(Map.get(m, &1)))])
    end
  end

  defp extras(config, report) do
    probes = probe_rows(report, [:probe_w2, :probe_w3, :probe_w4, :probe_w5])
    queued = probe_rows(report, [:queued_w2, :queued_w3, :queued_w4, :queued_w5])

    sync_probe =
      case report.sync do
        nil ->
          []

        sync ->
          :io_lib.format("  during LiteStash W3 sync full: ~s us~n", [us(sync.full.probe_us)])
      end

    [
      "== Responsiveness: p99 wake-up delay (us) of a process sleeping 1 ms ==\n",
      "  at high priority: late only while a scheduler is held (a NIF, a GC)\n",
      :io_lib.format("  idle: ~s us~n", [us(report.idle_probe_us)]),
      :io_lib.format(@probe_columns, ["during", "W2", "W3", "W4", "W5"]),
      probes,
      sync_probe,
      "  at normal priority: also waiting its turn behind the workload's runnable processes\n",
      :io_lib.format(@probe_columns, ["during", "W2", "W3", "W4", "W5"]),
      queued,
      "\n== Disk and memory (LiteStash) ==\n",
      wal_lines(report),
      rss_line(config, report)
    ]
  end

  defp wal_lines(report) do
    w3 =
      case get_in(report, [:main, "LiteStash", :wal_w3]) do
        nil -> []
        bytes -> :io_lib.format("  largest WAL file seen during W3: ~s~n", [mib(bytes)])
      end

    million =
      case get_in(report, [:scales, @million, :stores, "LiteStash"]) do
        %{wal_during: during, wal_after: after_} when is_integer(during) ->
          :io_lib.format(
            "  largest WAL file seen during W1 of 1,000,000 keys: ~s; after it: ~s~n",
            [mib(during), mib(after_)]
          )

        _ ->
          "  WAL after 1,000,000 writes: not measured (run with --scales 1000000)\n"
      end

    [w3, million]
  end

  defp rss_line(config, report) do
    largest = Enum.max(config.scales)

    case get_in(report, [:scales, largest, :stores, "LiteStash"]) do
      %{rss: {before, after_, beam, file}} ->
        :io_lib.format(
          "  VM resident memory after LiteStash W1 of ~s keys: ~s (~s before that W1); " <>
            "of it, allocated by the BEAM: ~s, file-backed (the shard files mapped for " <>
            "reads: the OS's page cache) ~s, the rest is SQLite and the NIF~n",
          [int(largest), mib(after_), mib(before), mib(beam), mib(file)]
        )

      _ ->
        ""
    end
  end

  defp int(value), do: Workloads.format_int(value)

  defp us(nil), do: "-"
  defp us(value), do: :erlang.float_to_binary(value / 1, decimals: 1)

  defp mib(nil), do: "-"
  defp mib(bytes), do: :erlang.float_to_binary(bytes / 1_048_576, decimals: 1) <> " MiB"
end
