defmodule LiteStash.Telemetry do
  @moduledoc """
  The `:telemetry` events LiteStash emits when the host application has the
  `:telemetry` library loaded (LiteStash does not depend on it; it checks
  once, when a store starts).

    * `[:litestash, :command, :start]` - measurements `%{system_time,
      monotonic_time}`, metadata `%{store, command}`.
    * `[:litestash, :command, :stop]` - measurements `%{duration,
      monotonic_time}` (native time units), metadata `%{store, command,
      result}`: `result` is `:ok`, or `:error` when the command returned
      `{:error, %LiteStash.Error{}}`, and then the metadata has its `reason`
      too (`:not_found` for a `get` of a missing key), so that a handler
      can count failures by kind.
    * `[:litestash, :command, :exception]` - as `:stop`, plus `kind`,
      `reason` and `stacktrace` in the metadata, when a command raises.
    * `[:litestash, :commit, :stop]` - one per group commit of a shard
      writer: measurements `%{duration, batch_size, dropped}`, metadata
      `%{store, shard}`.
    * `[:litestash, :sweep, :stop]` - one per expiry sweep that deleted keys:
      measurements `%{duration, deleted, dropped}`, metadata `%{store, shard}`.
    * `[:litestash, :backup, :stop]` - measurements `%{duration}`, metadata
      `%{store, dest, result}`.

  `command` is the function's name as an atom (`:set`, `:get`, `:mset`, ...).

  Command spans cost a caller something only while a handler is attached to
  an event under `[:litestash]`: each store's owner looks for handlers when
  the store starts and then once a second, so a handler attached later gets
  command events within a second. The writer events (`:commit`, `:sweep`)
  are emitted by the owner process, off the callers' path.

  The writer events have backpressure: at most 64 of a store wait for its
  owner at a time. When handlers are slower than the commits, the events
  past that are dropped, not queued, and counted: the `dropped` measurement
  of the next `:commit` or `:sweep` event delivered is the number of
  writer events (of either kind) dropped since the one before it, `0` while
  the handlers keep up. So the owner's mailbox stays bounded, and
  `LiteStash.stop/1` does not wait behind a backlog: it turns the events
  off first and the owner skips the ones still queued.
  """

  @doc false
  @spec enabled?() :: boolean()
  def enabled?,
    do: Code.ensure_loaded?(:telemetry) and function_exported?(:telemetry, :execute, 3)

  @doc false
  @spec listening?() :: boolean()
  def listening?, do: enabled?() and :telemetry.list_handlers([:litestash]) != []

  @flag {__MODULE__, :listening}

  @doc false
  # Whether calls run in spans: one flag for the VM, since handlers are
  # global. A read of it costs no copy and no lock.
  @spec listening_now?() :: boolean()
  def listening_now?, do: :persistent_term.get(@flag, false)

  @doc false
  # Looks for handlers and records the answer; written only when it changes
  # (a persistent_term write makes every process scan its heap).
  @spec refresh() :: boolean()
  def refresh do
    listening? = listening?()
    if listening? != listening_now?(), do: :persistent_term.put(@flag, listening?)
    listening?
  end

  @doc false
  @spec span(term(), atom(), (() -> result)) :: result when result: term()
  def span(store, command, fun) do
    meta = %{store: store, command: command}
    start = System.monotonic_time()

    :telemetry.execute(
      [:litestash, :command, :start],
      %{system_time: System.system_time(), monotonic_time: start},
      meta
    )

    try do
      fun.()
    catch
      kind, reason ->
        stop = System.monotonic_time()

        :telemetry.execute(
          [:litestash, :command, :exception],
          %{duration: stop - start, monotonic_time: stop},
          Map.merge(meta, %{kind: kind, reason: reason, stacktrace: __STACKTRACE__})
        )

        :erlang.raise(kind, reason, __STACKTRACE__)
    else
      result ->
        stop = System.monotonic_time()

        :telemetry.execute(
          [:litestash, :command, :stop],
          %{duration: stop - start, monotonic_time: stop},
          Map.merge(meta, outcome(result))
        )

        result
    end
  end

  defp outcome({:error, %LiteStash.Error{reason: reason}}), do: %{result: :error, reason: reason}
  defp outcome(_), do: %{result: :ok}

  @doc false
  @spec writer_event(
          term(),
          :commit | :sweep,
          String.t(),
          non_neg_integer(),
          non_neg_integer(),
          non_neg_integer()
        ) :: :ok
  def writer_event(store, kind, shard, count, duration_us, dropped) do
    count_key = if kind == :commit, do: :batch_size, else: :deleted
    duration = System.convert_time_unit(duration_us, :microsecond, :native)

    :telemetry.execute(
      [:litestash, kind, :stop],
      %{:duration => duration, count_key => count, :dropped => dropped},
      %{store: store, shard: shard}
    )
  end

  @doc false
  @spec backup_done(term(), String.t(), integer(), term()) :: :ok
  def backup_done(store, dest, duration, result) do
    :telemetry.execute([:litestash, :backup, :stop], %{duration: duration}, %{
      store: store,
      dest: dest,
      result: result
    })
  end
end
