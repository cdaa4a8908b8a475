//! A running store's figures and copies: `info` and `backup`.

use crate::data_dir;
use crate::error::{Error, ErrorKind, Result};
use crate::key::{SHARDS, SHARD_COUNT};
use crate::locks::lock;
use crate::shard::{self, sql, ShardFile};
use crate::store::{Shard, Store};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

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
    /// Reads that missed the value cache and were answered from the file
    /// on the calling thread, without waiting.
    pub nowait_reads: u64,
    /// Reads tried that way and redone where waiting is allowed.
    pub nowait_deferred: u64,
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

/// Bytes SQLite has allocated in this process now, over every connection
/// of every store (`sqlite3_memory_used`): the page caches, and each
/// connection's schema, statements and lookaside. What the value cache
/// holds is not in it.
pub fn sqlite_memory_used() -> u64 {
    // SAFETY: a read of SQLite's global counter, callable at any time.
    u64::try_from(unsafe { rusqlite::ffi::sqlite3_memory_used() }).unwrap_or(0)
}

/// Hands the memory the C allocator holds free back to the OS (glibc's
/// `malloc_trim`), after a store closes: SQLite's connections and the
/// value cache's entries were allocated on many threads, each with an
/// arena of its own, and glibc gives back only the top of an arena by
/// itself, so a closed store's memory would otherwise stay resident.
/// Elsewhere it does nothing.
pub fn trim_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim takes the arenas' own locks and may
        // be called from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
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
                nowait_reads: self.nowait[index].answered.load(Ordering::Relaxed),
                nowait_deferred: self.nowait[index].deferred.load(Ordering::Relaxed),
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
    /// empty. The copy is a LiteStash data dir, complete or not there: it
    /// is built in a dir beside `dest` that holds [`BACKUP_INCOMPLETE`]
    /// (which open and `inspect_dir` refuse) and renamed to `dest` once
    /// every shard is copied. An interrupted backup leaves at most that
    /// dir, never a `dest` that opens with shards missing.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a `dest` that is not empty, has
    /// no file name or is inside the store's own data dir; I/O and SQLite
    /// errors naming the file.
    pub fn backup(&self, dest: &Path) -> Result<()> {
        self.check_open()?;
        if !self.memory {
            data_dir::refuse_backup_inside(&self.dir, dest)?;
        }
        let dest_text = dest.display().to_string();
        if dest.exists()
            && std::fs::read_dir(dest)
                .map_err(|e| Error::io(&e, &dest_text))?
                .next()
                .is_some()
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{dest_text}: the backup destination must be empty or not exist"),
            ));
        }
        let aside = aside(dest)?;
        if let Some(parent) = aside.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(&e, &parent.display().to_string()))?;
        }
        // A dir of the same name is what an earlier run of this process
        // left when it was killed.
        let _ = std::fs::remove_dir_all(&aside);
        let aside_text = aside.display().to_string();
        std::fs::create_dir(&aside).map_err(|e| Error::io(&e, &aside_text))?;
        let copied = std::fs::write(aside.join(BACKUP_INCOMPLETE), INCOMPLETE_NOTE)
            .map_err(|e| Error::io(&e, &aside_text))
            .and_then(|()| self.copy_shards(&aside))
            .and_then(|()| {
                std::fs::remove_file(aside.join(BACKUP_INCOMPLETE))
                    .map_err(|e| Error::io(&e, &aside_text))
            })
            .and_then(|()| move_into_place(&aside, dest));
        if copied.is_err() {
            let _ = std::fs::remove_dir_all(&aside);
        }
        copied
    }

    fn copy_shards(&self, into: &Path) -> Result<()> {
        for index in 0..SHARD_COUNT {
            #[cfg(feature = "test-hooks")]
            crate::test_hooks::crash_backup_if_due(&self.dir, index);
            let target = ShardFile::new(into, index).path;
            let dir = target.parent().unwrap_or(into);
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

/// The file in a backup being made that says it is not finished.
pub const BACKUP_INCOMPLETE: &str = "LITESTASH_BACKUP_INCOMPLETE";

const INCOMPLETE_NOTE: &str = "A LiteStash backup was being made here and did not finish: \
     this is not a complete data dir, and LiteStash will not open it. Delete it.\n";

/// Where the backup to `dest` is built: a hidden dir beside it, named
/// after it and this process.
fn aside(dest: &Path) -> Result<PathBuf> {
    let name = dest.file_name().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{}: the backup destination has no name", dest.display()),
        )
    })?;
    let mut hidden = std::ffi::OsString::from(".");
    hidden.push(name);
    hidden.push(format!(".litestash-backup-{}", std::process::id()));
    Ok(dest.with_file_name(hidden))
}

/// Renames the finished backup to `dest` (an empty dir there is replaced).
fn move_into_place(aside: &Path, dest: &Path) -> Result<()> {
    if dest.is_dir() {
        std::fs::remove_dir(dest).map_err(|e| Error::io(&e, &dest.display().to_string()))?;
    }
    std::fs::rename(aside, dest).map_err(|e| Error::io(&e, &dest.display().to_string()))
}

/// Refuses a dir that holds [`BACKUP_INCOMPLETE`]: an interrupted backup.
pub(crate) fn refuse_incomplete_backup(dir: &Path) -> Result<()> {
    if dir.join(BACKUP_INCOMPLETE).exists() {
        return Err(Error::new(
            ErrorKind::IncompleteBackup,
            format!(
                "{}: an interrupted backup ({BACKUP_INCOMPLETE} is there), not a complete data dir; \
                 it was not opened",
                dir.display()
            ),
        ));
    }
    Ok(())
}
