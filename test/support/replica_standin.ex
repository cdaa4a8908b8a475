defmodule LiteStash.Test.ReplicaStandin do
  @moduledoc false
  # A stand-in for the core's replica primitives (LiteStash.Cluster.Replica),
  # in pure Elixir over one DETS file per shard, with the same answers: it
  # lets the tests exercise the Ra layer before (and independently of) the
  # NIF's replica support. Selected by `config :litestash, :cluster_replica`.

  use GenServer

  alias LiteStash.Error

  def open(opts) do
    name = Keyword.fetch!(opts, :name)
    dir = Path.join(Keyword.fetch!(opts, :data_dir), "standin")
    GenServer.start_link(__MODULE__, dir, name: name)
  end

  def store!(name) do
    if Process.whereis(name), do: name, else: raise(Error, reason: :closed, message: "closed")
  end

  # Any stable spread over 16 shards serves the Ra layer's tests.
  def shard_of(key), do: :erlang.phash2(key, 16)

  def apply_entry(store, shard, index, now, ops),
    do: GenServer.call(store, {:apply, shard, index, now, ops}, :infinity)

  def applied(store, shard), do: GenServer.call(store, {:applied, shard}, :infinity)
  def snapshot(store, shard, dest), do: GenServer.call(store, {:snapshot, shard, dest}, :infinity)
  def install(store, shard, src), do: GenServer.call(store, {:install, shard, src}, :infinity)

  def read(store, fun, args), do: GenServer.call(store, {:read, fun, args}, :infinity)

  @impl GenServer
  def init(dir) do
    File.mkdir_p!(dir)
    {:ok, %{dir: dir, tables: Map.new(0..15, &{&1, open_table(dir, &1)})}}
  end

  defp path(dir, shard), do: String.to_charlist(Path.join(dir, "#{shard}.dets"))

  defp open_table(dir, shard) do
    {:ok, table} =
      :dets.open_file(:"standin_#{System.unique_integer([:positive])}",
        file: path(dir, shard),
        repair: true
      )

    table
  end

  @impl GenServer
  def handle_call({:apply, shard, index, now, ops}, _from, state) do
    table = state.tables[shard]

    if index <= applied_index(table) do
      {:reply, {:ok, :skipped}, state}
    else
      results = Enum.map(ops, &op(table, &1, now))
      :ok = :dets.insert(table, {:"$applied", index, nil})
      :ok = :dets.sync(table)
      {:reply, {:ok, results}, state}
    end
  end

  def handle_call({:applied, shard}, _from, state),
    do: {:reply, {:ok, applied_index(state.tables[shard])}, state}

  def handle_call({:snapshot, shard, dest}, _from, state) do
    :ok = :dets.sync(state.tables[shard])
    {:reply, File.cp(List.to_string(path(state.dir, shard)), dest), state}
  end

  def handle_call({:install, shard, src}, _from, state) do
    :ok = :dets.close(state.tables[shard])
    File.cp!(src, List.to_string(path(state.dir, shard)))
    {:reply, :ok, put_in(state.tables[shard], open_table(state.dir, shard))}
  end

  def handle_call({:read, fun, args}, _from, state) do
    now = System.system_time(:millisecond)
    {:reply, read(state, fun, args, now), state}
  end

  defp read(state, :get, [key], now) do
    case live(state.tables[shard_of(key)], key, now) do
      {:ok, value, _} -> {:ok, value}
      :none -> {:error, %Error{reason: :not_found, message: "not found"}}
    end
  end

  defp read(state, :get_many, [keys], now) do
    found =
      for key <- keys,
          {:ok, value, _} <- [live(state.tables[shard_of(key)], key, now)],
          into: %{} do
        {key, value}
      end

    {:ok, found}
  end

  defp read(state, :exists, [key], now),
    do: {:ok, live(state.tables[shard_of(key)], key, now) != :none}

  defp read(state, :ttl, [key], now) do
    case live(state.tables[shard_of(key)], key, now) do
      {:ok, _, nil} -> {:ok, :infinity}
      {:ok, _, at} -> {:ok, at - now}
      :none -> {:error, %Error{reason: :not_found, message: "not found"}}
    end
  end

  @impl GenServer
  def handle_info(_msg, state), do: {:noreply, state}

  defp applied_index(table) do
    case :dets.lookup(table, :"$applied") do
      [{_, index, _}] -> index
      [] -> 0
    end
  end

  defp live(table, key, now) do
    case :dets.lookup(table, key) do
      [{^key, value, at}] when at == nil or at > now -> {:ok, value, at}
      _ -> :none
    end
  end

  defp op(table, {:set, key, value, at}, _now), do: :dets.insert(table, {key, value, at})

  defp op(table, {:put_new, key, value, at}, now) do
    case live(table, key, now) do
      :none -> :dets.insert(table, {key, value, at})
      _ -> {:error, %Error{reason: :exists, message: "exists"}}
    end
  end

  defp op(table, {:cas, key, expected, new, at}, now) do
    current =
      case live(table, key, now) do
        {:ok, value, _} -> value
        :none -> nil
      end

    if current == expected,
      do: :dets.insert(table, {key, new, at}),
      else: {:error, %Error{reason: :mismatch, message: "mismatch"}}
  end

  defp op(table, {:delete, key}, _now), do: :dets.delete(table, key)

  defp op(table, {:incr, key, by}, now) do
    case live(table, key, now) do
      :none ->
        :ok = :dets.insert(table, {key, by, nil})
        {:ok, by}

      {:ok, n, at} when is_integer(n) ->
        :ok = :dets.insert(table, {key, n + by, at})
        {:ok, n + by}

      _ ->
        {:error, %Error{reason: :not_an_integer, message: "not an integer"}}
    end
  end

  defp op(table, {:expire, key, at}, now) do
    case live(table, key, now) do
      {:ok, value, _} -> :dets.insert(table, {key, value, at})
      :none -> {:error, %Error{reason: :not_found, message: "not found"}}
    end
  end

  defp op(table, :clear, _now) do
    index = applied_index(table)
    :ok = :dets.delete_all_objects(table)
    :dets.insert(table, {:"$applied", index, nil})
  end
end
