defmodule LiteStash.EncoderTest do
  use ExUnit.Case, async: true

  import LiteStash.Test.Helpers
  alias LiteStash.Error
  alias LiteStash.Test.Structs.{All, Except, Loop, Only, Plain}

  @moduletag :tmp_dir

  describe "structs without LiteStash.Encoder" do
    test "are refused with :unsupported_value naming the struct, writing nothing",
         %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "k", "earlier")

      for {value, name} <- [
            {URI.parse("https://example.com"), "%URI{}"},
            {%Plain{a: 1}, "%LiteStash.Test.Structs.Plain{}"},
            {%{"deep" => [1, %{"x" => %Plain{}}]}, "%LiteStash.Test.Structs.Plain{}"}
          ] do
        assert {:error, %Error{reason: :unsupported_value, message: msg}} =
                 LiteStash.set(s, "k", value)

        assert msg =~ "cannot store a #{name} struct"
        assert msg =~ "LiteStash.Encoder"
      end

      assert LiteStash.get(s, "k") == {:ok, "earlier"}
    end

    test "are refused by every write that stores a value", %{tmp_dir: dir} do
      s = start_store!(dir)
      uri = URI.parse("https://example.com")

      assert {:error, %Error{reason: :unsupported_value}} = LiteStash.put_new(s, "p", uri)

      assert {:error, %Error{reason: :unsupported_value}} =
               LiteStash.mset(s, [{"a", 1}, {"b", uri}])

      assert {:error, %Error{reason: :unsupported_value}} =
               LiteStash.compare_and_set(s, "c", nil, uri)

      assert LiteStash.count(s) == {:ok, 0}
    end

    test "a map with a string \"__struct__\" key is a plain map", %{tmp_dir: dir} do
      s = start_store!(dir)
      map = %{"__struct__" => "Elixir.Date", "day" => 1}
      :ok = LiteStash.set(s, "m", map)
      assert LiteStash.get(s, "m") == {:ok, map}
    end

    test "an implementation that returns its own struct is refused", %{tmp_dir: dir} do
      s = start_store!(dir)

      assert {:error, %Error{reason: :unsupported_value, message: msg}} =
               LiteStash.set(s, "l", %Loop{n: 1})

      assert msg =~ "returned a %LiteStash.Test.Structs.Loop{} struct"
    end
  end

  describe "built-in implementations" do
    test "dates and times are stored as ISO 8601 strings, MapSet as a list", %{tmp_dir: dir} do
      s = start_store!(dir)

      values = %{
        "date" => {~D[2024-01-31], "2024-01-31"},
        "time" => {~T[12:30:05.120], "12:30:05.120"},
        "naive" => {~N[2024-01-31 12:30:00], "2024-01-31T12:30:00"},
        "utc" => {~U[2024-01-31 12:30:00Z], "2024-01-31T12:30:00Z"},
        "set" => {MapSet.new([1, 2]), [1, 2]}
      }

      for {key, {value, stored}} <- values do
        assert LiteStash.set(s, key, value) == :ok
        assert LiteStash.get(s, key) == {:ok, stored}
      end
    end

    test "structs deep in a value, in mset, put_new and compare_and_set are encoded",
         %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "deep", %{"days" => [~D[2024-01-01], %{at: ~T[00:00:00]}]})
      assert LiteStash.get(s, "deep") == {:ok, %{"days" => ["2024-01-01", %{"at" => "00:00:00"}]}}

      :ok = LiteStash.mset(s, %{"a" => ~D[2024-02-02], "b" => 2})
      assert LiteStash.mget(s, ["a", "b"]) == {:ok, %{"a" => "2024-02-02", "b" => 2}}

      :ok = LiteStash.put_new(s, "p", MapSet.new(["x"]))
      assert LiteStash.get(s, "p") == {:ok, ["x"]}

      :ok = LiteStash.compare_and_set(s, "a", ~D[2024-02-02], ~D[2024-03-03])
      assert LiteStash.get(s, "a") == {:ok, "2024-03-03"}

      assert {:error, %Error{reason: :mismatch}} =
               LiteStash.compare_and_set(s, "a", ~D[2024-02-02], 1)
    end

    test "a struct with a refused term inside is refused for the term", %{tmp_dir: dir} do
      s = start_store!(dir)

      assert {:error, %Error{reason: :unsupported_value, message: msg}} =
               LiteStash.set(s, "t", [~D[2024-01-01], {:tuple}])

      assert msg =~ "tuple"
    end
  end

  describe "@derive LiteStash.Encoder" do
    test "stores every field, only: some, or except: some, as a map", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "all", %All{id: 1, name: "Ada"})
      :ok = LiteStash.set(s, "only", %Only{id: 2, name: "Bo", secret: "x"})
      :ok = LiteStash.set(s, "except", %Except{id: 3, secret: "x", when: ~D[2024-01-01]})

      assert LiteStash.get(s, "all") == {:ok, %{"id" => 1, "name" => "Ada"}}
      assert LiteStash.get(s, "only") == {:ok, %{"id" => 2, "name" => "Bo"}}
      assert LiteStash.get(s, "except") == {:ok, %{"id" => 3, "when" => "2024-01-01"}}
    end

    test "names of fields the struct lacks, or unknown options, raise when derived" do
      for {opts, message} <- [
            {[only: [:nope]], ~r/only: \[:nope\].*expected a list of its fields/},
            {[except: :id], ~r/except: :id/},
            {[rename: [:id]], ~r/takes only: \[fields\] or except: \[fields\]/}
          ] do
        # Deriving warns that the consolidated protocol will not see the
        # implementation, before it raises.
        ExUnit.CaptureIO.capture_io(:stderr, fn ->
          assert_raise ArgumentError, message, fn -> derive(opts) end
        end)
      end
    end
  end

  defp derive(opts) do
    name = :"Elixir.LiteStash.EncoderTest.Bad#{System.unique_integer([:positive])}"

    Code.eval_quoted(
      quote do
        defmodule unquote(name) do
          @derive {LiteStash.Encoder, unquote(opts)}
          defstruct [:id]
        end
      end
    )
  end
end
