//! One shard file: where it lives, opening and checking it, and reading
//! one key's row. Its SQL texts and schema facts are in [`sql`].

pub(crate) mod nowait;
pub(crate) mod sql;

use crate::error::{Error, ErrorKind, Result};
use crate::key::{table_names, SHARDS, TABLES_PER_SHARD};
use crate::options::Options;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
pub(crate) use sql::TableSql;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `PRAGMA application_id` of every shard file: "LSKV".
pub const APPLICATION_ID: i32 = 0x4C53_4B56;

/// The contract version this crate implements (`PRAGMA user_version`).
pub const CONTRACT_VERSION: i32 = 1;

/// Page size for new files; measured in `bench/NOTES.md`.
const PAGE_SIZE: u32 = 4096;

/// Where a shard lives and the SQL of its tables.
#[derive(Debug)]
pub(crate) struct ShardFile {
    /// Index into [`SHARDS`].
    pub index: usize,
    /// The file, or for an in-memory shard its `file:` URI.
    pub path: PathBuf,
    /// An SQLite in-memory database (the `memdb` VFS) rather than a file.
    pub memory: bool,
    pub tables: [TableSql; TABLES_PER_SHARD],
}

impl ShardFile {
    pub fn new(data_dir: &Path, index: usize) -> ShardFile {
        ShardFile {
            index,
            path: path(data_dir, index),
            memory: false,
            tables: table_names(index).each_ref().map(|t| TableSql::new(t)),
        }
    }

    /// Shard `index` of the in-memory store `tag`: a database of the
    /// `memdb` VFS whose name starts with `/`, which SQLite shares between
    /// all the connections of this process that open the same name, and
    /// frees when the last of them closes.
    pub fn in_memory(tag: &str, index: usize) -> ShardFile {
        let name = format!("file:/litestash-{tag}-{}?vfs=memdb", SHARDS[index]);
        ShardFile {
            index,
            path: PathBuf::from(name),
            memory: true,
            tables: table_names(index).each_ref().map(|t| TableSql::new(t)),
        }
    }

