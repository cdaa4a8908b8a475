defmodule LiteStash.Cluster do
  @moduledoc """
  A LiteStash store replicated over several nodes with Ra, the Raft
  library of RabbitMQ's quorum queues: one Raft group per shard, over
  Erlang distribution.

  Start the same child spec on every member node:

      {LiteStash, name: :kv, data_dir: "/var/lib/kv",
                  cluster: [:"kv@a", :"kv@b", :"kv@c"]}

  Every function of `LiteStash` then works on any member as it does on a
  single node (`LiteStash.start_link/1` with `:cluster` comes here, and
  each data function called with the store's name comes to the function of
  the same name below). `keys/2` and `count/2` read each shard on a member
  that holds it; `stream/2` and `backup/2` read this node's replica, which
  with a `:replication_factor` below the number of members holds only some
  shards.

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

  ## Restarts

  A member restarts its Ra servers from their logs under `ra/`. Ra
  records its servers' names in `ra/names.dets`, which it writes back
  lazily, so a node killed in the seconds after it first started can
  come back without them; LiteStash then finds each server by the config
  Ra synced into the server's own directory, starts it from there (its
  log is recovered) and syncs the names. A member whose files record
  applied log entries but whose `ra/` holds no server of that shard
  refuses to start, with `:replica_log_lost`: a new log would number its
  entries from 1 again over a file that has applied more. Remove the node
  (`remove_member/2`), move its data dir away, restart it and add it again
  (`add_member/2`); it copies the shards from a snapshot.

  ## Writes that time out

  `:no_quorum` means the write was not acknowledged: it may still be
  applied later (it may be in the leader's log). A write that was answered
  `:ok` is on a majority and survives the loss of a minority.
  """

  alias LiteStash.Error
  alias LiteStash.Cluster.{Group, Machine, Member, Membership, Placement, Replica}

  @cluster_defaults [
    replication_factor: nil,
    cluster_reads: :local,
    timeout: 5_000,
    snapshot_interval: 4096
  ]

  @cluster_only Keyword.keys(@cluster_defaults)

  @expected %{
    cluster: "a non-empty list of node names",
    replication_factor: "a positive integer or nil",
    cluster_reads: ":local or :consistent",
    timeout: "a positive integer of milliseconds",
    snapshot_interval: "a positive integer"
  }

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
    Member.start_link(parse!(opts))
  end

  @doc "Stops this node's member (its Ra servers, then its store)."
  @spec stop(atom()) :: :ok
  def stop(name \\ LiteStash), do: GenServer.stop(member_name(name))

  @doc false
  # Whether `server` names a clustered store running on this node: what
  # LiteStash's functions check before they touch the store themselves.
  @spec clustered?(term()) :: boolean()
  def clustered?(server) when is_atom(server),
    do: :persistent_term.get({__MODULE__, server}, nil) != nil

  def clustered?(_server), do: false

  @doc false
  # Whether LiteStash.start_link/1's (valid) options start a member; a
  # cluster's option without `:cluster` raises.
  @spec member?(keyword()) :: boolean()
  def member?(opts) do
    case {Keyword.has_key?(opts, :cluster), Enum.find(opts, &(elem(&1, 0) in @cluster_only))} do
      {false, {key, _}} ->
        raise ArgumentError,
              "the LiteStash option #{inspect(key)} is for a cluster: it needs :cluster"

      {member?, _} ->
        member?
    end
  end

  @doc false
  # LiteStash.start_link/1's check of a cluster option's value.
  @spec valid_option?(atom(), term()) :: boolean()
  def valid_option?(:cluster, nodes),
    do: is_list(nodes) and nodes != [] and Enum.all?(nodes, &is_atom/1)

  def valid_option?(:replication_factor, n), do: is_nil(n) or (is_integer(n) and n > 0)
  def valid_option?(:cluster_reads, reads), do: reads in [:local, :consistent]
  def valid_option?(:timeout, ms), do: is_integer(ms) and ms > 0
  def valid_option?(:snapshot_interval, n), do: is_integer(n) and n > 0

  defp parse!(opts) do
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

    # The members find each other's Ra servers by names made from it.
    unless is_atom(name) and name not in [nil, true, false],
      do: bad!(:name, "an atom (a clustered store is registered by name)", name)

    data_dir = Keyword.get(store_opts, :data_dir, "./data")

    # Ra's log and the replica files must outlive the VM.
    unless is_binary(data_dir),
      do: bad!(:data_dir, "a path (a clustered store lives on disk)", data_dir)

    data_dir = Path.expand(data_dir)

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

  defp validate!(key, value) do
    unless valid_option?(key, value), do: bad!(key, @expected[key], value)
  end

  defp bad!(key, expected, got) do
    raise ArgumentError,
          "invalid value for LiteStash.Cluster option #{inspect(key)}: expected #{expected}, got: #{inspect(got)}"
  end

  ## Writes

  @doc "Like `LiteStash.set/4`, replicated. `ttl` is nil or milliseconds."
  @spec set(atom(), String.t(), LiteStash.value(), pos_integer() | nil) ::
          :ok | {:error, Error.t()}
  def set(name, key, value, ttl \\ nil), do: one(name, key, {:set, key, value, ttl}, true)

  @doc "Like `LiteStash.put_new/4`, replicated; answered from the replicated state."
  @spec put_new(atom(), String.t(), LiteStash.value(), pos_integer() | nil) ::
          :ok | {:error, Error.t()}
  def put_new(name, key, value, ttl \\ nil),
    do: one(name, key, {:put_new, key, value, ttl}, false)

  @doc "Like `LiteStash.compare_and_set/5`, replicated; answered from the replicated state."
  @spec compare_and_set(
          atom(),
          String.t(),
          LiteStash.value(),
          LiteStash.value(),
          pos_integer() | nil
        ) ::
          :ok | {:error, Error.t()}
  def compare_and_set(name, key, expected, new, ttl \\ nil),
    do: one(name, key, {:cas, key, expected, new, ttl}, false)

  @doc "Like `LiteStash.delete/2`, replicated."
  @spec delete(atom(), String.t()) :: :ok | {:error, Error.t()}
  def delete(name, key), do: one(name, key, {:delete, key}, true)

  @doc "Like `LiteStash.incr/3`, replicated; the new value comes from the replicated state."
  @spec incr(atom(), String.t(), integer()) :: {:ok, integer()} | {:error, Error.t()}
  def incr(name, key, by \\ 1) when is_integer(by), do: one(name, key, {:incr, key, by}, false)

  @doc "Like `LiteStash.expire/3`, replicated: the deadline is the leader's clock plus `ms`."
  @spec expire(atom(), String.t(), pos_integer() | nil) :: :ok | {:error, Error.t()}
  def expire(name, key, ms), do: one(name, key, {:expire, key, ms}, true)

  @doc "Like `LiteStash.persist/2`, replicated."
  @spec persist(atom(), String.t()) :: :ok | {:error, Error.t()}
  def persist(name, key), do: expire(name, key, nil)

  @doc """
  Like `LiteStash.mset/2`, replicated: one log entry per shard, so the keys
  of one shard are applied atomically together.
  """
  @spec mset(atom(), map() | [{String.t(), LiteStash.value()}]) :: :ok | {:error, Error.t()}
  def mset(name, pairs) do
    config = config!(name)

    with {:ok, pairs} <- storable(pairs),
         {:ok, by_shard} <- group_by_shard(pairs, &elem(&1, 0)) do
      Enum.reduce_while(by_shard, :ok, fn {shard, pairs}, :ok ->
        ops = for {key, value} <- pairs, do: {:set, key, value, nil}
        all_ok(command(config, shard, ops, true))
      end)
    end
  end

  # Every value of an mset checked (structs encoded) before any shard's
  # entry is sent: one bad value refuses the whole call, as on one node,
  # rather than after the shards before it committed.
  defp storable(pairs) do
    with {:ok, pairs} <- LiteStash.Encoder.Deep.encode(pairs) do
      Enum.find_value(pairs, {:ok, pairs}, fn {_key, value} ->
        case LiteStash.Native.encode_value(value) do
          {:ok, _bytes} -> nil
          {:error, _} = error -> error
        end
      end)
    end
  end

  @doc "Like `LiteStash.clear/1`, replicated: one log entry per shard."
  @spec clear(atom()) :: :ok | {:error, Error.t()}
  def clear(name) do
    config = config!(name)

    Enum.reduce_while(0..(Placement.shards() - 1), :ok, fn shard, :ok ->
      all_ok(command(config, shard, [:clear], true))
    end)
  end

  # Sends `ops` to `shard`; when the machine found a struct in a value,
  # once more with the structs encoded (as LiteStash's own writes do).
  defp command(config, shard, ops, idempotent?) do
    case Group.command(config, shard, ops, idempotent?) do
      :encode_structs ->
        with {:ok, ops} <- LiteStash.Encoder.Deep.encode(ops) do
          case Group.command(config, shard, ops, idempotent?) do
            :encode_structs -> {:error, %Error{reason: :internal, message: "a struct was left"}}
            answer -> answer
          end
        end

      answer ->
        answer
    end
  end

  defp all_ok({:ok, answers}) do
    case Enum.find(answers, &match?({:error, _}, &1)) do
      nil -> {:cont, :ok}
      error -> {:halt, error}
    end
  end

  defp all_ok({:error, _} = error), do: {:halt, error}

  defp one(name, key, op, idempotent?) do
    config = config!(name)

    with {:ok, shard} <- shard_of(key) do
      case command(config, shard, [op], idempotent?) do
        {:ok, [answer]} -> answer
        {:error, _} = error -> error
      end
    end
  end

  defp shard_of(key) when is_binary(key), do: LiteStash.Replica.shard_of(key)

  defp shard_of(key),
    do:
      raise(
        ArgumentError,
        "a LiteStash key must be a binary (a UTF-8 string), got: #{inspect(key)}"
      )

  # `{:ok, [{shard, items}]}`, or the first key's routing error.
  defp group_by_shard(items, key_of) do
    Enum.reduce_while(items, {:ok, %{}}, fn item, {:ok, acc} ->
      case shard_of(key_of.(item)) do
        {:ok, shard} -> {:cont, {:ok, Map.update(acc, shard, [item], &[item | &1])}}
        error -> {:halt, error}
      end
    end)
    |> case do
      {:ok, acc} -> {:ok, Enum.map(acc, fn {shard, items} -> {shard, Enum.reverse(items)} end)}
      error -> error
    end
  end

  ## Reads

  @doc "Like `LiteStash.get/2`, from a replica (see `:cluster_reads`)."
  @spec get(atom(), String.t()) :: {:ok, LiteStash.value()} | {:error, Error.t()}
  def get(name, key), do: read_key(name, key, :get, [key])

  @doc "Like `LiteStash.exists?/2`, from a replica: `{:ok, boolean}`."
  @spec exists(atom(), String.t()) :: {:ok, boolean()} | {:error, Error.t()}
  def exists(name, key), do: read_key(name, key, :exists, [key])

  @doc "Like `LiteStash.exists?/2`, from a replica."
  @spec exists?(atom(), String.t()) :: boolean()
  def exists?(name, key) do
    case exists(name, key) do
      {:ok, found} -> found
      {:error, error} -> raise error
    end
  end

  @doc "Like `LiteStash.ttl/2`, from a replica."
  @spec ttl(atom(), String.t()) :: {:ok, non_neg_integer() | :infinity} | {:error, Error.t()}
  def ttl(name, key), do: read_key(name, key, :ttl, [key])

  @doc "Like `LiteStash.mget/2`, from the replicas, one read per shard."
  @spec mget(atom(), [String.t()]) :: {:ok, map()} | {:error, Error.t()}
  def mget(name, keys) do
    with {:ok, by_shard} <- group_by_shard(keys, & &1) do
      Enum.reduce_while(by_shard, {:ok, %{}}, fn {shard, keys}, {:ok, acc} ->
        case read(name, shard, :get_many, [keys]) do
          {:ok, found} -> {:cont, {:ok, Map.merge(acc, found)}}
          error -> {:halt, error}
        end
      end)
    end
  end

  @doc """
  Like `LiteStash.keys/2`: shard by shard, each from this node's replica
  when it holds the shard, else from a holder's.
  """
  @spec keys(atom(), String.t()) :: {:ok, [String.t()]} | {:error, Error.t()}
  def keys(name, prefix) do
    cond do
      holds_all?(name) -> LiteStash.Call.read(name, :keys, &LiteStash.Native.keys(&1, prefix))
      true -> with {:ok, keys} <- per_shard(name, prefix, :keys), do: {:ok, Enum.concat(keys)}
    end
  end

  @doc "Like `LiteStash.count/2`, shard by shard as `keys/2`."
  @spec count(atom(), String.t()) :: {:ok, non_neg_integer()} | {:error, Error.t()}
  def count(name, prefix) do
    cond do
      holds_all?(name) -> LiteStash.Call.read(name, :count, &LiteStash.Native.count(&1, prefix))
      true -> with {:ok, counts} <- per_shard(name, prefix, :count), do: {:ok, Enum.sum(counts)}
    end
  end

  # With every shard here, the whole-store read of LiteStash itself.
  defp holds_all?(name), do: Enum.all?(0..(Placement.shards() - 1), &Group.local?(name, &1))

  defp per_shard(name, prefix, what) do
    config = config!(name)

    Enum.reduce_while((Placement.shards() - 1)..0, {:ok, []}, fn shard, {:ok, acc} ->
      case walk_shard(config, shard, [name, shard, prefix, what]) do
        {:ok, found} -> {:cont, {:ok, [found | acc]}}
        error -> {:halt, error}
      end
    end)
  end

  defp read_key(name, key, fun, args) do
    with {:ok, shard} <- shard_of(key), do: read(name, shard, fun, args)
  end

  defp read(name, shard, fun, args) do
    config = config!(name)

    cond do
      config.reads == :consistent ->
        Group.consistent_query(config, shard, {Machine, :read, [fun, args]})

      Group.local?(name, shard) ->
        Replica.read(name, fun, args)

      true ->
        remote_read(config, shard, :read, [name, fun, args])
    end
  end

  # A walk of one shard (keys, count): never through Ra's query, which
  # would hold the shard's server for its length.
  defp walk_shard(config, shard, args) do
    if Group.local?(config.name, shard),
      do: Kernel.apply(Replica, :shard_keys, args),
      else: remote_read(config, shard, :shard_keys, args)
  end

  # A shard this node does not hold is read on a holder's replica.
  defp remote_read(config, shard, fun, args) do
    holders = Enum.map(Group.candidates(config, shard), &elem(&1, 1)) -- [node()]

    Enum.reduce_while(holders, {:error, Group.no_quorum(config, shard)}, fn holder, error ->
      try do
        {:halt, :erpc.call(holder, Replica, fun, args, config.timeout)}
      catch
        :error, {:erpc, _} -> {:cont, error}
        :exit, _ -> {:cont, error}
      end
    end)
  end

  ## Membership

  @doc """
  Adds `new_node` to the cluster. The node must already run this store's
  member (`LiteStash.start_link/1` with a `:cluster` that lists it). Each
  shard that the new member list places on `new_node` gets a server there,
  which catches up from a snapshot of the shard (a copy of its file) and
  the log after it; a shard that placement moves off another member is
  removed from it. Returns `:ok`, or `{:error, {shard, reason}}` for the
  first shard that could not be changed.
  """
  @spec add_member(atom(), node()) :: :ok | {:error, term()}
  def add_member(name \\ LiteStash, new_node) do
    Membership.change(config!(name), fn nodes -> Enum.uniq(nodes ++ [new_node]) end)
  end

  @doc """
  Removes `old_node` from the cluster: from every shard it holds (its Ra
  servers are deleted there when it can be reached; its files stay). A
  shard whose placement needs another holder gets one.
  """
  @spec remove_member(atom(), node()) :: :ok | {:error, term()}
  def remove_member(name \\ LiteStash, old_node) do
    Membership.change(config!(name), fn nodes -> nodes -- [old_node] end)
  end

  ## Info

  @doc """
  Per shard, `LiteStash.info/1`'s figures of this node's replica (when it
  holds the shard) and `members: [node]`, `leader: node | nil` and
  `applied_index: n | nil`, as this node sees them; `shard` is the index.
  `applied_index` is this node's replica's (nil when it does not hold the
  shard); `members` and `leader` come from this node's Ra server, or from
  a holder's.
  """
  @spec info(atom()) :: {:ok, [map()]} | {:error, Error.t()}
  def info(name \\ LiteStash) do
    config = config!(name)

    with {:ok, local} <- LiteStash.Call.read(name, :info, &LiteStash.Native.info/1) do
      {:ok,
       for {figures, shard} <- Enum.with_index(local) do
         local? = Group.local?(name, shard)

         {members, leader} =
           case Group.members(config, shard) do
             {:ok, members, leader} -> {members, leader}
             _ -> {nil, nil}
           end

         applied =
           case local? && Replica.applied(name, shard) do
             {:ok, index} -> index
             _ -> nil
           end

         figures = if local?, do: figures, else: %{}

         Map.merge(figures, %{
           shard: shard,
           members: members,
           leader: leader,
           applied_index: applied
         })
       end}
    end
  end

  @doc false
  # Ra's view of this node's server of `shard`: its snapshot's index and
  # its log's first index (for the tests of snapshot catch-up).
  def log_overview(name, shard) do
    id = Group.server_id(name, shard, node())

    case ra(:ra_server_proc).local_state_query(id, :all, 5_000) do
      {:ok, %{log: log}, _} ->
        snapshot =
          case ra(:ra_log).snapshot_index_term(log) do
            {index, _term} -> index
            :undefined -> 0
          end

        %{snapshot_index: snapshot, first_index: ra(:ra_log).overview(log).first_index}

      other ->
        {:error, other}
    end
  end

  ## Names

  @doc false
  def server_id(name, shard, node), do: Group.server_id(name, shard, node)

  defp member_name(name), do: :"#{name}.cluster"

  @doc false
  # This node's config of the clustered store `name`; raises `:closed`.
  def config!(name) do
    :persistent_term.get({__MODULE__, name}, nil) ||
      raise Error,
        reason: :closed,
        message: "no LiteStash cluster member #{inspect(name)} runs on #{node()}"
  end

  # Ra is optional (not a dependency of LiteStash): its modules are named
  # at run time, so that LiteStash compiles, without warnings, with or
  # without Ra on the code path.
  defp ra(module), do: module
end
