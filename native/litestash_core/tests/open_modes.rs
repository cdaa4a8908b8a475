//! Where a store may be opened, and how: refusing a directory of someone
//! else's files, backups inside the data dir, `read_only`, in-memory stores.

use litestash_core::{ErrorKind, Options, Request, Store, Value, SHARDS};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

fn int(n: i64) -> Value {
    Value::Int(n)
}

fn read_only() -> Options {
    Options {
        read_only: true,
        ..Options::default()
    }
}

#[test]
fn a_directory_of_other_files_is_refused_and_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir(tmp.path().join("photos")).unwrap();
    let before = listing(tmp.path());
    let err = Store::open(tmp.path(), Options::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLitestash);
    assert!(err.message().contains("not empty"), "{}", err.message());
    assert_eq!(listing(tmp.path()), before);
}

#[test]
fn an_empty_directory_or_one_with_a_shard_dir_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    Store::open(&empty, Options::default()).unwrap().close();
    // A data dir whose other shards are missing (created by another
    // implementation, say) is still a data dir.
    let partial = tmp.path().join("partial");
    std::fs::create_dir_all(partial.join(SHARDS[3])).unwrap();
    Store::open(&partial, Options::default()).unwrap().close();
    assert!(partial.join(SHARDS[0]).is_dir());
}

#[test]
fn a_backup_into_the_data_dir_or_under_it_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kv");
    let store = Store::open(&dir, Options::default()).unwrap();
    store.set(b"k", &int(1)).unwrap();
    for dest in [
        dir.join("backup"),
        dir.join("a/b/c"),
        dir.join(SHARDS[0]).join("x"),
        tmp.path().join("kv/../kv/inner"),
    ] {
        let err = store.backup(&dest).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{dest:?}");
        assert!(err.message().contains("inside"), "{}", err.message());
        assert!(!dest.exists(), "{dest:?} was created");
    }
    // A sibling whose name starts like the data dir's is outside it.
    store.backup(&tmp.path().join("kv-backup")).unwrap();
    store.close();
    let copy = Store::open(tmp.path().join("kv-backup"), Options::default()).unwrap();
    assert_eq!(copy.get(b"k").unwrap(), Some(int(1)));
}

#[cfg(unix)]
#[test]
fn a_backup_through_a_link_into_the_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kv");
    let store = Store::open(&dir, Options::default()).unwrap();
    std::os::unix::fs::symlink(&dir, tmp.path().join("link")).unwrap();
    let err = store.backup(&tmp.path().join("link/copy")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

fn every_write(store: &Store) -> Vec<(&'static str, litestash_core::Result<Request>)> {
    vec![
        ("set", Request::set(b"k", &int(9), None)),
        ("set with ttl", Request::set(b"k", &int(9), Some(60_000))),
        ("set_many", Request::set_many(&[(b"k".as_slice(), &int(9))])),
        ("delete", Request::delete(b"k")),
        ("clear", Ok(Request::clear())),
        ("incr", Request::incr(b"n", 1)),
        ("put_new", Request::put_new(b"new", &int(1), None)),
        (
            "compare_and_set",
            Request::compare_and_set(b"k", &int(1), &int(2), None),
        ),
        ("expire", Request::expire(b"k", Some(1000))),
        ("persist", Request::expire(b"k", None)),
        ("compact", Ok(Request::compact())),
    ]
    .into_iter()
    .inspect(|_| assert!(store.is_read_only()))
    .collect()
}

#[test]
fn a_closed_store_opened_read_only_serves_reads_and_refuses_every_write() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Store::open(tmp.path(), Options::default()).unwrap();
    writer.set(b"k", &int(1)).unwrap();
    writer
        .set_many(&[(b"a".as_slice(), &int(2)), (b"b".as_slice(), &int(3))])
        .unwrap();
    writer.close();
    drop(writer);
    let before = listing(tmp.path());

    let store = Store::open(tmp.path(), read_only()).unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(int(1)));
    assert_eq!(store.count("").unwrap(), 3);
    let mut keys = store.keys("").unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b", "k"]);
    assert!(store.info().unwrap().iter().all(|s| s.keys.is_ok()));
    for (what, request) in every_write(&store) {
        let err = store.write(request.unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ReadOnly, "{what}");
        assert!(
            err.message().contains("read_only"),
            "{what}: {}",
            err.message()
        );
    }
    assert_eq!(store.get(b"k").unwrap(), Some(int(1)));
    // A backup only reads the store: it works from a read-only one.
    let elsewhere = tempfile::tempdir().unwrap();
    store.backup(&elsewhere.path().join("copy")).unwrap();
    let copy = Store::open(elsewhere.path().join("copy"), Options::default()).unwrap();
    assert_eq!(copy.get(b"a").unwrap(), Some(int(2)));
    copy.close();
    store.close();
    drop(store);
    // SQLite may leave an empty -wal and -shm behind; the shard files and
    // their contents are as they were.
    let after: Vec<String> = listing(tmp.path())
        .into_iter()
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(after, before);
    let reopened = Store::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(reopened.count("").unwrap(), 3);
}

