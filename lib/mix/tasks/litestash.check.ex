defmodule Mix.Tasks.Litestash.Check do
  @shortdoc "Checks a LiteStash data dir against the data contract"
  @moduledoc """
  Checks every shard file of a data dir against the LiteStash data contract:
  `application_id`, `user_version`, WAL mode, the 4 tables with their 5
  columns and unique key index, `PRAGMA integrity_check`, and a sample of
  rows per table re-hashed, re-routed and decoded.

      mix litestash.check DATA_DIR [--sample N]

  Prints a line per shard and exits with status 1 when anything is wrong.
  It is meant for a data dir that no VM has open; on one that a running VM
  has open (found from the locks SQLite holds) it says so, and checks what
  it reads then, which may change under it.

  ## Options

    * `--sample N` - rows per table to re-check. Default 100.
    * `--help` - prints this usage.
  """
  use Mix.Task

  @usage "usage: mix litestash.check DATA_DIR [--sample N]"

  @impl Mix.Task
  def run(args) do
    {opts, dirs} = OptionParser.parse!(args, strict: [sample: :integer, help: :boolean])

    dir =
      case {opts[:help], dirs} do
        {true, _} -> nil
        {_, [dir]} -> Path.expand(dir)
        _ -> Mix.raise(@usage)
      end

    if dir, do: check(dir, opts), else: Mix.shell().info(@moduledoc)
  end

  defp check(dir, opts) do
    Mix.Task.run("compile")

    case LiteStash.Native.inspect_dir(dir, true, Keyword.get(opts, :sample, 100)) do
      {:ok, reports} ->
        bad = Enum.reject(reports, &(&1.problems == []))
        Mix.LiteStash.warn_in_use(dir, reports)

        for r <- reports do
          status = if r.problems == [], do: "ok  ", else: "FAIL"
          Mix.shell().info("#{status} #{r.shard}: #{Mix.LiteStash.rows(r.rows)}")
          for p <- r.problems, do: Mix.shell().info("       #{p}")
        end

        if bad == [] do
          Mix.shell().info("#{dir}: all 16 shard files pass the contract checks")
        else
          Mix.shell().error("#{dir}: #{length(bad)} of 16 shard files have problems")
          exit({:shutdown, 1})
        end

      {:error, error} ->
        Mix.shell().error(error.message)
        exit({:shutdown, 1})
    end
  end
end
