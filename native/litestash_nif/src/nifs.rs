//! The NIF functions. Reads run on dirty IO schedulers. Writes are queued to
//! the shard writers on the caller's scheduler and return `:queued` at once;
//! the writer thread sends `{ref, result}` to the caller after the commit, so
//! no scheduler is held while a write waits in a queue. A single-key write
//! made while the store has a lone writer (nothing queued at any shard, its
//! shard's writer not busy) returns `:reschedule` instead, and its dirty IO
//! variant commits it right there and returns the answer.

use crate::error::{error_tuple, panicked};
use crate::term::{binary, to_term, to_value, Budget, Refusal};
use litestash_core::{Error, ErrorKind, Options, Outcome, Reply, Store, Synchronous, Value};
use rustler::env::OwnedEnv;
use rustler::types::atom;
use rustler::{
    Atom, Binary, Encoder, Env, LocalPid, Monitor, NifResult, Resource, ResourceArc, Term,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

rustler::atoms! {
    litestash_event,
    commit,
    sweep,
    path,
    problems,
    rows,
    expiring,
    reschedule,
    queued,
    normal,
    full,
    infinity,
    shard_atom = "shard",
    keys_atom = "keys",
    file_bytes,
    wal_bytes,
}

/// The store, owned by the process that opened it: when that process dies,
/// the store is closed and its data dir released.
pub struct StoreResource {
    store: Arc<Store>,
}

#[rustler::resource_impl]
impl Resource for StoreResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        close_in_background(&self.store);
        // Not found by name any more, the store is freed once no process
        // holds it. (The VM keeps the resource alive through this callback.)
        registry_mut().retain(|(_, entry)| !Arc::ptr_eq(&entry.store.store, &self.store));
    }
}

impl Drop for StoreResource {
    fn drop(&mut self) {
        // A destructor runs on a scheduler: never block it on a commit.
        close_in_background(&self.store);
    }
}

fn close_in_background(store: &Arc<Store>) {
    if store.is_closed() {
        return;
    }
    // At once, so that the data dir counts as closing, not open: a store
    // opened on it next waits for this close instead of failing. The
    // commits and the joins happen on a thread of ours.
    store.begin_close();
    let store = Arc::clone(store);
    let spawned = std::thread::Builder::new()
        .name("litestash close".into())
        .spawn(move || store.close());
    if spawned.is_err() {
        // No thread to be had: the last `Arc` closes the store when dropped.
    }
}

/// A store registered under its name.
struct Registered {
    store: ResourceArc<StoreResource>,
    telemetry: bool,
}

/// The running stores by name, where every call finds its store (a VM
/// runs a few, so a list is the fastest map). Not `persistent_term`: when an entry there is erased or
/// replaced, a process that read it and is in a dirty NIF call at that
/// moment can be left pointing at freed memory (seen on OTP 25.2: `badarg`,
/// or the VM aborts in `ethr_mutex_lock`). A lookup here gives each caller
/// a reference of its own.
static REGISTRY: RwLock<Vec<(Atom, Registered)>> = RwLock::new(Vec::new());

fn registry() -> RwLockReadGuard<'static, Vec<(Atom, Registered)>> {
    REGISTRY
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn registry_mut() -> RwLockWriteGuard<'static, Vec<(Atom, Registered)>> {
    REGISTRY
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers `store` under `name`, replacing what was there.
#[rustler::nif]
fn register(
    env: Env,
    name: Atom,
    store: ResourceArc<StoreResource>,
    telemetry: bool,
) -> NifResult<Term> {
    guard(env, || {
        let mut registry = registry_mut();
        registry.retain(|(registered, _)| *registered != name);
        registry.push((name, Registered { store, telemetry }));
        Ok(atom::ok().encode(env))
    })
}

