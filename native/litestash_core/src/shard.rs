//! One shard file: opening and checking it, its pragmas, its 4 tables and
//! the SQL of every statement on them (contract section 4).

use crate::error::{Error, ErrorKind, Result};
use crate::key::{table_names, SHARDS, TABLES_PER_SHARD};
use crate::store::{Options, Synchronous};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// `PRAGMA application_id` of every shard file: "LSKV".
pub const APPLICATION_ID: i32 = 0x4C53_4B56;

/// The contract version this crate implements (`PRAGMA user_version`).
pub const CONTRACT_VERSION: i32 = 1;

/// Page size for new files; measured in `bench/NOTES.md`.
const PAGE_SIZE: u32 = 4096;

/// The contract's optional expiry table (section 9).
const EXPIRY_DDL: &str =
    "CREATE TABLE IF NOT EXISTS litestash_expiry (\n  key_hash VARCHAR NOT NULL PRIMARY KEY,\n  \
     expires_at INTEGER NOT NULL\n);\n\
     CREATE INDEX IF NOT EXISTS ix_litestash_expiry_expires_at ON litestash_expiry (expires_at);\n";

/// Sets a key's expiry: `?1` key hash, `?2` Unix milliseconds.
pub(crate) const EXPIRY_UPSERT: &str =
    "INSERT INTO litestash_expiry (key_hash, expires_at) VALUES (?1, ?2) \
     ON CONFLICT (key_hash) DO UPDATE SET expires_at = excluded.expires_at";

/// Clears a key's expiry.
pub(crate) const EXPIRY_DELETE: &str = "DELETE FROM litestash_expiry WHERE key_hash = ?1";

/// Up to `limit` keys expired at `?1`. The limit is part of the text, not
/// a parameter: SQLite re-prepares a statement whose LIMIT is bound each
/// time its bindings are cleared, which rusqlite's cache does on every use.
pub(crate) fn expiry_due(limit: usize) -> String {
    format!("SELECT key_hash FROM litestash_expiry WHERE expires_at <= ?1 ORDER BY expires_at LIMIT {limit}")
}

/// Whether any key has expired at `?1`.
pub(crate) const EXPIRY_ANY_DUE: &str =
    "SELECT EXISTS (SELECT 1 FROM litestash_expiry WHERE expires_at <= ?1)";

/// The SQL of one table's statements, built once per shard.
#[derive(Debug)]
pub(crate) struct TableSql {
    pub upsert: String,
    pub delete: String,
    /// The value and expiry of one key.
    pub select: String,
    /// All rows, without the expiry join (when no key can have expired).
    pub count: String,
    /// Live rows with keys in `[?1, ?2)`, now being `?3`.
    pub count_live: String,
    /// Rows with keys in `[?1, ?2)`, in key order, with expiry, up to the
    /// limit given to [`TableSql::range`].
    range: String,
    pub clear: String,
}

impl TableSql {
    fn new(table: &str) -> TableSql {
        TableSql {
            upsert: format!(
                "INSERT INTO \"{table}\" (key_hash, \"key\", value, timestamp, microsecond) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key_hash) DO UPDATE SET \
                 \"key\" = excluded.\"key\", value = excluded.value, \
                 timestamp = excluded.timestamp, microsecond = excluded.microsecond"
            ),
            delete: format!("DELETE FROM \"{table}\" WHERE key_hash = ?1"),
            // A scalar subquery, not a LEFT JOIN: SQLite marks that join's
            // plan as depending on ?1, and rusqlite clears the bindings of a
            // statement it caches, so every read re-parsed and re-planned it
            // (measured in bench/NOTES.md: about half of a point read).
            select: format!(
                "SELECT t.value, (SELECT e.expires_at FROM litestash_expiry AS e \
                 WHERE e.key_hash = t.key_hash) FROM \"{table}\" AS t WHERE t.key_hash = ?1"
            ),
            count: format!("SELECT count(*) FROM \"{table}\""),
            count_live: format!(
                "SELECT count(*) FROM \"{table}\" AS t \
                 LEFT JOIN litestash_expiry AS e ON e.key_hash = t.key_hash \
                 WHERE t.\"key\" >= ?1 AND t.\"key\" < ?2 AND (e.expires_at IS NULL OR e.expires_at > ?3)"
            ),
            range: format!(
                "SELECT t.\"key\", t.value, e.expires_at FROM \"{table}\" AS t \
                 LEFT JOIN litestash_expiry AS e ON e.key_hash = t.key_hash \
                 WHERE t.\"key\" >= ?1 AND t.\"key\" < ?2 ORDER BY t.\"key\" LIMIT "
            ),
            clear: format!("DELETE FROM \"{table}\""),
        }
    }

    /// The range query with `limit` in its text (see [`expiry_due`] for why).
    pub fn range(&self, limit: usize) -> String {
        format!("{}{limit}", self.range)
    }

    fn ddl(table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (\n  key_hash VARCHAR NOT NULL,\n  \"key\" VARCHAR,\n  \
             value BLOB,\n  timestamp INTEGER,\n  microsecond INTEGER,\n  PRIMARY KEY (key_hash)\n);\n\
             CREATE UNIQUE INDEX IF NOT EXISTS \"ix_{table}_key\" ON \"{table}\" (\"key\");\n"
        )
    }
}

