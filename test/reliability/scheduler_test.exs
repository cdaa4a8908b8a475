defmodule LiteStash.Reliability.SchedulerTest do
  # No NIF call holds a normal scheduler much over 100 us, whatever the
  # input: a big value is walked on the caller's scheduler only within a
  # budget, then the call goes on on a dirty one. Proved with a probe that
  # asks for a 1 ms timer over and over and records how late it fires while
  # big writes run, and by timing the normal-scheduler step at its largest.
  # Bounds are generous (the machine is shared); the benchmark holds the
  # real ones.
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers
  alias LiteStash.Native

  @moduletag :tmp_dir
  # Run alone by `make test` (`mix test --only scheduler`), see test_helper.exs.
  @moduletag :scheduler

  # At high priority, the probe runs as soon as its timer fires unless a
  # scheduler is held by something that does not yield (a NIF, a GC):
  # lateness then measures that, not the load of ordinary processes.
  defp start_probe do
    parent = self()

    spawn_link(fn ->
      Process.flag(:priority, :high)
      probe(parent, [])
    end)
  end

  defp probe(parent, late) do
    start = System.monotonic_time(:microsecond)

    receive do
      :stop -> send(parent, {:probe, late})
    after
      1 ->
        late_us = System.monotonic_time(:microsecond) - start - 1_000
        probe(parent, [max(late_us, 0) | late])
    end
  end

  defp stop_probe(probe) do
    send(probe, :stop)

    receive do
      {:probe, late} -> Enum.sort(late)
    end
  end

  defp percentile(sorted, p),
    do: Enum.at(sorted, min(length(sorted) - 1, div(length(sorted) * p, 100)))

  defp write!(call) do
    ref = make_ref()

    case call.(ref) do
      :queued ->
        receive do
          {^ref, answer} -> answer
        end

      answer ->
        answer
    end
  end

  # A process that builds its input with `build`, then waits to run
  # `write` on it (see run/1).
  defp prepared(build, write) do
    parent = self()

    pid =
      spawn_link(fn ->
        input = build.()
        # A full sweep leaves every live word young, so the next minor
        # collection (the one after our NIF's answer lands in the heap)
        # would copy it all to the old heap: 117 ms for the 10M-element
        # list, on a normal scheduler. Collect twice here, before the probe.
        :erlang.garbage_collect()
        :erlang.garbage_collect(self(), type: :minor)
        send(parent, {:ready, self()})

        receive do
          :go -> send(parent, {:done, self(), write.(input)})
        end
      end)

    receive do
      {:ready, ^pid} -> pid
    end
  end

  defp run(pid) do
    send(pid, :go)

    receive do
      {:done, ^pid, result} -> result
    end
  end

  # Runs `fun` under the probe: the probe's lateness in us, sorted.
  defp probed(fun) do
    probe = start_probe()
    fun.()
    stop_probe(probe)
  end

  test "big values, a 10M-element list and a 1,000 x 5 KB mset leave the schedulers free",
       %{tmp_dir: dir} do
    # Every write through the normal-scheduler step: none commits inline.
    s = start_store!(dir, inline_commits: 0)
    big = for i <- 1..4, do: :binary.copy(<<i>>, 4 * 1024 * 1024)

    # The 10M-element list and the pairs live in processes of their own,
    # built before the probe starts: a process holding 160 MB of list is
    # slow to garbage-collect, which would be the test's doing, not ours.
    long =
      prepared(fn -> Enum.to_list(1..10_000_000) end, fn list ->
        write!(&Native.set(s, &1, "long", list, nil))
      end)

    mset =
      prepared(fn -> for i <- 1..1_000, do: {"pair:#{i}", :binary.copy("p", 5 * 1024)} end, fn
        pairs -> for _ <- 1..3, do: :ok = write!(&Native.set_many(s, &1, pairs))
      end)

    # The machine is shared: what the probe sees with nothing of ours
    # running is the floor the bound stands on.
    idle = probed(fn -> Process.sleep(1_000) end)

    LiteStash.Slices.start()

    late =
      probed(fn ->
        # Two at a time: more would mostly measure our own writer and
        # dirty threads competing with the schedulers for 2 cores.
        writers =
          for w <- 1..2 do
            Task.async(fn ->
              for round <- 1..10 do
                value = Enum.at(big, rem(w + round, 4))
                :ok = write!(&Native.set(s, &1, "big:#{w}:#{round}", value, nil))
              end
            end)
          end

        # Its values' estimated encoding is over 64 MiB: refused, on a
        # dirty scheduler, after a walk that started on the normal one.
        assert {:error, %LiteStash.Error{reason: :value_too_large}} = run(long)
        assert [:ok, :ok, :ok] = run(mset)
        Task.await_many(writers, 120_000)
      end)

    slices = LiteStash.Slices.stop()
    [p50, p99] = Enum.map([50, 99], &percentile(late, &1))
    idle_p99 = percentile(idle, 99)

    IO.puts(
      "\n  NIF calls on a normal scheduler meanwhile: #{slices.calls}, longest " <>
        "#{div(slices.max_wall_ns, 1000)} us wall, #{div(slices.max_cpu_ns, 1000)} us CPU, " <>
        "#{slices.over_bound_cpu} over 100 us of CPU"
    )

    # 20 sets, 1 + 3 msets, each one call (more if an answer came by
    # message and the owner acknowledged events).
    assert slices.calls >= 24
    # Converted whole on the caller's scheduler, a 4 MiB value took 9-18 ms
    # there and the list 47 ms: the walk's budget is what keeps this low.
    # 100 us is the aim (the benchmark's bound); 2 ms allows for a loaded,
    # shared machine, whose page faults count as the thread's CPU time.
    assert slices.max_cpu_ns < 2_000_000, "longest call #{slices.max_cpu_ns} ns of CPU"

    IO.puts(
      "\n  1 ms timer probe, #{length(late)} samples during 20 x 4 MiB sets, a 10M-element " <>
        "list and 3 x 1,000 x 5 KiB msets: lateness p50 #{p50} us, p99 #{p99} us, " <>
        "max #{List.last(late)} us (idle: p99 #{idle_p99} us)"
    )

    assert length(late) > 50
    # Before the walk was bounded: 143 ms (85-415 ms in issue 14). Our own
    # writer and dirty threads share the 2 cores with the schedulers, so
    # on a loaded machine the probe sees 30-50 ms even so; the idle floor
    # scales the bound with the load. (At a load average of 25 on 2 cores
    # the probe is starved either way and this can fail.)
    assert p99 < 50_000 + 3 * idle_p99, "p99 lateness #{p99} us, idle #{idle_p99} us"
    assert {:ok, _} = LiteStash.get(s, "big:1:1")
  end

  # The largest n for which `fits.(make.(n))`, by bisection.
  defp largest(make, fits, lo, hi) when lo >= hi, do: if(fits.(make.(lo)), do: lo, else: 0)

  defp largest(make, fits, lo, hi) do
    mid = div(lo + hi + 1, 2)
    if fits.(make.(mid)), do: largest(make, fits, mid, hi), else: largest(make, fits, lo, mid - 1)
  end

  defp median_us(call) do
    times =
      for _ <- 1..31 do
        ref = make_ref()
        {us, answer} = :timer.tc(fn -> call.(ref) end)

        if answer == :queued do
          receive do
            {^ref, _} -> :ok
          end
        end

        us
      end

    times |> Enum.sort() |> Enum.at(15)
  end

  test "the normal-scheduler step of a write, at its largest input, takes about 100 us",
       %{tmp_dir: dir} do
    s = start_store!(dir, inline_commits: 0)
    fits = &Native.debug_fits_normal_budget/1
    pairs_fit = &Native.debug_pairs_fit_normal_budget/1

    shapes = [
      {"binary", &:binary.copy("a", &1), fits},
      {"list of strings", fn n -> for i <- 1..n, do: "s#{i}" end, fits},
      {"map with atom keys", fn n -> Map.new(1..n, &{:"a#{&1}", &1}) end, fits},
      {"list of maps", fn n -> for i <- 1..n, do: %{"a" => i, "b" => [i]} end, fits},
      {"mset pairs", fn n -> for i <- 1..n, do: {"p#{i}", i} end, pairs_fit}
    ]

    for {name, make, fit} <- shapes do
      n = largest(make, fit, 1, 1_000_000)
      assert n > 0 and n < 1_000_000, "#{name}: the budget takes #{n}"
      value = make.(n)
      refute fit.(make.(n + 1))

      {us, slices} =
        LiteStash.Slices.measure(fn ->
          if fit == pairs_fit,
            do: median_us(&Native.set_many(s, &1, value)),
            else: median_us(&Native.set(s, &1, "k", value, nil))
        end)

      IO.puts(
        "\n  normal-scheduler step, #{name} of #{n} (the most the budget takes): median #{us} us " <>
          "from the caller, #{div(slices.p99_cpu_ns, 1000)} us p99 CPU in the NIF"
      )

      # 100 us is the aim; 2 ms allows for a loaded, shared machine.
      assert us < 2_000, "#{name}: #{us} us"
      assert slices.calls >= 31
      assert slices.p99_cpu_ns < 2_000_000, "#{name}: #{slices.p99_cpu_ns} ns of CPU"
    end
  end

  test "LiteStash.Slices counts each call made on the caller's scheduler, only while on",
       %{tmp_dir: dir} do
    s = start_store!(dir)
    keys = for i <- 1..50, do: "slice:#{i}"
    for k <- keys, do: :ok = LiteStash.set(s, k, %{"k" => k})
    for k <- keys, do: {:ok, _} = LiteStash.get(s, k)

    {answers, slices} =
      LiteStash.Slices.measure(fn ->
        for k <- keys, do: {LiteStash.get(s, k), LiteStash.exists?(s, k), LiteStash.ttl(s, k)}
      end)

    assert Enum.all?(answers, &match?({{:ok, %{}}, true, {:ok, :infinity}}, &1))
    # One NIF call per read, each a cache hit on this scheduler.
    assert slices.calls == 150
    assert slices.bound_ns == 100_000
    # Every call was timed, by both clocks (a hit takes a few us).
    assert slices.p50_wall_ns > 0 and slices.p50_cpu_ns > 0
    assert slices.mean_cpu_ns > 0 and slices.mean_wall_ns > 0

    # Off: nothing counted, and the next start begins from zero.
    for k <- keys, do: {:ok, _} = LiteStash.get(s, k)
    assert %{calls: 0, max_wall_ns: 0} = LiteStash.Slices.take()
    LiteStash.Slices.start()
    {:ok, _} = LiteStash.get(s, "slice:1")
    assert %{calls: 1} = LiteStash.Slices.stop()
  end

  test "a list too long for the budget is not counted first", %{tmp_dir: _} do
    # 10M cells: counting them alone took 47 ms. The walk stops early.
    # The fastest of 5 calls: a call's wall time includes any moment the
    # OS took the scheduler thread away (it measured 2.6 ms once, against
    # 15-126 us in a quiet VM), and a walk that counted the whole list
    # would be slow in every call.
    long = Enum.to_list(1..10_000_000)

    us =
      Enum.min(
        for _ <- 1..5 do
          {us, false} = :timer.tc(fn -> Native.debug_fits_normal_budget(long) end)
          us
        end
      )

    IO.puts(
      "\n  refusing a 10M-element list for the normal scheduler: fastest of 5 calls #{us} us"
    )

    assert us < 5_000
  end
end
