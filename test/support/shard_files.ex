defmodule LiteStash.Test.ShardFiles do
  @moduledoc false
  # The files of a data dir as the reliability tests see them from outside:
  # snapshots that prove a dir was left untouched, and ways to damage a
  # file. (Which shard a key lands in is in test/reliability/shard_routing.exs.)

  @shards ~w(tables_03 tables_47 tables_89hu tables_ab tables_cd tables_ef tables_gh tables_ij
             tables_kl tables_mn tables_op tables_qr tables_st tables_uv tables_wx tables_yz)

  @doc "The 16 shard names, in the contract's order."
  @spec shards() :: [String.t()]
  def shards, do: @shards

  @doc "The file of `shard` in `dir`."
  @spec path(String.t(), String.t()) :: String.t()
  def path(dir, shard), do: Path.join([dir, shard, shard <> ".db"])

  @doc """
  Every path under `dir` with each file's bytes and mtime. Left out: a dir's
  own mtime (reading a WAL file creates and removes `-wal`/`-shm` beside it)
  and what is inside a `-shm` (the WAL index, shared memory every reader
  writes its read marks to; it holds no data).
  """
  @spec snapshot(String.t()) :: %{String.t() => term()}
  def snapshot(dir) do
    [dir | Path.wildcard(Path.join(dir, "**"), match_dot: true)]
    |> Map.new(fn path ->
      stat = File.stat!(path, time: :posix)

      cond do
        stat.type == :directory -> {path, :directory}
        String.ends_with?(path, "-shm") -> {path, :wal_index}
        true -> {path, {File.read!(path), stat.mtime}}
      end
    end)
  end

  @doc "What differs between two snapshots, one line per path; \"\" if nothing."
  @spec changes(map(), map()) :: String.t()
  def changes(before, later) do
    created = for {p, _} <- later, not Map.has_key?(before, p), do: "created #{p}"
    removed = for {p, _} <- before, not Map.has_key?(later, p), do: "removed #{p}"

    modified = for {p, v} <- later, Map.has_key?(before, p), before[p] != v, do: "modified #{p}"

    Enum.join(created ++ removed ++ modified, "\n")
  end

  @doc "Overwrites `len` bytes at `offset` with a pattern that is no valid SQLite header or page."
  @spec garble!(String.t(), non_neg_integer(), pos_integer()) :: :ok
  def garble!(path, offset, len) do
    bytes = File.read!(path)
    true = byte_size(bytes) >= offset + len
    garbage = :binary.copy(<<0xEE, 0x5A, 0xA5, 0x77>>, div(len, 4) + 1) |> binary_part(0, len)
    <<head::binary-size(offset), _::binary-size(len), tail::binary>> = bytes
    File.write!(path, [head, garbage, tail])
  end

  @doc """
  Writes `application_id` and `user_version` into the header of a shard file
  that was closed cleanly (no -wal): offsets 68 and 60 of the SQLite header,
  as `PRAGMA application_id = ...` would.
  """
  @spec put_header!(String.t(), integer(), integer()) :: :ok
  def put_header!(path, application_id, user_version) do
    false = File.exists?(path <> "-wal")

    <<head::binary-size(60), _::binary-size(4), mid::binary-size(4), _::binary-size(4),
      tail::binary>> = File.read!(path)

    File.write!(path, [
      head,
      <<user_version::signed-32>>,
      mid,
      <<application_id::signed-32>>,
      tail
    ])
  end
end
