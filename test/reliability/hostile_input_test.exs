defmodule LiteStash.Reliability.HostileInputTest do
  # Values a caller may hand over: each is stored and read back exactly, or
  # refused with a reason while the key keeps its earlier value. Set
  # LITESTASH_TERM_SEED to replay the random terms of a failed run.
  # Heavy on CPU (other BEAMs, 64 MiB values): run apart from the async
  # tests, some of which measure short TTLs.
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers
  alias LiteStash.{Error, Native}
  alias LiteStash.Test.RandomTerm

  @moduletag :tmp_dir

  @mib 1024 * 1024

  defp nested(levels, inner \\ nil, wrap \\ &[&1]) do
    Enum.reduce(1..levels, inner, fn _, acc -> wrap.(acc) end)
  end

  defp assert_refused(s, term, reason) do
    :ok = LiteStash.set(s, "k", "earlier")
    assert {:error, %Error{reason: ^reason, message: message}} = LiteStash.set(s, "k", term)
    assert is_binary(message) and message != ""
    assert {:error, %Error{reason: ^reason}} = LiteStash.mset(s, [{"other", 1}, {"k", term}])
    assert LiteStash.get(s, "k") == {:ok, "earlier"}
    refute LiteStash.exists?(s, "other")
  end

  describe "refused values" do
    test "every term the contract refuses, deep inside a value, keeps the earlier value",
         %{tmp_dir: dir} do
      s = start_store!(dir)
      port = Port.open({:spawn, "true"}, [])

      for bad <- [
            {1, 2},
            self(),
            make_ref(),
            &Function.identity/1,
            port,
            [1 | 2],
            18_446_744_073_709_551_616,
            -9_223_372_036_854_775_809,
            <<1::3>>,
            %{:a => 1, "a" => 2},
            %{[1] => 2},
            %{%{} => 2}
          ] do
        assert_refused(s, nested(300, [1, %{"x" => bad}], &%{"level" => &1}), :unsupported_value)
      end
    end

    test "a value over 64 MiB is refused; one of exactly 64 MiB is stored", %{tmp_dir: dir} do
      s = start_store!(dir)
      # bin 32 has a 5-byte header: this encodes to exactly 64 MiB.
      at_limit = :binary.copy(<<0xFF>>, 64 * @mib - 5)
      assert LiteStash.set(s, "big", at_limit) == :ok
      assert LiteStash.get(s, "big") == {:ok, at_limit}

      assert_refused(s, at_limit <> <<0xFF>>, :value_too_large)
      one_mib = :binary.copy(<<0xFE>>, @mib)
      assert_refused(s, List.duplicate(one_mib, 65), :value_too_large)

      assert_refused(
        s,
        %{"a" => List.duplicate(one_mib, 40), "b" => List.duplicate(one_mib, 40)},
        :value_too_large
      )
    end

    test "nesting of 512 levels is stored; 513 is refused", %{tmp_dir: dir} do
      s = start_store!(dir)

      alternating = fn levels ->
        Enum.reduce(1..levels, "bottom", fn i, acc ->
          if rem(i, 2) == 0, do: [acc], else: %{"k" => acc}
        end)
      end

      for build <- [
            &nested(&1, "bottom"),
            &nested(&1, "bottom", fn acc -> %{"k" => acc} end),
            alternating
          ] do
        ok = build.(512)
        :ok = LiteStash.set(s, "deep", ok)
        assert LiteStash.get(s, "deep") == {:ok, ok}
        assert_refused(s, build.(513), :too_deep)
      end
    end

    test "a 200,000-deep list or map is refused without overflowing any stack", %{tmp_dir: dir} do
      s = start_store!(dir)
      deep_list = nested(200_000)
      deep_map = nested(200_000, 1, &%{"k" => &1})
      assert_refused(s, deep_list, :too_deep)
      assert_refused(s, deep_map, :too_deep)
      # Past the normal scheduler's budget, so walked on a dirty one.
      assert_refused(s, [List.duplicate(7, 30_000), deep_list], :too_deep)

      # The same depth in bytes a foreign writer stored: the decoder refuses it.
      bytes = :binary.copy(<<0x91>>, 200_000) <> <<0xC0>>
      assert {:error, %Error{reason: :corrupt_value}} = Native.decode_value(bytes)
    end
  end

  describe "random values" do
    @tag :slow
    test "10,000 random terms of every shape read back exactly or are refused with a reason",
         %{tmp_dir: dir} do
      seed =
        case System.get_env("LITESTASH_TERM_SEED") do
          nil -> :erlang.unique_integer([:positive])
          seed -> String.to_integer(seed)
        end

      s = start_store!(dir)

      counts =
        1..8
        |> Task.async_stream(&random_writes(s, seed, &1, 1_250), timeout: 120_000, ordered: false)
        |> Enum.reduce(%{}, fn {:ok, counts}, acc ->
          Map.merge(acc, counts, fn _, a, b -> a + b end)
        end)

      assert Enum.sum(Map.values(counts)) == 10_000
      # Every kind of outcome came up (LITESTASH_TERM_SEED=#{seed}).
      assert Map.keys(counts) |> Enum.sort() == [:ok, :too_deep, :unsupported_value]
    end
  end

  # `n` random terms written over 32 keys by one process; each read back.
  defp random_writes(s, seed, worker, n) do
    :rand.seed(:exsss, {seed, worker, 4})

    {_model, counts} =
      Enum.reduce(1..n, {%{}, %{}}, fn i, {model, counts} ->
        key = "w#{worker}:#{rem(i, 32)}"
        {term, expected} = RandomTerm.generate()

        context =
          "LITESTASH_TERM_SEED=#{seed}, worker #{worker}, term #{i}: #{inspect(term, limit: 12)}"

        model =
          case {LiteStash.set(s, key, term), expected} do
            {:ok, {:ok, stored}} ->
              Map.put(model, key, stored)

            {{:error, %Error{reason: reason, message: message}}, {:error, reason}} ->
              assert is_binary(message) and message != "", context
              model

            {result, expected} ->
              flunk(
                "set gave #{inspect(result, limit: 12)}, expected #{inspect(expected, limit: 12)} (#{context})"
              )
          end

        read = LiteStash.get(s, key)

        case Map.fetch(model, key) do
          {:ok, value} -> assert read === {:ok, value}, context
          :error -> assert {:error, %Error{reason: :not_found}} = read
        end

        outcome = with {:error, reason} <- expected, do: reason, else: (_ -> :ok)
        {model, Map.update(counts, outcome, 1, &(&1 + 1))}
      end)

    counts
  end
end
