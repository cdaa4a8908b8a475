//! A process that writes through LiteStash is killed with SIGKILL at random
//! moments; every write it acknowledged is found after reopening, and every
//! shard file passes `PRAGMA integrity_check`. A clean close commits every
//! write still queued.
//!
//! The writer is this test binary run again with `LITESTASH_CRASH_CHILD`
//! set: it prints `ack <thread> <n>` after each `set` returns `Ok`. Set
//! `LITESTASH_CRASH_SEED` to replay a run.

mod common;

use common::{shard_path, Rng};
use litestash_core::{Options, Reply, Request, Store, Synchronous, Value, SHARD_COUNT};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const CHILD: &str = "LITESTASH_CRASH_CHILD";

/// Each writer thread cycles over this many keys, so keys are overwritten.
const SLOTS: u64 = 40;

fn key(round: usize, thread: u64, n: u64) -> String {
    format!("r{round}:t{thread}:k{}", n % SLOTS)
}

/// The value of write `n` of `thread`: its size varies, so that pages split
/// and overflow while the process dies.
fn value(thread: u64, n: u64) -> Value {
    Value::Map(vec![
        (Value::Str("thread".into()), Value::Int(thread as i64)),
        (Value::Str("n".into()), Value::Int(n as i64)),
        (
            Value::Str("pad".into()),
            Value::Bin(vec![(n % 251) as u8; (n as usize * 37) % 3000]),
        ),
    ])
}

/// The `n` a stored value says it was written as, for failure messages.
fn stored_n(v: &Value) -> String {
    match v {
        Value::Map(entries) => format!("{:?}", entries.get(1).map(|e| &e.1)),
        other => format!("not a value of this test: {other:?}"),
    }
}

