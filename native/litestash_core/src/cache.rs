//! The value cache: decoded values of recently read keys, keyed by the key's
//! bytes (a hit hashes no BLAKE2b), bounded by the bytes it holds, and
//! coherent with every commit to the shard files, ours or another
//! process's.
//!
//! Coherence rests on one number per shard: `iChange`, the change counter
//! of the WAL index header (bytes 8..12 of the `-shm` file, which every
//! SQLite connection to the file maps). It goes up by one with each
//! committed write transaction, whoever commits it; checkpoints leave it
//! alone. Each shard's [`Gate`] holds `known`, the `iChange` at which the
//! cache's entries for that shard are right. A hit is served only while
//! the `-shm` says `known`: a commit we have not accounted for (another
//! process's, or ours in the instant between its COMMIT and the writer's
//! bookkeeping) makes every read of that shard go to SQLite.
//!
//! Our writer reads `iChange` = c under its write lock (after `BEGIN
//! IMMEDIATE`), so it knows its own commit makes it c + 1 (when the commit
//! wrote WAL frames at all; the WAL hook says so) without reading it again
//! once the lock is gone, when another process may already have committed
//! c + 2. After the commit, under the gate's lock, it drops the keys it
//! wrote and records c + 1; if c was not `known`, commits it never saw
//! came before, and it drops the whole shard first (a generation bump).
//! A reader that finds `known` behind the `-shm` does the same
//! ([`ValueCache::ticket`]): drops the shard and trusts the cache at the
//! `iChange` it read. A value read from SQLite is inserted only if no
//! commit happened while it was read (`iChange` the same before and after,
//! and equal to `known`), checked under the lock the writer drops keys
//! under.

use crate::codec::Value;
use crate::error::Result;
use crate::key::SHARD_COUNT;
use crate::locks::{lock, lock_if};
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Values larger than this (encoded) are not cached: a hit is turned into
/// a term on the caller's scheduler, and this bounds that work (and the
/// cost of freeing an entry) to a few microseconds.
pub const CACHEABLE_BYTES: usize = 4096;

/// `known` before anything is known: matches no `iChange`.
const UNKNOWN: u64 = u64::MAX;

/// Bytes counted per entry besides its key and value: the entry and its
/// `Arc`, and the cache's bookkeeping for it.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Stored>() + 16 + 64;

/// What an allocation costs besides its bytes (glibc's header and rounding).
const ALLOCATION: usize = 16;

/// A key's value, as the MessagePack its shard file holds, and its expiry.
///
/// The encoding, not a decoded [`Value`]: it is one allocation of a few
/// dozen bytes where a decoded map takes ten allocations and several times
/// the bytes, and a reader turns it into what it needs in one pass
/// ([`crate::decode_into`]: the NIF builds the term directly) rather than
/// decoding a tree only to convert it again.
#[derive(Debug)]
pub struct Stored {
    encoded: Box<[u8]>,
    /// Unix milliseconds the key expires at.
    expires_at: Option<i64>,
    shard: u8,
    /// The shard's generation when this was inserted.
    generation: u64,
    weight: u32,
}

/// Bytes an entry of `key` holding `encoded` is counted as: the two
/// allocations and the fixed overhead.
fn weight(key: &[u8], encoded: &[u8]) -> usize {
    key.len() + encoded.len() + 2 * ALLOCATION + ENTRY_OVERHEAD
}

/// MessagePack nil: what a row whose value is SQL NULL holds.
const NIL: &[u8] = &[0xc0];

impl Stored {
    pub(crate) fn new(encoded: Box<[u8]>, expires_at: Option<i64>) -> Stored {
        Stored {
            encoded,
            expires_at,
            shard: 0,
            generation: 0,
            weight: 0,
        }
    }

    /// A row whose value is SQL NULL (read as nil).
    pub(crate) fn nil(expires_at: Option<i64>) -> Stored {
        Stored::new(NIL.into(), expires_at)
    }

    /// The value's contract MessagePack, as stored (not checked: see
    /// [`Stored::value`]).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The value, decoded.
    ///
    /// # Errors
    /// [`crate::ErrorKind::CorruptValue`] when the stored bytes are not
    /// contract MessagePack (as [`crate::decode`]).
    pub fn value(&self) -> Result<Value> {
        crate::codec::decode(&self.encoded)
    }

    /// Unix milliseconds the key expires at, `None` when it never does.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }
}

#[derive(Clone)]
struct ByBytes;

/// Bytes held per shard: added at insert, taken away when an entry is
/// removed or evicted (this lifecycle hears of each eviction).
#[derive(Clone)]
struct Tally(Arc<[AtomicU64; SHARD_COUNT]>);

impl Tally {
    fn take(&self, stored: &Stored) {
        self.0[usize::from(stored.shard)].fetch_sub(u64::from(stored.weight), Ordering::AcqRel);
    }
}

