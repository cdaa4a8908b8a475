//! Files LiteStash must not write to are refused at open with their own
//! reason and a message naming the path, and left exactly as they were; a
//! damaged shard file is reported as `Corrupt` while the other shards serve.

mod common;

use common::{changes, keys_on_shard, shard_path, snapshot};
use litestash_core::{key_hash, table_names, ErrorKind, Options, Store, Value, SHARD_COUNT};
use rusqlite::Connection;
use std::path::Path;

/// Opens `dir`, expecting a refusal of `kind` whose message names `names`,
/// and checks that nothing under `dir` was created, removed or modified.
fn assert_refused(dir: &Path, kind: ErrorKind, names: &Path) {
    let before = snapshot(dir);
    let err = Store::open(dir, Options::default()).unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    assert!(
        err.message().contains(&names.display().to_string()),
        "the message does not name {}: {err}",
        names.display()
    );
    let changed = changes(&before, &snapshot(dir));
    assert!(
        changed.is_empty(),
        "{} was modified:\n{changed}",
        dir.display()
    );
    // A refused dir is not left claimed: the same call fails the same way.
    assert_eq!(
        Store::open(dir, Options::default()).unwrap_err().kind(),
        kind
    );
}

/// A data dir with every shard file, some keys in each, closed cleanly.
fn litestash_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), Options::default()).unwrap();
    for shard in 0..SHARD_COUNT {
        for key in keys_on_shard(shard, 3) {
            store.set(key.as_bytes(), &Value::Str(key.clone())).unwrap();
        }
    }
    store.close();
    tmp
}

fn set_header(path: &Path, application_id: i32, user_version: i32) {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "application_id", application_id)
        .unwrap();
    conn.pragma_update(None, "user_version", user_version)
        .unwrap();
}

#[test]
fn a_data_dir_that_is_a_regular_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("data");
    std::fs::write(&file, b"not a directory").unwrap();
    assert_refused(&file, ErrorKind::NotADirectory, &file);
}

#[test]
fn a_shard_path_that_is_a_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // A middle shard, so that a store opening the shards in order would
    // already have created others.
    let path = shard_path(tmp.path(), 7);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("inside"), b"keep me").unwrap();
    assert_refused(tmp.path(), ErrorKind::NotADirectory, &path);
}

#[test]
fn a_shard_dir_that_is_a_regular_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let shard_dir = tmp.path().join(litestash_core::SHARDS[9]);
    std::fs::write(&shard_dir, b"a file where a dir belongs").unwrap();
    assert_refused(tmp.path(), ErrorKind::NotADirectory, &shard_dir);
}

#[test]
fn an_sqlite_file_of_another_application_is_refused() {
    for wal in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let path = shard_path(tmp.path(), 5);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            if wal {
                conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                    .unwrap();
            }
            conn.execute_batch(
                "PRAGMA application_id = 1234;
                 CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
                 INSERT INTO users (name) VALUES ('ada'), ('grace');",
            )
            .unwrap();
        }
        assert_refused(tmp.path(), ErrorKind::NotLitestash, &path);
    }
}

#[test]
fn an_sqlite_file_another_program_left_mid_write_is_refused_and_not_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let path = shard_path(tmp.path(), 8);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint = 0;
         PRAGMA application_id = 99;
         CREATE TABLE events (at INTEGER);
         INSERT INTO events VALUES (1), (2), (3);",
    )
    .unwrap();
    // The program "crashed": its committed work is still in the -wal only.
    std::mem::forget(conn);
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    assert_refused(tmp.path(), ErrorKind::NotLitestash, &path);
}

#[test]
fn an_sqlite_file_with_no_application_id_and_foreign_tables_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = shard_path(tmp.path(), 0);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');")
        .unwrap();
    assert_refused(tmp.path(), ErrorKind::NotLitestash, &path);
}

#[test]
fn a_litestash_file_whose_tables_break_the_contract_is_refused() {
    let tmp = litestash_dir();
    let path = shard_path(tmp.path(), 4);
    let table = &table_names(4)[1];
    Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "DROP TABLE \"{table}\"; CREATE TABLE \"{table}\" (key_hash TEXT PRIMARY KEY, value BLOB);"
        ))
        .unwrap();
    assert_refused(tmp.path(), ErrorKind::NotLitestash, &path);
}

#[test]
fn a_file_from_a_newer_contract_is_refused() {
    let tmp = litestash_dir();
    let path = shard_path(tmp.path(), 11);
    set_header(&path, litestash_core::APPLICATION_ID, 2);
    assert_refused(tmp.path(), ErrorKind::NewerVersion, &path);
}

