//! Walking a shard in snapshots: order, prefixes, expired rows, pages.

use litestash_core::{key_hash, route, Options, Reply, Request, Store, Value, SHARD_COUNT};
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