/// `{store, name, telemetry?}` of the store registered under `name`, or nil.
#[rustler::nif]
fn lookup(env: Env, name: Atom) -> NifResult<Term> {
    guard(env, || {
        let registry = registry();
        let found = registry.iter().find(|(registered, _)| *registered == name);
        Ok(match found {
            Some((_, entry)) => (entry.store.clone(), name, entry.telemetry).encode(env),
            None => atom::nil().encode(env),
        })
    })
}

/// Removes `name`'s entry if it still is `store`.
#[rustler::nif]
fn unregister(env: Env, name: Atom, store: ResourceArc<StoreResource>) -> NifResult<Term> {
    guard(env, || {
        registry_mut().retain(|(registered, entry)| {
            *registered != name || !Arc::ptr_eq(&entry.store.store, &store.store)
        });
        Ok(atom::ok().encode(env))
    })
}

/// Runs `f`, turning a panic into `{:error, %LiteStash.Error{reason: :internal}}`.
fn guard<'a>(env: Env<'a>, f: impl FnOnce() -> NifResult<Term<'a>>) -> NifResult<Term<'a>> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Ok(panicked(env)))
}

fn ok<'a>(env: Env<'a>, value: impl Encoder) -> Term<'a> {
    (atom::ok(), value).encode(env)
}

fn result<'a, T: Encoder>(env: Env<'a>, r: Result<T, Error>) -> Term<'a> {
    match r {
        Ok(v) => ok(env, v),
        Err(e) => error_tuple(env, &e),
    }
}

#[rustler::nif(schedule = "DirtyIo")]
fn open<'a>(
    env: Env<'a>,
    path: String,
    synchronous: Atom,
    busy_timeout_ms: u64,
    max_page_count: Option<i64>,
    sweep_interval_ms: u64,
    inline_commits: usize,
) -> NifResult<Term<'a>> {
    guard(env, || {
        let synchronous = if synchronous == full() {
            Synchronous::Full
        } else {
            Synchronous::Normal
        };
        let options = Options {
            synchronous,
            busy_timeout: Duration::from_millis(busy_timeout_ms),
            max_page_count,
            sweep_interval: Duration::from_millis(sweep_interval_ms),
            inline_commits,
            ..Options::default()
        };
        Ok(match Store::open(&path, options) {
            Ok(store) => {
                let resource = ResourceArc::new(StoreResource {
                    store: Arc::new(store),
                });
                ok(env, resource)
            }
            Err(e) => error_tuple(env, &e),
        })
    })
}

/// Makes the calling process the store's owner: when it dies, the store
/// is closed and its data dir released, even if it never ran `terminate`.
#[rustler::nif]
fn monitor_owner(env: Env, store: ResourceArc<StoreResource>) -> NifResult<Term> {
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
        Ok(atom::ok().encode(env))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn get<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    key: Binary<'a>,
) -> NifResult<Term<'a>> {
    guard(env, || {
        let found = store
            .store
            .get(key.as_slice())
            .and_then(|value| match value {
                Some(value) => to_term(env, &value),
                None => Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "key {:?} not found",
                        String::from_utf8_lossy(key.as_slice())
                    ),
                )),
            });
        Ok(result(env, found))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn get_many<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    keys: Vec<Binary<'a>>,
) -> NifResult<Term<'a>> {
    guard(env, || {
        let slices: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let found = store.store.get_many(&slices).and_then(|values| {
            let mut map = Term::map_new(env);
            for (key, value) in keys.iter().zip(values) {
                if let Some(value) = value {
                    let term = to_term(env, &value)?;
                    map = map.map_put(*key, term).map_err(|_| {
                        Error::new(ErrorKind::Internal, "could not build the result map")
                    })?;
                }
            }
            Ok(map)
        });
        Ok(result(env, found))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn exists<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    key: Binary<'a>,
) -> NifResult<Term<'a>> {
    guard(env, || Ok(result(env, store.store.exists(key.as_slice()))))
}

