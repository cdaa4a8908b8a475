//! How a store is opened: [`Options`] and their defaults.

use std::time::Duration;

/// How hard a commit pushes to disk (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// A commit survives a crash of the process; the last commits before a
    /// power loss or OS crash may be rolled back. The file is never corrupted.
    Normal,
    /// A commit is fsynced before it is acknowledged: it survives power loss.
    Full,
}

impl Synchronous {
    /// The value of SQLite's `PRAGMA synchronous` for this level.
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Options of [`crate::Store::open`]. `Options::default()` is what LiteStash uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Durability of a commit.
    pub synchronous: Synchronous,
    /// How long a connection waits for another process's lock.
    pub busy_timeout: Duration,
    /// Page cache of each connection, in KiB.
    pub cache_size_kib: i64,
    /// Bytes of each file mapped into memory for reads.
    pub mmap_size: i64,
    /// Size the WAL is truncated to after a checkpoint resets it.
    pub journal_size_limit: i64,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Most bytes of values committed in one transaction.
    pub max_batch_bytes: usize,
    /// WAL frames after which the writer runs a passive checkpoint.
    pub checkpoint_pages: i32,
    /// WAL frames after which the writer waits for readers and truncates.
    pub truncate_pages: i32,
    /// Idle read connections kept per shard.
    pub readers_per_shard: usize,
    /// How often each writer sweeps expired keys when nothing is due sooner.
    pub sweep_interval: Duration,
    /// Most expired keys deleted in one sweep transaction.
    pub sweep_batch: usize,
    /// Caps every shard file at this many pages: a test's stand-in for a
    /// full disk. `None` in production.
    pub max_page_count: Option<i64>,
    /// Most writes committing inline (on their callers' threads, see
    /// [`crate::Store::inline_slot`]) at once, counted over every store of
    /// the process; 0 sends every write through the writer threads.
    pub inline_commits: usize,
    /// Opens the data dir for reads only: no writer threads, read-only
    /// connections, every write refused with [`crate::ErrorKind::ReadOnly`].
    /// The dir must exist and hold the 16 shard files (see
    /// [`crate::Store::open`] for what SQLite needs to read a WAL file then).
    pub read_only: bool,
    /// Most snapshots ([`crate::Store::snapshot`], one per open stream)
    /// at once: each holds a connection, so file descriptors, of its own.
    pub max_snapshots: usize,
    /// The store is one replica of a replicated store (contract section
    /// 10): its files get the replica table, and only replicated entries
    /// ([`crate::Request::replicated`]) write them.
    pub replica: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(30),
            cache_size_kib: 16 * 1024,
            mmap_size: 256 * 1024 * 1024,
            journal_size_limit: 64 * 1024 * 1024,
            max_batch: 1024,
            max_batch_bytes: 32 * 1024 * 1024,
            checkpoint_pages: 2000,
            truncate_pages: 12000,
            readers_per_shard: 16,
            sweep_interval: Duration::from_secs(1),
            sweep_batch: 500,
            max_page_count: None,
            inline_commits: 1,
            read_only: false,
            max_snapshots: 64,
            replica: false,
        }
    }
}
