# Replicated writes on three local member nodes against the same workload
# on a single node (a plain store, and a one-member cluster), and the time
# from a leader's death to the next acknowledged write; all on real SQLite
# files under the system's temp dir. Run from the project root:
#
#     make ra interop-venv && MIX_ENV=test ERL_LIBS=_build/ra mix run examples/cluster_bench.exs
#
# W1: new keys from one client process; W3: new keys from 64. Clients run
# in this VM and call the members' LiteStash API over Erlang distribution,
# as a client on another machine would, so every figure includes one
# distribution round trip per write. Options: --w1 N (default 2000), --w3 N
# per client (default 100), --kills N failovers to time (default 3).
alias LiteStash.Test.ClusterNodes, as: Nodes

{opts, _, _} =
  OptionParser.parse(System.argv(), strict: [w1: :integer, w3: :integer, kills: :integer])

w1_count = Keyword.get(opts, :w1, 2_000)
w3_per = Keyword.get(opts, :w3, 100)
kills = Keyword.get(opts, :kills, 3)

Nodes.ensure_distributed!()

dir =
  Path.join(System.tmp_dir!(), "litestash-cluster-bench-#{System.unique_integer([:positive])}")

now = fn -> System.monotonic_time(:millisecond) end

# `count` member nodes; with `cluster?` false, one node with a plain store.
start = fn count, cluster? ->
  tag = System.unique_integer([:positive])
  members = for i <- 1..count, do: Nodes.start!(:"bench#{tag}_#{i}")
  nodes = Enum.map(members, & &1.node)
  cluster = if cluster?, do: [cluster: nodes], else: []

  members
  |> Enum.map(fn m ->
    Task.async(fn ->
      Nodes.start_member!(m, [name: :kv, data_dir: Path.join(dir, "#{m.name}")] ++ cluster)
    end)
  end)
  |> Task.await_many(120_000)

  # The first write of each shard waits for its first election.
  for s <- 0..63, do: :ok = :erpc.call(hd(nodes), LiteStash, :set, [:kv, "warm#{s}", s], 30_000)
  members
end

run = fn members, procs, per ->
  nodes = Enum.map(members, & &1.node)
  t0 = System.monotonic_time(:microsecond)

  1..procs
  |> Enum.map(fn p ->
    Task.async(fn ->
      node = Enum.at(nodes, rem(p, length(nodes)))
      for i <- 1..per, do: :ok = :erpc.call(node, LiteStash, :set, [:kv, "p#{p}:#{i}", i])
    end)
  end)
  |> Task.await_many(:infinity)

  us = System.monotonic_time(:microsecond) - t0
  {procs * per * 1_000_000 / us, us / per}
end

# Writes `key` through `node` until one is acknowledged; the time it took.
until_ack = fn node, key, t0 ->
  Stream.repeatedly(fn -> :erpc.call(node, LiteStash, :set, [:kv, key, 1], 30_000) end)
  |> Enum.find(&(&1 == :ok))

  now.() - t0
end

IO.puts("W1: #{w1_count} writes from 1 client; W3: #{w3_per} writes from each of 64 clients")

for {label, count, cluster?} <- [
      {"1 node, plain store", 1, false},
      {"1 member cluster  ", 1, true},
      {"3 member cluster  ", 3, true}
    ] do
  members = start.(count, cluster?)
  {w1, w1_lat} = run.(members, 1, w1_count)
  {w3, w3_lat} = run.(members, 64, w3_per)

  IO.puts(
    "#{label}  W1 #{round(w1)} writes/s (#{round(w1_lat)} us each)  " <>
      "W3 #{round(w3)} writes/s (#{Float.round(w3_lat / 1000, 1)} ms per caller's write)"
  )

  members =
    if count == 3 do
      # Kill the node that leads the most shards, time the first write
      # acknowledged on a shard it led, restart it; again.
      {times, members} =
        Enum.map_reduce(1..kills, members, fn round, members ->
          leads = fn m ->
            {:ok, info} = :erpc.call(m.node, LiteStash, :info, [:kv])
            for %{leader: l, shard: s} <- info, l == m.node, do: s
          end

          victim = Enum.max_by(members, &length(leads.(&1)))
          led = leads.(victim)
          [other | _] = members -- [victim]

          key =
            Stream.map(1..100_000, &"probe#{round}:#{&1}")
            |> Enum.find(&(elem(LiteStash.Replica.shard_of(&1), 1) in led))

          t0 = now.()
          Nodes.kill!(victim)
          ms = until_ack.(other.node, key, t0)

          back = Nodes.start!(victim.name)

          Nodes.start_member!(back,
            name: :kv,
            data_dir: Path.join(dir, "#{victim.name}"),
            cluster: Enum.map(members, & &1.node)
          )

          members = List.replace_at(members, Enum.find_index(members, &(&1 == victim)), back)
          {{ms, length(led)}, members}
        end)

      IO.puts(
        "leader death to first ack on a shard it led: " <>
          Enum.map_join(times, ", ", fn {ms, led} -> "#{ms} ms (it led #{led})" end)
      )

      members
    else
      members
    end

  Enum.each(members, &Nodes.stop/1)
end

File.rm_rf!(dir)
