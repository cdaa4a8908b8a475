//! A replica's files (contract section 10): replicated entries applied
//! once each with their index, ordinary writes refused, snapshots installed.

mod common;

use common::keys_on_shard;
use litestash_core::{ErrorKind, Options, Outcome, ReplicaOp, Request, Store, Value};

fn replica_options() -> Options {
    Options {
        replica: true,
        ..Options::default()
    }
}

/// Applies one entry and waits for its answer.
fn apply(store: &Store, shard: usize, index: u64, now_ms: i64, ops: &[ReplicaOp]) -> Outcome {
    let request = Request::replicated(shard, index, now_ms, ops).unwrap();
    store.write(request).unwrap()
}

fn answers(outcome: Outcome) -> Vec<litestash_core::Result<Outcome>> {
    match outcome {
        Outcome::Replicated(answers) => answers,
        other => panic!("expected the answers of an applied entry, got {other:?}"),
    }
}

#[test]
fn an_entry_is_applied_once_with_its_index_and_each_op_fails_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), replica_options()).unwrap();
    let keys = keys_on_shard(3, 3);
    let (a, b, c) = (keys[0].as_bytes(), keys[1].as_bytes(), keys[2].as_bytes());
    assert_eq!(store.replica_applied(3).unwrap(), 0);

    let one = Value::Int(1);
    let got = answers(apply(
        &store,
        3,
        7,
        1_000,
        &[
            ReplicaOp::Set(a, &one, None),
            ReplicaOp::PutNew(a, &one, None),
            ReplicaOp::Incr(b, 5),
            ReplicaOp::Set(c, &Value::Str("x".into()), None),
        ],
    ));
    assert_eq!(got[0], Ok(Outcome::Done));
    assert_eq!(got[1].as_ref().unwrap_err().kind(), ErrorKind::Exists);
    assert_eq!(got[2], Ok(Outcome::Integer(5)));
    assert_eq!(store.replica_applied(3).unwrap(), 7);

    // Replayed (after a crash, say): nothing is applied twice.
    assert_eq!(
        apply(&store, 3, 7, 1_000, &[ReplicaOp::Incr(b, 5)]),
        Outcome::Skipped
    );
    assert_eq!(
        apply(&store, 3, 6, 1_000, &[ReplicaOp::Delete(a)]),
        Outcome::Skipped
    );
    assert_eq!(store.get(b).unwrap(), Some(Value::Int(5)));
    assert_eq!(store.get(a).unwrap(), Some(Value::Int(1)));

    // A key of another shard is refused before anything is queued.
    let other = keys_on_shard(4, 1).remove(0);
    assert_eq!(
        Request::replicated(3, 8, 0, &[ReplicaOp::Delete(other.as_bytes())])
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    store.close();

    // The index survives a restart, with the data of the same transaction.
    let store = Store::open(tmp.path(), replica_options()).unwrap();
    assert_eq!(store.replica_applied(3).unwrap(), 7);
    assert_eq!(store.get(c).unwrap(), Some(Value::Str("x".into())));
    store.close();
}

#[test]
fn an_entry_runs_by_its_own_clock_so_every_replica_writes_the_same_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), replica_options()).unwrap();
    let keys = keys_on_shard(0, 2);
    let now = 1_700_000_000_123;
    apply(
        &store,
        0,
        1,
        now,
        &[
            ReplicaOp::Set(keys[0].as_bytes(), &Value::Int(1), Some(now + 10)),
            ReplicaOp::Set(keys[1].as_bytes(), &Value::Int(2), None),
        ],
    );
    store.close();
    let path = common::shard_path(tmp.path(), 0);
    let conn = rusqlite::Connection::open(path).unwrap();
    let table =
        &litestash_core::table_names(0)[litestash_core::route(&litestash_core::key_hash(&keys[1]))
            .unwrap()
            .table];
    let (secs, micros): (i64, i64) = conn
        .query_row(
            &format!("SELECT timestamp, microsecond FROM \"{table}\" WHERE \"key\" = ?1"),
            [&keys[1]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((secs, micros), (1_700_000_000, 123_000));
    let at: i64 = conn
        .query_row(
            "SELECT expires_at FROM litestash_expiry WHERE key_hash = ?1",
            [litestash_core::key_hash(&keys[0])],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(at, now + 10);
}

#[test]
fn ordinary_writes_are_refused_on_a_replica_and_by_a_store_that_is_not_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), replica_options()).unwrap();
    assert_eq!(
        store.set(b"k", &Value::Int(1)).unwrap_err().kind(),
        ErrorKind::Replicated
    );
    // Compaction changes no key: a replica compacts its own files.
    store.compact().unwrap();
    let shard = litestash_core::route(&litestash_core::key_hash("k"))
        .unwrap()
        .shard;
    apply(
        &store,
        shard,
        1,
        0,
        &[ReplicaOp::Set(b"k", &Value::Int(1), None)],
    );
    store.close();

    // Opened without replication: it reads the replica's files, never writes them.
    let store = Store::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(Value::Int(1)));
    for refused in [
        store.set(b"k", &Value::Int(2)),
        store.delete(b"k"),
        store.clear(),
        store.set_many(&[(b"k", &Value::Int(3))]),
        store.compact(),
    ] {
        assert_eq!(refused.unwrap_err().kind(), ErrorKind::Replicated);
    }
    let entry = Request::replicated(shard, 2, 0, &[ReplicaOp::Delete(b"k")]).unwrap();
    assert_eq!(
        store.write(entry).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(store.get(b"k").unwrap(), Some(Value::Int(1)));
    store.close();
}

