//! The raw SQLite baseline of LiteStash's benchmark (`bench/`): rusqlite
//! straight on the contract's 16-file layout, with no writer threads, no
//! channel and no BEAM, so that the benchmark can say how much LiteStash
//! costs over SQLite.
//!
//! The files are created by `Store::open` (the very DDL and page size
//! LiteStash uses) and then written through plain connections carrying the
//! pragmas of `Options::default()`. Keys are `"user:<i>"`, values the
//! benchmark's ~100-byte map encoded with `litestash_core::encode`, and every
//! write hashes, routes and encodes its key and value like LiteStash does.
//!
//! ```text
//! cargo run --release -p raw_baseline -- --n 100000
//! cargo run --release -p raw_baseline -- --n 100000 --workload w1 --dir /tmp/raw
//! ```
//!
//! `--synchronous full` sets `PRAGMA synchronous = FULL` on the
//! connections (the default is LiteStash's default, `NORMAL`).
//!
//! With `--workload`, one workload runs on `--dir` (a fresh temporary dir
//! when not given), so that a caller can interleave the raw workloads with
//! its own; `w2` reads the keys a `w1` with the same `--n` wrote there.
//!
//! Prints one line per workload, which the benchmark parses:
//!
//! ```text
//! raw W1 n=100000 ops_per_sec=34012.5 p50_us=24.1 p99_us=71.9
//! ```
//!
//! * `W1`: N sequential new keys, one transaction per write (autocommit).
//! * `W1x1000`: N sequential new keys, 1,000 writes per transaction (rows
//!   buffered per shard file, each buffer committed when it holds 1,000).
//! * `W1x4`: the same with 4 writes per transaction: what 64 callers, each
//!   waiting for its write, share per commit of a file on average over 16
//!   files (64 / 16), the batch size of the benchmark's W3 for any store
//!   that acknowledges each write after its commit.
//! * `W2`: a point read of each of the N keys in random order, value decoded.

use litestash_core::{
    decode, encode, key_hash, route, table_names, Options, Store, Synchronous, Value, SHARDS,
    SHARD_COUNT,
};
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn upsert_sql(table: &str) -> String {
    format!(
        "INSERT INTO \"{table}\" (key_hash, \"key\", value, timestamp, microsecond) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key_hash) DO UPDATE SET \
         \"key\" = excluded.\"key\", value = excluded.value, \
         timestamp = excluded.timestamp, microsecond = excluded.microsecond"
    )
}

fn select_sql(table: &str) -> String {
    format!("SELECT value FROM \"{table}\" WHERE key_hash = ?1")
}

/// The benchmark's value for key `i`, as Elixir's
/// `%{"i" => i, "name" => "user-#{i}", "tags" => ["a", "b"], "score" => 1.5}`
/// (a small Elixir map iterates its keys sorted, so they are sorted here).
fn value(i: u64) -> Value {
    let s = |t: &str| Value::Str(t.to_owned());
    Value::Map(vec![
        (s("i"), Value::Int(i as i64)),
        (s("name"), Value::Str(format!("user-{i}"))),
        (s("score"), Value::Float(1.5)),
        (s("tags"), Value::Array(vec![s("a"), s("b")])),
    ])
}

fn now() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_micros()))
}

type Fail = Box<dyn std::error::Error>;

/// Creates the 16 files of `dir` exactly as LiteStash does, then closes them.
fn create_layout(dir: &Path) -> Result<(), Fail> {
    let store = Store::open(dir, Options::default())?;
    store.close();
    Ok(())
}

fn shard_path(dir: &Path, shard: usize) -> PathBuf {
    let name = SHARDS[shard];
    dir.join(name).join(format!("{name}.db"))
}

/// The 16 files: one connection each, and the SQL of each table, built once.
struct Shards {
    conns: Vec<Connection>,
    upsert: Vec<Vec<String>>,
    select: Vec<Vec<String>>,
}

fn sql(make: fn(&str) -> String) -> Vec<Vec<String>> {
    (0..SHARD_COUNT)
        .map(|shard| table_names(shard).iter().map(|t| make(t)).collect())
        .collect()
}

/// Opens every shard with the pragmas LiteStash sets. The WAL is left to
/// SQLite's own autocheckpoint, as a plain SQLite user would have it.
fn connect(dir: &Path, sync: Synchronous) -> Result<Shards, Fail> {
    Ok(Shards {
        conns: connections(dir, sync)?,
        upsert: sql(upsert_sql),
        select: sql(select_sql),
    })
}

