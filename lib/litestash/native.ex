defmodule LiteStash.Native do
  @moduledoc false
  # The NIF stubs, one section per file of native/litestash_nif/src. The
  # protocol around them (server terms, the reply reference, `:queued`)
  # lives in LiteStash.Call. `server` is a registered name, an owner pid
  # or a store handle.

  # The test build carries the test hooks (`debug_*`); the others do not.
  @library if Mix.env() == :test,
             do: ~c"native/litestash_nif_test",
             else: ~c"native/litestash_nif"

  @on_load :load_nif

  def load_nif do
    case :code.priv_dir(:litestash) do
      {:error, _} ->
        {:error, :litestash_priv_dir_not_found}

      dir ->
        path = :filename.join(dir, @library)

        case :erlang.load_nif(path, 0) do
          :ok ->
            :ok

          {:error, {reason, text}} ->
            IO.warn("LiteStash could not load its NIF from #{path}: #{reason} #{text}", [])
            {:error, reason}
        end
    end
  end

  ## admin.rs

  def shard_count, do: err()
  # options: the validated options of LiteStash.start_link/1 but name and
  # data_dir, as a map, plus memory: and readers_per_shard: (with memory: true
  # the path is ignored; concurrent_commits: :auto is passed as nil)
  def open(_path, _options), do: err()
  def monitor_owner(_store), do: err()
  def close(_store), do: err()
  def backup(_server, _dest), do: err()
  def info(_server), do: err()
  # bytes SQLite holds in this process, over every store
  def sqlite_memory_used, do: err()
  def inspect_dir(_dir, _integrity?, _sample), do: err()

  ## registry.rs

  def register(_name_or_nil, _store), do: err()
  def lookup(_server), do: err()
  def unregister(_store), do: err()

  ## read.rs (get, exists, ttl: the value cache on the caller's scheduler,
  ## else dirty IO; the others dirty IO)

  def get(_server, _key), do: err()
  def get_many(_server, _keys), do: err()
  def exists(_server, _key), do: err()
  def keys(_server, _prefix), do: err()
  def count(_server, _prefix), do: err()
  def ttl(_server, _key), do: err()
  def snapshot_open(_server, _shard, _prefix), do: err()
  def snapshot_next(_cursor, _limit, _with_values?), do: err()
  def snapshot_close(_cursor), do: err()

  ## write.rs: each answers, or returns :queued and the answer comes as {ref, answer}

  def set(_server, _ref, _key, _value, _ttl_ms_or_nil), do: err()
  def put_new(_server, _ref, _key, _value, _ttl_ms_or_nil), do: err()
  def compare_and_set(_server, _ref, _key, _expected, _new, _ttl_ms_or_nil), do: err()
  def incr(_server, _ref, _key, _by), do: err()
  def delete(_server, _ref, _key), do: err()
  def expire(_server, _ref, _key, _ttl_ms_or_nil), do: err()
  def set_many(_server, _ref, _pairs), do: err()
  def clear(_server, _ref), do: err()
  def compact(_server, _ref), do: err()

  ## replica.rs and write.rs: a replica's primitives (contract section 10)

  def shard_of(_key), do: err()
  def replica_applied(_server, _shard), do: err()
  def shard_snapshot(_server, _shard, _dest), do: err()
  # ops: {:set, key, value, at | nil}, {:put_new, key, value, at | nil},
  # {:cas, key, expected, new, at | nil}, {:incr, key, by}, {:delete, key},
  # {:expire, key, at | nil}, :clear, {:sweep, limit}; `at` absolute Unix ms
  def replica_apply(_server, _ref, _shard, _index, _now_ms, _ops), do: err()
  def shard_install(_server, _ref, _shard, _src), do: err()

  ## events.rs

  def set_event_receiver(_store, _pid_or_nil), do: err()
  def event_handled(_store), do: err()

  ## contract.rs

  def encode_value(_term), do: err()
  def decode_value(_bytes), do: err()

  ## error.rs

  def error_reasons, do: err()

  ## slices.rs

  def slices_measure(_on?), do: err()
  def slices_take, do: err()

  ## test_hooks.rs (only in the :test build)

  def debug_poison_locks(_store), do: err()
  def debug_panic, do: err()
  def debug_panic_in_next_write(_store, _key), do: err()
  def debug_capture_panics(_on?), do: err()
  def debug_fits_normal_budget(_value), do: err()
  def debug_pairs_fit_normal_budget(_pairs), do: err()

  defp err, do: :erlang.nif_error(:nif_not_loaded)
end
