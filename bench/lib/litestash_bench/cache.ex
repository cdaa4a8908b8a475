defmodule LiteStash.Bench.Cache do
  @moduledoc """
  The value cache's section of `mix litestash.bench`: LiteStash's W2 with
  `cache_size: 0` against raw SQLite point reads on the same 16 files,
  back to back; and the memory of a store that writes `--memory-n` keys
  (1,000,000 by default) and reads them all twice, against its two
  budgets (`:cache_size` and `:page_cache_size`, the defaults) plus a
  stated overhead.

  Memory is the VM's anonymous resident memory (`RssAnon`): the shard
  files are memory-mapped for reads, and the mapped pages (`RssFile`) are
  the OS's page cache, shared and reclaimable, so they are printed but not
  held against the budgets.
  """

  alias LiteStash.Bench.{Raw, Workloads}

  @cache_budget 32 * 1024 * 1024
  @page_budget 64 * 1024 * 1024
  # SQLite's per-connection state and statement caches (16 writers and up
  # to 16 x 10 readers), the allocators' slack, and what the BEAM itself
  # holds while 1,000,000 keys go through it.
  @overhead 64 * 1024 * 1024

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
  end

  defp memory(n) do
    dir =
      Path.join(System.tmp_dir!(), "litestash-bench-mem-#{System.unique_integer([:positive])}")

    File.rm_rf!(dir)
    {:ok, pid} = LiteStash.start_link(data_dir: dir, name: :litestash_bench_memory)
    Process.unlink(pid)

    try do
      :erlang.garbage_collect()
      before = rss()
      Workloads.progress("memory: writing #{int(n)} keys (mset of 1,000)")

      for chunk <- Stream.chunk_every(1..n, 1_000) do
        :ok =
          LiteStash.mset(
            :litestash_bench_memory,
            Enum.map(chunk, &{Workloads.key(&1), Workloads.value(:small, &1)})
          )
      end

      written = rss()

      for pass <- 1..2 do
        Workloads.progress("memory: reading all #{int(n)} keys, pass #{pass} of 2")

        for i <- 1..n do
          {:ok, _} = LiteStash.get(:litestash_bench_memory, Workloads.key(i))
        end
      end

      :erlang.garbage_collect()
      read = rss()
      {:ok, shards} = LiteStash.info(:litestash_bench_memory)

      %{
        n: n,
        before: before,
        written: written,
        read: read,
        value_cache: Enum.sum(Enum.map(shards, & &1.value_cache_bytes)),
        page_cache: Enum.sum(Enum.map(shards, & &1.page_cache_bytes)),
        beam: :erlang.memory(:total)
      }
    after
      LiteStash.stop(:litestash_bench_memory)
      File.rm_rf!(dir)
    end
  end

  # `{anonymous, file-backed}` resident bytes of this VM, `nil` without /proc.
  defp rss do
    with {:ok, status} <- File.read("/proc/self/status"),
         [_, anon] <- Regex.run(~r/RssAnon:\s+(\d+)\s+kB/, status),
         [_, file] <- Regex.run(~r/RssFile:\s+(\d+)\s+kB/, status) do
      {String.to_integer(anon) * 1024, String.to_integer(file) * 1024}
    else
      _ -> nil
    end
  end

  @doc "The section's text; nothing when it did not run."
  @spec render(result() | nil) :: iodata()
  def render(nil), do: []

  def render(%{cold: cold, memory: memory}) do
    ["\n== Value cache ==\n", cold_lines(cold), memory_lines(memory)]
  end

  defp cold_lines(%{w2: w2, probe: probe, raw_w2: raw}) do
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
      ratio
    ]
  end

  defp memory_lines(%{before: {a0, f0}, written: {a1, f1}, read: {a2, f2}} = m) do
    grown = a2 - a0
    limit = @cache_budget + @page_budget + @overhead

    [
      :io_lib.format(
        "  ~s keys written, then read twice: anonymous resident memory ~s before, ~s after writing, " <>
          "~s after reading (grew ~s); file-backed (mapped shard files) ~s, ~s, ~s~n",
        [int(m.n), mib(a0), mib(a1), mib(a2), mib(grown), mib(f0), mib(f1), mib(f2)]
      ),
      :io_lib.format(
        "  value cache holds ~s (budget ~s), page caches ~s (budget ~s), BEAM allocated ~s~n",
        [
          mib(m.value_cache),
          mib(@cache_budget),
          mib(m.page_cache),
          mib(@page_budget),
          mib(m.beam)
        ]
      ),
      :io_lib.format(
        "~-42s ~10s  (target < budgets + ~s overhead = ~s)  ~s~n",
        [
          "memory grown over the 1,000,000-key run",
          mib(grown),
          mib(@overhead),
          mib(limit),
          Workloads.verdict(grown < limit)
        ]
      )
    ]
  end

  defp memory_lines(_), do: "  memory: not measured (no /proc)\n"

  defp int(value), do: Workloads.format_int(value)
  defp us(nil), do: "-"
  defp us(value), do: :erlang.float_to_binary(value / 1, decimals: 1)
  defp mib(bytes), do: :erlang.float_to_binary(bytes / 1_048_576, decimals: 1) <> " MiB"
end