    /// The stored value column and expiry of the key with `hash` in table
    /// `table`, read on `conn` (a reader's or the writer's); `None` when
    /// absent. Expired rows are returned with their expiry: the caller
    /// decides what expired means to it.
    pub(crate) fn read_row(
        &self,
        conn: &Connection,
        table: usize,
        hash: &str,
    ) -> Result<Option<StoredRow>> {
        conn.prepare_cached(&self.tables[table].select)
            .and_then(|mut stmt| {
                stmt.query_row([hash], |row| {
                    Ok(StoredRow {
                        value: value_bytes(row.get_ref(0)?),
                        expires_at: row.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// As [`ShardFile::read_row`], but a value of more than `limit` bytes
    /// is not read (SQLite's `length()` of a blob reads no content):
    /// `Ok(None)` for an absent key, `Ok(Some(None))` for such a row.
    pub(crate) fn read_row_within(
        &self,
        conn: &Connection,
        table: usize,
        hash: &str,
        limit: usize,
    ) -> Result<Option<Option<StoredRow>>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        conn.prepare_cached(&self.tables[table].select_within)
            .and_then(|mut stmt| {
                stmt.query_row(rusqlite::params![hash, limit], |row| {
                    let length: Option<i64> = row.get(2)?;
                    Ok(match length {
                        Some(n) if n > limit => None,
                        _ => Some(StoredRow {
                            value: value_bytes(row.get_ref(0)?),
                            expires_at: row.get(1)?,
                        }),
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    pub fn err(&self, e: rusqlite::Error) -> Error {
        Error::sqlite(e, &self.path.display().to_string())
    }

    fn refuse(&self, kind: ErrorKind, why: &str) -> Error {
        Error::new(
            kind,
            format!("{}: {why}; the file was not modified", self.path.display()),
        )
    }

    pub(crate) fn connect(&self, options: &Options) -> Result<Connection> {
        self.connect_through(options, None)
    }

    /// As [`ShardFile::connect`], through the SQLite VFS named `vfs` (the
    /// default one when `None`).
    fn connect_through(&self, options: &Options, vfs: Option<&CStr>) -> Result<Connection> {
        let mut flags = if options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if self.memory {
            flags |= OpenFlags::SQLITE_OPEN_URI;
        }
        let conn = match vfs {
            Some(vfs) => Connection::open_with_flags_and_vfs(&self.path, flags, vfs),
            None => Connection::open_with_flags(&self.path, flags),
        }
        .map_err(|e| self.err(e))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| self.err(e))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Sets the per-connection pragmas. The `synchronous` level is set
    /// explicitly: bundled SQLite defaults WAL connections to FULL.
    fn tune(&self, conn: &Connection, options: &Options) -> Result<()> {
        conn.execute_batch(&sql::tuning(
            options.synchronous.pragma(),
            options.connection_cache_kib(),
            options.mmap_size,
        ))
        .map_err(|e| self.err(e))
    }

    /// Checks, before anything in the data dir is created or written, that
    /// this shard's path may become or already is a LiteStash shard: absent,
    /// or a file that identifies as one. It only reads. A damaged file
    /// passes (opening it reports `Corrupt` for this shard alone), and so
    /// does one that needs crash recovery first.
    pub fn check(&self, options: &Options) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if dir.exists() && !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!(
                    "{}: is not a directory, expected a shard dir",
                    dir.display()
                ),
            ));
        }
        if self.path.is_dir() {
            return Err(self.is_a_dir());
        }
        if !self.path.exists() {
            return Ok(());
        }
        self.check_writable()?;
        // A read-write connection removes the -wal and -shm that reading a
        // WAL file creates; a read-only one leaves them. But when a -wal or
        // -journal is already there, only a read-only connection is sure
        // not to write another program's unfinished work into its file.
        let leftover = ["-wal", "-journal"]
            .iter()
            .any(|suffix| beside(&self.path, suffix).exists());
        let access = if leftover {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn =
            Connection::open_with_flags(&self.path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| self.err(e))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| self.err(e))?;
        match self.identify(&conn) {
            Ok(Identity::Current) => self.check_columns(&conn),
            Ok(Identity::Empty) => Ok(()),
            // Damaged, or left mid-write by a crash, which a read-only
            // connection cannot roll back: opening it for writing recovers
            // it as any SQLite reader would, then identifies it again.
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::ReadOnly) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Refuses a file, or its -wal or -shm, that has no write permission
    /// bit at all, or that this process may not write. By its mode as well
    /// as by `access(2)`: root may write any file, and a store opened by
    /// root on a file set read-only would then work in part and leave its
    /// -wal and -shm with that mode; another user's file without write
    /// permission for us SQLite would open read-only, and half the store
    /// would refuse its writes.
    fn check_writable(&self) -> Result<()> {
        for path in [
            self.path.clone(),
            beside(&self.path, "-wal"),
            beside(&self.path, "-shm"),
        ] {
            match std::fs::metadata(&path) {
                Ok(meta) if meta.permissions().readonly() || !writable_by_this_process(&path) => {
                    return Err(Error::new(
                        ErrorKind::ReadOnly,
                        format!(
                            "{}: the file is read-only (no write permission); \
                             LiteStash writes its shard files, and nothing was opened",
                            path.display()
                        ),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn is_a_dir(&self) -> Error {
        Error::new(
            ErrorKind::NotADirectory,
            format!(
                "{}: is a directory, expected a shard file",
                self.path.display()
            ),
        )
    }

    /// Opens the write connection: creates the directory, the file and its
    /// tables when new; checks identity and version when not, before
    /// anything is written to it.
    pub fn open_writer(&self, options: &Options) -> Result<Connection> {
        if !self.memory {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| Error::io(&e, &dir.display().to_string()))?;
            if self.path.is_dir() {
                return Err(self.is_a_dir());
            }
        }
        let conn = self.connect(options)?;
        if self.identify(&conn)? == Identity::Empty {
            // Both only take effect before the first table is created.
            conn.pragma_update(None, "page_size", PAGE_SIZE)
                .map_err(|e| self.err(e))?;
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(|e| self.err(e))?;
        }
        // An in-memory database cannot be in WAL mode (it has no shared
        // memory file): it keeps its rollback journal in memory, and its
        // readers and writer take turns (see `Store::open_memory`).
        let (mode, wanted) = if self.memory {
            let mode: String = conn
                .query_row(sql::ENTER_MEMORY_JOURNAL, [], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            (mode, "memory")
        } else {
            (self.enter_wal(&conn, options)?, "wal")
        };
        if !mode.eq_ignore_ascii_case(wanted) {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{}: could not switch to journal_mode {wanted} (it is {mode})",
                    self.path.display()
                ),
            ));
        }
        self.tune(&conn, options)?;
        conn.execute_batch(&sql::writer_tuning(options.journal_size_limit))
            .map_err(|e| self.err(e))?;
        if let Some(pages) = options.max_page_count {
            conn.pragma_update(None, "max_page_count", pages)
                .map_err(|e| self.err(e))?;
        }
        self.create_tables(&conn, options.replica)?;
        Ok(conn)
    }

    /// Switches the file to WAL. SQLite answers "database is locked" at once,
    /// without its busy handler, while another process creates the same
    /// file, so this retries until the busy timeout.
    fn enter_wal(&self, conn: &Connection, options: &Options) -> Result<String> {
        let deadline = std::time::Instant::now() + options.busy_timeout;
        loop {
            match conn.query_row(sql::ENTER_WAL, [], |r| r.get(0)) {
                Ok(mode) => return Ok(mode),
                Err(e) => {
                    let err = self.err(e);
                    if err.kind() != ErrorKind::Busy || std::time::Instant::now() >= deadline {
                        return Err(err);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
    }

    /// Creates whatever tables are missing and stamps a new file, in one
    /// transaction, re-checking identity under the write lock (another
    /// process may be creating the same file).
    fn create_tables(&self, conn: &Connection, replica: bool) -> Result<()> {
        conn.execute_batch(sql::BEGIN_WRITE)
            .map_err(|e| self.err(e))?;
        let result = (|| {
            let identity = self.identify(conn)?;
            // IF NOT EXISTS writes nothing for tables that are there; the
            // header is stamped only on a new file, so that opening an
            // existing one does not rewrite its first page.
            let mut ddl = String::new();
            for table in table_names(self.index) {
                ddl.push_str(&TableSql::ddl(table));
            }
            ddl.push_str(sql::EXPIRY_DDL);
            if replica {
                ddl.push_str(sql::REPLICA_DDL);
            }
            if identity == Identity::Empty {
                ddl.push_str(&sql::stamp(APPLICATION_ID, CONTRACT_VERSION));
            }
            conn.execute_batch(&ddl).map_err(|e| self.err(e))?;
            self.check_columns(conn)
        })();
        let end = if result.is_ok() {
            sql::COMMIT
        } else {
            sql::ROLLBACK
        };
        conn.execute_batch(end).map_err(|e| self.err(e))?;
        result
    }

    /// Opens the first read connection of a store opened `read_only`,
    /// checking that the file is there and is a LiteStash shard: there is
    /// no writer to have checked it. It writes nothing to the file.
    ///
    /// SQLite reads a WAL file read-only when its `-wal` and `-shm` exist
    /// (another process has it open) or when it can create them (the
    /// directory is writable; a store closed cleanly leaves neither).
    pub fn open_read_only(&self, options: &Options) -> Result<Connection> {
        if !self.path.is_file() {
            return Err(Error::new(
                ErrorKind::NotLitestash,
                format!(
                    "{}: the shard file is missing (read_only: true opens a data dir that a store has created)",
                    self.path.display()
                ),
            ));
        }
        let conn = self.open_reader(options)?;
        match self.identify(&conn)? {
            Identity::Current => self.check_columns(&conn)?,
            Identity::Empty => {
                return Err(self.refuse(
                    ErrorKind::NotLitestash,
                    "an empty SQLite file, not yet a LiteStash shard",
                ))
            }
        }
        Ok(conn)
    }

    /// Copies the database `source` reads into `dest`, page by page under
    /// one read lock (SQLite's backup API), retrying while a writer holds
    /// the lock, up to `wait`.
    pub(crate) fn copy_database(
        &self,
        source: &Connection,
        dest: &mut Connection,
        wait: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + wait;
        let backup = Backup::new(source, dest).map_err(|e| self.err(e))?;
        loop {
            match backup.step(-1).map_err(|e| self.err(e))? {
                StepResult::Done => return Ok(()),
                StepResult::More => {}
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                _ => {
                    return Err(Error::new(
                        ErrorKind::Busy,
                        format!(
                            "{}: the shard stayed locked for {wait:?}",
                            self.path.display()
                        ),
                    ))
                }
            }
        }
    }

    /// Whether the file holds the replica table (contract section 10).
    pub(crate) fn is_replica(&self, conn: &Connection) -> Result<bool> {
        conn.query_row(sql::HAS_REPLICA_TABLE, [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Opens a read connection to a file the writer has already checked.
    pub fn open_reader(&self, options: &Options) -> Result<Connection> {
        // A file's readers go through the no-wait VFS, so that a read may
        // be tried on a thread that must not wait (see `nowait`).
        let vfs =
            (!self.memory && options.nowait_reads && nowait::registered()).then_some(nowait::NAME);
        let conn = self.connect_through(options, vfs)?;
        self.tune(&conn, options)?;
        conn.execute_batch(sql::QUERY_ONLY)
            .map_err(|e| self.err(e))?;
        Ok(conn)
    }

    /// Reads the file's identity without changing it.
    fn identify(&self, conn: &Connection) -> Result<Identity> {
        // One statement, so one read transaction: another process creating
        // the file between separate reads could make a new file look like a
        // legacy one (tables present, version not yet set).
        let (app_id, version, first_table): (i32, i32, Option<String>) = conn
            .query_row(sql::IDENTIFY, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        match (app_id, version, first_table) {
            (APPLICATION_ID, CONTRACT_VERSION, _) => Ok(Identity::Current),
            (APPLICATION_ID, v, _) if v > CONTRACT_VERSION => Err(self.refuse(
                ErrorKind::NewerVersion,
                &format!(
                    "written under LiteStash contract version {v}, this build reads version {CONTRACT_VERSION}"
                ),
            )),
            (0, 0, None) => Ok(Identity::Empty),
            (0, 0, Some(t)) if t.starts_with("tables_") => Err(self.refuse(
                ErrorKind::LegacyFormat,
                "written by the Python litestash 0.1 package (user_version 0: 41-byte hashes, JSON values), not contract version 1",
            )),
            (id, v, _) => Err(self.refuse(
                ErrorKind::NotLitestash,
                &format!("an SQLite database but not a LiteStash shard (application_id {id}, user_version {v})"),
            )),
        }
    }

    /// Checks that each of the 4 tables has the contract's 5 columns in order.
    fn check_columns(&self, conn: &Connection) -> Result<()> {
        for table in table_names(self.index) {
            let names = columns(conn, table).map_err(|e| self.err(e))?;
            if names != sql::COLUMNS {
                return Err(self.refuse(
                    ErrorKind::NotLitestash,
                    &format!(
                        "table {table} has columns {names:?}, the contract says {:?}",
                        sql::COLUMNS
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The file of shard `index` under `data_dir` (contract section 3).
pub(crate) fn path(data_dir: &Path, index: usize) -> PathBuf {
    let shard = SHARDS[index];
    data_dir.join(shard).join(format!("{shard}.db"))
}

/// `path` with `suffix` appended to its file name (`-wal`, `-shm`).
pub(crate) fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The column names of `table`, in order (none when it is missing).
pub(crate) fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare(&sql::table_columns(table))?
        .query_map([], |r| r.get(0))?
        .collect()
}

/// A key's stored row: its value column (the bytes, `None` for NULL, or why
/// it is unreadable) and its expiry in Unix milliseconds.
#[derive(Debug)]
pub(crate) struct StoredRow {
    pub value: Result<Option<Vec<u8>>>,
    pub expires_at: Option<i64>,
}

impl StoredRow {
    /// Whether the row has expired at `now` (Unix milliseconds).
    pub(crate) fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The bytes of a stored `value` column: a BLOB, or `None` for NULL (nil).
/// Any other type is a foreign writer's mistake, reported for that key only.
pub(crate) fn value_bytes(column: ValueRef<'_>) -> Result<Option<Vec<u8>>> {
    match column {
        ValueRef::Blob(bytes) => Ok(Some(bytes.to_vec())),
        ValueRef::Null => Ok(None),
        other => Err(Error::new(
            ErrorKind::CorruptValue,
            format!(
                "the value column holds {}, not a MessagePack BLOB",
                other.data_type()
            ),
        )),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Identity {
    Empty,
    Current,
}

/// Whether this process may write `path` (`access(2)` with `W_OK`): false
/// for a user other than root on a file another user owns without giving
/// it write permission, which SQLite would open read-only without a word.
fn writable_by_this_process(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: a NUL-terminated path that lives across the call.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    #[test]
    fn a_cached_point_read_is_not_prepared_again_for_each_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = ShardFile::new(dir.path(), 0);
        let options = Options::default();
        drop(file.open_writer(&options).unwrap());
        let conn = file.open_reader(&options).unwrap();
        for table in &file.tables {
            for key in ["a", "b", "c"] {
                let found: Option<Option<i64>> = conn
                    .prepare_cached(&table.select)
                    .unwrap()
                    .query_row([key], |r| r.get(1))
                    .optional()
                    .unwrap();
                assert_eq!(found, None);
            }
            let stmt = conn.prepare_cached(&table.select).unwrap();
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
        }
    }

    #[test]
    fn range_and_sweep_queries_are_not_prepared_again_for_each_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let file = ShardFile::new(dir.path(), 0);
        let options = Options::default();
        drop(file.open_writer(&options).unwrap());
        let conn = file.open_reader(&options).unwrap();
        let queries = [(file.tables[0].range(3), 2), (sql::expiry_due(5), 1)];
        for (sql, params) in queries {
            for _ in 0..3 {
                let mut stmt = conn.prepare_cached(&sql).unwrap();
                let n = if params == 2 {
                    stmt.query_map(rusqlite::params!["a", "b"], |_| Ok(()))
                        .unwrap()
                        .count()
                } else {
                    stmt.query_map([0i64], |_| Ok(())).unwrap().count()
                };
                assert_eq!(n, 0);
            }
            let stmt = conn.prepare_cached(&sql).unwrap();
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{sql}");
        }
    }
}
