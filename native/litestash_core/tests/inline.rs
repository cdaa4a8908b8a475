//! Inline commits: a write whose reply allows it commits on the calling
//! thread when its shard's writer is idle, and the writer thread still does
//! the checkpoints.

mod common;

use common::{keys_on_shard, roomy, submit_traced, would_commit_inline};
use litestash_core::{Options, Outcome, Request, Store, Value, SHARDS};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[test]
fn an_inline_write_to_an_idle_shard_is_answered_before_the_call_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), roomy()).unwrap();
    let (tx, rx) = mpsc::channel();
    assert!(would_commit_inline(&store));

    submit_traced(&store, Request::set(b"k", &Value::Int(1), None), true, &tx).unwrap();
    let (thread, result) = rx.try_recv().expect("answered before submit returned");
    assert_eq!(thread, thread::current().id());
    assert_eq!(result.unwrap(), Outcome::Done);

    submit_traced(&store, Request::incr(b"n", 2), true, &tx).unwrap();
    let (thread, result) = rx.try_recv().expect("answered before submit returned");
    assert_eq!(thread, thread::current().id());
    assert_eq!(result.unwrap(), Outcome::Integer(2));

    // Without the permission, the writer thread commits and answers.
    submit_traced(&store, Request::set(b"k", &Value::Int(2), None), false, &tx).unwrap();
    let (thread, result) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_ne!(thread, thread::current().id());
    result.unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(Value::Int(2)));
    store.close();

    // Inline writes are committed like any other.
    let store = Store::open(tmp.path(), roomy()).unwrap();
    assert_eq!(store.get(b"n").unwrap(), Some(Value::Int(2)));
    store.close();
}

#[test]
fn with_inline_commits_off_every_write_goes_through_the_writer_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        inline_commits: 0,
        ..Options::default()
    };
    let store = Store::open(tmp.path(), options).unwrap();
    let (tx, rx) = mpsc::channel();
    assert!(!would_commit_inline(&store));

    submit_traced(&store, Request::set(b"k", &Value::Int(1), None), true, &tx).unwrap();
    let (thread, result) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_ne!(thread, thread::current().id());
    result.unwrap();
    store.close();
}

#[test]
fn inline_writes_alone_still_get_their_wal_checkpointed() {
    // The writer thread's own timer is an hour away: only the wake-up an
    // inline commit sends past the threshold can checkpoint the WAL.
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        checkpoint_pages: 64,
        ..roomy()
    };
    let store = Store::open(tmp.path(), options).unwrap();
    let value = Value::Str("x".repeat(1024));
    let (tx, rx) = mpsc::channel();
    let mut largest = 0;
    let mut inline = 0;
    for i in 0..4000 {
        let key = format!("k{i}");
        submit_traced(
            &store,
            Request::set(key.as_bytes(), &value, None),
            true,
            &tx,
        )
        .unwrap();
        let (thread, result) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        result.unwrap();
        if thread == thread::current().id() {
            inline += 1;
        }
        if i % 100 == 99 {
            largest = largest.max(largest_wal(tmp.path()));
        }
    }
    // Most writes committed inline (the rest queued while the writer
    // thread checkpointed).
    assert!(
        inline > 2000,
        "only {inline} of 4,000 writes committed inline"
    );
    // 4,000 commits of about 3 pages each would leave ~750 pages per WAL;
    // checkpointed every 64 pages, a WAL is reused from its start.
    assert!(
        largest < 300 * 4120,
        "largest WAL {largest} bytes: the WAL was not checkpointed"
    );
    assert_eq!(store.count("").unwrap(), 4000);
    store.close();
}

fn largest_wal(dir: &std::path::Path) -> u64 {
    SHARDS
        .iter()
        .filter_map(|shard| std::fs::metadata(dir.join(shard).join(format!("{shard}.db-wal"))).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_write_queued_on_one_shard_keeps_every_shard_from_committing_inline() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), roomy()).unwrap();
    let on_0 = keys_on_shard(0, 1).remove(0);
    let on_1 = keys_on_shard(1, 1).remove(0);
    let (tx, rx) = mpsc::channel();

    // Another connection holds shard 0's write lock, so shard 0's writer
    // thread waits with the job in hand.
    let shard = SHARDS[0];
    let other =
        rusqlite::Connection::open(tmp.path().join(shard).join(format!("{shard}.db"))).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    submit_traced(
        &store,
        Request::set(on_0.as_bytes(), &Value::Int(0), None),
        false,
        &tx,
    )
    .unwrap();

    // Shard 1 is idle, but the store is not: its write queues.
    assert!(!would_commit_inline(&store));
    submit_traced(
        &store,
        Request::set(on_1.as_bytes(), &Value::Int(1), None),
        true,
        &tx,
    )
    .unwrap();
    let (thread, result) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_ne!(thread, thread::current().id(), "committed inline");
    result.unwrap();

    // Shard 0's write commits once the lock is free; then the store is a
    // lone writer's again.
    other.execute_batch("ROLLBACK").unwrap();
    let (_, result) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    result.unwrap();
    assert!(would_commit_inline(&store));
    assert_eq!(store.get(on_0.as_bytes()).unwrap(), Some(Value::Int(0)));
    store.close();
}