/// Where a shard lives and the SQL of its tables.
#[derive(Debug)]
pub(crate) struct ShardFile {
    /// Index into [`SHARDS`].
    pub index: usize,
    pub path: PathBuf,
    pub tables: [TableSql; TABLES_PER_SHARD],
}

impl ShardFile {
    pub fn new(data_dir: &Path, index: usize) -> ShardFile {
        let shard = SHARDS[index];
        ShardFile {
            index,
            path: data_dir.join(shard).join(format!("{shard}.db")),
            tables: table_names(index).each_ref().map(|t| TableSql::new(t)),
        }
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
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| self.err(e))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| self.err(e))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Sets the per-connection pragmas. The `synchronous` level is set
    /// explicitly: bundled SQLite defaults WAL connections to FULL.
    fn tune(&self, conn: &Connection, options: &Options) -> Result<()> {
        let sync = match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {sync};\n\
             PRAGMA cache_size = -{};\n\
             PRAGMA mmap_size = {};\n\
             PRAGMA temp_store = MEMORY;",
            options.cache_size_kib, options.mmap_size
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
        // A read-write connection removes the -wal and -shm that reading a
        // WAL file creates; a read-only one leaves them. But when a -wal or
        // -journal is already there, only a read-only connection is sure
        // not to write another program's unfinished work into its file.
        let leftover = ["-wal", "-journal"].iter().any(|suffix| {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            Path::new(&name).exists()
        });
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
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(&e, &dir.display().to_string()))?;
        if self.path.is_dir() {
            return Err(self.is_a_dir());
        }
        let conn = self.connect(options)?;
        if self.identify(&conn)? == Identity::Empty {
            // Both only take effect before the first table is created.
            conn.pragma_update(None, "page_size", PAGE_SIZE)
                .map_err(|e| self.err(e))?;
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(|e| self.err(e))?;
        }
        let mode = self.enter_wal(&conn, options)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{}: could not switch to WAL (journal_mode is {mode})",
                    self.path.display()
                ),
            ));
        }
        self.tune(&conn, options)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_size_limit = {};\nPRAGMA wal_autocheckpoint = 0;",
            options.journal_size_limit
        ))
        .map_err(|e| self.err(e))?;
        if let Some(pages) = options.max_page_count {
            conn.pragma_update(None, "max_page_count", pages)
                .map_err(|e| self.err(e))?;
        }
        self.create_tables(&conn)?;
        Ok(conn)
    }

    /// Switches the file to WAL. SQLite answers "database is locked" at once,
    /// without its busy handler, while another process creates the same
    /// file, so this retries until the busy timeout.
    fn enter_wal(&self, conn: &Connection, options: &Options) -> Result<String> {
        let deadline = std::time::Instant::now() + options.busy_timeout;
        loop {
            match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
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
    fn create_tables(&self, conn: &Connection) -> Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")
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
            ddl.push_str(EXPIRY_DDL);
            if identity == Identity::Empty {
                ddl.push_str(&format!(
                    "PRAGMA application_id = {APPLICATION_ID};\nPRAGMA user_version = {CONTRACT_VERSION};"
                ));
            }
            conn.execute_batch(&ddl).map_err(|e| self.err(e))?;
            self.check_columns(conn)
        })();
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        conn.execute_batch(end).map_err(|e| self.err(e))?;
        result
    }

    /// Opens a read connection to a file the writer has already checked.
    pub fn open_reader(&self, options: &Options) -> Result<Connection> {
        let conn = self.connect(options)?;
        self.tune(&conn, options)?;
        conn.execute_batch("PRAGMA query_only = ON")
            .map_err(|e| self.err(e))?;
        Ok(conn)
    }

    /// Reads the file's identity without changing it.
    fn identify(&self, conn: &Connection) -> Result<Identity> {
        // One statement, so one read transaction: another process creating
        // the file between separate reads could make a new file look like a
        // legacy one (tables present, version not yet set).
        let (app_id, version, first_table): (i32, i32, Option<String>) = conn
            .query_row(
                "SELECT (SELECT application_id FROM pragma_application_id()), \
                        (SELECT user_version FROM pragma_user_version()), \
                        (SELECT name FROM sqlite_master WHERE type = 'table' \
                         ORDER BY substr(name, 1, 7) <> 'tables_', name LIMIT 1)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
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
        const COLUMNS: [&str; 5] = ["key_hash", "key", "value", "timestamp", "microsecond"];
        for table in table_names(self.index) {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
                ))
                .map_err(|e| self.err(e))?;
            let names: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.err(e))?;
            if names != COLUMNS {
                return Err(self.refuse(
                    ErrorKind::NotLitestash,
                    &format!("table {table} has columns {names:?}, the contract says {COLUMNS:?}"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Identity {
    Empty,
    Current,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{OptionalExtension, StatementStatus};

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
        let queries = [(file.tables[0].range(3), 2), (expiry_due(5), 1)];
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
