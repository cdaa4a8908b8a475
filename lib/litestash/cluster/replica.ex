defmodule LiteStash.Cluster.Replica do
  @moduledoc false
  # This node's replica of a clustered store: the store handle and the
  # core's replica primitives (CONTRACT.md section 10), in one place so
  # that the Ra machine and snapshot module need know nothing else.

  alias LiteStash.{Error, Native}

  # The tests may put a stand-in with the same functions in its place
  # (application env :litestash, :cluster_replica), to exercise the Ra
  # layer on its own.
  defp impl, do: Application.get_env(:litestash, :cluster_replica)

  @doc "Opens the store's replica files: `LiteStash.start_link/1` with `replica: true`."
  @spec open(keyword()) :: {:ok, pid()} | {:error, term()}
  def open(opts) do
    case impl() do
      nil -> LiteStash.start_link(opts ++ [replica: true])
      mod -> mod.open(opts)
    end
  end

  @doc "Runs the read `fun` (get, get_many, exists, ttl) of the NIF on this node's replica."
  @spec read(reference(), atom(), list()) :: term()
  def read(store, fun, args) when fun in [:get, :get_many, :exists, :ttl] do
    case impl() do
      nil -> Kernel.apply(Native, fun, [store | args])
      mod -> mod.read(store, fun, args)
    end
  end

  @doc "The open store registered under `name`; raises when it is not open."
  @spec store!(atom()) :: reference()
  def store!(name) do
    if impl(), do: impl().store!(name), else: lookup!(name)
  end

  defp lookup!(name) do
    case Native.lookup(name) do
      {store, _name, _telemetry} -> store
      nil -> raise Error, reason: :closed, message: "no LiteStash store #{inspect(name)} is open"
    end
  end

  @doc "The shard (0..15) of `key`."
  @spec shard_of(String.t()) :: non_neg_integer()
  def shard_of(key) do
    if impl(), do: impl().shard_of(key), else: apply(Native, :shard_of, [key])
  end

  @doc """
  Applies the ops of log entry `index` to `shard` in one transaction with its
  applied index: `{:ok, results}`, or `{:ok, :skipped}` for an entry the file
  already holds.
  """
  @spec apply_entry(reference(), non_neg_integer(), pos_integer(), integer(), [tuple() | atom()]) ::
          {:ok, [term()] | :skipped} | {:error, Error.t()}
  def apply_entry(store, shard, index, now_ms, ops) do
    if impl(),
      do: impl().apply_entry(store, shard, index, now_ms, ops),
      else: apply(Native, :replica_apply, [store, shard, index, now_ms, ops])
  end

  @doc "The index of the last log entry applied to `shard` (0 for none)."
  @spec applied(reference(), non_neg_integer()) :: {:ok, non_neg_integer()} | {:error, Error.t()}
  def applied(store, shard) do
    if impl(),
      do: impl().applied(store, shard),
      else: apply(Native, :replica_applied, [store, shard])
  end

  @doc "Writes a consistent copy of `shard`'s file, with its applied index, to `dest`."
  @spec snapshot(reference(), non_neg_integer(), Path.t()) :: :ok | {:error, Error.t()}
  def snapshot(store, shard, dest) do
    if impl(),
      do: impl().snapshot(store, shard, dest),
      else: apply(Native, :shard_snapshot, [store, shard, dest])
  end

  @doc "Replaces `shard`'s file with the copy at `src`."
  @spec install(reference(), non_neg_integer(), Path.t()) :: :ok | {:error, Error.t()}
  def install(store, shard, src) do
    if impl(),
      do: impl().install(store, shard, src),
      else: apply(Native, :shard_install, [store, shard, src])
  end
end
