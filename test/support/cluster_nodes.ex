defmodule LiteStash.Test.ClusterNodes do
  @moduledoc false
  # Local member nodes for the cluster tests: OS processes of their own,
  # started with OTP's :peer on 127.0.0.1, with this VM's code path (so Ra,
  # found through ERL_LIBS, and this build of LiteStash). The peers are
  # controlled over their standard I/O, so that cutting their distribution
  # links (partitions) never cuts the test's hold on them; this VM joins
  # the distribution as a hidden node, a client of every member that
  # takes no part in their mesh.

  @cookie :litestash_cluster_test

  @doc "Makes this VM a hidden distributed node (epmd started if needed)."
  @spec ensure_distributed!() :: node()
  def ensure_distributed! do
    unless Node.alive?() do
      {_, 0} = System.cmd("epmd", ["-daemon"])
      name = :"litestash_test_#{System.unique_integer([:positive])}@127.0.0.1"
      {:ok, _} = :net_kernel.start(name, %{name_domain: :longnames, hidden: true})
    end

    :erlang.set_cookie(node(), @cookie)
    node()
  end

  @doc "Starts (or restarts, with the same name) a member node; returns its handle."
  @spec start!(atom()) :: %{peer: pid(), node: node(), name: atom()}
  def start!(name) do
    args =
      Enum.flat_map(:code.get_path(), &[~c"-pa", &1]) ++
        [~c"-setcookie", Atom.to_charlist(@cookie)] ++
        ~w(-connect_all false -kernel prevent_overlapping_partitions false)c

    {:ok, peer, node} =
      :peer.start(%{
        name: name,
        host: ~c"127.0.0.1",
        longnames: true,
        connection: :standard_io,
        args: args,
        wait_boot: 30_000
      })

    # Partitions and kills make Ra and the VM log expected errors by the
    # hundred; LITESTASH_CLUSTER_LOG=warning shows them.
    level = String.to_atom(System.get_env("LITESTASH_CLUSTER_LOG", "critical"))
    :ok = :peer.call(peer, :logger, :set_primary_config, [:level, level])
    {:ok, _} = :peer.call(peer, :application, :ensure_all_started, [:elixir])
    {:ok, _} = :peer.call(peer, :application, :ensure_all_started, [:logger])

    for {key, value} <- Application.get_all_env(:litestash) do
      :ok = :peer.call(peer, :application, :set_env, [:litestash, key, value])
    end

    %{peer: peer, node: node, name: name}
  end

  @doc "Runs `fun` of `mod` on the member (over its standard I/O)."
  @spec call(map(), module(), atom(), list(), timeout()) :: term()
  def call(%{peer: peer}, mod, fun, args, timeout \\ 60_000),
    do: :peer.call(peer, mod, fun, args, timeout)

  @doc """
  Starts the store's cluster member on the node, unlinked from the call
  that starts it (a process of the node's own holds the link).
  """
  @spec start_member!(map(), keyword()) :: :ok
  def start_member!(member, opts) do
    :ok = call(member, __MODULE__, :start_member_here, [opts])
  end

  @doc false
  def start_member_here(opts) do
    parent = self()

    spawn(fn ->
      case LiteStash.start_link(opts) do
        {:ok, _} ->
          send(parent, {:started, :ok})
          Process.sleep(:infinity)

        other ->
          send(parent, {:started, other})
      end
    end)

    receive do
      {:started, result} -> result
    after
      60_000 -> :timeout
    end
  end

  @doc "The member's OS pid."
  @spec os_pid(map()) :: pos_integer()
  def os_pid(member), do: member |> call(:os, :getpid, []) |> List.to_integer()

  @doc "SIGKILLs the member's OS process and waits until it is gone."
  @spec kill!(map()) :: :ok
  def kill!(member) do
    ref = Process.monitor(member.peer)
    {_, 0} = System.cmd("kill", ["-KILL", Integer.to_string(os_pid(member))])

    receive do
      {:DOWN, ^ref, _, _, _} -> :ok
    after
      30_000 -> raise "peer #{member.node} did not go down after SIGKILL"
    end
  end

  @doc "SIGKILLs several members at once (one kill(1) for all of them)."
  @spec kill_all!([map()]) :: :ok
  def kill_all!(members) do
    refs = Enum.map(members, &Process.monitor(&1.peer))
    pids = Enum.map(members, &Integer.to_string(os_pid(&1)))
    {_, 0} = System.cmd("kill", ["-KILL" | pids])

    for ref <- refs do
      receive do
        {:DOWN, ^ref, _, _, _} -> :ok
      after
        30_000 -> raise "a peer did not go down after SIGKILL"
      end
    end

    :ok
  end

  @doc "Stops a member node if it still runs."
  @spec stop(map()) :: :ok
  def stop(member) do
    :peer.stop(member.peer)
  catch
    :exit, _ -> :ok
  end

  @doc """
  Cuts `member` off from `others` and keeps it cut: each side takes the
  other for a node with another cookie, so no reconnection succeeds.
  """
  @spec partition!(map(), [map()]) :: :ok
  def partition!(member, others) do
    for other <- others do
      # Different cookies on each side: no handshake between them passes.
      true = call(member, :erlang, :set_cookie, [other.node, :cut_off_one_side])
      true = call(other, :erlang, :set_cookie, [member.node, :cut_off_other_side])
      call(member, :erlang, :disconnect_node, [other.node])
      call(other, :erlang, :disconnect_node, [member.node])
    end

    :ok
  end

  @doc "Heals a partition made by partition!/2."
  @spec heal!(map(), [map()]) :: :ok
  def heal!(member, others) do
    for other <- others do
      true = call(member, :erlang, :set_cookie, [other.node, @cookie])
      true = call(other, :erlang, :set_cookie, [member.node, @cookie])
    end

    for other <- others, do: connect!(member, other, 30_000)
    :ok
  end

  # A connection attempt right after the cookies change can still fail
  # (a handshake of the cut-off time in flight, on a loaded machine):
  # try again until the deadline.
  defp connect!(member, other, left) do
    cond do
      call(member, :net_kernel, :connect_node, [other.node]) ->
        :ok

      left <= 0 ->
        raise "#{member.node} cannot reconnect to #{other.node} after healing"

      true ->
        Process.sleep(200)
        connect!(member, other, left - 200)
    end
  end
end
