defmodule LiteStash.DefaultStoreTest do
  # Not async: these tests start the store under the default name
  # `LiteStash`, which only one test at a time may hold.
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers

  @moduletag :tmp_dir

  describe "the seed's usage example" do
    test "runs verbatim on the default store name", %{tmp_dir: dir} do
      {:ok, _pid} = LiteStash.start_link(data_dir: dir)
      on_exit(fn -> stop_quietly(LiteStash) end)

      :ok = LiteStash.set("user:1001", %{name: "Alice", score: 99})
      assert LiteStash.get("user:1001") == {:ok, %{"name" => "Alice", "score" => 99}}

      :ok = LiteStash.set("vec:1", [0.1, 0.5, 0.9])
      assert LiteStash.get("vec:1") == {:ok, [0.1, 0.5, 0.9]}
    end
  end

  describe "get/3 and fetch/2" do
    test "fetch/1 reads the default store", %{tmp_dir: dir} do
      {:ok, _} = LiteStash.start_link(data_dir: dir)
      on_exit(fn -> stop_quietly(LiteStash) end)
      :ok = LiteStash.set("k", "v")
      assert LiteStash.fetch("k") == {:ok, "v"}
      assert LiteStash.fetch("nope") == :error
      assert LiteStash.get(LiteStash, "nope", :default) == :default
    end
  end

  describe "under a supervisor" do
    test "a store ended by stop/1 stays stopped; one that crashed is started again",
         %{tmp_dir: dir} do
      {:ok, sup} = Supervisor.start_link([{LiteStash, data_dir: dir}], strategy: :one_for_one)
      on_exit(fn -> if Process.alive?(sup), do: Supervisor.stop(sup) end)
      :ok = LiteStash.set("k", "v")

      first = GenServer.whereis(LiteStash)
      ref = Process.monitor(first)
      Process.exit(first, :kill)
      assert_receive {:DOWN, ^ref, :process, ^first, :killed}
      wait_until(fn -> LiteStash.get("k") == {:ok, "v"} end, 5_000)
      refute GenServer.whereis(LiteStash) == first

      :ok = LiteStash.stop()
      Process.sleep(100)
      assert [{LiteStash, :undefined, :worker, _}] = Supervisor.which_children(sup)
      assert {:error, %LiteStash.Error{reason: :closed}} = LiteStash.get("k")
    end
  end
end
