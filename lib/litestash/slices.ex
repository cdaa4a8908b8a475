defmodule LiteStash.Slices do
  @moduledoc """
  How long LiteStash's calls hold the scheduler that runs them, measured
  inside the NIF: the proof, for any input, of the rule that nothing of
  LiteStash blocks a normal scheduler for more than about 100 us.

  A LiteStash call that may wait (a read of the disk, a commit, a term too
  big to convert in microseconds) continues on a dirty IO scheduler or is
  queued to a writer thread; what runs on the calling process's normal
  scheduler is the part that provably stays in memory: a value cache hit,
  a read the OS can serve without waiting, the bounded first step of a
  write. While measuring is on, every such NIF call (on the normal
  scheduler; the dirty part of a call is not counted) records its wall
  time, which is what the scheduler lost, and the CPU time of its thread,
  which the OS preempting the thread on a busy machine does not inflate.

  Measuring is off by default and then costs one relaxed atomic load per
  call. It counts the calls of every store of the VM, from every process:
  measure with nothing else of LiteStash running for figures of one
  workload.

      {:ok, %{max_cpu_ns: cpu, over_bound_cpu: 0}} =
        LiteStash.Slices.measure(fn ->
          LiteStash.set(:cache, "big", String.duplicate("x", 5_000_000))
        end)

  The benchmark (`make bench`) prints these figures for inputs from a few
  bytes to a 10M-element list, against the 100 us bound.
  """

  @typedoc """
  The calls on a normal scheduler since the figures were last taken, times
  in ns: `calls`, how many were over `bound_ns` (100 us) by the wall clock
  and by the thread's CPU clock, the longest, the mean, and the median, 99th
  and 99.9th percentiles (rounded up by at most 6.25 %, never above the
  longest).
  """
  @type durations :: %{
          calls: non_neg_integer(),
          bound_ns: pos_integer(),
          over_bound_wall: non_neg_integer(),
          over_bound_cpu: non_neg_integer(),
          max_wall_ns: non_neg_integer(),
          max_cpu_ns: non_neg_integer(),
          mean_wall_ns: non_neg_integer(),
          mean_cpu_ns: non_neg_integer(),
          p50_wall_ns: non_neg_integer(),
          p50_cpu_ns: non_neg_integer(),
          p99_wall_ns: non_neg_integer(),
          p999_wall_ns: non_neg_integer(),
          p99_cpu_ns: non_neg_integer(),
          p999_cpu_ns: non_neg_integer()
        }

  @doc """
  Starts measuring, from zero (figures taken before are dropped).
  """
  @spec start() :: :ok
  def start do
    LiteStash.Native.slices_measure(true)
    _ = LiteStash.Native.slices_take()
    :ok
  end

  @doc """
  Stops measuring and returns the figures since `start/0` or the last
  `take/0`.
  """
  @spec stop() :: durations()
  def stop do
    LiteStash.Native.slices_measure(false)
    LiteStash.Native.slices_take()
  end

  @doc """
  The figures since `start/0` or the last `take/0`, and measuring goes on
  from zero. (A call that ends during the take may land in this take or
  the next, one figure at a time.)
  """
  @spec take() :: durations()
  def take, do: LiteStash.Native.slices_take()

  @doc """
  Runs `fun` while measuring and returns its result with the figures of
  the calls made meanwhile (by any process). Measuring is off afterwards.
  """
  @spec measure((() -> result)) :: {result, durations()} when result: term()
  def measure(fun) when is_function(fun, 0) do
    start()

    result =
      try do
        fun.()
      after
        LiteStash.Native.slices_measure(false)
      end

    {result, take()}
  end
end
