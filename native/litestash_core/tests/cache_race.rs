//! The window between our COMMIT and the value cache recording it: a
//! commit by another connection landing right there must still be seen.
//! A writer that read the WAL index's change counter after its COMMIT,
//! instead of under its write lock, would take that foreign commit for its
//! own and serve the stale cached value below.

mod common;

use litestash_core::{key_hash, route, table_names, Store, Value};
use std::sync::{Arc, Mutex};

fn foreign_set(dir: &std::path::Path, key: &str, value: &Value) {
    let hash = key_hash(key);
    let r = route(&hash).unwrap();
    let table = &table_names(r.shard)[r.table];
    let conn = rusqlite::Connection::open(common::shard_path(dir, r.shard)).unwrap();
    conn.execute(
        &format!("UPDATE \"{table}\" SET value = ?1 WHERE key_hash = ?2"),
        rusqlite::params![litestash_core::encode(value).unwrap(), hash],
    )
    .unwrap();
}

#[test]
fn a_foreign_commit_between_our_commit_and_its_recording_is_not_missed() {
    for inline in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), common::roomy()).unwrap();
        let [cached, ours] = <[String; 2]>::try_from(common::keys_on_shard(3, 2)).unwrap();
        store.set(cached.as_bytes(), &Value::Int(1)).unwrap();
        assert_eq!(store.get(cached.as_bytes()).unwrap(), Some(Value::Int(1)));
        assert!(store.get_cached(cached.as_bytes()).is_some());

        let dir = tmp.path().to_path_buf();
        let fired = Arc::new(Mutex::new(0));
        let count = Arc::clone(&fired);
        let key = cached.clone();
        store.before_cache_recording_for_test(Some(Box::new(move |shard| {
            let mut n = count.lock().unwrap();
            if shard == 3 && *n == 0 {
                *n += 1;
                // Our COMMIT has released the lock; another connection
                // commits before the cache hears of ours.
                foreign_set(&dir, &key, &Value::Int(2));
            }
        })));
        if inline {
            let slot = store.inline_slot().expect("a lone writer commits inline");
            let request = litestash_core::Request::set(ours.as_bytes(), &Value::Int(9), None);
            match store.submit(request.unwrap(), Some(slot), || unreachable!()) {
                Ok(litestash_core::Submitted::Committed(r)) => {
                    r.unwrap();
                }
                _ => panic!("expected an inline commit"),
            }
        } else {
            store.set(ours.as_bytes(), &Value::Int(9)).unwrap();
        }
        store.before_cache_recording_for_test(None);
        assert_eq!(*fired.lock().unwrap(), 1, "the window was not provoked");
        assert!(
            store.get_cached(cached.as_bytes()).is_none(),
            "inline: {inline}"
        );
        assert_eq!(
            store.get(cached.as_bytes()).unwrap(),
            Some(Value::Int(2)),
            "inline: {inline}"
        );
        assert_eq!(store.get(ours.as_bytes()).unwrap(), Some(Value::Int(9)));
        // And the cache works again for the shard afterwards.
        assert!(store.get_cached(cached.as_bytes()).is_some());
    }
}