#[rustler::nif(schedule = "DirtyIo")]
fn keys<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    prefix: String,
) -> NifResult<Term<'a>> {
    guard(env, || Ok(result(env, store.store.keys(&prefix))))
}

#[rustler::nif(schedule = "DirtyIo")]
fn count<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    prefix: String,
) -> NifResult<Term<'a>> {
    guard(env, || Ok(result(env, store.store.count(&prefix))))
}

#[rustler::nif(schedule = "DirtyIo")]
fn ttl<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    key: Binary<'a>,
) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(match store.store.ttl(key.as_slice()) {
            Ok(Some(Some(ms))) => ok(env, ms),
            Ok(Some(None)) => ok(env, infinity()),
            Ok(None) => error_tuple(env, &not_found(key.as_slice())),
            Err(e) => error_tuple(env, &e),
        })
    })
}

fn not_found(key: &[u8]) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("key {:?} not found", String::from_utf8_lossy(key)),
    )
}

/// A walk over one shard in a consistent snapshot.
pub struct CursorResource {
    snapshot: std::sync::Mutex<Option<litestash_core::Snapshot>>,
}

#[rustler::resource_impl]
impl Resource for CursorResource {}

impl Drop for CursorResource {
    fn drop(&mut self) {
        // Garbage collection frees a cursor on a normal scheduler; closing
        // its SQLite connection may checkpoint, so that happens elsewhere.
        let snapshot = self
            .snapshot
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(snapshot) = snapshot {
            // If no thread can be had, it is dropped here after all.
            let _ = std::thread::Builder::new()
                .name("litestash cursor".into())
                .spawn(move || drop(snapshot));
        }
    }
}

#[rustler::nif(schedule = "DirtyIo")]
fn snapshot_open<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    shard: usize,
    prefix: String,
) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(match store.store.snapshot(shard, &prefix) {
            Ok(snapshot) => ok(
                env,
                ResourceArc::new(CursorResource {
                    snapshot: std::sync::Mutex::new(Some(snapshot)),
                }),
            ),
            Err(e) => error_tuple(env, &e),
        })
    })
}

/// The next chunk: `{:ok, [{key, value}]}` (or `[key]` without values);
/// `{:ok, []}` once the walk is over.
#[rustler::nif(schedule = "DirtyIo")]
fn snapshot_next<'a>(
    env: Env<'a>,
    cursor: ResourceArc<CursorResource>,
    limit: usize,
    with_values: bool,
) -> NifResult<Term<'a>> {
    guard(env, || {
        let mut slot = cursor
            .snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(snapshot) = slot.as_mut() else {
            return Ok(ok(env, Vec::<Term>::new()));
        };
        let chunk = if with_values {
            snapshot.next_pairs(limit).and_then(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| Ok((binary(env, k.as_bytes())?, to_term(env, v)?).encode(env)))
                    .collect::<Result<Vec<Term>, Error>>()
            })
        } else {
            snapshot.next_keys(limit).and_then(|keys| {
                keys.iter()
                    .map(|k| binary(env, k.as_bytes()))
                    .collect::<Result<Vec<Term>, Error>>()
            })
        };
        if matches!(&chunk, Ok(c) if c.is_empty()) {
            *slot = None;
        }
        Ok(result(env, chunk))
    })
}

