//! A store's lifecycle and maintenance: open, close, owner, figures,
//! backup, and inspecting a data dir no store has open.

use crate::error::{error_tuple, guard, ok, ok_or_error};
use crate::registry::resolve;
use crate::resource::StoreResource;
use litestash_core::{Error, ErrorKind, Options, Store, Synchronous, SHARD_COUNT};
use rustler::types::atom;
use rustler::{Encoder, Env, NifMap, NifResult, NifUnitEnum, ResourceArc, Term};
use std::sync::Arc;
use std::time::Duration;

rustler::atoms! {
    path,
    problems,
    rows,
    expiring,
    shard_atom = "shard",
    keys_atom = "keys",
    file_bytes,
    wal_bytes,
    in_use,
    value_cache_bytes,
    page_cache_bytes,
    nowait_reads,
    nowait_deferred,
}

/// `synchronous:` as Elixir spells it; any other atom fails to decode.
#[derive(NifUnitEnum, Clone, Copy)]
enum SyncLevel {
    Normal,
    Full,
}

/// The options `LiteStash.start_link/1` validated, as a map.
#[derive(NifMap)]
struct OpenOptions {
    synchronous: SyncLevel,
    busy_timeout: u64,
    max_page_count: Option<i64>,
    sweep_interval: u64,
    inline_commits: usize,
    /// `nil` for `:auto`.
    concurrent_commits: Option<usize>,
    read_only: bool,
    /// `data_dir: :memory`: the path is ignored.
    memory: bool,
    max_streams: usize,
    cache_size: usize,
    page_cache_size: usize,
    mmap_size: i64,
    wal_limit: u64,
    disk_reserve: u64,
    readers_per_shard: usize,
    nowait_reads: bool,
    replica: bool,
}

impl OpenOptions {
    fn into_options(self) -> Options {
        let mut options = Options {
            synchronous: match self.synchronous {
                SyncLevel::Normal => Synchronous::Normal,
                SyncLevel::Full => Synchronous::Full,
            },
            busy_timeout: Duration::from_millis(self.busy_timeout),
            max_page_count: self.max_page_count,
            sweep_interval: Duration::from_millis(self.sweep_interval),
            inline_commits: self.inline_commits,
            concurrent_commits: self.concurrent_commits,
            read_only: self.read_only,
            max_snapshots: self.max_streams,
            cache_size: self.cache_size,
            page_cache_size: self.page_cache_size,
            mmap_size: self.mmap_size,
            readers_per_shard: self.readers_per_shard.max(1),
            nowait_reads: self.nowait_reads,
            replica: self.replica,
            disk_reserve: self.disk_reserve,
            ..Options::default()
        };
        options.set_wal_limit(self.wal_limit);
        options
    }
}

/// The number of shard files of a data dir.
#[rustler::nif]
fn shard_count() -> usize {
    let _slice = crate::slices::Slice::start();

    SHARD_COUNT
}

#[rustler::nif(schedule = "DirtyIo")]
fn open<'a>(env: Env<'a>, path: String, options: Term<'a>) -> NifResult<Term<'a>> {
    guard(env, || {
        let (memory, options) = match options.decode::<OpenOptions>() {
            Ok(options) => (options.memory, options.into_options()),
            Err(_) => {
                return Ok(error_tuple(
                    env,
                    &Error::new(
                        ErrorKind::InvalidArgument,
                        "open/2 takes a map of synchronous (:normal or :full), busy_timeout, \
                         max_page_count, sweep_interval, inline_commits, concurrent_commits, \
                         read_only, memory, \
                         max_streams, replica, cache_size, page_cache_size, mmap_size, \
                         wal_limit, disk_reserve, readers_per_shard and nowait_reads",
                    ),
                ))
            }
        };
        let opened = if memory {
            Store::open_memory(options)
        } else {
            Store::open(&path, options)
        };
        Ok(match opened {
            Ok(store) => ok(
                env,
                ResourceArc::new(StoreResource {
                    store: Arc::new(store),
                    events: Arc::default(),
                }),
            ),
            Err(e) => error_tuple(env, &e),
        })
    })
}

