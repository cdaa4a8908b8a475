defmodule LiteStash.Cluster.Member do
  @moduledoc false
  # This node's part of a clustered store: it opens the store's replica
  # files (`replica: true`), starts a Ra system whose log lives in
  # `<data_dir>/ra`, and one Ra server for each shard this node holds. It
  # stops the servers before the store when it stops, so that no entry is
  # applied to a closed store.

  use GenServer

  alias LiteStash.Cluster.Placement

  require Logger

  def start_link(config), do: GenServer.start_link(__MODULE__, config, name: config.member)

  @impl GenServer
  def init(config) do
    Process.flag(:trap_exit, true)

    with {:ok, _} <- Application.ensure_all_started(:ra),
         {:ok, owner} <- LiteStash.Cluster.Replica.open(config.store_opts),
         :ok <- start_system(config),
         :ok <- start_servers(config) do
      :persistent_term.put({LiteStash.Cluster, config.name}, config)
      {:ok, %{config: config, owner: owner}}
    else
      {:error, reason} -> {:stop, reason}
    end
  end

  @impl GenServer
  def handle_info({:EXIT, owner, reason}, %{owner: owner} = state),
    do: {:stop, reason, state}

  def handle_info(_message, state), do: {:noreply, state}

  @impl GenServer
  def terminate(_reason, %{config: config}) do
    :persistent_term.erase({LiteStash.Cluster, config.name})

    for shard <- 0..(Placement.shards() - 1) do
      ra().stop_server(config.system, LiteStash.Cluster.server_id(config.name, shard, node()))
    end

    try do
      LiteStash.stop(config.name)
    catch
      :exit, _ -> :ok
    end
  end

  defp start_system(config) do
    dir = config.ra_dir
    File.mkdir_p!(dir)

    system = %{
      name: config.system,
      names: ra(:ra_system).derive_names(config.system),
      data_dir: String.to_charlist(dir),
      wal_data_dir: String.to_charlist(dir)
    }

    case ra(:ra_system).start(system) do
      {:ok, _} -> :ok
      {:error, {:already_started, _}} -> :ok
      {:error, reason} -> {:error, {:ra_system, reason}}
    end
  end

  # A server this node ran before is restarted from Ra's log and the
  # shard's file; a shard this node holds by placement but never ran is
  # started fresh, with the placement's holders as its initial members.
  defp start_servers(config) do
    Enum.reduce_while(0..(Placement.shards() - 1), :ok, fn shard, :ok ->
      case start_server(config, shard) do
        :ok -> {:cont, :ok}
        {:error, %LiteStash.Error{}} = error -> {:halt, error}
        {:error, reason} -> {:halt, {:error, {:ra_server, shard, reason}}}
      end
    end)
  end

  defp start_server(config, shard) do
    id = LiteStash.Cluster.server_id(config.name, shard, node())

    case ra().restart_server(config.system, id) do
      :ok ->
        :ok

      {:error, {:already_started, _}} ->
        :ok

      {:error, reason} when reason in [:name_not_registered, :not_found] ->
        case server_on_disk(config, id) do
          {:ok, server} -> restart_unregistered(config, server)
          :none -> start_fresh(config, shard, id)
        end

      {:error, reason} ->
        {:error, reason}
    end
  end

  # Ra registers a server's name in a DETS table (`names.dets`) that it
  # writes back lazily: a node killed in the seconds after it first
  # started a server restarts without the name, though the server's
  # directory, its config (written and synced before the name) and its log
  # entries (in Ra's WAL and segments) are all on disk. Starting a fresh
  # server instead would begin a new log from index 1 on a file whose
  # applied index is past it, and the core would skip the new entries as
  # applied: acknowledged writes lost. So the server is found by its
  # config and started from it, which recovers its log and registers its
  # name again.
  defp server_on_disk(config, id) do
    found =
      for entry <- ls(config.ra_dir),
          dir = Path.join(config.ra_dir, entry),
          File.regular?(Path.join(dir, "config")),
          {:ok, %{id: ^id, uid: uid} = server} <- [ra(:ra_log).read_config(~c"#{dir}")],
          to_string(uid) == entry,
          do: server

    case found do
      [] -> :none
      [server] -> {:ok, server}
      several -> {:ok, Enum.max_by(several, &config_mtime(config, &1))}
    end
  end

  defp ls(dir) do
    case File.ls(dir) do
      {:ok, entries} -> Enum.sort(entries)
      {:error, _} -> []
    end
  end

  defp config_mtime(config, server) do
    path = Path.join([config.ra_dir, to_string(server.uid), "config"])
    File.stat!(path, time: :posix).mtime
  end

  defp restart_unregistered(config, server) do
    Logger.warning(
      "LiteStash: Ra's name registry had lost server #{inspect(server.id)}; " <>
        "restarting it from #{Path.join(config.ra_dir, to_string(server.uid))}"
    )

    start_and_sync(config, server)
  end

  # A shard this node never ran a server of. Its file must not have
  # applied entries of a log that is gone: a fresh server of a fresh
  # group would number its entries from 1 again (see server_on_disk/2).
  defp start_fresh(config, shard, id) do
    holders = Placement.holders(shard, config.nodes, config.replication_factor)

    with true <- node() in holders,
         :ok <- no_applied_entries(config, shard),
         :ok <- start_new_server(config, shard, holders) do
      # Ra leaves the first election of a new group to its user; each new
      # member calls one (pre-vote keeps the losers harmless).
      ra().trigger_election(id)
    else
      false -> :ok
      error -> error
    end
  end

  defp no_applied_entries(config, shard) do
    case LiteStash.Replica.applied(config.name, shard) do
      {:ok, 0} ->
        :ok

      {:ok, index} ->
        {:error,
         %LiteStash.Error{
           reason: :replica_log_lost,
           message:
             "shard #{shard}'s file records log entry #{index} as applied, but this node " <>
               "has no Ra server of it under #{config.ra_dir}: its replication log is gone. " <>
               "Remove this node from the cluster (LiteStash.Cluster.remove_member/2), " <>
               "move its data dir away, and add it again to copy the shard from the others"
         }}

      {:error, _} = error ->
        error
    end
  end

  @doc false
  def start_new_server(config, shard, holders) do
    id = LiteStash.Cluster.server_id(config.name, shard, node())
    uid = ra().new_uid("LS#{shard}_")

    server = %{
      id: id,
      uid: uid,
      cluster_name: "#{config.name}/#{shard}",
      friendly_name: ~c"#{config.name}/#{shard}",
      initial_members: Enum.map(holders, &LiteStash.Cluster.server_id(config.name, shard, &1)),
      machine:
        {:module, LiteStash.Cluster.Machine,
         %{store: config.name, shard: shard, release_every: config.snapshot_interval}},
      log_init_args: %{uid: uid, snapshot_interval: config.snapshot_interval}
    }

    start_and_sync(config, server)
  end

  # Starts a server of `server`'s config; its name is on disk when this
  # returns :ok.
  defp start_and_sync(config, server) do
    case ra().start_server(config.system, server) do
      :ok -> sync_names(config)
      {:error, {:already_started, _}} -> :ok
      {:error, reason} -> {:error, reason}
    end
  end

  # Writes Ra's name registry back to disk now, rather than within Ra's
  # DETS delays (see server_on_disk/2).
  defp sync_names(config) do
    %{directory_rev: names} = ra(:ra_system).derive_names(config.system)

    case :dets.sync(names) do
      :ok -> :ok
      {:error, reason} -> {:error, {:names_sync, reason}}
    end
  end

  # Ra is optional (not a dependency of LiteStash): its modules are named
  # at run time, so that LiteStash compiles, without warnings, with or
  # without Ra on the code path.
  defp ra(module \\ :ra), do: module
end