/// The writer process: `dir threads sync round` in `LITESTASH_CRASH_CHILD`.
/// Runs as a test only in the child; in a normal run it returns at once.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (dir, threads, round) = (parts[0], parts[1].parse::<u64>().unwrap(), parts[3]);
    let round: usize = round.parse().unwrap();
    let synchronous = if parts[2] == "full" {
        Synchronous::Full
    } else {
        Synchronous::Normal
    };
    let store = Arc::new(
        Store::open(
            dir,
            Options {
                synchronous,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    println!("ready");
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for n in 0.. {
                    store
                        .set(key(round, thread, n).as_bytes(), &value(thread, n))
                        .unwrap();
                    // One `println!` is one write of one whole line.
                    println!("ack {thread} {n}");
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

/// Runs the child until killed; returns the acknowledged `n`s per thread.
fn run_and_kill(
    dir: &Path,
    threads: u64,
    sync: &str,
    round: usize,
    rng: &mut Rng,
) -> Vec<Vec<u64>> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, format!("{}|{threads}|{sync}|{round}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        // A line cut short by the kill has no newline and is not an ack.
        while stdout.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
            let _ = tx.send(line.trim_end().to_owned());
            line.clear();
        }
    });
    if round == 0 {
        // Now and then while the 16 files are being created.
        std::thread::sleep(Duration::from_millis(rng.below(40) as u64));
    } else {
        // libtest's own lines come first.
        while !rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap()
            .ends_with("ready")
        {}
        std::thread::sleep(Duration::from_millis(50 + rng.below(400) as u64));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let mut acked = vec![Vec::new(); threads as usize];
    for line in rx.try_iter() {
        let words: Vec<&str> = line.split(' ').collect();
        if let ["ack", t, n] = words[..] {
            acked[t.parse::<usize>().unwrap()].push(n.parse().unwrap());
        }
    }
    acked
}

fn assert_integrity(dir: &Path) {
    for shard in 0..SHARD_COUNT {
        let path = shard_path(dir, shard);
        if !path.exists() {
            continue;
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
        let result: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(result, "ok", "{}", path.display());
    }
}

/// Rounds of write-then-SIGKILL on one data dir, alternating one writer
/// with many (whose writes share group commits). After each, every write
/// acknowledged in any round reads back as its last acknowledged value or,
/// for a write in flight when the process died, the value it was writing.
fn crash_rounds(sync: &str) {
    let seed = std::env::var("LITESTASH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let mut pinned: HashMap<String, Option<Value>> = HashMap::new();
    let mut total_acked = 0;
    for round in 0..6 {
        let threads = if round % 2 == 0 { 1 } else { 16 };
        let acked = run_and_kill(tmp.path(), threads, sync, round, &mut rng);
        total_acked += acked.iter().map(Vec::len).sum::<usize>();
        let context =
            format!("round {round}, {threads} threads, {sync} (LITESTASH_CRASH_SEED={seed})");
        assert_integrity(tmp.path());

        let store = Store::open(tmp.path(), Options::default())
            .unwrap_or_else(|e| panic!("reopen failed: {e} ({context})"));
        for (key, expected) in &pinned {
            assert_eq!(
                &store.get(key.as_bytes()).unwrap(),
                expected,
                "{key}, {context}"
            );
        }
        for (thread, ns) in acked.iter().enumerate() {
            let thread = thread as u64;
            // Writes are sequential per thread: at most one more was in flight.
            let in_flight = ns.last().map_or(0, |n| n + 1);
            for slot in 0..SLOTS {
                let key = key(round, thread, slot);
                let last = ns.iter().rev().find(|n| *n % SLOTS == slot).copied();
                let stored = store.get(key.as_bytes()).unwrap();
                let ok = match (&stored, last) {
                    (Some(v), Some(n)) => {
                        *v == value(thread, n)
                            || (in_flight % SLOTS == slot && *v == value(thread, in_flight))
                    }
                    (Some(v), None) => in_flight % SLOTS == slot && *v == value(thread, in_flight),
                    (None, last) => last.is_none(),
                };
                assert!(
                    ok,
                    "{key}: stored n {:?}, last acknowledged n {last:?} ({context})",
                    stored.as_ref().map(stored_n)
                );
                pinned.insert(key, stored);
            }
        }
        store.close();
    }
    assert!(
        total_acked > 0,
        "no write was acknowledged in any round (seed {seed})"
    );
}

#[test]
fn acknowledged_writes_survive_sigkill_with_synchronous_normal() {
    crash_rounds("normal");
}

#[test]
fn acknowledged_writes_survive_sigkill_with_synchronous_full() {
    crash_rounds("full");
}

#[test]
fn a_clean_close_commits_every_write_still_queued() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), Options::default()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let n = 5_000;
    for i in 0..n {
        let tx = tx.clone();
        let reply = Reply::new(move |result| {
            let _ = tx.send(result);
        });
        let key = format!("q{i}");
        store
            .submit(
                Request::set(key.as_bytes(), &Value::Int(i), None).unwrap(),
                None,
                || reply,
            )
            .unwrap();
    }
    drop(tx);
    // Straight to close: most of the writes are still queued.
    store.close();
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), n as usize);
    assert!(results.iter().all(Result::is_ok), "a queued write failed");

    let store = Store::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(store.count("").unwrap(), n as u64);
    for i in (0..n).step_by(97) {
        assert_eq!(
            store.get(format!("q{i}").as_bytes()).unwrap(),
            Some(Value::Int(i))
        );
    }
    store.close();
}

const HOT_JOURNAL_CHILD: &str = "LITESTASH_HOT_JOURNAL_CHILD";

/// The process that dies mid-transaction: rewrites every row of a shard
/// with a one-page cache, so that changed pages spill into the file while
/// their originals wait in the -journal, then waits to be killed.
#[test]
fn hot_journal_child() {
    let Ok(path) = std::env::var(HOT_JOURNAL_CHILD) else {
        return;
    };
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA cache_size = 1; BEGIN IMMEDIATE;")
        .unwrap();
    for table in litestash_core::table_names(3) {
        conn.execute(
            &format!("UPDATE \"{table}\" SET value = zeroblob(3000)"),
            [],
        )
        .unwrap();
    }
    println!("mid-transaction");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_shard_a_killed_process_left_with_a_hot_journal_is_recovered_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = common::keys_on_shard(3, 200);
    let store = Store::open(tmp.path(), Options::default()).unwrap();
    for key in &keys {
        store.set(key.as_bytes(), &Value::Str(key.clone())).unwrap();
    }
    store.close();
    let path = shard_path(tmp.path(), 3);
    Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "hot_journal_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOT_JOURNAL_CHILD, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("mid-transaction") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut journal = path.clone().into_os_string();
    journal.push("-journal");
    assert!(
        std::fs::metadata(&journal).unwrap().len() > 0,
        "no hot journal"
    );

    let store = Store::open(tmp.path(), Options::default()).unwrap();
    for key in &keys {
        assert_eq!(
            store.get(key.as_bytes()).unwrap(),
            Some(Value::Str(key.clone()))
        );
    }
    store.close();
    assert_integrity(tmp.path());
}
