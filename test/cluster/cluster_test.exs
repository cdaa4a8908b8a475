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

  ## Helpers

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
