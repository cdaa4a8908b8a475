defmodule LiteStash.Bench.Cache do
  @moduledoc """
  The value cache's section of `mix litestash.bench`: LiteStash's W2 with
  `cache_size: 0` against raw SQLite point reads on the same 16 files,
  back to back; and the memory of a store that writes `--memory-n` keys
  (1,000,000 by default) and reads them all twice, once from one process
  and once from 64 (so that every pooled reader is opened), against its
  two budgets (`:cache_size` and `:page_cache_size`, the defaults) plus a
  stated overhead.

  Memory is the VM's anonymous resident memory (`RssAnon`), which it
  splits into what SQLite allocated (`sqlite3_memory_used`), what the value
  cache holds, what the BEAM's allocators hold, and the rest. The shard
  files are memory-mapped for reads, and the mapped pages (`RssFile`) are
  the OS's page cache, shared and reclaimable, counted once per connection
  that maps them: they are printed but not held against the budgets.
  """

  alias LiteStash.Bench.{Raw, Workloads}

  @cache_budget 32 * 1024 * 1024
  @page_budget 64 * 1024 * 1024
  # SQLite's state outside the page caches (schema, statements and a
  # 120 KiB lookaside: about 160 KiB per connection, 16 writers and up to
  # 16 x 10 readers, 28 MiB) and the allocators' slack.
  @overhead 32 * 1024 * 1024
  # Readers of the second pass: more than the dirty IO schedulers.
  @readers 64

  @typedoc "What `run/1` measured."
  @type result :: map()

  @doc "Runs the section with the run's `config`."
  @spec run(map()) :: result()
  def run(config) do
    %{cold: cold(config), memory: memory(config.memory_n)}
  end

  defp cold(config) do
    n = config.n
    order = Workloads.shuffled(n)
    store = LiteStash.Bench.Store.LiteStash

    Workloads.with_stores([store], [cache_size: 0], fn [{_, handle, _}], raw_dir ->
      Workloads.progress("LiteStash W1 with cache_size: 0, n = #{int(n)}")
      Workloads.put_sequential(store, handle, 1..n, :small)
      Workloads.progress("LiteStash W2 with cache_size: 0")
      {w2, probe} = Workloads.probed(fn -> Workloads.get_sequential(store, handle, order) end)

      raw =
        if config.raw do
          Workloads.progress("raw SQLite w1 and w2, n = #{int(n)}")
          Raw.run!(n, "w1", raw_dir)
          Raw.run!(n, "w2", raw_dir)["W2"]
        end

      %{w2: w2, probe: probe, raw_w2: raw}
    end)
    |> Map.put(:dirty_w2, dirty_w2(n, order))
  end

  # The same W2 with every miss on a dirty IO scheduler (`nowait_reads:
  # false`), on a store of its own written the same way.
  defp dirty_w2(n, order) do
    store = LiteStash.Bench.Store.LiteStash

    Workloads.with_stores([store], [cache_size: 0, nowait_reads: false], fn [{_, handle, _}],
                                                                            _raw_dir ->
      Workloads.put_sequential(store, handle, 1..n, :small)
      Workloads.progress("LiteStash W2 with cache_size: 0, nowait_reads: false")
      Workloads.probed(fn -> Workloads.get_sequential(store, handle, order) end)
    end)
  end

  defp memory(n) do
    dir =
      Path.join(System.tmp_dir!(), "litestash-bench-mem-#{System.unique_integer([:positive])}")

    File.rm_rf!(dir)
    {:ok, pid} = LiteStash.start_link(data_dir: dir, name: :litestash_bench_memory)
    Process.unlink(pid)

    try do
      before = sample()
      Workloads.progress("memory: writing #{int(n)} keys (mset of 1,000)")

      for chunk <- Stream.chunk_every(1..n, 1_000) do
        :ok =
          LiteStash.mset(
            :litestash_bench_memory,
            Enum.map(chunk, &{Workloads.key(&1), Workloads.value(:small, &1)})
          )
      end

      written = sample()
      Workloads.progress("memory: reading all #{int(n)} keys from one process")
      read_all(1..n)
      Workloads.progress("memory: reading all #{int(n)} keys again, from #{@readers} processes")

      1..@readers
      |> Enum.map(fn first -> Task.async(fn -> read_all(first..n//@readers) end) end)
      |> Task.await_many(:infinity)

      read = sample()
      {:ok, shards} = LiteStash.info(:litestash_bench_memory)

      %{
        n: n,
        before: before,
        written: written,
        read: read,
        value_cache: Enum.sum(Enum.map(shards, & &1.value_cache_bytes)),
        page_cache: Enum.sum(Enum.map(shards, & &1.page_cache_bytes)),
        files: Enum.sum(Enum.map(shards, &(&1.file_bytes + &1.wal_bytes)))
      }
    after
      LiteStash.stop(:litestash_bench_memory)
      File.rm_rf!(dir)
    end
    |> Map.put(:stopped, sample())
  end

  # Each value read is dropped at once: a list of a million results would
  # grow this process's heap by hundreds of MiB, which the VM keeps
  # resident after the collection, and which is not the store's.
  defp read_all(range) do
    Enum.each(range, fn i ->
      {:ok, _} = LiteStash.get(:litestash_bench_memory, Workloads.key(i))
    end)
  end

  # This VM's resident memory by kind (anonymous, file-backed), what SQLite
  # has allocated, and what the BEAM's allocators hold; `nil` without /proc.
  defp sample do
    :erlang.garbage_collect()

    with {:ok, status} <- File.read("/proc/self/status"),
         [_, anon] <- Regex.run(~r/RssAnon:\s+(\d+)\s+kB/, status),
         [_, file] <- Regex.run(~r/RssFile:\s+(\d+)\s+kB/, status) do
      %{
        anon: String.to_integer(anon) * 1024,
        file: String.to_integer(file) * 1024,
        file_once: pss_file(),
        sqlite: LiteStash.Native.sqlite_memory_used(),
        beam: :erlang.memory(:total)
      }
    else
      _ -> nil
    end
  end

  # File-backed memory with each page counted once however many mappings
  # share it (the proportional set size: a page mapped n times counts 1/n
  # in each); 0 without smaps_rollup.
  defp pss_file do
    with {:ok, rollup} <- File.read("/proc/self/smaps_rollup"),
         [_, kib] <- Regex.run(~r/Pss_File:\s+(\d+)\s+kB/, rollup) do
      String.to_integer(kib) * 1024
    else
      _ -> 0
    end
  end

  @doc "The section's text; nothing when it did not run."
  @spec render(result() | nil) :: iodata()
  def render(nil), do: []

  def render(%{cold: cold, memory: memory}) do
    ["\n== Value cache ==\n", cold_lines(cold), memory_lines(memory)]
  end

  defp cold_lines(%{w2: w2, probe: probe, raw_w2: raw, dirty_w2: {dirty, dirty_probe}}) do
    ratio =
      case raw do
        %{ops_per_sec: r} when r > 0 ->
          :io_lib.format("~-42s ~9.2fx  (target >= 0.85x)  ~s~n", [
            "W2 cache_size 0 / raw point reads",
            w2.ops_per_sec / r,
            Workloads.verdict(w2.ops_per_sec / r >= 0.85)
          ])

        _ ->
          "W2 cache_size 0 / raw point reads: not measured (no raw baseline)\n"
      end

    [
      :io_lib.format(
        "  LiteStash W2, cache_size: 0: ~s ops/s (probe p99 ~s us); raw W2: ~s ops/s~n",
        [
          int(round(w2.ops_per_sec)),
          us(probe),
          if(raw, do: int(round(raw.ops_per_sec)), else: "-")
        ]
      ),
      ratio,
      :io_lib.format(
        "  LiteStash W2, cache_size: 0, nowait_reads: false (every miss on a dirty IO scheduler): " <>
          "~s ops/s (probe p99 ~s us)~n",
        [int(round(dirty.ops_per_sec)), us(dirty_probe)]
      ),
      :io_lib.format("~-42s ~9.2fx~n", [
        "W2 cache_size 0, in place / dirty",
        w2.ops_per_sec / max(dirty.ops_per_sec, 1)
      ])
    ]
  end

  defp memory_lines(%{before: %{} = b, written: %{} = w, read: %{} = r} = m) do
    grown = r.anon - b.anon
    limit = @cache_budget + @page_budget + @overhead
    # What SQLite and the value cache hold against the anonymous growth:
    # the rest is the allocators' slack and the BEAM's own.
    owned = r.sqlite - b.sqlite + m.value_cache

    [
      :io_lib.format(
        "  ~s keys written, then read from 1 process and from ~B: anonymous resident memory " <>
          "~s before, ~s after writing, ~s after reading (grew ~s)~n",
        [int(m.n), @readers, mib(b.anon), mib(w.anon), mib(r.anon), mib(grown)]
      ),
      :io_lib.format(
        "  of the growth: SQLite allocated ~s (page caches ~s of a ~s budget, the rest " <>
          "each connection's schema, statements and lookaside), the value cache ~s " <>
          "(budget ~s), the BEAM's allocators ~s, the rest ~s (the allocators' slack, less " <>
          "what earlier workloads freed and this run reused)~n",
        [
          mib(r.sqlite - b.sqlite),
          mib(m.page_cache),
          mib(@page_budget),
          mib(m.value_cache),
          mib(@cache_budget),
          mib(r.beam - b.beam),
          mib(grown - owned - (r.beam - b.beam))
        ]
      ),
      :io_lib.format(
        "  file-backed resident memory ~s, ~s, ~s (~s with each page counted once): the " <>
          "shard files (~s with their WALs) mapped for reads by each connection; the OS's " <>
          "page cache, clean and reclaimable, not held against the budgets~n",
        [mib(b.file), mib(w.file), mib(r.file), mib(r.file_once), mib(m.files)]
      ),
      stopped_line(m),
      :io_lib.format(
        "~-42s ~10s  (target < budgets ~s + ~s overhead = ~s)  ~s~n",
        [
          "anonymous memory grown over the run",
          mib(grown),
          mib(@cache_budget + @page_budget),
          mib(@overhead),
          mib(limit),
          Workloads.verdict(grown < limit)
        ]
      )
    ]
  end

  defp memory_lines(_), do: "  memory: not measured (no /proc)\n"

  defp stopped_line(%{stopped: %{anon: anon, sqlite: sqlite}}) do
    :io_lib.format(
      "  after stop/1: anonymous resident memory ~s, SQLite ~s (the store's memory " <>
        "handed back to the OS with malloc_trim)~n",
      [mib(anon), mib(sqlite)]
    )
  end

  defp stopped_line(_), do: []

  defp int(value), do: Workloads.format_int(value)
  defp us(nil), do: "-"
  defp us(value), do: :erlang.float_to_binary(value / 1, decimals: 1)
  defp mib(bytes), do: :erlang.float_to_binary(bytes / 1_048_576, decimals: 1) <> " MiB"
end
