//! Walking a shard in key order: snapshots for `keys`, `count` and streams.

use crate::clock::now_ms;
use crate::codec::{decode, Value};
use crate::error::{Error, Result};
use crate::key::{SHARD_COUNT, TABLES_PER_SHARD};
use crate::shard::{sql, value_bytes, ShardFile};
use crate::store::Store;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection};
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
            let mut snapshot = self.snapshot(shard, prefix)?;
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
    /// key order, a chunk at a time. It holds one read transaction open
    /// until dropped.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Closed`], a broken shard's error, SQLite errors.
    pub fn snapshot(&self, shard: usize, prefix: &str) -> Result<Snapshot> {
        self.check_open()?;
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
    /// in key order; empty when the walk is over.
    ///
    /// # Errors
    /// SQLite errors; [`crate::ErrorKind::CorruptValue`] naming the key.
    pub fn next_pairs(&mut self, limit: usize) -> Result<Vec<(String, Value)>> {
        self.next_rows(limit)?
            .into_iter()
            .map(|(key, bytes)| {
                let value = bytes
                    .and_then(|b| b.map_or(Ok(Value::Nil), |b| decode(&b)))
                    .map_err(|e| Error::new(e.kind(), format!("key {key:?}: {}", e.message())))?;
                Ok((key, value))
            })
            .collect()
    }

    /// Like [`Snapshot::next_pairs`], keys only.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn next_keys(&mut self, limit: usize) -> Result<Vec<String>> {
        Ok(self.next_rows(limit)?.into_iter().map(|(k, _)| k).collect())
    }

    /// The next rows of the shard in key order, merged from its 4 tables.
    ///
    /// Each table is read up to `limit` rows past the last key returned.
    /// Rows up to the smallest "last key read" of the tables that filled
    /// their page are complete in every table, so they are returned (at
    /// most 4 x `limit`); the walk resumes after them. Expired rows are
    /// skipped; a page of nothing but expired rows does not end the walk.
    fn next_rows(&mut self, limit: usize) -> Result<Vec<WalkedRow>> {
        let limit = limit.max(1);
        while !self.done {
            let mut merged: Vec<WalkedRow> = Vec::new();
            // The largest key up to which every table has been read.
            let mut horizon: Option<String> = None;
            for table in 0..TABLES_PER_SHARD {
                let mut stmt = self
                    .conn
                    .prepare_cached(&self.file.tables[table].range(limit))
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
                let mut read = 0;
                let mut last = None;
                for row in rows {
                    let (key, value, expires) = row.map_err(|e| self.file.err(e))?;
                    read += 1;
                    last = Some(key.clone());
                    if expires.is_none_or(|at| at > self.now) {
                        merged.push((key, value));
                    }
                }
                if read == limit {
                    if let Some(last) = last {
                        if horizon
                            .as_ref()
                            .is_none_or(|h| last.as_bytes() < h.as_bytes())
                        {
                            horizon = Some(last);
                        }
                    }
                }
            }
            merged.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            match horizon {
                Some(h) => {
                    merged.retain(|(k, _)| k.as_bytes() <= h.as_bytes());
                    let mut after = h.into_bytes();
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
