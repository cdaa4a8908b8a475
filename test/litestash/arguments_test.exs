defmodule LiteStash.ArgumentsTest do
  # Wrong arguments raise ArgumentError about what the caller passed.
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers

  @moduletag :tmp_dir

  setup %{tmp_dir: dir} do
    %{store: start_store!(dir)}
  end

  test "an options argument that is not a keyword list", %{store: s} do
    for {fun, call} <- [
          {"keys/2", fn -> LiteStash.keys(s, "user:") end},
          {"count/2", fn -> LiteStash.count(s, "user:") end},
          {"stream/2", fn -> LiteStash.stream(s, "user:") end},
          {"set/4", fn -> LiteStash.set(s, "k", 1, "opts") end}
        ] do
      assert_raise ArgumentError,
                   ~r/argument of #{Regex.escape(fun)} is a keyword list of options, got: "/,
                   call
    end

    assert_raise ArgumentError, ~r/third argument of set\/3 .* keyword list/, fn ->
      LiteStash.set("k", 1, "opts")
    end

    assert_raise ArgumentError, ~r/second argument of keys\/2 is a keyword list/, fn ->
      LiteStash.keys(:a, "user:")
    end

    assert_raise ArgumentError,
                 ~r/first argument of keys\/1 is a server or a keyword list.*prefix: "user:"/,
                 fn ->
                   LiteStash.keys("user:")
                 end
  end

  test "a key that is not a binary, in the form that takes the key first" do
    assert_raise ArgumentError, ~r/first argument of set\/2 is the key.*got: :k/, fn ->
      LiteStash.set(:k, 1)
    end

    assert_raise ArgumentError, ~r/first argument of incr\/1 is the key.*got: :hits/, fn ->
      LiteStash.incr(:hits)
    end
  end

  test "an amount that is not an integer", %{store: s} do
    assert_raise ArgumentError, ~r/incr\/2's amount must be an integer.*got: "x"/, fn ->
      LiteStash.incr("hits", "x")
    end

    for by <- ["x", 1.5, 2 ** 63] do
      assert_raise ArgumentError,
                   ~r/incr\/3's amount must be an integer in -2\^63\.\.2\^63-1/,
                   fn ->
                     LiteStash.incr(s, "hits", by)
                   end
    end
  end

  test "a string where the server goes says that a string is a key" do
    assert_raise ArgumentError, ~r/got the string "hits": a string is a key/, fn ->
      LiteStash.get("hits", "k")
    end
  end

  test "times to live out of range name the option and its range", %{store: s} do
    :ok = LiteStash.set(s, "k", 1)

    for ms <- [2 ** 64, 2 ** 63, 0, -1, 1.0] do
      assert_raise ArgumentError,
                   ~r/option :ttl: expected an integer of milliseconds in 1\.\.9223372036854775807/,
                   fn ->
                     LiteStash.set(s, "k", 1, ttl: ms)
                   end

      assert_raise ArgumentError,
                   ~r/expire\/3's milliseconds: expected an integer .* in 1\.\./,
                   fn ->
                     LiteStash.expire(s, "k", ms)
                   end
    end

    assert :ok = LiteStash.set(s, "k", 1, ttl: 2 ** 63 - 1)
    assert {:ok, ms} = LiteStash.ttl(s, "k")
    assert ms > 2 ** 62
  end

  test "a prefix that is not UTF-8 and a chunk size out of range", %{store: s} do
    for call <- [
          fn -> LiteStash.keys(s, prefix: <<255>>) end,
          fn -> LiteStash.count(s, prefix: <<255>>) end,
          fn -> LiteStash.stream(s, prefix: <<255>>) end
        ] do
      assert_raise ArgumentError, ~r/option :prefix: expected a UTF-8 string.*<<255>>/, call
    end

    for n <- [2 ** 70, 0, 100_001, :all] do
      assert_raise ArgumentError,
                   ~r/option :chunk_size: expected an integer in 1\.\.100000/,
                   fn ->
                     LiteStash.stream(s, chunk_size: n)
                   end
    end

    assert_raise ArgumentError, ~r/unknown option :limit .*known: :prefix, :chunk_size/, fn ->
      LiteStash.stream(s, limit: 1)
    end
  end

  test "a backup destination that is not a UTF-8 path", %{store: s, tmp_dir: dir} do
    for dest <- [dir <> "/x" <> <<255>>, "", :dir] do
      assert_raise ArgumentError,
                   ~r/backup\/2's destination must be a non-empty UTF-8 path/,
                   fn ->
                     LiteStash.backup(s, dest)
                   end
    end
  end

  test "mget's keys, mset's pairs and update's fun of the wrong kind say so", %{store: s} do
    assert_raise ArgumentError, ~r"mget/2's keys must be a list of binaries, got: \"k\"", fn ->
      LiteStash.mget(s, "k")
    end

    assert_raise ArgumentError, ~r"a LiteStash key must be a binary.*got: :k", fn ->
      LiteStash.mget(s, ["a", :k])
    end

    assert_raise ArgumentError,
                 ~r"mset/2 takes a map or a list of \{key, value\} tuples, got: \"x\"",
                 fn -> LiteStash.mset(s, "x") end

    assert_raise ArgumentError, ~r"mset/2 takes .* got the element \"x\"", fn ->
      LiteStash.mset(s, [{"a", 1}, "x"])
    end

    assert_raise ArgumentError, ~r"a LiteStash key must be a binary.*got: 1", fn ->
      LiteStash.mset(s, %{1 => 2})
    end

    assert_raise ArgumentError, ~r"update/4's fun must be a function of one argument", fn ->
      LiteStash.update(s, "k", 0, "notfun")
    end

    assert_raise ArgumentError,
                 ~r"get_and_update/3's fun must be a function of one argument, got: :x",
                 fn -> LiteStash.get_and_update(s, "k", :x) end

    # Nothing was written by the refused calls.
    assert LiteStash.count(s) == {:ok, 0}
  end
end
