//! Faults a store must survive without a restart: a full disk, a poisoned
//! lock, a write refused before it is queued.

mod common;

use common::{keys_on_shard, roomy, submit, submit_traced};
use litestash_core::{ErrorKind, Options, Outcome, Reply, Request, Result, Store, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A reply that counts how often it is answered.
fn counted(answers: &Arc<AtomicUsize>) -> Reply {
    let answers = Arc::clone(answers);
    Reply::new(move |_: Result<Outcome>| {
        answers.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn a_write_refused_before_it_is_queued_is_answered_only_by_its_err() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), Options::default()).unwrap();
    let answers = Arc::new(AtomicUsize::new(0));
    let deep = (0..600).fold(Value::Nil, |v, _| Value::Array(vec![v]));

    let refused = [
        submit(
            &store,
            Request::set(b"", &Value::Nil, None),
            counted(&answers),
        ),
        submit(&store, Request::set(b"k", &deep, None), counted(&answers)),
        submit(
            &store,
            Request::set_many(&[(b"ok", &Value::Nil), (b"", &Value::Nil)]),
            counted(&answers),
        ),
        submit(&store, Request::delete(&[0xff]), counted(&answers)),
        submit(
            &store,
            Request::put_new(b"k", &deep, None),
            counted(&answers),
        ),
    ];
    let kinds: Vec<ErrorKind> = refused
        .iter()
        .map(|r| r.as_ref().unwrap_err().kind())
        .collect();
    assert_eq!(
        kinds,
        [
            ErrorKind::InvalidKey,
            ErrorKind::TooDeep,
            ErrorKind::InvalidKey,
            ErrorKind::InvalidKey,
            ErrorKind::TooDeep
        ]
    );

    store.close();
    for refused in [
        submit(
            &store,
            Request::set(b"k", &Value::Nil, None),
            counted(&answers),
        ),
        submit(
            &store,
            Request::set_many(&[(b"k", &Value::Nil)]),
            counted(&answers),
        ),
        submit(&store, Request::delete(b"k"), counted(&answers)),
        submit(&store, Request::incr(b"n", 1), counted(&answers)),
        submit(&store, Ok(Request::clear()), counted(&answers)),
    ] {
        assert_eq!(refused.unwrap_err().kind(), ErrorKind::Closed);
    }
    assert_eq!(
        answers.load(Ordering::SeqCst),
        0,
        "a refused write was also answered"
    );
}

#[test]
fn a_queued_write_is_answered_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), Options::default()).unwrap();
    let answers = Arc::new(AtomicUsize::new(0));
    for i in 0..200 {
        let key = format!("k{i}");
        submit(
            &store,
            Request::set(key.as_bytes(), &Value::Int(i), None),
            counted(&answers),
        )
        .unwrap();
    }
    submit(
        &store,
        Request::set_many(&[(b"a", &Value::Nil), (b"b", &Value::Nil)]),
        counted(&answers),
    )
    .unwrap();
    submit(&store, Ok(Request::clear()), counted(&answers)).unwrap();
    store.close();
    assert_eq!(answers.load(Ordering::SeqCst), 202);
}

#[test]
fn a_full_disk_fails_the_write_keeps_the_data_and_recovers_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        max_page_count: Some(32),
        ..Options::default()
    };
    let store = Store::open(tmp.path(), options).unwrap();
    let keys = keys_on_shard(6, 100);
    let value = |i: usize| Value::Bin(vec![i as u8; 3000]);
    let stored = keys
        .iter()
        .take_while(|k| store.set(k.as_bytes(), &value(k.len())).is_ok())
        .count();
    assert!(stored > 3 && stored < keys.len(), "{stored} stored");
    let full = &keys[stored];
    let err = store.set(full.as_bytes(), &value(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DiskFull, "{err}");
    assert!(err.message().contains("tables_gh.db"), "{err}");

    for key in &keys[..stored] {
        assert_eq!(store.get(key.as_bytes()).unwrap(), Some(value(key.len())));
    }
    assert_eq!(store.get(full.as_bytes()).unwrap(), None);
    let elsewhere = &keys_on_shard(12, 1)[0];
    store.set(elsewhere.as_bytes(), &value(2)).unwrap();

    for key in &keys[..3] {
        store.delete(key.as_bytes()).unwrap();
    }
    store.set(full.as_bytes(), &value(1)).unwrap();
    assert_eq!(store.get(full.as_bytes()).unwrap(), Some(value(1)));
    store.close();
}

#[test]
fn poisoned_locks_are_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), Options::default()).unwrap();
    store.set(b"before", &Value::Int(1)).unwrap();
    store.poison_locks_for_test();

    assert_eq!(store.get(b"before").unwrap(), Some(Value::Int(1)));
    store.set(b"after", &Value::Int(2)).unwrap();
    assert_eq!(store.count("").unwrap(), 2);
    assert_eq!(
        Store::open(tmp.path(), Options::default())
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyOpen
    );
    store.close();
    let store = Store::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(store.get(b"after").unwrap(), Some(Value::Int(2)));
    store.close();
}