#[test]
fn a_read_only_store_follows_the_writes_of_a_store_that_has_the_dir_open() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Store::open(tmp.path(), Options::default()).unwrap();
    writer.set(b"k", &int(1)).unwrap();
    let reader = Store::open(tmp.path(), read_only()).unwrap();
    assert_eq!(reader.get(b"k").unwrap(), Some(int(1)));
    writer.set(b"k", &int(2)).unwrap();
    writer.set(b"other", &int(3)).unwrap();
    assert_eq!(reader.get(b"k").unwrap(), Some(int(2)));
    assert_eq!(reader.count("").unwrap(), 2);
    // Closing the reader leaves the writer's claim on the dir alone.
    reader.close();
    assert_eq!(
        Store::open(tmp.path(), Options::default())
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyOpen
    );
    writer.set(b"k", &int(4)).unwrap();
}

#[test]
fn read_only_does_not_create_a_missing_data_dir_nor_accept_a_foreign_one() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let err = Store::open(&missing, read_only()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{}", err.message());
    assert!(!missing.exists());
    let err = Store::open(tmp.path(), read_only()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLitestash);
    assert_eq!(listing(tmp.path()), Vec::<String>::new());
}

#[test]
fn an_in_memory_store_has_the_api_and_no_files() {
    let cwd_before = listing(&std::env::current_dir().unwrap());
    let store = Store::open_memory(Options::default()).unwrap();
    store.set(b"k", &int(1)).unwrap();
    assert_eq!(store.incr(b"n", 5).unwrap(), 5);
    store
        .write(Request::set(b"t", &int(1), Some(60_000)).unwrap())
        .unwrap();
    assert!(store.ttl(b"t").unwrap().unwrap().unwrap() > 0);
    assert_eq!(store.count("").unwrap(), 3);
    store.delete(b"k").unwrap();
    assert_eq!(store.get(b"k").unwrap(), None);
    store.compact().unwrap();
    assert_eq!(store.info().unwrap().len(), 16);
    let other = Store::open_memory(Options::default()).unwrap();
    assert_eq!(other.count("").unwrap(), 0, "stores share nothing");
    store.close();
    assert_eq!(listing(&std::env::current_dir().unwrap()), cwd_before);
}

#[test]
fn an_in_memory_store_backs_up_to_a_real_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_memory(Options::default()).unwrap();
    for i in 0..200 {
        store.set(format!("k{i}").as_bytes(), &int(i)).unwrap();
    }
    store.backup(&tmp.path().join("copy")).unwrap();
    store.close();
    let copy = Store::open(tmp.path().join("copy"), Options::default()).unwrap();
    assert_eq!(copy.count("").unwrap(), 200);
    assert_eq!(copy.get(b"k7").unwrap(), Some(int(7)));
}

#[test]
fn an_in_memory_walk_does_not_hold_up_writers_and_sees_one_snapshot() {
    let store = Arc::new(Store::open_memory(Options::default()).unwrap());
    let pairs: Vec<(Vec<u8>, Value)> = (0..2000)
        .map(|i| (format!("k{i:05}").into_bytes(), int(i)))
        .collect();
    let refs: Vec<(&[u8], &Value)> = pairs.iter().map(|(k, v)| (k.as_slice(), v)).collect();
    store.set_many(&refs).unwrap();
    let mut total = 0;
    for shard in 0..SHARDS.len() {
        let mut snapshot = store.snapshot(shard, "").unwrap();
        let first = snapshot.next_pairs(10).unwrap();
        // Between two chunks of the walk, writes to the shard commit at once.
        let started = Instant::now();
        store.set(b"during-walk", &int(0)).unwrap();
        store.clear().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        total += first.len();
        loop {
            let chunk = snapshot.next_pairs(100).unwrap();
            if chunk.is_empty() {
                break;
            }
            total += chunk.len();
        }
        store.set_many(&refs).unwrap();
    }
    assert_eq!(
        total, 2000,
        "each walk saw its shard as it was when it began"
    );
}

#[test]
fn an_in_memory_store_serves_concurrent_readers_and_writers() {
    let store = Arc::new(Store::open_memory(Options::default()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store.get(b"counter").unwrap();
                    store.count("").unwrap();
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for _ in 0..250 {
                    store.incr(b"counter", 1).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(store.get(b"counter").unwrap(), Some(int(1000)));
}
