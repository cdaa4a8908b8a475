defmodule LiteStash.Bench.Maintenance do
  @moduledoc """
  The maintenance and observability figures of the benchmark, for LiteStash
  alone (`mix litestash.bench --maintenance`, or `--only maintenance`):

    * the cost of expiry: W1/W2 with half of the keys carrying a one-hour
      TTL against the same workload without TTLs, on fresh stores, run in
      4 interleaved pairs (no TTL, TTL, no TTL, TTL, ...); the ratio of
      each pair, taken seconds apart, is printed and their median judged,
      so that one disturbed round (this machine switches between speed
      regimes for seconds at a time) does not decide;
    * `LiteStash.backup/2` of a store of `n` keys while a writer keeps
      writing: its time and the size of the copy;
    * the store's file and WAL bytes (`LiteStash.info/1`) after writing `n`
      keys, after deleting half of them, and after `LiteStash.compact/1`;
    * the memory of a fresh process that walks the whole store with
      `LiteStash.stream/2` (`chunk_size: 500`);
    * the cost of telemetry: W1/W2 with a `:telemetry` module loaded (and no
      handler attached) against none, in interleaved pairs the same way.

  The `:telemetry` module is a stand-in compiled at run time (the benchmark
  has no dependency but LiteStash, and the stand-in is part of the benchmark,
  never of LiteStash): its `execute/3` looks the event's handlers up in a
  public named ETS table, as the real library does, finds none and returns.
  It is deleted from the VM afterwards.
  """

  alias LiteStash.Bench.{Store, Workloads}

  @store Store.LiteStash
  @hour 3_600_000
  @chunk 500
  @handlers :litestash_bench_telemetry_handlers

  @typedoc "What `run/1` measured."
  @type result :: map()

  @doc """
  Measures every figure. `config` holds `:maintenance_n` (keys of the
  backup, compact and stream figures), `:overhead_n` (keys of the TTL and
  telemetry W1/W2) and `:procs` (processes deleting keys).
  """
  @spec run(map()) :: result()
  def run(config) do
    %{maintenance_n: n, overhead_n: overhead_n, procs: procs} = config

    %{
      n: n,
      overhead_n: overhead_n,
      ttl: compare(overhead_n, :ttl),
      telemetry: compare(overhead_n, :telemetry),
      store: store_figures(n, procs)
    }
  end

  ## TTL and telemetry: W1/W2, A B A B on fresh stores

  @pairs 4

  # Runs W1/W2 without and with the variant, @pairs times, alternating;
  # keeps every pair.
  defp compare(n, variant) do
    if variant == :telemetry and Code.ensure_loaded?(:telemetry) do
      :already_loaded
    else
      for pair <- 1..@pairs do
        for on? <- [false, true], into: %{} do
          Workloads.progress(
            "#{variant} #{if on?, do: "on", else: "off"}, W1/W2 of #{n} keys (#{pair}/#{@pairs})"
          )

          {if(on?, do: :on, else: :off), variant_round(n, variant, on?)}
        end
      end
    end
  end

  defp variant_round(n, :ttl, ttl?) do
    with_store(fn name, _dir ->
      w1 = timed_puts(name, n, fn i -> if ttl? and rem(i, 2) == 0, do: [ttl: @hour], else: [] end)
      %{w1: w1, w2: Workloads.get_sequential(@store, name, Workloads.shuffled(n))}
    end)
  end

  defp variant_round(n, :telemetry, false), do: plain_w1_w2(n, false)

  defp variant_round(n, :telemetry, true) do
    load_telemetry!()

    try do
      plain_w1_w2(n, true)
    after
      unload_telemetry()
    end
  end

  defp plain_w1_w2(n, telemetry?) do
    with_store(fn name, _dir ->
      # The store decides at its start whether it calls :telemetry; what
      # is measured is the library loaded (or not) with no handler attached.
      ^telemetry? = LiteStash.Telemetry.enabled?()
      if telemetry?, do: [] = apply(:telemetry, :list_handlers, [[:litestash]])
      w1 = Workloads.put_sequential(@store, name, 1..n, :small)
      %{w1: w1, w2: Workloads.get_sequential(@store, name, Workloads.shuffled(n))}
    end)
  end

  # W1 with per-key options, timed like `Workloads.put_sequential/4`.
  defp timed_puts(name, n, opts_of) do
    start = :erlang.monotonic_time()
    latencies = put_each(name, 1, n, opts_of, [])
    Workloads.summarize(latencies, :erlang.monotonic_time() - start)
  end

  defp put_each(_name, i, n, _opts_of, latencies) when i > n, do: latencies

  defp put_each(name, i, n, opts_of, latencies) do
    key = Workloads.key(i)
    value = Workloads.value(:small, i)
    opts = opts_of.(i)
    start = :erlang.monotonic_time()
    :ok = LiteStash.set(name, key, value, opts)
    put_each(name, i + 1, n, opts_of, [:erlang.monotonic_time() - start | latencies])
  end

  @doc """
  Compiles and loads a minimal `:telemetry` module whose `execute/3` looks
  the event up in a public named ETS table of handlers (empty here) and
  calls each one, like the real library. Raises if `:telemetry` is already
  loaded.
  """
  @spec load_telemetry!() :: :ok
  def load_telemetry! do
    if Code.ensure_loaded?(:telemetry), do: raise("a :telemetry module is already loaded")

    if :ets.whereis(@handlers) == :undefined do
      :ets.new(@handlers, [:bag, :public, :named_table, read_concurrency: true])
    end

    Code.compile_string("""
    defmodule :telemetry do
      @moduledoc false
      def list_handlers(prefix) do
        for {event, fun, config} <- :ets.tab2list(#{inspect(@handlers)}),
            List.starts_with?(event, prefix),
            do: %{event_name: event, function: fun, config: config}
      end

      def execute(event, measurements, metadata) do
        for {_event, fun, config} <- :ets.lookup(#{inspect(@handlers)}, event) do
          fun.(event, measurements, metadata, config)
        end

        :ok
      end
    end
    """)

    true = LiteStash.Telemetry.enabled?()
    :ok
  end

  @doc "Removes the `:telemetry` module of `load_telemetry!/0` from the VM."
  @spec unload_telemetry() :: :ok
  def unload_telemetry do
    :code.purge(:telemetry)
    :code.delete(:telemetry)
    :code.purge(:telemetry)
    false = LiteStash.Telemetry.enabled?()
    :ok
  end

  ## Backup, compact and stream on one store of n keys

  defp store_figures(n, procs) do
    with_store(fn name, dir ->
      Workloads.progress("maintenance: writing #{n} keys with mset, 1,000 per call")
      {fill_us, :ok} = :timer.tc(fn -> Workloads.fill(name, n) end)
      written = bytes(name)

      Workloads.progress("maintenance: stream of the whole store in a fresh process")
      stream = stream_memory(name)

      Workloads.progress("maintenance: backup while a writer writes")
      backup = backup(name, dir)

      Workloads.progress("maintenance: deleting half of the keys, #{procs} processes")
      {delete_us, :ok} = :timer.tc(fn -> delete_half(name, n, procs) end)
      deleted = bytes(name)

      Workloads.progress("maintenance: compact")
      {compact_us, :ok} = :timer.tc(fn -> :ok = LiteStash.compact(name) end)
      compacted = bytes(name)

      %{
        fill_us: fill_us,
        stream: stream,
        backup: backup,
        delete_us: delete_us,
        compact_us: compact_us,
        bytes: %{written: written, deleted: deleted, compacted: compacted},
        keys_left: keys(name)
      }
    end)
  end

  # `{file_bytes, wal_bytes}` summed over the shards.
  defp bytes(name) do
    {:ok, shards} = LiteStash.info(name)

    {Enum.sum(Enum.map(shards, & &1.file_bytes)), Enum.sum(Enum.map(shards, & &1.wal_bytes))}
  end

  defp keys(name) do
    {:ok, shards} = LiteStash.info(name)
    Enum.sum(Enum.map(shards, & &1.keys))
  end

  # Walks the store twice, each time in a fresh process that samples its
  # own memory every `@chunk` rows: once as is (heap and garbage), once
  # collecting its garbage before each sample (what it keeps alive).
  defp stream_memory(name) do
    %{
      plain: walk(name, false),
      live: walk(name, true),
      keys: keys(name)
    }
  end

  defp walk(name, gc?) do
    parent = self()

    {pid, ref} =
      spawn_monitor(fn ->
        start = memory()

        {rows, peak} =
          name
          |> LiteStash.stream(chunk_size: @chunk)
          |> Enum.reduce({0, start}, fn _pair, {rows, peak} ->
            {rows + 1, if(rem(rows, @chunk) == 0, do: max(peak, sample(gc?)), else: peak)}
          end)

        final = sample(gc?)

        send(
          parent,
          {:walk, self(), %{rows: rows, start: start, peak: max(peak, final), end: final}}
        )
      end)

    receive do
      {:walk, ^pid, result} ->
        Process.demonitor(ref, [:flush])
        result

      {:DOWN, ^ref, :process, ^pid, reason} ->
        raise "the stream process failed: #{inspect(reason)}"
    end
  end

  defp sample(false), do: memory()

  defp sample(true) do
    :erlang.garbage_collect()
    memory()
  end

  defp memory do
    {:memory, bytes} = Process.info(self(), :memory)
    bytes
  end

  # Backs the store up into `dir`/../backup while a process writes new keys
  # one at a time; returns the time, the copy's size and the writes made
  # meanwhile.
  defp backup(name, dir) do
    dest = Path.join(Path.dirname(dir), "backup")
    writer = spawn_link(fn -> write_loop(name, 1) end)
    {backup_us, :ok} = :timer.tc(fn -> :ok = LiteStash.backup(name, dest) end)
    send(writer, {:stop, self()})

    writes =
      receive do
        {:writes, ^writer, count} -> count
      end

    size = dir_bytes(dest)
    File.rm_rf!(dest)
    %{us: backup_us, bytes: size, writes: writes}
  end

  defp write_loop(name, i) do
    receive do
      {:stop, from} -> send(from, {:writes, self(), i - 1})
    after
      0 ->
        :ok = LiteStash.set(name, "writer:" <> Integer.to_string(i), i)
        write_loop(name, i + 1)
    end
  end

  defp dir_bytes(dir) do
    for path <- Path.wildcard(Path.join(dir, "**"), match_dot: true),
        {:ok, %File.Stat{type: :regular, size: size}} <- [File.stat(path)],
        reduce: 0,
        do: (total -> total + size)
  end

  # Deletes the even keys of 1..n, `procs` processes each its own share.
  defp delete_half(name, n, procs) do
    2..n//2
    |> Enum.chunk_every(max(1, div(div(n, 2) + procs - 1, procs)))
    |> Enum.map(fn share ->
      Task.async(fn -> Enum.each(share, &(:ok = LiteStash.delete(name, Workloads.key(&1)))) end)
    end)
    |> Task.await_many(:infinity)

    :ok
  end

  # Opens a fresh LiteStash store in a temporary directory, runs
  # `fun.(name, dir)`, closes it and removes the directory.
  defp with_store(fun) do
    Workloads.with_stores([@store], [], fn [{_, name, dir}], _raw_dir -> fun.(name, dir) end)
  end

  ## The report

  @doc "The report's section of what `run/1` measured."
  @spec render(result()) :: iodata()
  def render(result) do
    [
      "== Maintenance and observability (LiteStash) ==\n",
      overhead(
        "expiry: 50% of keys with a 1 h TTL vs none",
        "TTL",
        result.ttl,
        result.overhead_n,
        0.8
      ),
      overhead(
        "telemetry: :telemetry loaded, no handler, vs not loaded",
        "telemetry",
        result.telemetry,
        result.overhead_n,
        0.97
      ),
      store_lines(result)
    ]
  end

  defp overhead(title, _label, :already_loaded, _n, _goal) do
    "#{title}: not measured, a :telemetry module was already loaded\n"
  end

  defp overhead(title, label, pairs, n, goal) when is_list(pairs) do
    [
      "#{title}, n = #{int(n)}, #{length(pairs)} interleaved pairs (ops/s without -> with #{label}):\n",
      for {workload, key} <- [{"W1 set seq", :w1}, {"W2 get random", :w2}] do
        ratios = Enum.map(pairs, &(&1.on[key].ops_per_sec / &1.off[key].ops_per_sec))
        median = median(ratios)

        [
          :io_lib.format("  ~-14s", [workload]),
          Enum.map(pairs, fn pair ->
            :io_lib.format(" ~s->~s", [
              int(pair.off[key].ops_per_sec),
              int(pair.on[key].ops_per_sec)
            ])
          end),
          "\n",
          :io_lib.format("  ~-14s ratios ~s; median ~.3fx (target >= ~.2fx)  ~s~n", [
            "",
            Enum.map_join(ratios, " ", &:erlang.float_to_binary(&1, decimals: 2)),
            median,
            goal,
            verdict(median >= goal)
          ])
        ]
      end
    ]
  end

  @doc """
  The median of a non-empty list of numbers (the mean of the middle two
  when the count is even).

      iex> LiteStash.Bench.Maintenance.median([0.5, 0.25, 2.0, 1.0])
      0.75
      iex> LiteStash.Bench.Maintenance.median([3, 1, 2])
      2
  """
  @spec median([number(), ...]) :: number()
  def median(numbers) do
    sorted = Enum.sort(numbers)
    count = length(sorted)
    middle = div(count, 2)

    if rem(count, 2) == 1,
      do: Enum.at(sorted, middle),
      else: (Enum.at(sorted, middle - 1) + Enum.at(sorted, middle)) / 2
  end

  defp store_lines(%{n: n, store: s}) do
    {w_file, w_wal} = s.bytes.written
    {d_file, d_wal} = s.bytes.deleted
    {c_file, c_wal} = s.bytes.compacted

    [
      "store of #{int(n)} keys (~100-byte values), written with mset in #{secs(s.fill_us)}:\n",
      :io_lib.format(
        "  backup/2: ~s for a copy of ~s, while a writer made ~s sets~n",
        [secs(s.backup.us), mib(s.backup.bytes), int(s.backup.writes)]
      ),
      stream_lines(s.stream),
      "  file bytes (file + WAL, from info/1):\n",
      bytes_line("after writing #{int(n)} keys", w_file, w_wal),
      bytes_line("after deleting #{int(div(n, 2))} (#{secs(s.delete_us)})", d_file, d_wal),
      bytes_line("after compact/1 (#{secs(s.compact_us)})", c_file, c_wal),
      "  keys left: #{int(s.keys_left)} (#{int(n - div(n, 2))} + the backup writer's #{int(s.backup.writes)})\n"
    ]
  end

  defp stream_lines(%{plain: plain, live: live, keys: keys}) do
    [
      :io_lib.format(
        "  stream/2 (chunk_size ~B) of all ~s keys, in a fresh process (memory sampled every ~B rows):~n",
        [@chunk, int(keys), @chunk]
      ),
      walk_line("as is", plain),
      walk_line("with a GC before each sample", live)
    ]
  end

  defp walk_line(what, walk) do
    :io_lib.format(
      "    ~-30s ~s rows; process memory ~s at start, ~s peak, ~s at the end~n",
      [what, int(walk.rows), kib(walk.start), kib(walk.peak), kib(walk.end)]
    )
  end

  defp bytes_line(what, file, wal) do
    :io_lib.format("    ~-36s ~12s  (file ~s, WAL ~s)~n", [
      what,
      mib(file + wal),
      mib(file),
      mib(wal)
    ])
  end

  defp verdict(pass?), do: Workloads.verdict(pass?)

  defp int(value), do: Workloads.format_int(value)

  defp secs(us), do: :erlang.float_to_binary(us / 1.0e6, decimals: 2) <> " s"
  defp mib(bytes), do: :erlang.float_to_binary(bytes / 1_048_576, decimals: 1) <> " MiB"
  defp kib(bytes), do: :erlang.float_to_binary(bytes / 1024, decimals: 1) <> " KiB"
end
