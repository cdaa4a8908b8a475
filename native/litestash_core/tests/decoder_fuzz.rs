//! The decoder against bytes a foreign writer may leave in a `value` column:
//! random bytes and mutations of valid encodings never panic, never allocate
//! by a hostile length, and are either a value or `CorruptValue`. A stored
//! value that is malformed fails its own key only.
//!
//! A hand-rolled PRNG rather than cargo-fuzz or proptest: the input space
//! that matters (markers, length fields, truncation, nesting) is small enough
//! to hit with mutations of valid encodings, and the test runs on stable
//! Rust in `cargo test` in bounded time. Set `LITESTASH_FUZZ_SEED` to replay.

mod common;

use common::Rng;
use litestash_core::{decode, encode, ErrorKind, Options, Store, Value, MAX_DEPTH};
use rusqlite::{params, Connection};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Inputs per fuzz test: a few seconds in a debug build.
const ROUNDS: usize = 150_000;

fn seed() -> u64 {
    std::env::var("LITESTASH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// A random contract value: every type, lengths at the edges of the str8,
/// 16 and 32 families, nesting up to `depth`.
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let kinds = if depth == 0 { 8 } else { 10 };
    match rng.below(kinds) {
        0 => Value::Nil,
        1 => Value::Bool(rng.below(2) == 1),
        2 => Value::Int(random_int(rng)),
        3 => Value::UInt((1u64 << 63) + rng.next() % (1u64 << 63)),
        4 => Value::Float(f64::from_bits(rng.next())),
        5 => Value::Float(*rng.pick(&[0.0, -0.0, 1.5, f64::MAX, f64::MIN_POSITIVE])),
        6 => {
            let len = random_len(rng);
            let text: String = (0..len)
                .map(|_| *rng.pick(&['a', 'é', '€', '𝄞', '\0', '"']))
                .collect();
            Value::Str(text)
        }
        7 => {
            let len = random_len(rng);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if std::str::from_utf8(&bytes).is_ok() {
                bytes.push(0xff);
            }
            Value::Bin(bytes)
        }
        8 => {
            let len = rng.below(20);
            Value::Array((0..len).map(|_| random_value(rng, depth - 1)).collect())
        }
        _ => {
            let len = rng.below(20);
            Value::Map(
                (0..len)
                    .map(|_| (random_value(rng, 0), random_value(rng, depth - 1)))
                    .collect(),
            )
        }
    }
}

fn random_int(rng: &mut Rng) -> i64 {
    let edges = [
        0,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        -32,
        -33,
        -128,
        -129,
        -32_768,
        -32_769,
        i64::from(i32::MIN) - 1,
        i64::MIN,
        i64::MAX,
    ];
    if rng.below(2) == 0 {
        *rng.pick(&edges)
    } else {
        (rng.next() as i64) >> rng.below(64)
    }
}

/// Mostly short; now and then at the edge of a length family.
fn random_len(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0 => *rng.pick(&[65_535, 65_536]),
        1..=10 => *rng.pick(&[31, 32, 255, 256]),
        _ => rng.below(12),
    }
}

/// Decodes `bytes`, failing the test on a panic or an error of another kind.
fn decode_checked(bytes: &[u8], seed: u64, what: &str) -> Option<Value> {
    match catch_unwind(AssertUnwindSafe(|| decode(bytes))) {
        Err(_) => panic!(
            "decode panicked on {what} {:02x?} (LITESTASH_FUZZ_SEED={seed})",
            &bytes[..bytes.len().min(64)]
        ),
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            assert_eq!(
                e.kind(),
                ErrorKind::CorruptValue,
                "{e} on {what} (LITESTASH_FUZZ_SEED={seed})"
            );
            assert!(!e.message().is_empty());
            None
        }
    }
}

/// `Value` with NaN equal to itself, as the round trip keeps NaN's bits.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
        }
        _ => a == b,
    }
}

#[test]
fn random_values_encode_and_decode_back_exactly() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    for _ in 0..2_000 {
        let value = random_value(&mut rng, 4);
        let bytes = encode(&value).unwrap();
        let back = decode_checked(&bytes, seed, "a valid encoding")
            .unwrap_or_else(|| panic!("a valid encoding was refused (seed {seed})"));
        assert!(same(&back, &value), "round trip of {value:?} (seed {seed})");
    }
}

#[test]
fn random_bytes_never_panic() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    for _ in 0..ROUNDS {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        decode_checked(&bytes, seed, "random bytes");
    }
}

#[test]
fn mutated_valid_encodings_never_panic() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut decoded = 0;
    let mut valid = Vec::new();
    for round in 0..ROUNDS {
        if round % 32 == 0 {
            // A fresh valid encoding now and then, mutated in between.
            valid = encode(&random_value(&mut rng, 3)).unwrap();
        }
        let mut bytes = valid.clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut bytes);
        }
        if decode_checked(&bytes, seed, "a mutated encoding").is_some() {
            decoded += 1;
        }
    }
    // The mutations reach past the first byte: some inputs still decode.
    assert!(decoded > 0 && decoded < ROUNDS, "{decoded} of {ROUNDS}");
}

