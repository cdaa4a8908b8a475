defmodule LiteStash.Error do
  @moduledoc """
  The error of every LiteStash call: `{:error, %LiteStash.Error{}}` from plain
  functions, raised by the bang variants.

  `reason` is an atom to match on; `message` says what happened in words,
  naming the key, file or path concerned.

  ## Reasons

    * `:not_found` - the key is not stored
    * `:invalid_key` - the key is empty, over 1024 bytes, or not UTF-8
    * `:unsupported_value` - the value holds a term the contract cannot store
    * `:value_too_large` - the encoded value is over 64 MiB
    * `:too_deep` - the value is nested deeper than 512 levels
    * `:corrupt_value` - a stored value is not valid contract MessagePack
    * `:closed` - the store is stopped (or was never started)
    * `:already_open` - the data dir is already open in this VM
    * `:disk_full` - the disk is full
    * `:corrupt` - a shard file is damaged; the message names it
    * `:busy` - another OS process held a lock past the busy timeout
    * `:io`, `:permission_denied`, `:read_only` - the file system refused
    * `:not_a_directory` - a path that must be a directory is not, or the reverse
    * `:not_litestash` - an SQLite file that is not a LiteStash shard
    * `:newer_version` - a file from a newer contract version
    * `:legacy_format` - a data dir of the Python litestash 0.1 package
    * `:internal` - a bug in LiteStash; the VM and other callers carry on
  """

  defexception [:reason, :message]

  @type t :: %__MODULE__{reason: atom(), message: String.t()}
end
