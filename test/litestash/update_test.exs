defmodule LiteStash.UpdateTest do
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.Error

  @moduletag :tmp_dir

  describe "get/3 and fetch/2" do
    test "give the value, the default or :error, and raise when the store cannot answer",
         %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "n", nil)
      :ok = LiteStash.set(s, "v", 1)
      assert LiteStash.get(s, "v", 0) == 1
      assert LiteStash.get(s, "n", 0) == nil
      assert LiteStash.get(s, "missing", 0) == 0
      assert LiteStash.fetch(s, "v") == {:ok, 1}
      assert LiteStash.fetch(s, "n") == {:ok, nil}
      assert LiteStash.fetch(s, "missing") == :error
      assert {:error, %Error{reason: :invalid_key}} = LiteStash.get(s, "")
      assert_raise Error, fn -> LiteStash.fetch(s, "") end

      :ok = LiteStash.stop(s)
      assert_raise Error, ~r/no LiteStash store/, fn -> LiteStash.get(s, "v", 0) end
      assert_raise Error, ~r/no LiteStash store/, fn -> LiteStash.fetch(s, "v") end
    end
  end

  describe "update/4" do
    test "stores the default for an absent key and fun.(value) otherwise", %{tmp_dir: dir} do
      s = start_store!(dir)

      assert LiteStash.update(s, "l", [0], fn _ -> flunk("fun called for an absent key") end) ==
               :ok

      assert LiteStash.update(s, "l", [0], &[1 | &1]) == :ok
      assert LiteStash.get(s, "l") == {:ok, [1, 0]}

      assert LiteStash.update(s, "d", ~D[2024-01-01], &flunk("fun called with #{inspect(&1)}")) ==
               :ok

      assert LiteStash.update(s, "d", nil, fn day -> day <> "!" end) == :ok
      assert LiteStash.get(s, "d") == {:ok, "2024-01-01!"}
      assert {:error, %Error{reason: :unsupported_value}} = LiteStash.update(s, "l", 0, &{&1})
      assert LiteStash.get(s, "l") == {:ok, [1, 0]}
    end

    test "50 processes updating one key lose no update (an absent key takes the default)",
         %{tmp_dir: dir} do
      s = start_store!(dir)

      1..50
      |> Task.async_stream(
        fn _ -> for _ <- 1..20, do: :ok = LiteStash.update(s, "n", 1, &(&1 + 1)) end,
        max_concurrency: 50,
        timeout: 120_000
      )
      |> Stream.run()

      assert LiteStash.get(s, "n") == {:ok, 1_000}
    end

    test "10 processes appending to one list each find all their entries in it",
         %{tmp_dir: dir} do
      s = start_store!(dir)

      1..10
      |> Task.async_stream(
        fn p ->
          for i <- 1..10, do: :ok = LiteStash.update(s, "log", [[p, i]], &[[p, i] | &1])
        end,
        max_concurrency: 10,
        timeout: 120_000
      )
      |> Stream.run()

      {:ok, log} = LiteStash.get(s, "log")
      assert Enum.sort(log) == for(p <- 1..10, i <- 1..10, do: [p, i])
    end
  end

  describe "get_and_update/3" do
    test "returns what fun gives back and stores the new value", %{tmp_dir: dir} do
      s = start_store!(dir)
      assert LiteStash.get_and_update(s, "n", &{&1, 1}) == {:ok, nil}
      assert LiteStash.get_and_update(s, "n", &{{:old, &1}, &1 + 1}) == {:ok, {:old, 1}}
      assert LiteStash.get(s, "n") == {:ok, 2}

      assert_raise ArgumentError, ~r/must return \{value_to_return, new_value\}, got: :pop/, fn ->
        LiteStash.get_and_update(s, "n", fn _ -> :pop end)
      end
    end

    test "20 processes taking tickets from one key each get distinct ones", %{tmp_dir: dir} do
      s = start_store!(dir)

      tickets =
        1..20
        |> Task.async_stream(
          fn _ ->
            for _ <- 1..25 do
              {:ok, n} = LiteStash.get_and_update(s, "ticket", &{&1 || 0, (&1 || 0) + 1})
              n
            end
          end,
          max_concurrency: 20,
          timeout: 120_000
        )
        |> Enum.flat_map(fn {:ok, taken} -> taken end)

      assert Enum.sort(tickets) == Enum.to_list(0..499)
      assert LiteStash.get(s, "ticket") == {:ok, 500}
    end
  end
end
