defmodule LiteStash.ErrorTest do
  use ExUnit.Case, async: true

  doctest LiteStash.Error

  describe "reasons/0" do
    test "lists exactly the reasons the Rust core can give" do
      assert Enum.sort(LiteStash.Error.reasons()) ==
               Enum.sort(LiteStash.Native.error_reasons())
    end

    test "each reason is documented in the moduledoc" do
      {:docs_v1, _, _, _, %{"en" => moduledoc}, _, _} = Code.fetch_docs(LiteStash.Error)

      for reason <- LiteStash.Error.reasons() do
        assert moduledoc =~ "`#{inspect(reason)}`", "#{inspect(reason)} is not documented"
      end
    end
  end
end
