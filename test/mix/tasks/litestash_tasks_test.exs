defmodule Mix.Tasks.LitestashTasksTest do
  use ExUnit.Case, async: false

  import LiteStash.Test.Helpers
  alias LiteStash.Test.ChildBeam

  @moduletag :tmp_dir

  setup do
    Mix.shell(Mix.Shell.Process)
    on_exit(fn -> Mix.shell(Mix.Shell.IO) end)
  end

  defp run_task(task, args) do
    status =
      try do
        Mix.Task.rerun(task, args)
        0
      catch
        :exit, {:shutdown, code} -> code
      end

    {status, collect_output([])}
  end

  defp collect_output(acc) do
    receive do
      {:mix_shell, _, [line]} -> collect_output([line | acc])
    after
      0 -> acc |> Enum.reverse() |> Enum.join("\n")
    end
  end

  defp written_dir(dir) do
    s = start_store!(dir)
    :ok = LiteStash.mset(s, for(i <- 1..500, do: {"k#{i}", %{"i" => i}}))
    :ok = LiteStash.set(s, "t", 1, ttl: 600_000)
    :ok = LiteStash.stop(s)
    dir
  end

  describe "mix litestash.check" do
    test "passes a sound data dir with a line per shard", %{tmp_dir: dir} do
      {status, out} = run_task("litestash.check", [written_dir(dir)])
      assert status == 0
      assert out =~ "all 16 shard files pass"
      assert length(Regex.scan(~r/^ok   tables_/m, out)) == 16
    end

    test "fails on a shard whose row does not match its hash", %{tmp_dir: dir} do
      dir = written_dir(dir)
      db = Path.join(dir, "tables_ab/tables_ab.db")

      {_, 0} =
        System.cmd("python3", [
          "-c",
          "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); " <>
            "[c.execute('update \"%s\" set key = key || \"!\"' % t) for (t,) in " <>
            "c.execute(\"select name from sqlite_master where type='table' and name like 'tables_%'\").fetchall()]; c.commit()",
          db
        ])

      {status, out} = run_task("litestash.check", [dir])
      assert status == 1
      assert out =~ "FAIL tables_ab"
      assert out =~ "key_hash"
    end

    test "says 1 row, not 1 rows", %{tmp_dir: dir} do
      s = start_store!(dir)
      :ok = LiteStash.set(s, "only", 1)
      :ok = LiteStash.stop(s)
      {0, out} = run_task("litestash.check", [dir])
      assert out =~ ~r/: 1 row$/m
      refute out =~ "1 rows"
      assert out =~ ": 0 rows"
    end

    test "refuses a directory that is not a data dir", %{tmp_dir: dir} do
      {status, out} = run_task("litestash.check", [dir])
      assert status == 1
      assert out =~ "not a LiteStash data dir"
    end

    test "checks the contract fixture", %{tmp_dir: dir} do
      {status, _out} = run_task("litestash.check", [copy_fixture!(Path.join(dir, "f"))])
      assert status == 0
    end
  end

  describe "both tasks" do
    test "--help prints the usage and exits 0" do
      for task <- ["litestash.check", "litestash.stats"] do
        assert {0, out} = run_task(task, ["--help"])
        assert out =~ "mix #{task} DATA_DIR", task
      end
    end

    test "a missing dir does not exist", %{tmp_dir: dir} do
      missing = Path.join(dir, "nonexistent")

      for task <- ["litestash.check", "litestash.stats"] do
        assert {1, out} = run_task(task, [missing])
        assert out =~ "#{missing}: does not exist", task
        refute out =~ "not a directory"
      end
    end

    test "say when a store of this VM has the dir open, and still report", %{tmp_dir: dir} do
      data = written_dir(dir)
      _s = start_store!(data)

      assert {0, out} = run_task("litestash.check", [data])
      assert out =~ "is open in a running VM"
      assert out =~ "all 16 shard files pass"
      assert {0, out} = run_task("litestash.stats", [data])
      assert out =~ "is open in a running VM"
      assert out =~ ~r/^total\s+501\s+1\s/m
    end

    test "say when another OS process has the dir open", %{tmp_dir: dir} do
      data = Path.join(dir, "kv")
      child = ChildBeam.start(["crash", data, "normal", "1", "0"], dir)

      try do
        ChildBeam.await_line(child, "ack 0 3")
        assert {_, out} = run_task("litestash.stats", [data])
        assert out =~ "is open in a running VM"
        assert out =~ ~r/^total\s+\d+/m
      after
        ChildBeam.kill(child)
      end

      # Killed, it holds no lock: its leftover -shm files no longer count.
      assert {0, out} = run_task("litestash.stats", [data])
      refute out =~ "is open in a running VM"
    end

    test "a stopped store's dir is not reported open", %{tmp_dir: dir} do
      assert {0, out} = run_task("litestash.check", [written_dir(dir)])
      refute out =~ "is open"
    end
  end

  describe "mix litestash.stats" do
    test "prints a row per shard and the totals", %{tmp_dir: dir} do
      {status, out} = run_task("litestash.stats", [written_dir(dir)])
      assert status == 0
      assert out =~ ~r/^total\s+501\s+1\s/m
      assert length(Regex.scan(~r/^tables_/m, out)) == 16
    end

    test "refuses a directory that is not a data dir", %{tmp_dir: dir} do
      assert {1, out} = run_task("litestash.stats", [dir])
      assert out =~ "not a LiteStash data dir"
    end
  end
end
