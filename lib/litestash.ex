defmodule LiteStash do
  @moduledoc """
  An embedded key-value store: 16 SQLite files, each with its own writer,
  so writers on different shards never wait on each other, and files any
  language can read through the LiteStash data contract.

  ## Features

    * Keys are UTF-8 strings of 1 to 1024 bytes; values are nil, booleans,
      integers, floats, strings, binaries, lists and maps (see "Value types").
    * Every key is hashed with BLAKE2b-512 and routed to one of 64 tables in
      16 shard files. Each file has one writer thread that commits the writes
      queued by many callers in one transaction ("group commit"); a lone
      writer's write (nothing queued in the store) commits at once on the
      caller's dirty IO scheduler instead. Either way a call returns `:ok`
      only once its write is committed.
    * Reads use their own connections (SQLite WAL) and never wait for a writer.
    * Calls go from your process straight into the NIF: no GenServer call on
      the data path, and SQLite work never runs on a normal scheduler.

  ## Usage

  Each example below runs when pasted into `iex -S mix`, in order (a test
  runs them, twice, on the same data dir):

  ```elixir
  {:ok, _pid} = LiteStash.start_link(data_dir: "./data")

  :ok = LiteStash.set("user:1001", %{name: "Alice", score: 99})
  {:ok, %{"name" => "Alice", "score" => 99}} = LiteStash.get("user:1001")

  :ok = LiteStash.set("vec:1", [0.1, 0.5, 0.9])
  {:ok, [0.1, 0.5, 0.9]} = LiteStash.get("vec:1")
  ```

  Put it in your supervision tree with `{LiteStash, data_dir: "./data"}`.

  Keys can expire, the store can be walked lazily, counters and conditional
  writes are atomic, and a running store can be backed up:

  ```elixir
  :ok = LiteStash.set("session:abc", %{"user" => 1001}, ttl: 60_000)
  {:ok, _ms_left} = LiteStash.ttl("session:abc")

  LiteStash.stream(prefix: "user:") |> Enum.take(10)

  :ok = LiteStash.delete("hits")
  {:ok, 1} = LiteStash.incr("hits")
  :ok = LiteStash.delete("lock:job-7")
  :ok = LiteStash.put_new("lock:job-7", "owner-a")
  :ok = LiteStash.compare_and_set("lock:job-7", "owner-a", "owner-b")

  dest = Path.join(System.tmp_dir!(), "kv-backup-\#{System.os_time(:millisecond)}")
  :ok = LiteStash.backup(dest)
  {:ok, _per_shard} = LiteStash.info()
  :ok = LiteStash.compact()
  ```

  Several stores can run at once under different names and data dirs; every
  data function takes the store's name or pid as an optional first argument.
  A name is any GenServer name, and `name: nil` starts an anonymous store:

  ```elixir
  {:ok, _} = LiteStash.start_link(name: :sessions, data_dir: "./sessions")
  :ok = LiteStash.set(:sessions, "abc", %{"user" => 1})
  ```

  An anonymous store on `data_dir: :memory` has no files, the data gone
  when it stops: what a test wants (see the README's "Testing"):

  ```elixir
  {:ok, pid} = LiteStash.start_link(name: nil, data_dir: :memory)
  :ok = LiteStash.set(pid, "abc", 1)
  :ok = LiteStash.stop(pid)
  ```

  ## Options

    * `:data_dir` - the directory of the 16 shard files, created when
      missing. It must be missing, empty or a LiteStash data dir: a
      directory of other files is refused with `reason: :not_litestash`.
      `:memory` keeps the 16 shards in SQLite in-memory databases instead:
      the same API and no files, the data gone when the store stops (see
      "Testing" in the README). Default `"./data"`.
    * `:read_only` - `true` opens an existing data dir for reads only, for
      example one another OS process writes or a directory you may only
      read: no writer threads, read-only SQLite connections, and every
      write (`set`, `delete`, `incr`, `compact`, ...) returns
      `{:error, %LiteStash.Error{reason: :read_only}}` naming the data dir.
      A missing data dir is an error, not created. SQLite reads a WAL file
      read-only when its `-wal` and `-shm` files exist and are readable
      (a store that has the dir open keeps them) or when it may create them
      (the directory is writable; a store that was stopped leaves neither).
      `backup/2`, `info/1` and every read work. Default `false`.
    * `:name` - the name the store is registered and called under: an
      atom, `{:global, term}` or `{:via, module, term}` (any GenServer
      name), or `nil` for an anonymous store called by the pid that
      `start_link/1` returns. Every function takes the pid as well as the
      name. Default `LiteStash`.
    * `:synchronous` - `:normal` (default): a committed write survives a
      crash of the VM or the OS process; a power loss or OS crash may roll
      back the last commits, never corrupt the files. `:full`: each commit is
      flushed to disk (fsync) before the call returns, so it survives power
      loss too. Group commit shares a flush among the writes committed
      together, so `:full` costs least under concurrency.
    * `:busy_timeout` - milliseconds a write waits for another OS process's
      lock on a shard file before it fails with `:busy`, counted from its
      call, however many writes queued with it. Default `30_000`.
    * `:max_page_count` - caps every shard file at this many 4 KiB pages, so
      that writes past it fail with `:disk_full`: for testing how your
      application handles a full disk. Default `nil` (no cap).
    * `:sweep_interval` - milliseconds between two sweeps of expired keys by
      each shard's writer when nothing else is due. An expired key is
      invisible to reads at once either way. Default `1_000`.
    * `:inline_commits` - how many writes may commit at once on their
      callers' dirty IO schedulers. A `set`, `put_new`, `compare_and_set`,
      `incr` or `delete` made while nothing is queued anywhere in the store,
      and its shard's writer is not busy, commits right there, sparing a lone writer the hand-off
      to the writer thread and back; as soon as writes queue up, the writer
      threads batch them. `0` sends
      every write through the writer threads. Default `1`. The writes
      committing inline are counted over every store of the VM, and each
      store lets a write go inline only while that count is under its own
      setting; each one holds a dirty IO scheduler for its commit (up to
      `:busy_timeout` if another OS process holds the file's lock).
    * `:concurrent_commits` - how many of the store's 16 shard writers may
      commit a batch at once, from `1` to `16`, or `:auto` (default). Under many
      concurrent writers (from 128 writes waiting in the store, 8 per
      shard), a shard writer waiting for its turn lets its queue grow, and
      then commits more writes in one transaction; fewer never wait for a
      turn. `:auto`
      is the number of cores the OS gives the VM with `synchronous:
      :normal`, where a commit costs CPU (its WAL frames go to the OS's
      cache), and `16` with `synchronous: :full`, where a commit mostly
      waits for its fsync and the 16 files' fsyncs overlap. A writer
      waiting for another OS process's lock on its file, or for room on a
      full disk, gives its turn up (and finishes that batch without one),
      so one shard's wait never holds up the others. A lone writer's inline
      commit (`:inline_commits`), expiry sweeps and checkpoints take no
      turn.
    * `:max_streams` - how many `stream/2`s may be open on the store at
      once (each holds an SQLite connection, so file descriptors, until it
      is done or halted). Past it, enumerating another raises
      `LiteStash.Error` with `reason: :too_many_streams`, at once. Default `64`.
    * `:cache_size` - bytes of decoded values the store keeps in memory for
      reads, counted with their keys and bookkeeping. Default `33_554_432`
      (32 MiB); `0` turns the cache off. A `get`, `exists` or `ttl` that the
      cache answers runs on the calling scheduler, without SQLite; any
      other read goes to the shard file (in place or on a dirty IO
      scheduler, see `:nowait_reads`) and fills the cache. Values over
      4 KiB encoded are not cached. The cache never serves a stale value: the store's own writes update it before they
      return, an expired key is never served from it, and a commit by
      another OS process to the same files is noticed (through SQLite's
      WAL index) by every read that starts after that commit returned.
    * `:nowait_reads` - `true` (default) lets a `get`, `exists?` or `ttl`
      that the cache cannot answer try the shard file on the calling
      scheduler first, taking only what is already in memory: SQLite's
      page cache and the OS's, read with Linux's `preadv2(RWF_NOWAIT)`,
      which fails at once rather than wait for the disk. A read that would wait for the disk,
      for a lock or for a pooled connection, or whose value is over 4 KiB,
      is redone on a dirty IO scheduler, as every miss is with `false` (and
      on systems without `RWF_NOWAIT`, and for `data_dir: :memory`).
      `info/1` counts both kinds per shard (`nowait_reads`,
      `nowait_deferred`).
    * `:page_cache_size` - bytes of SQLite page cache for the whole store,
      shared out evenly over its connections (each shard's writer and up to
      one pooled reader per dirty IO scheduler, at least 64 KiB each).
      Default `67_108_864` (64 MiB). The files are also memory-mapped for
      reads; those pages are the OS's page cache, not counted here.
    * `:mmap_size` - bytes of each shard file that each connection maps into
      memory for reads; `0` reads with `pread` into the page cache instead.
      Default `268_435_456` (256 MiB): cold reads run 1.2-1.5x faster than
      with `0`. The mapped pages are the OS's page cache (which `pread`
      fills too), but the VM's RSS counts them once per connection that
      maps them; `0` keeps RSS to what the store allocates.
    * `:wal_limit` - bytes of write-ahead log per shard after which its
      writer copies the log back into the file; past 6 times that it waits
      briefly for readers and truncates the log. Default `8_240_000`
      (2,000 pages). Lower it on small devices: 16 shards each keep up to
      this much WAL.
    * `:disk_reserve` - bytes of disk the store keeps allocated in a file
      of its own, `litestash.reserve` in the data dir, so that it can
      always give back the space its WAL files hold. When the disk fills,
      every shard checkpoints and truncates its WAL; a checkpoint that must
      first grow its file borrows the reserve's space and allocates it again
      from what the truncation gave back, and the write that met the full
      disk is tried once more. Deletes and `clear/1` may spend the reserve
      itself when nothing else made room, so that you can make room through
      the store; it is allocated again once the disk has twice its size
      free.
      Default `4_194_304` (4 MiB). `0` keeps none: then a disk the WAL
      filled stays full (every checkpoint must grow its file first) until
      room is made outside the store.
    * `:replica` - `true` opens the data dir as one replica of a clustered
      store: its files get the contract's replica table (section 10), and
      only the cluster's log writes them (every other write answers
      `:replicated`). Set by `LiteStash.Cluster`; not for direct use.
      Default `false`. A store opened without it reads a replica's files and
      refuses to write them.

  With `:cluster`, the store is one member of a store replicated over
  several nodes with Ra (see `LiteStash.Cluster`; Ra must be in your deps):

    * `:cluster` - the member nodes, this one included. Every call on any
      member then goes through the shard's Raft group.
    * `:replication_factor` - how many members hold each shard, chosen by
      rendezvous hashing of the shard index. Default `nil`: all of them.
    * `:cluster_reads` - `:local` (default) reads this node's replica;
      `:consistent` makes reads linearizable (Ra's consistent query).
    * `:timeout` - milliseconds a call waits for a quorum before it answers
      `reason: :no_quorum`. Default `5_000`.
    * `:snapshot_interval` - log entries between two snapshots of a shard.
      Default `4096`.

  An unknown option or a bad value raises `ArgumentError`.

  ## Value types

  | Elixir                         | stored as (MessagePack) | reads back as          |
  | ------------------------------ | ----------------------- | ---------------------- |
  | `nil`, `true`, `false`         | nil, true, false        | the same               |
  | integer in -2^63..2^64-1       | int                     | the same               |
  | float                          | float 64                | the same               |
  | binary that is valid UTF-8     | str                     | the same binary        |
  | any other binary               | bin                     | the same binary        |
  | other atom, e.g. `:name`       | str                     | `"name"`               |
  | list                           | array                   | list                   |
  | map                            | map                     | map (atom keys as strings) |
  | `Date`, `Time`, `NaiveDateTime`, `DateTime` | str (ISO 8601) | `"2024-01-31"`, `"12:30:00"`, `"2024-01-31T12:30:00"`, `"2024-01-31T12:30:00Z"` |
  | `MapSet`                       | array                   | list of its members    |
  | other struct implementing `LiteStash.Encoder` | what its `encode/1` returns | that value |

  A struct is not stored as a map: it is refused with
  `reason: :unsupported_value` naming it, unless its module implements (or
  derives) `LiteStash.Encoder`, which turns it into one of the values above.
  What reads back is that value, never the struct.

  Refused with `reason: :unsupported_value`, writing nothing: tuples, pids,
  references, functions, ports, improper lists, bitstrings that are not
  whole bytes, integers outside -2^63..2^64-1, maps whose keys collide once
  atoms become strings (`%{:a => 1, "a" => 2}`), and map keys that are lists
  or maps. Values over 64 MiB encoded give `:value_too_large`, values nested
  deeper than 512 levels `:too_deep`. A float NaN or infinity written by
  another language reads as `:nan`, `:infinity` or `:neg_infinity`.
  """

  alias LiteStash.{Args, Call, Error, Native}

  @typedoc """
  A running store: its name (an atom, `{:global, term}` or
  `{:via, module, term}`, as given to `start_link/1`) or its pid.
  """
  @type server :: atom() | {:global, term()} | {:via, module(), term()} | pid()
  @typedoc "A store's name in `start_link/1`: as `t:server/0`, or nil for none."
  @type name :: atom() | {:global, term()} | {:via, module(), term()} | nil
  @typedoc "A key: a UTF-8 binary of 1 to 1024 bytes."
  @type key :: String.t()
  @typedoc "A storable value; see \"Value types\"."
  @type value ::
          nil
          | boolean()
          | integer()
          | float()
          | binary()
          | atom()
          | [value()]
          | %{optional(value()) => value()}
  @typedoc "An option of `start_link/1`."
  @type option ::
          {:data_dir, Path.t() | :memory}
          | {:read_only, boolean()}
          | {:name, name()}
          | {:synchronous, :normal | :full}
          | {:busy_timeout, non_neg_integer()}
          | {:max_page_count, pos_integer() | nil}
          | {:sweep_interval, pos_integer()}
          | {:inline_commits, non_neg_integer()}
          | {:concurrent_commits, 1..16 | :auto}
          | {:max_streams, pos_integer()}
          | {:cache_size, non_neg_integer()}
          | {:nowait_reads, boolean()}
          | {:page_cache_size, non_neg_integer()}
          | {:mmap_size, non_neg_integer()}
          | {:wal_limit, pos_integer()}
          | {:disk_reserve, non_neg_integer()}
          | {:replica, boolean()}
          | {:cluster, [node()]}
          | {:replication_factor, pos_integer() | nil}
          | {:cluster_reads, :local | :consistent}
          | {:timeout, pos_integer()}
          | {:snapshot_interval, pos_integer()}

  @defaults [
    data_dir: "./data",
    name: __MODULE__,
    synchronous: :normal,
    busy_timeout: 30_000,
    max_page_count: nil,
    sweep_interval: 1_000,
    inline_commits: 1,
    concurrent_commits: :auto,
    read_only: false,
    max_streams: 64,
    cache_size: 32 * 1024 * 1024,
    nowait_reads: true,
    page_cache_size: 64 * 1024 * 1024,
    mmap_size: 256 * 1024 * 1024,
    wal_limit: 2000 * (4096 + 24),
    disk_reserve: 4 * 1024 * 1024,
    replica: false
  ]

  @doc """
  Starts a store on `opts[:data_dir]`, owned by a process linked to the caller.

  Returns `{:ok, pid}`, or `{:error, %LiteStash.Error{}}` when the data dir
  cannot be opened (the message names the path and the cause), including
  `reason: :already_open` when this VM already has it open. A name that a
  process already holds (a store or any other process) gives GenServer's
  own `{:error, {:already_started, pid}}` with that process's pid, which
  supervisors understand; the data dir is then released at once. See
  "Options" in the module doc.

      iex> {:ok, pid} = LiteStash.start_link(data_dir: :memory, name: :doc_store)
      iex> is_pid(pid)
      true
      iex> LiteStash.set(:doc_store, "k", 1)
      :ok
      iex> LiteStash.stop(:doc_store)
      :ok
  """
  @spec start_link([option()]) ::
          {:ok, pid()} | {:error, Error.t()} | {:error, {:already_started, pid()}}
  def start_link(opts \\ []) do
    validate_options!(opts)
    if LiteStash.Cluster.member?(opts), do: LiteStash.Cluster.start_link(opts), else: open(opts)
  end

  defp open(opts) do
    opts = validate_options!(opts)
    memory? = opts[:data_dir] == :memory
    path = if memory?, do: "", else: Path.expand(opts[:data_dir])

    # Every validated option but these two reaches the NIF, as a map, with
    # the readers per shard: no more reads run at once than there are dirty
    # IO schedulers.
    native_options =
      opts
      |> Keyword.drop([:name, :data_dir])
      |> Map.new()
      |> Map.put(:memory, memory?)
      |> Map.put(:readers_per_shard, min(:erlang.system_info(:dirty_io_schedulers), 16))
      |> Map.update!(:concurrent_commits, fn n -> if n == :auto, do: nil, else: n end)

    case Native.open(path, native_options) do
      {:ok, store} ->
        case LiteStash.Owner.start_link({store, opts[:name]}) do
          {:ok, pid} ->
            {:ok, pid}

          other ->
            Native.close(store)
            other
        end

      {:error, %Error{}} = error ->
        error
    end
  end

  @doc """
  A child spec, so that `{LiteStash, opts}` can go in a supervision tree.
  The child's id is the store's name (`LiteStash` for an anonymous store:
  give two anonymous stores under one supervisor ids of their own with
  `Supervisor.child_spec/2`). The child is `restart: :transient`: its
  supervisor starts it again after a crash, but a store ended by `stop/1`
  stays stopped, as `stop/1` says.
  """
  @spec child_spec([option()]) :: Supervisor.child_spec()
  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :name, __MODULE__) || __MODULE__,
      start: {__MODULE__, :start_link, [opts]},
      restart: :transient,
      type: :worker
    }
  end

  @doc """
  Stops the store: commits every queued write, closes the files and releases
  the data dir. Returns `:ok`; for a store that is not running (stopped
  already, or a name that no store holds, even one another process is
  registered under) `{:error, %LiteStash.Error{reason: :closed}}`, touching
  no other process. Later calls on a stopped store return `reason: :closed`
  too.
  """
  @spec stop(server()) :: :ok | {:error, Error.t()}
  def stop(server \\ __MODULE__) do
    if clustered?(server), do: LiteStash.Cluster.stop(server), else: LiteStash.Owner.stop(server)
  end

  defp validate_options!(opts) do
    unless Keyword.keyword?(opts) do
      raise ArgumentError, "LiteStash options must be a keyword list, got: #{inspect(opts)}"
    end

    Enum.each(opts, fn {key, value} -> validate_option!(key, value) end)

    if opts[:read_only] == true and opts[:data_dir] == :memory do
      raise ArgumentError,
            "read_only: true needs a data dir to read: an in-memory store (data_dir: :memory) starts empty"
    end

    Keyword.merge(@defaults, opts)
  end

  @option_expectations %{
    data_dir: "a non-empty path string or :memory",
    read_only: "a boolean",
    name: "an atom, {:global, term}, {:via, module, term} or nil",
    synchronous: ":normal or :full",
    busy_timeout: "an integer of milliseconds from 0 to 86400000",
    max_page_count: "a positive integer or nil",
    sweep_interval: "a positive integer of milliseconds",
    inline_commits: "an integer from 0 to 1024",
    concurrent_commits: "an integer from 1 to 16 or :auto",
    max_streams: "an integer from 1 to 65536",
    cache_size: "a non-negative integer of bytes",
    nowait_reads: "a boolean",
    page_cache_size: "a non-negative integer of bytes",
    mmap_size: "a non-negative integer of bytes",
    wal_limit: "a positive integer of bytes",
    disk_reserve: "a non-negative integer of bytes",
    replica: "a boolean",
    cluster: "a non-empty list of node names",
    replication_factor: "a positive integer or nil",
    cluster_reads: ":local or :consistent",
    timeout: "a positive integer of milliseconds",
    snapshot_interval: "a positive integer"
  }

  defp validate_option!(key, value) do
    cond do
      not is_map_key(@option_expectations, key) ->
        raise ArgumentError,
              "unknown LiteStash option #{inspect(key)} (with value #{inspect(value)}); known options: " <>
                (@option_expectations
                 |> Map.keys()
                 |> Enum.sort()
                 |> Enum.map_join(", ", &inspect/1))

      valid_option?(key, value) ->
        :ok

      true ->
        raise ArgumentError,
              "invalid value for LiteStash option #{inspect(key)}: expected " <>
                "#{@option_expectations[key]}, got: #{inspect(value)}"
    end
  end

  defp valid_option?(:data_dir, dir), do: dir == :memory or (is_binary(dir) and dir != "")
  defp valid_option?(:read_only, flag), do: is_boolean(flag)
  defp valid_option?(:name, name) when is_atom(name), do: name not in [true, false]
  defp valid_option?(:name, {:global, _}), do: true
  defp valid_option?(:name, {:via, module, _}), do: is_atom(module)
  defp valid_option?(:name, _), do: false
  defp valid_option?(:synchronous, level), do: level in [:normal, :full]
  defp valid_option?(:busy_timeout, ms), do: is_integer(ms) and ms >= 0 and ms <= 86_400_000
  defp valid_option?(:max_page_count, n), do: is_nil(n) or (is_integer(n) and n > 0)
  defp valid_option?(:sweep_interval, ms), do: is_integer(ms) and ms > 0
  defp valid_option?(:inline_commits, n), do: is_integer(n) and n >= 0 and n <= 1024

  defp valid_option?(:concurrent_commits, n),
    do: n == :auto or (is_integer(n) and n >= 1 and n <= 16)

  defp valid_option?(:max_streams, n), do: is_integer(n) and n >= 1 and n <= 65_536
  defp valid_option?(:cache_size, n), do: is_integer(n) and n >= 0 and n < 281_474_976_710_656

  defp valid_option?(:page_cache_size, n),
    do: is_integer(n) and n >= 0 and n < 281_474_976_710_656

  defp valid_option?(:mmap_size, n),
    do: is_integer(n) and n >= 0 and n < 281_474_976_710_656

  defp valid_option?(:wal_limit, n), do: is_integer(n) and n > 0 and n < 281_474_976_710_656
  defp valid_option?(:disk_reserve, n), do: is_integer(n) and n >= 0 and n < 281_474_976_710_656
  defp valid_option?(:replica, replica?), do: is_boolean(replica?)
  defp valid_option?(:nowait_reads, flag), do: is_boolean(flag)
  defp valid_option?(key, value), do: LiteStash.Cluster.valid_option?(key, value)

  defp clustered?(server), do: LiteStash.Cluster.clustered?(server)

  ## Writes

  @doc """
  Stores `value` under `key`.

  Call it as `set(key, value)`, `set(key, value, opts)`,
  `set(server, key, value)` or `set(server, key, value, opts)`; `server`
  defaults to `LiteStash`.

  ## Options

    * `:ttl` - milliseconds until the key expires (a positive integer). From
      then on it is invisible to every read, and a sweep deletes it. Without
      `:ttl`, any earlier expiry of the key is cleared (see "Expiry" under
      `expire/3` for the rule every write follows).

  Returns `:ok` once the write is committed, or `{:error, %LiteStash.Error{}}`:
  `:invalid_key`, `:unsupported_value`, `:value_too_large`, `:too_deep`
  (nothing is written, an earlier value is kept), `:closed`, `:disk_full` and
  other storage errors. A key that is not a binary raises `ArgumentError`.

  The examples use the default store, started as in the module doc's
  "Usage":

      iex> LiteStash.set("user:1001", %{name: "Alice", score: 99})
      :ok
      iex> LiteStash.get("user:1001")
      {:ok, %{"name" => "Alice", "score" => 99}}
      iex> LiteStash.set("session:1", %{"user" => 1001}, ttl: 60_000)
      :ok
      iex> {:error, %LiteStash.Error{reason: :unsupported_value}} = LiteStash.set("t", {1, 2})
  """
  @spec set(server(), key(), value(), keyword()) :: :ok | {:error, Error.t()}
  def set(server, key, value, opts) do
    key = Args.key!(key)
    opts = Args.options!(opts, "the fourth argument of set/4")

    do_set(server, key, value, Args.ttl_option!(opts, "set/4"))
  end

  @doc "`set(key, value)` on the store `LiteStash`, or `set(server, key, value)`; see `set/4`."
  @spec set(server() | key(), key() | value(), value() | keyword()) :: :ok | {:error, Error.t()}
  def set(key, value, opts) when is_binary(key) do
    opts = Args.options!(opts, "the third argument of set/3 (after a key and a value)")

    do_set(__MODULE__, key, value, Args.ttl_option!(opts, "set/3"))
  end

  def set(server, key, value), do: do_set(server, Args.key!(key), value, nil)

  @doc "`set(key, value)` on the store `LiteStash`; see `set/4`."
  @spec set(key(), value()) :: :ok | {:error, Error.t()}
  def set(key, value), do: do_set(__MODULE__, Args.key!(key, "set/2"), value, nil)

  defp do_set(server, key, value, ttl) do
    if clustered?(server),
      do: LiteStash.Cluster.set(server, key, value, ttl),
      else: Call.write(server, :set, value, &Native.set(&1, &2, key, &3, ttl))
  end

  @doc "Like `set/4`, but returns `:ok` or raises `LiteStash.Error`."
  @spec set!(server(), key(), value(), keyword()) :: :ok
  def set!(server, key, value, opts), do: bang!(set(server, key, value, opts))

  @doc "Like `set/3`, but returns `:ok` or raises `LiteStash.Error`."
  @spec set!(server() | key(), key() | value(), value() | keyword()) :: :ok
  def set!(server_or_key, key_or_value, value_or_opts),
    do: bang!(set(server_or_key, key_or_value, value_or_opts))

  @doc "Like `set/2`, but returns `:ok` or raises `LiteStash.Error`."
  @spec set!(key(), value()) :: :ok
  def set!(key, value), do: bang!(set(key, value))

  @doc """
  Stores every `{key, value}` of `pairs` (a map or a list of pairs).

  Every pair is validated and encoded before anything is written; one bad
  pair refuses the whole call. The keys of one shard file are committed
  atomically together; keys on different shard files are committed
  independently (see the data contract, section 7). Returns `:ok` when all
  are committed, or the first error. Like `set/4` without `:ttl`, it clears
  any expiry of the keys it writes.
  """
  @spec mset(server(), %{key() => value()} | [{key(), value()}]) :: :ok | {:error, Error.t()}
  def mset(server \\ __MODULE__, pairs) do
    pairs = Args.pairs!(pairs, "mset/2")

    if clustered?(server),
      do: LiteStash.Cluster.mset(server, pairs),
      else: Call.write(server, :mset, pairs, &Native.set_many(&1, &2, &3))
  end

  @doc """
  Deletes `key`. Returns `:ok` once committed, also when the key was absent.
  """
  @spec delete(server(), key()) :: :ok | {:error, Error.t()}
  def delete(server \\ __MODULE__, key) do
    key = Args.key!(key)

    if clustered?(server),
      do: LiteStash.Cluster.delete(server, key),
      else: Call.write(server, :delete, &Native.delete(&1, &2, key))
  end

  @doc "Deletes every key of every shard. Returns `:ok` once committed."
  @spec clear(server()) :: :ok | {:error, Error.t()}
  def clear(server \\ __MODULE__) do
    if clustered?(server),
      do: LiteStash.Cluster.clear(server),
      else: Call.write(server, :clear, &Native.clear(&1, &2))
  end

  ## Reads

  @doc """
  Reads `key`: `{:ok, value}`, or `{:error, %LiteStash.Error{reason: :not_found}}`
  when it is not stored. A stored `nil` is `{:ok, nil}`.
  """
  @spec get(server(), key()) :: {:ok, value()} | {:error, Error.t()}
  def get(server \\ __MODULE__, key) do
    key = Args.key!(key)

    if clustered?(server),
      do: LiteStash.Cluster.get(server, key),
      else: Call.read(server, :get, &Native.get(&1, key))
  end

  @doc "Like `get/2`, but returns the value or raises `LiteStash.Error`."
  @spec get!(server(), key()) :: value()
  def get!(server \\ __MODULE__, key) do
    case get(server, key) do
      {:ok, value} -> value
      {:error, error} -> raise error
    end
  end

  @doc """
  Reads `key` with a default: the stored value, or `default` when the key
  is not stored (as `Map.get/3` and CubDB's `get/3` do). A stored `nil` is
  `nil`. The server comes first and is not optional here, since `get/2`
  is `get(server, key)`: `get(LiteStash, key, default)`. Raises
  `LiteStash.Error` when the store cannot answer (for example `:closed`).

  On the default store (see the module doc's "Usage"):

      iex> LiteStash.get(LiteStash, "missing", 0)
      0
      iex> :ok = LiteStash.set("there", 1)
      iex> LiteStash.get(LiteStash, "there", 0)
      1
  """
  @spec get(server(), key(), default) :: value() | default when default: term()
  def get(server, key, default) do
    case fetch(server, key) do
      {:ok, value} -> value
      :error -> default
    end
  end

  @doc """
  Reads `key` as `Map.fetch/2` does: `{:ok, value}`, or `:error` when the
  key is not stored. Raises `LiteStash.Error` when the store cannot answer
  (for example `:closed`); `get/2` returns every error as a tuple instead.
  """
  @spec fetch(server(), key()) :: {:ok, value()} | :error
  def fetch(server \\ __MODULE__, key) do
    case get(server, key) do
      {:ok, value} -> {:ok, value}
      {:error, %Error{reason: :not_found}} -> :error
      {:error, error} -> raise error
    end
  end

  @doc """
  Reads several keys at once: `{:ok, %{key => value}}` with the keys that
  are stored (missing keys are left out).

  A key whose stored value is not valid MessagePack (written by something
  else) maps to `{:error, %LiteStash.Error{reason: :corrupt_value}}`, as
  `get/2` would answer for it; the other keys are read as usual. No stored
  value is ever a tuple, so `{:error, _}` cannot be mistaken for one.
  `{:error, %LiteStash.Error{}}` for the whole call means the store could
  not read (`:closed`, `:corrupt` shard file, I/O errors).
  """
  @spec mget(server(), [key()]) ::
          {:ok, %{key() => value() | {:error, Error.t()}}} | {:error, Error.t()}
  def mget(server \\ __MODULE__, keys) do
    keys = Args.keys!(keys, "mget/2")

    if clustered?(server),
      do: LiteStash.Cluster.mget(server, keys),
      else: Call.read(server, :mget, &Native.get_many(&1, keys))
  end

  @doc """
  Whether `key` is stored. Raises `LiteStash.Error` when the store cannot
  answer (for example `:closed`).
  """
  @spec exists?(server(), key()) :: boolean()
  def exists?(server \\ __MODULE__, key) do
    key = Args.key!(key)

    found =
      if clustered?(server),
        do: LiteStash.Cluster.exists(server, key),
        else: Call.read(server, :exists, &Native.exists(&1, key))

    case found do
      {:ok, found} -> found
      {:error, error} -> raise error
    end
  end

  @doc """
  The stored keys: `{:ok, [key]}`. With `prefix: "user:"` only the keys that
  start with it, found through the key index (a range, not a scan).

  Keys come shard by shard: in key order within each of the 16 shard files,
  in no particular order across them. Expired keys are left out.
  """
  @spec keys(server() | keyword(), keyword()) :: {:ok, [key()]} | {:error, Error.t()}
  def keys(server_or_opts \\ [], opts \\ [])
  def keys(opts, []) when is_list(opts), do: keys(__MODULE__, opts)

  def keys(server, opts) do
    Args.not_a_key!(server, "keys/1")
    opts = Args.options!(opts, "the second argument of keys/2")
    prefix = Args.prefix_option!(opts, [])

    if clustered?(server),
      do: LiteStash.Cluster.keys(server, prefix),
      else: Call.read(server, :keys, &Native.keys(&1, prefix))
  end

  @doc """
  The number of stored, unexpired keys: `{:ok, count}`; with `prefix:`, of
  the keys that start with it.
  """
  @spec count(server() | keyword(), keyword()) :: {:ok, non_neg_integer()} | {:error, Error.t()}
  def count(server_or_opts \\ [], opts \\ [])
  def count(opts, []) when is_list(opts), do: count(__MODULE__, opts)

  def count(server, opts) do
    Args.not_a_key!(server, "count/1")
    opts = Args.options!(opts, "the second argument of count/2")
    prefix = Args.prefix_option!(opts, [])

    if clustered?(server),
      do: LiteStash.Cluster.count(server, prefix),
      else: Call.read(server, :count, &Native.count(&1, prefix))
  end

  @doc """
  A lazy `Stream` of `{key, value}` over the whole store, or over the keys
  that start with `prefix:`.

  The stream reads one shard at a time, at most `chunk_size` pairs and about
  4 MiB of keys and values per NIF call (one pair if its value alone is
  larger), so its memory stays bounded whatever the store's size and its
  values' sizes. Each shard is read in one consistent snapshot (writes that
  commit during the walk of a shard are not seen in it). Order: by key
  within a shard, unordered across the 16 shards. Expired keys are left out.

  A stored value that is not valid MessagePack (written by something else)
  comes as `{key, {:error, %LiteStash.Error{reason: :corrupt_value}}}`, the
  message naming the key, and the stream goes on with the next key: no
  stored value is ever a tuple, so match on `{:error, _}` to tell. Any other
  read error raises `LiteStash.Error`, as does opening a stream past the
  store's `:max_streams` (`reason: :too_many_streams`). An open stream holds
  a connection until it is done, halted (`Enum.take/2` and the like), or its
  process exits.

  ## Options

    * `:prefix` - only keys that start with this string. Default `""` (all).
    * `:chunk_size` - most pairs read per call. Default `500`.

  On the default store (see the module doc's "Usage"):

      iex> :ok = LiteStash.mset(%{"fruit:apple" => 1, "fruit:pear" => 2, "veg:leek" => 3})
      iex> LiteStash.stream(prefix: "fruit:") |> Enum.sort()
      [{"fruit:apple", 1}, {"fruit:pear", 2}]
  """
  @spec stream(server() | keyword(), keyword()) :: Enumerable.t()
  def stream(server_or_opts \\ [], opts \\ [])
  def stream(opts, []) when is_list(opts), do: stream(__MODULE__, opts)

  def stream(server, opts) do
    Args.not_a_key!(server, "stream/1")
    opts = Args.options!(opts, "the second argument of stream/2")
    prefix = Args.prefix_option!(opts, [:chunk_size])
    chunk = Args.chunk_size!(opts)

    Stream.resource(
      fn ->
        case Call.target(server) do
          {:ok, target} -> {target, 0, nil}
          {:error, error} -> raise error
        end
      end,
      &next_chunk(&1, prefix, chunk),
      fn
        {_store, _shard, nil} -> :ok
        {_store, _shard, cursor} -> Native.snapshot_close(cursor)
      end
    )
  end

  defp next_chunk({_store, shard, nil} = state, prefix, chunk) do
    if shard < Native.shard_count(),
      do: open_chunk(state, prefix, chunk),
      else: {:halt, state}
  end

  defp next_chunk({store, shard, cursor}, _prefix, chunk) do
    case Native.snapshot_next(cursor, chunk, true) do
      {:ok, []} -> {[], {store, shard + 1, nil}}
      {:ok, pairs} -> {pairs, {store, shard, cursor}}
      {:error, error} -> raise error
    end
  end

  defp open_chunk({store, shard, nil}, prefix, chunk) do
    case Native.snapshot_open(store, shard, prefix) do
      {:ok, cursor} -> next_chunk({store, shard, cursor}, prefix, chunk)
      {:error, error} -> raise error
    end
  end

  ## Expiry

  @doc """
  Makes `key` expire `ms` milliseconds from now. Returns `:ok`, or
  `{:error, %LiteStash.Error{reason: :not_found}}` when the key is not stored.

  ## Expiry

  One rule for every write: a write that stores a value (`set/4`, `mset/2`,
  `put_new/4`, `compare_and_set/5`, and so `update/4` and
  `get_and_update/3`) sets the key's expiry to its own `:ttl` option, and
  clears it when none is given, so the key has exactly the lifetime the
  last writer asked for. `incr/3` is the one exception, as in Redis: it
  keeps the key's expiry (a counter created by `incr` has none).
  `expire/3` and `persist/2` change only the expiry; `delete/2` removes both.
  """
  @spec expire(server(), key(), pos_integer()) :: :ok | {:error, Error.t()}
  def expire(server \\ __MODULE__, key, ms) do
    key = Args.key!(key)

    ms = Args.ttl!(ms, "expire/3's milliseconds")

    if clustered?(server),
      do: LiteStash.Cluster.expire(server, key, ms),
      else: Call.write(server, :expire, &Native.expire(&1, &2, key, ms))
  end

  @doc """
  Removes the expiry of `key`: it is kept until deleted. Returns `:ok`, or
  `reason: :not_found` when the key is not stored.
  """
  @spec persist(server(), key()) :: :ok | {:error, Error.t()}
  def persist(server \\ __MODULE__, key) do
    key = Args.key!(key)

    if clustered?(server),
      do: LiteStash.Cluster.persist(server, key),
      else: Call.write(server, :persist, &Native.expire(&1, &2, key, nil))
  end

  @doc """
  The time `key` has left: `{:ok, ms}`, `{:ok, :infinity}` for a key without
  expiry, or `reason: :not_found`.
  """
  @spec ttl(server(), key()) :: {:ok, non_neg_integer() | :infinity} | {:error, Error.t()}
  def ttl(server \\ __MODULE__, key) do
    key = Args.key!(key)

    if clustered?(server),
      do: LiteStash.Cluster.ttl(server, key),
      else: Call.read(server, :ttl, &Native.ttl(&1, key))
  end

  ## Atomic read-modify-write

  @doc """
  Adds `by` (default 1) to the integer under `key` and returns the new value,
  atomically: the read and the write happen in one transaction of the key's
  shard writer, so concurrent increments never lose an update. An absent
  key counts from 0; a key holding anything but an integer gives
  `reason: :not_an_integer`, as does a result outside -2^63..2^63-1. The
  key's expiry, if any, is kept.

  Call it as `incr(key)`, `incr(key, by)`, `incr(server, key)` or
  `incr(server, key, by)`.

  On the default store (see the module doc's "Usage"):

      iex> LiteStash.delete("visits")
      :ok
      iex> LiteStash.incr("visits")
      {:ok, 1}
      iex> LiteStash.incr("visits", 10)
      {:ok, 11}
  """
  @spec incr(server(), key(), integer()) :: {:ok, integer()} | {:error, Error.t()}
  def incr(server, key, by), do: do_incr(server, Args.key!(key), Args.amount!(by, "incr/3"))

  @doc "`incr(key, by)` on the store `LiteStash`, or `incr(server, key)`; see `incr/3`."
  @spec incr(server() | key(), key() | integer()) :: {:ok, integer()} | {:error, Error.t()}
  def incr(key, by) when is_binary(key), do: do_incr(__MODULE__, key, Args.amount!(by, "incr/2"))
  def incr(server, key), do: do_incr(server, Args.key!(key), 1)

  @doc "`incr(key)` on the store `LiteStash`: adds 1; see `incr/3`."
  @spec incr(key()) :: {:ok, integer()} | {:error, Error.t()}
  def incr(key), do: do_incr(__MODULE__, Args.key!(key, "incr/1"), 1)

  defp do_incr(server, key, by) do
    if clustered?(server),
      do: LiteStash.Cluster.incr(server, key, by),
      else: Call.write(server, :incr, &Native.incr(&1, &2, key, by))
  end

  @doc """
  Stores `value` under `key` only if the key is absent (or expired).
  Returns `:ok`, or `{:error, %LiteStash.Error{reason: :exists}}`.

  Call it as `put_new(key, value)`, `put_new(key, value, opts)`,
  `put_new(server, key, value)` or `put_new(server, key, value, opts)`.

  ## Options

    * `:ttl` - milliseconds until the key expires, as for `set/4`; without
      it the key never expires. With it, an expiring lock is one atomic call:

      iex> LiteStash.delete("lock:nightly")
      :ok
      iex> LiteStash.put_new("lock:nightly", "owner-a", ttl: 30_000)
      :ok
      iex> {:error, %LiteStash.Error{reason: :exists}} = LiteStash.put_new("lock:nightly", "owner-b")
  """
  @spec put_new(server(), key(), value(), keyword()) :: :ok | {:error, Error.t()}
  def put_new(server, key, value, opts) do
    key = Args.key!(key)
    opts = Args.options!(opts, "the fourth argument of put_new/4")

    do_put_new(server, key, value, Args.ttl_option!(opts, "put_new/4"))
  end

  @doc "`put_new(key, value, opts)` on the store `LiteStash`, or `put_new(server, key, value)`; see `put_new/4`."
  @spec put_new(server() | key(), key() | value(), value() | keyword()) ::
          :ok | {:error, Error.t()}
  def put_new(key, value, opts) when is_binary(key) do
    opts = Args.options!(opts, "the third argument of put_new/3 (after a key and a value)")

    do_put_new(__MODULE__, key, value, Args.ttl_option!(opts, "put_new/3"))
  end

  def put_new(server, key, value), do: do_put_new(server, Args.key!(key), value, nil)

  @doc "`put_new(key, value)` on the store `LiteStash`; see `put_new/4`."
  @spec put_new(key(), value()) :: :ok | {:error, Error.t()}
  def put_new(key, value), do: do_put_new(__MODULE__, Args.key!(key, "put_new/2"), value, nil)

  defp do_put_new(server, key, value, ttl) do
    if clustered?(server),
      do: LiteStash.Cluster.put_new(server, key, value, ttl),
      else: Call.write(server, :put_new, value, &Native.put_new(&1, &2, key, &3, ttl))
  end

  @doc """
  Stores `new` under `key` only if the stored value equals `expected`, in one
  transaction of the key's shard writer. Values are compared as the terms
  `get/2` returns: map order does not matter, types do (`1` and `1.0`
  differ, atoms compare as their strings), and `expected` equal to what
  `get/2` returned always matches, whatever wrote the value (a NaN read as
  `:nan`, a MessagePack bin read as a string). An `expected` of `nil`
  matches an absent key as well as a stored `nil`.

  Returns `:ok`, or `{:error, %LiteStash.Error{reason: :mismatch}}`.

  Call it as `compare_and_set(key, expected, new)`, with `opts` after `new`,
  and with `server` first.

  ## Options

    * `:ttl` - milliseconds until the key expires, as for `set/4`. Without
      it any expiry of the key is cleared, as `set/4` does.

      iex> LiteStash.set("lock:weekly", "owner-a", ttl: 30_000)
      :ok
      iex> LiteStash.compare_and_set("lock:weekly", "owner-a", "owner-b", ttl: 30_000)
      :ok
      iex> {:error, %LiteStash.Error{reason: :mismatch}} = LiteStash.compare_and_set("lock:weekly", "owner-a", "x")
  """
  @spec compare_and_set(server(), key(), value(), value(), keyword()) :: :ok | {:error, Error.t()}
  def compare_and_set(server, key, expected, new, opts) do
    key = Args.key!(key)
    opts = Args.options!(opts, "the fifth argument of compare_and_set/5")

    do_compare_and_set(server, key, expected, new, Args.ttl_option!(opts, "compare_and_set/5"))
  end

  @doc """
  `compare_and_set(key, expected, new, opts)` on the store `LiteStash`, or
  `compare_and_set(server, key, expected, new)`; see `compare_and_set/5`.
  """
  @spec compare_and_set(server() | key(), key() | value(), value(), value() | keyword()) ::
          :ok | {:error, Error.t()}
  def compare_and_set(key, expected, new, opts) when is_binary(key) do
    opts =
      Args.options!(opts, "the fourth argument of compare_and_set/4 (after a key and two values)")

    do_compare_and_set(
      __MODULE__,
      key,
      expected,
      new,
      Args.ttl_option!(opts, "compare_and_set/4")
    )
  end

  def compare_and_set(server, key, expected, new),
    do: do_compare_and_set(server, Args.key!(key), expected, new, nil)

  @doc "`compare_and_set(key, expected, new)` on the store `LiteStash`; see `compare_and_set/5`."
  @spec compare_and_set(key(), value(), value()) :: :ok | {:error, Error.t()}
  def compare_and_set(key, expected, new),
    do: do_compare_and_set(__MODULE__, Args.key!(key, "compare_and_set/3"), expected, new, nil)

  defp do_compare_and_set(server, key, expected, new, ttl) do
    if clustered?(server) do
      LiteStash.Cluster.compare_and_set(server, key, expected, new, ttl)
    else
      Call.write(server, :compare_and_set, [expected, new], fn target, ref, [expected, new] ->
        Native.compare_and_set(target, ref, key, expected, new, ttl)
      end)
    end
  end

  @doc """
  Stores `fun.(value)` under `key`, or `default` when the key is not stored
  (`fun` is not called then), as `Map.update/4` does; atomic against
  concurrent writers of the key: no update is lost.

  It is optimistic: it reads the key, calls `fun`, and writes the result
  with `compare_and_set/5` (`put_new/4` for an absent key); when another
  writer changed the key in between, it starts again. So each call costs
  at least one read and one write (a commit), `fun` may run more than once
  and must have no side effects, and many processes updating one key wait
  on each other's commits. For counters, `incr/3` is a single write. The
  value written has no expiry (the rule of "Expiry" under `expire/3`). Returns `:ok`
  or the first error other than a lost race.

  On the default store (see the module doc's "Usage"):

      iex> LiteStash.delete("tags")
      :ok
      iex> LiteStash.update("tags", ["new"], &["more" | &1])
      :ok
      iex> LiteStash.update("tags", ["new"], &["more" | &1])
      :ok
      iex> LiteStash.get("tags")
      {:ok, ["more", "new"]}
  """
  @spec update(server(), key(), value(), (value() -> value())) :: :ok | {:error, Error.t()}
  def update(server \\ __MODULE__, key, default, fun),
    do: LiteStash.Update.update(server, Args.key!(key), default, Args.fun!(fun, "update/4"))

  @doc """
  Calls `fun` with the value of `key` (`nil` when it is not stored), which
  returns `{value_to_return, new_value}`; stores `new_value` and returns
  `{:ok, value_to_return}`, as `Map.get_and_update/3` does (without its
  `:pop`). Atomic against concurrent writers in the same way as `update/4`,
  at the same cost: `fun` may run more than once.

  On the default store (see the module doc's "Usage"):

      iex> LiteStash.delete("n")
      :ok
      iex> LiteStash.get_and_update("n", fn n -> {n, (n || 0) + 1} end)
      {:ok, nil}
      iex> LiteStash.get_and_update("n", fn n -> {n, n + 1} end)
      {:ok, 1}
  """
  @spec get_and_update(server(), key(), (value() | nil -> {result, value()})) ::
          {:ok, result} | {:error, Error.t()}
        when result: term()
  def get_and_update(server \\ __MODULE__, key, fun),
    do:
      LiteStash.Update.get_and_update(server, Args.key!(key), Args.fun!(fun, "get_and_update/3"))

  ## Backup and maintenance

  @doc """
  Copies a consistent image of every shard into `dest_dir` (which must not
  exist or be empty) while the store keeps serving. Each shard file is
  copied in one snapshot (SQLite's `VACUUM INTO`); shards are copied one
  after another, so a write that spans shards may be in one copy and not
  another. The copy opens as a LiteStash data dir.

  A backup is complete or not there: it is built in a hidden dir beside
  `dest_dir` (`.NAME.litestash-backup-PID`, marked with a
  `LITESTASH_BACKUP_INCOMPLETE` file) and renamed to `dest_dir` once every
  shard is copied. A backup interrupted by a crash leaves only that hidden
  dir, which `start_link/1` and `mix litestash.check` refuse with
  `reason: :incomplete_backup`; delete it.
  """
  @spec backup(server(), Path.t()) :: :ok | {:error, Error.t()}
  def backup(server \\ __MODULE__, dest_dir) do
    dest = dest_dir |> Args.path!("backup/2's destination") |> Path.expand()

    Call.read(server, :backup, fn target ->
      start = System.monotonic_time()
      result = Native.backup(target, dest)

      if LiteStash.Telemetry.listening_now?() do
        LiteStash.Telemetry.backup_done(server, dest, System.monotonic_time() - start, result)
      end

      result
    end)
  end

  @doc """
  Per-shard figures: `{:ok, [%{shard: name, keys: count, file_bytes: n,
  wal_bytes: n, value_cache_bytes: n, page_cache_bytes: n, nowait_reads: n,
  nowait_deferred: n}]}`.
  `value_cache_bytes` is what the value cache holds for the shard's keys
  (bounded by `:cache_size` for all shards together), `page_cache_bytes`
  the SQLite page cache its writer and idle readers use (bounded by
  `:page_cache_size` together). `nowait_reads` counts the `get`s since
  the store started that missed the value cache and were answered from
  the file on the calling scheduler, `nowait_deferred` those that tried
  and went on to a dirty IO scheduler (see `:nowait_reads`). A damaged shard has
  `keys: {:error, %LiteStash.Error{}}`.
  """
  @spec info(server()) :: {:ok, [map()]} | {:error, Error.t()}
  def info(server \\ __MODULE__) do
    if clustered?(server),
      do: LiteStash.Cluster.info(server),
      else: Call.read(server, :info, &Native.info/1)
  end

  @doc """
  Gives the space of deleted and expired rows back to the file system: each
  shard's writer runs SQLite's incremental vacuum in steps of 256 pages
  between its other writes, so the store keeps serving. A file created
  without incremental vacuum (by an older writer) is converted first with
  one full `VACUUM`, which holds that shard's writes for its duration.
  Returns `:ok` when every shard is done. On a cluster member it compacts
  that member's own files (compaction changes no key, so it goes through
  no Raft log); call it on each member.
  """
  @spec compact(server()) :: :ok | {:error, Error.t()}
  def compact(server \\ __MODULE__) do
    Call.write(server, :compact, &Native.compact/2)
  end

  ## Helpers

  defp bang!(:ok), do: :ok
  defp bang!({:error, error}), do: raise(error)
end
