defmodule LiteStash.TestingGuideTest do
  # The README's "Testing" section, as a user's suite: anonymous stores
  # (name: nil) started with start_supervised!, called by pid, in async
  # tests.
  use ExUnit.Case, async: true

  setup do
    %{kv: start_supervised!({LiteStash, name: nil, data_dir: :memory})}
  end

  for i <- 1..4 do
    test "async test #{i} has a store of its own", %{kv: kv} do
      assert {:ok, 0} = LiteStash.count(kv)
      {:ok, 2} = LiteStash.incr(kv, "cart:1:items", 2)
      assert LiteStash.get(kv, "cart:1:items") == {:ok, 2}
    end
  end

  @tag :tmp_dir
  test "a cart survives a restart", %{tmp_dir: dir} do
    kv = start_supervised!({LiteStash, name: nil, data_dir: dir}, id: :disk)
    :ok = LiteStash.set(kv, "cart:1", %{"items" => 2})
    :ok = stop_supervised(:disk)
    kv = start_supervised!({LiteStash, name: nil, data_dir: dir}, id: :disk)
    assert LiteStash.get(kv, "cart:1") == {:ok, %{"items" => 2}}
  end
end
