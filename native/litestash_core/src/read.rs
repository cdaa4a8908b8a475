//! Point reads of a store: through the value cache when it can answer,
//! else on a pooled read connection of the key's shard, filling the cache.

use crate::cache::{Stored, Ticket};
use crate::clock::now_ms;
use crate::codec::Value;
use crate::error::{Error, ErrorKind, Result};
use crate::key::{validate, Key, SHARD_COUNT};
use crate::locks::{lock, try_lock};
use crate::shard::{nowait, ShardFile, StoredRow};
use crate::store::{Shard, Store};
use rusqlite::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The value `stored` holds for `key`; a corrupt one is an error naming
/// the key.
fn decoded(key: &[u8], stored: &Stored) -> Result<Value> {
    stored.value().map_err(|e| {
        Error::new(
            e.kind(),
            format!("key {:?}: {}", String::from_utf8_lossy(key), e.message()),
        )
    })
}

/// How a shard's reads tried without waiting went ([`Store::read_stored_now`]).
#[derive(Debug, Default)]
pub(crate) struct NowaitTally {
    /// Answered from the file on the calling thread.
    pub answered: AtomicU64,
    /// Handed back to be redone where waiting is allowed.
    pub deferred: AtomicU64,
}

impl Store {
    /// Runs `f` on a read connection of shard `index`.
    pub(crate) fn read<T>(
        &self,
        index: usize,
        f: impl FnOnce(&ShardFile, &Connection) -> Result<T>,
    ) -> Result<T> {
        self.check_open()?;
        let (file, readers) = match &self.shards[index] {
            Shard::Ready { file, readers, .. } | Shard::Reading { file, readers } => {
                (file, readers)
            }
            Shard::Broken(e) => return Err(e.clone()),
        };
        let pooled = lock(readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => file.open_reader(&self.options)?,
        };
        let result = f(file, &conn);
        if !self.is_closed() {
            let mut pool = lock(readers);
            if pool.len() < self.options.readers_per_shard {
                pool.push(conn);
            }
        }
        result
    }

    /// The live row of `key`: `None` when absent or expired. An expired key
    /// asks its writer for a sweep.
    fn live(&self, file: &ShardFile, conn: &Connection, key: &Key) -> Result<Option<StoredRow>> {
        Ok(self.unexpired(key, file.read_row(conn, key.route.table, &key.hash)?))
    }

    /// `row` unless it has expired; an expired one asks its writer for a
    /// sweep (without waiting).
    fn unexpired(&self, key: &Key, row: Option<StoredRow>) -> Option<StoredRow> {
        match row {
            Some(row) if row.expired(now_ms()) => {
                if let Shard::Ready { queue, .. } = &self.shards[key.route.shard] {
                    queue.request_sweep();
                }
                None
            }
            found => found,
        }
    }

    /// What the cache keeps of `row`; a corrupt value is an error naming
    /// the key.
    fn stored(key: &Key, row: StoredRow) -> Result<Stored> {
        match row.value {
            Ok(Some(bytes)) => Ok(Stored::new(bytes.into_boxed_slice(), row.expires_at)),
            Ok(None) => Ok(Stored::nil(row.expires_at)),
            Err(e) => Err(Error::new(
                e.kind(),
                format!("key {:?}: {}", key.text, e.message()),
            )),
        }
    }

    /// The live value of `key` read from SQLite, as stored (decoded by
    /// whoever reads it: see [`Stored`]); handed to the value cache when
    /// `ticket` says it may be (no commit since it was taken).
    fn load(
        &self,
        file: &ShardFile,
        conn: &Connection,
        key: &Key,
        ticket: Option<Ticket>,
    ) -> Result<Option<Arc<Stored>>> {
        let Some(row) = self.live(file, conn, key)? else {
            return Ok(None);
        };
        let stored = Store::stored(key, row)?;
        Ok(Some(match ticket {
            Some(ticket) => self.cache.fill(ticket, key.text.as_bytes(), stored),
            None => Arc::new(stored),
        }))
    }

