defmodule LiteStash.ClusterTest do
  # Three (and a fourth) member nodes, each an OS process of its own
  # started with :peer, each with its own data dir of real SQLite files.
  # The calls go through LiteStash's own API on the members. Every test
  # compares a client-side log of the acknowledged writes with what the
  # members' files hold at the end (read by Python's sqlite3 and by the
  # interop verifier), and the members' shard digests with each other.
  use ExUnit.Case, async: false

  alias LiteStash.Cluster.Placement
  alias LiteStash.Test.ClusterFiles, as: Files
  alias LiteStash.Test.ClusterNodes, as: Nodes

  @moduletag :cluster
  @moduletag :tmp_dir
  @moduletag timeout: 240_000

  unless Code.ensure_loaded?(:ra) do
    @moduletag skip: "Ra is not on the code path (make test puts it there through ERL_LIBS)"
  end

  @store :kv

  setup_all do
    Files.python!()
    Nodes.ensure_distributed!()
    :ok
  end

  test "a write through any member is on every member's files; info shows members, leader and applied index",
       %{tmp_dir: dir} do
    members = start_cluster!(dir, 3)

    for {member, i} <- Enum.with_index(members) do
      assert :ok = rpc(member, :set, ["k#{i}", %{"from" => i}])
    end

    assert {:ok, 1} = rpc(hd(members), :incr, ["n", 1])
    assert {:ok, 3} = rpc(List.last(members), :incr, ["n", 2])
    assert {:error, %LiteStash.Error{reason: :exists}} = rpc(hd(members), :put_new, ["k0", 1])
    assert {:error, %LiteStash.Error{reason: :invalid_key}} = rpc(hd(members), :set, ["", 1])

    # Structs are encoded through LiteStash.Encoder as on one node; update/4
    # (get, then compare_and_set) works through the cluster too.
    user = %LiteStash.Test.Structs.Only{id: 7, name: "ann", secret: "x"}
    assert :ok = rpc(List.last(members), :set, ["user", user])

    assert {:error, %LiteStash.Error{reason: :unsupported_value}} =
             rpc(hd(members), :set, ["plain", %LiteStash.Test.Structs.Plain{a: 1}])

    # (A remote fun: the members do not have this test module's code.)
    assert :ok = rpc(hd(members), :update, ["tags", ["a", "b"], &Enum.reverse/1])
    assert :ok = rpc(Enum.at(members, 1), :update, ["tags", ["a", "b"], &Enum.reverse/1])
    # One bad value refuses the whole mset, on every shard (the count
    # below finds none of the good keys).
    good = for i <- 1..40, do: {"m#{i}", i}

    assert {:error, %LiteStash.Error{reason: :unsupported_value}} =
             rpc(hd(members), :mset, [good ++ [{"bad", {:a, :tuple}}]])

    # Compaction changes no key: each member compacts its own files.
    assert :ok = rpc(Enum.at(members, 1), :compact, [])

    acked = [
      {"k0", %{"from" => 0}},
      {"k1", %{"from" => 1}},
      {"k2", %{"from" => 2}},
      {"n", 3},
      {"user", %{"id" => 7, "name" => "ann"}},
      {"tags", ["b", "a"]}
    ]

    assert_same_everywhere(dir, members, acked, [])
    for member <- members, do: assert(rpc(member, :count, []) == {:ok, length(acked)})

    {:ok, info} = rpc(hd(members), :info, [])
    assert length(info) == 16
    nodes = Enum.sort(Enum.map(members, & &1.node))

    for shard <- info do
      assert Enum.sort(shard.members) == nodes
      assert shard.leader in shard.members
      assert is_integer(shard.applied_index)
      assert is_integer(shard.keys)
    end

    # This replica's own applied index, as its file records it.
    {:ok, k0} = LiteStash.Replica.shard_of("k0")
    assert Enum.at(info, k0).applied_index > 0
    assert Enum.at(info, k0).applied_index == applied(hd(members), k0)
  end

  test "expired keys are swept by replicated sweeps, identically on every member's files",
       %{tmp_dir: dir} do
    members = start_cluster!(dir, 3)
    {:ok, shard} = LiteStash.Replica.shard_of("short")

    rows = fn member ->
      member |> data_dir_of(dir) |> Files.digests() |> Enum.at(shard) |> elem(0)
    end

    # Long enough for every member to apply the write before it expires.
    assert :ok = rpc(hd(members), :set, ["short", 1, [ttl: 5_000]])
    assert :ok = rpc(hd(members), :set, ["kept", 2])
    wait_until(fn -> Enum.all?(members, &(rows.(&1) >= 1)) end, 4_000, "a member lacks the row")

    wait_until(
      fn -> rpc(List.last(members), :get, ["short"]) != {:ok, 1} end,
      20_000,
      "no expiry"
    )

    # A replica's writer never sweeps by itself: only the leader's
    # replicated {:sweep, _} entries take the row out of the files.
    kept = if LiteStash.Replica.shard_of("kept") == {:ok, shard}, do: 1, else: 0
    wait_until(fn -> Enum.all?(members, &(rows.(&1) == kept)) end, 30_000, "the row stays")
    assert_same_everywhere(dir, members, [{"kept", 2}], [])
  end

  test "killing the node that leads most shards loses no acknowledged write; on restart it catches up",
       %{tmp_dir: dir} do
    members = start_cluster!(dir, 3)
    log = start_writers(members, 6)
    wait_for_acks(log, 200)

    victim = most_leading(members)
    led = led_shards(victim, victim.node)
    killed_at = now()
    Nodes.kill!(victim)
    # Its OS process is gone (kill! waits for that): a write acknowledged
    # from now on a shard it led was acknowledged by a new leader.
    dead_at = now()
    survivors = members -- [victim]
    after_kill = wait_for_acks(log, 200, dead_at)
    {acked, unsure} = stop_writers(log)

    # From the SIGKILL to the first write acknowledged on a shard the
    # killed node led, counting only acks after it was gone.
    led_acks = for {_k, _v, shard, at} <- after_kill, shard in led, do: at - killed_at
    assert led_acks != [], "no write on a shard the killed node led was acknowledged after"

    IO.puts(
      "\n  leader death to first ack: #{Enum.min(led_acks)} ms, of which #{dead_at - killed_at} ms " <>
        "until the OS process was gone (#{length(led)} shards led by the killed node, " <>
        "#{length(led_acks)} acks on them after)"
    )

    assert_acked_everywhere(dir, survivors, acked)

    restarted = Nodes.start!(victim.name)
    on_exit(fn -> Nodes.stop(restarted) end)
    Nodes.start_member!(restarted, member_opts(dir, victim, members))
    assert_same_everywhere(dir, [restarted | survivors], pairs(acked), unsure)
  end

  test "a node cut off refuses writes with :no_quorum after :timeout, reads no stale value; all agree after healing",
       %{tmp_dir: dir} do
    [a, b, c] = members = start_cluster!(dir, 3, cluster_reads: :consistent, timeout: 2_000)
    assert :ok = rpc(c, :set, ["before", 1])
    wait_until(fn -> local_get(c, "before") == {:ok, 1} end, 20_000, "c lacks \"before\"")
    Nodes.partition!(c, [a, b])

    started = now()
    assert {:error, %LiteStash.Error{reason: :no_quorum}} = rpc(c, :set, ["minority", 1])
    waited = now() - started
    assert waited >= 1_900 and waited < 20_000, "answered :no_quorum after #{waited} ms"

    log = start_writers([a, b], 4)
    wait_for_acks(log, 100)
    assert :ok = rpc(a, :set, ["before", 2])
    {acked, unsure} = stop_writers(log)

    # c's own replica still has the old value; a consistent read on c goes
    # to a leader it cannot reach and refuses rather than answer it.
    assert local_get(c, "before") == {:ok, 1}
    assert {:error, %LiteStash.Error{reason: :no_quorum}} = rpc(c, :get, ["before"])
    assert {:ok, 2} = rpc(b, :get, ["before"])

    Nodes.heal!(c, [a, b])
    assert {:ok, 2} = rpc(c, :get, ["before"], 30_000)
    assert_same_everywhere(dir, members, [{"before", 2} | pairs(acked)], ["minority" | unsure])
  end

  test "killing all three at once during writes loses no acknowledged write", %{tmp_dir: dir} do
    members = start_cluster!(dir, 3)
    log = start_writers(members, 6)
    wait_for_acks(log, 300)
    Nodes.kill_all!(members)
    {acked, unsure} = stop_writers(log)

    restarted = restart_all!(dir, members)

    assert_same_everywhere(dir, restarted, pairs(acked), unsure)
  end

  # Ra keeps its servers' names in a DETS file that it writes back lazily,
  # so all three losing it is what a kill in the seconds after a first
  # start looks like. A server started fresh in its place would number
  # a new log from 1, and the files, whose applied index is past that,
  # would skip the new writes as applied.
  test "restarting after Ra's name registry is lost recovers each server's log; new writes land",
       %{tmp_dir: dir} do
    members = start_cluster!(dir, 3)
    before = for i <- 1..200, do: {"before:#{i}", i}
    for {key, value} <- before, do: assert(:ok = rpc(Enum.at(members, rem(value, 3)), :set, [key, value]))
    assert_same_everywhere(dir, members, before, [])
    applied_before = for member <- members, do: Enum.map(0..15, &applied(member, &1))

    Nodes.kill_all!(members)
    for member <- members, do: File.rm!(Path.join([data_dir(dir, member), "ra", "names.dets"]))

    restarted = restart_all!(dir, members)

    after_restart = for i <- 1..200, do: {"after:#{i}", i}

    for {key, value} <- after_restart,
        do: assert(:ok = rpc(Enum.at(restarted, rem(value, 3)), :set, [key, value]))

    assert_same_everywhere(dir, restarted, before ++ after_restart, [])

    # Every shard's log went on from where it was: each file's applied
    # index grew past its value before the kill.
    for {member, was} <- Enum.zip(restarted, applied_before), {index, shard} <- Enum.with_index(was) do
      assert applied(member, shard) > index
    end
  end

  test "a member whose Ra log is gone refuses to start a new one over its files", %{tmp_dir: dir} do
    [a | _] = members = start_cluster!(dir, 3)
    for i <- 1..50, do: assert(:ok = rpc(a, :set, ["k#{i}", i]))
    assert_same_everywhere(dir, members, for(i <- 1..50, do: {"k#{i}", i}), [])

    Nodes.kill!(a)
    File.rm_rf!(Path.join(data_dir(dir, a), "ra"))
    restarted = Nodes.start!(a.name)
    on_exit(fn -> Nodes.stop(restarted) end)

    assert {:error, %LiteStash.Error{reason: :replica_log_lost, message: message}} =
             Nodes.call(restarted, Nodes, :start_member_here, [member_opts(dir, a, members)])

    assert message =~ "replication log is gone"
  end

  test "a fourth member catches up from a snapshot; removing one keeps the cluster serving",
       %{tmp_dir: dir} do
    members = start_cluster!(dir, 3, snapshot_interval: 32)
    acked = for i <- 1..2_400, do: {"pre:#{i}", i}

    # One log entry each: about 150 per shard, several snapshot intervals.
    acked
    |> Task.async_stream(
      fn {key, value} -> rpc(Enum.at(members, rem(value, 3)), :set, [key, value]) end,
      max_concurrency: 16,
      timeout: 60_000
    )
    |> Enum.each(&assert(&1 == {:ok, :ok}))

    for i <- 1..400,
        do: {:ok, _} = rpc(Enum.at(members, rem(i, 3)), :incr, ["count:#{rem(i, 40)}"])

    acked = acked ++ for(i <- 0..39, do: {"count:#{i}", 10})

    # Every member's Ra log of every shard starts past entry 1: the entries
    # before its snapshot are gone, so a new member can catch up only from
    # a snapshot.
    for member <- members do
      wait_until(fn -> truncated?(member) end, 30_000, "#{member.node} kept its whole log")
    end

    fourth = Nodes.start!(:"#{hd(members).name}_4")
    on_exit(fn -> Nodes.stop(fourth) end)
    everyone = members ++ [fourth]
    Nodes.start_member!(fourth, member_opts(dir, fourth, everyone, snapshot_interval: 32))
    assert :ok = cluster_rpc(hd(members), :add_member, [fourth.node])

    assert_same_everywhere(dir, everyone, acked, [])
    assert Enum.all?(0..15, &(log_overview(fourth, &1).snapshot_index > 0))

    [first, second | _] = members
    assert :ok = cluster_rpc(first, :remove_member, [second.node])
    {:ok, info} = rpc(first, :info, [])
    assert Enum.all?(info, &(second.node not in &1.members and length(&1.members) == 3))
    Nodes.stop(second)
    assert :ok = rpc(fourth, :set, ["after-remove", 1])
    assert_same_everywhere(dir, everyone -- [second], [{"after-remove", 1} | acked], [])
  end

  test "replication_factor: 2 puts each shard on the two members rendezvous hashing picks; other members forward",
       %{tmp_dir: dir} do
    members = start_cluster!(dir, 3, replication_factor: 2)
    nodes = Enum.map(members, & &1.node)
    {:ok, info} = rpc(hd(members), :info, [])

    for %{shard: shard, members: holders} <- info do
      assert Enum.sort(holders) == Enum.sort(Placement.holders(shard, nodes, 2))
      assert length(holders) == 2
    end

    # For each shard, a key written and read through the member that does
    # not hold it: it is on the two holders' files only.
    keys =
      for shard <- 0..15 do
        key = key_on(shard)

        [outsider] =
          members -- Enum.filter(members, &(&1.node in Placement.holders(shard, nodes, 2)))

        assert :ok = rpc(outsider, :set, [key, shard])
        assert {:ok, ^shard} = rpc(outsider, :get, [key])
        assert {:ok, 1} = rpc(outsider, :incr, ["n:" <> key])
        assert {:error, %LiteStash.Error{reason: :not_found}} = local_get(outsider, key)
        {shard, key}
      end

    # keys/2 and count/2 on any member see every shard, held there or not.
    all = Enum.sort(Enum.flat_map(keys, fn {_, key} -> [key, "n:" <> key] end))

    for member <- members do
      assert {:ok, found} = rpc(member, :keys, [])
      assert Enum.sort(found) == all
      assert rpc(member, :count, []) == {:ok, 32}
      assert rpc(member, :count, [[prefix: "n:"]]) == {:ok, 16}
    end

    for {shard, key} <- keys do
      holders = Enum.filter(members, &(&1.node in Placement.holders(shard, nodes, 2)))
      for holder <- holders, do: assert(local_get(holder, key) == {:ok, shard})

      wait_until(
        fn ->
          holders |> Enum.map(&Enum.at(Files.digests(data_dir(dir, &1)), shard)) |> same?()
        end,
        20_000,
        "shard #{shard}'s holders differ"
      )
    end
  end

  ## Writers and their log

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
          rpc(member, :set, [key, n], 10_000)
        catch
          kind, reason -> {kind, reason}
        end

      case result do
        :ok ->
          {:ok, shard} = LiteStash.Replica.shard_of(key)
          :ets.insert(log, {:acked, {key, n, shard, now()}})
          write_loop(log, stop, members, w, at, n + 1)

        other ->
          :ets.insert(log, {:unsure, key})
          :ets.insert(log, {:failure, other})
          Process.sleep(50)
          write_loop(log, stop, members, w, at + 1, n + 1)
      end
    end
  end

  # Waits until `count` writes are acknowledged after `since`; returns them.
  defp wait_for_acks(%{log: log}, count, since \\ nil) do
    acks = fn ->
      for {:acked, {_, _, _, at} = e} <- :ets.tab2list(log), since == nil or at > since, do: e
    end

    wait_until(fn -> length(acks.()) >= count end, 60_000, fn ->
      failures = for {:failure, failure} <- :ets.tab2list(log), do: failure

      "#{length(acks.())} acks, fewer than #{count}; #{length(failures)} failures, the last: " <>
        inspect(Enum.take(failures, -3))
    end)

    acks.()
  end

  defp stop_writers(%{log: log, stop: stop, tasks: tasks}) do
    :atomics.put(stop, 1, 1)
    Task.await_many(tasks, 60_000)
    acked = for {:acked, entry} <- :ets.tab2list(log), do: entry
    unsure = for {:unsure, key} <- :ets.tab2list(log), do: key
    {acked, unsure}
  end

  defp pairs(acked), do: Enum.map(acked, fn {key, value, _, _} -> {key, value} end)

  ## Checks on the members' files

  # Every acknowledged write is in every member's replica, with its value.
  defp assert_acked_everywhere(_dir, members, acked) do
    expected = Map.new(pairs(acked))
    keys = Map.keys(expected)

    for member <- members do
      wait_until(
        fn -> local_mget(member, keys) == {:ok, expected} end,
        60_000,
        "#{member.node} lacks acknowledged writes"
      )
    end
  end

  # Every acknowledged write is on every member's files with its value (the
  # interop verifier), the members agree on every key that was written at
  # all (the unanswered ones too), every shard's digest is the same on all
  # members, and every file passes integrity_check.
  defp assert_same_everywhere(dir, members, acked, unsure) do
    expected = Map.new(acked)
    keys = Map.keys(expected) ++ unsure

    for member <- members do
      wait_until(
        fn ->
          {:ok, found} = local_mget(member, keys)
          Map.take(found, Map.keys(expected)) == expected
        end,
        60_000,
        fn -> lacking(dir, member, expected, keys) end
      )
    end

    wait_until(
      fn -> members |> Enum.map(&Files.digests(data_dir(dir, &1))) |> same?() end,
      60_000,
      fn ->
        "the members' shard digests differ: #{inspect(Enum.map(members, &Files.digests(data_dir(dir, &1))))}"
      end
    )

    [digests | _] = Enum.map(members, &Files.digests(data_dir(dir, &1)))
    assert length(digests) == 16

    for member <- members do
      data = data_dir(dir, member)
      assert Files.problems(data) == []
      {status, out} = Files.verify(data, acked, dir)
      assert status == 0, "#{member.node}: #{out}"
      assert out =~ " 0 problems"
    end
  end

  defp same?(list), do: length(Enum.uniq(list)) == 1

  defp truncated?(member),
    do: Enum.all?(0..15, &(log_overview(member, &1).first_index > 1))

  defp log_overview(member, shard),
    do: Nodes.call(member, LiteStash.Cluster, :log_overview, [@store, shard])

  defp applied(member, shard) do
    {:ok, index} = Nodes.call(member, LiteStash.Replica, :applied, [@store, shard])
    index
  end

  # Why `member` lacks acknowledged writes: the keys, what its replica
  # answered for them, what its files hold (read by the interop verifier,
  # past any cache), and the Raft state of each shard concerned.
  defp lacking(dir, member, expected, keys) do
    {:ok, found} = local_mget(member, keys)
    missing = for {key, value} <- expected, Map.get(found, key) != value, do: key
    shards = missing |> Enum.map(&elem(LiteStash.Replica.shard_of(&1), 1)) |> Enum.uniq()

    {_, files} = Files.verify(data_dir(dir, member), Enum.map(missing, &{&1, expected[&1]}), dir)

    raft =
      for shard <- shards do
        id = LiteStash.Cluster.Group.server_id(@store, shard, member.node)

        state =
          case Nodes.call(member, :ra_server_proc, :local_state_query, [id, :all, 5_000]) do
            {:ok, s, _} -> Map.take(s, [:commit_index, :last_applied, :current_term, :leader_id])
            other -> other
          end

        "shard #{shard}: file applied #{applied(member, shard)}, ra #{inspect(state)}"
      end

    "#{member.node} lacks #{length(missing)} acknowledged writes, e.g. " <>
      inspect(for key <- Enum.take(missing, 5), do: {key, expected[key], Map.get(found, key)}) <>
      "\n" <> Enum.join(raft, "\n") <> "\nits files: " <> files
  end

  # A member's own replica, never through the cluster.
  defp local_get(member, key),
    do: Nodes.call(member, LiteStash.Cluster.Replica, :read, [@store, :get, [key]])

  defp local_mget(member, keys),
    do: Nodes.call(member, LiteStash.Cluster.Replica, :read, [@store, :get_many, [keys]])

  defp key_on(shard) do
    Stream.iterate(0, &(&1 + 1))
    |> Stream.map(&"s#{shard}:#{&1}")
    |> Enum.find(&(LiteStash.Replica.shard_of(&1) == {:ok, shard}))
  end

  # A leader knows it leads; a follower's view may lag.
  defp most_leading(members), do: Enum.max_by(members, &length(led_shards(&1, &1.node)))

  defp led_shards(member, leader) do
    {:ok, info} = rpc(member, :info, [])
    for %{shard: shard, leader: ^leader} <- info, do: shard
  end

  ## Members

  defp data_dir(dir, member), do: Path.join(dir, "#{member.name}")
  defp data_dir_of(member, dir), do: data_dir(dir, member)

  defp member_opts(dir, member, members, opts \\ []) do
    [
      name: @store,
      data_dir: data_dir(dir, member),
      cluster: Enum.map(members, & &1.node),
      timeout: 3_000
    ] ++ opts
  end

  # Starts the (killed) members' nodes again and their store members.
  defp restart_all!(dir, members) do
    restarted =
      for member <- members do
        restarted = Nodes.start!(member.name)
        on_exit(fn -> Nodes.stop(restarted) end)
        restarted
      end

    restarted
    |> Enum.map(&Task.async(fn -> Nodes.start_member!(&1, member_opts(dir, &1, members)) end))
    |> Task.await_many(120_000)

    restarted
  end

  defp start_cluster!(dir, count, opts \\ []) do
    tag = System.unique_integer([:positive])
    names = for i <- 1..count, do: :"ls#{tag}_#{i}"
    members = Enum.map(names, &Nodes.start!/1)
    on_exit(fn -> Enum.each(members, &Nodes.stop/1) end)

    members
    |> Enum.map(
      &Task.async(fn -> Nodes.start_member!(&1, member_opts(dir, &1, members, opts)) end)
    )
    |> Task.await_many(120_000)

    members
  end

  # LiteStash's own API on the member.
  defp rpc(member, fun, args, timeout \\ 60_000),
    do: :erpc.call(member.node, LiteStash, fun, [@store | args], timeout)

  defp cluster_rpc(member, fun, args),
    do: :erpc.call(member.node, LiteStash.Cluster, fun, [@store | args], 120_000)

  defp wait_until(fun, timeout, message) do
    deadline = now() + timeout
    wait_until(fun, deadline, message, :loop)
  end

  defp wait_until(fun, deadline, message, :loop) do
    cond do
      fun.() -> :ok
      now() > deadline -> flunk(if is_function(message), do: message.(), else: message)
      true -> Process.sleep(100) && wait_until(fun, deadline, message, :loop)
    end
  end
end
