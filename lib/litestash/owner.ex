defmodule LiteStash.Owner do
  @moduledoc false
  # The process that owns a store's lifecycle. Callers never message it: the
  # NIF finds the store in its registry by name or by this process's pid
  # (not :persistent_term, see registry.rs) and runs the call directly. The
  # NIF monitors this process, so the store is closed and its data dir
  # released even when the owner is killed without running terminate/2.

  use GenServer

  alias LiteStash.Native

  def start_link({store, name}) do
    if name,
      do: GenServer.start_link(__MODULE__, {store, name}, name: name),
      else: GenServer.start_link(__MODULE__, {store, name})
  end

  @doc """
  Stops the store `server` names: its owner process, found through the
  NIF's registry (so that a name another kind of process holds is left
  alone).
  """
  @spec stop(LiteStash.server()) :: :ok | {:error, LiteStash.Error.t()}
  def stop(server) do
    with {:ok, target} <- LiteStash.Call.target(server),
         {:ok, store} <- Native.lookup(target) do
      case if(is_pid(target), do: target, else: Process.whereis(target)) do
        nil ->
          closed(server)

        pid ->
          # The writers' events are turned off first: the few still in the
          # mailbox (the NIF lets at most 64 wait) are then taken without
          # running handlers, so a slow telemetry handler does not hold the
          # stop.
          Native.set_event_receiver(store, nil)
          stop_owner(pid, server)
      end
    end
  end

  defp stop_owner(pid, server) do
    GenServer.stop(pid, :normal)
  catch
    # Stopped by another caller since the lookup: gone before the call
    # (`:noproc`), or stopping while this call waited (`:normal`, which
    # `:sys.terminate/3` reports as `{:normal, {:sys, :terminate, args}}`).
    :exit, {reason, _} when reason in [:noproc, :normal] -> closed(server)
    :exit, {{:normal, {:sys, :terminate, _}}, _} -> closed(server)
  end

  defp closed(server) do
    {:error,
     %LiteStash.Error{
       reason: :closed,
       message: "no LiteStash store #{inspect(server)} is running"
     }}
  end

  @impl GenServer
  def init({store, name}) do
    Process.flag(:trap_exit, true)
    :ok = Native.monitor_owner(store)
    # An atom name is resolved by the NIF; any other name through its pid.
    :ok = Native.register(if(is_atom(name), do: name), store)
    telemetry? = LiteStash.Telemetry.enabled?()
    # Commands run in spans, and writers report their commits, only while
    # someone listens: with no handler attached, telemetry costs nothing.
    listening? = telemetry? and LiteStash.Telemetry.refresh()
    :ok = Native.set_event_receiver(store, if(listening?, do: self()))
    if telemetry?, do: schedule_refresh()
    {:ok, %{store: store, name: name || self(), listening?: listening?}}
  end

  # How often the owner looks for newly attached or detached handlers.
  @refresh_ms 1_000

  defp schedule_refresh, do: Process.send_after(self(), :refresh_telemetry, @refresh_ms)

  @impl GenServer
  def handle_info({:litestash_event, kind, shard, count, duration_us, dropped}, state) do
    # Frees the event's place first: a handler that raises loses none.
    if Native.event_handled(state.store) do
      LiteStash.Telemetry.writer_event(state.name, kind, shard, count, duration_us, dropped)
    end

    {:noreply, state}
  end

  def handle_info(:refresh_telemetry, state) do
    listening? = LiteStash.Telemetry.refresh()

    if listening? != state.listening? do
      :ok = Native.set_event_receiver(state.store, if(listening?, do: self()))
    end

    schedule_refresh()
    {:noreply, %{state | listening?: listening?}}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl GenServer
  def terminate(_reason, %{store: store}) do
    Native.unregister(store)
    Native.close(store)
  end
end
