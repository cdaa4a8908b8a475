//! Cold point reads: writes `N` keys, then reads each once in a shuffled
//! order, so every read misses the value cache (and fills it when it is on).
//! Each read is made as the NIF makes it (see `read_all`). Prints the
//! reads per second; under callgrind, `read_all` is the function
//! to count (`--toggle-collect=cold_reads::read_all`).
//!
//!     cargo run --release --example cold_reads -- N CACHE_BYTES [small|kib] [sets]
//!
//! `sets` writes one key per call (as W1 does) instead of in batches.

use litestash_core::{Options, Store, Value};
use std::time::Instant;

fn value(kind: &str, i: usize) -> Value {
    match kind {
        "kib" => Value::Str("x".repeat(1024)),
        _ => Value::Map(vec![
            (Value::Str("i".into()), Value::Int(i as i64)),
            (Value::Str("name".into()), Value::Str(format!("user-{i}"))),
            (
                Value::Str("tags".into()),
                Value::Array(vec![Value::Str("a".into()), Value::Str("b".into())]),
            ),
            (Value::Str("score".into()), Value::Float(1.5)),
        ]),
    }
}

/// A read as the NIF's `get` makes it: the cache on the caller's thread,
/// then the shard file, then the value decoded (the NIF decodes it straight
/// into a term instead).
#[inline(never)]
fn read_all(store: &Store, keys: &[Vec<u8>]) -> usize {
    let mut found = 0;
    for key in keys {
        let stored = match store.get_cached(key) {
            Some(hit) => Some(hit),
            None => store.read_stored(key).ok().flatten(),
        };
        if stored.is_some_and(|s| s.value().is_ok()) {
            found += 1;
        }
    }
    found
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let cache: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(32 << 20);
    let kind = args.get(3).map_or("small", String::as_str);
    let one_by_one = args.get(4).is_some_and(|a| a == "sets");
    let dir = tempfile::tempdir().expect("a temporary dir");
    let options = Options {
        cache_size: cache,
        ..Options::default()
    };
    let store = Store::open(dir.path(), options).expect("open");
    let keys: Vec<Vec<u8>> = (1..=n).map(|i| format!("user:{i}").into_bytes()).collect();
    let started = Instant::now();
    if one_by_one {
        for (i, key) in keys.iter().enumerate() {
            store.set(key, &value(kind, i + 1)).expect("set");
        }
    } else {
        for (c, chunk) in keys.chunks(1000).enumerate() {
            let values: Vec<Value> = (0..chunk.len())
                .map(|j| value(kind, c * 1000 + j))
                .collect();
            let pairs: Vec<(&[u8], &Value)> =
                chunk.iter().map(Vec::as_slice).zip(values.iter()).collect();
            store.set_many(&pairs).expect("set_many");
        }
    }
    let written = started.elapsed();
    // A fixed shuffle (xorshift), the same in every run.
    let mut order = keys.clone();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..order.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        order.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let started = Instant::now();
    let found = read_all(&store, &order);
    let read = started.elapsed();
    assert_eq!(found, n);
    println!(
        "n {n} cache {cache} {kind}: writes {:.0}/s, cold reads {:.0}/s ({:.2} us each)",
        n as f64 / written.as_secs_f64(),
        n as f64 / read.as_secs_f64(),
        read.as_secs_f64() * 1e6 / n as f64
    );
    store.close();
}
