# W1 and W2 alone, against whatever LiteStash the current checkout builds,
# so that two commits can be compared in interleaved rounds:
#
#     MIX_ENV=prod mix run bench/scripts/w1w2.exs LABEL N
#
# (from the repository's root; NOCACHE=1 starts the store with cache_size: 0
# where the option exists). W1: N sets of new keys from one process; W2: a
# get of each key in random order. Prints one line: LABEL W1 ops/s W2 ops/s.
[label, n] = System.argv()
n = String.to_integer(n)
dir = Path.join(System.tmp_dir!(), "w1w2-#{label}-#{System.unique_integer([:positive])}")
extra = if System.get_env("NOCACHE"), do: [cache_size: 0], else: []
{:ok, _} = LiteStash.start_link([data_dir: dir, name: :w] ++ extra)
value = fn i -> %{"i" => i, "name" => "user-#{i}", "tags" => ["a", "b"], "score" => 1.5} end
{w1, _} = :timer.tc(fn -> for i <- 1..n, do: :ok = LiteStash.set(:w, "user:#{i}", value.(i)) end)
keys = Enum.shuffle(for i <- 1..n, do: "user:#{i}")
{w2, _} = :timer.tc(fn -> for k <- keys, do: {:ok, _} = LiteStash.get(:w, k) end)
IO.puts("#{label} W1 #{round(n / (w1 / 1_000_000))} W2 #{round(n / (w2 / 1_000_000))}")
LiteStash.stop(:w)
File.rm_rf!(dir)
