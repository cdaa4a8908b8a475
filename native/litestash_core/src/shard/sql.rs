//! Every SQL text LiteStash runs and every fact of the schema (contract
//! sections 4 and 9): the one place to read what touches a shard file.

/// The contract's 5 columns of every key-value table, in order.
pub(crate) const COLUMNS: [&str; 5] = ["key_hash", "key", "value", "timestamp", "microsecond"];

/// Starts a write transaction, taking the file's write lock at once.
pub(crate) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
/// Starts a read transaction (a snapshot).
pub(crate) const BEGIN_READ: &str = "BEGIN";
pub(crate) const COMMIT: &str = "COMMIT";
pub(crate) const ROLLBACK: &str = "ROLLBACK";
/// The three statements of one savepoint.
#[derive(Debug)]
pub(crate) struct Savepoint {
    pub begin: &'static str,
    pub rollback: &'static str,
    pub release: &'static str,
}

/// Around one write of a batch, so that it fails alone.
pub(crate) const WRITE_SAVEPOINT: Savepoint = Savepoint {
    begin: "SAVEPOINT w",
    rollback: "ROLLBACK TO w",
    release: "RELEASE w",
};

/// Around one op of a replicated entry (inside the write's own).
pub(crate) const OP_SAVEPOINT: Savepoint = Savepoint {
    begin: "SAVEPOINT r",
    rollback: "ROLLBACK TO r",
    release: "RELEASE r",
};

/// The contract's optional expiry table (section 9).
pub(crate) const EXPIRY_DDL: &str =
    "CREATE TABLE IF NOT EXISTS litestash_expiry (\n  key_hash VARCHAR NOT NULL PRIMARY KEY,\n  \
     expires_at INTEGER NOT NULL\n);\n\
     CREATE INDEX IF NOT EXISTS ix_litestash_expiry_expires_at ON litestash_expiry (expires_at);\n";

/// Whether the file has the expiry table.
pub(crate) const HAS_EXPIRY_TABLE: &str =
    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'litestash_expiry')";

/// Rows of the expiry table.
pub(crate) const EXPIRY_COUNT: &str = "SELECT count(*) FROM litestash_expiry";

/// Sets a key's expiry: `?1` key hash, `?2` Unix milliseconds.
pub(crate) const EXPIRY_UPSERT: &str =
    "INSERT INTO litestash_expiry (key_hash, expires_at) VALUES (?1, ?2) \
     ON CONFLICT (key_hash) DO UPDATE SET expires_at = excluded.expires_at";

/// Clears a key's expiry.
pub(crate) const EXPIRY_DELETE: &str = "DELETE FROM litestash_expiry WHERE key_hash = ?1";

/// Clears every expiry of the file.
pub(crate) const EXPIRY_CLEAR: &str = "DELETE FROM litestash_expiry";

/// Up to `limit` keys expired at `?1`. The limit is part of the text, not
/// a parameter: SQLite re-prepares a statement whose LIMIT is bound each
/// time its bindings are cleared, which rusqlite's cache does on every use.
pub(crate) fn expiry_due(limit: usize) -> String {
    format!("SELECT key_hash FROM litestash_expiry WHERE expires_at <= ?1 ORDER BY expires_at LIMIT {limit}")
}

/// Whether any key has expired at `?1`.
pub(crate) const EXPIRY_ANY_DUE: &str =
    "SELECT EXISTS (SELECT 1 FROM litestash_expiry WHERE expires_at <= ?1)";

/// The file's identity in one read: application_id, user_version, and the
/// first table's name (a `tables_*` one first).
pub(crate) const IDENTIFY: &str = "SELECT (SELECT application_id FROM pragma_application_id()), \
     (SELECT user_version FROM pragma_user_version()), \
     (SELECT name FROM sqlite_master WHERE type = 'table' \
      ORDER BY substr(name, 1, 7) <> 'tables_', name LIMIT 1)";

/// The column names of `table`, in order.
pub(crate) fn table_columns(table: &str) -> String {
    format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid")
}

/// Whether the index `?1` of `table` is unique (no row when it is missing).
pub(crate) fn index_is_unique(table: &str) -> String {
    format!("SELECT \"unique\" FROM pragma_index_list('{table}') WHERE name = ?1")
}

/// The name of the unique key index of `table`.
pub(crate) fn key_index_name(table: &str) -> String {
    format!("ix_{table}_key")
}

/// Up to `?1` rows of `table` with hash, key and value, for sampling.
pub(crate) fn sample_rows(table: &str) -> String {
    format!("SELECT key_hash, \"key\", value FROM \"{table}\" LIMIT ?1")
}

pub(crate) const APPLICATION_ID: &str = "PRAGMA application_id";
pub(crate) const USER_VERSION: &str = "PRAGMA user_version";
pub(crate) const JOURNAL_MODE: &str = "PRAGMA journal_mode";
pub(crate) const ENTER_WAL: &str = "PRAGMA journal_mode = WAL";
/// The journal mode of an in-memory shard, which cannot use WAL.
pub(crate) const ENTER_MEMORY_JOURNAL: &str = "PRAGMA journal_mode = MEMORY";
pub(crate) const INTEGRITY_CHECK: &str = "PRAGMA integrity_check";
pub(crate) const QUERY_ONLY: &str = "PRAGMA query_only = ON";
pub(crate) const AUTO_VACUUM: &str = "PRAGMA auto_vacuum";
/// Turns on incremental vacuum in a file that lacks it (a full VACUUM).
pub(crate) const ENABLE_INCREMENTAL_VACUUM: &str = "PRAGMA auto_vacuum = INCREMENTAL; VACUUM;";
/// Frees up to 256 pages; one row per page freed.
pub(crate) const INCREMENTAL_VACUUM_STEP: &str = "PRAGMA incremental_vacuum(256)";
pub(crate) const FREELIST_COUNT: &str = "PRAGMA freelist_count";
/// Copies a consistent image of the file to `?1`.
pub(crate) const VACUUM_INTO: &str = "VACUUM INTO ?1";

