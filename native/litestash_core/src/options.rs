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
    /// Bytes of decoded values the store's value cache holds (see
    /// `cache.rs`); 0 turns it off.
    pub cache_size: usize,
    /// Bytes of SQLite page cache for the whole store, shared out evenly
    /// over its connections: one writer and up to `readers_per_shard`
    /// pooled readers per shard.
    pub page_cache_size: usize,
    /// Bytes of each file every connection maps into memory for reads
    /// (default [`DEFAULT_MMAP_SIZE`]); 0 reads with `pread` into the page
    /// cache instead.
    pub mmap_size: i64,
    /// Size the WAL is truncated to after a checkpoint resets it (see
    /// [`Options::set_wal_limit`]).
    pub journal_size_limit: i64,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Most bytes of values committed in one transaction.
    pub max_batch_bytes: usize,
    /// WAL frames after which the writer runs a passive checkpoint.
    pub checkpoint_pages: i32,
    /// WAL frames after which the writer waits for readers and truncates.
    pub truncate_pages: i32,
    /// Whether a read that misses the value cache may be tried on the
    /// calling thread, answered only from memory (see
    /// [`crate::Store::read_stored_now`]): the read connections then go
    /// through the no-wait VFS (`shard/nowait.rs`).
    pub nowait_reads: bool,
    /// Idle read connections kept per shard.
    pub readers_per_shard: usize,
    /// How often each writer sweeps expired keys when nothing is due sooner.
    pub sweep_interval: Duration,
    /// Most expired keys deleted in one sweep transaction.
    pub sweep_batch: usize,
    /// Caps every shard file at this many pages: a test's stand-in for a
    /// full disk. `None` in production.
    pub max_page_count: Option<i64>,
    /// Bytes of disk the store keeps allocated in its reserve file, for the
    /// checkpoints that give WAL space back on a full disk (see `disk.rs`);
    /// 0 keeps none.
    pub disk_reserve: u64,
    /// Most writes committing inline (on their callers' threads, see
    /// [`crate::Store::inline_slot`]) at once, counted over every store of
    /// the process; 0 sends every write through the writer threads.
    pub inline_commits: usize,
    /// Most of the store's writer threads committing at once (see
    /// `writer/slots.rs`); `None` for [`Options::commit_slots`]' default.
    pub concurrent_commits: Option<usize>,
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

/// Default [`Options::cache_size`]: 32 MiB.
pub const DEFAULT_CACHE_SIZE: usize = 32 * 1024 * 1024;

/// Default [`Options::page_cache_size`]: 64 MiB for the whole store.
pub const DEFAULT_PAGE_CACHE_SIZE: usize = 64 * 1024 * 1024;

/// Default [`Options::mmap_size`]: 256 MiB. Cold point reads of a store of
/// 1,000,000 keys ran 1.2-1.5x faster from one process and 1.3-1.4x from
/// 64 than with 0 (`bench/scripts/mmap.exs`); the mapped pages are the
/// OS's page cache, which `pread` fills as well, though RSS then counts
/// them once per connection that maps them.
pub const DEFAULT_MMAP_SIZE: i64 = 256 * 1024 * 1024;

/// Default WAL bound per shard ([`Options::set_wal_limit`]): 8 MiB, the
/// 2,000 frames of 4 KiB pages LiteStash has always checkpointed at.
pub const DEFAULT_WAL_LIMIT: u64 = 2000 * WAL_FRAME_BYTES;

/// Default [`Options::disk_reserve`], 4 MiB: more than the new pages a
/// checkpoint of one shard usually adds to its file, so a full disk can be
/// given its WAL space back.
pub const DEFAULT_DISK_RESERVE: u64 = 4 * 1024 * 1024;

/// One WAL frame: a 4 KiB page and its 24-byte header.
const WAL_FRAME_BYTES: u64 = 4096 + 24;

fn checkpoint_pages(wal_limit: u64) -> i32 {
    i32::try_from(wal_limit / WAL_FRAME_BYTES)
        .unwrap_or(i32::MAX)
        .max(1)
}

