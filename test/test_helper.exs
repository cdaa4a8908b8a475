# :scheduler (the 1 ms timer probe) runs on its own, in a VM of its own
# with nothing else under way: `make test` runs `mix test --only scheduler`.
#
# :tmpfs tests mount a small tmpfs to fill a real disk: they need to be
# allowed to mount one (root with CAP_SYS_ADMIN, as CI here is). Where a
# trial mount fails they are left out, saying so.
probe =
  Path.join(System.tmp_dir!(), "litestash-mount-probe-#{System.unique_integer([:positive])}")

File.mkdir_p!(probe)

can_mount? =
  System.find_executable("mount") != nil and
    case System.cmd("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
           stderr_to_stdout: true
         ) do
      {_, 0} ->
        System.cmd("umount", [probe])
        true

      _ ->
        false
    end

File.rm_rf!(probe)

unless can_mount? do
  IO.puts("Leaving out the :tmpfs tests (a full disk on a tmpfs): this user cannot mount one.")
end

ExUnit.start(exclude: [:slow_external, :scheduler] ++ if(can_mount?, do: [], else: [:tmpfs]))