/// Makes the calling process the store's owner: when it dies, the store
/// is closed and its data dir released, even if it never ran `terminate`.
#[rustler::nif]
fn monitor_owner(env: Env, store: ResourceArc<StoreResource>) -> NifResult<Term> {
    let _slice = crate::slices::Slice::start();

    guard(env, || {
        Ok(match env.monitor(&store, &env.pid()) {
            Some(_) => atom::ok().encode(env),
            None => error_tuple(
                env,
                &Error::new(ErrorKind::Internal, "could not monitor the owner"),
            ),
        })
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn close(env: Env, store: ResourceArc<StoreResource>) -> NifResult<Term> {
    guard(env, || {
        store.store.close();
        litestash_core::trim_freed_memory();
        Ok(atom::ok().encode(env))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn backup<'a>(env: Env<'a>, server: Term<'a>, dest: String) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(ok_or_error(
            env,
            resolve(server).and_then(|s| s.store.backup(std::path::Path::new(&dest))),
        ))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn info<'a>(env: Env<'a>, server: Term<'a>) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(match resolve(server).and_then(|s| s.store.info()) {
            Ok(shards) => {
                let list: Vec<Term> = shards
                    .iter()
                    .map(|s| shard_info(env, s))
                    .collect::<NifResult<_>>()?;
                ok(env, list)
            }
            Err(e) => error_tuple(env, &e),
        })
    })
}

fn shard_info<'a>(env: Env<'a>, info: &litestash_core::ShardInfo) -> NifResult<Term<'a>> {
    let keys = match &info.keys {
        Ok(n) => n.encode(env),
        Err(message) => error_tuple(env, &Error::new(ErrorKind::Corrupt, message.clone())),
    };
    Term::map_new(env)
        .map_put(shard_atom(), info.shard)?
        .map_put(keys_atom(), keys)?
        .map_put(file_bytes(), info.file_bytes)?
        .map_put(wal_bytes(), info.wal_bytes)?
        .map_put(value_cache_bytes(), info.value_cache_bytes)?
        .map_put(page_cache_bytes(), info.page_cache_bytes)?
        .map_put(nowait_reads(), info.nowait_reads)?
        .map_put(nowait_deferred(), info.nowait_deferred)
}

/// Bytes SQLite has allocated in this process, over every store.
#[rustler::nif]
fn sqlite_memory_used() -> u64 {
    let _slice = crate::slices::Slice::start();

    litestash_core::sqlite_memory_used()
}

/// Inspects a data dir without opening it as a store (for the Mix tasks):
/// `{:ok, [%{shard, path, problems, rows, expiring, file_bytes, wal_bytes, in_use}]}`.
#[rustler::nif(schedule = "DirtyIo")]
fn inspect_dir(env: Env, dir: String, integrity: bool, sample: usize) -> NifResult<Term> {
    guard(env, || {
        let depth = litestash_core::Depth { integrity, sample };
        Ok(
            match litestash_core::inspect_dir(std::path::Path::new(&dir), depth) {
                Ok(reports) => {
                    let list = reports
                        .iter()
                        .map(|r| {
                            Term::map_new(env)
                                .map_put(shard_atom(), r.shard)?
                                .map_put(path(), r.path.display().to_string())?
                                .map_put(problems(), r.problems.clone())?
                                .map_put(rows(), r.rows)?
                                .map_put(expiring(), r.expiring)?
                                .map_put(file_bytes(), r.file_bytes)?
                                .map_put(wal_bytes(), r.wal_bytes)?
                                .map_put(in_use(), r.in_use)
                        })
                        .collect::<NifResult<Vec<Term>>>()?;
                    ok(env, list)
                }
                Err(e) => error_tuple(env, &e),
            },
        )
    })
}
