# Replicated writes on three local member nodes against a one-member
# cluster, and the time from a leader's death to the next acknowledged
# write. Run from the project root:
#
#     make ra && MIX_ENV=test ERL_LIBS=_build/ra mix run examples/cluster_bench.exs
#
# W1: new keys from one client process; W3: new keys from 64. Clients run
# in this VM and call the members over Erlang distribution, as a client on
# another machine would. Until the NIF has its replica primitives the
# members apply entries through the tests' DETS stand-in.
alias LiteStash.Test.ClusterNodes, as: Nodes

unless function_exported?(LiteStash.Native, :replica_apply, 5) do
  Application.put_env(:litestash, :cluster_replica, LiteStash.Test.ReplicaStandin)
end

Nodes.ensure_distributed!()

dir =
  Path.join(System.tmp_dir!(), "litestash-cluster-bench-#{System.unique_integer([:positive])}")

start = fn count ->
  tag = System.unique_integer([:positive])
  members = for i <- 1..count, do: Nodes.start!(:"bench#{tag}_#{i}")
  nodes = Enum.map(members, & &1.node)

  members
  |> Enum.map(fn m ->
    Task.async(fn ->
      Nodes.start_member!(m, name: :kv, data_dir: Path.join(dir, "#{m.name}"), cluster: nodes)
    end)
  end)
  |> Task.await_many(60_000)

  # The first write of each shard waits for its first election.
  for s <- 0..63, do: :ok = :erpc.call(hd(nodes), LiteStash.Cluster, :set, [:kv, "warm#{s}", s])
  members
end

run = fn members, procs, per ->
  nodes = Enum.map(members, & &1.node)
  t0 = System.monotonic_time(:microsecond)

  1..procs
  |> Enum.map(fn p ->
    Task.async(fn ->
      node = Enum.at(nodes, rem(p, length(nodes)))
      for i <- 1..per, do: :ok = :erpc.call(node, LiteStash.Cluster, :set, [:kv, "p#{p}:#{i}", i])
    end)
  end)
  |> Task.await_many(:infinity)

  us = System.monotonic_time(:microsecond) - t0
  {procs * per * 1_000_000 / us, us / per}
end

for {label, count} <- [{"1 member ", 1}, {"3 members", 3}] do
  members = start.(count)
  {w1, w1_lat} = run.(members, 1, 2_000)
  {w3, w3_lat} = run.(members, 64, 100)

  IO.puts(
    "#{label}  W1 #{round(w1)} writes/s (#{Float.round(w1_lat / 1, 0)} us each)  " <>
      "W3 #{round(w3)} writes/s (#{Float.round(w3_lat / 1000, 1)} ms per caller's write)"
  )

  if count == 3 do
    leader = hd(members)
    [other | _] = members -- [leader]
    {:ok, info} = :erpc.call(leader.node, LiteStash.Cluster, :info, [:kv])
    led = for %{leader: l, shard: s} <- info, l == leader.node, do: s

    key =
      Enum.find(
        Stream.map(1..100_000, &"probe#{&1}"),
        &(LiteStash.Cluster.Replica.shard_of(&1) in led)
      )

    if key do
      t0 = System.monotonic_time(:millisecond)
      Nodes.kill!(leader)
      :ok = :erpc.call(other.node, LiteStash.Cluster, :set, [:kv, key, 1])

      IO.puts(
        "leader death to first ack on a shard it led: #{System.monotonic_time(:millisecond) - t0} ms"
      )
    end
  end

  Enum.each(members, &Nodes.stop/1)
end