impl quick_cache::Lifecycle<Box<[u8]>, Arc<Stored>> for Tally {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _key: Box<[u8]>, stored: Arc<Stored>) {
        self.take(&stored);
    }
}

type Entries = Cache<Box<[u8]>, Arc<Stored>, ByBytes, quick_cache::DefaultHashBuilder, Tally>;

impl Weighter<Box<[u8]>, Arc<Stored>> for ByBytes {
    fn weight(&self, _key: &Box<[u8]>, stored: &Arc<Stored>) -> u64 {
        u64::from(stored.weight)
    }
}

/// The WAL index (`-shm`) header of a shard, as SQLite itself maps it for
/// the shard writer's connection.
///
/// Not a mapping of our own: opening the `-shm` file on another descriptor
/// and closing it would drop every POSIX lock this process holds on it
/// (fcntl locks belong to the process, and any close of the inode releases
/// them), SQLite's included, and another process could then take the WAL
/// index over while this one still uses it.
struct Shm {
    base: *const u8,
}

// SAFETY: the pointer is into SQLite's shared mapping of the WAL index,
// valid while the writer's connection is open, and only read through an
// atomic; the cache stops reading it (`shut`) before that connection
// closes.
unsafe impl Send for Shm {}
unsafe impl Sync for Shm {}

/// Offset of `iChange` in the first copy of the header, the copy SQLite
/// writes last when it publishes a commit.
const ICHANGE_OFFSET: usize = 8;

/// Bytes of one region of the WAL index (SQLite's fixed region size).
const SHM_REGION: c_int = 32 * 1024;

impl Shm {
    /// Region 0 of the WAL index of `conn`'s main database, as SQLite
    /// mapped it; `None` when there is none (not in WAL, an in-memory
    /// database): the cache then never serves or fills this shard.
    fn of(conn: &rusqlite::Connection) -> Option<Shm> {
        use rusqlite::ffi;
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: a valid open connection; SQLITE_FCNTL_FILE_POINTER writes
        // the main database's sqlite3_file pointer, which lives as long as
        // the connection. xShmMap with bExtend = 0 only returns the region
        // SQLite has already mapped (NULL if none), growing nothing.
        unsafe {
            let rc = ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                (&mut file as *mut *mut ffi::sqlite3_file).cast::<c_void>(),
            );
            if rc != ffi::SQLITE_OK || file.is_null() {
                return None;
            }
            let methods = (*file).pMethods;
            if methods.is_null() || (*methods).iVersion < 2 {
                return None;
            }
            let map = (*methods).xShmMap?;
            let mut region: *mut c_void = std::ptr::null_mut();
            let rc = map(file, 0, SHM_REGION, 0, &mut region);
            (rc == ffi::SQLITE_OK && !region.is_null()).then(|| Shm {
                base: region.cast::<u8>().cast_const(),
            })
        }
    }

    /// The header's `iChange`: a memory read, no system call.
    fn change(&self) -> u64 {
        // SAFETY: offset 8 is inside region 0 and 4-aligned (the region is
        // page-aligned); SQLite writes the field as a native u32, through
        // the same shared pages.
        let counter = unsafe { &*(self.base.add(ICHANGE_OFFSET) as *const AtomicU32) };
        u64::from(counter.load(Ordering::Acquire))
    }
}

/// One shard's side of the cache.
#[derive(Default)]
struct Gate {
    /// Held to change `generation`, `known` or `seq` and while writers drop
    /// keys; a fill checks and inserts under it.
    lock: Mutex<()>,
    /// Entries of an older generation are dropped (lazily: never served).
    generation: AtomicU64,
    /// Our commits to this shard, each counted after its keys are dropped.
    seq: AtomicU64,
    /// The `iChange` the entries of this shard are right at.
    known: AtomicU64,
    shm: OnceLock<Shm>,
}

/// What a read that missed saw before it read SQLite; [`ValueCache::fill`]
/// inserts only if nothing committed since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    shard: usize,
    generation: u64,
    seq: u64,
    change: u64,
}

/// A test's pause between a commit and its recording.
#[cfg(feature = "test-hooks")]
pub(crate) type Pause = Box<dyn FnMut(usize) + Send>;

/// The cache of a store; with a capacity of 0, it holds nothing.
pub(crate) struct ValueCache {
    entries: Option<Entries>,
    tally: Tally,
    gates: Vec<Gate>,
    /// `false` once the store closes: the `-shm` files may then go away,
    /// and no hit reads them again.
    open: RwLock<bool>,
    /// Test hook: runs after each commit, before the cache records it.
    #[cfg(feature = "test-hooks")]
    pub(crate) before_recording: Mutex<Option<Pause>>,
}

