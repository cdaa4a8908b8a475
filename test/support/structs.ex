defmodule LiteStash.Test.Structs do
  @moduledoc false
  # Structs for the LiteStash.Encoder tests, compiled with test/support so
  # that their implementations are part of the consolidated protocol.

  defmodule Plain do
    @moduledoc false
    defstruct [:a]
  end

  defmodule All do
    @moduledoc false
    @derive LiteStash.Encoder
    defstruct [:id, :name]
  end

  defmodule Only do
    @moduledoc false
    @derive {LiteStash.Encoder, only: [:id, :name]}
    defstruct [:id, :name, :secret]
  end

  defmodule Except do
    @moduledoc false
    @derive {LiteStash.Encoder, except: [:secret]}
    defstruct [:id, :secret, :when]
  end

  defmodule Loop do
    @moduledoc false
    defstruct [:n]

    defimpl LiteStash.Encoder do
      def encode(loop), do: loop
    end
  end
end
