//! Commit slots (`Options::concurrent_commits`, `writer/slots.rs`): when
//! writes crowd in, a writer waiting for one lets its queue grow and then
//! commits it in one transaction; a few writes never wait for one; and a
//! writer waiting for another process's lock on its file gives its slot
//! up, so that the other shards go on committing.

mod common;

use common::{keys_on_shard, roomy, shard_path};
use litestash_core::{ErrorKind, Event, Options, Reply, Request, Store, Value};
use rusqlite::Connection;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Queues a set of each key (never inline); each answer (`None` for
/// success, the error's kind otherwise) arrives on `tx`.
fn queue_sets(store: &Store, keys: &[String], tx: &mpsc::Sender<Option<ErrorKind>>) {
    for key in keys {
        let tx = tx.clone();
        let reply = Reply::new(move |result| {
            let _ = tx.send(result.err().map(|e| e.kind()));
        });
        common::submit(
            store,
            Request::set(key.as_bytes(), &Value::Int(1), None),
            reply,
        )
        .unwrap();
    }
}

/// Every answer of `n` writes, failing the test if one takes over `wait`.
fn answers(
    rx: &mpsc::Receiver<Option<ErrorKind>>,
    n: usize,
    wait: Duration,
) -> Vec<Option<ErrorKind>> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(wait)
                .unwrap_or_else(|_| panic!("answer {i} of {n} did not come within {wait:?}"))
        })
        .collect()
}

/// Commits a set of `key` inline (a lone writer) on a thread of its own:
/// its result, when it is done.
fn commit_inline(
    store: &Arc<Store>,
    key: &str,
) -> std::thread::JoinHandle<litestash_core::Result<()>> {
    let (store, key) = (Arc::clone(store), key.to_owned());
    let slot = store.inline_slot().expect("a lone writer commits inline");
    std::thread::spawn(move || {
        let request = Request::set(key.as_bytes(), &Value::Int(1), None).unwrap();
        match store.submit(request, Some(slot), || unreachable!("committed inline")) {
            Ok(litestash_core::Submitted::Committed(result)) => result.map(|_| ()),
            other => panic!("not committed inline: {:?}", other.map(|_| ())),
        }
    })
}

/// Waits for `n` answers on `rx` and checks that each is a success.
fn all_succeed(rx: &mpsc::Receiver<Option<ErrorKind>>, n: usize) {
    let got = answers(rx, n, Duration::from_secs(10));
    assert!(got.iter().all(Option::is_none), "{got:?}");
}

/// A store with one commit slot that every batch takes, and another
/// process's connection holding shard 0's write lock.
fn one_slot_with_shard_0_locked(dir: &std::path::Path) -> (Store, Connection) {
    let options = Options {
        concurrent_commits: Some(1),
        busy_timeout: Duration::from_secs(30),
        ..roomy()
    };
    let store = Store::open(dir, options).unwrap();
    store.set_slot_crowd_for_test(0);
    let holder = Connection::open(shard_path(dir, 0)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    (store, holder)
}

#[test]
fn a_crowd_queued_while_every_slot_is_taken_commits_in_one_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        concurrent_commits: Some(2),
        ..roomy()
    };
    let store = Arc::new(Store::open(tmp.path(), options).unwrap());
    let batches = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&batches);
    store.set_event_hook(Some(Arc::new(move |event| {
        if let Event::Commit {
            shard: 1,
            batch_size,
            ..
        } = event
        {
            seen.lock().unwrap().push(batch_size);
        }
    })));

    // Shard 1's writer is kept from its queue while 200 writes (a crowd:
    // more than 8 per shard) queue up: an inline commit holds its engine,
    // waiting for another process's lock on the file.
    let keys = keys_on_shard(1, 201);
    let holder = Connection::open(shard_path(tmp.path(), 1)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let inline = commit_inline(&store, &keys[0]);
    std::thread::sleep(Duration::from_millis(200));
    let held = store.hold_commit_slots_for_test();
    let (tx, rx) = mpsc::channel();
    queue_sets(&store, &keys[1..], &tx);
    holder.execute_batch("ROLLBACK").unwrap();
    inline.join().unwrap().unwrap();

    // The writer has its engine back and waits for a slot: nothing commits.
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    drop(held);
    all_succeed(&rx, 200);
    // The commit is reported just after its callers are answered (the
    // inline commit is reported as a batch of 1).
    let deadline = Instant::now() + Duration::from_secs(10);
    let committed = loop {
        let seen = batches.lock().unwrap().clone();
        if seen.iter().sum::<usize>() == 201 || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(committed, vec![1, 200], "commits of shard 1");
    store.close();
}

#[test]
fn a_few_writes_do_not_wait_for_a_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        concurrent_commits: Some(1),
        ..roomy()
    };
    let store = Store::open(tmp.path(), options).unwrap();
    // Every slot is taken, yet 10 writes (no crowd) commit at once.
    let _held = store.hold_commit_slots_for_test();
    let (tx, rx) = mpsc::channel();
    queue_sets(&store, &keys_on_shard(2, 10), &tx);
    all_succeed(&rx, 10);
    store.close();
}

#[test]
fn a_lock_held_on_one_file_does_not_hold_up_the_other_shards_under_one_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, holder) = one_slot_with_shard_0_locked(tmp.path());

    let (held_tx, held_rx) = mpsc::channel();
    queue_sets(&store, &keys_on_shard(0, 10), &held_tx);
    // Let shard 0's writer take the one slot and meet the lock.
    std::thread::sleep(Duration::from_millis(200));

    // Shard 1 commits while shard 0's writer waits (for up to 30 s): it
    // gave its slot up. Had it kept it, these would wait for the lock too.
    let (tx, rx) = mpsc::channel();
    for round in 0..3 {
        let keys: Vec<String> = keys_on_shard(1, 30)[round * 10..][..10].to_vec();
        queue_sets(&store, &keys, &tx);
        all_succeed(&rx, 10);
    }
    assert!(
        held_rx.try_recv().is_err(),
        "shard 0's writes went through the held lock"
    );

    holder.execute_batch("ROLLBACK").unwrap();
    all_succeed(&held_rx, 10);
    for key in &keys_on_shard(0, 10) {
        assert_eq!(store.get(key.as_bytes()).unwrap(), Some(Value::Int(1)));
    }
    store.close();
}

#[test]
fn a_writer_behind_an_inline_commit_that_waits_for_a_lock_holds_no_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, holder) = one_slot_with_shard_0_locked(tmp.path());
    let store = Arc::new(store);

    // A lone writer commits inline on shard 0, and waits for the lock
    // with the writer's engine in hand.
    let keys = keys_on_shard(0, 2);
    let inline = commit_inline(&store, &keys[0]);
    std::thread::sleep(Duration::from_millis(200));
    // Shard 0's writer takes this job and waits for the engine.
    let (held_tx, held_rx) = mpsc::channel();
    queue_sets(&store, &keys[1..], &held_tx);
    std::thread::sleep(Duration::from_millis(200));

    // Shard 1 still commits: the waiting writer holds no slot.
    let (tx, rx) = mpsc::channel();
    queue_sets(&store, &keys_on_shard(1, 10), &tx);
    all_succeed(&rx, 10);
    assert!(
        held_rx.try_recv().is_err(),
        "shard 0's write went through the held lock"
    );

    holder.execute_batch("ROLLBACK").unwrap();
    inline.join().unwrap().unwrap();
    all_succeed(&held_rx, 1);
    store.close();
}