/// Pooled readers per shard: 8. No more reads run at once than the
/// threads that make them (the NIF passes the VM's dirty IO scheduler
/// count); more idle connections would only hold more page cache.
fn default_readers() -> usize {
    8
}

impl Options {
    /// Bounds each shard's WAL to about `bytes`: a passive checkpoint runs
    /// once the WAL holds that much, a truncating one (waiting briefly for
    /// readers) at 6 times that, and a reset WAL is cut back to at most 8
    /// times it.
    pub fn set_wal_limit(&mut self, bytes: u64) {
        let pages = checkpoint_pages(bytes);
        self.checkpoint_pages = pages;
        self.truncate_pages = pages.saturating_mul(6);
        let cut = i64::try_from(bytes.saturating_mul(8)).unwrap_or(i64::MAX);
        self.journal_size_limit = cut.min(64 * 1024 * 1024);
    }

    /// The WAL bound per shard these options give, in bytes.
    pub fn wal_limit(&self) -> u64 {
        u64::try_from(self.checkpoint_pages).unwrap_or(0) * WAL_FRAME_BYTES
    }

    /// How many of the store's writer threads may commit at once:
    /// [`Options::concurrent_commits`], between 1 and the 16 shards. By
    /// default, with `synchronous = NORMAL`, as many as the machine has
    /// cores for this process (a commit then costs CPU, and writers that
    /// wait their turn batch more); with `FULL`, all 16, because a commit
    /// then mostly waits for its fsync and the 16 files' fsyncs overlap.
    pub fn commit_slots(&self) -> usize {
        let slots = self
            .concurrent_commits
            .unwrap_or_else(|| match self.synchronous {
                Synchronous::Normal => std::thread::available_parallelism().map_or(1, usize::from),
                Synchronous::Full => crate::key::SHARD_COUNT,
            });
        slots.clamp(1, crate::key::SHARD_COUNT)
    }

    /// The page cache of one connection, in KiB: the store's budget over
    /// its connections (16 writers and 16 x `readers_per_shard` readers),
    /// at least 64 KiB.
    pub fn connection_cache_kib(&self) -> i64 {
        let connections = crate::key::SHARD_COUNT * (1 + self.readers_per_shard);
        i64::try_from(self.page_cache_size / 1024 / connections.max(1))
            .unwrap_or(i64::MAX)
            .max(64)
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(30),
            cache_size: DEFAULT_CACHE_SIZE,
            page_cache_size: DEFAULT_PAGE_CACHE_SIZE,
            mmap_size: DEFAULT_MMAP_SIZE,
            journal_size_limit: 64 * 1024 * 1024,
            max_batch: 1024,
            max_batch_bytes: 32 * 1024 * 1024,
            checkpoint_pages: checkpoint_pages(DEFAULT_WAL_LIMIT),
            truncate_pages: 6 * checkpoint_pages(DEFAULT_WAL_LIMIT),
            nowait_reads: true,
            readers_per_shard: default_readers(),
            sweep_interval: Duration::from_secs(1),
            sweep_batch: 500,
            max_page_count: None,
            disk_reserve: DEFAULT_DISK_RESERVE,
            inline_commits: 1,
            concurrent_commits: None,
            read_only: false,
            max_snapshots: 64,
            replica: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_slots_default_to_the_cores_or_to_every_shard_under_full() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let normal = Options::default();
        assert_eq!(normal.commit_slots(), cores.clamp(1, 16));
        let full = Options {
            synchronous: Synchronous::Full,
            ..Options::default()
        };
        assert_eq!(full.commit_slots(), 16);
        for (asked, given) in [(0, 1), (1, 1), (5, 5), (16, 16), (99, 16)] {
            let options = Options {
                concurrent_commits: Some(asked),
                synchronous: Synchronous::Full,
                ..Options::default()
            };
            assert_eq!(options.commit_slots(), given, "asked for {asked}");
        }
    }
}