/// Shard files as the Python litestash 0.1 package wrote them: the same file
/// and table names, no application_id, user_version 0, a 41-byte BLAKE2b
/// key hash and JSON text values.
fn python_0_1_shard(dir: &Path, shard: usize) {
    let path = shard_path(dir, shard);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    for table in table_names(shard) {
        conn.execute_batch(&format!(
            "CREATE TABLE \"{table}\" (key_hash VARCHAR NOT NULL, \"key\" VARCHAR, \
             value JSON, timestamp INTEGER, microsecond INTEGER, PRIMARY KEY (key_hash)); \
             CREATE UNIQUE INDEX \"ix_{table}_key\" ON \"{table}\" (\"key\");"
        ))
        .unwrap();
    }
    let key = &keys_on_shard(shard, 1)[0];
    conn.execute(
        &format!(
            "INSERT INTO \"{}\" VALUES (?1, ?2, '{{\"a\": 1}}', 1700000000, 0)",
            table_names(shard)[0]
        ),
        [&key_hash(key)[..55], key],
    )
    .unwrap();
}

#[test]
fn a_python_litestash_0_1_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for shard in 0..SHARD_COUNT {
        python_0_1_shard(tmp.path(), shard);
    }
    assert_refused(
        tmp.path(),
        ErrorKind::LegacyFormat,
        &shard_path(tmp.path(), 0),
    );
}

#[test]
fn a_python_litestash_data_dir_with_full_text_search_tables_is_refused_as_legacy() {
    let tmp = tempfile::tempdir().unwrap();
    for shard in 0..SHARD_COUNT {
        python_0_1_shard(tmp.path(), shard);
        // Versions with search keep an FTS index whose tables sort first.
        Connection::open(shard_path(tmp.path(), shard))
            .unwrap()
            .execute_batch(
                "CREATE TABLE fts_all_values_config (k PRIMARY KEY, v) WITHOUT ROWID;
                 CREATE VIEW all_values AS SELECT 1;",
            )
            .unwrap();
    }
    assert_refused(
        tmp.path(),
        ErrorKind::LegacyFormat,
        &shard_path(tmp.path(), 0),
    );
}

#[test]
fn a_python_litestash_0_1_data_dir_with_some_shards_gets_no_new_files() {
    let tmp = tempfile::tempdir().unwrap();
    for shard in [6, 12] {
        python_0_1_shard(tmp.path(), shard);
    }
    assert_refused(
        tmp.path(),
        ErrorKind::LegacyFormat,
        &shard_path(tmp.path(), 6),
    );
}

/// Overwrites `len` bytes at `offset` of `path` with a fixed pattern that
/// is no valid SQLite header or b-tree page type.
fn garble(path: &Path, offset: usize, len: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() >= offset + len,
        "{} is too short",
        path.display()
    );
    for (i, b) in bytes[offset..offset + len].iter_mut().enumerate() {
        *b = [0xee, 0x5a, 0xa5, 0x77][i % 4];
    }
    std::fs::write(path, bytes).unwrap();
}

/// Every shard but `broken` reads and writes; `broken` gives `Corrupt`
/// naming its file, on every call that touches it.
fn assert_only_shard_is_corrupt(store: &Store, broken: usize) {
    let path = shard_path(store.dir(), broken);
    for shard in 0..SHARD_COUNT {
        let keys = keys_on_shard(shard, 3);
        if shard == broken {
            for result in [
                store.get(keys[0].as_bytes()).map(|_| ()),
                store.exists(keys[1].as_bytes()).map(|_| ()),
                store.set(keys[2].as_bytes(), &Value::Int(1)),
            ] {
                let err = result.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
                assert!(err.message().contains(&path.display().to_string()), "{err}");
            }
        } else {
            for key in &keys {
                assert_eq!(
                    store.get(key.as_bytes()).unwrap(),
                    Some(Value::Str(key.clone())),
                    "shard {shard}"
                );
            }
            store.set(keys[0].as_bytes(), &Value::Int(7)).unwrap();
            assert_eq!(store.get(keys[0].as_bytes()).unwrap(), Some(Value::Int(7)));
        }
    }
    assert_eq!(store.count("").unwrap_err().kind(), ErrorKind::Corrupt);
}

#[test]
fn a_shard_with_garbage_over_its_header_is_corrupt_and_the_others_serve() {
    let tmp = litestash_dir();
    let broken = 3;
    garble(&shard_path(tmp.path(), broken), 0, 100);
    let store = Store::open(tmp.path(), Options::default()).unwrap();
    assert_only_shard_is_corrupt(&store, broken);
    store.close();
    // Closing did not touch the damaged file's garbage either.
    let bytes = std::fs::read(shard_path(tmp.path(), broken)).unwrap();
    assert_eq!(&bytes[..4], &[0xee, 0x5a, 0xa5, 0x77]);
}

