//! Every entry of the contract's `vectors.json`, and a read of every row of
//! a copy of `fixture_v1/`.

mod common;

use litestash_core::{
    decode, encode, key_hash, route, table_names, Options, Store, APPLICATION_ID, SHARDS,
};
use serde_json::Value as Json;

fn vectors() -> Json {
    let text = std::fs::read_to_string(common::contract_dir().join("vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn shard_names_and_application_id_match_the_vectors() {
    let v = vectors();
    let shards: Vec<&str> = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(shards, SHARDS);
    assert_eq!(
        v["application_id"].as_i64().unwrap(),
        i64::from(APPLICATION_ID)
    );
}

#[test]
fn every_key_hashes_and_routes_as_the_vectors_say() {
    let v = vectors();
    let keys = v["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for entry in keys {
        let key = entry["key"].as_str().unwrap();
        assert_eq!(
            common::hex(entry["key_utf8_hex"].as_str().unwrap()),
            key.as_bytes()
        );
        let hash = key_hash(key);
        assert_eq!(hash, entry["key_hash"].as_str().unwrap(), "key {key:?}");
        let r = route(&hash).unwrap();
        assert_eq!(SHARDS[r.shard], entry["shard"].as_str().unwrap());
        assert_eq!(
            table_names(r.shard)[r.table],
            entry["table"].as_str().unwrap()
        );
        let shard = SHARDS[r.shard];
        assert_eq!(
            format!("{shard}/{shard}.db"),
            entry["file"].as_str().unwrap()
        );
    }
}

#[test]
fn all_64_routing_characters_match_the_vectors() {
    let v = vectors();
    let routing = v["routing"].as_object().unwrap();
    assert_eq!(routing.len(), 64);
    for (c, expected) in routing {
        let r = route(c).unwrap();
        assert_eq!(
            SHARDS[r.shard],
            expected["shard"].as_str().unwrap(),
            "char {c}"
        );
        assert_eq!(
            table_names(r.shard)[r.table],
            expected["table"].as_str().unwrap(),
            "char {c}"
        );
    }
}

#[test]
fn every_value_vector_decodes_and_encodes_to_the_same_bytes() {
    let v = vectors();
    let values = v["values"].as_array().unwrap();
    assert!(values.len() >= 30);
    for entry in values {
        let name = entry["name"].as_str().unwrap();
        let bytes = common::hex(entry["msgpack_hex"].as_str().unwrap());
        let value = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(encode(&value).unwrap(), bytes, "{name}");
    }
}

#[test]
fn every_row_of_the_fixture_reads_back_and_re_encodes_byte_for_byte() {
    let tmp = common::fixture_copy();
    let mut rows = Vec::new();
    for (shard, name) in SHARDS.iter().enumerate() {
        let path = tmp.path().join(name).join(format!("{name}.db"));
        let conn = rusqlite::Connection::open(&path).unwrap();
        for table in table_names(shard) {
            let mut stmt = conn
                .prepare(&format!("SELECT key_hash, key, value FROM \"{table}\""))
                .unwrap();
            let found: Vec<(String, String, Vec<u8>)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for (hash, key, value) in found {
                assert_eq!(hash, key_hash(&key));
                let r = route(&hash).unwrap();
                assert_eq!(
                    (r.shard, table_names(r.shard)[r.table].as_str()),
                    (shard, table.as_str())
                );
                rows.push((key, value));
            }
        }
    }
    let exs = std::fs::read_to_string(common::contract_dir().join("fixture_v1.exs")).unwrap();
    let listed = exs
        .lines()
        .filter(|l| l.trim_start().starts_with("{\""))
        .count();
    assert_eq!(
        rows.len(),
        listed,
        "rows in fixture_v1/ vs entries in fixture_v1.exs"
    );

    let store = Store::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(store.count("").unwrap(), rows.len() as u64);
    for (key, bytes) in &rows {
        let value = store.get(key.as_bytes()).unwrap().expect("stored");
        assert_eq!(&encode(&value).unwrap(), bytes, "key {key:?}");
    }
    store.close();
}
