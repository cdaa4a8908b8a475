//! W1 without the BEAM: sequential sets of new keys through the core's
//! blocking `Store::set` (a lone writer commits inline on this thread), with
//! the benchmark's ~100-byte map, to compare with the raw SQLite baseline's
//! W1 (`bench/raw_baseline --workload w1`) and with W1 through the NIF:
//!
//!     cargo run --release -p litestash_core --example w1_core [N]
//!
//! Prints ops/s and p50/p99 latency.

use litestash_core::{Options, Store, Value};
use std::time::Instant;

fn value(i: usize) -> Value {
    let text = |s: &str| Value::Str(s.to_owned());
    Value::Map(vec![
        (text("i"), Value::Int(i as i64)),
        (text("name"), Value::Str(format!("user-{i}"))),
        (text("tags"), Value::Array(vec![text("a"), text("b")])),
        (text("score"), Value::Float(1.5)),
    ])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 20_000,
    };
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), Options::default())?;
    let mut latencies = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 1..=n {
        let v = value(i);
        let key = format!("user:{i}");
        let t = Instant::now();
        store.set(key.as_bytes(), &v)?;
        latencies.push(t.elapsed());
    }
    let total = start.elapsed();
    store.close();
    latencies.sort();
    let at = |q: usize| latencies[(n * q / 100).min(n - 1)].as_secs_f64() * 1e6;
    println!(
        "core W1 n={n}: {:.0} ops/s, p50 {:.1} us, p99 {:.1} us",
        n as f64 / total.as_secs_f64(),
        at(50),
        at(99)
    );
    Ok(())
}
