//! A running store's figures and copies: `info` and `backup`.

use crate::data_dir;
use crate::error::{Error, ErrorKind, Result};
use crate::key::{SHARDS, SHARD_COUNT};
use crate::locks::lock;
use crate::shard::{self, sql, ShardFile};
use crate::store::{Shard, Store};
use rusqlite::Connection;
use std::path::Path;

/// Live figures of one shard.
#[derive(Debug, Clone)]
pub struct ShardInfo {
    /// The shard's name.
    pub shard: &'static str,
    /// Live keys, or why they could not be counted.
    pub keys: std::result::Result<u64, String>,
    /// Size of the `.db` file.
    pub file_bytes: u64,
    /// Size of its `-wal` file.
    pub wal_bytes: u64,
    /// Bytes the value cache holds for this shard's keys.
    pub value_cache_bytes: u64,
    /// Bytes of SQLite page cache its writer and idle readers use (a
    /// reader busy with a read at that moment is not counted).
    pub page_cache_bytes: u64,
}

/// Bytes of page cache `conn` uses.
fn page_cache_used(conn: &Connection) -> u64 {
    let (mut current, mut highest) = (0, 0);
    // SAFETY: the handle is open for the life of `conn`, borrowed here,
    // and SQLite only writes the two ints.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
            &mut current,
            &mut highest,
            0,
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        u64::try_from(current).unwrap_or(0)
    } else {
        0
    }
}

/// The size of `path`, 0 when it is missing.
pub(crate) fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

impl Store {
    /// Per-shard figures: live keys, file and WAL sizes in bytes.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`]; a broken shard is reported in its entry.
    pub fn info(&self) -> Result<Vec<ShardInfo>> {
        self.check_open()?;
        let mut out = Vec::with_capacity(SHARD_COUNT);
        for (index, entry) in self.shards.iter().enumerate() {
            let path = shard::path(&self.dir, index);
            let keys = match entry {
                Shard::Ready { .. } | Shard::Reading { .. } => {
                    self.count_shard(index).map_err(|e| e.message().to_owned())
                }
                Shard::Broken(e) => Err(e.message().to_owned()),
            };
            out.push(ShardInfo {
                shard: SHARDS[index],
                keys,
                file_bytes: size(&path),
                wal_bytes: size(&shard::beside(&path, "-wal")),
                value_cache_bytes: self.cache.shard_bytes(index),
                page_cache_bytes: self.page_cache_bytes(index),
            });
        }
        Ok(out)
    }

    fn page_cache_bytes(&self, index: usize) -> u64 {
        let Shard::Ready {
            engine, readers, ..
        } = &self.shards[index]
        else {
            return 0;
        };
        let writer = lock(engine)
            .as_ref()
            .map_or(0, |w| page_cache_used(w.connection()));
        writer + lock(readers).iter().map(page_cache_used).sum::<u64>()
    }

    fn count_shard(&self, shard: usize) -> Result<u64> {
        let mut snapshot = self.snapshot_within_call(shard, "")?;
        let mut n = 0u64;
        loop {
            let chunk = snapshot.next_keys(4096)?;
            if chunk.is_empty() {
                return Ok(n);
            }
            n += chunk.len() as u64;
        }
    }

    /// The index of the last replication log entry applied to shard
    /// `shard`'s file; 0 for none (or a file that is not a replica's).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], a broken shard's error, SQLite errors.
    pub fn replica_applied(&self, shard: usize) -> Result<u64> {
        self.file(shard)?;
        self.read(shard, |file, conn| {
            if !file.is_replica(conn)? {
                return Ok(0);
            }
            crate::writer::replica_applied_index(conn).map_err(|e| file.err(e))?
        })
    }

    /// Writes a consistent copy of shard `shard`'s file (with its replica
    /// table) to `dest`, which must not exist: a snapshot for a replica
    /// that catches up ([`crate::Request::install`]).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], a broken shard's error, I/O and SQLite errors.
    pub fn shard_snapshot(&self, shard: usize, dest: &Path) -> Result<()> {
        self.check_open()?;
        let file = self.file(shard)?;
        let dest_text = dest.to_str().ok_or_else(|| {
            Error::new(ErrorKind::InvalidArgument, "the snapshot path is not UTF-8")
        })?;
        let conn = file.connect(&self.options)?;
        conn.execute(sql::VACUUM_INTO, [dest_text])
            .map_err(|e| file.err(e))?;
        Ok(())
    }

    /// Copies a consistent image of every shard (each in its own snapshot,
    /// taken while writes go on) into `dest`, which must not exist or be
    /// empty. The copy is a LiteStash data dir.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a `dest` that is not empty or is
    /// inside the store's own data dir; I/O and SQLite errors naming the
    /// file.
    pub fn backup(&self, dest: &Path) -> Result<()> {
        self.check_open()?;
        if !self.memory {
            data_dir::refuse_backup_inside(&self.dir, dest)?;
        }
        if dest.exists()
            && std::fs::read_dir(dest)
                .map_err(|e| Error::io(&e, &dest.display().to_string()))?
                .next()
                .is_some()
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{}: the backup destination must be empty or not exist",
                    dest.display()
                ),
            ));
        }
        for index in 0..SHARD_COUNT {
            let target = ShardFile::new(dest, index).path;
            let dir = target.parent().unwrap_or(dest);
            std::fs::create_dir_all(dir).map_err(|e| Error::io(&e, &dir.display().to_string()))?;
            let target_text = target.to_str().ok_or_else(|| {
                Error::new(ErrorKind::InvalidArgument, "the backup path is not UTF-8")
            })?;
            let file = self.file(index)?;
            // Not a pooled reader: those are query_only, and VACUUM INTO
            // counts as a write.
            let conn = file.connect(&self.options)?;
            if file.memory {
                // VACUUM INTO would write with the source's VFS, into
                // memory: an in-memory shard is copied page by page.
                let mut copy =
                    Connection::open(&target).map_err(|e| Error::sqlite(e, target_text))?;
                file.copy_database(&conn, &mut copy, self.options.busy_timeout)?;
            } else {
                conn.execute(sql::VACUUM_INTO, [target_text])
                    .map_err(|e| file.err(e))?;
            }
            // VACUUM INTO and the copy write a rollback-journal file; the
            // contract's files are WAL.
            let copy = Connection::open(&target).map_err(|e| Error::sqlite(e, target_text))?;
            copy.query_row(sql::ENTER_WAL, [], |_| Ok(()))
                .map_err(|e| Error::sqlite(e, target_text))?;
        }
        Ok(())
    }
}
