defmodule LiteStash.Replica do
  @moduledoc false
  # A replica's primitives (contract section 10) for LiteStash.Cluster, on
  # a store opened with `replica: true`: applying one replication log entry
  # in one transaction with its index, the applied index, and shard
  # snapshots for members that catch up.

  alias LiteStash.{Call, Error, Native}

  @typedoc "An op of a log entry; deadlines (`at`) are absolute Unix milliseconds."
  @type op ::
          {:set, String.t(), LiteStash.value(), integer() | nil}
          | {:put_new, String.t(), LiteStash.value(), integer() | nil}
          | {:cas, String.t(), LiteStash.value(), LiteStash.value(), integer() | nil}
          | {:incr, String.t(), integer()}
          | {:delete, String.t()}
          | {:expire, String.t(), integer() | nil}
          | :clear
          | {:sweep, pos_integer()}

  @doc "The shard (0..15) of `key`."
  @spec shard_of(String.t()) :: {:ok, non_neg_integer()} | {:error, Error.t()}
  def shard_of(key), do: Native.shard_of(key)

  @doc """
  Applies the ops of log entry `index` to `shard` by the leader's clock
  `now_ms`, in one transaction with the index: `{:ok, answers}` (one per op,
  each failing alone), or `{:ok, :skipped}` for an entry the file holds.
  """
  @spec apply_entry(LiteStash.server(), non_neg_integer(), pos_integer(), integer(), [op()]) ::
          {:ok, [term()] | :skipped} | {:error, Error.t()}
  def apply_entry(server, shard, index, now_ms, ops) do
    Call.write(server, :replica_apply, &Native.replica_apply(&1, &2, shard, index, now_ms, ops))
  end

  @doc "The index of the last log entry applied to `shard` (0 for none)."
  @spec applied(LiteStash.server(), non_neg_integer()) ::
          {:ok, non_neg_integer()} | {:error, Error.t()}
  def applied(server, shard),
    do: Call.read(server, :replica_applied, &Native.replica_applied(&1, shard))

  @doc "Writes a consistent copy of `shard`'s file, with its applied index, to `dest`."
  @spec snapshot(LiteStash.server(), non_neg_integer(), Path.t()) :: :ok | {:error, Error.t()}
  def snapshot(server, shard, dest),
    do: Call.read(server, :shard_snapshot, &Native.shard_snapshot(&1, shard, dest))

  @doc "Replaces `shard`'s contents with the replica's shard file at `src`."
  @spec install(LiteStash.server(), non_neg_integer(), Path.t()) :: :ok | {:error, Error.t()}
  def install(server, shard, src),
    do: Call.write(server, :shard_install, &Native.shard_install(&1, &2, shard, src))
end