    /// The value of `key` if the value cache can answer now: without
    /// touching the disk, waiting for a lock or hashing the key, so a BEAM
    /// normal scheduler may call it. `None` means "read it" (with
    /// [`Store::get_stored`]), not "absent". A cached value is at most
    /// [`crate::CACHEABLE_BYTES`] encoded.
    pub fn get_cached(&self, key: &[u8]) -> Option<Arc<Stored>> {
        if key.len() > crate::key::MAX_KEY_BYTES || self.is_closed() {
            return None;
        }
        self.cache.hit(key, now_ms())
    }

    /// The value and expiry of `key`, from the value cache or its shard
    /// file; `None` when it is not stored (or has expired). A value read
    /// from the file is cached.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn get_stored(&self, key: &[u8]) -> Result<Option<Arc<Stored>>> {
        let text = validate(key)?;
        self.check_open()?;
        if let Some(hit) = self.cache.hit(key, now_ms()) {
            return Ok(Some(hit));
        }
        self.load_key(Key::of_valid(text)?)
    }

    /// As [`Store::get_stored`], but without asking the value cache first
    /// (the caller just did, with [`Store::get_cached`]): reads the shard
    /// file and fills the cache.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn read_stored(&self, key: &[u8]) -> Result<Option<Arc<Stored>>> {
        self.check_open()?;
        self.load_key(Key::new(key)?)
    }

    /// As [`Store::read_stored`], but only if that can be done now on the
    /// calling thread without waiting (a BEAM normal scheduler may call
    /// it): `None` means "redo it with [`Store::read_stored`]", which
    /// happens when the pages it needs are not in memory (SQLite's page
    /// cache or the OS's), another thread or process holds what it needs,
    /// no idle read connection is pooled, or the value is over
    /// [`crate::CACHEABLE_BYTES`] (its term would take too long to build).
    /// A value read is cached as by [`Store::read_stored`]. Never on an
    /// in-memory store, nor with [`crate::Options::nowait_reads`] off, nor
    /// where `preadv2(RWF_NOWAIT)` is missing (not Linux, or refused).
    pub fn read_stored_now(&self, key: &[u8]) -> Option<Result<Option<Arc<Stored>>>> {
        if self.memory || !self.options.nowait_reads || !nowait::available() {
            return None;
        }
        if let Err(e) = self.check_open() {
            return Some(Err(e));
        }
        let key = match Key::new(key) {
            Ok(key) => key,
            Err(e) => return Some(Err(e)),
        };
        let shard = key.route.shard;
        let (file, readers) = match &self.shards[shard] {
            Shard::Ready { file, readers, .. } | Shard::Reading { file, readers } => {
                (file, readers)
            }
            Shard::Broken(e) => return Some(Err(e.clone())),
        };
        let tally = &self.nowait[shard];
        let answer = try_lock(readers)
            .and_then(|mut pool| pool.pop())
            .and_then(|conn| {
                let answer = self.cache.ticket_if(shard, false).and_then(|ticket| {
                    // SQLITE_BUSY answers at once rather than sleeping.
                    conn.busy_timeout(std::time::Duration::ZERO).ok()?;
                    let answer =
                        nowait::without_waiting(|| self.load_within(file, &conn, &key, ticket))
                            .flatten();
                    conn.busy_timeout(self.options.busy_timeout).ok()?;
                    answer
                });
                // Kept even past the pool's size (closing a connection here
                // could checkpoint); a dirty read drops the surplus.
                lock(readers).push(conn);
                answer
            });
        let counter = if answer.is_some() {
            &tally.answered
        } else {
            &tally.deferred
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }

    /// As [`Store::load`] for [`Store::read_stored_now`]: `None` for a value
    /// over [`crate::CACHEABLE_BYTES`] or an error (the read is redone where
    /// it may wait, and reports it then); fills without waiting.
    fn load_within(
        &self,
        file: &ShardFile,
        conn: &Connection,
        key: &Key,
        ticket: Option<Ticket>,
    ) -> Option<Result<Option<Arc<Stored>>>> {
        let row =
            match file.read_row_within(conn, key.route.table, &key.hash, crate::CACHEABLE_BYTES) {
                Ok(Some(Some(row))) => Some(row),
                Ok(None) => None,
                Ok(Some(None)) | Err(_) => return None,
            };
        let Some(row) = self.unexpired(key, row) else {
            return Some(Ok(None));
        };
        let stored = Store::stored(key, row).ok()?;
        Some(Ok(Some(match ticket {
            Some(ticket) => self
                .cache
                .fill_if(ticket, key.text.as_bytes(), stored, false),
            None => Arc::new(stored),
        })))
    }

    /// Reads `key` from its shard file, filling the cache.
    fn load_key(&self, key: Key) -> Result<Option<Arc<Stored>>> {
        let shard = key.route.shard;
        let ticket = self.cache.ticket(shard);
        self.read(shard, |file, conn| self.load(file, conn, &key, ticket))
    }

    /// The value of `key`, or `None` when it is not stored (or has expired).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::CorruptValue`] for a stored
    /// value that is not contract MessagePack, [`ErrorKind::Closed`], and
    /// the SQLite errors of the key's shard.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        self.get_stored(key)?
            .map(|stored| decoded(key, &stored))
            .transpose()
    }

    /// Whether `key` is stored and not expired.
    ///
    /// # Errors
    /// As [`Store::get`], but a corrupt value still counts as stored.
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        let text = validate(key)?;
        self.check_open()?;
        if self.cache.hit(key, now_ms()).is_some() {
            return Ok(true);
        }
        let key = Key::of_valid(text)?;
        self.read(key.route.shard, |file, conn| {
            Ok(self.live(file, conn, &key)?.is_some())
        })
    }

    /// The time to live of `key` in milliseconds: `Some(None)` when it
    /// never expires, `None` when it is not stored.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn ttl(&self, key: &[u8]) -> Result<Option<Option<i64>>> {
        let text = validate(key)?;
        self.check_open()?;
        let now = now_ms();
        if let Some(hit) = self.cache.hit(key, now) {
            return Ok(Some(hit.expires_at().map(|at| (at - now).max(0))));
        }
        let key = Key::of_valid(text)?;
        self.read(key.route.shard, |file, conn| {
            Ok(self
                .live(file, conn, &key)?
                .map(|row| row.expires_at.map(|at| (at - now_ms()).max(0))))
        })
    }

    /// The values of `keys`, in order (`None` for a key not stored). All keys
    /// are validated before any is read; keys the cache cannot answer are
    /// read shard by shard. A stored value that does not decode is an error
    /// for its key alone ([`ErrorKind::CorruptValue`], naming it): the other
    /// keys are read.
    ///
    /// # Errors
    /// As [`Store::get`], but for a corrupt value; the first error ends the
    /// call.
    pub fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Result<Value>>>> {
        Ok(self
            .get_many_stored(keys)?
            .into_iter()
            .zip(keys)
            .map(|(found, key)| found.map(|stored| stored.and_then(|s| decoded(key, &s))))
            .collect())
    }

    /// As [`Store::get_many`], with each value's expiry, shared with the cache.
    ///
    /// # Errors
    /// As [`Store::get_many`].
    pub fn get_many_stored(&self, keys: &[&[u8]]) -> Result<Vec<Option<Result<Arc<Stored>>>>> {
        let texts = keys
            .iter()
            .map(|key| validate(key))
            .collect::<Result<Vec<&str>>>()?;
        self.check_open()?;
        let now = now_ms();
        let mut out: Vec<Option<Result<Arc<Stored>>>> = keys
            .iter()
            .map(|k| self.cache.hit(k, now).map(Ok))
            .collect();
        let mut by_shard: Vec<Vec<(usize, Key)>> = (0..SHARD_COUNT).map(|_| Vec::new()).collect();
        for (i, text) in texts.iter().enumerate() {
            if out[i].is_none() {
                let key = Key::of_valid(text)?;
                by_shard[key.route.shard].push((i, key));
            }
        }
        for (shard, missed) in by_shard.iter().enumerate() {
            if missed.is_empty() {
                continue;
            }
            let ticket = self.cache.ticket(shard);
            self.read(shard, |file, conn| {
                for (i, key) in missed {
                    out[*i] = match self.load(file, conn, key, ticket) {
                        Ok(found) => found.map(Ok),
                        Err(e) if e.kind() == ErrorKind::CorruptValue => Some(Err(e)),
                        Err(e) => return Err(e),
                    };
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Bytes the value cache holds now.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.bytes()
    }
}
