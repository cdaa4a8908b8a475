//! Walking a shard in key order: snapshots for `keys`, `count` and streams.

use crate::clock::now_ms;
use crate::codec::{decode, Value};
use crate::error::{Error, ErrorKind, Result};
use crate::key::{SHARD_COUNT, TABLES_PER_SHARD};
use crate::shard::{sql, value_bytes, ShardFile};
use crate::store::Store;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

impl Store {
    /// Every live key that starts with `prefix` (`""` for all), shard by
    /// shard; in key order within a shard, no order across shards.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Closed`] and the SQLite errors of any shard.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for shard in 0..SHARD_COUNT {
            let mut snapshot = self.snapshot_within_call(shard, prefix)?;
            loop {
                let chunk = snapshot.next_keys(1000)?;
                if chunk.is_empty() {
                    break;
                }
                keys.extend(chunk);
            }
        }
        Ok(keys)
    }

    /// The number of live keys that start with `prefix` (`""` for all).
    ///
    /// # Errors
    /// [`crate::ErrorKind::Closed`] and the SQLite errors of any shard.
    pub fn count(&self, prefix: &str) -> Result<u64> {
        let (low, high) = bounds(prefix);
        let mut total = 0u64;
        for shard in 0..SHARD_COUNT {
            total += self.read(shard, |file, conn| {
                let now = now_ms();
                let any_due: bool = conn
                    .prepare_cached(sql::EXPIRY_ANY_DUE)
                    .and_then(|mut s| s.query_row([now], |r| r.get(0)))
                    .map_err(|e| file.err(e))?;
                let mut n = 0u64;
                for table in &file.tables {
                    let c: i64 = if prefix.is_empty() && !any_due {
                        conn.prepare_cached(&table.count)
                            .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    } else {
                        conn.prepare_cached(&table.count_live)
                            .and_then(|mut s| s.query_row(params![low, high, now], |r| r.get(0)))
                    }
                    .map_err(|e| file.err(e))?;
                    n += c.max(0) as u64;
                }
                Ok(n)
            })?;
        }
        Ok(total)
    }

    /// A consistent snapshot of shard `shard` (an index into
    /// [`crate::SHARDS`]) to walk the live keys starting with `prefix` in
    /// key order, a chunk at a time. It holds one read transaction, and a
    /// connection of its own, open until dropped: at most
    /// [`Options::max_snapshots`](crate::Options::max_snapshots) at once.
    ///
    /// # Errors
    /// [`crate::ErrorKind::TooManyStreams`] past that cap;
    /// [`crate::ErrorKind::Closed`], a broken shard's error, SQLite errors.
    pub fn snapshot(&self, shard: usize, prefix: &str) -> Result<Snapshot> {
        self.check_open()?;
        self.file(shard)?;
        let permit = Permit::claim(&self.snapshots, self.options.max_snapshots)?;
        self.open_snapshot(shard, prefix, Some(permit))
    }

    /// A snapshot outside the cap, for a walk this store finishes within
    /// one call (`keys`, `info`): as many as there are calls at once.
    pub(crate) fn snapshot_within_call(&self, shard: usize, prefix: &str) -> Result<Snapshot> {
        self.check_open()?;
        self.open_snapshot(shard, prefix, None)
    }

    fn open_snapshot(
        &self,
        shard: usize,
        prefix: &str,
        permit: Option<Permit>,
    ) -> Result<Snapshot> {
        let file = Arc::clone(self.file(shard)?);
        let conn = file.open_reader(&self.options)?;
        let conn = if file.memory {
            // An in-memory shard has no WAL: a read transaction held
            // between chunks would keep its writer from committing. The
            // walk reads a private copy, taken in one step.
            private_copy(&file, &conn, self.options.busy_timeout)?
        } else {
            conn.execute_batch(sql::BEGIN_READ)
                .map_err(|e| file.err(e))?;
            conn
        };
        let (low, high) = bounds(prefix);
        Ok(Snapshot {
            file,
            conn,
            now: now_ms(),
            next: low,
            high,
            done: false,
            _permit: permit,
        })
    }
}

/// A private in-memory copy of the shard `source` reads, made under one
/// read lock.
fn private_copy(file: &ShardFile, source: &Connection, wait: Duration) -> Result<Connection> {
    let mut copy = Connection::open_in_memory().map_err(|e| file.err(e))?;
    file.copy_database(source, &mut copy, wait)?;
    Ok(copy)
}

/// One of the store's snapshots counted against its cap, given back when
/// dropped (after the snapshot's connection is closed).
struct Permit(Arc<AtomicUsize>);

impl Permit {
    fn claim(open: &Arc<AtomicUsize>, max: usize) -> Result<Permit> {
        let mut n = open.load(Ordering::Acquire);
        loop {
            if n >= max {
                return Err(Error::new(
                    ErrorKind::TooManyStreams,
                    format!(
                        "{max} streams are open on this store, its max_streams: \
                         finish or halt one before opening another"
                    ),
                ));
            }
            match open.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Permit(Arc::clone(open))),
                Err(now) => n = now,
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The key range `[low, high)` of the keys that start with `prefix`. Keys
/// compare as bytes; no UTF-8 byte is 0xFF, so the prefix with its last
/// byte raised bounds it from above. For `""` the bound is an empty BLOB,
/// which sorts after every text.
fn bounds(prefix: &str) -> (SqlBound, SqlBound) {
    let low = SqlBound::Text(prefix.as_bytes().to_vec());
    let high = match prefix.as_bytes().split_last() {
        None => SqlBound::AfterAllText,
        Some((last, head)) => {
            let mut bytes = head.to_vec();
            bytes.push(last.saturating_add(1));
            SqlBound::Text(bytes)
        }
    };
    (low, high)
}

/// A bound of a key range, bound as TEXT (possibly not UTF-8) or as BLOB.
#[derive(Debug, Clone)]
enum SqlBound {
    Text(Vec<u8>),
    AfterAllText,
}

impl rusqlite::ToSql for SqlBound {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match self {
            SqlBound::Text(bytes) => ValueRef::Text(bytes),
            SqlBound::AfterAllText => ValueRef::Blob(&[]),
        }))
    }
}

