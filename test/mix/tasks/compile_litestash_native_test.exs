defmodule Mix.Tasks.Compile.LitestashNativeTest do
  use ExUnit.Case, async: false

  alias Mix.Tasks.Compile.LitestashNative

  @manifest Path.join(Mix.Project.manifest_path(), "compile.litestash_native")
  # The :test build, with its test hooks, has a name of its own.
  @installed Path.expand("../../../priv/native/litestash_nif_test.so", __DIR__)

  describe "run/1" do
    test "is a no-op when nothing in the Cargo workspace changed" do
      # `mix test` compiled the project, so the library is installed and
      # the manifest holds the workspace's fingerprint.
      assert File.exists?(@installed)
      assert File.regular?(@manifest)
      installed_before = File.stat!(@installed)
      assert LitestashNative.run([]) == {:noop, []}
      assert File.stat!(@installed) == installed_before
    end

    test "priv/ is linked into the build so the NIF loads from :code.priv_dir" do
      priv = :code.priv_dir(:litestash) |> to_string()
      assert File.exists?(Path.join(priv, "native/litestash_nif_test.so"))
      assert LiteStash.Native.decode_value(<<0xC0>>) == {:ok, nil}
    end

    test "a stale fingerprint rebuilds and installs by rename, not in place" do
      original = File.read!(@manifest)
      %File.Stat{inode: inode_before} = File.stat!(@installed)
      File.write!(@manifest, "stale")

      # cargo finds nothing to compile; the library is installed again.
      assert LitestashNative.run([]) == {:ok, []}
      assert File.read!(@manifest) == original
      %File.Stat{inode: inode_after} = File.stat!(@installed)
      assert inode_after != inode_before, "the loaded library was overwritten in place"
      assert LitestashNative.run([]) == {:noop, []}
    end
  end
end