/// A checkpoint in `mode` (`PASSIVE`, `TRUNCATE`); its first column is 1
/// when readers kept it from completing.
pub(crate) fn wal_checkpoint(mode: &str) -> String {
    format!("PRAGMA wal_checkpoint({mode})")
}

/// The per-connection pragmas of [`super::ShardFile::tune`].
pub(crate) fn tuning(synchronous: &str, cache_size_kib: i64, mmap_size: i64) -> String {
    format!(
        "PRAGMA synchronous = {synchronous};\n\
         PRAGMA cache_size = -{cache_size_kib};\n\
         PRAGMA mmap_size = {mmap_size};\n\
         PRAGMA temp_store = MEMORY;"
    )
}

/// The writer's own pragmas: it checkpoints the WAL itself.
pub(crate) fn writer_tuning(journal_size_limit: i64) -> String {
    format!("PRAGMA journal_size_limit = {journal_size_limit};\nPRAGMA wal_autocheckpoint = 0;")
}

/// Stamps a new file with the contract's identity.
pub(crate) fn stamp(application_id: i32, version: i32) -> String {
    format!("PRAGMA application_id = {application_id};\nPRAGMA user_version = {version};")
}

/// The SQL of one table's statements, built once per shard.
#[derive(Debug)]
pub(crate) struct TableSql {
    pub upsert: String,
    pub delete: String,
    /// The value and expiry of one key.
    pub select: String,
    /// As `select`, but the value only when it is at most `?2` bytes,
    /// and its length.
    pub select_within: String,
    /// All rows, without the expiry join (when no key can have expired).
    pub count: String,
    /// Live rows with keys in `[?1, ?2)`, now being `?3`.
    pub count_live: String,
    /// Rows with keys in `[?1, ?2)`, in key order, with expiry, up to the
    /// limit given to [`TableSql::range`].
    range: String,
    /// As `range`, without the values (NULL in their place): a walk of
    /// keys alone reads no value from the file.
    range_keys: String,
    pub clear: String,
}

impl TableSql {
    pub(crate) fn new(table: &str) -> TableSql {
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
            select_within: format!(
                "SELECT CASE WHEN length(t.value) <= ?2 THEN t.value END, \
                 (SELECT e.expires_at FROM litestash_expiry AS e \
                 WHERE e.key_hash = t.key_hash), length(t.value) \
                 FROM \"{table}\" AS t WHERE t.key_hash = ?1"
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
            range_keys: format!(
                "SELECT t.\"key\", NULL, e.expires_at FROM \"{table}\" AS t \
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

    /// The keys-only range query with `limit` in its text.
    pub fn range_keys(&self, limit: usize) -> String {
        format!("{}{limit}", self.range_keys)
    }

    /// The table and its unique key index, created when missing.
    pub(crate) fn ddl(table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (\n  key_hash VARCHAR NOT NULL,\n  \"key\" VARCHAR,\n  \
             value BLOB,\n  timestamp INTEGER,\n  microsecond INTEGER,\n  PRIMARY KEY (key_hash)\n);\n\
             CREATE UNIQUE INDEX IF NOT EXISTS \"{}\" ON \"{table}\" (\"key\");\n",
            key_index_name(table)
        )
    }
}

/// The contract's optional replica table (section 10).
pub(crate) const REPLICA_DDL: &str = "CREATE TABLE IF NOT EXISTS litestash_replica (\n  \
     name VARCHAR NOT NULL PRIMARY KEY,\n  value BLOB NOT NULL\n);\n";

/// Whether the file has the replica table: it is a replica's.
pub(crate) const HAS_REPLICA_TABLE: &str =
    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'litestash_replica')";

/// The name under which a replica keeps the index of the last log entry
/// it applied.
pub(crate) const APPLIED_INDEX: &str = "applied_index";

/// A replica's value `?1` (MessagePack).
pub(crate) const REPLICA_GET: &str = "SELECT value FROM litestash_replica WHERE name = ?1";

/// Sets a replica's value: `?1` name, `?2` MessagePack bytes.
pub(crate) const REPLICA_SET: &str = "INSERT INTO litestash_replica (name, value) VALUES (?1, ?2) \
     ON CONFLICT (name) DO UPDATE SET value = excluded.value";

/// The database's size in pages, WAL included: what a checkpoint makes
/// the file.
pub(crate) const PAGE_COUNT: &str = "PRAGMA page_count";

/// The most pages the file may hold (a test's stand-in for a full disk
/// sets it).
pub(crate) const MAX_PAGE_COUNT: &str = "PRAGMA max_page_count";

/// Its page size in bytes.
pub(crate) const PAGE_SIZE: &str = "PRAGMA page_size";
