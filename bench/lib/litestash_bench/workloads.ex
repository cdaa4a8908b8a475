defmodule LiteStash.Bench.Workloads do
  @moduledoc """
  The workloads of the benchmark (`mix litestash.bench`), run against any
  `LiteStash.Bench.Store` adapter, and the probes that watch a run: the
  BEAM's wake-up delay, the size of LiteStash's WAL files, the VM's memory.

  Every operation is timed on its own with `:erlang.monotonic_time/0`; the
  ops/s of a workload is its operation count over the wall time from its
  first operation to its last. Keys and values are built outside the timed
  call but inside the wall time, the same for every store.
  """

  alias LiteStash.Bench.Store

  @typedoc "The value written under each key."
  @type kind :: :small | :kib | :vector

  @typedoc "What one workload measured."
  @type result :: %{
          n: non_neg_integer(),
          ops_per_sec: float(),
          p50_us: float() | nil,
          p99_us: float() | nil
        }

  @kib String.duplicate("x", 1024)
  @vector Enum.map(1..1536, &(&1 / 1536))

  @doc ~S"""
  The key of entry `i`: `"user:#{i}"`.

      iex> LiteStash.Bench.Workloads.key(7)
      "user:7"
  """
  @spec key(pos_integer()) :: String.t()
  def key(i), do: "user:" <> Integer.to_string(i)

  @doc """
  A count with thousands separators; `"-"` for nil.

      iex> LiteStash.Bench.Workloads.format_int(1234567.4)
      "1,234,567"
  """
  @spec format_int(number() | nil) :: String.t()
  def format_int(nil), do: "-"

  def format_int(value) do
    value
    |> round()
    |> Integer.to_string()
    |> String.reverse()
    |> String.replace(~r/(\d{3})(?=\d)/, "\\1,")
    |> String.reverse()
  end

  @doc "How a target line ends."
  @spec verdict(boolean()) :: String.t()
  def verdict(true), do: "PASS"
  def verdict(_), do: "MISS"

  @doc "Writes keys 1..n with small values into the LiteStash store `name`, 1,000 per `mset`."
  @spec fill(atom(), non_neg_integer()) :: :ok
  def fill(name, n) do
    1..n//1
    |> Stream.chunk_every(1_000)
    |> Enum.each(fn ids ->
      :ok = LiteStash.mset(name, Enum.map(ids, &{key(&1), value(:small, &1)}))
    end)
  end

  @doc ~S"""
  The value of entry `i`: `:small` is the ~100-byte map
  `%{"i" => i, "name" => "user-#{i}", "tags" => ["a", "b"], "score" => 1.5}`,
  `:kib` a 1,024-byte string, `:vector` a list of 1,536 floats.

      iex> LiteStash.Bench.Workloads.value(:small, 3)
      %{"i" => 3, "name" => "user-3", "score" => 1.5, "tags" => ["a", "b"]}
      iex> byte_size(LiteStash.Bench.Workloads.value(:kib, 3))
      1024
      iex> length(LiteStash.Bench.Workloads.value(:vector, 3))
      1536
  """
  @spec value(kind(), pos_integer()) :: term()
  def value(:small, i),
    do: %{
      "i" => i,
      "name" => "user-" <> Integer.to_string(i),
      "tags" => ["a", "b"],
      "score" => 1.5
    }

  def value(:kib, _i), do: @kib
  def value(:vector, _i), do: @vector

  @doc "The integers `1..n` in a random order that is the same on every run."
  @spec shuffled(pos_integer()) :: [pos_integer()]
  def shuffled(n) do
    state = :rand.export_seed()
    :rand.seed(:exsss, {20, 24, n})
    order = Enum.shuffle(1..n)
    if state != :undefined, do: :rand.seed(state)
    order
  end

  @doc "W1: writes the entries `ids` one after the other from this process."
  @spec put_sequential(module(), Store.handle(), Enumerable.t(), kind()) :: result()
  def put_sequential(store, handle, ids, kind) do
    timed(fn -> put_each(store, handle, Enum.to_list(ids), kind, []) end)
  end

  @doc "W2: reads the entries `ids` (in the order given) from this process."
  @spec get_sequential(module(), Store.handle(), [pos_integer()]) :: result()
  def get_sequential(store, handle, ids) do
    timed(fn -> get_each(store, handle, ids, []) end)
  end

  @doc """
  W3 and W5: `procs` processes write the entries `ids` between them, each
  its own share (W5: 1,024 processes with 40 keys each).
  """
  @spec put_concurrent(module(), Store.handle(), Enumerable.t(), kind(), pos_integer()) ::
          result()
  def put_concurrent(store, handle, ids, kind, procs) do
    ids
    |> Enum.to_list()
    |> shares(procs)
    |> concurrent(fn share -> put_each(store, handle, share, kind, []) end)
  end

  @doc "W4: `procs` processes read the entries `ids` between them."
  @spec get_concurrent(module(), Store.handle(), [pos_integer()], pos_integer()) :: result()
  def get_concurrent(store, handle, ids, procs) do
    ids
    |> shares(procs)
    |> concurrent(fn share -> get_each(store, handle, share, []) end)
  end

  defp put_each(_store, _handle, [], _kind, latencies), do: latencies

  defp put_each(store, handle, [i | rest], kind, latencies) do
    key = key(i)
    value = value(kind, i)
    start = :erlang.monotonic_time()
    store.put(handle, key, value)
    put_each(store, handle, rest, kind, [:erlang.monotonic_time() - start | latencies])
  end

  defp get_each(_store, _handle, [], latencies), do: latencies

  defp get_each(store, handle, [i | rest], latencies) do
    key = key(i)
    start = :erlang.monotonic_time()
    store.fetch(handle, key)
    get_each(store, handle, rest, [:erlang.monotonic_time() - start | latencies])
  end

  defp shares(ids, procs) do
    size = max(1, div(length(ids) + procs - 1, procs))
    Enum.chunk_every(ids, size)
  end

  defp timed(fun) do
    start = :erlang.monotonic_time()
    latencies = fun.()
    summarize(latencies, :erlang.monotonic_time() - start)
  end

  # The processes are started first and released together, so that the
  # wall time counts the work, not the spawns.
  defp concurrent(shares, work) do
    parent = self()

    pids =
      Enum.map(shares, fn share ->
        spawn_link(fn ->
          receive do
            :go -> send(parent, {:done, self(), work.(share)})
          end
        end)
      end)

    start = :erlang.monotonic_time()
    Enum.each(pids, &send(&1, :go))

    latencies =
      Enum.flat_map(pids, fn pid ->
        receive do
          {:done, ^pid, latencies} -> latencies
        end
      end)

    summarize(latencies, :erlang.monotonic_time() - start)
  end

  @doc """
  Ops/s and the p50 and p99 latencies (in microseconds) of operations that
  took `latencies` (native time units) in `elapsed` (native units) in all.

      iex> one_ms = System.convert_time_unit(1, :millisecond, :native)
      iex> r = LiteStash.Bench.Workloads.summarize(List.duplicate(one_ms, 10), 10 * one_ms)
      iex> {r.n, round(r.ops_per_sec), r.p50_us, r.p99_us}
      {10, 1000, 1000.0, 1000.0}
  """
  @spec summarize([integer()], integer()) :: result()
  def summarize(latencies, elapsed) do
    n = length(latencies)
    seconds = max(System.convert_time_unit(elapsed, :native, :nanosecond), 1) / 1.0e9
    sorted = latencies |> Enum.sort() |> List.to_tuple()

    %{
      n: n,
      ops_per_sec: n / seconds,
      p50_us: percentile_us(sorted, 0.50),
      p99_us: percentile_us(sorted, 0.99)
    }
  end

  defp percentile_us({}, _q), do: nil

  defp percentile_us(sorted, q) do
    index = min(tuple_size(sorted) - 1, max(0, ceil(tuple_size(sorted) * q) - 1))
    System.convert_time_unit(elem(sorted, index), :native, :nanosecond) / 1000
  end

  @doc """
  Starts a process that sleeps 1 ms in a loop and records how late it
  wakes up; stop it with `stop_probe/1`.

  At `:high` priority (the default, as in the scheduler test) the probe
  runs as soon as its timer fires unless a scheduler is held by something
  that does not yield (a NIF, a garbage collection): its lateness is what
  blocks a scheduler. At `:normal` priority it also waits its turn behind
  every runnable process of the workload, so with 64 or 1,024 busy callers
  its lateness is mostly the run queue's length, for any store.
  """
  @spec start_probe(:high | :normal) :: pid()
  def start_probe(priority \\ :high) do
    Process.spawn(fn -> probe([]) end, [:link, priority: priority])
  end

  @doc """
  Runs `fun` with a probe (`start_probe/0`) running; returns `{fun's
  result, the probe's p99 in microseconds}`.
  """
  @spec probed((() -> result)) :: {result, float() | nil} when result: term()
  def probed(fun) do
    probe = start_probe()
    result = fun.()
    {result, stop_probe(probe)}
  end

  @doc """
  Runs `fun` with two probes, at `:high` and at `:normal` priority (see
  `start_probe/1`); returns `{fun's result, the high-priority probe's p99,
  the normal-priority probe's p99}`, in microseconds.
  """
  @spec probed_both((() -> result)) :: {result, float() | nil, float() | nil}
        when result: term()
  def probed_both(fun) do
    high = start_probe(:high)
    normal = start_probe(:normal)
    result = fun.()
    {result, stop_probe(high), stop_probe(normal)}
  end

  @doc "Stops a probe; returns the p99 of its wake-up delays in microseconds."
  @spec stop_probe(pid()) :: float() | nil
  def stop_probe(pid) do
    send(pid, {:stop, self()})

    receive do
      {:probe, ^pid, delays} -> delays |> Enum.sort() |> List.to_tuple() |> percentile_us(0.99)
    end
  end

  defp probe(delays) do
    start = :erlang.monotonic_time()

    receive do
      {:stop, from} -> send(from, {:probe, self(), delays})
    after
      1 ->
        late =
          :erlang.monotonic_time() - start - System.convert_time_unit(1, :millisecond, :native)

        probe([max(late, 0) | delays])
    end
  end

  @doc "The size in bytes of every shard's WAL file under the data dir `dir`."
  @spec wal_sizes(Path.t()) :: [non_neg_integer()]
  def wal_sizes(dir) do
    for path <- Path.wildcard(Path.join([dir, "*", "*.db-wal"])),
        {:ok, %File.Stat{size: size}} <- [File.stat(path)],
        do: size
  end

  @doc """
  Starts a process that samples `wal_sizes/1` of `dir` every 20 ms; stop
  it with `stop_wal_watch/1`.
  """
  @spec start_wal_watch(Path.t()) :: pid()
  def start_wal_watch(dir), do: spawn_link(fn -> wal_watch(dir, 0) end)

  @doc "Stops a WAL watch; returns the largest WAL file it saw, in bytes."
  @spec stop_wal_watch(pid()) :: non_neg_integer()
  def stop_wal_watch(pid) do
    send(pid, {:stop, self()})

    receive do
      {:wal, ^pid, largest} -> largest
    end
  end

  defp wal_watch(dir, largest) do
    largest = Enum.max([largest | wal_sizes(dir)])

    receive do
      {:stop, from} -> send(from, {:wal, self(), largest})
    after
      20 -> wal_watch(dir, largest)
    end
  end

  @doc """
  The resident memory of this VM's OS process in bytes (Linux `VmRSS`, or
  another field of `/proc/self/status` such as `RssFile`), or `nil` where
  `/proc` is not available.
  """
  @spec rss_bytes() :: non_neg_integer() | nil
  @spec rss_bytes(String.t()) :: non_neg_integer() | nil
  def rss_bytes(field \\ "VmRSS") do
    with {:ok, status} <- File.read("/proc/self/status"),
         [_, kib] <- Regex.run(~r/#{field}:\s+(\d+)\s+kB/, status) do
      String.to_integer(kib) * 1024
    else
      _ -> nil
    end
  end

  @doc """
  Opens each of `stores` (with `opts`) in its own directory under a fresh
  temporary directory, runs `fun.(opened, raw_dir)` with `opened` a list of
  `{store, handle, dir}` and `raw_dir` a directory for the raw baseline,
  then closes the stores and removes the whole directory, also when `fun`
  raises.
  """
  @spec with_stores(
          [module()],
          keyword(),
          ([{module(), Store.handle(), Path.t()}], Path.t() ->
             result)
        ) :: result
        when result: term()
  def with_stores(stores, opts, fun) do
    base = Path.join(System.tmp_dir!(), "litestash-bench-#{System.unique_integer([:positive])}")
    File.rm_rf!(base)
    raw_dir = Path.join(base, "raw")

    try do
      opened =
        Enum.map(stores, fn store ->
          dir = Path.join(base, String.downcase(store.label()))
          File.mkdir_p!(dir)
          {store, store.open(dir, opts), dir}
        end)

      try do
        fun.(opened, raw_dir)
      after
        Enum.each(opened, fn {store, handle, _} -> store.close(handle) end)
      end
    after
      File.rm_rf!(base)
    end
  end

  @doc """
  Marks now as the start of the run: `progress/1` prints the time elapsed
  since then.
  """
  @spec start_clock() :: :ok
  def start_clock, do: :persistent_term.put({__MODULE__, :started}, :erlang.monotonic_time())

  @doc """
  Prints a progress line on standard error: `# m:ss text`, with the time
  elapsed since `start_clock/0` (since the first progress line when the
  clock was not started).
  """
  @spec progress(String.t()) :: :ok
  def progress(text) do
    started =
      case :persistent_term.get({__MODULE__, :started}, nil) do
        nil ->
          start_clock()
          :persistent_term.get({__MODULE__, :started})

        started ->
          started
      end

    seconds = System.convert_time_unit(:erlang.monotonic_time() - started, :native, :second)
    IO.puts(:stderr, "# #{elapsed(seconds)} #{text}")
  end

  @doc """
  A duration in seconds as `m:ss` (`h:mm:ss` from an hour on).

      iex> LiteStash.Bench.Workloads.elapsed(75)
      "1:15"
      iex> LiteStash.Bench.Workloads.elapsed(3_725)
      "1:02:05"
  """
  @spec elapsed(non_neg_integer()) :: String.t()
  def elapsed(seconds) when seconds >= 3_600,
    do: "#{div(seconds, 3_600)}:#{pad(div(rem(seconds, 3_600), 60))}:#{pad(rem(seconds, 60))}"

  def elapsed(seconds), do: "#{div(seconds, 60)}:#{pad(rem(seconds, 60))}"

  defp pad(value), do: String.pad_leading(Integer.to_string(value), 2, "0")
end
