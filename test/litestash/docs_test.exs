defmodule LiteStash.DocsTest do
  # The examples users paste: the README's and the module doc's run in
  # `iex -S mix` in order, twice on the same data dir (as in two sessions),
  # and the function docs show nothing that exists only in tests.
  use ExUnit.Case, async: false

  alias LiteStash.Test.DocExamples

  @moduletag :tmp_dir

  @readme Path.expand("../../README.md", __DIR__)
  @external_resource @readme

  defp moduledoc do
    {:docs_v1, _, :elixir, _, %{"en" => text}, _, _} = Code.fetch_docs(LiteStash)
    text
  end

  defp function_docs do
    {:docs_v1, _, :elixir, _, _, _, docs} = Code.fetch_docs(LiteStash)
    for {{_, name, arity}, _, _, %{"en" => text}, _} <- docs, do: {"#{name}/#{arity}", text}
  end

  test "the README's examples run in order, twice on the same data dir", %{tmp_dir: dir} do
    blocks = DocExamples.blocks(File.read!(@readme))
    assert length(blocks) >= 6
    assert Enum.any?(blocks, &(&1 =~ "compare_and_set"))

    for _session <- 1..2, do: DocExamples.run!(blocks, dir, [LiteStash])
    assert length(Path.wildcard(Path.join(dir, "data/tables_*"))) == 16
  end

  test "the module doc's examples run in order, twice on the same data dir", %{tmp_dir: dir} do
    blocks = DocExamples.blocks(moduledoc())
    assert length(blocks) >= 4

    for _session <- 1..2, do: DocExamples.run!(blocks, dir, [LiteStash, :sessions])
    assert length(Path.wildcard(Path.join(dir, "sessions/tables_*"))) == 16
  end

  test "the README's set-up says which Rust it needs and how to get it" do
    [setup | _] = String.split(File.read!(@readme), "\n## ", parts: 2)
    assert setup =~ "make demo" and setup =~ "make test"
    assert setup =~ "Rust 1.91 or later"
    assert setup =~ "rustup"
  end

  test "the function docs show no test helper and no value fixed at compile time" do
    for {fun, text} <- function_docs() do
      refute text =~ "DocHelper", fun
      refute text =~ ~r/litestash-doc-\d/, fun
    end
  end
end

defmodule LiteStash.DocsTest.Doctests do
  # The iex> examples run on the default store, started in a fresh dir as
  # the module doc's "Usage" does; the Second module runs them again on the
  # same data (as a second iex session would).
  use ExUnit.Case, async: false

  @dir Path.join(System.tmp_dir!(), "litestash-doctests-#{System.pid()}")

  def dir, do: @dir

  setup do
    start_supervised!({LiteStash, data_dir: @dir})
    :ok
  end

  doctest LiteStash
end

defmodule LiteStash.DocsTest.DoctestsAgain do
  use ExUnit.Case, async: false

  setup_all do
    on_exit(fn -> File.rm_rf!(LiteStash.DocsTest.Doctests.dir()) end)
  end

  setup do
    start_supervised!({LiteStash, data_dir: LiteStash.DocsTest.Doctests.dir()})
    :ok
  end

  doctest LiteStash
end