/// Ends a walk early, releasing its read transaction.
#[rustler::nif(schedule = "DirtyIo")]
fn snapshot_close(env: Env, cursor: ResourceArc<CursorResource>) -> NifResult<Term> {
    guard(env, || {
        let snapshot = cursor
            .snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(snapshot);
        Ok(atom::ok().encode(env))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn backup<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    dest: String,
) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(ok_or_error(
            env,
            store.store.backup(std::path::Path::new(&dest)),
        ))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn info(env: Env, store: ResourceArc<StoreResource>) -> NifResult<Term> {
    guard(env, || {
        Ok(match store.store.info() {
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
        .map_put(wal_bytes(), info.wal_bytes)
}

/// A reply that sends `{ref, result}` to the calling process.
/// `:ok`, or `{:error, %LiteStash.Error{}}`.
fn ok_or_error(env: Env, attempt: Result<(), Error>) -> Term {
    match attempt {
        Ok(()) => atom::ok().encode(env),
        Err(e) => error_tuple(env, &e),
    }
}

/// Where a write committed inline leaves its answer, for the NIF to return.
type Slot = Arc<Mutex<Option<Result<Outcome, Error>>>>;

/// Runs `work` (a send from an owned env) on a thread the VM does not
/// manage: only such threads may send that way. From a scheduler thread
/// (an inline commit's telemetry event, a reply answered on a scheduler)
/// it goes to one long-lived mailer thread.
fn off_scheduler(work: impl FnOnce() + Send + 'static) {
    type Mail = Box<dyn FnOnce() + Send>;
    static MAILER: OnceLock<Option<mpsc::Sender<Mail>>> = OnceLock::new();
    if !rustler::thread::is_scheduler_thread() {
        return work();
    }
    let mailer = MAILER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Mail>();
        std::thread::Builder::new()
            .name("litestash mailer".into())
            .spawn(move || {
                for mail in rx {
                    let _ = catch_unwind(AssertUnwindSafe(mail));
                }
            })
            .ok()
            .map(|_| tx)
    });
    let mail: Mail = Box::new(work);
    let mail = match mailer {
        Some(tx) => match tx.send(mail) {
            Ok(()) => return,
            Err(mpsc::SendError(mail)) => mail,
        },
        None => mail,
    };
    // No mailer: a thread of its own, or (if none can be had) lost.
    let _ = std::thread::Builder::new()
        .name("litestash reply".into())
        .spawn(mail);
}

/// The reply for a write by the calling process: `{reference, answer}` in
/// its mailbox once committed by a writer thread, or, for a write committed
/// inline on this thread (`inline`), the answer left in the slot.
fn reply_to(env: Env, reference: Term, inline: bool) -> (Reply, Slot) {
    let pid = env.pid();
    let owned = OwnedEnv::new();
    let saved = owned.save(reference);
    let slot = Slot::default();
    let stash = Arc::clone(&slot);
    let here = std::thread::current().id();
    let reply = Reply::new(move |outcome| {
        if std::thread::current().id() == here {
            *stash.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
            return;
        }
        off_scheduler(move || {
            let mut owned = owned;
            let _ = owned.send_and_clear(&pid, |env| {
                (saved.load(env), answer(env, outcome)).encode(env)
            });
        });
    });
    (if inline { reply.inline() } else { reply }, slot)
}

/// `:ok`, `{:ok, integer}` or `{:error, %LiteStash.Error{}}`.
fn answer(env: Env, outcome: Result<Outcome, Error>) -> Term {
    match outcome {
        Ok(Outcome::Integer(n)) => ok(env, n),
        Ok(_) => atom::ok().encode(env),
        Err(e) => error_tuple(env, &e),
    }
}

/// What a write NIF returns once the write is handed over: the answer when
/// it was committed inline, else `:queued` (the answer comes by message).
fn handed_over(env: Env, attempt: Result<Slot, Error>) -> Term {
    match attempt {
        Ok(slot) => match slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(outcome) => answer(env, outcome),
            None => queued().encode(env),
        },
        Err(e) => error_tuple(env, &e),
    }
}

/// The scheduler a write NIF runs on. `Normal` queues the write at once
/// and asks for the `Dirty` variant (`:reschedule`) when the term is too
/// large to convert on a normal scheduler, or when the write would commit
/// inline (`Store::would_commit_inline`): on the dirty IO scheduler it
/// does, sparing a lone writer the hand-off to the writer thread and back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sched {
    Normal,
    Dirty,
}

impl Sched {
    fn budget(self) -> Budget {
        match self {
            Sched::Normal => Budget::normal(),
            Sched::Dirty => Budget::unlimited(),
        }
    }

    /// Whether a normal-scheduler call should go to its dirty variant to
    /// commit inline.
    fn prefers_dirty(self, store: &Store, key: &[u8]) -> bool {
        self == Sched::Normal && store.would_commit_inline(key)
    }
}

/// Converts, then hands the write over. `:reschedule` asks the caller to
/// repeat the call through the dirty variant.
fn queue<'a>(
    env: Env<'a>,
    sched: Sched,
    convert: impl FnOnce(&mut Budget) -> Result<Vec<Value>, Refusal>,
    submit: impl FnOnce(&[Value]) -> Result<Slot, Error>,
) -> NifResult<Term<'a>> {
    guard(env, || {
        let mut budget = sched.budget();
        Ok(match convert(&mut budget) {
            Err(Refusal::OverBudget) => reschedule().encode(env),
            Err(Refusal::Error(e)) => error_tuple(env, &e),
            Ok(values) => handed_over(env, submit(&values)),
        })
    })
}

