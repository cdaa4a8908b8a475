defmodule Mix.Tasks.Litestash.Stats do
  @shortdoc "Prints the rows and file sizes of a LiteStash data dir"
  @moduledoc """
  Prints a table of each shard file's rows, keys with an expiry, and file
  and WAL sizes: the same figures as `LiteStash.info/1`, for a data dir that
  no VM has open. On one that a running VM has open (found from the locks
  SQLite holds) it says so, and prints what it reads then.

      mix litestash.stats DATA_DIR

  Exits with status 1 when the directory is not a LiteStash data dir.
  `--help` prints this usage.
  """
  use Mix.Task

  @usage "usage: mix litestash.stats DATA_DIR"

  @impl Mix.Task
  def run(args) do
    {opts, dirs} = OptionParser.parse!(args, strict: [help: :boolean])

    case {opts[:help], dirs} do
      {true, _} -> Mix.shell().info(@moduledoc)
      {_, [dir]} -> stats(Path.expand(dir))
      _ -> Mix.raise(@usage)
    end
  end

  defp stats(dir) do
    Mix.Task.run("compile")

    case LiteStash.Native.inspect_dir(dir, false, 0) do
      {:ok, reports} ->
        Mix.LiteStash.warn_in_use(dir, reports)
        Mix.shell().info(row(["shard", "rows", "expiring", "file bytes", "wal bytes"]))

        for r <- reports do
          Mix.shell().info(row([r.shard, r.rows, r.expiring, r.file_bytes, r.wal_bytes]))
        end

        total = fn field -> reports |> Enum.map(&Map.fetch!(&1, field)) |> Enum.sum() end

        Mix.shell().info(
          row(["total", total.(:rows), total.(:expiring), total.(:file_bytes), total.(:wal_bytes)])
        )

        for r <- reports, p <- r.problems, do: Mix.shell().error("#{r.shard}: #{p}")

      {:error, error} ->
        Mix.shell().error(error.message)
        exit({:shutdown, 1})
    end
  end

  defp row([name | figures]) do
    String.pad_trailing(to_string(name), 12) <>
      Enum.map_join(figures, "", &String.pad_leading(to_string(&1), 14))
  end
end
