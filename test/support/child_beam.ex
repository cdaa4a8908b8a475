defmodule LiteStash.Test.ChildBeam do
  @moduledoc false
  # A second BEAM, an OS process of its own, that uses LiteStash from this
  # build (`elixir -pa _build/test/lib/litestash/ebin -e ...`): the tests
  # kill it with SIGKILL, or run two of them on one data dir. It reports on
  # stdout, one line per event; the parent reads whole lines only, so a line
  # cut short by a kill never counts.

  @slots 40

  ## Parent side

  @doc "Starts a child BEAM running `main/0` with `args`, in `cwd`."
  @spec start([String.t()], String.t()) :: %{port: port(), os_pid: pos_integer()}
  def start(args, cwd) do
    ebin = Path.join(:code.lib_dir(:litestash), "ebin")

    port =
      Port.open({:spawn_executable, System.find_executable("elixir")}, [
        :binary,
        :exit_status,
        {:line, 65_536},
        {:cd, cwd},
        args: ["-pa", ebin, "-e", "LiteStash.Test.ChildBeam.main()", "--" | args]
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    %{port: port, os_pid: os_pid}
  end

  @doc "Waits for a line starting with `prefix`; returns the lines read so far."
  @spec await_line(map(), String.t(), timeout()) :: [String.t()]
  def await_line(%{port: port} = child, prefix, timeout \\ 60_000, seen \\ []) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        if String.starts_with?(line, prefix),
          do: Enum.reverse([line | seen]),
          else: await_line(child, prefix, timeout, [line | seen])

      {^port, {:data, {:noeol, _}}} ->
        await_line(child, prefix, timeout, seen)

      {^port, {:exit_status, status}} ->
        raise "the child BEAM exited with status #{status} before #{inspect(prefix)}: " <>
                inspect(Enum.reverse(seen))
    after
      timeout -> raise "no #{inspect(prefix)} from the child BEAM in #{timeout} ms"
    end
  end

  @doc "SIGKILLs the child; returns every whole line it wrote that was not read yet."
  @spec kill(map()) :: [String.t()]
  def kill(%{os_pid: os_pid} = child) do
    {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(os_pid)])
    {137, lines} = await_exit(child, 60_000)
    lines
  end

  @doc "Waits for the child to exit: `{status, lines not read yet}`."
  @spec await_exit(map(), timeout()) :: {non_neg_integer(), [String.t()]}
  def await_exit(%{port: port}, timeout, lines \\ []) do
    receive do
      {^port, {:data, {:eol, line}}} -> await_exit(%{port: port}, timeout, [line | lines])
      {^port, {:data, {:noeol, _}}} -> await_exit(%{port: port}, timeout, lines)
      {^port, {:exit_status, status}} -> {status, Enum.reverse(lines)}
    after
      timeout -> raise "the child BEAM did not exit in #{timeout} ms"
    end
  end

  @doc "The key that write `n` of writer `p` in `round` goes to."
  @spec key(non_neg_integer(), non_neg_integer(), non_neg_integer()) :: String.t()
  def key(round, p, n), do: "r#{round}:p#{p}:k#{rem(n, @slots)}"

  @doc "Every key writer `p` of `round` may have written: `{slot, key}`."
  @spec slots(non_neg_integer(), non_neg_integer()) :: [{non_neg_integer(), String.t()}]
  def slots(round, p), do: for(slot <- 0..(@slots - 1), do: {slot, key(round, p, slot)})

  @doc "The number of keys each writer cycles over."
  @spec slot_count() :: pos_integer()
  def slot_count, do: @slots

  @doc "The value of write `n` of writer `p`; its size varies so pages split and overflow."
  @spec value(non_neg_integer(), non_neg_integer()) :: map()
  def value(p, n) do
    %{"p" => p, "n" => n, "pad" => :binary.copy(<<rem(n, 251)>>, rem(n * 37, 3000))}
  end

  ## Child side

  @doc false
  def main do
    case System.argv() do
      ["crash", dir, sync, processes, round] ->
        crash_writer(
          dir,
          String.to_atom(sync),
          String.to_integer(processes),
          String.to_integer(round)
        )

      ["share", dir, id, count] ->
        shared_writer(dir, id, String.to_integer(count))

      ["backup", dir, dest_root] ->
        backup_loop(dir, dest_root)
    end
  end

  # Backs the store up to dest_root/1, /2, ... until killed; prints
  # `backup n` as each begins.
  defp backup_loop(dir, dest_root) do
    out = stdout()
    {:ok, _} = LiteStash.start_link(data_dir: dir, name: :child)

    Enum.each(Stream.iterate(1, &(&1 + 1)), fn n ->
      say(out, "backup #{n}")
      :ok = LiteStash.backup(:child, Path.join(dest_root, "#{n}"))
    end)
  end

  # Writes until killed; prints `ack p n` after each set returns :ok.
  defp crash_writer(dir, sync, processes, round) do
    out = stdout()
    say(out, "opening")
    {:ok, _} = LiteStash.start_link(data_dir: dir, name: :child, synchronous: sync)
    say(out, "ready")

    for p <- 0..(processes - 1) do
      spawn_link(fn ->
        out = stdout()

        Enum.each(Stream.iterate(0, &(&1 + 1)), fn n ->
          :ok = LiteStash.set(:child, key(round, p, n), value(p, n))
          say(out, "ack #{p} #{n}")
        end)
      end)
    end

    Process.sleep(:infinity)
  end

  # IO.puts returns once the VM has queued the line, which a kill loses; a
  # raw write(2) returns once the line is in the pipe. One per process (a
  # raw file belongs to its opener); lines under PIPE_BUF never interleave.
  defp stdout do
    {:ok, fd} = :file.open(~c"/dev/stdout", [:append, :raw, :binary])
    fd
  end

  defp say(fd, line), do: :ok = :file.write(fd, [line, ?\n])

  # Writes `count` keys of its own (by set and by mset), reads them back,
  # reads what the other writer has stored so far, stops cleanly.
  defp shared_writer(dir, id, count) do
    {:ok, _} = LiteStash.start_link(data_dir: dir, name: :child)
    other = if id == "a", do: "b", else: "a"

    for chunk <- Enum.chunk_every(0..(count - 1), 10) do
      pairs = for i <- chunk, do: {"#{id}:#{i}", %{"by" => id, "i" => i}}

      if rem(hd(chunk), 20) == 0 do
        :ok = LiteStash.mset(:child, pairs)
      else
        Enum.each(pairs, fn {k, v} -> :ok = LiteStash.set(:child, k, v) end)
      end

      {:ok, _} = LiteStash.mget(:child, for(i <- chunk, do: "#{other}:#{i}"))
    end

    mine = for i <- 0..(count - 1), into: %{}, do: {"#{id}:#{i}", %{"by" => id, "i" => i}}
    {:ok, ^mine} = LiteStash.mget(:child, Map.keys(mine))
    {:ok, theirs} = LiteStash.mget(:child, for(i <- 0..(count - 1), do: "#{other}:#{i}"))
    true = Enum.all?(theirs, fn {"" <> _, %{"by" => ^other}} -> true end)
    :ok = LiteStash.stop(:child)
    IO.puts("done #{id} #{count} #{map_size(theirs)}")
  end
end
