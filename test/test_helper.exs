# :scheduler (the 1 ms timer probe) runs on its own, in a VM of its own
# with nothing else under way: `make test` runs `mix test --only scheduler`.
#
# :tmpfs tests mount a small tmpfs to fill a real disk: root only. CI runs
# as root and runs them; elsewhere they are left out, saying so.
{uid, 0} = System.cmd("id", ["-u"])
root? = String.trim(uid) == "0"

unless root? do
  IO.puts("Leaving out the :tmpfs tests (a full disk on a tmpfs): they need root to mount one.")
end

ExUnit.start(exclude: [:slow_external, :scheduler] ++ if(root?, do: [], else: [:tmpfs]))
