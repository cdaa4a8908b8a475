//! Walking a shard in snapshots: order, prefixes, expired rows, pages.

mod common;

use litestash_core::{
    key_hash, route, ErrorKind, Options, Reply, Request, Store, Value, CHUNK_BYTES, SHARD_COUNT,
};
use std::collections::BTreeSet;

fn set_with_ttl(store: &Store, key: &str, ttl_ms: u64) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let request = Request::set(key.as_bytes(), &Value::Int(1), Some(ttl_ms)).unwrap();
    let reply = Reply::new(move |r| {
        let _ = tx.send(r);
    });
    store.submit(request, None, || reply).unwrap();
    rx.recv().unwrap().unwrap();
}

fn walk(store: &Store, prefix: &str, limit: usize) -> Vec<Vec<String>> {
    (0..SHARD_COUNT)
        .map(|shard| {
            let mut snapshot = store.snapshot(shard, prefix).unwrap();
            let mut keys = Vec::new();
            loop {
                let chunk = snapshot.next_pairs(limit).unwrap();
                if chunk.is_empty() {
                    break;
                }
                keys.extend(chunk.into_iter().map(|(k, _)| k));
            }
            keys
        })
        .collect()
}

#[test]
fn a_walk_returns_every_live_key_once_in_key_order_within_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut live = BTreeSet::new();
    for i in 0..600 {
        let key = format!("k{i:04}");
        // Runs of expired keys longer than a page must not end the walk.
        if (100..400).contains(&i) {
            set_with_ttl(&store, &key, 1);
        } else {
            store.set(key.as_bytes(), &Value::Int(i)).unwrap();
            live.insert(key);
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    for limit in [1, 3, 64, 1000] {
        let shards = walk(&store, "", limit);
        let mut seen = BTreeSet::new();
        for (shard, keys) in shards.iter().enumerate() {
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, &sorted, "shard {shard}, limit {limit}");
            for key in keys {
                assert_eq!(route(&key_hash(key)).unwrap().shard, shard);
                assert!(seen.insert(key.clone()), "{key} twice with limit {limit}");
            }
        }
        assert_eq!(seen, live, "limit {limit}");
    }
    assert_eq!(store.count("").unwrap(), live.len() as u64);
    store.close();
}

#[test]
fn a_prefix_is_a_byte_range_including_multibyte_characters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let keys = [
        "ü",
        "ü:1",
        "üz",
        "u",
        "uü",
        "v",
        "ý",
        "ü\u{10FFFF}",
        "a\0b",
        "a",
    ];
    for key in keys {
        store.set(key.as_bytes(), &Value::Nil).unwrap();
    }
    let found = |prefix: &str| -> BTreeSet<String> {
        walk(&store, prefix, 2).into_iter().flatten().collect()
    };
    let expect = |ks: &[&str]| -> BTreeSet<String> { ks.iter().map(|k| k.to_string()).collect() };
    assert_eq!(found("ü"), expect(&["ü", "ü:1", "üz", "ü\u{10FFFF}"]));
    assert_eq!(found("u"), expect(&["u", "uü"]));
    assert_eq!(found("a"), expect(&["a", "a\0b"]));
    assert_eq!(found(""), expect(&keys));
    assert_eq!(store.count("ü").unwrap(), 4);
    assert_eq!(store.keys("u").unwrap().len(), 2);
    store.close();
}

