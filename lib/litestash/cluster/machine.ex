defmodule LiteStash.Cluster.Machine do
  @moduledoc false
  # The Ra state machine of one shard (a `ra_machine`; the behaviour is not
  # declared because Ra is optional, see LiteStash.Cluster). Its state lives
  # in the shard's SQLite file, not in memory: the machine state is only
  # which store and shard it is, and apply/3 hands each committed log entry
  # to the core, which applies it in one transaction together with the
  # entry's index (CONTRACT.md section 10). Replaying the log after a crash
  # therefore applies nothing twice: the core skips entries at or below the
  # file's applied index.
  #
  # Determinism: every replica must compute the same file from the same log.
  # Relative TTLs become deadlines here from `system_time`, the leader's
  # clock when it appended the entry, which is stored in the entry; the
  # replica's own clock is never read.

  alias LiteStash.Cluster.Replica

  # How often (in entries) the machine offers Ra a point to snapshot at, at
  # most; Ra decides whether to take one (snapshot_interval, segments to
  # free).
  @release_every 256

  @type state :: %{name: atom(), shard: non_neg_integer(), release_every: pos_integer()}

  @doc false
  @spec init(map()) :: state()
  def init(%{store: name, shard: shard} = config),
    do: %{
      name: name,
      shard: shard,
      release_every: min(Map.get(config, :release_every, @release_every), @release_every)
    }

  @doc false
  def apply(%{index: index} = meta, {:ops, ops}, %{name: name, shard: shard} = state) do
    now = Map.fetch!(meta, :system_time)
    store = Replica.store!(name)

    reply =
      case Replica.apply_entry(store, shard, index, now, Enum.map(ops, &deadline(&1, now))) do
        {:ok, results} ->
          results

        # A failed transaction (disk full, I/O) must not be skipped, or this
        # replica would diverge: crash, so that Ra restarts the server and
        # applies the entry again from the log.
        {:error, error} ->
          raise error
      end

    {state, reply, release(index, state)}
  end

  # Ra's own commands ({:machine_version, _, _}, node and process monitors)
  # change nothing in the file.
  def apply(%{index: index}, _command, state), do: {state, :ok, release(index, state)}

  defp release(index, %{release_every: every} = state) when rem(index, every) == 0,
    do: [{:release_cursor, index, state}]

  defp release(_index, _state), do: []

  defp deadline({:set, key, value, ttl}, now), do: {:set, key, value, at(ttl, now)}
  defp deadline({:put_new, key, value, ttl}, now), do: {:put_new, key, value, at(ttl, now)}
  defp deadline({:cas, key, old, new, ttl}, now), do: {:cas, key, old, new, at(ttl, now)}
  defp deadline({:expire, key, ttl}, now), do: {:expire, key, at(ttl, now)}
  defp deadline(op, _now), do: op

  defp at(nil, _now), do: nil
  defp at(ttl, now), do: now + ttl

  @doc false
  def snapshot_module, do: LiteStash.Cluster.Snapshot

  # Queries run in the Ra server, on the node that answers (the leader for
  # a consistent query): they read that node's replica.
  @doc false
  def read(fun, args, %{name: name}), do: Kernel.apply(LiteStash, fun, [name | args])
end
