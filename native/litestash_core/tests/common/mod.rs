//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `test/fixtures/contract`, the project's byte-identical copy of the
/// contract's vectors and fixture.
pub fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test/fixtures/contract")
}

/// Copies `from` into `to` recursively, making the copies writable.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mut perms = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).unwrap();
        }
    }
}

/// A fresh copy of `fixture_v1/` in a temporary dir.
pub fn fixture_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&contract_dir().join("fixture_v1"), tmp.path());
    tmp
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A small seeded PRNG (SplitMix64) for the fuzz and crash tests: a failure
/// replays from its printed seed, with no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// `n` keys that route to shard `shard` (an index into `SHARDS`).
pub fn keys_on_shard(shard: usize, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("key:{shard}:{i}"))
        .filter(|k| {
            litestash_core::route(&litestash_core::key_hash(k))
                .unwrap()
                .shard
                == shard
        })
        .take(n)
        .collect()
}

/// Every file and dir under `dir`, with each file's bytes and mtime, to
/// prove that nothing was modified, created or removed. Left out: a dir's
/// own mtime (reading a WAL file creates and removes `-wal`/`-shm` beside
/// it) and what is inside a `-shm` (the WAL index is shared memory that
/// every reader writes its read marks to; it holds no data).
pub fn snapshot(
    dir: &Path,
) -> std::collections::BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let entry = if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            (Vec::new(), std::time::UNIX_EPOCH)
        } else if path.to_string_lossy().ends_with("-shm") {
            (Vec::new(), std::time::UNIX_EPOCH)
        } else {
            (std::fs::read(&path).unwrap(), meta.modified().unwrap())
        };
        out.insert(path, entry);
    }
    out
}

/// What changed between two [`snapshot`]s, one path a line; empty if nothing.
pub fn changes(
    before: &std::collections::BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)>,
    after: &std::collections::BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)>,
) -> String {
    let mut out = String::new();
    for (path, entry) in after {
        match before.get(path) {
            None => out.push_str(&format!("created {}\n", path.display())),
            Some(old) if old.0 != entry.0 => out.push_str(&format!("rewrote {}\n", path.display())),
            Some(old) if old.1 != entry.1 => out.push_str(&format!("touched {}\n", path.display())),
            Some(_) => {}
        }
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        out.push_str(&format!("removed {}\n", path.display()));
    }
    out
}

/// The shard file of `shard` under `dir`.
pub fn shard_path(dir: &Path, shard: usize) -> PathBuf {
    let name = litestash_core::SHARDS[shard];
    dir.join(name).join(format!("{name}.db"))
}

/// A reply that reports the thread it was answered on, and the answer.
pub fn traced(
    tx: &std::sync::mpsc::Sender<(
        std::thread::ThreadId,
        litestash_core::Result<litestash_core::Outcome>,
    )>,
) -> litestash_core::Reply {
    let tx = tx.clone();
    litestash_core::Reply::new(move |result| {
        let _ = tx.send((std::thread::current().id(), result));
    })
}

/// Options whose inline cap other tests' inline commits (the count is
/// process-wide) cannot use up, and whose writers do not sweep (a sweep
/// holds the writer's lock, and its transaction would roll back what a
/// test wants to see left open).
pub fn roomy() -> litestash_core::Options {
    litestash_core::Options {
        inline_commits: 16,
        sweep_interval: std::time::Duration::from_secs(3600),
        ..litestash_core::Options::default()
    }
}

/// Queues `request` with `reply` (never inline), as the NIF does for a
/// caller that waits in its mailbox: `Err` when refused before queueing.
pub fn submit(
    store: &litestash_core::Store,
    request: litestash_core::Result<litestash_core::Request>,
    reply: litestash_core::Reply,
) -> litestash_core::Result<()> {
    store.submit(request?, None, || reply).map(|_| ())
}

/// Submits `request`, inline when `inline` and the store grants a slot;
/// the answer arrives on `tx` tagged with the thread that produced it,
/// whether it committed inline or through the writer thread.
pub fn submit_traced(
    store: &litestash_core::Store,
    request: litestash_core::Result<litestash_core::Request>,
    inline: bool,
    tx: &std::sync::mpsc::Sender<(
        std::thread::ThreadId,
        litestash_core::Result<litestash_core::Outcome>,
    )>,
) -> litestash_core::Result<()> {
    let slot = if inline { store.inline_slot() } else { None };
    match store.submit(request?, slot, || traced(tx))? {
        litestash_core::Submitted::Committed(result) => {
            let _ = tx.send((std::thread::current().id(), result));
        }
        litestash_core::Submitted::Queued => {}
    }
    Ok(())
}

/// Whether a write would be granted an inline slot now.
pub fn would_commit_inline(store: &litestash_core::Store) -> bool {
    store.inline_slot().is_some()
}

/// Writes `value` under `key` (or deletes it with `None`) in its shard file
/// with plain SQL on `conn`'s own connection, in one transaction.
pub fn foreign_write(dir: &std::path::Path, key: &str, value: Option<&litestash_core::Value>) {
    let hash = litestash_core::key_hash(key);
    let r = litestash_core::route(&hash).unwrap();
    let conn = rusqlite::Connection::open(shard_path(dir, r.shard)).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    write_row(&conn, key, value);
}

pub fn write_row(conn: &rusqlite::Connection, key: &str, value: Option<&litestash_core::Value>) {
    let hash = litestash_core::key_hash(key);
    let r = litestash_core::route(&hash).unwrap();
    let table = &litestash_core::table_names(r.shard)[r.table];
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    match value {
        Some(v) => {
            conn.execute(
                &format!(
                    "INSERT INTO \"{table}\" (key_hash, \"key\", value, timestamp, microsecond) \
                     VALUES (?1, ?2, ?3, 0, 0) ON CONFLICT (key_hash) DO UPDATE SET value = excluded.value"
                ),
                rusqlite::params![hash, key, litestash_core::encode(v).unwrap()],
            )
            .unwrap();
        }
        None => {
            conn.execute(
                &format!("DELETE FROM \"{table}\" WHERE key_hash = ?1"),
                [&hash],
            )
            .unwrap();
        }
    }
    conn.execute("DELETE FROM litestash_expiry WHERE key_hash = ?1", [&hash])
        .unwrap();
    conn.execute_batch("COMMIT").unwrap();
}
