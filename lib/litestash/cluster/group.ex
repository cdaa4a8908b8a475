defmodule LiteStash.Cluster.Group do
  @moduledoc false
  # One shard's Raft group as a caller sees it: its servers' ids, which of
  # them to try first (the last leader seen, this node's, then every holder
  # by placement), and sending it a command or a consistent query within
  # the call's timeout.

  alias LiteStash.Error
  alias LiteStash.Cluster.Placement

  @doc "The Ra server id of `shard` of store `name` on `node`."
  @spec server_id(atom(), non_neg_integer(), node()) :: {atom(), node()}
  def server_id(name, shard, node), do: {server_name(name, shard), node}

  @doc "The registered name of this node's Ra server of `shard`."
  @spec server_name(atom(), non_neg_integer()) :: atom()
  def server_name(name, shard), do: :"litestash.#{name}.#{shard}"

  @doc "Whether this node runs a server of `shard` (holds a replica of it)."
  @spec local?(atom(), non_neg_integer()) :: boolean()
  def local?(name, shard), do: Process.whereis(server_name(name, shard)) != nil

  @doc """
  Sends `ops` as one log entry of `shard` and waits for the leader to apply
  it: the machine's reply (`{:ok, answers}` or `{:error, error}`), or
  `{:error, :no_quorum}` after the timeout.

  A call that cannot have reached any server (none runs there, or the node
  cannot be connected) tries the next holder until the timeout; one that
  may have reached a leader is retried only when the ops are idempotent,
  since it may be applied once already.
  """
  @spec command(map(), non_neg_integer(), list(), boolean()) :: term()
  def command(config, shard, ops, idempotent?) do
    deadline = now() + config.timeout
    attempt(config, shard, {:ops, ops}, idempotent?, deadline, candidates(config, shard))
  end

  defp attempt(config, shard, command, idempotent?, deadline, []) do
    if now() + 25 < deadline do
      Process.sleep(25)
      attempt(config, shard, command, idempotent?, deadline, candidates(config, shard))
    else
      {:error, no_quorum(config, shard)}
    end
  end

  defp attempt(config, shard, command, idempotent?, deadline, [server | rest]) do
    left = deadline - now()
    connected? = elem(server, 1) in [node() | Node.list()]

    if left <= 0 do
      {:error, no_quorum(config, shard)}
    else
      case ra().process_command(server, command, left) do
        {:ok, reply, leader} ->
          remember_leader(config, shard, leader)
          reply

        {:timeout, _} ->
          {:error, no_quorum(config, shard)}

        {:error, :noproc} ->
          attempt(config, shard, command, idempotent?, deadline, rest)

        {:error, _} when idempotent? or not connected? ->
          forget_leader(config, shard)
          attempt(config, shard, command, idempotent?, deadline, rest)

        {:error, _} ->
          forget_leader(config, shard)
          {:error, no_quorum(config, shard)}
      end
    end
  end

  @doc """
  Runs `query` (`{module, function, args}`, called with the machine state
  appended) through Ra's consistent query on `shard`'s leader: it sees
  every write acknowledged before it began.
  """
  @spec consistent_query(map(), non_neg_integer(), {module(), atom(), list()}) :: term()
  def consistent_query(config, shard, query) do
    deadline = now() + config.timeout
    consistent_query(config, shard, query, deadline, candidates(config, shard))
  end

  defp consistent_query(config, shard, query, deadline, []) do
    if now() + 25 < deadline do
      Process.sleep(25)
      consistent_query(config, shard, query, deadline, candidates(config, shard))
    else
      {:error, no_quorum(config, shard)}
    end
  end

  defp consistent_query(config, shard, query, deadline, [server | rest]) do
    case ra().consistent_query(server, query, max(deadline - now(), 1)) do
      {:ok, result, leader} ->
        remember_leader(config, shard, leader)
        result

      {:timeout, _} ->
        {:error, no_quorum(config, shard)}

      {:error, _} ->
        forget_leader(config, shard)
        consistent_query(config, shard, query, deadline, rest)
    end
  end

  @doc "The `:no_quorum` error of a call on `shard`."
  @spec no_quorum(map(), non_neg_integer()) :: Error.t()
  def no_quorum(config, shard) do
    %Error{
      reason: :no_quorum,
      message:
        "no quorum of shard #{shard}'s members of #{inspect(config.name)} answered within " <>
          "#{config.timeout} ms; a write may or may not be applied later"
    }
  end

  @doc "The servers to send `shard`'s calls to, in the order to try them."
  @spec candidates(map(), non_neg_integer()) :: [{atom(), node()}]
  def candidates(config, shard) do
    leader = :persistent_term.get({LiteStash.Cluster, config.name, :leader, shard}, nil)
    local = if local?(config.name, shard), do: [node()], else: []

    (List.wrap(leader) ++ local ++ holders(config, shard))
    |> Enum.uniq()
    |> Enum.map(&server_id(config.name, shard, &1))
  end

  @doc "The nodes that hold `shard`: the last membership seen, else placement's."
  @spec holders(map(), non_neg_integer()) :: [node()]
  def holders(config, shard) do
    case :persistent_term.get({LiteStash.Cluster, config.name, :members, shard}, nil) do
      nil -> Placement.holders(shard, config.nodes, config.replication_factor)
      nodes -> nodes
    end
  end

  @doc "`shard`'s members and leader, from the group: `{:ok, nodes, leader}`."
  @spec members(map(), non_neg_integer()) :: {:ok, [node()], node() | nil} | {:error, term()}
  def members(config, shard) do
    servers =
      if local?(config.name, shard),
        do: {:local, server_id(config.name, shard, node())},
        else: candidates(config, shard)

    case ra().members(servers, config.timeout) do
      {:ok, members, leader} ->
        nodes = Enum.map(members, &elem(&1, 1))
        remember_members(config, shard, nodes)
        {:ok, nodes, leader && elem(leader, 1)}

      other ->
        {:error, other}
    end
  end

  @doc "Remembers `nodes` as `shard`'s holders (after a membership change)."
  @spec remember_members(map(), non_neg_integer(), [node()]) :: :ok
  def remember_members(config, shard, nodes) do
    key = {LiteStash.Cluster, config.name, :members, shard}
    if :persistent_term.get(key, nil) != nodes, do: :persistent_term.put(key, nodes)
    :ok
  end

  defp remember_leader(config, shard, {_, leader}) do
    key = {LiteStash.Cluster, config.name, :leader, shard}
    if :persistent_term.get(key, nil) != leader, do: :persistent_term.put(key, leader)
  end

  defp forget_leader(config, shard) do
    :persistent_term.erase({LiteStash.Cluster, config.name, :leader, shard})
  end

  defp now, do: System.monotonic_time(:millisecond)

  # Ra is optional (not a dependency of LiteStash): its modules are named
  # at run time, so that LiteStash compiles, without warnings, with or
  # without Ra on the code path.
  defp ra, do: :ra
end
