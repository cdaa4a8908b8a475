defmodule LiteStash.DocHelper do
  @moduledoc false
  # Fresh directories for the doctests.

  @spec tmp_dir() :: String.t()
  def tmp_dir do
    dir = Path.join(System.tmp_dir!(), "litestash-doc-#{System.unique_integer([:positive])}")
    File.rm_rf!(dir)
    dir
  end
end
