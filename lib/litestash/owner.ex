defmodule LiteStash.Owner do
  @moduledoc false
  # The process that owns a store's lifecycle. Callers never message it: they
  # find the store handle in the NIF's registry (Native.lookup/1; not
  # :persistent_term, see REGISTRY in nifs.rs) and call the NIF directly. The
  # NIF monitors this process, so the store is closed and its data dir
  # released even when the owner is killed without running terminate/2.

  use GenServer

  alias LiteStash.Native

  def start_link({store, name}) do
    GenServer.start_link(__MODULE__, {store, name}, name: name)
  end

  @impl GenServer
  def init({store, name}) do
    Process.flag(:trap_exit, true)
    :ok = Native.monitor_owner(store)
    telemetry? = LiteStash.Telemetry.enabled?()
    # Commands run in spans, and writers report their commits, only while
    # someone listens: with no handler attached, telemetry costs nothing.
    listening? = telemetry? and LiteStash.Telemetry.listening?()
    :ok = listen(store, name, listening?)
    if telemetry?, do: schedule_refresh()
    {:ok, %{store: store, name: name, listening?: listening?}}
  end

  defp listen(store, name, listening?) do
    :ok = Native.set_event_receiver(store, if(listening?, do: self()))
    Native.register(name, store, listening?)
  end

  # How often the owner looks for newly attached or detached handlers.
  @refresh_ms 1_000

  defp schedule_refresh, do: Process.send_after(self(), :refresh_telemetry, @refresh_ms)

  @impl GenServer
  def handle_info({:litestash_event, kind, shard, count, duration_us}, state) do
    LiteStash.Telemetry.writer_event(state.name, kind, shard, count, duration_us)
    {:noreply, state}
  end

  def handle_info(:refresh_telemetry, state) do
    listening? = LiteStash.Telemetry.listening?()

    if listening? != state.listening? do
      :ok = listen(state.store, state.name, listening?)
    end

    schedule_refresh()
    {:noreply, %{state | listening?: listening?}}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl GenServer
  def terminate(_reason, %{store: store, name: name}) do
    Native.unregister(name, store)
    Native.close(store)
  end
end
