//! The value cache: hits, every write API keeping it right, expiry, a
//! cache of size 0, and another OS process writing the same files while
//! this store reads them through its cache.
//!
//! The foreign process is this test binary run again with
//! `LITESTASH_FOREIGN_WRITER` set: it writes rows with plain SQL through a
//! connection of its own, as another implementation of the contract would.

mod common;

use litestash_core::{key_hash, route, Options, Request, Store, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const CHILD: &str = "LITESTASH_FOREIGN_WRITER";

fn int(n: i64) -> Value {
    Value::Int(n)
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, common::roomy()).unwrap()
}

/// The foreign process: reads `set KEY N` / `del KEY` lines, commits each
/// through its own connections and answers `committed` once the commit returned.
#[test]
fn foreign_writer_child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mut conns: Vec<Option<rusqlite::Connection>> = (0..16).map(|_| None).collect();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let mut parts = line.split(' ');
        let (op, key) = (parts.next().unwrap(), parts.next().unwrap());
        let shard = route(&key_hash(key)).unwrap().shard;
        let conn = conns[shard].get_or_insert_with(|| {
            let c = rusqlite::Connection::open(common::shard_path(&dir, shard)).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            c
        });
        match op {
            "set" => common::write_row(
                conn,
                key,
                Some(&int(parts.next().unwrap().parse().unwrap())),
            ),
            _ => common::write_row(conn, key, None),
        }
        writeln!(out, "committed").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_value_read_once_is_then_served_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.set(b"k", &Value::Str("v".into())).unwrap();
    assert!(store.get_cached(b"k").is_none(), "a write fills nothing");
    assert_eq!(store.get(b"k").unwrap(), Some(Value::Str("v".into())));
    let hit = store.get_cached(b"k").expect("the read filled the cache");
    assert_eq!(hit.value().unwrap(), Value::Str("v".into()));
    assert!(store.cache_bytes() > 0);
    assert!(store.exists(b"k").unwrap());
}

#[test]
fn a_read_that_skips_the_cache_fills_it_with_the_bytes_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let value = Value::Map(vec![
        (Value::Str("name".into()), Value::Str("user-1".into())),
        (
            Value::Int(7),
            Value::Array(vec![Value::Float(1.5), Value::Nil]),
        ),
    ]);
    store.set(b"k", &value).unwrap();
    let read = store.read_stored(b"k").unwrap().expect("stored");
    assert_eq!(read.encoded(), &litestash_core::encode(&value).unwrap()[..]);
    let hit = store
        .get_cached(b"k")
        .expect("read_stored filled the cache");
    assert_eq!(hit.value().unwrap(), value);
    assert_eq!(store.read_stored(b"absent").unwrap().map(|_| ()), None);
}

#[test]
fn an_entry_of_a_small_map_weighs_a_few_hundred_bytes_at_most() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let value = |i: i64| {
        Value::Map(vec![
            (Value::Str("i".into()), Value::Int(i)),
            (Value::Str("name".into()), Value::Str(format!("user-{i}"))),
            (
                Value::Str("tags".into()),
                Value::Array(vec![Value::Str("a".into()), Value::Str("b".into())]),
            ),
            (Value::Str("score".into()), Value::Float(1.5)),
        ])
    };
    let keys: Vec<String> = (0..1000).map(|i| format!("user:{i}")).collect();
    let values: Vec<Value> = (0..1000).map(value).collect();
    let pairs: Vec<(&[u8], &Value)> = keys.iter().map(|k| k.as_bytes()).zip(&values).collect();
    store.set_many(&pairs).unwrap();
    for key in &keys {
        assert!(store.get(key.as_bytes()).unwrap().is_some());
    }
    // The encoding (about 50 bytes), the key and a fixed overhead: a
    // decoded tree of the same map took about 700.
    let per_entry = store.cache_bytes() / 1000;
    assert!(
        (100..300).contains(&per_entry),
        "{per_entry} bytes per entry"
    );
}

#[test]
fn a_store_with_cache_size_zero_caches_nothing_and_reads_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(
        tmp.path(),
        Options {
            cache_size: 0,
            ..common::roomy()
        },
    )
    .unwrap();
    store.set(b"k", &int(1)).unwrap();
    for _ in 0..3 {
        assert_eq!(store.get(b"k").unwrap(), Some(int(1)));
    }
    assert!(store.get_cached(b"k").is_none());
    assert_eq!(store.cache_bytes(), 0);
    store.delete(b"k").unwrap();
    assert_eq!(store.get(b"k").unwrap(), None);
}

