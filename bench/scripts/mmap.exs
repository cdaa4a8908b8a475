# Cold point reads (cache_size: 0) with the shard files memory-mapped
# (mmap_size 256 MiB, the default) and without (0), in interleaved rounds
# on one store of N keys, with what each costs in resident memory:
#
#     cd bench && MIX_ENV=prod mix run scripts/mmap.exs N READS
#
# Each round opens the store, reads READS random keys untimed, then READS
# from one process and READS from 64, and prints ops/s, the growth of
# anonymous memory, file-backed memory (as RSS counts it, once per mapping,
# and with each page once) and what SQLite allocated.
[n, reads] = Enum.map(System.argv(), &String.to_integer/1)
dir = Path.join(System.tmp_dir!(), "litestash-mmap-#{System.unique_integer([:positive])}")

kib = fn file, field ->
  [_, v] = Regex.run(~r/#{field}:\s+(\d+) kB/, File.read!(file))
  String.to_integer(v) * 1024
end

mib = fn bytes -> :erlang.float_to_binary(bytes / 1_048_576, decimals: 1) end
get = fn i -> {:ok, _} = LiteStash.get(:mmap, "user:#{i}") end
value = fn i -> %{"i" => i, "name" => "user-#{i}", "tags" => ["a", "b"], "score" => 1.5} end

{:ok, _} = LiteStash.start_link(data_dir: dir, name: :mmap)

for chunk <- Stream.chunk_every(1..n, 1_000) do
  :ok = LiteStash.mset(:mmap, Enum.map(chunk, &{"user:#{&1}", value.(&1)}))
end

LiteStash.stop(:mmap)
:rand.seed(:exsss, {20, 24, n})
order = for _ <- 1..reads, do: :rand.uniform(n)
slices = for first <- 1..64, do: Enum.drop(order, first - 1) |> Enum.take_every(64)

rate = fn f ->
  {us, _} = :timer.tc(f)
  round(reads / (us / 1_000_000))
end

for round <- 1..2, mmap <- [256 * 1024 * 1024, 0] do
  :erlang.garbage_collect()
  anon = kib.("/proc/self/status", "RssAnon")
  {:ok, _} = LiteStash.start_link(data_dir: dir, name: :mmap, cache_size: 0, mmap_size: mmap)
  Enum.each(order, get)
  one = rate.(fn -> Enum.each(order, get) end)

  many =
    rate.(fn ->
      slices
      |> Enum.map(fn slice -> Task.async(fn -> Enum.each(slice, get) end) end)
      |> Task.await_many(:infinity)
    end)

  grown = kib.("/proc/self/status", "RssAnon") - anon
  file = kib.("/proc/self/status", "RssFile")
  file_once = kib.("/proc/self/smaps_rollup", "Pss_File")
  sqlite = LiteStash.Native.sqlite_memory_used()
  LiteStash.stop(:mmap)

  IO.puts(
    "round #{round}, mmap_size #{div(mmap, 1_048_576)} MiB: #{one} reads/s from 1 process, " <>
      "#{many} from 64; anonymous memory grew #{mib.(grown)} MiB (SQLite #{mib.(sqlite)}), " <>
      "file-backed #{mib.(file)} MiB (#{mib.(file_once)} MiB each page once)"
  )
end

File.rm_rf!(dir)