fn connections(dir: &Path, sync: Synchronous) -> Result<Vec<Connection>, Fail> {
    let options = Options::default();
    let sync = match sync {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    (0..SHARD_COUNT)
        .map(|shard| {
            let conn = Connection::open(shard_path(dir, shard))?;
            conn.busy_timeout(options.busy_timeout)?;
            conn.set_prepared_statement_cache_capacity(64);
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = WAL;\n\
                 PRAGMA synchronous = {sync};\n\
                 PRAGMA cache_size = -{};\n\
                 PRAGMA mmap_size = {};\n\
                 PRAGMA temp_store = MEMORY;\n\
                 PRAGMA journal_size_limit = {};",
                options.connection_cache_kib(),
                options.mmap_size,
                options.journal_size_limit
            ))?;
            Ok(conn)
        })
        .collect()
}

/// Ops per second and latency percentiles of one workload.
struct Report {
    name: &'static str,
    n: usize,
    seconds: f64,
    latencies_ns: Vec<u64>,
}

impl Report {
    fn print(mut self) {
        let ops = self.n as f64 / self.seconds.max(1e-9);
        let mut line = format!("raw {} n={} ops_per_sec={ops:.1}", self.name, self.n);
        if !self.latencies_ns.is_empty() {
            self.latencies_ns.sort_unstable();
            let at = |q: f64| {
                let i = ((self.latencies_ns.len() as f64 * q).ceil() as usize).max(1) - 1;
                self.latencies_ns[i.min(self.latencies_ns.len() - 1)] as f64 / 1000.0
            };
            line.push_str(&format!(" p50_us={:.1} p99_us={:.1}", at(0.50), at(0.99)));
        }
        println!("{line}");
    }
}

struct Row {
    table: usize,
    hash: String,
    key: String,
    value: Vec<u8>,
}

fn row(i: u64) -> Result<(usize, Row), Fail> {
    let key = format!("user:{i}");
    let hash = key_hash(&key);
    let route = route(&hash)?;
    let value = encode(&value(i))?;
    Ok((
        route.shard,
        Row {
            table: route.table,
            hash,
            key,
            value,
        },
    ))
}

fn insert(shards: &Shards, shard: usize, row: &Row) -> Result<(), Fail> {
    let (secs, micros) = now();
    shards.conns[shard]
        .prepare_cached(&shards.upsert[shard][row.table])?
        .execute(params![row.hash, row.key, row.value, secs, micros])?;
    Ok(())
}

/// W1: one autocommit transaction per write.
fn write_one_per_commit(shards: &Shards, n: usize) -> Result<Report, Fail> {
    let mut latencies_ns = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 1..=n as u64 {
        let t = Instant::now();
        let (shard, row) = row(i)?;
        insert(shards, shard, &row)?;
        latencies_ns.push(t.elapsed().as_nanos() as u64);
    }
    Ok(Report {
        name: "W1",
        n,
        seconds: start.elapsed().as_secs_f64(),
        latencies_ns,
    })
}

fn commit_rows(shards: &Shards, shard: usize, rows: &mut Vec<Row>) -> Result<(), Fail> {
    let conn = &shards.conns[shard];
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for row in rows.iter() {
        insert(shards, shard, row)?;
    }
    conn.execute_batch("COMMIT")?;
    rows.clear();
    Ok(())
}

/// W1x1000 and W1x4: rows buffered per shard file, `batch` to a
/// transaction.
fn write_batched(shards: &Shards, n: usize, batch: usize) -> Result<Report, Fail> {
    let mut pending: Vec<Vec<Row>> = (0..SHARD_COUNT)
        .map(|_| Vec::with_capacity(batch))
        .collect();
    let start = Instant::now();
    for i in 1..=n as u64 {
        let (shard, row) = row(i)?;
        pending[shard].push(row);
        if pending[shard].len() == batch {
            commit_rows(shards, shard, &mut pending[shard])?;
        }
    }
    for (shard, rows) in pending.iter_mut().enumerate() {
        if !rows.is_empty() {
            commit_rows(shards, shard, rows)?;
        }
    }
    Ok(Report {
        name: if batch == 4 { "W1x4" } else { "W1x1000" },
        n,
        seconds: start.elapsed().as_secs_f64(),
        latencies_ns: Vec::new(),
    })
}

