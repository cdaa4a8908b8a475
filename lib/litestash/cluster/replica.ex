defmodule LiteStash.Cluster.Replica do
  @moduledoc false
  # This node's replica of a clustered store, in one place for the Ra
  # machine, its snapshots and the cluster's reads: the replica store
  # (opened with `replica: true` under the store's name) and the core's
  # replica primitives (LiteStash.Replica, contract section 10).

  alias LiteStash.{Call, Error, Native}

  @doc "Opens the store's replica files: `LiteStash.start_link/1` with `replica: true`."
  @spec open(keyword()) :: {:ok, pid()} | {:error, Error.t()}
  def open(opts), do: LiteStash.start_link(opts ++ [replica: true])

  @doc """
  Runs the read `fun` of the NIF (`:get`, `:get_many`, `:exists`, `:ttl`) on
  this node's replica, never through the cluster (LiteStash's own
  functions would send it back here).
  """
  @spec read(atom(), atom(), list()) :: term()
  def read(name, fun, args) when fun in [:get, :get_many, :exists, :ttl],
    do: Call.read(name, fun, &Kernel.apply(Native, fun, [&1 | args]))

  @doc """
  The keys of `shard` on this node's replica that start with `prefix`
  (`:keys`), or how many there are (`:count`), read in one snapshot.
  """
  @spec shard_keys(atom(), non_neg_integer(), String.t(), :keys | :count) ::
          {:ok, [String.t()] | non_neg_integer()} | {:error, Error.t()}
  def shard_keys(name, shard, prefix, what) do
    with {:ok, cursor} <- Call.read(name, :keys, &Native.snapshot_open(&1, shard, prefix)) do
      try do
        walk(cursor, what, if(what == :keys, do: [], else: 0))
      after
        Native.snapshot_close(cursor)
      end
    end
  end

  defp walk(cursor, what, acc) do
    case Native.snapshot_next(cursor, 1_000, false) do
      {:ok, []} when what == :keys -> {:ok, acc |> Enum.reverse() |> Enum.concat()}
      {:ok, []} -> {:ok, acc}
      {:ok, keys} when what == :keys -> walk(cursor, what, [keys | acc])
      {:ok, keys} -> walk(cursor, what, acc + length(keys))
      {:error, _} = error -> error
    end
  end

  @doc "The name of the replica store; raises `:closed` when it is not open here."
  @spec store!(atom()) :: atom()
  def store!(name) do
    case Native.lookup(name) do
      {:ok, _store} -> name
      {:error, error} -> raise error
    end
  end

  @doc "The shard (0..15) of `key`; an invalid key raises its `LiteStash.Error`."
  @spec shard_of(String.t()) :: non_neg_integer()
  def shard_of(key) do
    case LiteStash.Replica.shard_of(key) do
      {:ok, shard} -> shard
      {:error, error} -> raise error
    end
  end

  defdelegate apply_entry(name, shard, index, now_ms, ops), to: LiteStash.Replica
  defdelegate applied(name, shard), to: LiteStash.Replica
  defdelegate snapshot(name, shard, dest), to: LiteStash.Replica
  defdelegate install(name, shard, src), to: LiteStash.Replica
end
