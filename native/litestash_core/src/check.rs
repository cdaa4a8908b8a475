//! Looks inside a data dir no process needs to have open: the contract
//! checks of `mix litestash.check` and the figures of `mix litestash.stats`.
//! Nothing here writes to a shard file.

use crate::admin::size;
use crate::codec::decode;
use crate::error::{Error, ErrorKind, Result};
use crate::key::{key_hash, route, table_names, SHARDS, SHARD_COUNT};
use crate::open_dirs;
use crate::shard::{self, sql, APPLICATION_ID, CONTRACT_VERSION};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};

/// How deep [`inspect_dir`] looks.
#[derive(Debug, Clone, Copy)]
pub struct Depth {
    /// Run `PRAGMA integrity_check` on every file.
    pub integrity: bool,
    /// Rows per table whose hash, route and value are re-checked.
    pub sample: usize,
}

/// What [`inspect_dir`] found in one shard file.
#[derive(Debug, Clone)]
pub struct ShardReport {
    /// The shard's name.
    pub shard: &'static str,
    /// Its file.
    pub path: PathBuf,
    /// Every breach of the contract found; empty when the file is sound.
    pub problems: Vec<String>,
    /// Rows in its 4 tables (expired ones included).
    pub rows: u64,
    /// Rows of its expiry table.
    pub expiring: u64,
    /// Size of the `.db` file.
    pub file_bytes: u64,
    /// Size of its `-wal` file.
    pub wal_bytes: u64,
    /// A running process has the file open (see [`inspect_dir`]): what was
    /// read is a moving target.
    pub in_use: bool,
}

/// Inspects the 16 shard files of `dir`.
///
/// Whether each file is open in a running process is found before the
/// file is read: a store of this process has the dir open, or another
/// process holds SQLite's lock on the file's `-shm` (every connection to
/// a WAL file holds it while open).
///
/// # Errors
/// [`ErrorKind::Io`] when `dir` does not exist,
/// [`ErrorKind::NotADirectory`] when it is not a directory,
/// [`ErrorKind::IncompleteBackup`] for an interrupted backup, and
/// [`ErrorKind::NotLitestash`] when it holds none of the shard files;
/// problems of single files are in their reports.
pub fn inspect_dir(dir: &Path, depth: Depth) -> Result<Vec<ShardReport>> {
    if !dir.exists() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("{}: does not exist", dir.display()),
        ));
    }
    if !dir.is_dir() {
        return Err(Error::new(
            ErrorKind::NotADirectory,
            format!("{}: not a directory", dir.display()),
        ));
    }
    crate::admin::refuse_incomplete_backup(dir)?;
    let paths: Vec<PathBuf> = (0..SHARD_COUNT).map(|i| shard::path(dir, i)).collect();
    if !paths.iter().any(|p| p.is_file()) {
        return Err(Error::new(
            ErrorKind::NotLitestash,
            format!(
                "{}: not a LiteStash data dir (none of the 16 shard files, such as tables_03/tables_03.db, is there)",
                dir.display()
            ),
        ));
    }
    let here = dir
        .canonicalize()
        .is_ok_and(|canonical| open_dirs::open_here(&canonical));
    Ok((0..SHARD_COUNT)
        .map(|index| {
            // Probed only when no store of this process has the dir open:
            // closing a descriptor of the -shm would drop that store's
            // SQLite locks on it (POSIX locks belong to the process).
            let in_use = here || shm_locked(&shard::beside(&paths[index], "-shm"));
            let mut report = inspect_file(index, &paths[index], depth);
            report.in_use = in_use;
            report
        })
        .collect())
}

/// Whether another process holds a lock on the dead-man-switch byte of the
/// `-shm` file `shm`, which every SQLite connection to the WAL file holds
/// shared while it is open (`UNIX_SHM_DMS` in SQLite's os_unix.c).
#[cfg(unix)]
fn shm_locked(shm: &Path) -> bool {
    use std::os::unix::io::AsRawFd;
    const DMS_BYTE: libc::off_t = 128;
    let Ok(file) = std::fs::File::open(shm) else {
        return false;
    };
    // SAFETY: flock is plain data; F_GETLK only reads the descriptor's
    // file and writes into `probe`.
    let mut probe: libc::flock = unsafe { std::mem::zeroed() };
    probe.l_type = libc::F_WRLCK as _;
    probe.l_whence = libc::SEEK_SET as _;
    probe.l_start = DMS_BYTE;
    probe.l_len = 1;
    // SAFETY: a valid descriptor and a valid flock for F_GETLK.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut probe) };
    rc == 0 && probe.l_type != libc::F_UNLCK as _
}

#[cfg(not(unix))]
fn shm_locked(_shm: &Path) -> bool {
    false
}

fn inspect_file(index: usize, path: &Path, depth: Depth) -> ShardReport {
    let mut report = ShardReport {
        shard: SHARDS[index],
        path: path.to_path_buf(),
        problems: Vec::new(),
        rows: 0,
        expiring: 0,
        file_bytes: size(path),
        wal_bytes: size(&shard::beside(path, "-wal")),
        in_use: false,
    };
    if !path.is_file() {
        report.problems.push("the shard file is missing".into());
        return report;
    }
    let wal = shard::beside(path, "-wal");
    let access = if shard::beside(path, "-shm").exists() {
        Access::ReadOnlyIndex
    } else if size(&wal) == 0 {
        Access::Immutable
    } else {
        // Reading a WAL needs its index: SQLite would create the -shm.
        report.problems.push(format!(
            "{} is there without its -shm: not read, as reading it would create the -shm \
             (opening the store recovers it)",
            wal.display()
        ));
        return report;
    };
    if let Err(e) = check_file(index, path, access, depth, &mut report) {
        report.problems.push(e.to_string());
    }
    report
}

