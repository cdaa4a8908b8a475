defmodule LiteStash.Test.DocExamples do
  @moduledoc false
  # Runs the examples of the README and of `h LiteStash` as a user pastes
  # them into `iex -S mix`: every ```elixir block in order, one expression
  # at a time, in one binding,
  # with the cwd a fresh dir (the examples use "./data") and System.tmp_dir!
  # inside it (the backup example writes there). A block whose first line
  # names a file (`# mix.exs`, `# test/my_app/cart_test.exs`) shows a file's
  # content, not something to paste, and is skipped.

  @doc "The pasteable ```elixir blocks of a Markdown text."
  @spec blocks(String.t()) :: [String.t()]
  def blocks(markdown) do
    ~r/^[ \t]*```elixir\n(.*?)^[ \t]*```$/ms
    |> Regex.scan(markdown, capture: :all_but_first)
    |> Enum.map(fn [code] -> code end)
    |> Enum.reject(&Regex.match?(~r/\A# [\w.\/-]+\.exs?\n/, &1))
  end

  @doc """
  Evaluates `blocks` in order in `dir` (as cwd and TMPDIR), in one binding,
  then stops the stores they left running under `stop`.
  """
  @spec run!([String.t()], String.t(), [atom()]) :: :ok
  def run!(blocks, dir, stop) do
    tmp = System.get_env("TMPDIR")
    System.put_env("TMPDIR", dir)

    try do
      File.cd!(dir, fn ->
        Enum.reduce(blocks, [], fn code, binding ->
          try do
            eval_like_iex(code, binding)
          rescue
            e ->
              reraise ExUnit.AssertionError,
                      [message: "this example failed:\n#{code}\n#{Exception.message(e)}"],
                      __STACKTRACE__
          end
        end)
      end)
    after
      if tmp, do: System.put_env("TMPDIR", tmp), else: System.delete_env("TMPDIR")
      for name <- stop, pid = Process.whereis(name), do: GenServer.stop(pid)
    end

    :ok
  end

  # IEx evaluates a pasted block one top-level expression at a time, so a
  # struct defined by one is usable in the next: so does this.
  defp eval_like_iex(code, binding) do
    exprs =
      case Code.string_to_quoted!(code, file: "doc example") do
        {:__block__, _, exprs} -> exprs
        expr -> [expr]
      end

    Enum.reduce(exprs, binding, fn expr, binding ->
      {_, binding} = Code.eval_quoted(expr, binding, file: "doc example")
      binding
    end)
  end
end