#[test]
fn a_replica_sweeps_expired_keys_only_through_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        sweep_interval: std::time::Duration::from_millis(10),
        ..replica_options()
    };
    let store = Store::open(tmp.path(), options).unwrap();
    let key = keys_on_shard(5, 1).remove(0);
    apply(
        &store,
        5,
        1,
        0,
        &[ReplicaOp::Set(key.as_bytes(), &Value::Int(1), Some(1))],
    );
    // Expired long ago, so invisible, but the writer's own sweep leaves it.
    assert_eq!(store.get(key.as_bytes()).unwrap(), None);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let rows = |store: &Store| store.info().unwrap()[5].keys.clone();
    let conn = rusqlite::Connection::open(common::shard_path(tmp.path(), 5)).unwrap();
    let expiring = || -> i64 {
        conn.query_row("SELECT count(*) FROM litestash_expiry", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(expiring(), 1);
    assert_eq!(rows(&store), Ok(0));
    let swept = answers(apply(&store, 5, 2, 10, &[ReplicaOp::Sweep(100)]));
    assert_eq!(swept, vec![Ok(Outcome::Done)]);
    assert_eq!(expiring(), 0);
    store.close();
}

#[test]
fn a_snapshot_installed_on_another_replica_brings_its_data_and_index() {
    let from = tempfile::tempdir().unwrap();
    let to = tempfile::tempdir().unwrap();
    let source = Store::open(from.path(), replica_options()).unwrap();
    let target = Store::open(to.path(), replica_options()).unwrap();
    let keys = keys_on_shard(9, 50);
    for (i, key) in keys.iter().enumerate() {
        let value = Value::Int(i as i64);
        apply(
            &source,
            9,
            i as u64 + 1,
            0,
            &[ReplicaOp::Set(key.as_bytes(), &value, None)],
        );
    }
    // The target holds something else, which the install replaces.
    apply(
        &target,
        9,
        1,
        0,
        &[ReplicaOp::Set(keys[0].as_bytes(), &Value::Nil, None)],
    );
    let snap = tempfile::tempdir().unwrap();
    let file = snap.path().join("shard.db");
    source.shard_snapshot(9, &file).unwrap();

    // A reader that holds a snapshot of the old file keeps it meanwhile.
    let mut reading = target.snapshot(9, "").unwrap();
    assert_eq!(reading.next_keys(1).unwrap(), vec![keys[0].clone()]);
    assert_eq!(
        target.write(Request::install(9, &file)).unwrap(),
        Outcome::Done
    );
    assert_eq!(reading.next_keys(1000).unwrap(), Vec::<String>::new());
    drop(reading);

    assert_eq!(target.replica_applied(9).unwrap(), 50);
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            target.get(key.as_bytes()).unwrap(),
            Some(Value::Int(i as i64))
        );
    }
    // Writes go on after it, in order.
    assert_eq!(
        apply(&target, 9, 50, 0, &[ReplicaOp::Delete(keys[0].as_bytes())]),
        Outcome::Skipped
    );
    answers(apply(
        &target,
        9,
        51,
        0,
        &[ReplicaOp::Delete(keys[0].as_bytes())],
    ));
    assert_eq!(target.get(keys[0].as_bytes()).unwrap(), None);
    assert_eq!(target.count("").unwrap(), 49);
    // Not a replica's file: refused.
    let plain = tempfile::tempdir().unwrap();
    let store = Store::open(plain.path(), Options::default()).unwrap();
    store.set(keys[1].as_bytes(), &Value::Int(1)).unwrap();
    let plain_file = snap.path().join("plain.db");
    store.shard_snapshot(9, &plain_file).unwrap();
    store.close();
    assert_eq!(
        target
            .write(Request::install(9, &plain_file))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    source.close();
    target.close();
}
