//! Several OS processes open one data dir at the same moment (a fresh one,
//! so they race to create its 16 files), write at once, and all succeed,
//! waiting on SQLite's locks; nothing is lost.
//!
//! The processes are this test binary run again with
//! `LITESTASH_MULTI_PROCESS_CHILD` set.

mod common;

use litestash_core::{Options, Store, Value};
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

const CHILD: &str = "LITESTASH_MULTI_PROCESS_CHILD";
const KEYS: i64 = 200;

fn value(id: &str, i: i64) -> Value {
    Value::Map(vec![
        (Value::Str("by".into()), Value::Str(id.into())),
        (Value::Str("i".into()), Value::Int(i)),
    ])
}

/// The process: `dir|id`. It opens the store once its stdin says go, so
/// that all processes open together.
#[test]
fn multi_process_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (dir, id) = spec.split_once('|').unwrap();
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go).unwrap();
    let store = Store::open(dir, Options::default()).unwrap_or_else(|e| panic!("{id}: {e}"));
    for i in 0..KEYS {
        let key = format!("{id}:{i}");
        if i % 2 == 0 {
            store.set(key.as_bytes(), &value(id, i)).unwrap();
        } else {
            let v = value(id, i);
            store.set_many(&[(key.as_bytes(), &v)]).unwrap();
        }
    }
    store.close();
}

#[test]
fn processes_that_open_one_new_data_dir_at_once_all_succeed() {
    for round in 0..4 {
        let tmp = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..4).map(|p| format!("r{round}p{p}")).collect();
        let mut children: Vec<_> = ids
            .iter()
            .map(|id| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["multi_process_child", "--exact", "--test-threads=1"])
                    .env(CHILD, format!("{}|{id}", tmp.path().display()))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in &mut children {
            child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        }
        for (child, id) in children.into_iter().zip(&ids) {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "process {id} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let store = Store::open(tmp.path(), Options::default()).unwrap();
        assert_eq!(store.count("").unwrap(), (ids.len() as u64) * KEYS as u64);
        for id in &ids {
            for i in 0..KEYS {
                let key = format!("{id}:{i}");
                assert_eq!(
                    store.get(key.as_bytes()).unwrap(),
                    Some(value(id, i)),
                    "{key}"
                );
            }
        }
        store.close();
    }
}
