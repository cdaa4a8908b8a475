defmodule LiteStash.Native do
  @moduledoc false
  # The NIF stubs. Reads run on dirty IO schedulers; writes return :ok once
  # queued, and the shard's writer sends {ref, result} after the commit.
  # `:reschedule` means: the term is too large to walk on a normal
  # scheduler, call the `_dirty` variant.

  @on_load :load_nif

  def load_nif do
    case :code.priv_dir(:litestash) do
      {:error, _} ->
        {:error, :litestash_priv_dir_not_found}

      dir ->
        path = :filename.join(dir, ~c"native/litestash_nif")

        case :erlang.load_nif(path, 0) do
          :ok ->
            :ok

          {:error, {reason, text}} ->
            IO.warn("LiteStash could not load its NIF from #{path}: #{reason} #{text}", [])
            {:error, reason}
        end
    end
  end

  def open(_path, _synchronous, _busy_timeout_ms, _max_page_count, _sweep_interval_ms, _inline),
    do: err()

  def monitor_owner(_store), do: err()
  def register(_name, _store, _telemetry?), do: err()
  def lookup(_name), do: err()
  def unregister(_name, _store), do: err()
  def set_event_receiver(_store, _pid_or_nil), do: err()
  def close(_store), do: err()
  def get(_store, _key), do: err()
  def get_many(_store, _keys), do: err()
  def exists(_store, _key), do: err()
  def keys(_store, _prefix), do: err()
  def count(_store, _prefix), do: err()
  def ttl(_store, _key), do: err()
  def snapshot_open(_store, _shard, _prefix), do: err()
  def snapshot_next(_cursor, _limit, _with_values), do: err()
  def snapshot_close(_cursor), do: err()
  def backup(_store, _dest), do: err()
  def info(_store), do: err()
  def inspect_dir(_dir, _integrity, _sample), do: err()
  # mode: {:set, ttl_ms | nil} | :put_new
  def set(_store, _ref, _key, _value, _mode), do: err()
  def set_dirty(_store, _ref, _key, _value, _mode), do: err()
  def compare_and_set(_store, _ref, _key, _expected, _new), do: err()
  def compare_and_set_dirty(_store, _ref, _key, _expected, _new), do: err()
  def expire(_store, _ref, _key, _ttl_ms), do: err()
  def incr(_store, _ref, _key, _by), do: err()
  def incr_dirty(_store, _ref, _key, _by), do: err()
  def compact(_store, _ref), do: err()
  def set_many(_store, _ref, _pairs), do: err()
  def set_many_dirty(_store, _ref, _pairs), do: err()
  def delete(_store, _ref, _key), do: err()
  def delete_dirty(_store, _ref, _key), do: err()
  def clear(_store, _ref), do: err()
  def encode_value(_term), do: err()
  def decode_value(_bytes), do: err()
  def debug_poison_locks(_store), do: err()
  def debug_panic, do: err()

  defp err, do: :erlang.nif_error(:nif_not_loaded)
end
