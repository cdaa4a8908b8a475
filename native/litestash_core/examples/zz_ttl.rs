use litestash_core::{Options, Reply, Store, Value};
use std::time::Instant;
fn main() {
    let n = 20_000u64;
    for round in 0..3 {
        for ttl in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), Options::default()).unwrap();
            let t = Instant::now();
            for i in 1..=n {
                let v = Value::Map(vec![
                    (Value::Str("i".into()), Value::Int(i as i64)),
                    (Value::Str("name".into()), Value::Str(format!("user-{i}"))),
                ]);
                let (tx, rx) = std::sync::mpsc::channel();
                let t_ms = if ttl && i % 2 == 0 {
                    Some(3_600_000)
                } else {
                    None
                };
                store
                    .set_async(
                        format!("user:{i}").as_bytes(),
                        &v,
                        t_ms,
                        Reply::new(move |r| {
                            let _ = tx.send(r);
                        })
                        .inline(),
                    )
                    .unwrap();
                rx.recv().unwrap().unwrap();
            }
            println!(
                "round {round} ttl={ttl}: {:.0} ops/s",
                n as f64 / t.elapsed().as_secs_f64()
            );
            store.close();
        }
    }
}