#[test]
fn values_larger_than_the_cacheable_size_are_read_but_not_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let big = Value::Bin(vec![7; litestash_core::CACHEABLE_BYTES + 1]);
    store.set(b"big", &big).unwrap();
    assert_eq!(store.get(b"big").unwrap(), Some(big));
    assert!(store.get_cached(b"big").is_none());
}

/// Reads `key` twice (the second from the cache when it is cached) and
/// checks both against `want`.
fn reads(store: &Store, key: &[u8], want: Option<Value>) {
    assert_eq!(
        store.get(key).unwrap(),
        want,
        "{:?}",
        String::from_utf8_lossy(key)
    );
    assert_eq!(
        store.get(key).unwrap(),
        want,
        "{:?}",
        String::from_utf8_lossy(key)
    );
    let many = store.get_many(&[key]).unwrap();
    assert_eq!(many, vec![want.clone().map(Ok)]);
    assert_eq!(store.exists(key).unwrap(), want.is_some());
}

#[test]
fn every_write_api_keeps_the_cache_right() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.set(b"a", &int(1)).unwrap();
    reads(&store, b"a", Some(int(1)));
    store.set(b"a", &int(2)).unwrap();
    reads(&store, b"a", Some(int(2)));
    store
        .set_many(&[(b"a".as_slice(), &int(3)), (b"b", &int(4))])
        .unwrap();
    reads(&store, b"a", Some(int(3)));
    reads(&store, b"b", Some(int(4)));
    assert_eq!(store.incr(b"a", 10).unwrap(), 13);
    reads(&store, b"a", Some(int(13)));
    store
        .write(Request::compare_and_set(b"a", &int(13), &int(14), None).unwrap())
        .unwrap();
    reads(&store, b"a", Some(int(14)));
    assert!(store
        .write(Request::compare_and_set(b"a", &int(99), &int(15), None).unwrap())
        .is_err());
    reads(&store, b"a", Some(int(14)));
    assert!(store
        .write(Request::put_new(b"a", &int(16), None).unwrap())
        .is_err());
    reads(&store, b"a", Some(int(14)));
    store.delete(b"a").unwrap();
    reads(&store, b"a", None);
    store
        .write(Request::put_new(b"a", &int(17), None).unwrap())
        .unwrap();
    reads(&store, b"a", Some(int(17)));
    assert_eq!(store.ttl(b"a").unwrap(), Some(None));
    store
        .write(Request::expire(b"a", Some(60_000)).unwrap())
        .unwrap();
    let ttl = store.ttl(b"a").unwrap().flatten().unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
    reads(&store, b"a", Some(int(17)));
    let ttl = store.ttl(b"a").unwrap().flatten().unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "the cached expiry: {ttl}");
    store.write(Request::expire(b"a", None).unwrap()).unwrap();
    assert_eq!(store.ttl(b"a").unwrap(), Some(None));
    reads(&store, b"a", Some(int(17)));
    store
        .write(Request::expire(b"a", Some(1)).unwrap())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    reads(&store, b"a", None);
    store.set(b"c", &int(5)).unwrap();
    reads(&store, b"c", Some(int(5)));
    reads(&store, b"b", Some(int(4)));
    store.clear().unwrap();
    reads(&store, b"b", None);
    reads(&store, b"c", None);
}

#[test]
fn a_cached_key_whose_ttl_passed_is_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store
        .write(Request::set(b"t", &int(1), Some(150)).unwrap())
        .unwrap();
    assert_eq!(store.get(b"t").unwrap(), Some(int(1)));
    assert!(store.get_cached(b"t").is_some());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(store.get_cached(b"t").is_none());
    assert_eq!(store.get(b"t").unwrap(), None);
    assert!(!store.exists(b"t").unwrap());
    assert_eq!(store.ttl(b"t").unwrap(), None);
}

