defmodule LiteStash.NamesTest do
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.Error

  @moduletag :tmp_dir

  # The calls every kind of server term must work with.
  defp exercise(server, dest) do
    assert LiteStash.set(server, "k", 1) == :ok
    assert LiteStash.get(server, "k") == {:ok, 1}
    assert LiteStash.incr(server, "n") == {:ok, 1}
    assert LiteStash.mset(server, %{"a" => 1}) == :ok
    assert LiteStash.exists?(server, "a")
    assert {:ok, ["k"]} = LiteStash.keys(server, prefix: "k")
    assert LiteStash.count(server) == {:ok, 3}
    assert LiteStash.stream(server, prefix: "a") |> Enum.to_list() == [{"a", 1}]
    assert {:ok, [_ | _]} = LiteStash.info(server)
    assert LiteStash.backup(server, dest) == :ok
    assert LiteStash.stop(server) == :ok
    assert {:error, %Error{reason: :closed}} = LiteStash.get(server, "k")
  end

  describe "start_link/1 :name" do
    test "{:via, Registry, key} registers and calls the store", %{tmp_dir: dir} do
      registry = :"registry_#{System.unique_integer([:positive])}"
      start_supervised!({Registry, keys: :unique, name: registry})
      name = {:via, Registry, {registry, :store}}
      {:ok, pid} = LiteStash.start_link(data_dir: Path.join(dir, "d"), name: name)
      assert [{^pid, _}] = Registry.lookup(registry, :store)
      exercise(name, Path.join(dir, "copy"))
    end

    test "{:global, term} registers and calls the store", %{tmp_dir: dir} do
      name = {:global, {__MODULE__, System.unique_integer()}}
      {:ok, pid} = LiteStash.start_link(data_dir: Path.join(dir, "d"), name: name)
      assert GenServer.whereis(name) == pid
      exercise(name, Path.join(dir, "copy"))
    end

    test "nil starts an anonymous store called by its pid", %{tmp_dir: dir} do
      {:ok, pid} = LiteStash.start_link(data_dir: Path.join(dir, "d"), name: nil)
      assert Process.info(pid, :registered_name) == {:registered_name, []}
      exercise(pid, Path.join(dir, "copy"))
    end

    test "an atom-named store is called by its pid too", %{tmp_dir: dir} do
      name = :"named_#{System.unique_integer([:positive])}"
      {:ok, pid} = LiteStash.start_link(data_dir: Path.join(dir, "d"), name: name)
      exercise(pid, Path.join(dir, "copy"))
    end

    test "a name of another shape raises ArgumentError listing the shapes", %{tmp_dir: dir} do
      for bad <- ["str", {:via, "Registry", :x}, {:local, :x}, true] do
        assert_raise ArgumentError,
                     ~r/:name.*\{:global, term\}.*got: #{Regex.escape(inspect(bad))}/,
                     fn ->
                       LiteStash.start_link(data_dir: dir, name: bad)
                     end
      end
    end

    test "a name already held gives {:error, {:already_started, pid}} and frees the data dir",
         %{tmp_dir: dir} do
      taken = start_store!(Path.join(dir, "first"))
      holder = Process.whereis(taken)
      code_server = Process.whereis(:code_server)
      global = {:global, {__MODULE__, System.unique_integer()}}
      :yes = :global.register_name(elem(global, 1), self())

      for {name, pid} <- [{taken, holder}, {:code_server, code_server}, {global, self()}] do
        assert LiteStash.start_link(data_dir: Path.join(dir, "second"), name: name) ==
                 {:error, {:already_started, pid}}
      end

      # Nothing kept the data dir open: it opens at once.
      s = start_store!(Path.join(dir, "second"))
      assert LiteStash.set(s, "k", 1) == :ok
      assert Process.alive?(code_server)
    end

    test "under a supervisor, {:already_started, pid} is the start error", %{tmp_dir: dir} do
      name = start_store!(Path.join(dir, "first"))

      assert {:error, {{:already_started, pid}, _}} =
               start_supervised({LiteStash, data_dir: Path.join(dir, "second"), name: name})

      assert pid == Process.whereis(name)
    end
  end

  describe "child_spec/1" do
    test "the id is the name, or LiteStash for the default and anonymous stores" do
      via = {:via, Registry, {R, 1}}
      assert LiteStash.child_spec(name: :a).id == :a
      assert LiteStash.child_spec(name: via).id == via
      assert LiteStash.child_spec(name: {:global, :g}).id == {:global, :g}
      assert LiteStash.child_spec(name: nil).id == LiteStash
      assert LiteStash.child_spec([]).id == LiteStash
    end

    test "an anonymous store runs under start_supervised!", %{tmp_dir: dir} do
      pid = start_supervised!({LiteStash, data_dir: dir, name: nil})
      assert LiteStash.set(pid, "k", "v") == :ok
      assert LiteStash.get(pid, "k") == {:ok, "v"}
    end
  end

  describe "stop/1" do
    test "a second stop returns :closed, by name and by pid", %{tmp_dir: dir} do
      name = :"stop_#{System.unique_integer([:positive])}"
      {:ok, _} = LiteStash.start_link(data_dir: Path.join(dir, "a"), name: name)
      assert LiteStash.stop(name) == :ok
      assert {:error, %Error{reason: :closed, message: msg}} = LiteStash.stop(name)
      assert msg =~ inspect(name)

      {:ok, pid} = LiteStash.start_link(data_dir: Path.join(dir, "b"), name: nil)
      assert LiteStash.stop(pid) == :ok
      assert {:error, %Error{reason: :closed}} = LiteStash.stop(pid)

      via = {:via, Registry, {:no_such_registry_here, 1}}
      assert_raise ArgumentError, fn -> LiteStash.stop(via) end
      assert {:error, %Error{reason: :closed}} = LiteStash.stop({:global, :no_such_store})
    end

    test "a name that another kind of process holds is left alone" do
      code_server = Process.whereis(:code_server)
      assert {:error, %Error{reason: :closed}} = LiteStash.stop(:code_server)
      assert {:error, %Error{reason: :closed}} = LiteStash.stop(self())
      assert Process.whereis(:code_server) == code_server and Process.alive?(code_server)
    end
  end
end
