defmodule LiteStash.Cluster do
  @moduledoc """
  A LiteStash store replicated over several nodes with Ra, the Raft
  library of RabbitMQ's quorum queues: one Raft group per shard, over
  Erlang distribution.

  Start the same child spec on every member node:

      {LiteStash.Cluster, name: :kv, data_dir: "/var/lib/kv",
                          cluster: [:"kv@a", :"kv@b", :"kv@c"]}

  Each member's data dir holds the usual 16 contract files (the replica;
  any tool may read them) and Ra's log under `ra/`. A write is committed
  to a majority of the shard's members' Raft logs and applied by its
  leader before it returns; each replica applies the log entries in
  order, recording the entry's index in the file's `litestash_replica`
  table in the same transaction (data contract, section 10), so a replay
  after a crash applies nothing twice and skips nothing.

  Ra is not a dependency of LiteStash: add `{:ra, "~> 2.2"}` to your own
  deps to cluster. LiteStash calls it only when a cluster is started.

  ## Options

  Every option of `LiteStash.start_link/1`, and:

    * `:cluster` - the member nodes, this one included (required).
    * `:replication_factor` - how many members hold each shard, chosen by
      rendezvous hashing of the shard index over the members. Default
      `nil`: every member holds every shard.
    * `:cluster_reads` - `:local` (default): reads answer from this node's
      replica (or a holder's, when this node does not hold the shard), which
      may lag the leader by the entries not yet applied here.
      `:consistent`: reads go through Ra's consistent query on the shard's
      leader and see every write acknowledged before they began.
    * `:timeout` - milliseconds a call waits for a quorum before it answers
      `{:error, %LiteStash.Error{reason: :no_quorum}}`. Default `5_000`.
    * `:snapshot_interval` - log entries between two snapshots of a shard
      (Ra's `snapshot_interval`). Default `4096`.

  ## Writes that time out

  `:no_quorum` means the write was not acknowledged: it may still be
  applied later (it may be in the leader's log). A write that was answered
  `:ok` is on a majority and survives the loss of a minority.
  """

  alias LiteStash.Error
  alias LiteStash.Cluster.{Member, Placement, Replica}

  @cluster_defaults [
    replication_factor: nil,
    cluster_reads: :local,
    timeout: 5_000,
    snapshot_interval: 4096
  ]

  @doc "A child spec for a supervision tree; the id is the store's name."
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :name, LiteStash),
      start: {__MODULE__, :start_link, [opts]},
      type: :worker
    }
  end

  @doc """
  Starts this node's member of a clustered store: opens the replica files,
  starts Ra and this node's shard servers. Returns `{:ok, pid}`.
  """
  @spec start_link(keyword()) :: {:ok, pid()} | {:error, term()}
  def start_link(opts) do
    Member.start_link(config!(opts))
  end

  @doc "Stops this node's member (its Ra servers, then its store)."
  @spec stop(atom()) :: :ok
  def stop(name \\ LiteStash), do: GenServer.stop(member_name(name))

  defp config!(opts) do
    unless Keyword.keyword?(opts),
      do:
        raise(
          ArgumentError,
          "LiteStash.Cluster options must be a keyword list, got: #{inspect(opts)}"
        )

    {cluster_opts, store_opts} = Keyword.split(opts, [:cluster | Keyword.keys(@cluster_defaults)])
    cluster_opts = Keyword.merge(@cluster_defaults, cluster_opts)
    Enum.each(cluster_opts, fn {key, value} -> validate!(key, value) end)

    nodes =
      Keyword.get(cluster_opts, :cluster) ||
        raise ArgumentError, "LiteStash.Cluster needs the :cluster option: the member nodes"

    name = Keyword.get(store_opts, :name, LiteStash)
    data_dir = store_opts |> Keyword.get(:data_dir, "./data") |> Path.expand()

    %{
      name: name,
      member: member_name(name),
      system: :"litestash_#{name}",
      nodes: Enum.uniq(nodes),
      replication_factor: cluster_opts[:replication_factor],
      reads: cluster_opts[:cluster_reads],
      timeout: cluster_opts[:timeout],
      snapshot_interval: cluster_opts[:snapshot_interval],
      ra_dir: Path.join(data_dir, "ra"),
      store_opts: Keyword.merge(store_opts, name: name, data_dir: data_dir)
    }
  end

  defp validate!(:cluster, nodes) when is_list(nodes) and nodes != [] do
    unless Enum.all?(nodes, &is_atom/1), do: bad!(:cluster, "a list of node names", nodes)
  end

  defp validate!(:cluster, nodes), do: bad!(:cluster, "a non-empty list of node names", nodes)
  defp validate!(:replication_factor, nil), do: :ok
  defp validate!(:replication_factor, n) when is_integer(n) and n > 0, do: :ok

  defp validate!(:replication_factor, n),
    do: bad!(:replication_factor, "a positive integer or nil", n)

  defp validate!(:cluster_reads, reads) when reads in [:local, :consistent], do: :ok
  defp validate!(:cluster_reads, reads), do: bad!(:cluster_reads, ":local or :consistent", reads)
  defp validate!(:timeout, ms) when is_integer(ms) and ms > 0, do: :ok
  defp validate!(:timeout, ms), do: bad!(:timeout, "a positive integer of milliseconds", ms)
  defp validate!(:snapshot_interval, n) when is_integer(n) and n > 0, do: :ok
  defp validate!(:snapshot_interval, n), do: bad!(:snapshot_interval, "a positive integer", n)

  defp bad!(key, expected, got) do
    raise ArgumentError,
          "invalid value for LiteStash.Cluster option #{inspect(key)}: expected #{expected}, got: #{inspect(got)}"
  end

  ## Writes

  @doc "Like `LiteStash.set/4`, replicated. Options: `:ttl`."
  @spec set(atom(), String.t(), LiteStash.value(), keyword()) :: :ok | {:error, Error.t()}
  def set(name, key, value, opts \\ []) do
    one(name, key, {:set, key, value, ttl!(opts)}, true)
  end

  @doc "Like `LiteStash.put_new/3`, replicated; answered from the replicated state."
  @spec put_new(atom(), String.t(), LiteStash.value()) :: :ok | {:error, Error.t()}
  def put_new(name, key, value), do: one(name, key, {:put_new, key, value, nil}, false)

  @doc "Like `LiteStash.compare_and_set/4`, replicated."
  @spec compare_and_set(atom(), String.t(), LiteStash.value(), LiteStash.value()) ::
          :ok | {:error, Error.t()}
  def compare_and_set(name, key, expected, new),
    do: one(name, key, {:cas, key, expected, new, nil}, false)

  @doc "Like `LiteStash.delete/2`, replicated."
  @spec delete(atom(), String.t()) :: :ok | {:error, Error.t()}
  def delete(name, key), do: one(name, key, {:delete, key}, true)

  @doc "Like `LiteStash.incr/3`, replicated; the new value comes from the replicated state."
  @spec incr(atom(), String.t(), integer()) :: {:ok, integer()} | {:error, Error.t()}
  def incr(name, key, by \\ 1) when is_integer(by), do: one(name, key, {:incr, key, by}, false)

  @doc "Like `LiteStash.expire/3`, replicated: the deadline is the leader's clock plus `ms`."
  @spec expire(atom(), String.t(), pos_integer()) :: :ok | {:error, Error.t()}
  def expire(name, key, ms) when is_integer(ms) and ms > 0,
    do: one(name, key, {:expire, key, ms}, true)

  @doc "Like `LiteStash.persist/2`, replicated."
  @spec persist(atom(), String.t()) :: :ok | {:error, Error.t()}
  def persist(name, key), do: one(name, key, {:expire, key, nil}, true)

  @doc """
  Like `LiteStash.mset/2`, replicated: one log entry per shard, so the keys
  of one shard are applied atomically together.
  """
  @spec mset(atom(), map() | [{String.t(), LiteStash.value()}]) :: :ok | {:error, Error.t()}
  def mset(name, pairs) do
    config = config(name)

    pairs
    |> Enum.group_by(fn {key, _} -> Replica.shard_of(key!(key)) end)
    |> Enum.reduce_while(:ok, fn {shard, pairs}, :ok ->
      ops = for {key, value} <- pairs, do: {:set, key, value, nil}

      case command(config, shard, ops, true) do
        {:ok, results} -> first_error(results)
        error -> {:halt, error}
      end
    end)
  end

  @doc "Like `LiteStash.clear/1`, replicated: one log entry per shard."
  @spec clear(atom()) :: :ok | {:error, Error.t()}
  def clear(name) do
    config = config(name)

    Enum.reduce_while(0..(Placement.shards() - 1), :ok, fn shard, :ok ->
      case command(config, shard, [:clear], true) do
        {:ok, results} -> first_error(results)
        error -> {:halt, error}
      end
    end)
  end

  defp first_error(results) do
    case Enum.find(results, &match?({:error, _}, &1)) do
      nil -> {:cont, :ok}
      error -> {:halt, error}
    end
  end

  defp one(name, key, op, idempotent?) do
    config = config(name)

    case command(config, Replica.shard_of(key!(key)), [op], idempotent?) do
      {:ok, [result]} -> result
      {:error, _} = error -> error
    end
  end

  defp ttl!([]), do: nil
  defp ttl!(ttl: ms) when is_integer(ms) and ms > 0, do: ms

  defp ttl!(opts),
    do:
      raise(
        ArgumentError,
        "LiteStash.Cluster.set takes only ttl: (positive ms), got: #{inspect(opts)}"
      )

  defp key!(key) when is_binary(key), do: key

  defp key!(key),
    do:
      raise(
        ArgumentError,
        "a LiteStash key must be a binary (a UTF-8 string), got: #{inspect(key)}"
      )

  # Sends `ops` as one log entry of `shard` and waits for the leader to
  # apply it. A call that cannot have reached any server (none runs there,
  # or the node cannot be connected) tries the next holder until the
  # timeout; one that may have reached a leader is retried only when the
  # ops are idempotent, since it may be applied once already.
  defp command(config, shard, ops, idempotent?) do
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
          {:ok, reply}

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

  defp no_quorum(config, shard) do
    %Error{
      reason: :no_quorum,
      message:
        "no quorum of shard #{shard}'s members of #{inspect(config.name)} answered within #{config.timeout} ms; " <>
          "the write may or may not be applied later"
    }
  end

  # The servers to send a shard's commands to: the last leader seen, this
  # node's own server, then every holder by placement.
  defp candidates(config, shard) do
    holders =
      case :persistent_term.get({__MODULE__, config.name, :members, shard}, nil) do
        nil -> Placement.holders(shard, config.nodes, config.replication_factor)
        nodes -> nodes
      end

    leader = :persistent_term.get({__MODULE__, config.name, :leader, shard}, nil)
    local = if Process.whereis(server_name(config.name, shard)), do: [node()], else: []

    (List.wrap(leader) ++ local ++ holders)
    |> Enum.uniq()
    |> Enum.map(&server_id(config.name, shard, &1))
  end

  defp remember_leader(config, shard, {_, leader}) do
    key = {__MODULE__, config.name, :leader, shard}
    if :persistent_term.get(key, nil) != leader, do: :persistent_term.put(key, leader)
  end

  defp forget_leader(config, shard) do
    :persistent_term.erase({__MODULE__, config.name, :leader, shard})
  end

  defp remember_members(config, shard, nodes) do
    key = {__MODULE__, config.name, :members, shard}
    if :persistent_term.get(key, nil) != nodes, do: :persistent_term.put(key, nodes)
  end

  ## Reads

  @doc "Like `LiteStash.get/2`, from the replica (see `:cluster_reads`)."
  @spec get(atom(), String.t()) :: {:ok, LiteStash.value()} | {:error, Error.t()}
  def get(name, key), do: read(name, Replica.shard_of(key!(key)), :get, [key])

  @doc "Like `LiteStash.exists?/2`, from the replica."
  @spec exists?(atom(), String.t()) :: boolean()
  def exists?(name, key) do
    case read(name, Replica.shard_of(key!(key)), :exists, [key]) do
      {:ok, found} -> found
      {:error, error} -> raise error
    end
  end

  @doc "Like `LiteStash.ttl/2`, from the replica."
  @spec ttl(atom(), String.t()) :: {:ok, non_neg_integer() | :infinity} | {:error, Error.t()}
  def ttl(name, key), do: read(name, Replica.shard_of(key!(key)), :ttl, [key])

  @doc "Like `LiteStash.mget/2`, from the replicas, one read per shard."
  @spec mget(atom(), [String.t()]) :: {:ok, map()} | {:error, Error.t()}
  def mget(name, keys) do
    keys
    |> Enum.group_by(&Replica.shard_of(key!(&1)))
    |> Enum.reduce_while({:ok, %{}}, fn {shard, keys}, {:ok, acc} ->
      case read(name, shard, :get_many, [keys]) do
        {:ok, found} -> {:cont, {:ok, Map.merge(acc, found)}}
        error -> {:halt, error}
      end
    end)
  end

  defp read(name, shard, fun, args) do
    config = config(name)

    case config.reads do
      :local ->
        local? = Process.whereis(server_name(name, shard)) != nil
        if local?, do: local_read(name, fun, args), else: remote_read(config, shard, fun, args)

      :consistent ->
        query = {LiteStash.Cluster.Machine, :read, [fun, args]}
        deadline = now() + config.timeout
        consistent_read(config, shard, query, deadline, candidates(config, shard))
    end
  end

  defp consistent_read(config, shard, query, deadline, []) do
    if now() + 25 < deadline do
      Process.sleep(25)
      consistent_read(config, shard, query, deadline, candidates(config, shard))
    else
      {:error, no_quorum(config, shard)}
    end
  end

  defp consistent_read(config, shard, query, deadline, [server | rest]) do
    case ra().consistent_query(server, query, max(deadline - now(), 1)) do
      {:ok, result, leader} ->
        remember_leader(config, shard, leader)
        result

      {:timeout, _} ->
        {:error, no_quorum(config, shard)}

      {:error, _} ->
        forget_leader(config, shard)
        consistent_read(config, shard, query, deadline, rest)
    end
  end

  defp remote_read(config, shard, fun, args) do
    holders = Enum.map(candidates(config, shard), &elem(&1, 1)) -- [node()]

    Enum.reduce_while(holders, {:error, no_quorum(config, shard)}, fn holder, error ->
      try do
        {:halt,
         :erpc.call(holder, __MODULE__, :local_read, [config.name, fun, args], config.timeout)}
      catch
        :error, {:erpc, _} -> {:cont, error}
        :exit, _ -> {:cont, error}
      end
    end)
  end

  @doc false
  # A read of this node's replica files, which never waits for Ra.
  def local_read(name, fun, args) do
    Replica.read(Replica.store!(name), fun, args)
  end

  ## Membership

  @doc """
  Adds `new_node` to the cluster. The node must already run this store's
  member (`start_link/1` with a `:cluster` that lists it). Each shard that
  the new member list places on `new_node` gets a server there, which
  catches up from a snapshot of the shard (a copy of its file) and the log
  after it; a shard that placement moves off another member is removed
  from it. Returns `:ok`, or `{:error, {shard, reason}}` for the first
  shard that could not be changed.
  """
  @spec add_member(atom(), node()) :: :ok | {:error, term()}
  def add_member(name \\ LiteStash, new_node) do
    change_members(name, fn nodes -> Enum.uniq(nodes ++ [new_node]) end)
  end

  @doc """
  Removes `old_node` from the cluster: from every shard it holds (its Ra
  servers are deleted there when it can be reached; its files stay). A
  shard whose placement needs another holder gets one.
  """
  @spec remove_member(atom(), node()) :: :ok | {:error, term()}
  def remove_member(name \\ LiteStash, old_node) do
    change_members(name, fn nodes -> nodes -- [old_node] end)
  end

  defp change_members(name, change) do
    config = config(name)

    current =
      for shard <- 0..(Placement.shards() - 1), into: %{}, do: {shard, members!(config, shard)}

    nodes = current |> Map.values() |> Enum.concat() |> Enum.uniq() |> change.()

    Enum.reduce_while(current, :ok, fn {shard, members}, :ok ->
      wanted = Placement.holders(shard, nodes, config.replication_factor)

      with :ok <- add_holders(config, shard, members, wanted -- members),
           :ok <- remove_holders(config, shard, wanted, members -- wanted) do
        remember_members(config, shard, wanted)
        {:cont, :ok}
      else
        {:error, reason} -> {:halt, {:error, {shard, reason}}}
      end
    end)
  end

  defp add_holders(config, shard, members, added) do
    Enum.reduce_while(added, :ok, fn new, :ok ->
      servers = Enum.map(members, &server_id(config.name, shard, &1))

      with :ok <-
             :erpc.call(new, __MODULE__, :ensure_server, [config.name, shard, members ++ [new]]),
           {:ok, _, _} <-
             retry(fn ->
               ra().add_member(servers, server_id(config.name, shard, new), config.timeout)
             end) do
        {:cont, :ok}
      else
        {:error, :already_member} -> {:cont, :ok}
        other -> {:halt, {:error, other}}
      end
    end)
  end

  defp remove_holders(config, shard, wanted, removed) do
    Enum.reduce_while(removed, :ok, fn old, :ok ->
      servers = Enum.map(wanted, &server_id(config.name, shard, &1))

      case retry(fn ->
             ra().remove_member(servers, server_id(config.name, shard, old), config.timeout)
           end) do
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
  # Starts this node's server of `shard` if it runs none, as a new member
  # joining `holders` (an add_member in progress).
  def ensure_server(name, shard, holders) do
    config = config(name)

    if Process.whereis(server_name(name, shard)),
      do: :ok,
      else: Member.start_new_server(config, shard, holders)
  end

  @doc false
  def delete_server(name, shard) do
    ra().force_delete_server(config(name).system, server_id(name, shard, node()))
  end

  defp members!(config, shard) do
    case members(config, shard) do
      {:ok, nodes, _leader} ->
        nodes

      {:error, reason} ->
        raise Error, reason: :no_quorum, message: "shard #{shard}: #{inspect(reason)}"
    end
  end

  defp members(config, shard) do
    servers = candidates(config, shard)

    case ra().members(servers, config.timeout) do
      {:ok, members, leader} ->
        nodes = Enum.map(members, &elem(&1, 1))
        remember_members(config, shard, nodes)
        {:ok, nodes, leader}

      other ->
        {:error, other}
    end
  end

  ## Info

  @doc """
  Per shard: `%{shard: index, members: [node], leader: node | nil,
  applied_index: n | nil}`, as this node sees it. `applied_index` is this
  node's replica's (nil when it does not hold the shard); `members` and
  `leader` come from this node's Ra server, or from a holder's.
  """
  @spec info(atom()) :: {:ok, [map()]}
  def info(name \\ LiteStash) do
    config = config(name)
    store = Replica.store!(name)

    {:ok,
     for shard <- 0..(Placement.shards() - 1) do
       local? = Process.whereis(server_name(name, shard)) != nil

       {members, leader} =
         case members_seen(config, shard, local?) do
           {:ok, members, leader} -> {Enum.map(members, &elem(&1, 1)), leader && elem(leader, 1)}
           _ -> {nil, nil}
         end

       applied =
         case local? && Replica.applied(store, shard) do
           {:ok, index} -> index
           _ -> nil
         end

       %{shard: shard, members: members, leader: leader, applied_index: applied}
     end}
  end

  defp members_seen(config, shard, true),
    do: ra().members({:local, server_id(config.name, shard, node())}, config.timeout)

  defp members_seen(config, shard, false),
    do: ra().members(candidates(config, shard), config.timeout)

  @doc false
  # Ra's view of this node's server of `shard`: its snapshot's index and
  # its log's first index (for the tests of snapshot catch-up).
  def log_overview(name, shard) do
    case ra(:ra_server_proc).local_state_query(server_id(name, shard, node()), :all, 5_000) do
      {:ok, %{log: log}, _} ->
        case ra(:ra_log).snapshot_index_term(log) do
          {index, _term} -> %{snapshot_index: index}
          :undefined -> %{snapshot_index: 0}
        end

      other ->
        {:error, other}
    end
  end

  ## Names

  @doc false
  def server_id(name, shard, node), do: {server_name(name, shard), node}

  defp server_name(name, shard), do: :"litestash.#{name}.#{shard}"

  defp member_name(name), do: :"#{name}.cluster"

  defp config(name) do
    :persistent_term.get({__MODULE__, name}, nil) ||
      raise Error,
        reason: :closed,
        message: "no LiteStash cluster member #{inspect(name)} runs on #{node()}"
  end

  defp now, do: System.monotonic_time(:millisecond)

  # Ra is optional (not a dependency of LiteStash): its modules are named
  # at run time, so that LiteStash compiles, without warnings, with or
  # without Ra on the code path.
  defp ra(module \\ :ra), do: module
end