/// How a shard file is opened without writing to it or beside it.
#[derive(Clone, Copy)]
enum Access {
    /// It has a WAL index (-shm): read it and the WAL without writing
    /// either, as a reader among a live store's connections.
    ReadOnlyIndex,
    /// Closed cleanly (no -shm, no WAL frames): read the file alone. A
    /// plain read-only connection would create the -wal and -shm.
    Immutable,
}

fn check_file(
    index: usize,
    path: &Path,
    access: Access,
    depth: Depth,
    report: &mut ShardReport,
) -> rusqlite::Result<()> {
    // Read-only, and so is the WAL index: a read-write connection, the
    // last to close, checkpoints a WAL left behind into the file and
    // deletes the -wal and -shm, and any reader writes its read marks into
    // the -shm. This one changes no byte of any of them.
    let conn = Connection::open_with_flags(
        read_only_uri(path, access),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A store in another process may be writing: wait for its locks.
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(sql::QUERY_ONLY)?;
    let problems = &mut report.problems;
    let app_id: i32 = conn.query_row(sql::APPLICATION_ID, [], |r| r.get(0))?;
    if app_id != APPLICATION_ID {
        problems.push(format!(
            "application_id is {app_id}, expected {APPLICATION_ID}"
        ));
    }
    let version: i32 = conn.query_row(sql::USER_VERSION, [], |r| r.get(0))?;
    if version != CONTRACT_VERSION {
        problems.push(format!(
            "user_version is {version}, expected {CONTRACT_VERSION}"
        ));
    }
    let mode: String = match access {
        Access::ReadOnlyIndex => conn.query_row(sql::JOURNAL_MODE, [], |r| r.get(0))?,
        // An immutable connection reports "delete": the header says.
        Access::Immutable => header_journal_mode(path),
    };
    if !mode.eq_ignore_ascii_case("wal") {
        problems.push(format!("journal_mode is {mode}, expected wal"));
    }
    for (table_index, table) in table_names(index).iter().enumerate() {
        let columns = shard::columns(&conn, table)?;
        if columns.is_empty() {
            problems.push(format!("table {table} is missing"));
            continue;
        }
        if columns != sql::COLUMNS {
            problems.push(format!("table {table} has columns {columns:?}"));
            continue;
        }
        let index_name = sql::key_index_name(table);
        let unique: Option<i64> = conn
            .query_row(&sql::index_is_unique(table), [&index_name], |r| r.get(0))
            .optional()?;
        if unique != Some(1) {
            problems.push(format!("unique index {index_name} is missing"));
        }
        let rows: i64 = conn.query_row(&sql::TableSql::new(table).count, [], |r| r.get(0))?;
        report.rows += rows.max(0) as u64;
        let mut stmt = conn.prepare(&sql::sample_rows(table))?;
        let sampled = stmt.query_map([depth.sample as i64], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        })?;
        for row in sampled {
            let (hash, key, value) = row?;
            let (Some(hash), Some(key)) = (hash, key) else {
                problems.push(format!("table {table}: a row has a NULL key or key_hash"));
                continue;
            };
            if key_hash(&key) != hash {
                problems.push(format!(
                    "table {table}: key {key:?} has key_hash {hash}, expected {}",
                    key_hash(&key)
                ));
            } else if route(&hash).map(|r| (r.shard, r.table)).ok() != Some((index, table_index)) {
                problems.push(format!(
                    "table {table}: key {key:?} belongs in another table"
                ));
            }
            if let Some(Err(e)) = value.as_deref().map(decode) {
                problems.push(format!("table {table}: key {key:?}: {}", e.message()));
            }
        }
    }
    let has_expiry: bool = conn.query_row(sql::HAS_EXPIRY_TABLE, [], |r| r.get(0))?;
    if has_expiry {
        let n: i64 = conn.query_row(sql::EXPIRY_COUNT, [], |r| r.get(0))?;
        report.expiring = n.max(0) as u64;
    }
    if depth.integrity {
        let verdict: Vec<String> = conn
            .prepare(sql::INTEGRITY_CHECK)?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if verdict != ["ok"] {
            report
                .problems
                .push(format!("integrity_check: {}", verdict.join("; ")));
        }
    }
    Ok(())
}

/// `path` as an SQLite URI that opens it read-only: with its WAL and WAL
/// index read-only too (`readonly_shm`: the reader then takes the WAL's
/// contents from the WAL file itself), or as an immutable file.
fn read_only_uri(path: &Path, access: Access) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str(match access {
        Access::ReadOnlyIndex => "?mode=ro&readonly_shm=1",
        Access::Immutable => "?mode=ro&immutable=1",
    });
    uri
}

/// The journal mode a file's header records: bytes 18 and 19 (the write
/// and read format versions) are 2 in a WAL file.
fn header_journal_mode(path: &Path) -> String {
    use std::io::Read;
    let mut header = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header));
    match (read, header[18], header[19]) {
        (Ok(()), 2, 2) => "wal".into(),
        (Ok(()), ..) => "delete".into(),
        (Err(e), ..) => format!("unreadable ({e})"),
    }
}
