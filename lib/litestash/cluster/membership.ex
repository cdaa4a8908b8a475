defmodule LiteStash.Cluster.Membership do
  @moduledoc false
  # Adding and removing member nodes: every shard's Raft group is changed
  # to the holders that placement gives over the new member list. A new
  # holder's server starts empty and catches up through Ra (a snapshot of
  # the shard when the log it needs is truncated); a removed holder's
  # server is deleted (its files stay).

  alias LiteStash.Error
  alias LiteStash.Cluster.{Group, Member, Placement}

  @doc "Changes the member nodes to `change.(current nodes)`, shard by shard."
  @spec change(map(), ([node()] -> [node()])) :: :ok | {:error, {non_neg_integer(), term()}}
  def change(config, change) do
    current =
      for shard <- 0..(Placement.shards() - 1), into: %{}, do: {shard, members!(config, shard)}

    nodes = current |> Map.values() |> Enum.concat() |> Enum.uniq() |> change.()

    Enum.reduce_while(current, :ok, fn {shard, members}, :ok ->
      wanted = Placement.holders(shard, nodes, config.replication_factor)

      with :ok <- add_holders(config, shard, members, wanted -- members),
           :ok <- remove_holders(config, shard, wanted, members -- wanted) do
        Group.remember_members(config, shard, wanted)
        {:cont, :ok}
      else
        {:error, reason} -> {:halt, {:error, {shard, reason}}}
      end
    end)
  end

  defp members!(config, shard) do
    case Group.members(config, shard) do
      {:ok, nodes, _leader} ->
        nodes

      {:error, reason} ->
        raise Error, reason: :no_quorum, message: "shard #{shard}: #{inspect(reason)}"
    end
  end

  defp add_holders(config, shard, members, added) do
    Enum.reduce_while(added, :ok, fn new, :ok ->
      servers = Enum.map(members, &Group.server_id(config.name, shard, &1))
      id = Group.server_id(config.name, shard, new)

      with :ok <-
             :erpc.call(new, __MODULE__, :ensure_server, [config.name, shard, members ++ [new]]),
           {:ok, _, _} <- retry(fn -> ra().add_member(servers, id, config.timeout) end) do
        {:cont, :ok}
      else
        {:error, :already_member} -> {:cont, :ok}
        other -> {:halt, {:error, other}}
      end
    end)
  end

  defp remove_holders(config, shard, wanted, removed) do
    Enum.reduce_while(removed, :ok, fn old, :ok ->
      servers = Enum.map(wanted, &Group.server_id(config.name, shard, &1))
      id = Group.server_id(config.name, shard, old)

      case retry(fn -> ra().remove_member(servers, id, config.timeout) end) do
        {:ok, _, _} ->
          try do
            :erpc.call(old, __MODULE__, :delete_server, [config.name, shard], config.timeout)
          catch
            _, _ -> :ok
          end

          {:cont, :ok}

        {:error, :not_member} ->
          {:cont, :ok}

        other ->
          {:halt, {:error, other}}
      end
    end)
  end

  # Ra refuses a membership change until the leader has committed an entry
  # of its term (cluster_change_not_permitted): a fresh leader soon has.
  defp retry(fun, tries \\ 40) do
    case fun.() do
      {:error, :cluster_change_not_permitted} when tries > 0 ->
        Process.sleep(100)
        retry(fun, tries - 1)

      {:error, {:no_more_servers_to_try, _}} when tries > 0 ->
        Process.sleep(100)
        retry(fun, tries - 1)

      other ->
        other
    end
  end

  @doc false
  # On the new holder: starts its server of `shard` if it runs none, as a
  # new member joining `holders` (an add in progress).
  def ensure_server(name, shard, holders) do
    if Group.local?(name, shard),
      do: :ok,
      else: Member.start_new_server(LiteStash.Cluster.config!(name), shard, holders)
  end

  @doc false
  # On the removed holder: deletes its server of `shard` (and Ra's data of it).
  def delete_server(name, shard) do
    ra().force_delete_server(
      LiteStash.Cluster.config!(name).system,
      Group.server_id(name, shard, node())
    )
  end

  defp ra, do: :ra
end