#[test]
fn a_write_by_another_connection_is_seen_by_the_next_read() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.set(b"f", &int(1)).unwrap();
    assert_eq!(store.get(b"f").unwrap(), Some(int(1)));
    assert!(store.get_cached(b"f").is_some());
    common::foreign_write(tmp.path(), "f", Some(&int(2)));
    assert!(store.get_cached(b"f").is_none(), "the -shm counter moved");
    assert_eq!(store.get(b"f").unwrap(), Some(int(2)));
    assert_eq!(store.get(b"f").unwrap(), Some(int(2)));
    common::foreign_write(tmp.path(), "f", None);
    assert_eq!(store.get(b"f").unwrap(), None);
}

/// Another OS process overwrites and deletes keys this store has cached,
/// while this store reads them: after each foreign commit returned, every
/// read sees it, over 12,000 interleaved operations.
#[test]
fn another_process_overwriting_cached_keys_never_leaves_a_stale_read() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let keys: Vec<String> = (0..24).map(|i| format!("hot:{i}")).collect();
    let mut model: Vec<Option<i64>> = vec![None; keys.len()];
    for (i, key) in keys.iter().enumerate() {
        store.set(key.as_bytes(), &int(i as i64)).unwrap();
        model[i] = Some(i as i64);
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "foreign_writer_child",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());
    let mut rng = common::Rng::new(11);
    let (mut foreign, mut ours, mut served_cached) = (0, 0, 0);
    let mut line = String::new();
    for n in 0..12_000i64 {
        let i = rng.below(keys.len());
        let key = &keys[i];
        match rng.below(10) {
            0..=2 => {
                let cmd = if rng.below(4) == 0 {
                    model[i] = None;
                    format!("del {key}\n")
                } else {
                    model[i] = Some(1_000_000 + n);
                    format!("set {key} {}\n", 1_000_000 + n)
                };
                to_child.write_all(cmd.as_bytes()).unwrap();
                line.clear();
                // The test harness prints on the same lines.
                while !line.trim_end().ends_with("committed") {
                    line.clear();
                    assert!(
                        from_child.read_line(&mut line).unwrap() > 0,
                        "the child died"
                    );
                }
                foreign += 1;
            }
            3 => {
                store.set(key.as_bytes(), &int(n)).unwrap();
                model[i] = Some(n);
                ours += 1;
            }
            _ => {}
        }
        let j = rng.below(keys.len());
        for k in [i, j] {
            if store.get_cached(keys[k].as_bytes()).is_some() {
                served_cached += 1;
            }
            let got = store.get(keys[k].as_bytes()).unwrap();
            assert_eq!(got, model[k].map(int), "op {n}: key {} is stale", keys[k]);
        }
    }
    drop(to_child);
    assert!(child.wait().unwrap().success());
    assert!(
        foreign > 3000 && ours > 1000,
        "{foreign} foreign, {ours} ours"
    );
    assert!(
        served_cached > 1000,
        "the cache served only {served_cached} reads"
    );
}

/// Writers and readers of the same keys at once: every read returns a
/// committed value no older than the last write acknowledged before the
/// read began (values only grow per key).
#[test]
fn concurrent_readers_never_see_a_value_older_than_an_acknowledged_write() {
    use std::sync::atomic::{AtomicI64, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(tmp.path()));
    const KEYS: usize = 8;
    let acked: std::sync::Arc<Vec<AtomicI64>> =
        std::sync::Arc::new((0..KEYS).map(|_| AtomicI64::new(-1)).collect());
    std::thread::scope(|s| {
        for w in 0..2 {
            let (store, acked) = (&store, &acked);
            s.spawn(move || {
                for n in 0..1500usize {
                    let k = (n * 7 + w) % KEYS;
                    let now = store.incr(format!("c{k}").as_bytes(), 1).unwrap();
                    acked[k].fetch_max(now, Ordering::AcqRel);
                }
            });
        }
        for r in 0..3 {
            let (store, acked) = (&store, &acked);
            s.spawn(move || {
                for n in 0..6000usize {
                    let k = (n * 5 + r) % KEYS;
                    let floor = acked[k].load(Ordering::Acquire);
                    let got = match store.get(format!("c{k}").as_bytes()).unwrap() {
                        Some(Value::Int(v)) => v,
                        None => -1,
                        other => panic!("{other:?}"),
                    };
                    assert!(
                        got >= floor,
                        "key c{k}: read {got} after {floor} was acknowledged"
                    );
                }
            });
        }
    });
}