/// Which conditional or plain write to queue.
#[derive(rustler::NifTaggedEnum, Clone, Copy)]
enum Write {
    /// Plain set; the integer is a TTL in milliseconds.
    Set(Option<u64>),
    PutNew,
}

#[allow(clippy::too_many_arguments)]
fn put<'a>(
    env: Env<'a>,
    store: &Store,
    reference: Term<'a>,
    key: Binary<'a>,
    value: Term<'a>,
    mode: Write,
    sched: Sched,
) -> NifResult<Term<'a>> {
    if sched.prefers_dirty(store, key.as_slice()) {
        return Ok(reschedule().encode(env));
    }
    queue(
        env,
        sched,
        |budget| Ok(vec![to_value(value, budget)?]),
        |values| {
            let (reply, slot) = reply_to(env, reference, sched == Sched::Dirty);
            match mode {
                Write::Set(ttl) => store.set_async(key.as_slice(), &values[0], ttl, reply),
                Write::PutNew => store.put_new_async(key.as_slice(), &values[0], reply),
            }
            .map(|()| slot)
        },
    )
}

/// Defines a write NIF twice, as rustler fixes a NIF's scheduler per
/// function: `$normal` on the caller's scheduler and `$dirty` on a dirty IO
/// scheduler, both calling `$body(env, &store, args..., sched)`. Argument
/// types are written `Name` or `Name<'a>`: a `ty` fragment reaches rustler's
/// attribute as a group it does not parse.
macro_rules! write_nifs {
    ($normal:ident, $dirty:ident, $body:ident($($arg:ident: $ty:ident $(<$lt:lifetime>)?),*)) => {
        #[rustler::nif]
        fn $normal<'a>(
            env: Env<'a>,
            store: ResourceArc<StoreResource>,
            $($arg: $ty $(<$lt>)?),*
        ) -> NifResult<Term<'a>> {
            $body(env, &store.store, $($arg,)* Sched::Normal)
        }

        #[rustler::nif(schedule = "DirtyIo")]
        fn $dirty<'a>(
            env: Env<'a>,
            store: ResourceArc<StoreResource>,
            $($arg: $ty $(<$lt>)?),*
        ) -> NifResult<Term<'a>> {
            $body(env, &store.store, $($arg,)* Sched::Dirty)
        }
    };
}

write_nifs!(set, set_dirty, put(reference: Term<'a>, key: Binary<'a>, value: Term<'a>, mode: Write));

fn swap<'a>(
    env: Env<'a>,
    store: &Store,
    reference: Term<'a>,
    key: Binary<'a>,
    expected: Term<'a>,
    new: Term<'a>,
    sched: Sched,
) -> NifResult<Term<'a>> {
    if sched.prefers_dirty(store, key.as_slice()) {
        return Ok(reschedule().encode(env));
    }
    queue(
        env,
        sched,
        |budget| Ok(vec![to_value(expected, budget)?, to_value(new, budget)?]),
        |values| {
            let (reply, slot) = reply_to(env, reference, sched == Sched::Dirty);
            store
                .compare_and_set_async(key.as_slice(), &values[0], &values[1], reply)
                .map(|()| slot)
        },
    )
}

