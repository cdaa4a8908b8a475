//! A replica's writes (contract section 10): the ops of one replication
//! log entry, applied in one transaction together with the entry's index,
//! so that replaying the log after a crash applies nothing twice and skips
//! nothing; and installing a snapshot of the whole file.

use super::op::Op;
use super::Writer;
use crate::clock::Now;
use crate::codec::{decode, encode, Value};
use crate::error::{Error, ErrorKind, Result};
use crate::reply::Outcome;
use crate::shard::sql;
use rusqlite::{params, OptionalExtension, MAIN_DB};
use std::path::Path;

impl Writer {
    /// The index of the last log entry applied to this file; 0 for none.
    pub(super) fn applied_index(&self) -> Result<u64> {
        applied_index(&self.conn).map_err(|e| self.file.err(e))?
    }

    /// Applies `ops`, each failing alone, by the entry's clock, and records
    /// `index`; an entry at or below the recorded index is skipped.
    pub(super) fn apply_replicated(
        &mut self,
        index: u64,
        now_ms: i64,
        ops: &[Op],
    ) -> Result<Outcome> {
        if index <= self.applied_index()? {
            return Ok(Outcome::Skipped);
        }
        self.replay_clock = Some(Now::at_ms(now_ms));
        let results = ops
            .iter()
            .map(|op| self.apply_one_replicated(op))
            .collect::<Result<Vec<_>>>();
        self.replay_clock = None;
        let results = results?;
        let bytes = encode(&Value::UInt(index))?;
        self.sql(sql::REPLICA_SET, params![sql::APPLIED_INDEX, bytes])?;
        Ok(Outcome::Replicated(results))
    }

    /// One op of an entry in a savepoint of its own: its failure undoes it
    /// alone. `Err` only when the whole transaction is lost.
    fn apply_one_replicated(&mut self, op: &Op) -> Result<Result<Outcome>> {
        if matches!(op, Op::Replicated { .. } | Op::Install(_) | Op::Compact) {
            return Ok(Err(Error::new(
                ErrorKind::InvalidArgument,
                "a replicated entry holds only key writes, clear and sweep",
            )));
        }
        self.apply_in(&sql::OP_SAVEPOINT, op)
    }

    /// Replaces the file's contents with the database at `path`, page for
    /// page, through SQLite's backup API on the writer's connection (outside
    /// any transaction): readers keep their snapshots, later reads see the
    /// copy.
    pub(super) fn install(&mut self, path: &Path) -> Result<()> {
        let shown = path.display().to_string();
        let source = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::sqlite(e, &shown))?;
        let has_table: bool = source
            .query_row(sql::HAS_REPLICA_TABLE, [], |r| r.get(0))
            .map_err(|e| Error::sqlite(e, &shown))?;
        if !has_table {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{shown}: not a replica's shard file (no litestash_replica table)"),
            ));
        }
        drop(source);
        let restored = self
            .conn
            .restore(MAIN_DB, path, None::<fn(rusqlite::backup::Progress)>)
            .map_err(|e| self.file.err(e));
        // Every key may have changed: the value cache forgets the shard.
        self.cache
            .committed(self.file.index, None, false, &Default::default());
        restored
    }
}

/// The applied index recorded in the file `conn` reads; 0 for none.
pub(crate) fn applied_index(conn: &rusqlite::Connection) -> rusqlite::Result<Result<u64>> {
    let bytes: Option<Vec<u8>> = conn
        .query_row(sql::REPLICA_GET, [sql::APPLIED_INDEX], |r| r.get(0))
        .optional()?;
    Ok(match bytes.as_deref().map(decode).transpose() {
        Ok(None) => Ok(0),
        Ok(Some(Value::UInt(n))) => Ok(n),
        Ok(Some(Value::Int(n))) if n >= 0 => Ok(n as u64),
        Ok(Some(_)) => Err(Error::new(
            ErrorKind::CorruptValue,
            "the replica's applied_index is not a non-negative integer",
        )),
        Err(e) => Err(e),
    })
}