/// 1..=n in a random order (splitmix64 + Fisher-Yates: no `rand` crate).
fn shuffled(n: usize) -> Vec<u64> {
    let mut order: Vec<u64> = (1..=n as u64).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..order.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// W2: each key once, in random order; the value is decoded.
fn read_random(shards: &Shards, n: usize) -> Result<Report, Fail> {
    let order = shuffled(n);
    let mut latencies_ns = Vec::with_capacity(n);
    let start = Instant::now();
    for i in order {
        let t = Instant::now();
        let key = format!("user:{i}");
        let hash = key_hash(&key);
        let route = route(&hash)?;
        let bytes: Vec<u8> = shards.conns[route.shard]
            .prepare_cached(&shards.select[route.shard][route.table])?
            .query_row([&hash], |r| r.get(0))?;
        let value = decode(&bytes)?;
        std::hint::black_box(value);
        latencies_ns.push(t.elapsed().as_nanos() as u64);
    }
    Ok(Report {
        name: "W2",
        n,
        seconds: start.elapsed().as_secs_f64(),
        latencies_ns,
    })
}

/// The command line: `--n N`, `--workload all|w1|w2|w1x1000|w1x4`,
/// `--synchronous normal|full` (default: LiteStash's default), `--dir DIR`.
struct Args {
    n: usize,
    sync: Synchronous,
    workload: String,
    dir: Option<PathBuf>,
}

const USAGE: &str = "usage: raw_baseline [--n N] [--workload all|w1|w2|w1x1000|w1x4] \
                     [--synchronous normal|full] [--dir DIR]";

/// `Ok(None)` when `--help` asks for the usage.
fn parse_args() -> Result<Option<Args>, String> {
    let mut parsed = Args {
        n: 100_000,
        sync: Options::default().synchronous,
        workload: "all".into(),
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--n" => {
                let v = value()?;
                parsed.n = v
                    .replace('_', "")
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--n expects a positive integer, got {v:?}"))?;
            }
            "--workload" => {
                let v = value()?;
                if !["all", "w1", "w2", "w1x1000", "w1x4"].contains(&v.as_str()) {
                    return Err(format!("unknown workload {v:?}; {USAGE}"));
                }
                parsed.workload = v;
            }
            "--dir" => parsed.dir = Some(PathBuf::from(value()?)),
            "--synchronous" => {
                parsed.sync = match value()?.as_str() {
                    "normal" => Synchronous::Normal,
                    "full" => Synchronous::Full,
                    other => return Err(format!("--synchronous is normal or full, got {other:?}")),
                }
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok(Some(parsed))
}

/// The files in `dir` (created as LiteStash creates them when missing),
/// opened for the raw workloads.
fn open(dir: &Path, sync: Synchronous) -> Result<Shards, Fail> {
    create_layout(dir)?;
    connect(dir, sync)
}

/// Runs one workload on `dir`; `w2` reads what a `w1` on the same dir and
/// `n` wrote.
fn run_one(workload: &str, dir: &Path, n: usize, sync: Synchronous) -> Result<(), Fail> {
    let shards = open(dir, sync)?;
    match workload {
        "w1" => write_one_per_commit(&shards, n)?.print(),
        "w2" => read_random(&shards, n)?.print(),
        "w1x4" => write_batched(&shards, n, 4)?.print(),
        _ => write_batched(&shards, n, 1000)?.print(),
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), Fail> {
    if args.workload != "all" {
        let temp;
        let dir = match &args.dir {
            Some(dir) => dir.as_path(),
            None => {
                temp = tempfile::tempdir()?;
                temp.path()
            }
        };
        return run_one(&args.workload, dir, args.n, args.sync);
    }
    let one = tempfile::tempdir()?;
    let shards = open(one.path(), args.sync)?;
    write_one_per_commit(&shards, args.n)?.print();
    read_random(&shards, args.n)?.print();
    drop(shards);
    drop(one);

    for batch in [1000, 4] {
        let batched = tempfile::tempdir()?;
        write_batched(&open(batched.path(), args.sync)?, args.n, batch)?.print();
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("raw_baseline: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raw_baseline: {e}");
            ExitCode::FAILURE
        }
    }
}
