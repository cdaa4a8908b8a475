//! Reads that do not wait (`Store::read_stored_now`): answered from memory
//! when the pages are there, handed back (`None`) when they would need the
//! disk, and coherent with this store's writes, another connection's writes
//! and expiry.
//!
//! The data dirs live under the target dir, not `/tmp`: `posix_fadvise`
//! cannot evict the pages of a tmpfs, and these tests evict on purpose.
#![cfg(target_os = "linux")]

mod common;

use litestash_core::{Options, Request, Store, Value};
use std::os::fd::AsRawFd;
use std::path::Path;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// No value cache (every read goes to the file) and no mapping (evicted
/// pages stay evicted: pages a connection has mapped are not dropped).
fn options() -> Options {
    Options {
        cache_size: 0,
        mmap_size: 0,
        ..common::roomy()
    }
}

fn text(i: usize) -> Value {
    Value::Str(format!("value {i}"))
}

/// What `read_stored_now` found for `key`: `None` if it handed the read
/// back, else the decoded value (`Some(None)` when absent).
fn now(store: &Store, key: &str) -> Option<Option<Value>> {
    store
        .read_stored_now(key.as_bytes())
        .map(|found| found.unwrap().map(|s| s.value().unwrap()))
}

/// [`now`] until it answers in place (up to about 100 ms): a read handed
/// back because the writer thread held the shard's gate or lock for a
/// moment (its checkpoint, say) is right to be, and is tried again.
fn settled(store: &Store, key: &str) -> Option<Value> {
    for _ in 0..100 {
        if let Some(found) = now(store, key) {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("{key}: never read in place");
}

fn tally(store: &Store) -> (u64, u64) {
    store.info().unwrap().iter().fold((0, 0), |(a, d), s| {
        (a + s.nowait_reads, d + s.nowait_deferred)
    })
}

/// Drops every shard file's pages (and its WAL's) from the OS page cache.
fn evict(dir: &Path) {
    for shard in 0..litestash_core::SHARDS.len() {
        let db = common::shard_path(dir, shard);
        for path in [db.clone(), db.with_extension("db-wal")] {
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            file.sync_all().unwrap();
            // SAFETY: an open descriptor; the call only advises the kernel.
            let rc =
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(rc, 0, "posix_fadvise failed on {}", path.display());
        }
    }
}

fn write_keys(store: &Store, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("user:{i}")).collect();
    let values: Vec<Value> = (0..n).map(text).collect();
    let pairs: Vec<(&[u8], &Value)> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_bytes(), v))
        .collect();
    store.set_many(&pairs).unwrap();
    keys
}

#[test]
fn pages_in_memory_are_read_in_place_and_evicted_ones_are_handed_back() {
    in_place_then_evicted(options());
}

/// With the files mapped (the default), a read that does not wait still
/// declines the mapping: a page fault could wait for the disk.
#[test]
fn a_mapped_file_is_not_read_through_its_mapping_in_place() {
    in_place_then_evicted(Options {
        mmap_size: Options::default().mmap_size,
        ..options()
    });
}