/// What a write did to a shard, for the cache.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    pub keys: Vec<String>,
    /// Every key of the shard may have changed (a clear).
    pub all: bool,
}

impl ValueCache {
    /// A cache holding up to `capacity` bytes; 0 turns it off.
    pub(crate) fn new(capacity: usize) -> ValueCache {
        let tally = Tally(Arc::new(std::array::from_fn(|_| AtomicU64::new(0))));
        let entries = (capacity > 0).then(|| {
            // A small value's entry weighs about 200 bytes (see `weight`).
            let items = (capacity / 256).clamp(64, 1 << 22);
            Cache::with(
                items,
                capacity as u64,
                ByBytes,
                quick_cache::DefaultHashBuilder::default(),
                tally.clone(),
            )
        });
        ValueCache {
            entries,
            tally,
            gates: (0..SHARD_COUNT)
                .map(|_| Gate {
                    known: AtomicU64::new(UNKNOWN),
                    ..Gate::default()
                })
                .collect(),
            open: RwLock::new(true),
            #[cfg(feature = "test-hooks")]
            before_recording: Mutex::new(None),
        }
    }

    fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// Finds shard `shard`'s WAL index through its writer's connection
    /// `conn`, once that has the file in WAL; it must stay open until
    /// [`ValueCache::shut`].
    pub(crate) fn attach(&self, shard: usize, conn: &rusqlite::Connection) {
        if self.enabled() {
            if let Some(shm) = Shm::of(conn) {
                let _ = self.gates[shard].shm.set(shm);
            }
        }
    }

    /// Stops every use of the `-shm` mappings (the store is closing).
    pub(crate) fn shut(&self) {
        *self.open.write().unwrap_or_else(|p| p.into_inner()) = false;
        if let Some(entries) = &self.entries {
            entries.clear();
        }
        for shard in self.tally.0.iter() {
            shard.store(0, Ordering::Release);
        }
    }

    /// Bytes the entries hold (their weights).
    pub(crate) fn bytes(&self) -> u64 {
        self.entries.as_ref().map_or(0, |e| e.weight())
    }

    /// Bytes the entries of `shard` hold.
    pub(crate) fn shard_bytes(&self, shard: usize) -> u64 {
        self.tally.0[shard].load(Ordering::Acquire)
    }

    fn remove(&self, entries: &Entries, key: &[u8]) {
        if let Some((_, old)) = entries.remove(key) {
            self.tally.take(&old);
        }
    }

    /// The current `iChange` of `shard`, if it can be read now. Never waits.
    fn change(&self, shard: usize) -> Option<u64> {
        let open = self.open.try_read().ok()?;
        if !*open {
            return None;
        }
        self.gates[shard].shm.get().map(Shm::change)
    }

    /// The entry of `key` if it may be served now: inserted in the shard's
    /// current generation, the shard's `-shm` at `known`, not expired at
    /// `now`. Never waits for a lock another thread holds, never touches
    /// the disk.
    pub(crate) fn hit(&self, key: &[u8], now: i64) -> Option<Arc<Stored>> {
        let entries = self.entries.as_ref()?;
        let stored = entries.try_get(key).ok()??;
        let gate = &self.gates[usize::from(stored.shard)];
        let known = gate.known.load(Ordering::Acquire);
        if self.change(usize::from(stored.shard))? != known
            || stored.generation != gate.generation.load(Ordering::Acquire)
            || gate.known.load(Ordering::Acquire) != known
            || stored.expires_at.is_some_and(|at| at <= now)
        {
            return None;
        }
        Some(stored)
    }

    /// Before a read of `shard` from SQLite: catches up with commits the
    /// cache has not accounted for (dropping the shard), and notes what a
    /// fill must find unchanged. `None` when nothing may be filled.
    pub(crate) fn ticket(&self, shard: usize) -> Option<Ticket> {
        self.ticket_if(shard, true).flatten()
    }

    /// As [`ValueCache::ticket`], but without waiting for the shard's gate
    /// unless `wait`: `None` when it would have had to.
    pub(crate) fn ticket_if(&self, shard: usize, wait: bool) -> Option<Option<Ticket>> {
        if self.entries.is_none() {
            return Some(None);
        }
        let gate = &self.gates[shard];
        let _held = lock_if(&gate.lock, wait)?;
        Some(self.ticket_held(shard, gate))
    }

    fn ticket_held(&self, shard: usize, gate: &Gate) -> Option<Ticket> {
        let change = self.change(shard)?;
        if gate.known.load(Ordering::Acquire) != change {
            gate.generation.fetch_add(1, Ordering::AcqRel);
            gate.known.store(change, Ordering::Release);
        }
        Some(Ticket {
            shard,
            generation: gate.generation.load(Ordering::Acquire),
            seq: gate.seq.load(Ordering::Acquire),
            change,
        })
    }

