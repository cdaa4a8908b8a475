//! The vocabulary of writes ([`Op`]) and what each one does to a shard
//! file, inside the transaction its writer opened.

use super::Writer;
use crate::clock::Now;
use crate::codec::{canonical, decode, encode, Value};
use crate::error::{Error, ErrorKind, Result};
use crate::reply::Outcome;
use crate::shard::sql;
use rusqlite::params;

/// One row to write.
#[derive(Debug)]
pub(crate) struct Row {
    pub table: usize,
    pub hash: String,
    pub key: String,
    pub value: Vec<u8>,
    /// Unix milliseconds the key expires at; `None` clears any expiry.
    pub expires_at: Option<i64>,
}

impl Row {
    /// Where the row lives.
    fn target(&self) -> Target {
        Target {
            table: self.table,
            hash: self.hash.clone(),
            key: self.key.clone(),
        }
    }
}

/// Where a key's row lives.
#[derive(Debug)]
pub(crate) struct Target {
    pub table: usize,
    pub hash: String,
    pub key: String,
}

/// A write, applied atomically in the shard's file.
#[derive(Debug)]
pub(crate) enum Op {
    Put(Vec<Row>),
    Delete(Target),
    /// Sets (`Some`) or clears (`None`) the expiry of a live key.
    Expire(Target, Option<i64>),
    Incr(Target, i64),
    PutNew(Row),
    /// Writes `row` only if the stored value equals `expected` (canonical
    /// encoding; `None` for nil or absent).
    CompareAndSet(Row, Option<Vec<u8>>),
    Clear,
    /// Gives free pages back to the file system, in bounded steps.
    Compact,
    /// Deletes up to this many expired keys (a replicated sweep).
    Sweep(usize),
    /// The ops of one replication log entry, applied with its index and
    /// its clock (see `writer/replica.rs`).
    Replicated {
        index: u64,
        now_ms: i64,
        ops: Vec<Op>,
    },
    /// Replaces the file's contents with the database at this path (a
    /// replica catching up from a snapshot).
    Install(std::path::PathBuf),
}

/// Bytes counted for a write besides its key and value.
const OVERHEAD: usize = 96;

impl Op {
    /// Whether the op can only free space in the file (see `room.rs`).
    pub(crate) fn frees(&self) -> bool {
        match self {
            Op::Delete(_) | Op::Clear | Op::Sweep(_) => true,
            Op::Replicated { ops, .. } => ops.iter().all(Op::frees),
            _ => false,
        }
    }

    /// About how many bytes the op adds to a transaction.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Op::Put(rows) => rows
                .iter()
                .map(|r| r.value.len() + r.key.len() + OVERHEAD)
                .sum(),
            Op::PutNew(row) | Op::CompareAndSet(row, _) => {
                row.value.len() + row.key.len() + OVERHEAD
            }
            _ => OVERHEAD,
        }
    }
}

impl Writer {
    fn put(&self, row: &Row, secs: i64, micros: i64) -> Result<()> {
        self.sql(
            &self.file.tables[row.table].upsert,
            params![row.hash, row.key, row.value, secs, micros],
        )?;
        match row.expires_at {
            Some(at) => self.sql(sql::EXPIRY_UPSERT, params![row.hash, at]),
            None => self.sql(sql::EXPIRY_DELETE, [&row.hash]),
        }
    }

    fn remove(&self, table: usize, hash: &str) -> Result<()> {
        self.sql(&self.file.tables[table].delete, [hash])?;
        self.sql(sql::EXPIRY_DELETE, [hash])
    }

    /// Deletes the key with `hash` from this file, or only its expiry row
    /// when the hash belongs to another file (a foreign writer's mistake).
    pub(super) fn remove_hash(&self, hash: &str) -> Result<()> {
        match crate::key::route(hash) {
            Ok(route) if route.shard == self.file.index => self.remove(route.table, hash),
            _ => self.sql(sql::EXPIRY_DELETE, [hash]),
        }
    }

    /// The stored bytes of a key that exists and has not expired. An expired
    /// key found here is deleted on the spot.
    fn live(&self, target: &Target) -> Result<Option<Option<Vec<u8>>>> {
        match self.file.read_row(&self.conn, target.table, &target.hash)? {
            Some(row) if row.expired(self.now().ms) => {
                self.remove(target.table, &target.hash)?;
                Ok(None)
            }
            Some(row) => row.value.map(Some),
            None => Ok(None),
        }
    }

