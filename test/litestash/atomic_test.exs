defmodule LiteStash.AtomicTest do
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.Error

  @moduletag :tmp_dir

  describe "incr/3" do
    test "64 processes doing 1,000 increments each on one key end at exactly 64,000",
         %{tmp_dir: dir} do
      s = start_store!(dir)

      1..64
      |> Task.async_stream(
        fn _ -> for _ <- 1..1_000, do: {:ok, _} = LiteStash.incr(s, "counter") end,
        max_concurrency: 64,
        timeout: 120_000
      )
      |> Stream.run()

      assert LiteStash.get(s, "counter") == {:ok, 64_000}
    end

    test "counts an absent key from 0, takes negative steps, refuses non-integers",
         %{tmp_dir: dir} do
      s = start_store!(dir)
      assert LiteStash.incr(s, "n", -5) == {:ok, -5}
      assert LiteStash.incr(s, "n") == {:ok, -4}
      :ok = LiteStash.set(s, "f", 1.5)
      assert {:error, %Error{reason: :not_an_integer}} = LiteStash.incr(s, "f")
      :ok = LiteStash.set(s, "max", 9_223_372_036_854_775_807)
      assert {:error, %Error{reason: :not_an_integer}} = LiteStash.incr(s, "max")
      assert LiteStash.get(s, "max") == {:ok, 9_223_372_036_854_775_807}
    end

    test "keeps the key's expiry", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "c", 1, ttl: 60_000)
      assert LiteStash.incr(s, "c") == {:ok, 2}
      assert {:ok, ms} = LiteStash.ttl(s, "c")
      assert is_integer(ms)
    end
  end

  describe "put_new/3" do
    test "writes only an absent key", %{tmp_dir: dir} do
      s = start_store!(dir)
      assert LiteStash.put_new(s, "k", 1) == :ok
      assert {:error, %Error{reason: :exists}} = LiteStash.put_new(s, "k", 2)
      assert LiteStash.get(s, "k") == {:ok, 1}
    end

    test "only one of many racing processes wins", %{tmp_dir: dir} do
      s = start_store!(dir)

      wins =
        1..50
        |> Task.async_stream(fn i -> LiteStash.put_new(s, "lock", i) end, max_concurrency: 50)
        |> Enum.count(&(&1 == {:ok, :ok}))

      assert wins == 1
    end
  end

  describe "compare_and_set/4" do
    test "swaps only when the stored value is the expected one", %{tmp_dir: dir} do
      s = start_store!(dir)
      assert LiteStash.compare_and_set(s, "k", nil, %{"v" => 1}) == :ok
      assert {:error, %Error{reason: :mismatch}} = LiteStash.compare_and_set(s, "k", nil, 2)

      assert {:error, %Error{reason: :mismatch}} =
               LiteStash.compare_and_set(s, "k", %{"v" => 1.0}, 2)

      assert LiteStash.compare_and_set(s, "k", %{v: 1}, [1, 2]) == :ok
      assert LiteStash.get(s, "k") == {:ok, [1, 2]}
    end

    test "compares maps regardless of order", %{tmp_dir: dir} do
      s = start_store!(dir)
      big = for i <- 1..40, into: %{}, do: {"k#{i}", i}
      :ok = LiteStash.set(s, "m", big)
      reordered = big |> Enum.reverse() |> Map.new()
      assert LiteStash.compare_and_set(s, "m", reordered, "done") == :ok
    end

    test "64 processes incrementing through compare_and_set lose no update", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "n", 0)

      bump = fn bump ->
        {:ok, n} = LiteStash.get(s, "n")

        case LiteStash.compare_and_set(s, "n", n, n + 1) do
          :ok -> :ok
          {:error, %Error{reason: :mismatch}} -> bump.(bump)
        end
      end

      1..64
      |> Task.async_stream(fn _ -> for _ <- 1..20, do: bump.(bump) end,
        max_concurrency: 64,
        timeout: 120_000
      )
      |> Stream.run()

      assert LiteStash.get(s, "n") == {:ok, 1_280}
    end
  end
end
