defmodule LiteStash.Update do
  @moduledoc false
  # update/4 and get_and_update/3: optimistic read-modify-write. Read the
  # key, compute the new value, then write it only if the key still holds
  # what was read (put_new for an absent key, compare_and_set otherwise);
  # when another writer came in between, start again. Every failed attempt
  # means another write to the key succeeded, so the callers as a whole
  # always make progress.

  alias LiteStash.Error

  # A bound for values that never compare equal to what is read back (a
  # float NaN written by another language reads as :nan, which is stored
  # as a string): far above what contention on one key needs.
  @max_attempts 10_000

  @doc "Map.update/4 on a stored key."
  @spec update(
          LiteStash.server(),
          LiteStash.key(),
          LiteStash.value(),
          (LiteStash.value() ->
             LiteStash.value())
        ) ::
          :ok | {:error, Error.t()}
  def update(server, key, default, fun) do
    step = fn
      :absent -> {:ok, default}
      {:ok, value} -> {:ok, fun.(value)}
    end

    with {:ok, :ok} <- loop(server, key, step, 1), do: :ok
  end

  @doc "Map.get_and_update/3 on a stored key, without :pop."
  @spec get_and_update(
          LiteStash.server(),
          LiteStash.key(),
          (LiteStash.value() | nil ->
             {term(), LiteStash.value()})
        ) ::
          {:ok, term()} | {:error, Error.t()}
  def get_and_update(server, key, fun) do
    loop(server, key, fn current -> current |> current_value() |> fun.() |> get_and_new!() end, 1)
  end

  defp current_value(:absent), do: nil
  defp current_value({:ok, value}), do: value

  defp get_and_new!({get, new}), do: {get, new}

  defp get_and_new!(other) do
    raise ArgumentError,
          "the function given to LiteStash.get_and_update/3 must return {value_to_return, new_value}, " <>
            "got: #{inspect(other)}"
  end

  defp loop(server, key, step, attempt) do
    with {:ok, current} <- read(server, key) do
      {reply, new} = step.(current)

      case write(server, key, current, new) do
        :ok ->
          {:ok, reply}

        {:error, %Error{reason: r}} when r in [:exists, :mismatch] ->
          retry(server, key, step, attempt)

        {:error, %Error{}} = error ->
          error
      end
    end
  end

  defp retry(server, key, step, attempt) when attempt < @max_attempts,
    do: loop(server, key, step, attempt + 1)

  defp retry(_server, key, _step, attempt) do
    {:error,
     %Error{
       reason: :mismatch,
       message:
         "the value of #{inspect(key)} changed under each of #{attempt} attempts to update it " <>
           "(or it does not read back as it is stored)"
     }}
  end

  defp read(server, key) do
    case LiteStash.get(server, key) do
      {:ok, value} -> {:ok, {:ok, value}}
      {:error, %Error{reason: :not_found}} -> {:ok, :absent}
      {:error, %Error{}} = error -> error
    end
  end

  defp write(server, key, :absent, new), do: LiteStash.put_new(server, key, new)
  defp write(server, key, {:ok, old}, new), do: LiteStash.compare_and_set(server, key, old, new)
end