#[test]
fn a_shard_with_garbage_over_its_pages_is_corrupt_on_first_touch() {
    let tmp = litestash_dir();
    let broken = 10;
    let path = shard_path(tmp.path(), broken);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    // Page 1 (the header and schema) intact; every b-tree page after it not.
    garble(&path, 4096, len - 4096);
    let store = Store::open(tmp.path(), Options::default()).unwrap();
    assert_only_shard_is_corrupt(&store, broken);
    store.close();
}

/// Every file under `dir` with its bytes, `-shm` included.
fn every_byte(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

#[test]
fn inspecting_a_dir_left_with_a_wal_changes_no_byte_of_any_file() {
    let live = tempfile::tempdir().unwrap();
    let options = litestash_core::Options {
        checkpoint_pages: i32::MAX,
        truncate_pages: i32::MAX,
        ..common::roomy()
    };
    let store = Store::open(live.path(), options).unwrap();
    let value = Value::Bin(vec![7; 8 * 1024]);
    for i in 0..400 {
        store.set(format!("k{i}").as_bytes(), &value).unwrap();
    }
    // A copy of the files while the store runs: what a killed process
    // leaves, each .db with its -wal and -shm.
    let left = tempfile::tempdir().unwrap();
    common::copy_dir(live.path(), left.path());
    store.close();
    let wal = common::shard_path(left.path(), 0).with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "no WAL was left"
    );

    let before = every_byte(left.path());
    let depth = litestash_core::Depth {
        integrity: true,
        sample: 100,
    };
    let reports = litestash_core::inspect_dir(left.path(), depth).unwrap();
    assert!(reports.iter().all(|r| r.problems.is_empty()), "{reports:?}");
    assert_eq!(reports.iter().map(|r| r.rows).sum::<u64>(), 400);
    let after = every_byte(left.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{} changed", path.display());
    }

    // Without its -shm (copied off a crash image, say) a WAL cannot be read
    // without creating one: reported, and nothing is created.
    for path in before
        .keys()
        .filter(|p| p.to_string_lossy().ends_with("-shm"))
    {
        std::fs::remove_file(path).unwrap();
    }
    let before = every_byte(left.path());
    let reports = litestash_core::inspect_dir(left.path(), depth).unwrap();
    assert!(
        reports[0].problems[0].contains("without its -shm"),
        "{reports:?}"
    );
    assert!(every_byte(left.path()) == before, "files changed");

    // A dir closed cleanly (no -wal, no -shm) is read, and none is created.
    let before = every_byte(live.path());
    assert!(!before.keys().any(|p| p.to_string_lossy().ends_with("-wal")));
    let reports = litestash_core::inspect_dir(live.path(), depth).unwrap();
    assert!(reports.iter().all(|r| r.problems.is_empty()), "{reports:?}");
    assert_eq!(reports.iter().map(|r| r.rows).sum::<u64>(), 400);
    assert!(every_byte(live.path()) == before, "files changed");
}

/// Set in the child process of the next test, which runs as `nobody`.
const AS_NOBODY: &str = "LITESTASH_TEST_OPEN_AS_NOBODY";

#[test]
fn a_shard_file_another_user_owns_is_refused_at_open_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if let Some(dir) = std::env::var_os(AS_NOBODY) {
        // The child, as `nobody`: the files are root's, mode 0644.
        let err = Store::open(std::path::Path::new(&dir), Options::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ReadOnly, "{err}");
        assert!(err.message().contains("no write permission"), "{err}");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: a file of another user cannot be made here; left out");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path(), Options::default()).unwrap().close();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = snapshot(tmp.path());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_shard_file_another_user_owns_is_refused_at_open_naming_it",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(AS_NOBODY, tmp.path())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child as nobody failed:\n{text}");
    assert!(text.contains("1 passed"), "{text}");
    assert_eq!(changes(&before, &snapshot(tmp.path())), "");
}

#[test]
fn a_read_only_shard_file_is_refused_at_open_naming_it_even_for_root() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path(), Options::default()).unwrap().close();
    let file = shard_path(tmp.path(), 3);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = snapshot(tmp.path());

    let err = Store::open(tmp.path(), Options::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnly, "{err}");
    assert!(err.message().contains(&file.display().to_string()), "{err}");
    assert_eq!(changes(&before, &snapshot(tmp.path())), "");

    // Its -wal read-only (left by such a run) is named too.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let wal = file.with_extension("db-wal");
    std::fs::write(&wal, b"").unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o444)).unwrap();
    let err = Store::open(tmp.path(), Options::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnly, "{err}");
    assert!(err.message().contains(&wal.display().to_string()), "{err}");
}
