defmodule Mix.Tasks.Compile.LitestashNative do
  @moduledoc """
  Builds LiteStash's Rust NIF with cargo and installs it into `priv/native/`.

  Defined in `mix.exs` so that it exists before anything in `lib/` is
  compiled and needs no dependency. It rebuilds only when a file of the Cargo
  workspace changed (by content), installs by copy then rename (a loaded
  library is never overwritten in place), and links `priv/` into `_build`.
  """
  use Mix.Task.Compiler

  @library "litestash_nif"

  @impl Mix.Task.Compiler
  def run(_args) do
    root = Path.dirname(Mix.Project.project_file())
    installed = Path.join([root, "priv", "native", installed_name() <> ".so"])
    manifest = Path.join(Mix.Project.manifest_path(), "compile.litestash_native")
    fingerprint = fingerprint(root)

    status =
      if File.exists?(installed) and File.read(manifest) == {:ok, fingerprint} do
        :noop
      else
        build(root, installed)
        File.mkdir_p!(Path.dirname(manifest))
        File.write!(manifest, fingerprint)
        :ok
      end

    # On a clean checkout priv/ did not exist when Mix laid out _build.
    Mix.Project.build_structure()
    {status, []}
  end

  @impl Mix.Task.Compiler
  def manifests, do: [Path.join(Mix.Project.manifest_path(), "compile.litestash_native")]

  @impl Mix.Task.Compiler
  def clean, do: File.rm_rf!(Path.join(Mix.Project.manifest_path(), "compile.litestash_native"))

  defp sources(root) do
    ["Cargo.toml", "Cargo.lock"]
    |> Enum.map(&Path.join(root, &1))
    |> Enum.concat(Path.wildcard(Path.join(root, "native/*/Cargo.toml")))
    |> Enum.concat(Path.wildcard(Path.join(root, "native/*/src/**/*.rs")))
    |> Enum.filter(&File.regular?/1)
    |> Enum.sort()
  end

  defp fingerprint(root) do
    root
    |> sources()
    |> Enum.map(fn path -> [Path.relative_to(path, root), 0, File.read!(path)] end)
    |> :erlang.md5()
    |> Base.encode16(case: :lower)
  end

  defp cargo do
    System.find_executable("cargo") ||
      Enum.find([Path.expand("~/.cargo/bin/cargo")], &File.exists?/1) ||
      Mix.raise("""
      LiteStash needs cargo (Rust 1.91 or later) to build its NIF, and cargo is not on PATH.
      Install Rust with rustup (https://rustup.rs) or your system's package manager, then run mix compile again.
      """)
  end

  # The :test build carries the NIFs that poison locks and inject panics
  # (cargo feature test-hooks), under a name of its own so that it never
  # stands in for the product's library; LiteStash.Native loads the one of
  # its environment.
  defp test_build?, do: Mix.env() == :test
  defp installed_name, do: if(test_build?(), do: @library <> "_test", else: @library)

  defp build(root, installed) do
    target_dir = Path.join(root, "target")
    features = if test_build?(), do: ~w(--features test-hooks), else: []

    args = ~w(build --release --locked -p litestash_nif --target-dir) ++ [target_dir] ++ features

    Mix.shell().info("Compiling LiteStash NIF (cargo #{Enum.join(args, " ")})")

    case System.cmd(cargo(), args,
           cd: root,
           into: IO.stream(:stdio, :line),
           stderr_to_stdout: true
         ) do
      {_, 0} -> :ok
      {_, status} -> Mix.raise("cargo build of the LiteStash NIF failed (exit status #{status})")
    end

    built =
      Enum.find(
        Enum.map(
          ~w(.so .dylib .dll),
          &Path.join([target_dir, "release", "lib" <> @library <> &1])
        ) ++
          [Path.join([target_dir, "release", @library <> ".dll"])],
        &File.exists?/1
      ) || Mix.raise("cargo finished but no #{@library} library is in #{target_dir}/release")

    File.mkdir_p!(Path.dirname(installed))
    staging = installed <> ".#{System.unique_integer([:positive])}.tmp"
    File.cp!(built, staging)
    File.rename!(staging, installed)
  end
end

defmodule LiteStash.MixProject do
  use Mix.Project

  @version "0.1.0"
  @source_url "https://github.com/nortosem/LiteStash"

  def project do
    [
      app: :litestash,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:litestash_native] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      # Strict here; lenient where the package is a dependency (compiled in
      # :prod), so that a new Elixir's deprecation warning cannot break a
      # user's build.
      elixirc_options: [warnings_as_errors: Mix.env() != :prod],
      deps: [],
      # LiteStash.Telemetry calls :telemetry only when the host application
      # has it; LiteStash does not depend on it.
      xref: [exclude: [:telemetry]],
      description: description(),
      package: package(),
      source_url: @source_url,
      docs: [main: "LiteStash", extras: ["README.md"]]
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  defp description do
    "Embedded key-value store for Elixir: 16 SQLite shard files with a lock each, " <>
      "group commit, BLAKE2b-512 routing and MessagePack values, through a Rust NIF. " <>
      "Files follow the LiteStash data contract, readable from any language."
  end

  defp package do
    [
      name: "litestash",
      licenses: ["Apache-2.0"],
      links: %{"GitHub" => @source_url},
      files: ~w(lib native Cargo.toml Cargo.lock mix.exs README.md LICENSE .formatter.exs),
      exclude_patterns: [~r{native/.*/target}]
    ]
  end
end