#[test]
fn a_chunk_holds_at_most_limit_rows_and_chunk_bytes_yet_the_walk_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    // One shard, its 4 tables: a merged page once returned up to 4 x limit.
    let keys = common::keys_on_shard(3, 400);
    let big = Value::Bin(vec![7u8; 1 << 20]);
    let mut live = BTreeSet::new();
    for (i, key) in keys.iter().enumerate() {
        if i % 7 == 0 {
            set_with_ttl(&store, key, 1);
        } else {
            let value = if i % 20 == 1 { &big } else { &Value::Int(1) };
            store.set(key.as_bytes(), value).unwrap();
            live.insert(key.clone());
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    for limit in [1, 10, 64, 500] {
        let mut snapshot = store.snapshot(3, "").unwrap();
        let mut seen = Vec::new();
        loop {
            let chunk = snapshot.next_pairs(limit).unwrap();
            if chunk.is_empty() {
                break;
            }
            assert!(
                chunk.len() <= limit,
                "{} rows for limit {limit}",
                chunk.len()
            );
            let bytes: usize = chunk
                .iter()
                .map(|(k, v)| match v {
                    Ok(Value::Bin(b)) => k.len() + b.len(),
                    _ => k.len() + 1,
                })
                .sum();
            assert!(
                chunk.len() == 1 || bytes <= CHUNK_BYTES,
                "{bytes} bytes in {} rows for limit {limit}",
                chunk.len()
            );
            seen.extend(chunk.into_iter().map(|(k, _)| k));
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "limit {limit}");
        assert_eq!(
            seen.into_iter().collect::<BTreeSet<_>>(),
            live,
            "limit {limit}"
        );
    }
    store.close();
}

#[test]
fn a_value_that_does_not_decode_is_an_error_for_its_key_and_the_walk_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keys_on_shard(5, 30);
    {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        for key in &keys {
            store.set(key.as_bytes(), &Value::Int(1)).unwrap();
        }
        store.close();
    }
    let bad = &keys[10];
    let conn = rusqlite::Connection::open(common::shard_path(dir.path(), 5)).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'tables_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let changed: usize = tables
        .iter()
        .map(|t| {
            conn.execute(
                &format!("UPDATE \"{t}\" SET value = x'c1' WHERE \"key\" = ?1"),
                [bad],
            )
            .unwrap()
        })
        .sum();
    assert_eq!(changed, 1);
    drop(conn);

    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut snapshot = store.snapshot(5, "").unwrap();
    let mut good = BTreeSet::new();
    let mut errors = Vec::new();
    loop {
        let chunk = snapshot.next_pairs(4).unwrap();
        if chunk.is_empty() {
            break;
        }
        for (key, value) in chunk {
            match value {
                Ok(_) => assert!(good.insert(key)),
                Err(e) => errors.push((key, e)),
            }
        }
    }
    assert_eq!(good.len(), keys.len() - 1);
    assert_eq!(errors.len(), 1);
    assert_eq!(&errors[0].0, bad);
    assert_eq!(errors[0].1.kind(), ErrorKind::CorruptValue);
    assert!(errors[0].1.message().contains(bad.as_str()));

    let asked: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let got = store.get_many(&asked).unwrap();
    for (key, value) in keys.iter().zip(got) {
        match value {
            Some(Ok(v)) => assert_eq!(v, Value::Int(1), "{key}"),
            Some(Err(e)) => {
                assert_eq!(key, bad);
                assert_eq!(e.kind(), ErrorKind::CorruptValue);
            }
            None => panic!("{key} missing"),
        }
    }
    store.close();
}

#[test]
fn snapshots_past_max_snapshots_are_refused_until_one_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        max_snapshots: 3,
        ..Options::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let mut open: Vec<_> = (0..3).map(|s| store.snapshot(s, "").unwrap()).collect();
    let err = store.snapshot(4, "").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyStreams);
    assert!(err.message().contains("max_streams"), "{err}");
    // Walks the store finishes within a call are not counted.
    assert!(store.keys("").unwrap().is_empty());
    assert_eq!(store.info().unwrap().len(), SHARD_COUNT);
    open.pop();
    let again = store.snapshot(4, "").unwrap();
    assert_eq!(
        store.snapshot(5, "").unwrap_err().kind(),
        ErrorKind::TooManyStreams
    );
    drop(again);
    drop(open);
    let all: Vec<_> = (0..3).map(|s| store.snapshot(s, "").unwrap()).collect();
    assert_eq!(all.len(), 3);
    store.close();
}
