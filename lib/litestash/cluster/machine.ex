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
  # replica's own clock is never read. A replica's writer never sweeps
  # expired rows on its own (each would delete them at another moment):
  # the leader appends a `{:sweep, limit}` entry on its tick instead, once
  # the shard has seen a deadline.

  alias LiteStash.Cluster.Replica
  alias LiteStash.Error

  # How often (in entries) the machine offers Ra a point to snapshot at, at
  # most; Ra decides whether to take one (snapshot_interval, segments to
  # free).
  @release_every 256

  # Rows deleted by one replicated sweep: one short transaction per tick.
  @sweep_limit 500

  # Refusals that follow from the entry alone, the same on every replica:
  # they answer the caller. Any other error (disk full, I/O) is this
  # replica's own and must not be skipped.
  @refusals [:invalid_argument, :invalid_key, :unsupported_value, :value_too_large, :too_deep]

  @type state :: %{
          name: atom(),
          shard: non_neg_integer(),
          release_every: pos_integer(),
          expiring: boolean()
        }

  @doc false
  @spec init(map()) :: state()
  def init(%{store: name, shard: shard} = config),
    do: %{
      name: name,
      shard: shard,
      release_every: min(Map.get(config, :release_every, @release_every), @release_every),
      expiring: false
    }

  @doc false
  def apply(%{index: index} = meta, {:ops, ops}, %{name: name, shard: shard} = state) do
    now = Map.fetch!(meta, :system_time)
    ops = Enum.map(ops, &deadline(&1, now))

    reply =
      case Replica.apply_entry(name, shard, index, now, ops) do
        {:ok, answers} when is_list(answers) ->
          {:ok, answers}

        # Applied before this server's (re)start: no caller waits for it
        # here, and its answers are not kept.
        {:ok, :skipped} ->
          {:error,
           %Error{reason: :no_quorum, message: "log entry #{index} was applied before its answer"}}

        {:error, %Error{reason: reason}} = refused when reason in @refusals ->
          refused

        # A value holds a struct: nothing is applied; the caller encodes
        # the structs (LiteStash.Encoder) and sends the entry again.
        :encode_structs ->
          :encode_structs

        # A failed transaction must not be skipped, or this replica would
        # diverge: crash, so that Ra restarts the server and applies the
        # entry again from the log.
        {:error, error} ->
          raise error
      end

    state = %{state | expiring: expiring?(state.expiring, ops)}
    {state, reply, release(index, state)}
  end

  # Ra's own commands ({:machine_version, _, _}, node and process monitors)
  # change nothing in the file.
  def apply(%{index: index}, _command, state), do: {state, :ok, release(index, state)}

  @doc false
  # Called on the leader only, every tick (1 s): the replicated sweep.
  def tick(_time_ms, %{expiring: true}), do: [{:append, {:ops, [{:sweep, @sweep_limit}]}}]
  def tick(_time_ms, _state), do: []

  defp expiring?(expiring, ops) do
    Enum.reduce(ops, expiring, fn
      :clear, _ -> false
      {:set, _, _, at}, acc -> acc or at != nil
      {:put_new, _, _, at}, acc -> acc or at != nil
      {:cas, _, _, _, at}, acc -> acc or at != nil
      {:expire, _, at}, acc -> acc or at != nil
      _op, acc -> acc
    end)
  end

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
  def read(fun, args, %{name: name}), do: Replica.read(name, fun, args)
end