/// One edit that a torn or foreign write could leave.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let interesting = [
        0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc4, 0xc5, 0xc6, 0xc7, 0xca,
        0xcb, 0xcf, 0xd4, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff,
    ];
    let at = if bytes.is_empty() {
        0
    } else {
        rng.below(bytes.len())
    };
    match rng.below(7) {
        0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
        1 if !bytes.is_empty() => bytes[at] = *rng.pick(&interesting),
        2 => bytes.truncate(at),
        3 => bytes.insert(at, *rng.pick(&interesting)),
        4 if !bytes.is_empty() => {
            bytes.remove(at);
        }
        5 => {
            // A hostile 32-bit length right after a marker.
            let marker = *rng.pick(&[0xc6, 0xdb, 0xdd, 0xdf]);
            let tail = [marker, 0xff, 0xff, 0xff, rng.next() as u8];
            bytes.splice(at..at, tail);
        }
        _ => bytes.push(rng.next() as u8),
    }
}

#[test]
fn every_single_byte_and_every_truncation_is_handled() {
    for b in 0..=255u8 {
        decode_checked(&[b], 0, "one byte");
        for len in 0..=9 {
            let mut bytes = vec![b];
            bytes.extend(vec![0xff; len]);
            decode_checked(&bytes, 0, "a marker and a tail");
        }
    }
    let mut rng = Rng::new(7);
    let full = encode(&random_value(&mut rng, 4)).unwrap();
    for end in 0..full.len() {
        assert!(
            decode_checked(&full[..end], 0, "a truncation").is_none(),
            "a truncation at {end} of {} decoded",
            full.len()
        );
    }
}

#[test]
fn a_200000_deep_nesting_is_refused_without_overflowing_the_stack() {
    for marker in [[0x91u8].as_slice(), &[0xdc, 0x00, 0x01], &[0x81, 0xc0]] {
        let mut bytes: Vec<u8> = marker.repeat(200_000);
        bytes.push(0xc0);
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptValue);
        assert!(err.message().contains("nested deeper"), "{err}");
    }
    // The limit itself is one more level than the deepest value accepted.
    let mut ok = vec![0x91u8; MAX_DEPTH];
    ok.push(0xc0);
    assert!(decode(&ok).is_ok());
}

#[test]
fn hostile_lengths_are_refused_without_allocating_them() {
    // Each claims 4 GiB of items or bytes that are not there.
    for bytes in [
        &[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0][..],
        &[0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0],
        &[0xc6, 0xff, 0xff, 0xff, 0xff, 0x00],
        &[0xdb, 0xff, 0xff, 0xff, 0xff, 0x61],
    ] {
        assert_eq!(decode(bytes).unwrap_err().kind(), ErrorKind::CorruptValue);
    }
}

/// Keys of a copy of the fixture whose `value` columns get `garbage`, and
/// every other key of it.
#[test]
fn malformed_stored_values_give_corrupt_value_for_that_key_only() {
    let tmp = common::fixture_copy();
    let shard = tmp.path().join("tables_ab").join("tables_ab.db");
    let garbage: [(&str, rusqlite::types::Value); 6] = [
        ("reserved byte", vec![0xc1u8].into()),
        ("truncated", vec![0xa5u8, b'a'].into()),
        ("trailing bytes", vec![0xc0u8, 0xc0].into()),
        ("extension type", vec![0xd4u8, 0x01, 0x00].into()),
        (
            "a TEXT column",
            rusqlite::types::Value::Text("{\"json\":1}".into()),
        ),
        ("an INTEGER column", rusqlite::types::Value::Integer(42)),
    ];
    let (damaged, healthy) = {
        let conn = Connection::open(&shard).unwrap();
        let table = "tables_ab_lower_hash_a";
        let mut keys: Vec<String> = conn
            .prepare(&format!("SELECT \"key\" FROM \"{table}\" ORDER BY \"key\""))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(keys.len() > garbage.len(), "the fixture has too few keys");
        let damaged: Vec<String> = keys.drain(..garbage.len()).collect();
        for (key, (_, bytes)) in damaged.iter().zip(&garbage) {
            let n = conn
                .execute(
                    &format!("UPDATE \"{table}\" SET value = ?1 WHERE \"key\" = ?2"),
                    params![bytes, key],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
        (damaged, keys)
    };

    let store = Store::open(tmp.path(), Options::default()).unwrap();
    for (key, (what, _)) in damaged.iter().zip(&garbage) {
        let err = store.get(key.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptValue, "{what}: {err}");
        assert!(err.message().contains(key.as_str()), "{what}: {err}");
        // The row is there: it can be seen and overwritten.
        assert!(store.exists(key.as_bytes()).unwrap());
    }
    for key in &healthy {
        assert!(store.get(key.as_bytes()).unwrap().is_some(), "{key}");
    }
    let all = store.keys("").unwrap();
    assert_eq!(store.count("").unwrap() as usize, all.len());
    let others: Vec<&[u8]> = all
        .iter()
        .filter(|k| !damaged.contains(k))
        .map(|k| k.as_bytes())
        .collect();
    assert!(store.get_many(&others).unwrap().iter().all(Option::is_some));

    let repaired = Value::Str("rewritten".into());
    store.set(damaged[0].as_bytes(), &repaired).unwrap();
    assert_eq!(store.get(damaged[0].as_bytes()).unwrap(), Some(repaired));
    store.close();
}