write_nifs!(compare_and_set, compare_and_set_dirty, swap(reference: Term<'a>, key: Binary<'a>, expected: Term<'a>, new: Term<'a>));

/// A write of one key with nothing to convert (`delete`, `incr`).
fn keyed<'a>(
    env: Env<'a>,
    store: &Store,
    reference: Term<'a>,
    key: Binary<'a>,
    sched: Sched,
    submit: impl FnOnce(&Store, &[u8], Reply) -> Result<(), Error>,
) -> NifResult<Term<'a>> {
    guard(env, || {
        if sched.prefers_dirty(store, key.as_slice()) {
            return Ok(reschedule().encode(env));
        }
        let (reply, slot) = reply_to(env, reference, sched == Sched::Dirty);
        Ok(handed_over(
            env,
            submit(store, key.as_slice(), reply).map(|()| slot),
        ))
    })
}

#[rustler::nif]
fn expire<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    reference: Term<'a>,
    key: Binary<'a>,
    ttl_ms: Option<u64>,
) -> NifResult<Term<'a>> {
    // Rare enough to always go through the writer thread.
    guard(env, || {
        let (reply, slot) = reply_to(env, reference, false);
        Ok(handed_over(
            env,
            store
                .store
                .expire_async(key.as_slice(), ttl_ms, reply)
                .map(|()| slot),
        ))
    })
}

fn add<'a>(
    env: Env<'a>,
    store: &Store,
    reference: Term<'a>,
    key: Binary<'a>,
    by: i64,
    sched: Sched,
) -> NifResult<Term<'a>> {
    keyed(env, store, reference, key, sched, |s, k, r| {
        s.incr_async(k, by, r)
    })
}

write_nifs!(incr, incr_dirty, add(reference: Term<'a>, key: Binary<'a>, by: i64));

#[rustler::nif]
fn compact<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    reference: Term<'a>,
) -> NifResult<Term<'a>> {
    guard(env, || {
        let (reply, slot) = reply_to(env, reference, false);
        Ok(handed_over(
            env,
            store.store.compact_async(reply).map(|()| slot),
        ))
    })
}

fn put_many<'a>(
    env: Env<'a>,
    store: &Store,
    reference: Term<'a>,
    pairs: Vec<(Binary<'a>, Term<'a>)>,
    sched: Sched,
) -> NifResult<Term<'a>> {
    queue(
        env,
        sched,
        |budget| pairs.iter().map(|(_, v)| to_value(*v, budget)).collect(),
        |values| {
            let refs: Vec<(&[u8], &Value)> = pairs
                .iter()
                .zip(values)
                .map(|((k, _), v)| (k.as_slice(), v))
                .collect();
            // Several shards' writes: always through the writer threads.
            let (reply, slot) = reply_to(env, reference, false);
            store.set_many_async(&refs, reply).map(|()| slot)
        },
    )
}

#[rustler::nif]
fn set_many<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    reference: Term<'a>,
    pairs: Vec<(Binary<'a>, Term<'a>)>,
) -> NifResult<Term<'a>> {
    put_many(env, &store.store, reference, pairs, Sched::Normal)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn set_many_dirty<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    reference: Term<'a>,
    pairs: Vec<(Binary<'a>, Term<'a>)>,
) -> NifResult<Term<'a>> {
    put_many(env, &store.store, reference, pairs, Sched::Dirty)
}

fn remove<'a>(
    env: Env<'a>,
    store: &Store,
    reference: Term<'a>,
    key: Binary<'a>,
    sched: Sched,
) -> NifResult<Term<'a>> {
    keyed(env, store, reference, key, sched, |s, k, r| {
        s.delete_async(k, r)
    })
}

