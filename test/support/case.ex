defmodule LiteStash.Test.Helpers do
  @moduledoc false
  # Helpers shared by the tests.

  @contract Path.expand("../fixtures/contract", __DIR__)

  @doc "The project's byte-identical copy of the contract's vectors and fixture."
  @spec contract_path(String.t()) :: String.t()
  def contract_path(name), do: Path.join(@contract, name)

  @doc "Copies fixture_v1/ into `dir` (writable) and returns `dir`."
  @spec copy_fixture!(String.t()) :: String.t()
  def copy_fixture!(dir) do
    File.mkdir_p!(dir)
    File.cp_r!(contract_path("fixture_v1"), dir)

    for path <- Path.wildcard(Path.join(dir, "**")), do: File.chmod!(path, 0o755)
    dir
  end

  @doc "The `{key, value}` list of fixture_v1.exs."
  @spec fixture_entries() :: [{String.t(), term()}]
  def fixture_entries do
    {entries, _} = Code.eval_file(contract_path("fixture_v1.exs"))
    entries
  end

  @doc "Starts a store on `dir` (or `:memory`) under a unique name, stopped when the test ends."
  @spec start_store!(String.t() | :memory, keyword()) :: atom()
  def start_store!(dir, opts \\ []) do
    name = :"store_#{System.unique_integer([:positive])}"
    {:ok, _pid} = LiteStash.start_link([data_dir: dir, name: name] ++ opts)
    ExUnit.Callbacks.on_exit(fn -> stop_quietly(name) end)
    name
  end

  @doc "Polls `fun` every 50 ms until it returns true; flunks after `timeout` ms."
  @spec wait_until((() -> boolean()), integer()) :: :ok
  def wait_until(fun, timeout) do
    cond do
      fun.() -> :ok
      timeout <= 0 -> ExUnit.Assertions.flunk("condition not met in time")
      true -> Process.sleep(50) && wait_until(fun, timeout - 50)
    end
  end

  @doc "Stops `name` if it still runs (it may be exiting with its test)."
  @spec stop_quietly(atom()) :: :ok
  def stop_quietly(name) do
    LiteStash.stop(name)
  catch
    :exit, _ -> :ok
  end
end