fn in_place_then_evicted(options: Options) {
    let dir = tmp();
    let n = 20_000;
    {
        let store = Store::open(dir.path(), options.clone()).unwrap();
        let keys = write_keys(&store, n);
        // Just written: every page is in the OS page cache.
        for (i, key) in keys.iter().enumerate().step_by(97) {
            assert_eq!(settled(&store, key), Some(text(i)), "{key}");
        }
        assert_eq!(settled(&store, "user:absent"), None);
        let (answered, deferred) = tally(&store);
        assert!(
            answered > 200 && deferred * 10 < answered,
            "{answered} {deferred}"
        );
    }
    // Closed (so checkpointed and synced), then evicted: a fresh store's
    // connections have only the pages they read on opening.
    evict(dir.path());
    let store = Store::open(dir.path(), options).unwrap();
    let keys: Vec<String> = (0..n).map(|i| format!("user:{i}")).collect();
    let handed_back: Vec<&String> = keys
        .iter()
        .step_by(101)
        .filter(|key| now(&store, key).is_none())
        .collect();
    assert!(
        handed_back.len() > 100,
        "only {} of {} reads of evicted pages were handed back",
        handed_back.len(),
        keys.len() / 101
    );
    let (_, deferred) = tally(&store);
    assert!(deferred >= handed_back.len() as u64);
    // The blocking read brings the pages in; then the same read stays in
    // place.
    for key in &handed_back {
        let i: usize = key["user:".len()..].parse().unwrap();
        let got = store.read_stored(key.as_bytes()).unwrap().unwrap();
        assert_eq!(got.value().unwrap(), text(i));
        assert_eq!(settled(&store, key), Some(text(i)), "{key}");
    }
}

#[test]
fn a_value_over_the_cacheable_size_is_handed_back_unread() {
    let dir = tmp();
    let store = Store::open(dir.path(), options()).unwrap();
    let big = Value::Bin(vec![7; litestash_core::CACHEABLE_BYTES + 1]);
    let small = Value::Bin(vec![7; litestash_core::CACHEABLE_BYTES - 8]);
    store.set(b"big", &big).unwrap();
    store.set(b"small", &small).unwrap();
    assert_eq!(now(&store, "big"), None);
    assert_eq!(settled(&store, "small"), Some(small));
    let got = store.read_stored(b"big").unwrap().unwrap();
    assert_eq!(got.value().unwrap(), big);
}

#[test]
fn expired_keys_are_gone_and_invalid_keys_are_errors() {
    let dir = tmp();
    let store = Store::open(dir.path(), options()).unwrap();
    store
        .write(Request::set(b"brief", &Value::Int(1), Some(1)).unwrap())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(settled(&store, "brief"), None);
    let too_long = vec![b'k'; 1025];
    match store.read_stored_now(&too_long) {
        Some(Err(e)) => assert_eq!(e.kind(), litestash_core::ErrorKind::InvalidKey),
        other => panic!("expected an invalid key error, got {other:?}"),
    }
    store.close();
    match store.read_stored_now(b"brief") {
        Some(Err(e)) => assert_eq!(e.kind(), litestash_core::ErrorKind::Closed),
        other => panic!("expected closed, got {other:?}"),
    }
}

#[test]
fn in_place_reads_fill_the_cache_and_see_every_commit_at_once() {
    let dir = tmp();
    let store = Store::open(
        dir.path(),
        Options {
            mmap_size: 0,
            ..common::roomy()
        },
    )
    .unwrap();
    for round in 0..300i64 {
        store.set(b"ours", &Value::Int(round)).unwrap();
        assert_eq!(settled(&store, "ours"), Some(Value::Int(round)));
        common::foreign_write(dir.path(), "theirs", Some(&Value::Int(round)));
        // Filled by an in-place read or not, never stale.
        let seen = match store.get_cached(b"theirs") {
            Some(hit) => Some(Some(hit.value().unwrap())),
            None => Some(settled(&store, "theirs")),
        };
        assert_eq!(seen, Some(Some(Value::Int(round))), "round {round}");
    }
    assert!(
        store.get_cached(b"ours").is_some(),
        "in-place reads fill the cache"
    );
}

#[test]
fn off_means_every_read_is_handed_back() {
    let dir = tmp();
    let store = Store::open(
        dir.path(),
        Options {
            nowait_reads: false,
            ..options()
        },
    )
    .unwrap();
    store.set(b"k", &Value::Int(1)).unwrap();
    assert_eq!(now(&store, "k"), None);
    assert_eq!(tally(&store), (0, 0));
    let memory = Store::open_memory(options()).unwrap();
    memory.set(b"k", &Value::Int(1)).unwrap();
    assert_eq!(now(&memory, "k"), None);
}
