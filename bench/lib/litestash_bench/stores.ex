defmodule LiteStash.Bench.Store do
  @moduledoc """
  The stores `mix litestash.bench` compares, behind one interface.

  Each adapter opens a fresh store in a directory of its own, writes with
  the call its users would make to have a write acknowledged, and reads
  with its fastest point read:

    * `LiteStash` - `LiteStash.set/3` (returns once committed) and
      `LiteStash.get/2`.
    * `LS queued` - the same with `inline_commits: 0`: every write goes
      through its shard's writer thread, even when nothing else is queued,
      which shows what committing a lone write inline saves.
    * `ETS` - a `:public` set with read and write concurrency: the in-memory
      upper bound, nothing reaches the disk.
    * `DETS` - `:dets.insert/2` and `:dets.lookup/2` on a `:set` file. DETS
      writes through its own process and flushes on its `auto_save` timer
      (3 minutes), not per write.
    * `Mnesia` - a `disc_copies` table written in `:mnesia.transaction/1`
      and read with `:mnesia.dirty_read/2`. A transaction is logged to
      Mnesia's disk log without an fsync or flush per write.
  """

  @typedoc "A store's open handle, as its adapter made it."
  @type handle :: term()

  @doc "The store's name in the report."
  @callback label() :: String.t()

  @doc """
  Opens a fresh store in the empty directory `dir`. `opts` may hold
  `synchronous: :normal | :full` (LiteStash only).
  """
  @callback open(dir :: Path.t(), opts :: keyword()) :: handle()

  @doc "Writes `value` under `key`; returns once the store acknowledges it."
  @callback put(handle(), key :: String.t(), value :: term()) :: :ok

  @doc "Reads `key`, which must be stored; raises when it is not."
  @callback fetch(handle(), key :: String.t()) :: term()

  @doc "Closes the store; its directory is removed by the caller."
  @callback close(handle()) :: :ok

  @doc "The adapters, in the order the report lists them."
  @spec all() :: [module()]
  def all,
    do: [
      LiteStash.Bench.Store.LiteStash,
      LiteStash.Bench.Store.LiteStashQueued,
      LiteStash.Bench.Store.ETS,
      LiteStash.Bench.Store.DETS,
      LiteStash.Bench.Store.Mnesia
    ]
end

defmodule LiteStash.Bench.Store.LiteStash do
  @moduledoc "The `LiteStash.Bench.Store` adapter of LiteStash itself."
  @behaviour LiteStash.Bench.Store

  @name :litestash_bench

  @impl true
  def label, do: "LiteStash"

  @impl true
  def open(dir, opts), do: start(dir, @name, opts)

  @doc false
  @spec start(Path.t(), atom(), keyword()) :: atom()
  def start(dir, name, opts) do
    {:ok, pid} =
      LiteStash.start_link(
        [data_dir: dir, name: name, synchronous: Keyword.get(opts, :synchronous, :normal)] ++
          Keyword.take(opts, [:inline_commits, :cache_size])
      )

    # The bench process must outlive a store that is stopped on purpose.
    Process.unlink(pid)
    name
  end

  @impl true
  def put(name, key, value) do
    :ok = LiteStash.set(name, key, value)
  end

  @impl true
  def fetch(name, key) do
    {:ok, value} = LiteStash.get(name, key)
    value
  end

  @impl true
  def close(name), do: LiteStash.stop(name)
end

defmodule LiteStash.Bench.Store.LiteStashQueued do
  @moduledoc """
  The `LiteStash.Bench.Store` adapter of LiteStash with `inline_commits: 0`:
  every write is queued to its shard's writer thread.
  """
  @behaviour LiteStash.Bench.Store

  alias LiteStash.Bench.Store.LiteStash, as: Adapter

  @impl true
  def label, do: "LS queued"

  @impl true
  def open(dir, opts),
    do: Adapter.start(dir, :litestash_bench_queued, [inline_commits: 0] ++ opts)

  @impl true
  defdelegate put(name, key, value), to: Adapter

  @impl true
  defdelegate fetch(name, key), to: Adapter

  @impl true
  defdelegate close(name), to: Adapter
end

defmodule LiteStash.Bench.Store.ETS do
  @moduledoc "The `LiteStash.Bench.Store` adapter of an in-memory ETS set."
  @behaviour LiteStash.Bench.Store

  @impl true
  def label, do: "ETS"

  @impl true
  def open(_dir, _opts) do
    :ets.new(:litestash_bench_ets, [
      :set,
      :public,
      read_concurrency: true,
      write_concurrency: true
    ])
  end

  @impl true
  def put(table, key, value) do
    true = :ets.insert(table, {key, value})
    :ok
  end

  @impl true
  def fetch(table, key) do
    [{_, value}] = :ets.lookup(table, key)
    value
  end

  @impl true
  def close(table) do
    :ets.delete(table)
    :ok
  end
end

defmodule LiteStash.Bench.Store.DETS do
  @moduledoc "The `LiteStash.Bench.Store` adapter of a DETS set file."
  @behaviour LiteStash.Bench.Store

  @impl true
  def label, do: "DETS"

  @impl true
  def open(dir, _opts) do
    file = dir |> Path.join("bench.dets") |> String.to_charlist()
    {:ok, table} = :dets.open_file(:litestash_bench_dets, file: file, type: :set)
    table
  end

  @impl true
  def put(table, key, value), do: :ok = :dets.insert(table, {key, value})

  @impl true
  def fetch(table, key) do
    [{_, value}] = :dets.lookup(table, key)
    value
  end

  @impl true
  def close(table), do: :dets.close(table)
end

defmodule LiteStash.Bench.Store.Mnesia do
  @moduledoc """
  The `LiteStash.Bench.Store` adapter of a Mnesia `disc_copies` table on
  this node, with its schema in the given directory.
  """
  @behaviour LiteStash.Bench.Store

  @table :litestash_bench

  @impl true
  def label, do: "Mnesia"

  @impl true
  def open(dir, _opts) do
    :stopped = :mnesia.stop()
    # Loaded first: loading would overwrite what is set before it.
    _ = Application.load(:mnesia)
    :ok = Application.put_env(:mnesia, :dir, String.to_charlist(dir))
    # Dump the transaction log less often than the default 1,000 writes, so
    # that Mnesia does not spend the benchmark warning that it is overloaded.
    :ok = Application.put_env(:mnesia, :dump_log_write_threshold, 50_000)
    :ok = :mnesia.create_schema([node()])
    :ok = :mnesia.start()

    {:atomic, :ok} =
      :mnesia.create_table(@table, attributes: [:key, :value], disc_copies: [node()])

    :ok = :mnesia.wait_for_tables([@table], 60_000)
    @table
  end

  @impl true
  def put(table, key, value) do
    {:atomic, :ok} = :mnesia.transaction(fn -> :mnesia.write({table, key, value}) end)
    :ok
  end

  @impl true
  def fetch(table, key) do
    [{_, _, value}] = :mnesia.dirty_read(table, key)
    value
  end

  @impl true
  def close(_table) do
    :stopped = :mnesia.stop()
    :ok = :mnesia.delete_schema([node()])
  end
end
