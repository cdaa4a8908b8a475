defmodule LiteStash.Bench.Raw do
  @moduledoc """
  Runs the raw SQLite baseline of the benchmark, the Rust program
  `bench/raw_baseline` (rusqlite on the same 16-file layout, no BEAM; a
  Cargo workspace of its own, so that the hex package's workspace does not
  name it), and reads its results.

  The program prints one line per workload:

      raw W1 n=100000 ops_per_sec=34012.5 p50_us=24.1 p99_us=71.9
  """

  @typedoc "The results by workload name (`\"W1\"`, `\"W1x1000\"`, `\"W2\"`)."
  @type results :: %{String.t() => LiteStash.Bench.Workloads.result()}

  @doc """
  Builds the program with `cargo build --release --locked --manifest-path
  bench/raw_baseline/Cargo.toml`, into the repository's `target/` (before any timing
  starts), echoing cargo's output on standard error. Raises `Mix.Error` when cargo or the
  workspace is missing or the build fails.
  """
  @spec build!() :: :ok
  def build! do
    root = root!()

    case System.cmd(
           cargo!(),
           ~w(build --release --locked --manifest-path bench/raw_baseline/Cargo.toml --target-dir) ++
             [target_dir(root)],
           cd: root,
           # Standard error, with the progress: standard output is the report.
           into: IO.stream(:standard_error, :line),
           stderr_to_stdout: true
         ) do
      {_, 0} -> :ok
      {_, status} -> Mix.raise("cargo build of the raw baseline failed (exit status #{status})")
    end
  end

  @doc """
  Runs the program built by `build!/0` with `--n n` and returns its results.
  With `workload` (`"w1"`, `"w2"`, `"w1x1000"` or `"w1x4"`) only that
  workload runs, on `dir`: a `"w2"` reads what a `"w1"` with the same `n`
  wrote to the same `dir`. `synchronous` (`:normal` or `:full`) sets the
  connections' `PRAGMA synchronous`; by default LiteStash's default.
  Raises `Mix.Error` when it fails.
  """
  @spec run!(pos_integer(), String.t(), Path.t() | nil, :normal | :full | nil) :: results()
  def run!(n, workload \\ "all", dir \\ nil, synchronous \\ nil) do
    dir_args = if dir, do: ["--dir", dir], else: []
    sync_args = if synchronous, do: ["--synchronous", Atom.to_string(synchronous)], else: []
    args = ["--n", Integer.to_string(n), "--workload", workload | dir_args ++ sync_args]
    program = Path.join([target_dir(root!()), "release", "raw_baseline"])

    unless File.exists?(program),
      do:
        Mix.raise(
          "the raw baseline is not built (#{program}); LiteStash.Bench.Raw.build!/0 builds it"
        )

    case System.cmd(program, args, stderr_to_stdout: true) do
      {output, 0} -> parse(output)
      {output, status} -> Mix.raise("the raw baseline failed (exit status #{status}):\n#{output}")
    end
  end

  @doc """
  The results in the program's output; other lines are ignored.

      iex> LiteStash.Bench.Raw.parse("raw W1 n=10 ops_per_sec=2.5 p50_us=1.0 p99_us=3.5\\nraw W1x1000 n=10 ops_per_sec=9.0\\n")
      %{
        "W1" => %{n: 10, ops_per_sec: 2.5, p50_us: 1.0, p99_us: 3.5},
        "W1x1000" => %{n: 10, ops_per_sec: 9.0, p50_us: nil, p99_us: nil}
      }
  """
  @spec parse(String.t()) :: results()
  def parse(output) do
    for line <- String.split(output, "\n"),
        ["raw", name | fields] <- [String.split(line)],
        into: %{} do
      values = Map.new(fields, &field/1)

      {name,
       %{
         n: values |> Map.get("n", "0") |> String.to_integer(),
         ops_per_sec: number(values["ops_per_sec"]),
         p50_us: number(values["p50_us"]),
         p99_us: number(values["p99_us"])
       }}
    end
  end

  defp field(text) do
    case String.split(text, "=", parts: 2) do
      [key, value] -> {key, value}
      [key] -> {key, nil}
    end
  end

  defp number(nil), do: nil

  defp number(text) do
    case Float.parse(text) do
      {value, ""} -> value
      _ -> nil
    end
  end

  # The Cargo workspace: the repository's root, the parent of this project.
  defp root! do
    root = Path.expand("..", Path.dirname(Mix.Project.project_file()))

    if File.regular?(Path.join(root, "Cargo.toml")) and
         File.regular?(Path.join([root, "bench", "raw_baseline", "Cargo.toml"])) do
      root
    else
      Mix.raise(
        "the raw baseline is built from the Cargo workspace of LiteStash's repository, " <>
          "and #{root} is not one (run with --no-raw)"
      )
    end
  end

  defp target_dir(root), do: Path.join(root, "target")

  defp cargo! do
    System.find_executable("cargo") ||
      Enum.find([Path.expand("~/.cargo/bin/cargo")], &File.exists?/1) ||
      Mix.raise("the raw baseline needs cargo on PATH (or run with --no-raw)")
  end
end
