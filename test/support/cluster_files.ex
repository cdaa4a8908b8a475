defmodule LiteStash.Test.ClusterFiles do
  @moduledoc false
  # What the cluster tests check on a member's real shard files, read by
  # programs that know nothing of Ra: a digest of each shard (Python's
  # sqlite3 over every row: key, value bytes, timestamp, microsecond, and
  # the expiry rows), LiteStash's own integrity check (inspect_dir), and
  # the interop verifier test/interop/contract.py against the client-side
  # log of acknowledged writes.

  alias LiteStash.Test.TaggedJSON

  @root Path.expand("../..", __DIR__)
  @contract_py Path.join(@root, "test/interop/contract.py")
  @contract_dir Path.join(@root, "test/fixtures/contract")
  @default_python Path.join(@root, "_build/interop-venv/bin/python")

  # One line per shard file: "<shard> <rows> <sha256 of its sorted rows>".
  @digest """
  import hashlib, pathlib, sqlite3, sys
  for shard_dir in sorted(pathlib.Path(sys.argv[1]).iterdir()):
      path = shard_dir / f"{shard_dir.name}.db"
      if not path.is_file():
          continue
      conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
      conn.execute("BEGIN")
      names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
      rows = []
      for table in sorted(n for n in names if n.startswith("tables_")):
          rows += [("row", k, v.hex(), ts, us) for k, v, ts, us in
                   conn.execute(f'SELECT key, value, timestamp, microsecond FROM "{table}"')]
      if "litestash_expiry" in names:
          rows += [("exp", h, at) for h, at in conn.execute("SELECT key_hash, expires_at FROM litestash_expiry")]
      conn.close()
      digest = hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()
      print(shard_dir.name, sum(1 for r in rows if r[0] == "row"), digest)
  """

  @doc "The Python with msgpack that the interop tests use (see interop_test.exs)."
  @spec python!() :: String.t()
  def python! do
    python = System.get_env("LITESTASH_INTEROP_PYTHON") || @default_python

    unless File.exists?(python) do
      raise "the cluster tests read the shard files with #{python}: run `make interop-venv` " <>
              "(or set LITESTASH_INTEROP_PYTHON)"
    end

    python
  end

  @doc "Each shard's `{rows, digest}`, in shard order (0..15)."
  @spec digests(Path.t()) :: [{non_neg_integer(), String.t()}]
  def digests(data_dir) do
    {out, 0} = System.cmd(python!(), ["-c", @digest, data_dir], stderr_to_stdout: true)

    by_name =
      for line <- String.split(out, "\n", trim: true), into: %{} do
        [shard, rows, digest] = String.split(line, " ")
        {shard, {String.to_integer(rows), digest}}
      end

    {:ok, reports} = LiteStash.Native.inspect_dir(data_dir, false, 0)

    for report <- reports,
        do: Map.fetch!(by_name, report.path |> Path.dirname() |> Path.basename())
  end

  @doc "The problems LiteStash's own check finds in the data dir's files (integrity_check on)."
  @spec problems(Path.t()) :: [String.t()]
  def problems(data_dir) do
    {:ok, reports} = LiteStash.Native.inspect_dir(data_dir, true, 100)
    16 = length(reports)
    for report <- reports, problem <- report.problems, do: "#{report.path}: #{problem}"
  end

  @doc """
  Runs contract.py verify on the data dir with `expected` (`{key, value}`
  pairs that must be stored with those values; other keys may be).
  Returns `{exit_status, output}`.
  """
  @spec verify(Path.t(), [{String.t(), term()}], Path.t()) :: {non_neg_integer(), String.t()}
  def verify(data_dir, expected, scratch_dir) do
    path = Path.join(scratch_dir, "expected-#{System.unique_integer([:positive])}.json")
    File.write!(path, TaggedJSON.encode!(expected))

    {out, status} =
      System.cmd(python!(), [@contract_py, "verify", data_dir, path],
        env: [{"LITESTASH_CONTRACT_DIR", @contract_dir}],
        stderr_to_stdout: true
      )

    {status, out |> String.split("\n") |> Enum.take(-20) |> Enum.join("\n")}
  end
end
