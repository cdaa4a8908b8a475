defmodule LiteStash.ClusterTest do
  # Three (and a fourth) member nodes, each an OS process of its own
  # started with :peer; every test compares a client-side log of the
  # acknowledged writes with what the members hold at the end.
  use ExUnit.Case, async: false

  alias LiteStash.Test.ClusterNodes, as: Nodes

  @moduletag :cluster
  @moduletag timeout: 180_000

  unless Code.ensure_loaded?(:ra) do
    @moduletag skip: "Ra is not on the code path (make test puts it there through ERL_LIBS)"
  end

  @store :kv

  setup_all do
    if System.get_env("LITESTASH_CLUSTER_STANDIN") == "1" or
         not function_exported?(LiteStash.Native, :replica_apply, 5) do
      Application.put_env(:litestash, :cluster_replica, LiteStash.Test.ReplicaStandin)
    end

    Nodes.ensure_distributed!()
    :ok
  end

  @tag :tmp_dir
  test "a write through any member is read back on every member", %{tmp_dir: dir} do
    members = start_cluster!(dir, 3)

    for {member, i} <- Enum.with_index(members) do
      assert :ok = rpc(member, :set, ["k#{i}", %{"from" => i}])
    end

    assert {:ok, 1} = rpc(hd(members), :incr, ["n", 1])
    assert {:ok, 3} = rpc(List.last(members), :incr, ["n", 2])
    assert {:error, %LiteStash.Error{reason: :exists}} = rpc(hd(members), :put_new, ["k0", 1])

    keys = ["k0", "k1", "k2", "n"]
    expected = %{"k0" => %{"from" => 0}, "k1" => %{"from" => 1}, "k2" => %{"from" => 2}, "n" => 3}
    assert_all_hold(members, keys, expected)

    {:ok, info} = rpc(hd(members), :info, [])
    assert length(info) == 16

    for shard <- info do
      assert Enum.sort(shard.members) == Enum.sort(Enum.map(members, & &1.node))
      assert shard.leader in shard.members
      assert is_integer(shard.applied_index)
    end
  end

  @tag :tmp_dir
  test "killing the node that leads most shards loses no acknowledged write, and it catches up on restart",
       %{tmp_dir: dir} do
    members = start_cluster!(dir, 3)
    log = start_writers(members, 6)
    Process.sleep(1_500)

    victim = most_leading(members)
    led = led_shards(victim, victim.node)
    killed_at = now()
    Nodes.kill!(victim)
    survivors = members -- [victim]
    Process.sleep(2_500)
    {acked, unsure} = stop_writers(log)

    after_kill = for {_key, _value, shard, at} <- acked, at > killed_at, do: {shard, at}
    assert after_kill != [], "no write was acknowledged after the leader's death"

    # The figure the README reports: from the SIGKILL to the first write
    # acknowledged on a shard the killed node led.
    led_acks = for {shard, at} <- after_kill, shard in led, do: at - killed_at

    IO.puts(
      "\n  leader death to first ack: #{inspect(Enum.min(led_acks, fn -> nil end))} ms " <>
        "(#{length(led)} shards led by the killed node, #{length(led_acks)} acks on them after)"
    )

    assert_acked(survivors, acked, unsure)

    restarted = Nodes.start!(victim.name)
    on_exit(fn -> Nodes.stop(restarted) end)
    Nodes.start_member!(restarted, member_opts(dir, victim, members))
    assert_same_everywhere([restarted | survivors], acked, unsure)
  end

  @tag :tmp_dir
  test "a node cut off from the others refuses writes, the majority keeps writing, and all agree after healing",
       %{tmp_dir: dir} do
    [a, b, c] = members = start_cluster!(dir, 3)
    assert :ok = rpc(c, :set, ["before", 1])
    Nodes.partition!(c, [a, b])

    assert {:error, %LiteStash.Error{reason: :no_quorum}} = rpc(c, :set, ["minority", 1])
    log = start_writers([a, b], 4)
    Process.sleep(2_000)
    {acked, unsure} = stop_writers(log)
    assert length(acked) > 0

    Nodes.heal!(c, [a, b])
    assert_same_everywhere(members, [{"before", 1, nil, 0} | acked], ["minority" | unsure])
  end

  @tag :tmp_dir
  test "killing all three at once during writes loses no acknowledged write", %{tmp_dir: dir} do
    members = start_cluster!(dir, 3)
    log = start_writers(members, 6)
    Process.sleep(2_000)
    Nodes.kill_all!(members)
    {acked, unsure} = stop_writers(log)
    assert length(acked) > 0

    restarted =
      for member <- members do
        restarted = Nodes.start!(member.name)
        on_exit(fn -> Nodes.stop(restarted) end)
        restarted
      end

    restarted
    |> Enum.map(&Task.async(fn -> Nodes.start_member!(&1, member_opts(dir, &1, members)) end))
    |> Task.await_many(60_000)

    assert_same_everywhere(restarted, acked, unsure)
  end

  @tag :tmp_dir
  test "a fourth member catches up from a snapshot; removing one keeps the cluster serving",
       %{tmp_dir: dir} do
    members = start_cluster!(dir, 3, snapshot_interval: 32)
    pairs = for i <- 1..2_400, do: {"pre:#{i}", i}

    pairs
    |> Task.async_stream(fn {key, value} -> rpc(hd(members), :set, [key, value]) end,
      max_concurrency: 16
    )
    |> Enum.each(&assert(&1 == {:ok, :ok}))

    wait_until(fn -> snapshotted?(hd(members)) end, 10_000, "not every shard took a snapshot")

    fourth_name = :"#{hd(members).name}_4"
    fourth = Nodes.start!(fourth_name)
    on_exit(fn -> Nodes.stop(fourth) end)
    everyone = members ++ [fourth]
    Nodes.start_member!(fourth, member_opts(dir, fourth, everyone, snapshot_interval: 32))
    assert :ok = rpc(hd(members), :add_member, [fourth.node])

    acked = for {key, value} <- pairs, do: {key, value, nil, 0}
    assert_same_everywhere(everyone, acked, [])

    # Its log starts at a snapshot: it was sent one, not the entries before.
    assert snapshotted?(fourth)

    [first, second | _] = members
    assert :ok = rpc(first, :remove_member, [second.node])
    {:ok, info} = rpc(first, :info, [])
    assert Enum.all?(info, &(second.node not in &1.members))
    assert :ok = rpc(fourth, :set, ["after-remove", 1])
    remaining = everyone -- [second]
    assert_same_everywhere(remaining, [{"after-remove", 1, nil, 0} | acked], [])
  end

  ## Helpers

  defp member_opts(dir, member, members, opts \\ []) do
    [
      name: @store,
      data_dir: Path.join(dir, "#{member.name}"),
      cluster: Enum.map(members, & &1.node),
      timeout: 3_000
    ] ++ opts
  end

  defp snapshotted?(member) do
    Enum.all?(0..15, fn shard ->
      Nodes.call(member, LiteStash.Cluster, :log_overview, [@store, shard]).snapshot_index > 0
    end)
  end

  defp now, do: System.monotonic_time(:millisecond)

  # Client processes in this VM, each writing new keys through one member
  # (the next one after an error). The log: {key, value, shard, acked_at}
  # for each :ok, and the keys whose write got no answer (they may or may
  # not be applied).
  defp start_writers(members, count) do
    log = :ets.new(:log, [:public, :duplicate_bag])
    stop = :atomics.new(1, [])

    tasks =
      for w <- 1..count do
        Task.async(fn -> write_loop(log, stop, members, w, rem(w, length(members)), 0) end)
      end

    %{log: log, stop: stop, tasks: tasks}
  end

  defp write_loop(log, stop, members, w, at, n) do
    if :atomics.get(stop, 1) == 1 do
      :ok
    else
      key = "w#{w}:#{n}"
      member = Enum.at(members, rem(at, length(members)))

      result =
        try do
          rpc(member, :set, [key, n], 5_000)
        catch
          kind, reason -> {kind, reason}
        end

      case result do
        :ok ->
          :ets.insert(log, {:acked, {key, n, LiteStash.Cluster.Replica.shard_of(key), now()}})
          write_loop(log, stop, members, w, at, n + 1)

        _ ->
          :ets.insert(log, {:unsure, key})
          Process.sleep(50)
          write_loop(log, stop, members, w, at + 1, n + 1)
      end
    end
  end

  defp stop_writers(%{log: log, stop: stop, tasks: tasks}) do
    :atomics.put(stop, 1, 1)
    Task.await_many(tasks, 30_000)
    acked = for {:acked, entry} <- :ets.tab2list(log), do: entry
    unsure = for {:unsure, key} <- :ets.tab2list(log), do: key
    {acked, unsure}
  end

  # A leader knows it leads; a follower's view may lag.
  defp most_leading(members), do: Enum.max_by(members, &length(led_shards(&1, &1.node)))

  defp led_shards(member, leader) do
    {:ok, info} = rpc(member, :info, [])
    for %{shard: shard, leader: ^leader} <- info, do: shard
  end

  # Every acknowledged write is on every member given, with its value.
  defp assert_acked(members, acked, _unsure) do
    expected = Map.new(acked, fn {key, value, _, _} -> {key, value} end)
    keys = Map.keys(expected)

    for member <- members do
      wait_until(
        fn ->
          {:ok, found} = rpc(member, :mget, [keys])
          found == expected
        end,
        20_000,
        "#{member.node} lacks acknowledged writes"
      )
    end
  end

  # Every acknowledged write is on every member, and the members agree on
  # every key that was written at all (the unanswered ones too).
  defp assert_same_everywhere(members, acked, unsure) do
    assert_acked(members, acked, unsure)
    keys = Enum.map(acked, &elem(&1, 0)) ++ unsure

    wait_until(
      fn ->
        digests = Enum.map(members, &(rpc(&1, :mget, [keys]) |> :erlang.phash2()))
        length(Enum.uniq(digests)) == 1
      end,
      20_000,
      "the members' contents differ"
    )
  end

  defp start_cluster!(dir, count, opts \\ []) do
    tag = System.unique_integer([:positive])
    names = for i <- 1..count, do: :"ls#{tag}_#{i}"
    nodes = Enum.map(names, &:"#{&1}@127.0.0.1")
    members = Enum.map(names, &Nodes.start!/1)
    on_exit(fn -> Enum.each(members, &Nodes.stop/1) end)
    cluster_opts = [name: @store, cluster: nodes, timeout: 3_000] ++ opts

    members
    |> Enum.map(fn member ->
      Task.async(fn ->
        Nodes.start_member!(member, [data_dir: Path.join(dir, "#{member.name}")] ++ cluster_opts)
      end)
    end)
    |> Task.await_many(60_000)

    members
  end

  defp rpc(member, fun, args, timeout \\ 30_000) do
    :erpc.call(member.node, LiteStash.Cluster, fun, [@store | args], timeout)
  end

  # Every member's local replica holds exactly `expected` for `keys` (it
  # may lag the leader for a moment: it is given a few seconds).
  defp assert_all_hold(members, keys, expected) do
    for member <- members do
      wait_until(
        fn -> rpc(member, :mget, [keys]) == {:ok, expected} end,
        10_000,
        "#{member.node} holds #{inspect(rpc(member, :mget, [keys]))}"
      )
    end
  end

  defp wait_until(fun, timeout, message) do
    cond do
      fun.() -> :ok
      timeout <= 0 -> flunk(message)
      true -> Process.sleep(100) && wait_until(fun, timeout - 100, message)
    end
  end
end
