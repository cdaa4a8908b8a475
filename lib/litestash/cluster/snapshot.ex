defmodule LiteStash.Cluster.Snapshot do
  @moduledoc false
  # Ra snapshots of a shard (a `ra_snapshot`; see LiteStash.Cluster for why
  # the behaviour is not declared). A snapshot directory holds `meta.etf`
  # (Ra's meta: index, term, cluster, machine version; and the machine
  # state) and `shard.db`, a consistent copy of the shard file, taken after
  # the entry at the snapshot's index was applied (so its applied index is
  # at or past it). Ra ships the directory to a member that lacks the log
  # entries it needs, in chunks, and truncates its log below the snapshot.
  #
  # A member that recovers a snapshot installs its copy only when its own
  # file is behind the snapshot's index: the entries between its file and
  # the copy's are in the log after the snapshot, and the core skips the
  # ones already applied, so either file leads to the same state.

  alias LiteStash.Cluster.Replica

  @meta "meta.etf"
  @file_name "shard.db"

  @doc false
  def prepare(_meta, %{name: name, shard: shard} = state),
    do: {Replica.store!(name), shard, state}

  @doc false
  def write(dir, meta, {store, shard, state}) do
    dest = Path.join(dir, @file_name)

    with :ok <- Replica.snapshot(store, shard, dest),
         :ok <- sync(dest),
         {:ok, crc, size} <- checksum(dest) do
      write_meta(dir, %{meta: meta, state: state, crc: crc, size: size})
    end
  end

  @doc false
  def begin_read(dir) do
    with {:ok, info} <- read_info(dir),
         {:ok, fd} <- :file.open(Path.join(dir, @file_name), [:read, :binary, :raw]) do
      # The follower needs the machine state and the copy's checksum before
      # the first chunk: they travel in the meta, which Ra sends with it.
      {:ok, Map.put(info.meta, :litestash, Map.delete(info, :meta)), {fd, 0, info.size}}
    end
  end

  @doc false
  def read_chunk({fd, pos, size}, chunk_size, _dir) do
    case :file.pread(fd, pos, chunk_size) do
      {:ok, data} when pos + byte_size(data) >= size ->
        :file.close(fd)
        {:ok, data, :last}

      {:ok, data} ->
        {:ok, data, {:next, {fd, pos + byte_size(data), size}}}

      :eof ->
        :file.close(fd)
        {:ok, <<>>, :last}

      {:error, _} = error ->
        :file.close(fd)
        error
    end
  end

  @doc false
  def begin_accept(dir, meta) do
    {extra, meta} = Map.pop(meta, :litestash)

    with :ok <- write_meta(dir, Map.put(extra, :meta, meta)),
         {:ok, fd} <- :file.open(Path.join(dir, @file_name <> ".part"), [:write, :binary, :raw]) do
      {:ok, {fd, dir, extra}}
    end
  end

  @doc false
  def accept_chunk(chunk, {fd, _dir, _extra} = accept) do
    with :ok <- :file.write(fd, chunk), do: {:ok, accept}
  end

  @doc false
  def complete_accept(chunk, {fd, dir, extra}) do
    part = Path.join(dir, @file_name <> ".part")

    with :ok <- :file.write(fd, chunk),
         :ok <- :file.sync(fd),
         :ok <- :file.close(fd),
         {:ok, crc, size} <- checksum(part),
         :ok <- same(extra, crc, size) do
      :file.rename(part, Path.join(dir, @file_name))
    end
  end

  @doc false
  def recover(dir) do
    with {:ok, %{meta: meta, state: %{name: name, shard: shard} = state}} <- read_info(dir),
         store = Replica.store!(name),
         {:ok, applied} <- Replica.applied(store, shard),
         :ok <- maybe_install(store, shard, applied, meta.index, dir) do
      {:ok, meta, state}
    end
  end

  defp maybe_install(store, shard, applied, index, dir) when applied < index,
    do: Replica.install(store, shard, Path.join(dir, @file_name))

  defp maybe_install(_store, _shard, _applied, _index, _dir), do: :ok

  @doc false
  def validate(dir) do
    with {:ok, info} <- read_info(dir),
         {:ok, crc, size} <- checksum(Path.join(dir, @file_name)) do
      same(info, crc, size)
    end
  end

  @doc false
  def read_meta(dir) do
    with {:ok, %{meta: meta}} <- read_info(dir), do: {:ok, meta}
  end

  defp read_info(dir) do
    case File.read(Path.join(dir, @meta)) do
      {:ok, binary} -> {:ok, :erlang.binary_to_term(binary)}
      {:error, _} = error -> error
    end
  rescue
    ArgumentError -> {:error, :invalid_format}
  end

  defp write_meta(dir, info) do
    path = Path.join(dir, @meta)
    part = path <> ".part"

    with :ok <- File.write(part, :erlang.term_to_binary(info)),
         :ok <- sync(part) do
      :file.rename(part, path)
    end
  end

  defp same(%{crc: crc, size: size}, crc, size), do: :ok
  defp same(_info, _crc, _size), do: {:error, :checksum_error}

  defp sync(path) do
    with {:ok, fd} <- :file.open(path, [:read, :write, :raw]) do
      result = :file.sync(fd)
      :file.close(fd)
      result
    end
  end

  defp checksum(path) do
    case File.open(path, [:read, :binary, :raw], &crc(&1, 0, 0)) do
      {:ok, result} -> result
      {:error, _} = error -> error
    end
  end

  defp crc(fd, crc, size) do
    case :file.read(fd, 1_048_576) do
      {:ok, data} -> crc(fd, :erlang.crc32(crc, data), size + byte_size(data))
      :eof -> {:ok, crc, size}
      {:error, _} = error -> error
    end
  end
end
