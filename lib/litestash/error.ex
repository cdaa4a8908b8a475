defmodule LiteStash.Error do
  @moduledoc """
  The error of every LiteStash call: `{:error, %LiteStash.Error{}}` from plain
  functions, raised by the bang variants.

  `reason` is an atom to match on; `message` says what happened in words,
  naming the key, file or path concerned.

  ## Reasons

    * `:not_found` - the key is not stored
    * `:invalid_key` - the key is empty, over 1024 bytes, or not UTF-8
    * `:unsupported_value` - the value holds a term the contract cannot store
    * `:value_too_large` - the encoded value is over 64 MiB
    * `:too_deep` - the value is nested deeper than 512 levels
    * `:corrupt_value` - a stored value is not valid contract MessagePack
    * `:closed` - the store is stopped (or was never started)
    * `:already_open` - the data dir is already open in this VM
    * `:disk_full` - the disk is full
    * `:corrupt` - a shard file is damaged; the message names it
    * `:busy` - another OS process held a lock past the busy timeout
    * `:io`, `:permission_denied` - the file system refused
    * `:read_only` - the file system refused a write, or the store was
      started with `read_only: true` and refuses every write
    * `:not_a_directory` - a path that must be a directory is not, or the reverse
    * `:not_litestash` - an SQLite file that is not a LiteStash shard, or a
      data dir that is not empty and holds no shard
    * `:newer_version` - a file from a newer contract version
    * `:legacy_format` - a data dir of the Python litestash 0.1 package
    * `:incomplete_backup` - a dir where a backup was being made and did not
      finish (it holds `LITESTASH_BACKUP_INCOMPLETE`): not opened
    * `:invalid_argument` - an argument the store cannot use (a backup
      destination that is not empty or is inside the data dir, a shard
      index out of range)
    * `:not_an_integer` - `incr/3` on a value that is not an integer, or a
      sum outside -2^63..2^63-1
    * `:exists` - `put_new/4` on a key that is stored
    * `:mismatch` - `compare_and_set/5` found another value
    * `:too_many_streams` - as many streams are open on the store as its
      `:max_streams` option allows
    * `:replicated` - the shard file is one replica of a clustered store
      (it holds the contract's `litestash_replica` table): it is written only
      through its cluster; a store opened without the cluster reads it
    * `:no_quorum` - a clustered store's call found no majority of the
      shard's members within its `:timeout`; a write may still be applied
    * `:replica_log_lost` - a cluster member's shard file has applied
      entries of a Raft log that is no longer in its data dir: the member
      refuses to start a new log over it (see `LiteStash.Cluster`)
    * `:internal` - a bug in LiteStash; the VM and other callers carry on
  """

  @typedoc "Why a call failed; see \"Reasons\"."
  @type reason ::
          :not_found
          | :invalid_key
          | :unsupported_value
          | :value_too_large
          | :too_deep
          | :corrupt_value
          | :closed
          | :already_open
          | :disk_full
          | :corrupt
          | :busy
          | :io
          | :permission_denied
          | :read_only
          | :not_a_directory
          | :not_litestash
          | :newer_version
          | :legacy_format
          | :incomplete_backup
          | :invalid_argument
          | :not_an_integer
          | :exists
          | :mismatch
          | :too_many_streams
          | :replicated
          | :no_quorum
          | :replica_log_lost
          | :internal

  defexception [:reason, :message]

  @type t :: %__MODULE__{reason: reason(), message: String.t()}

  @doc """
  Every reason a LiteStash call can give, as `@type reason` lists them.

      iex> :not_found in LiteStash.Error.reasons()
      true
  """
  @spec reasons() :: [reason()]
  def reasons do
    {:ok, types} = Code.Typespec.fetch_types(__MODULE__)

    Enum.find_value(types, fn
      {:type, {:reason, union, []}} -> union_atoms(union)
      _ -> nil
    end)
  end

  defp union_atoms({:type, _, :union, members}), do: Enum.flat_map(members, &union_atoms/1)
  defp union_atoms({:atom, _, atom}), do: [atom]
end