#[test]
fn a_panic_inside_a_write_fails_that_write_and_leaves_no_transaction_open() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), roomy()).unwrap();
    let shard = litestash_core::SHARDS[litestash_core::route(&litestash_core::key_hash("k"))
        .unwrap()
        .shard];
    let other =
        rusqlite::Connection::open(tmp.path().join(shard).join(format!("{shard}.db"))).unwrap();
    other.busy_timeout(std::time::Duration::ZERO).unwrap();

    // Inline (answered on this thread) and through the writer thread.
    for inline in [true, false] {
        store.panic_in_next_write_for_test(b"k").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        submit_traced(
            &store,
            Request::set(b"k", &Value::Int(1), None),
            inline,
            &tx,
        )
        .unwrap();
        let (thread, refused) = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(refused.unwrap_err().kind(), ErrorKind::Internal);
        assert_eq!(thread == std::thread::current().id(), inline);

        // Before any other write: the transaction the panic left open was
        // rolled back, so another connection gets the write lock (the
        // writer thread may roll back just after answering: a moment).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while other.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the shard's write lock is still held after the panic"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        store.set(b"k", &Value::Int(2)).unwrap();
        assert_eq!(store.get(b"k").unwrap(), Some(Value::Int(2)));
    }
    store.close();
}

#[test]
fn an_interrupted_backup_leaves_no_dir_that_opens_as_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("data"), roomy()).unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    for key in &keys {
        store.set(key.as_bytes(), &Value::Str(key.clone())).unwrap();
    }
    let backups = tmp.path().join("backups");
    let dest = backups.join("nightly");

    // Killed after 5 of the 16 shards: a panic, so that no clean-up runs.
    store.crash_next_backup_for_test(5);
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.backup(&dest)));
    assert!(crashed.is_err());
    assert!(!dest.exists());
    let left: Vec<_> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    let depth = litestash_core::Depth {
        integrity: false,
        sample: 1,
    };
    for dir in &left {
        let err = Store::open(dir, Options::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IncompleteBackup, "{err}");
        let read_only = Options {
            read_only: true,
            ..Options::default()
        };
        let err = Store::open(dir, read_only).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IncompleteBackup, "{err}");
        let err = litestash_core::inspect_dir(dir, depth).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IncompleteBackup, "{err}");
    }

    // The next backup to the same place completes, and replaces the remains.
    std::fs::create_dir(&dest).unwrap();
    store.backup(&dest).unwrap();
    assert!(!left[0].exists());
    assert!(!dest.join(litestash_core::BACKUP_INCOMPLETE).exists());
    store.close();
    let copy = Store::open(&dest, Options::default()).unwrap();
    for key in &keys {
        assert_eq!(
            copy.get(key.as_bytes()).unwrap(),
            Some(Value::Str(key.clone()))
        );
    }
    copy.close();
}

#[test]
fn reads_of_an_expired_key_queue_nothing_while_its_writer_is_stalled() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        busy_timeout: std::time::Duration::from_millis(200),
        ..roomy()
    };
    let store = Store::open(tmp.path(), options).unwrap();
    let keys = keys_on_shard(0, 2);
    store
        .write(Request::set(keys[0].as_bytes(), &Value::Int(1), Some(1)).unwrap())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Another process holds the shard's lock: its writer can delete nothing.
    let holder = rusqlite::Connection::open(common::shard_path(tmp.path(), 0)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();

    let mut most = 0;
    for i in 0..50_000 {
        assert_eq!(store.get(keys[0].as_bytes()).unwrap(), None);
        if i % 1000 == 0 {
            most = most.max(store.writer_backlog_for_test(0));
        }
    }
    // At most the one wake-up a read sends, never a job per read.
    most = most.max(store.writer_backlog_for_test(0));
    assert!(most <= 1, "{most} messages queued to the stalled writer");

    holder.execute_batch("ROLLBACK").unwrap();
    let started = std::time::Instant::now();
    store.set(keys[1].as_bytes(), &Value::Int(2)).unwrap();
    // No backlog to work through first (generous: a loaded machine).
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(store.writer_backlog_for_test(0), 0);
    store.close();
}

#[test]
fn after_a_panic_in_a_sweep_a_write_still_waits_its_full_busy_timeout() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        busy_timeout: Duration::from_secs(10),
        ..roomy()
    };
    let store = Store::open(tmp.path(), options).unwrap();
    // The sweep runs with a background task's short busy timeout (100 ms)
    // and panics before it is restored.
    store.panic_in_next_sweep_for_test(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.sweep_panic_pending_for_test(0) {
        assert!(Instant::now() < deadline, "the sweep never ran");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Another process holds the file's lock for longer than 100 ms: the
    // write waits it out (its busy timeout is 10 s) instead of failing.
    let holder = rusqlite::Connection::open(common::shard_path(tmp.path(), 0)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let key = keys_on_shard(0, 1).remove(0);
    let written = std::thread::scope(|scope| {
        let writer = scope.spawn(|| store.set(key.as_bytes(), &Value::Int(1)));
        std::thread::sleep(Duration::from_millis(500));
        holder.execute_batch("ROLLBACK").unwrap();
        writer.join().expect("the writing thread panicked")
    });
    written.unwrap();
    assert_eq!(store.get(key.as_bytes()).unwrap(), Some(Value::Int(1)));
    store.close();
}
