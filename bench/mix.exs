defmodule LiteStash.Bench.MixProject do
  use Mix.Project

  # LiteStash's benchmark, a project of its own so that nothing of it
  # compiles into the :litestash application or ships in its package. Run it
  # from the repository's root with `make bench`, or here with
  # `MIX_ENV=prod mix litestash.bench`.
  def project do
    [
      app: :litestash_bench,
      version: "0.1.0",
      elixir: "~> 1.14",
      elixirc_options: [warnings_as_errors: true],
      deps: [{:litestash, path: ".."}]
    ]
  end

  # Mnesia is loaded, not started: its adapter starts and stops it around
  # each store it opens.
  def application do
    [extra_applications: [:logger], included_applications: [:mnesia]]
  end
end
