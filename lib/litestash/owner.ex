defmodule LiteStash.Owner do
  @moduledoc false
  # The process that owns a store's lifecycle. Callers never message it: they
  # find the store handle in :persistent_term and call the NIF directly. The
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
    :persistent_term.put({LiteStash, name}, store)
    {:ok, %{store: store, name: name}}
  end

  @impl GenServer
  def terminate(_reason, %{store: store, name: name}) do
    :persistent_term.erase({LiteStash, name})
    Native.close(store)
  end
end