write_nifs!(delete, delete_dirty, remove(reference: Term<'a>, key: Binary<'a>));

#[rustler::nif]
fn clear<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    reference: Term<'a>,
) -> NifResult<Term<'a>> {
    guard(env, || {
        let (reply, slot) = reply_to(env, reference, false);
        Ok(handed_over(
            env,
            store.store.clear_async(reply).map(|()| slot),
        ))
    })
}

/// The contract encoding of a term, for the contract tests.
#[rustler::nif(schedule = "DirtyCpu")]
fn encode_value<'a>(env: Env<'a>, value: Term<'a>) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(match to_value(value, &mut Budget::unlimited()) {
            Ok(v) => match litestash_core::encode(&v) {
                Ok(bytes) => ok(env, rustler::OwnedBinary::from_slice(&bytes).release(env)),
                Err(e) => error_tuple(env, &e),
            },
            Err(Refusal::Error(e)) => error_tuple(env, &e),
            Err(Refusal::OverBudget) => reschedule().encode(env),
        })
    })
}

/// The term a stored value's bytes decode to, for the contract tests.
#[rustler::nif(schedule = "DirtyCpu")]
fn decode_value<'a>(env: Env<'a>, bytes: Binary<'a>) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(result(
            env,
            litestash_core::decode(bytes.as_slice()).and_then(|v| to_term(env, &v)),
        ))
    })
}

/// Test hook: poisons every lock of the store, to prove each is recovered.
#[rustler::nif(schedule = "DirtyIo")]
fn debug_poison_locks(env: Env, store: ResourceArc<StoreResource>) -> NifResult<Term> {
    guard(env, || {
        store.store.poison_locks_for_test();
        Ok(atom::ok().encode(env))
    })
}

/// Test hook: panics inside the NIF, to prove a panic reaches the caller as
/// an error and the VM carries on.
#[rustler::nif]
fn debug_panic(env: Env) -> NifResult<Term> {
    guard(env, || panic!("debug_panic called"))
}

/// Inspects a data dir without opening it as a store (for the Mix tasks):
/// `{:ok, [%{shard, path, problems, rows, expiring, file_bytes, wal_bytes}]}`.
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
                                .map_put(wal_bytes(), r.wal_bytes)
                        })
                        .collect::<NifResult<Vec<Term>>>()?;
                    ok(env, list)
                }
                Err(e) => error_tuple(env, &e),
            },
        )
    })
}

/// Sends the writers' events to `pid` as
/// `{:litestash_event, :commit | :sweep, shard, count, duration_us}`; the
/// owner turns them into telemetry events. `nil` stops them.
#[rustler::nif]
fn set_event_receiver(
    env: Env,
    store: ResourceArc<StoreResource>,
    pid: Option<LocalPid>,
) -> NifResult<Term> {
    guard(env, || {
        let Some(pid) = pid else {
            store.store.set_event_hook(None);
            return Ok(atom::ok().encode(env));
        };
        let hook: litestash_core::EventHook = Arc::new(move |event| {
            let (kind, shard, count, duration) = match event {
                litestash_core::Event::Commit {
                    shard,
                    batch_size,
                    duration,
                } => (commit(), shard, batch_size, duration),
                litestash_core::Event::Sweep {
                    shard,
                    deleted,
                    duration,
                } => (sweep(), shard, deleted, duration),
                _ => return,
            };
            // An inline commit reports from a dirty scheduler thread.
            off_scheduler(move || {
                let mut owned = OwnedEnv::new();
                let _ = owned.send_and_clear(&pid, |env| {
                    let name = litestash_core::SHARDS.get(shard).copied().unwrap_or("");
                    (
                        litestash_event(),
                        kind,
                        name,
                        count,
                        duration.as_micros() as u64,
                    )
                        .encode(env)
                });
            });
        });
        store.store.set_event_hook(Some(hook));
        Ok(atom::ok().encode(env))
    })
}
