defmodule LiteStash.Cluster.Placement do
  @moduledoc false
  # Which members hold which shard: rendezvous (highest random weight)
  # hashing of the shard index over the member nodes. Every node computes
  # the same answer from the same member list, and adding or removing a
  # node moves only the shards whose top `factor` changes.

  @shards 16

  @doc "The number of shards of a store."
  @spec shards() :: pos_integer()
  def shards, do: @shards

  @doc "The `factor` nodes of `nodes` that hold `shard`, highest weight first."
  @spec holders(non_neg_integer(), [node()], pos_integer() | nil) :: [node()]
  def holders(shard, nodes, factor) do
    nodes
    |> Enum.uniq()
    |> Enum.sort_by(&weight(shard, &1), :desc)
    |> Enum.take(factor || length(nodes))
  end

  # phash2 is the same on every node and every OTP release.
  defp weight(shard, node), do: {:erlang.phash2({:litestash_shard, shard, node}), node}
end
