defmodule Mix.Tasks.Litestash.Bench do
  @shortdoc "Benchmarks LiteStash against ETS, DETS, Mnesia and raw SQLite in one run"

  @moduledoc """
  Runs the same workloads, in one invocation, against LiteStash, ETS (the
  in-memory upper bound), DETS, Mnesia `disc_copies` and a raw Rust SQLite
  baseline on LiteStash's own 16-file layout, then prints a table of ops/s
  and p50/p99 latency, the targets of issue 3 as ratios with PASS or MISS,
  and what the BEAM, the disk and the memory did meanwhile.

      MIX_ENV=prod mix litestash.bench                  # n = 100,000: about 8 minutes on 2 busy cores
      MIX_ENV=prod mix litestash.bench --quick          # n = 10,000: about 1.5 minutes
      MIX_ENV=prod mix litestash.bench --scales 10000,100000,1000000
      MIX_ENV=prod mix litestash.bench --repeat 3       # best of 3 rounds, for a busy machine
      MIX_ENV=prod mix litestash.bench --only maintenance   # issue 6's figures alone

  Timings on a shared machine are noisy: compare the ratios within one run,
  not numbers across runs. `bench/NOTES.md` records what was measured and
  tuned with it.

  ## Workloads

  Keys are `"user:<i>"`; values the ~100-byte map
  `%{"i" => i, "name" => "user-<i>", "tags" => ["a", "b"], "score" => 1.5}`
  unless said otherwise. Each store starts empty in a fresh temporary
  directory, removed afterwards.

    * W1 - `n` sequential writes of new keys from one process.
    * W2 - a read of each of those `n` keys, in random order, from one process.
    * W3 - `--procs` processes (64) writing `n` other new keys between them.
    * W4 - `--procs` processes reading the W1 keys in random order.
    * W1/W2 again with a 1 KiB string value (`n` keys) and with a list of
      1,536 floats (`--vector-n` keys), each on a fresh store.
    * LiteStash W3 with `synchronous: :normal` and `:full`, back to back,
      each on a fresh store holding `n` keys.
    * W1/W2 at each of `--scales`, on fresh stores.

  With `--maintenance` (or alone, with `--only maintenance`), a section of
  issue 6's maintenance and observability figures for LiteStash follows
  (see `LiteStash.Bench.Maintenance`): W1/W2 with half of the keys carrying
  a one-hour TTL against none, and with a `:telemetry` module loaded (no
  handler) against none, both on fresh stores in interleaved rounds
  (`--overhead-n` keys, 4 interleaved pairs, judged by the median ratio); then, on one store of
  `--maintenance-n` keys, a walk of it with `stream/2` in a fresh process
  (that process's memory), `backup/2` while a writer writes (time and size
  of the copy), and the file and WAL bytes of `info/1` after writing, after
  deleting half of the keys and after `compact/1`. It runs once, after any
  `--repeat` rounds.

  The raw baseline (`native/litestash_core/examples/raw_baseline.rs`, run
  with `cargo run --release`) writes the same keys and values with one
  transaction per write, with 1,000 writes per transaction, and with 4 writes
  per transaction (what W3's 64 callers, each waiting for its own write,
  share per commit of a file on average: 64 / 16), and reads them back in
  random order.

  While W3 runs, a probe process sleeping 1 ms in a loop records how late
  it wakes up (its p99 is reported), and LiteStash's WAL files are sampled
  every 20 ms. The VM's resident memory is read after LiteStash's W1 at
  the largest scale.

  ## Options

    * `--n N` - keys per workload. Default `100000` (`10000` with `--quick`).
    * `--quick` - a short run: `n` 10,000, `--vector-n` 1,000, no other scales.
    * `--scales LIST` - comma-separated key counts for the W1/W2 scale table.
      Default `10000` (none with `--quick`); `n` itself is always in it.
      `1000000` takes several minutes more.
    * `--vector-n N` - keys of the 1,536-float workloads. Default the
      smaller of `n` and 10,000.
    * `--procs P` - processes of W3 and W4. Default `64`.
    * `--repeat R` - runs everything `R` times (fresh stores each time) and
      reports, per store and workload, the round with the most ops/s: on a
      busy machine the least disturbed round is the closest to the truth.
      Default `1`.
    * `--stores LIST` - some of `litestash,queued,ets,dets,mnesia` (`queued`
      is LiteStash with `inline_commits: 0`). Default all.
    * `--no-raw` - skip the raw baseline (it needs cargo).
    * `--out PATH` - also write the report to `PATH`.
    * `--maintenance` - adds the maintenance and observability section.
    * `--only maintenance` - runs only that section (no other stores, no
      raw baseline, no other workloads).
    * `--maintenance-n N` - keys of the store that is streamed, backed up
      and compacted. Default `1000000` (`100000` with `--quick`).
    * `--overhead-n N` - keys of the TTL and telemetry W1/W2 comparisons.
      Default `20000` (`5000` with `--quick`).
  """

  use Mix.Task

  alias LiteStash.Bench.{Maintenance, Raw, Store, Workloads}

  @switches [
    n: :integer,
    quick: :boolean,
    scales: :string,
    vector_n: :integer,
    procs: :integer,
    repeat: :integer,
    stores: :string,
    raw: :boolean,
    out: :string,
    maintenance: :boolean,
    only: :string,
    maintenance_n: :integer,
    overhead_n: :integer
  ]

  @store_names %{
    "litestash" => LiteStash.Bench.Store.LiteStash,
    "queued" => LiteStash.Bench.Store.LiteStashQueued,
    "ets" => LiteStash.Bench.Store.ETS,
    "dets" => LiteStash.Bench.Store.DETS,
    "mnesia" => LiteStash.Bench.Store.Mnesia
  }

  @million 1_000_000

  @impl Mix.Task
  def run(args) do
    config = parse_args!(args)
    Mix.Task.run("app.start")
    # Mnesia logs each stop, and warns when its log dumps fall behind; the
    # report is the output here.
    Logger.configure(level: :error)

    if config.raw, do: Raw.build!()

    report = if config.only != :maintenance, do: measure(config)
    maintenance = if config.maintenance, do: Maintenance.run(config)
    text = IO.iodata_to_binary(render(config, report, maintenance))
    IO.write(text)

    if config.out do
      File.mkdir_p!(Path.dirname(config.out))
      File.write!(config.out, text)
    end
  end

  @doc """
  The run's settings from the command line. Raises `Mix.Error` on an
  unknown option or a bad value.

      iex> config = Mix.Tasks.Litestash.Bench.parse_args!(["--quick"])
      iex> {config.n, config.vector_n, config.scales}
      {10000, 1000, [10000]}
      iex> Mix.Tasks.Litestash.Bench.parse_args!(["--n", "50000"]).scales
      [10000, 50000]
      iex> config = Mix.Tasks.Litestash.Bench.parse_args!(["--only", "maintenance"])
      iex> {config.only, config.maintenance, config.raw, config.maintenance_n, config.overhead_n}
      {:maintenance, true, false, 1000000, 20000}
  """
  @spec parse_args!([String.t()]) :: map()
  def parse_args!(args) do
    {opts, rest, invalid} = OptionParser.parse(args, strict: @switches)

    if rest != [] or invalid != [] do
      Mix.raise(
        "mix litestash.bench: unknown or invalid arguments #{inspect(rest ++ Enum.map(invalid, &elem(&1, 0)))}; " <>
          "see `mix help litestash.bench`"
      )
    end

    quick = Keyword.get(opts, :quick, false)
    n = positive!(opts, :n, if(quick, do: 10_000, else: 100_000))
    vector_n = positive!(opts, :vector_n, min(n, if(quick, do: 1_000, else: 10_000)))
    default_scales = if quick, do: [], else: [10_000]

    scales =
      case opts[:scales] do
        nil -> default_scales
        text -> parse_scales!(text)
      end

    only = parse_only!(opts[:only])

    %{
      n: n,
      vector_n: vector_n,
      procs: positive!(opts, :procs, 64),
      repeat: positive!(opts, :repeat, 1),
      scales: Enum.sort(Enum.uniq([n | scales])),
      stores: parse_stores!(opts[:stores]),
      raw: only == nil and Keyword.get(opts, :raw, true),
      out: opts[:out],
      only: only,
      maintenance: only == :maintenance or Keyword.get(opts, :maintenance, false),
      maintenance_n: positive!(opts, :maintenance_n, if(quick, do: 100_000, else: @million)),
      overhead_n: positive!(opts, :overhead_n, if(quick, do: 5_000, else: 20_000)),
      args: args
    }
  end

  defp parse_only!(nil), do: nil
  defp parse_only!("maintenance"), do: :maintenance

  defp parse_only!(other),
    do: Mix.raise("--only: unknown section #{inspect(other)}; known: maintenance")

  defp positive!(opts, key, default) do
    case Keyword.get(opts, key, default) do
      value when is_integer(value) and value > 0 ->
        value

      value ->
        Mix.raise("--#{String.replace(to_string(key), "_", "-")} must be positive, got #{value}")
    end
  end

  defp parse_scales!(text) do
    text
    |> String.split(",", trim: true)
    |> Enum.map(fn item ->
      case Integer.parse(String.replace(String.trim(item), "_", "")) do
        {value, ""} when value > 0 ->
          value

        _ ->
          Mix.raise(
            "--scales expects positive integers separated by commas, got #{inspect(text)}"
          )
      end
    end)
  end

  defp parse_stores!(nil), do: Store.all()

  defp parse_stores!(text) do
    names = String.split(text, ",", trim: true)

    case Enum.reject(names, &Map.has_key?(@store_names, &1)) do
      [] ->
        Enum.filter(Store.all(), fn store -> store in Enum.map(names, &@store_names[&1]) end)

      unknown ->
        Mix.raise(
          "--stores: unknown #{inspect(unknown)}; known: litestash, queued, ets, dets, mnesia"
        )
    end
  end

  ## Measuring

  # Each workload runs on every store back to back (and on the raw baseline
  # right after them), so that the ratios compare numbers taken moments
  # apart on a machine whose load changes.
  defp measure(config) do
    1..config.repeat
    |> Enum.map(fn round ->
      if config.repeat > 1, do: Workloads.progress("round #{round} of #{config.repeat}")
      measure_once(config)
    end)
    |> best()
  end

  # The best of several rounds, key by key: the highest ops/s of each
  # workload (with that run's latencies), the lowest probe delay, the
  # largest WAL file, the first round's memory.
  defp best([one]), do: one

  defp best([%{ops_per_sec: _} | _] = results), do: Enum.max_by(results, & &1.ops_per_sec)

  defp best([first | _] = rounds) when is_map(first) and not is_struct(first) do
    Map.new(first, fn {key, _} ->
      values = Enum.map(rounds, &Map.get(&1, key))

      value =
        case {key, Enum.reject(values, &is_nil/1)} do
          {_, []} ->
            nil

          {key, present} when key in [:probe_us, :idle_probe_us] ->
            Enum.min(present)

          {key, present} when key in [:wal_w1, :wal_w3, :wal_after_w1, :wal_during] ->
            Enum.max(present)

          {key, [value | _]} when key in [:rss, :order] ->
            value

          {_, [value | _] = present} when is_map(value) ->
            best(present)

          {_, [value | _]} ->
            value
        end

      {key, value}
    end)
  end

  defp measure_once(config) do
    Workloads.progress("probe while idle, 1 s")
    probe = Workloads.start_probe()
    Process.sleep(1_000)
    idle = Workloads.stop_probe(probe)

    {main, raw} = run_main(config)
    kib = run_values(config, :kib, config.n)
    vector = run_values(config, :vector, config.vector_n)

    main =
      Map.new(main, fn {label, result} ->
        {label, Map.merge(result, %{kib: kib[label], vector: vector[label]})}
      end)

    sync = if LiteStash.Bench.Store.LiteStash in config.stores, do: run_sync(config)

    scales =
      for scale <- config.scales, scale != config.n, into: %{} do
        {scale, run_scale(config, scale)}
      end

    %{
      idle_probe_us: idle,
      raw: raw,
      main: main,
      order: Enum.map(config.stores, & &1.label()),
      sync: sync,
      scales: Map.put(scales, config.n, scale_from_main(main, raw))
    }
  end

  defp run_main(config) do
    %{n: n, procs: procs} = config
    order = Workloads.shuffled(n)

    Workloads.with_stores(config.stores, [], fn opened, raw_dir ->
      {w1, w2, raw_w1, raw_w2} = w1_w2(config, opened, raw_dir, n, order, "n = #{int(n)}")

      w3 =
        each(opened, "W3, #{procs} processes", fn store, handle, dir ->
          probe = Workloads.start_probe()
          watch = if litestash?(store), do: Workloads.start_wal_watch(dir)
          w3 = Workloads.put_concurrent(store, handle, (n + 1)..(2 * n), :small, procs)
          probe_us = Workloads.stop_probe(probe)
          %{w3: w3, probe_us: probe_us, wal_w3: watch && Workloads.stop_wal_watch(watch)}
        end)

      raw_batched = raw(config, n, "w1x1000", nil)
      raw_x4 = raw(config, n, "w1x4", nil)

      w4 =
        each(opened, "W4, #{procs} processes", fn store, handle, _ ->
          Workloads.get_concurrent(store, handle, order, procs)
        end)

      main =
        Map.new(w1, fn {label, put} ->
          {label, Map.merge(put, Map.merge(w3[label], %{w2: w2[label], w4: w4[label]}))}
        end)

      raw =
        if config.raw,
          do: %{
            "W1" => raw_w1["W1"],
            "W2" => raw_w2["W2"],
            "W1x1000" => raw_batched["W1x1000"],
            "W1x4" => raw_x4["W1x4"]
          }

      {main, raw}
    end)
  end

  # W1 then W2 of `n` keys on every opened store, each followed by the raw
  # baseline's same workload.
  defp w1_w2(config, opened, raw_dir, n, order, label) do
    w1 = each(opened, "W1 #{label}", &put_watched(&1, &2, &3, n))
    raw_w1 = raw(config, n, "w1", raw_dir)

    w2 =
      each(opened, "W2 #{label}", fn store, handle, _ ->
        Workloads.get_sequential(store, handle, order)
      end)

    {w1, w2, raw_w1, raw(config, n, "w2", raw_dir)}
  end

  # W1 of `n` keys, with the VM's memory before and after it and, for
  # LiteStash, the largest WAL file during it and right after it.
  defp put_watched(store, handle, dir, n) do
    watch = if litestash?(store), do: Workloads.start_wal_watch(dir)
    :erlang.garbage_collect()
    rss_before = Workloads.rss_bytes()
    w1 = Workloads.put_sequential(store, handle, 1..n, :small)
    # The latencies are garbage by now; what the BEAM still holds is data.
    :erlang.garbage_collect()
    rss_after = Workloads.rss_bytes()

    %{
      w1: w1,
      rss: {rss_before, rss_after, :erlang.memory(:total)},
      wal_w1: watch && Workloads.stop_wal_watch(watch),
      wal_after_w1: watch && Enum.max([0 | Workloads.wal_sizes(dir)])
    }
  end

  defp run_values(config, kind, n) do
    order = Workloads.shuffled(n)
    what = if kind == :kib, do: "1 KiB values", else: "1,536-float vectors"

    Workloads.with_stores(config.stores, [], fn opened, _raw_dir ->
      w1 =
        each(opened, "W1 with #{what}, n = #{n}", fn store, handle, _ ->
          Workloads.put_sequential(store, handle, 1..n, kind)
        end)

      w2 =
        each(opened, "W2 with #{what}", fn store, handle, _ ->
          Workloads.get_sequential(store, handle, order)
        end)

      Map.new(w1, fn {label, put} -> {label, %{w1: put, w2: w2[label]}} end)
    end)
  end

  defp run_sync(config) do
    %{n: n, procs: procs} = config
    store = LiteStash.Bench.Store.LiteStash

    for level <- [:normal, :full], into: %{} do
      w3 =
        Workloads.with_stores([store], [synchronous: level], fn [{_, handle, _}], _raw_dir ->
          Workloads.progress(
            "LiteStash W3 with synchronous: #{inspect(level)} (#{n} keys loaded first)"
          )

          Workloads.fill(handle, n)
          probe = Workloads.start_probe()
          w3 = Workloads.put_concurrent(store, handle, (n + 1)..(2 * n), :small, procs)
          Map.put(w3, :probe_us, Workloads.stop_probe(probe))
        end)

      # The same level on raw SQLite at 4 writes per commit, W3's average
      # batch: what the level costs at that batch size.
      raw_x4 =
        if config.raw do
          Workloads.progress("raw SQLite w1x4 with synchronous: #{inspect(level)}")
          Raw.run!(n, "w1x4", nil, level)["W1x4"]
        end

      {level, Map.put(w3, :raw_x4, raw_x4)}
    end
  end

  defp run_scale(config, scale) do
    order = Workloads.shuffled(scale)

    Workloads.with_stores(config.stores, [], fn opened, raw_dir ->
      {w1, w2, raw_w1, raw_w2} =
        w1_w2(config, opened, raw_dir, scale, order, "at #{int(scale)} keys")

      stores =
        Map.new(w1, fn {label, put} ->
          {label,
           %{
             w1: put.w1,
             w2: w2[label],
             rss: put.rss,
             wal_during: put.wal_w1,
             wal_after: put.wal_after_w1
           }}
        end)

      raw = if config.raw, do: %{"W1" => raw_w1["W1"], "W2" => raw_w2["W2"]}
      %{stores: stores, raw: raw}
    end)
  end

  defp scale_from_main(main, raw) do
    stores =
      Map.new(main, fn {label, m} ->
        {label,
         %{w1: m.w1, w2: m.w2, rss: m.rss, wal_during: m.wal_w1, wal_after: m.wal_after_w1}}
      end)

    %{stores: stores, raw: raw}
  end

  defp raw(%{raw: false}, _n, _workload, _dir), do: nil

  defp raw(_config, n, workload, dir) do
    Workloads.progress("raw SQLite #{workload}, n = #{n}")
    Raw.run!(n, workload, dir)
  end

  defp litestash?(store), do: store == LiteStash.Bench.Store.LiteStash

  # Runs `fun` on every opened store in turn: `%{label => result}`.
  defp each(opened, what, fun) do
    Map.new(opened, fn {store, handle, dir} ->
      Workloads.progress("#{store.label()} #{what}")
      {store.label(), fun.(store, handle, dir)}
    end)
  end

  ## The report

  defp render(config, nil, maintenance) do
    [header(config), "\n", Maintenance.render(maintenance)]
  end

  defp render(config, report, maintenance) do
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
      "n = #{int(config.n)} keys, vectors #{int(config.vector_n)}, #{config.procs} processes in W3/W4",
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
      {"W3 sync full / sync normal", sync_ops(report, :full), sync_ops(report, :normal), 0.8}
    ]

    probe = get_in(report, [:main, "LiteStash", :probe_us])

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
      :io_lib.format("~-42s ~10s  (target < 5000 us)  ~s~n", [
        "probe p99 wake-up delay during W3",
        us(probe),
        verdict(probe && probe < 5_000)
      ])
    ]
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

  defp extras(config, report) do
    probes =
      for label <- report.order do
        :io_lib.format("  during ~s W3: ~s us~n", [label, us(report.main[label].probe_us)])
      end

    sync_probe =
      case report.sync do
        nil ->
          []

        sync ->
          :io_lib.format("  during LiteStash W3 sync full: ~s us~n", [us(sync.full.probe_us)])
      end

    [
      "== Responsiveness: p99 wake-up delay of a process sleeping 1 ms ==\n",
      :io_lib.format("  idle: ~s us~n", [us(report.idle_probe_us)]),
      probes,
      sync_probe,
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
      %{rss: {before, after_, beam}} ->
        :io_lib.format(
          "  VM resident memory after LiteStash W1 of ~s keys: ~s (~s before that W1); " <>
            "of it, allocated by the BEAM: ~s, the rest is SQLite and the NIF~n",
          [int(largest), mib(after_), mib(before), mib(beam)]
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
