# W1 and W2 alone, against whatever LiteStash the current checkout builds,
# so that two commits can be compared in interleaved rounds:
#
#     MIX_ENV=prod mix run bench/scripts/w1w2.exs LABEL N
#
# (from the repository's root; NOCACHE=1 starts the store with cache_size: 0
# where the option exists, NOWAIT=0 with nowait_reads: false, PASSES=k reads
# every key k times before W2, untimed). W1: N sets of new keys from one process; W2: a
# get of each key in random order. Prints one line: LABEL W1 ops/s W2 ops/s,
# then the CPU microseconds per op of the whole OS process for each. For CPU
# figures that mean something, keep the schedulers from spinning when idle:
#
#     MIX_ENV=prod elixir --erl "+sbwt none +sbwtdcpu none +sbwtdio none" \
#       -S mix run bench/scripts/w1w2.exs LABEL N
[label, n] = System.argv()
n = String.to_integer(n)
dir = Path.join(System.tmp_dir!(), "w1w2-#{label}-#{System.unique_integer([:positive])}")
extra = if System.get_env("NOCACHE"), do: [cache_size: 0], else: []
extra = if System.get_env("NOWAIT") == "0", do: [nowait_reads: false] ++ extra, else: extra
{:ok, _} = LiteStash.start_link([data_dir: dir, name: :w] ++ extra)
value = fn i -> %{"i" => i, "name" => "user-#{i}", "tags" => ["a", "b"], "score" => 1.5} end
# CPU time of the whole OS process (every thread: schedulers, dirty
# schedulers, writer threads), in clock ticks, from /proc/self/stat.
cpu_ticks = fn ->
  [_, after_name] = String.split(File.read!("/proc/self/stat"), ") ", parts: 2)
  fields = String.split(after_name)
  String.to_integer(Enum.at(fields, 11)) + String.to_integer(Enum.at(fields, 12))
end

timed = fn fun ->
  ticks = cpu_ticks.()
  {us, _} = :timer.tc(fun)
  {us, cpu_ticks.() - ticks}
end

{w1, w1_ticks} =
  timed.(fn -> for i <- 1..n, do: :ok = LiteStash.set(:w, "user:#{i}", value.(i)) end)

keys = Enum.shuffle(for i <- 1..n, do: "user:#{i}")
# PASSES=k reads every key k times, untimed, before W2 (a hot W2).
for _ <- 1..String.to_integer(System.get_env("PASSES", "0"))//1, k <- keys, do: LiteStash.get(:w, k)
{w2, w2_ticks} = timed.(fn -> for k <- keys, do: {:ok, _} = LiteStash.get(:w, k) end)
# Clock ticks are 10 ms (USER_HZ 100): CPU us per op.
cpu = fn ticks -> Float.round(ticks * 10_000 / n, 1) end

IO.puts(
  "#{label} W1 #{round(n / (w1 / 1_000_000))} W2 #{round(n / (w2 / 1_000_000))} " <>
    "cpu_us_per_op W1 #{cpu.(w1_ticks)} W2 #{cpu.(w2_ticks)}"
)
LiteStash.stop(:w)
File.rm_rf!(dir)
