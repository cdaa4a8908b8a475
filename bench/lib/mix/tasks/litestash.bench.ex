defmodule Mix.Tasks.Litestash.Bench do
  @shortdoc "Benchmarks LiteStash against ETS, DETS, Mnesia and raw SQLite in one run"

  @options """
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
      raw baseline, no other workloads). `--only slices` likewise runs only
      the normal-scheduler section.
    * `--maintenance-n N` - keys of the store that is streamed, backed up
      and compacted. Default `1000000` (`100000` with `--quick`).
    * `--overhead-n N` - keys of the TTL and telemetry W1/W2 comparisons.
      Default `20000` (`5000` with `--quick`).
    * `--memory-n N` - keys the value cache section writes and reads twice
      to measure memory. Default `1000000`.
    * `--no-cache` - skip the value cache section (it runs only when
      `--stores` has `litestash`).
    * `--no-slices` - skip the normal-scheduler section (it runs only
      when `--stores` has `litestash`).
    * `--help` - prints this list and exits.
  """

  @moduledoc """
  Runs the same workloads, in one invocation, against LiteStash, ETS (the
  in-memory upper bound), DETS, Mnesia `disc_copies` and a raw Rust SQLite
  baseline on LiteStash's own 16-file layout, then prints a table of ops/s
  and p50/p99 latency, its targets as ratios of ops/s with PASS or MISS,
  and what the BEAM, the disk and the memory did meanwhile.

  Run it from the repository's root with `make bench` (`make bench
  ARGS="--quick"` passes options), or from `bench/`:

      MIX_ENV=prod mix litestash.bench                  # n = 100,000: about 8 minutes on 2 busy cores
      MIX_ENV=prod mix litestash.bench --quick          # n = 10,000: about 1.5 minutes
      MIX_ENV=prod mix litestash.bench --scales 10000,100000,1000000
      MIX_ENV=prod mix litestash.bench --repeat 3       # best of 3 rounds, for a busy machine
      MIX_ENV=prod mix litestash.bench --only maintenance   # the maintenance figures alone

  Timings on a shared machine are noisy: compare the ratios within one run,
  not numbers across runs. `bench/NOTES.md` records what was measured and
  tuned with it. Progress goes to standard error, one line per workload and
  store as it starts, with the time elapsed since the start of the run.

  ## Workloads

  Keys are `"user:<i>"`; values the ~100-byte map
  `%{"i" => i, "name" => "user-<i>", "tags" => ["a", "b"], "score" => 1.5}`
  unless said otherwise. Each store starts empty in a fresh temporary
  directory, removed afterwards.

    * W1 - `n` sequential writes of new keys from one process.
    * W2 - a read of each of those `n` keys, in random order, from one
      process, after one untimed pass over them (a hot working set).
    * W3 - `--procs` processes (64) writing `n` other new keys between them.
    * W4 - `--procs` processes reading the W1 keys in random order (hot:
      read once before W2).
    * W5 - 1,024 processes each writing 40 new keys (40,960 writes, keys
      of neither W1 nor W3), whatever `n` is.
    * W1/W2 again with a 1 KiB string value (`n` keys) and with a list of
      1,536 floats (`--vector-n` keys), each on a fresh store; W2 after
      one untimed pass, as above (a vector, over 4 KiB encoded, is never
      cached: its W2 reads the file).
    * LiteStash W3 with `synchronous: :normal` and `:full`, back to back,
      each on a fresh store holding `n` keys.
    * W1/W2 at each of `--scales`, on fresh stores.

  With `--maintenance` (or alone, with `--only maintenance`), a section of
  maintenance and observability figures for LiteStash follows (see
  `LiteStash.Bench.Maintenance`): W1/W2 with half of the keys carrying
  a one-hour TTL against none, and with a `:telemetry` module loaded (no
  handler) against none, both on fresh stores in interleaved rounds
  (`--overhead-n` keys, 4 interleaved pairs, judged by the median ratio); then, on one store of
  `--maintenance-n` keys, a walk of it with `stream/2` in a fresh process
  (that process's memory), `backup/2` while a writer writes (time and size
  of the copy), and the file and WAL bytes of `info/1` after writing, after
  deleting half of the keys and after `compact/1`. It runs once, after any
  `--repeat` rounds.

  The raw baseline (`bench/raw_baseline`, a Cargo workspace of its own,
  built with `cargo build --release`) writes the same keys and
  values with one transaction per write, with 1,000 writes per transaction,
  and with 4 writes per transaction (what W3's 64 callers, each waiting for
  their own write, share per commit of a file on average: 64 / 16), and
  reads them back in random order.

  While W2, W3, W4 and W5 run, a probe process sleeping 1 ms in a loop at
  high priority records how late it wakes up (its p99 is reported per
  store and workload): a call that holds a normal scheduler shows up
  there. A second probe at normal priority shows how long a process waits
  its turn behind the workload's runnable callers. During
  W3 LiteStash's WAL files are sampled every 20 ms. The VM's resident
  memory is read after LiteStash's W1 at the largest scale.

  Then, unless `--no-slices`, the normal-scheduler section
  (`LiteStash.Bench.Slices`) times every LiteStash NIF call that runs on
  the caller's scheduler with `LiteStash.Slices`: cache hits, reads in
  place and the first step of writes, for inputs from a few bytes to a
  10M-element list, against the 100 us bound of the scheduler rule.

  ## Options

  #{@options}
  """

  use Mix.Task

  alias LiteStash.Bench.{Cache, Maintenance, Raw, Report, Slices, Store, Workloads}

  @switches [
    help: :boolean,
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
    overhead_n: :integer,
    memory_n: :integer,
    cache: :boolean,
    slices: :boolean
  ]

  @store_names %{
    "litestash" => LiteStash.Bench.Store.LiteStash,
    "queued" => LiteStash.Bench.Store.LiteStashQueued,
    "ets" => LiteStash.Bench.Store.ETS,
    "dets" => LiteStash.Bench.Store.DETS,
    "mnesia" => LiteStash.Bench.Store.Mnesia
  }

  @million 1_000_000

  # W5: many callers with a few writes each, so that commits batch widely.
  @w5_procs 1_024
  @w5_keys_each 40

  @impl Mix.Task
  def run(args) do
    case parse_args!(args) do
      %{help: true} -> Mix.shell().info(usage())
      config -> bench(config)
    end
  end

  @doc """
  The usage `--help` prints: the command and its options.
  """
  @spec usage() :: String.t()
  def usage do
    """
    Benchmarks LiteStash against ETS, DETS, Mnesia and raw SQLite in one run.

    usage: mix litestash.bench [options]   (from bench/; make bench ARGS="..." from the root)

    #{@options}\
    `mix help litestash.bench` describes the workloads.\
    """
  end

  defp bench(config) do
    Workloads.start_clock()
    Mix.Task.run("app.start")
    # Mnesia logs each stop, and warns when its log dumps fall behind; the
    # report is the output here.
    Logger.configure(level: :error)

    if config.raw, do: Raw.build!()

    report = if config.only == nil, do: measure(config)
    cache = if config.cache, do: Cache.run(config)
    slices = if config.slices, do: Slices.run(config)
    maintenance = if config.maintenance, do: Maintenance.run(config)

    text =
      IO.iodata_to_binary([
        Report.render(config, report, maintenance),
        Cache.render(cache),
        Slices.render(slices)
      ])

    IO.write(text)

    if config.out do
      File.mkdir_p!(Path.dirname(config.out))
      File.write!(config.out, text)
    end
  end

  @doc """
  The run's settings from the command line (`%{help: true}` for `--help`).
  Raises `Mix.Error` on an unknown option or a bad value.

      iex> config = Mix.Tasks.Litestash.Bench.parse_args!(["--quick"])
      iex> {config.n, config.vector_n, config.scales}
      {10000, 1000, [10000]}
      iex> Mix.Tasks.Litestash.Bench.parse_args!(["--n", "50000"]).scales
      [10000, 50000]
      iex> config = Mix.Tasks.Litestash.Bench.parse_args!(["--only", "maintenance"])
      iex> {config.only, config.maintenance, config.raw, config.maintenance_n, config.overhead_n}
      {:maintenance, true, false, 1000000, 20000}
      iex> Mix.Tasks.Litestash.Bench.parse_args!(["--help"])
      %{help: true}
  """
  @spec parse_args!([String.t()]) :: map()
  def parse_args!(args) do
    {opts, rest, invalid} = OptionParser.parse(args, strict: @switches, aliases: [h: :help])

    cond do
      Keyword.get(opts, :help, false) ->
        %{help: true}

      rest != [] or invalid != [] ->
        Mix.raise(
          "mix litestash.bench: unknown or invalid arguments #{inspect(rest ++ Enum.map(invalid, &elem(&1, 0)))}; " <>
            "see mix litestash.bench --help"
        )

      true ->
        config(opts, args)
    end
  end

  defp config(opts, args) do
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
      memory_n: positive!(opts, :memory_n, @million),
      cache:
        only == nil and Keyword.get(opts, :cache, true) and
          LiteStash.Bench.Store.LiteStash in parse_stores!(opts[:stores]),
      slices:
        only == :slices or
          (only == nil and Keyword.get(opts, :slices, true) and
             LiteStash.Bench.Store.LiteStash in parse_stores!(opts[:stores])),
      quick: quick,
      w5_procs: @w5_procs,
      w5_keys_each: @w5_keys_each,
      args: args
    }
  end

  defp parse_only!(nil), do: nil
  defp parse_only!("maintenance"), do: :maintenance
  defp parse_only!("slices"), do: :slices

  defp parse_only!(other),
    do: Mix.raise("--only: unknown section #{inspect(other)}; known: maintenance, slices")

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

          {key, present}
          when key in [
                 :idle_probe_us,
                 :probe_w2,
                 :probe_w3,
                 :probe_w4,
                 :probe_w5,
                 :queued_w2,
                 :queued_w3,
                 :queued_w4,
                 :queued_w5
               ] ->
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
          watch = if litestash?(store), do: Workloads.start_wal_watch(dir)

          {w3, probe, queued} =
            Workloads.probed_both(fn ->
              Workloads.put_concurrent(store, handle, (n + 1)..(2 * n), :small, procs)
            end)

          %{
            w3: w3,
            probe_w3: probe,
            queued_w3: queued,
            wal_w3: watch && Workloads.stop_wal_watch(watch)
          }
        end)

      raw_batched = raw(config, n, "w1x1000", nil)
      raw_x4 = raw(config, n, "w1x4", nil)

      w4 =
        each(opened, "W4, #{procs} processes", fn store, handle, _ ->
          {w4, probe, queued} =
            Workloads.probed_both(fn ->
              Workloads.get_concurrent(store, handle, order, procs)
            end)

          %{w4: w4, probe_w4: probe, queued_w4: queued}
        end)

      w5 = run_w5(config, opened)

      main =
        Map.new(w1, fn {label, put} ->
          {label, Enum.reduce([w2, w3, w4, w5], put, &Map.merge(&2, &1[label]))}
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

  # W5: `w5_procs` processes, each writing `w5_keys_each` new keys, numbered
  # after W3's so that no store has them yet.
  defp run_w5(config, opened) do
    %{n: n, w5_procs: procs, w5_keys_each: each_} = config
    ids = (2 * n + 1)..(2 * n + procs * each_)

    each(opened, "W5, #{int(procs)} processes x #{each_} new keys", fn store, handle, _ ->
      {w5, probe, queued} =
        Workloads.probed_both(fn ->
          Workloads.put_concurrent(store, handle, ids, :small, procs)
        end)

      %{w5: w5, probe_w5: probe, queued_w5: queued}
    end)
  end

  # W1 then W2 of `n` keys on every opened store, each followed by the raw
  # baseline's same workload. A W2 result is `%{w2: result, probe_w2: p99}`.
  defp w1_w2(config, opened, raw_dir, n, order, label) do
    w1 = each(opened, "W1 #{label}", &put_watched(&1, &2, &3, n))
    raw_w1 = raw(config, n, "w1", raw_dir)

    # W2 and W4 measure a hot working set: every store has read the keys once.
    each(opened, "untimed pass over the #{int(n)} keys", fn store, handle, _ ->
      Workloads.get_sequential(store, handle, order)
    end)

    w2 =
      each(opened, "W2 #{label}", fn store, handle, _ ->
        {w2, probe, queued} =
          Workloads.probed_both(fn -> Workloads.get_sequential(store, handle, order) end)

        %{w2: w2, probe_w2: probe, queued_w2: queued}
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
      rss: {rss_before, rss_after, :erlang.memory(:total), Workloads.rss_bytes("RssFile")},
      wal_w1: watch && Workloads.stop_wal_watch(watch),
      wal_after_w1: watch && Enum.max([0 | Workloads.wal_sizes(dir)])
    }
  end

  defp run_values(config, kind, n) do
    order = Workloads.shuffled(n)
    what = if kind == :kib, do: "1 KiB values", else: "1,536-float vectors"

    Workloads.with_stores(config.stores, [], fn opened, _raw_dir ->
      w1 =
        each(opened, "W1 with #{what}, n = #{int(n)}", fn store, handle, _ ->
          Workloads.put_sequential(store, handle, 1..n, kind)
        end)

      # As W2 above: a hot working set, every store has read the keys once.
      each(opened, "untimed pass over the #{what}", fn store, handle, _ ->
        Workloads.get_sequential(store, handle, order)
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
            "LiteStash W3 with synchronous: #{inspect(level)} (#{int(n)} keys loaded first)"
          )

          Workloads.fill(handle, n)

          {w3, probe} =
            Workloads.probed(fn ->
              Workloads.put_concurrent(store, handle, (n + 1)..(2 * n), :small, procs)
            end)

          Map.put(w3, :probe_us, probe)
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
             w2: w2[label].w2,
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
    Workloads.progress("raw SQLite #{workload}, n = #{int(n)}")
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

  defp int(value), do: Workloads.format_int(value)
end
