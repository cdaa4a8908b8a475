//! LiteStash's storage engine: the data contract (BLAKE2b-512 key hashes,
//! 16 SQLite shard files with 64 tables, MessagePack values) and a store
//! that writes each shard through one group-committing writer thread (or,
//! when that writer is idle and the caller allows it, on the caller's own
//! thread) while readers use their own connections.
//!
//! This crate knows nothing of Erlang; `litestash_nif` wraps it.
//!
//! Reading order: [`Store`] (`store.rs`: open, submit, close) with its
//! point reads (`read.rs`) through the value cache (`cache.rs`), its walks
//! (`scan.rs`), figures and copies (`admin.rs`) and blocking
//! writes (`blocking.rs`); a write is a [`Request`] (`request.rs`) that a
//! shard's writer (`writer/`: the queue and thread, `op.rs` what each write
//! does, `upkeep.rs` checkpoints, sweeps, compaction, `room.rs` what it
//! does on a full disk, with the reserve of `disk.rs`) commits and answers
//! through a [`Reply`] (`reply.rs`), reporting [`Event`]s (`event.rs`);
//! `shard/` is one file and every SQL text; `key.rs` and `codec.rs` are the
//! contract's hashing, routing and MessagePack; `error.rs` and
//! `options.rs` the vocabulary of failures and settings; `histogram.rs`
//! a lock-free histogram of durations the NIF times its calls with.
//!
//! ```
//! use litestash_core::{Options, Store, Value};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default()).unwrap();
//! store.set(b"vec:1", &Value::Array(vec![Value::Float(0.1), Value::Float(0.5)])).unwrap();
//! assert!(store.exists(b"vec:1").unwrap());
//! assert_eq!(store.get(b"missing").unwrap(), None);
//! store.close();
//! ```

mod admin;
mod blocking;
mod cache;
mod check;
mod clock;
mod codec;
mod data_dir;
mod disk;
mod error;
mod event;
mod histogram;
mod key;
mod locks;
mod open_dirs;
mod options;
mod read;
mod reply;
mod request;
mod scan;
mod shard;
mod store;
#[cfg(feature = "test-hooks")]
mod test_hooks;
#[cfg(feature = "test-hooks")]
pub use test_hooks::HeldSlots;
mod writer;

pub use admin::{sqlite_memory_used, trim_freed_memory, ShardInfo, BACKUP_INCOMPLETE};
pub use cache::{Stored, CACHEABLE_BYTES};
pub use check::{inspect_dir, Depth, ShardReport};
pub use codec::{
    canonical, decode, decode_into, deeper, encode, Build, Scalar, Value, MAX_DEPTH,
    MAX_VALUE_BYTES,
};
pub use disk::RESERVE_FILE;
pub use error::{Error, ErrorKind, Result};
pub use event::{Event, EventHook};
pub use histogram::{Durations, Histogram};
pub use key::{
    key_hash, route, table_names, validate, Key, Route, MAX_KEY_BYTES, SHARDS, SHARD_COUNT,
};
pub use options::{
    Options, Synchronous, DEFAULT_CACHE_SIZE, DEFAULT_DISK_RESERVE, DEFAULT_MMAP_SIZE,
    DEFAULT_PAGE_CACHE_SIZE, DEFAULT_WAL_LIMIT,
};
pub use reply::{Outcome, Reply, Submitted};
pub use request::{ReplicaOp, Request};
pub use scan::{Snapshot, CHUNK_BYTES};
pub use shard::{APPLICATION_ID, CONTRACT_VERSION};
pub use store::{InlineSlot, Store};
