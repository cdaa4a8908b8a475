//! LiteStash's storage engine: the data contract (BLAKE2b-512 key hashes,
//! 16 SQLite shard files with 64 tables, MessagePack values) and a store
//! that writes each shard through one group-committing writer thread (or,
//! when that writer is idle and the caller allows it, on the caller's own
//! thread) while readers use their own connections.
//!
//! This crate knows nothing of Erlang; `litestash_nif` wraps it.
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

mod check;
mod codec;
mod error;
mod key;
mod shard;
mod store;
mod writer;

pub use check::{inspect_dir, Depth, ShardReport};
pub use codec::{canonical, decode, deeper, encode, Value, MAX_DEPTH, MAX_VALUE_BYTES};
pub use error::{Error, ErrorKind, Result};
pub use key::{
    key_hash, route, table_names, validate, Key, Route, MAX_KEY_BYTES, SHARDS, SHARD_COUNT,
};
pub use shard::{APPLICATION_ID, CONTRACT_VERSION};
pub use store::{Options, ShardInfo, Snapshot, Store, Synchronous};
pub use writer::{Event, EventHook, Outcome, Reply};
