//! Another process holds a shard's write lock: every caller hears `Busy`
//! about one busy timeout after its call, however many callers there are,
//! and closing the store does not wait one timeout per write.

mod common;

use common::{keys_on_shard, roomy, shard_path, submit};
use litestash_core::{ErrorKind, Options, Reply, Request, Store, Value};
use rusqlite::Connection;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_millis(300);

/// Queues a write of each key (never inline); its answer's kind and time
/// arrive on `tx`.
fn queue_all(store: &Store, keys: &[String], tx: &mpsc::Sender<(Option<ErrorKind>, Instant)>) {
    for key in keys {
        let tx = tx.clone();
        let reply = Reply::new(move |result| {
            let _ = tx.send((result.err().map(|e| e.kind()), Instant::now()));
        });
        submit(
            store,
            Request::set(key.as_bytes(), &Value::Int(1), None),
            reply,
        )
        .unwrap();
    }
}

#[test]
fn callers_behind_a_held_lock_all_hear_busy_within_about_one_busy_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        busy_timeout: TIMEOUT,
        ..roomy()
    };
    let store = Store::open(tmp.path(), options).unwrap();
    let holder = Connection::open(shard_path(tmp.path(), 0)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();

    let keys = keys_on_shard(0, 600);
    let (tx, rx) = mpsc::channel();
    let called = Instant::now();
    queue_all(&store, &keys[..300], &tx);
    for _ in 0..300 {
        let (kind, at) = rx.recv_timeout(Duration::from_secs(10)).expect("an answer");
        assert_eq!(kind, Some(ErrorKind::Busy));
        // One busy timeout from its call, plus a margin for this machine:
        // what queued during the first batch's wait waits only what is left
        // of its own, not a second full one.
        assert!(
            at - called < TIMEOUT * 3 / 2,
            "answered after {:?}",
            at - called
        );
    }

    // Stopping with writes queued behind the lock: one wait, not one each.
    queue_all(&store, &keys[300..], &tx);
    let closing = Instant::now();
    store.close();
    assert!(
        closing.elapsed() < TIMEOUT * 4,
        "close took {:?}",
        closing.elapsed()
    );
    let busy = rx
        .try_iter()
        .filter(|(k, _)| *k == Some(ErrorKind::Busy))
        .count();
    assert_eq!(busy, 300);
}

#[test]
fn writes_succeed_again_once_the_lock_is_released() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        busy_timeout: TIMEOUT,
        ..roomy()
    };
    let store = Store::open(tmp.path(), options).unwrap();
    let holder = Connection::open(shard_path(tmp.path(), 0)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let keys = keys_on_shard(0, 50);
    let (tx, rx) = mpsc::channel();
    queue_all(&store, &keys, &tx);
    for _ in 0..50 {
        let (kind, _) = rx.recv_timeout(Duration::from_secs(10)).expect("an answer");
        assert_eq!(kind, Some(ErrorKind::Busy));
    }
    holder.execute_batch("ROLLBACK").unwrap();
    queue_all(&store, &keys, &tx);
    for _ in 0..50 {
        let (kind, _) = rx.recv_timeout(Duration::from_secs(10)).expect("an answer");
        assert_eq!(kind, None);
    }
    assert_eq!(store.get(keys[0].as_bytes()).unwrap(), Some(Value::Int(1)));
    store.close();
}
