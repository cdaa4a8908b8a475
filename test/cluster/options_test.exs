defmodule LiteStash.ClusterOptionsTest do
  # LiteStash.start_link/1's cluster options, checked before anything
  # starts (Ra is not needed for these).
  use ExUnit.Case, async: true

  @moduletag :tmp_dir

  describe "start_link/1 with cluster options" do
    test "a bad value of a cluster option raises ArgumentError naming it", %{tmp_dir: dir} do
      for {key, value} <- [
            cluster: [],
            cluster: ["a@h"],
            replication_factor: 0,
            cluster_reads: :stale,
            timeout: 0,
            snapshot_interval: -1
          ] do
        assert_raise ArgumentError, ~r/#{inspect(key)}.*#{Regex.escape(inspect(value))}/, fn ->
          LiteStash.start_link([data_dir: dir, cluster: [:a@h]] |> Keyword.put(key, value))
        end
      end
    end

    test "a clustered store needs a name atom", %{tmp_dir: dir} do
      assert_raise ArgumentError, ~r/:name.*\{:global, :kv\}/, fn ->
        LiteStash.start_link(data_dir: dir, name: {:global, :kv}, cluster: [node()])
      end
    end

    test "a clustered store lives on disk, not in memory" do
      assert_raise ArgumentError, ~r/:data_dir.*:memory/, fn ->
        LiteStash.start_link(data_dir: :memory, name: :kv_mem, cluster: [node()])
      end
    end

    test "a cluster option without :cluster raises instead of being ignored", %{tmp_dir: dir} do
      for {key, value} <- [replication_factor: 2, cluster_reads: :consistent, timeout: 100] do
        assert_raise ArgumentError, ~r/#{inspect(key)} is for a cluster/, fn ->
          LiteStash.start_link([{:data_dir, dir}, {key, value}])
        end
      end
    end
  end
end