    /// Inserts what a read found for `key` if no commit to the shard
    /// happened since `ticket`.
    pub(crate) fn fill(&self, ticket: Ticket, key: &[u8], stored: Stored) -> Arc<Stored> {
        self.fill_if(ticket, key, stored, true)
    }

    /// As [`ValueCache::fill`], but when `wait` is false and the shard's
    /// gate is held, the value is not inserted (never waited for).
    pub(crate) fn fill_if(
        &self,
        ticket: Ticket,
        key: &[u8],
        stored: Stored,
        wait: bool,
    ) -> Arc<Stored> {
        let Some(entries) = &self.entries else {
            return Arc::new(stored);
        };
        if stored.encoded.len() > CACHEABLE_BYTES {
            return Arc::new(stored);
        }
        let weight = weight(key, &stored.encoded);
        if weight as u64 > entries.capacity() / 16 {
            return Arc::new(stored);
        }
        let stored = Arc::new(Stored {
            shard: ticket.shard as u8,
            generation: ticket.generation,
            weight: weight as u32,
            ..stored
        });
        let gate = &self.gates[ticket.shard];
        let Some(_held) = lock_if(&gate.lock, wait) else {
            return stored;
        };
        let unchanged = gate.generation.load(Ordering::Acquire) == ticket.generation
            && gate.seq.load(Ordering::Acquire) == ticket.seq
            && gate.known.load(Ordering::Acquire) == ticket.change
            && self.change(ticket.shard) == Some(ticket.change);
        if unchanged {
            self.remove(entries, key);
            self.tally.0[ticket.shard].fetch_add(u64::from(stored.weight), Ordering::AcqRel);
            entries.insert(key.into(), Arc::clone(&stored));
        }
        stored
    }

    /// `iChange` of `shard` read by its writer under the write lock, at
    /// the start of a transaction.
    pub(crate) fn begin(&self, shard: usize) -> Option<u64> {
        self.entries.as_ref()?;
        self.change(shard)
    }

    /// After a commit to `shard` that started at `iChange` `begun` and
    /// wrote to the WAL (`wrote`): drops what it touched and records the
    /// `iChange` it made. Called before any of its callers is answered.
    pub(crate) fn committed(
        &self,
        shard: usize,
        begun: Option<u64>,
        wrote: bool,
        touched: &Touched,
    ) {
        let Some(entries) = &self.entries else {
            return;
        };
        #[cfg(feature = "test-hooks")]
        if let Some(pause) = lock(&self.before_recording).as_mut() {
            pause(shard);
        }
        let gate = &self.gates[shard];
        let _held = lock(&gate.lock);
        let Some(begun) = begun else {
            // The header could not be read: trust nothing of this shard.
            gate.generation.fetch_add(1, Ordering::AcqRel);
            gate.known.store(UNKNOWN, Ordering::Release);
            return;
        };
        if gate.known.load(Ordering::Acquire) != begun || touched.all {
            gate.generation.fetch_add(1, Ordering::AcqRel);
        }
        for key in &touched.keys {
            self.remove(entries, key.as_bytes());
        }
        gate.seq.fetch_add(1, Ordering::AcqRel);
        gate.known
            .store(begun + u64::from(wrote), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_weighs_its_key_its_encoding_and_a_fixed_overhead() {
        let map = Value::Map(vec![
            (Value::Str("name".into()), Value::Str("user-1".into())),
            (
                Value::Str("tags".into()),
                Value::Array(vec![Value::Str("a".into())]),
            ),
        ]);
        let encoded = crate::codec::encode(&map).unwrap();
        assert_eq!(
            weight(b"user:1", &encoded),
            6 + encoded.len() + 2 * ALLOCATION + ENTRY_OVERHEAD
        );
        const { assert!(ENTRY_OVERHEAD < 256) };
    }

    #[test]
    fn a_filled_entry_is_served_as_the_bytes_read() {
        let cache = ValueCache::new(1 << 20);
        let ticket = Ticket {
            shard: 0,
            generation: 0,
            seq: 0,
            change: 0,
        };
        let encoded = crate::codec::encode(&Value::Str("v".into())).unwrap();
        let stored = cache.fill(ticket, b"k", Stored::new(encoded.clone().into(), None));
        assert_eq!(stored.encoded(), &encoded[..]);
        assert_eq!(stored.value().unwrap(), Value::Str("v".into()));
        assert_eq!(Stored::nil(None).value().unwrap(), Value::Nil);
    }

    #[test]
    fn a_cache_of_size_zero_neither_serves_nor_fills() {
        let cache = ValueCache::new(0);
        assert!(cache.ticket(0).is_none());
        assert!(cache.hit(b"k", 0).is_none());
        assert_eq!(cache.bytes(), 0);
    }
}
