defmodule LiteStash.TelemetryTest do
  # Handlers are global: not async.
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers

  @moduletag :tmp_dir

  setup do
    parent = self()
    id = "test-#{System.unique_integer()}"

    events = [
      [:litestash, :command, :start],
      [:litestash, :command, :stop],
      [:litestash, :command, :exception],
      [:litestash, :commit, :stop],
      [:litestash, :sweep, :stop],
      [:litestash, :backup, :stop]
    ]

    :ok =
      :telemetry.attach_many(
        id,
        events,
        fn event, measurements, metadata, _ ->
          send(parent, {:event, event, measurements, metadata})
        end,
        nil
      )

    on_exit(fn -> :telemetry.detach(id) end)
    %{handler_id: id}
  end

  test "commands run in spans only while a handler is attached", %{tmp_dir: dir, handler_id: id} do
    :ok = :telemetry.detach(id)
    s = start_store!(dir)
    refute LiteStash.Telemetry.listening_now?()
    :ok = LiteStash.set(s, "quiet", 1)

    parent = self()
    handler = fn event, m, meta, _ -> send(parent, {:late, event, m, meta}) end
    :ok = :telemetry.attach("late-#{id}", [:litestash, :command, :stop], handler, nil)
    on_exit(fn -> :telemetry.detach("late-#{id}") end)

    # The owner notices the new handler within a second.
    wait_until(&LiteStash.Telemetry.listening_now?/0, 3_000)
    :ok = LiteStash.set(s, "loud", 1)

    assert_receive {:late, [:litestash, :command, :stop], %{duration: _},
                    %{store: ^s, command: :set}}
  end

  test "commands emit start and stop spans with store and command", %{tmp_dir: dir} do
    s = start_store!(dir)
    :ok = LiteStash.set(s, "k", 1)
    {:ok, 1} = LiteStash.get(s, "k")

    for command <- [:set, :get] do
      assert_receive {:event, [:litestash, :command, :start], %{system_time: _},
                      %{store: ^s, command: ^command}}

      assert_receive {:event, [:litestash, :command, :stop], %{duration: d},
                      %{store: ^s, command: ^command}}

      assert is_integer(d) and d >= 0
    end
  end

  test ":stop carries result: :ok, or result: :error with the error's reason",
       %{tmp_dir: dir} do
    s = start_store!(dir)
    :ok = LiteStash.set(s, "k", 1)
    {:error, _} = LiteStash.get(s, "missing")
    {:error, _} = LiteStash.set(s, "t", {:tuple})

    assert_receive {:event, [:litestash, :command, :stop], _, %{command: :set, result: :ok} = ok}
    refute Map.has_key?(ok, :reason)

    assert_receive {:event, [:litestash, :command, :stop], _,
                    %{store: ^s, command: :get, result: :error, reason: :not_found}}

    assert_receive {:event, [:litestash, :command, :stop], _,
                    %{command: :set, result: :error, reason: :unsupported_value}}
  end

  test "a command that raises emits :exception and re-raises" do
    assert_raise RuntimeError, "boom", fn ->
      LiteStash.Telemetry.span(:some_store, :get, fn -> raise "boom" end)
    end

    assert_receive {:event, [:litestash, :command, :exception], %{duration: _},
                    %{store: :some_store, command: :get, kind: :error, reason: %RuntimeError{}}}
  end

  test "each group commit emits [:litestash, :commit, :stop] with its batch size",
       %{tmp_dir: dir} do
    s = start_store!(dir)

    1..200
    |> Task.async_stream(fn i -> :ok = LiteStash.set(s, "k#{i}", i) end, max_concurrency: 200)
    |> Stream.run()

    sizes = collect_commits([])
    assert Enum.sum(sizes) == 200
    assert Enum.all?(sizes, &(&1 >= 1))
  end

  test "sweeps and backups emit their events", %{tmp_dir: dir} do
    s = start_store!(Path.join(dir, "live"))
    :ok = LiteStash.set(s, "t", 1, ttl: 10)

    assert_receive {:event, [:litestash, :sweep, :stop], %{deleted: 1, duration: _},
                    %{store: ^s, shard: shard}},
                   5_000

    assert is_binary(shard)
    dest = Path.join(dir, "copy")
    :ok = LiteStash.backup(s, dest)

    assert_receive {:event, [:litestash, :backup, :stop], %{duration: _},
                    %{store: ^s, dest: ^dest, result: :ok}}
  end

  defp collect_commits(acc) do
    receive do
      {:event, [:litestash, :commit, :stop], %{batch_size: n, duration: _}, %{shard: _}} ->
        collect_commits([n | acc])
    after
      500 -> acc
    end
  end

  test "a slow handler: the owner's mailbox stays bounded, drops are counted, stop is prompt",
       %{tmp_dir: dir, handler_id: id} do
    :ok = :telemetry.detach(id)
    parent = self()
    # inline_commits: 0, so that every write is a commit event of a writer.
    s = start_store!(dir, inline_commits: 0)
    owner = Process.whereis(s)

    slow = fn _event, measurements, %{store: store}, _ ->
      if store == s do
        send(parent, {:dropped, measurements.dropped})
        Process.sleep(20)
      end
    end

    :ok = :telemetry.attach("slow-#{id}", [:litestash, :commit, :stop], slow, nil)
    on_exit(fn -> :telemetry.detach("slow-#{id}") end)
    wait_until(&LiteStash.Telemetry.listening_now?/0, 3_000)
    # The owner looks for handlers once a second: wait until it sends events.
    :ok = LiteStash.set(s, "warm", 1)
    assert_receive {:dropped, _}, 3_000

    longest = write_watching_mailbox(s, owner)
    IO.puts("\n  slow handler: longest owner mailbox #{longest} messages")
    # 64 events at most, and the odd refresh tick.
    assert longest <= 70

    # Once the handler catches up, the events it got carry the drops.
    wait_until(
      fn -> Process.info(owner, :message_queue_len) == {:message_queue_len, 0} end,
      10_000
    )

    dropped = collect_dropped(0)
    IO.puts("  events dropped and reported: #{dropped}")
    assert dropped > 0

    # A full mailbox again, then stop: it does not wait for the handler.
    write_watching_mailbox(s, owner)
    {stop_us, :ok} = :timer.tc(fn -> LiteStash.stop(s) end)
    IO.puts("  stop/1 behind a slow handler: #{div(stop_us, 1000)} ms")
    assert stop_us < 2_000_000
  end

  # Writes 2,000 keys from 8 processes; the longest the owner's mailbox got.
  defp write_watching_mailbox(s, owner) do
    writers =
      for w <- 1..8 do
        Task.async(fn ->
          for i <- 1..250, do: :ok = LiteStash.set(s, "w#{w}:#{i}", i)
        end)
      end

    longest = watch(owner, writers, 0)
    Task.await_many(writers, 60_000)
    longest
  end

  defp watch(owner, tasks, longest) do
    {:message_queue_len, n} = Process.info(owner, :message_queue_len)
    longest = max(longest, n)

    if Enum.any?(tasks, &Process.alive?(&1.pid)) do
      Process.sleep(5)
      watch(owner, tasks, longest)
    else
      longest
    end
  end

  defp collect_dropped(sum) do
    receive do
      {:dropped, n} -> collect_dropped(sum + n)
    after
      0 -> sum
    end
  end
end
