defmodule Mix.LiteStash do
  @moduledoc false
  # What `mix litestash.check` and `mix litestash.stats` print alike.

  @doc "Says so when a running VM has the data dir open."
  @spec warn_in_use(String.t(), [map()]) :: :ok
  def warn_in_use(dir, reports) do
    case Enum.filter(reports, & &1.in_use) do
      [] ->
        :ok

      open ->
        Mix.shell().info(
          "note: #{dir} is open in a running VM (#{length(open)} of 16 shard files are in use): " <>
            "these figures are what was read just now and may already have changed"
        )
    end
  end

  @doc "`1 row`, `2 rows`."
  @spec rows(non_neg_integer()) :: String.t()
  def rows(1), do: "1 row"
  def rows(n), do: "#{n} rows"
end