    /// Applies `op` in the open transaction.
    pub(super) fn apply(&mut self, op: &Op) -> Result<Outcome> {
        #[cfg(feature = "test-hooks")]
        if std::mem::take(&mut self.panic_next) {
            panic!("a panic injected by a test, inside a write's transaction");
        }
        let Now { secs, micros, .. } = self.now();
        self.touch(op);
        match op {
            Op::Put(rows) => {
                for row in rows {
                    self.put(row, secs, micros)?;
                }
            }
            Op::Delete(t) => self.remove(t.table, &t.hash)?,
            Op::Expire(t, at) => {
                if self.live(t)?.is_none() {
                    return Err(Error::not_found(&t.key));
                }
                match at {
                    Some(at) => self.sql(sql::EXPIRY_UPSERT, params![t.hash, at])?,
                    None => self.sql(sql::EXPIRY_DELETE, [&t.hash])?,
                }
            }
            Op::Incr(t, by) => return self.incr(t, *by, secs, micros),
            Op::PutNew(row) => {
                if self.live(&row.target())?.is_some() {
                    return Err(Error::new(
                        ErrorKind::Exists,
                        format!("key {:?} already exists", row.key),
                    ));
                }
                self.put(row, secs, micros)?;
            }
            Op::CompareAndSet(row, expected) => {
                let stored = match self.live(&row.target())?.flatten() {
                    None => None,
                    Some(bytes) => match decode(&bytes)? {
                        Value::Nil => None,
                        value => Some(canonical(&value)?),
                    },
                };
                if &stored != expected {
                    return Err(Error::new(
                        ErrorKind::Mismatch,
                        format!("key {:?} does not hold the expected value", row.key),
                    ));
                }
                self.put(row, secs, micros)?;
            }
            Op::Clear => {
                for table in &self.file.tables {
                    self.sql(&table.clear, [])?;
                }
                self.sql(sql::EXPIRY_CLEAR, [])?;
            }
            Op::Compact => {}
            Op::Sweep(limit) => {
                self.sweep(*limit)?;
            }
            Op::Replicated { index, now_ms, ops } => {
                return self.apply_replicated(*index, *now_ms, ops)
            }
            Op::Install(_) => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "a snapshot is installed between transactions, never inside one",
                ))
            }
        }
        Ok(Outcome::Done)
    }

    /// Notes the keys `op` may change, for the value cache to drop after
    /// the commit (dropping more than changed is harmless).
    fn touch(&mut self, op: &Op) {
        let key = match op {
            Op::Put(rows) => {
                let keys = rows.iter().map(|r| r.key.clone());
                self.touched.keys.extend(keys);
                return;
            }
            Op::Delete(t) | Op::Expire(t, _) | Op::Incr(t, _) => &t.key,
            Op::PutNew(row) | Op::CompareAndSet(row, _) => &row.key,
            // A replicated sweep deletes by the entry's clock, which may be
            // ahead of ours: its keys are not all expired by our reads' clock.
            Op::Clear | Op::Sweep(_) => {
                self.touched.all = true;
                return;
            }
            Op::Replicated { ops, .. } => {
                ops.iter().for_each(|op| self.touch(op));
                return;
            }
            // An install replaces the file outside any transaction; see
            // `Writer::install`.
            Op::Compact | Op::Install(_) => return,
        };
        self.touched.keys.push(key.clone());
    }

    /// Adds `by` to the integer under `t`; an increment keeps the key's expiry.
    fn incr(&mut self, t: &Target, by: i64, secs: i64, micros: i64) -> Result<Outcome> {
        let current = match self.live(t)? {
            None => 0,
            Some(bytes) => match bytes.as_deref().map(decode).transpose()? {
                Some(Value::Int(n)) => n,
                _ => {
                    return Err(Error::new(
                        ErrorKind::NotAnInteger,
                        format!("key {:?} holds a value that is not an integer", t.key),
                    ))
                }
            },
        };
        let next = current.checked_add(by).ok_or_else(|| {
            Error::new(
                ErrorKind::NotAnInteger,
                format!("incrementing key {:?} by {by} leaves -2^63..2^63-1", t.key),
            )
        })?;
        self.sql(
            &self.file.tables[t.table].upsert,
            params![t.hash, t.key, encode(&Value::Int(next))?, secs, micros],
        )?;
        Ok(Outcome::Integer(next))
    }
}
