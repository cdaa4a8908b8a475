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
    if telemetry?, do: :ok = Native.set_event_receiver(store, self())
    :ok = Native.register(name, store, telemetry?)
    {:ok, %{store: store, name: name}}
  end

  @impl GenServer
  def handle_info({:litestash_event, kind, shard, count, duration_us}, state) do
    LiteStash.Telemetry.writer_event(state.name, kind, shard, count, duration_us)
    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl GenServer
  def terminate(_reason, %{store: store, name: name}) do
    Native.unregister(name, store)
    Native.close(store)
  end
end