/// A consistent snapshot of one shard, walked in key order a chunk at a
/// time (see [`Store::snapshot`]).
pub struct Snapshot {
    file: Arc<ShardFile>,
    conn: Connection,
    now: i64,
    /// The lowest key not yet returned.
    next: SqlBound,
    high: SqlBound,
    done: bool,
    /// Last, so that it is given back after the connection is closed.
    _permit: Option<Permit>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("file", &self.file.path)
            .finish_non_exhaustive()
    }
}

/// A row of a walk: its key and its value column (or why it is unreadable).
type WalkedRow = (String, Result<Option<Vec<u8>>>);

impl Snapshot {
    /// Up to `limit` live `(key, value)` pairs after the last ones returned,
    /// in key order, holding at most [`CHUNK_BYTES`] of keys and values
    /// (or one row, if that alone is larger); empty when the walk is over.
    /// A value that does not decode is an error for its key alone, naming
    /// it: the walk goes on past it.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn next_pairs(&mut self, limit: usize) -> Result<Vec<(String, Result<Value>)>> {
        Ok(self
            .next_rows(limit, true)?
            .into_iter()
            .map(|(key, bytes)| {
                let value = bytes
                    .and_then(|b| b.map_or(Ok(Value::Nil), |b| decode(&b)))
                    .map_err(|e| Error::new(e.kind(), format!("key {key:?}: {}", e.message())));
                (key, value)
            })
            .collect())
    }

    /// Like [`Snapshot::next_pairs`], keys only (no value is read).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn next_keys(&mut self, limit: usize) -> Result<Vec<String>> {
        Ok(self
            .next_rows(limit, false)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// The next rows of the shard in key order, merged from its 4 tables:
    /// at most `limit` rows and [`CHUNK_BYTES`] (past the first row).
    ///
    /// Each table is read up to `limit` rows or [`CHUNK_BYTES`] past the
    /// last key returned. Rows up to the smallest "last key read" of the
    /// tables that stopped early are complete in every table; the first of
    /// them within both bounds are returned, and the walk resumes after the
    /// last one returned. Expired rows are skipped; a page of nothing but
    /// expired rows does not end the walk.
    fn next_rows(&mut self, limit: usize, with_values: bool) -> Result<Vec<WalkedRow>> {
        let limit = limit.max(1);
        while !self.done {
            let mut merged: Vec<WalkedRow> = Vec::new();
            // The largest key up to which every table has been read.
            let mut horizon: Option<String> = None;
            for table in 0..TABLES_PER_SHARD {
                let sql = &self.file.tables[table];
                let sql = if with_values {
                    sql.range(limit)
                } else {
                    sql.range_keys(limit)
                };
                let mut stmt = self
                    .conn
                    .prepare_cached(&sql)
                    .map_err(|e| self.file.err(e))?;
                let rows = stmt
                    .query_map(params![self.next, self.high], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            value_bytes(r.get_ref(1)?),
                            r.get::<_, Option<i64>>(2)?,
                        ))
                    })
                    .map_err(|e| self.file.err(e))?;
                let (mut read, mut bytes) = (0, 0);
                let mut stopped_at = None;
                for row in rows {
                    let (key, value, expires) = row.map_err(|e| self.file.err(e))?;
                    read += 1;
                    bytes += row_bytes(&key, &value);
                    let full = read == limit || bytes >= CHUNK_BYTES;
                    if full {
                        stopped_at = Some(key.clone());
                    }
                    if expires.is_none_or(|at| at > self.now) {
                        merged.push((key, value));
                    }
                    if full {
                        break;
                    }
                }
                if let Some(last) = stopped_at {
                    if horizon
                        .as_ref()
                        .is_none_or(|h| last.as_bytes() < h.as_bytes())
                    {
                        horizon = Some(last);
                    }
                }
            }
            merged.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            if let Some(h) = &horizon {
                merged.retain(|(k, _)| k.as_bytes() <= h.as_bytes());
            }
            let kept = within_bounds(&merged, limit);
            let resume_after = if kept < merged.len() {
                merged.truncate(kept);
                merged.last().map(|(k, _)| k.clone())
            } else {
                horizon
            };
            match resume_after {
                Some(last) => {
                    let mut after = last.into_bytes();
                    after.push(0);
                    self.next = SqlBound::Text(after);
                }
                None => self.done = true,
            }
            if !merged.is_empty() {
                return Ok(merged);
            }
        }
        Ok(Vec::new())
    }
}

/// Most bytes of keys and values one chunk of a walk holds, unless its
/// first row alone is larger: a stream of 1 MiB values holds a few of them
/// at a time, not `chunk_size`.
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// The bytes a walked row holds in memory.
fn row_bytes(key: &str, value: &Result<Option<Vec<u8>>>) -> usize {
    key.len() + value.as_ref().map_or(0, |v| v.as_ref().map_or(0, Vec::len))
}

/// How many of the first `rows` fit in a chunk: at most `limit`, and at
/// most [`CHUNK_BYTES`] unless the first row alone is larger.
fn within_bounds(rows: &[WalkedRow], limit: usize) -> usize {
    let mut bytes = 0;
    for (i, (key, value)) in rows.iter().enumerate() {
        bytes += row_bytes(key, value);
        if i == limit || (i > 0 && bytes > CHUNK_BYTES) {
            return i;
        }
    }
    rows.len()
}
