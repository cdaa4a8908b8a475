defmodule :telemetry do
  @moduledoc false
  # A small stand-in for the :telemetry library (which we cannot fetch from
  # hex here) with the calls LiteStash and its tests use: attach/4,
  # detach/1 and execute/3, with the library's semantics.

  @key {__MODULE__, :handlers}

  def attach(id, event, fun, config), do: attach_many(id, [event], fun, config)

  def attach_many(id, events, fun, config) do
    handlers = :persistent_term.get(@key, [])

    if List.keymember?(handlers, id, 0) do
      {:error, :already_exists}
    else
      :persistent_term.put(@key, [{id, events, fun, config} | handlers])
      :ok
    end
  end

  def detach(id) do
    handlers = :persistent_term.get(@key, [])

    if List.keymember?(handlers, id, 0) do
      :persistent_term.put(@key, List.keydelete(handlers, id, 0))
      :ok
    else
      {:error, :not_found}
    end
  end

  def list_handlers(prefix) do
    for {id, events, fun, config} <- :persistent_term.get(@key, []),
        event <- events,
        List.starts_with?(event, prefix),
        do: %{id: id, event_name: event, function: fun, config: config}
  end

  def execute(event, measurements, metadata) do
    for {id, events, fun, config} <- :persistent_term.get(@key, []), event in events do
      try do
        fun.(event, measurements, metadata, config)
      rescue
        # The real library detaches a handler that fails.
        _ -> detach(id)
      end
    end

    :ok
  end
end
