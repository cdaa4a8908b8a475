//! Writes: one NIF call each. On the caller's scheduler the call either
//! queues the write to its shard's writer and returns `:queued` (the answer
//! comes as `{reference, answer}`), or continues itself on a dirty IO
//! scheduler (`enif_schedule_nif`, still the same call for Elixir) when the
//! store has a lone writer, to commit inline and return the answer, or when
//! the term is too large to convert on a normal scheduler.
//!
//! The deciding step on the caller's scheduler looks at no key: it claims
//! an inline slot from counters ([`Store::inline_slot`]) and hands it to
//! the continuation, which hashes the key once and commits.

use crate::error::{error_tuple, guard, panicked};
use crate::registry::resolve;
use crate::reply::{answer, reply_to};
use crate::term::{to_value, Budget, Refusal, PAIR};
use litestash_core::{Error, ErrorKind, InlineSlot, Request, Store, Submitted, Value};
use rustler::sys::{ErlNifEnv, ErlNifTerm};
use rustler::{Binary, Encoder, Env, NifResult, Term};
use std::ffi::CStr;
use std::os::raw::c_int;

rustler::atoms! {
    queued,
    encode_structs,
}

/// Builds a write's request from its arguments after the server and the
/// reference, within `budget`.
type Build = for<'a> fn(&[Term<'a>], &mut Budget) -> Result<Request, Refusal>;

/// One write NIF: how to build its request, whether it may commit inline,
/// and its dirty IO continuation.
struct WriteNif {
    name: &'static CStr,
    inline: bool,
    build: Build,
    continuation: crate::schedule::Continuation,
}

/// The caller's-scheduler half of every write NIF. `args` are the NIF's
/// arguments: the server, the reply reference, then the write's own.
fn enter<'a>(env: Env<'a>, args: &[Term<'a>], nif: &WriteNif) -> NifResult<Term<'a>> {
    let _slice = crate::slices::Slice::start();

    guard(env, || {
        let store = match resolve(args[0]) {
            Ok(store) => store,
            Err(e) => return Ok(error_tuple(env, &e)),
        };
        // Before the arguments are looked at: whatever the write, a
        // read-only store refuses it.
        if store.store.is_read_only() {
            return Ok(error_tuple(env, &store.store.read_only_error()));
        }
        // The continuation gets the handle: no second registry look-up.
        let mut continued = args.to_vec();
        continued[0] = store.encode(env);
        if nif.inline {
            if let Some(slot) = store.store.inline_slot() {
                // Carried to the continuation, which takes it back first.
                slot.forget();
                return Ok(reschedule(env, nif, &continued, true));
            }
        }
        Ok(match (nif.build)(&args[2..], &mut Budget::normal()) {
            Err(Refusal::OverBudget) => reschedule(env, nif, &continued, false),
            Err(Refusal::Error(e)) => error_tuple(env, &e),
            Err(Refusal::Struct) => encode_structs().encode(env),
            Ok(request) => hand_over(env, &store.store, request, None, args[1]),
        })
    })
}

/// The dirty IO half: `args` as for [`enter`], plus whether an inline slot
/// was claimed for this call.
fn resume<'a>(env: Env<'a>, args: &[Term<'a>], nif: &WriteNif) -> Term<'a> {
    let Some((held, args)) = args.split_last() else {
        return panicked(env);
    };
    let slot = (*held == true.encode(env)).then(InlineSlot::resume);
    let done = guard(env, move || {
        let store = match resolve(args[0]) {
            Ok(store) => store,
            Err(e) => return Ok(error_tuple(env, &e)),
        };
        Ok(match (nif.build)(&args[2..], &mut Budget::unlimited()) {
            Ok(request) => hand_over(env, &store.store, request, slot, args[1]),
            Err(Refusal::Struct) => encode_structs().encode(env),
            Err(refusal) => error_tuple(env, &refusal.into_error()),
        })
    });
    done.unwrap_or_else(|_| panicked(env))
}

/// Continues the call `args` on a dirty IO scheduler.
fn reschedule<'a>(env: Env<'a>, nif: &WriteNif, args: &[Term<'a>], held: bool) -> Term<'a> {
    let mut all = args.to_vec();
    all.push(held.encode(env));
    crate::schedule::reschedule(env, nif.name, nif.continuation, &all)
}

/// Submits `request`: the answer when it committed inline, `:queued`
/// when the writer's message will bring it, or the refusal.
fn hand_over<'a>(
    env: Env<'a>,
    store: &Store,
    request: Request,
    slot: Option<InlineSlot>,
    reference: Term<'a>,
) -> Term<'a> {
    match store.submit(request, slot, || reply_to(env, reference)) {
        Ok(Submitted::Committed(outcome)) => answer(env, outcome),
        Ok(Submitted::Queued) => queued().encode(env),
        Err(e) => error_tuple(env, &e),
    }
}

fn arg<'a, T: rustler::Decoder<'a>>(term: Term<'a>, what: &str) -> Result<T, Refusal> {
    term.decode().map_err(|_| {
        Refusal::Error(Error::new(
            ErrorKind::InvalidArgument,
            format!("the {what} has the wrong type"),
        ))
    })
}

fn key<'a>(term: Term<'a>) -> Result<Binary<'a>, Refusal> {
    arg(term, "key")
}

fn ttl(term: Term) -> Result<Option<u64>, Refusal> {
    arg(term, "ttl")
}

fn build_set(args: &[Term], budget: &mut Budget) -> Result<Request, Refusal> {
    let value = to_value(args[1], budget)?;
    Ok(Request::set(
        key(args[0])?.as_slice(),
        &value,
        ttl(args[2])?,
    )?)
}

fn build_put_new(args: &[Term], budget: &mut Budget) -> Result<Request, Refusal> {
    let value = to_value(args[1], budget)?;
    Ok(Request::put_new(
        key(args[0])?.as_slice(),
        &value,
        ttl(args[2])?,
    )?)
}

fn build_compare_and_set(args: &[Term], budget: &mut Budget) -> Result<Request, Refusal> {
    let expected = to_value(args[1], budget)?;
    budget.next_value();
    let new = to_value(args[2], budget)?;
    Ok(Request::compare_and_set(
        key(args[0])?.as_slice(),
        &expected,
        &new,
        ttl(args[3])?,
    )?)
}

fn build_incr(args: &[Term], _: &mut Budget) -> Result<Request, Refusal> {
    Ok(Request::incr(
        key(args[0])?.as_slice(),
        arg(args[1], "amount")?,
    )?)
}

fn build_delete(args: &[Term], _: &mut Budget) -> Result<Request, Refusal> {
    Ok(Request::delete(key(args[0])?.as_slice())?)
}

fn build_expire(args: &[Term], _: &mut Budget) -> Result<Request, Refusal> {
    Ok(Request::expire(key(args[0])?.as_slice(), ttl(args[1])?)?)
}

fn build_clear(_: &[Term], _: &mut Budget) -> Result<Request, Refusal> {
    Ok(Request::clear())
}

fn build_compact(_: &[Term], _: &mut Budget) -> Result<Request, Refusal> {
    Ok(Request::compact())
}

/// `[{key, value}]`, walked within the budget one pair at a time (never
/// the whole list first).
pub(crate) fn build_set_many(args: &[Term], budget: &mut Budget) -> Result<Request, Refusal> {
    let not_a_list = || {
        Refusal::Error(Error::new(
            ErrorKind::InvalidArgument,
            "the pairs are not a proper list",
        ))
    };
    let mut pairs: Vec<(Binary, Value)> = Vec::new();
    let mut rest = args[0];
    while let Ok((pair, tail)) = rest.list_get_cell() {
        budget.next_value();
        let (k, v): (Term, Term) = arg(pair, "pair")?;
        let k = key(k)?;
        // Measured: hashing, routing and handing over a pair costs about
        // twenty terms' worth, and its key's hash a few units a byte.
        budget.charge(PAIR + 3 * k.len())?;
        pairs.push((k, to_value(v, budget)?));
        rest = tail;
    }
    if !rest.is_empty_list() {
        return Err(not_a_list());
    }
    let refs: Vec<(&[u8], &Value)> = pairs.iter().map(|(k, v)| (k.as_slice(), v)).collect();
    Ok(Request::set_many(&refs)?)
}

/// Defines the write NIF `$name` with `$arity` arguments after the server
/// and reference, and its continuation.
macro_rules! write_nif {
    ($name:ident, $table:ident, $cont:ident, $inline:expr, $build:ident, [$($arg:ident),*]) => {
        static $table: WriteNif = WriteNif {
            name: match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                Ok(name) => name,
                Err(_) => panic!("a NIF name with a NUL byte"),
            },
            inline: $inline,
            build: $build,
            continuation: $cont,
        };

        unsafe extern "C" fn $cont(
            env: *mut ErlNifEnv,
            argc: c_int,
            argv: *const ErlNifTerm,
        ) -> ErlNifTerm {
            // SAFETY: the VM's own arguments to a continuation.
            crate::schedule::continued(env, argc, argv, |env, args| resume(env, args, &$table))
        }

        #[rustler::nif]
        fn $name<'a>(
            env: Env<'a>,
            server: Term<'a>,
            reference: Term<'a>,
            $($arg: Term<'a>),*
        ) -> NifResult<Term<'a>> {
            enter(env, &[server, reference, $($arg),*], &$table)
        }
    };
}

write_nif!(set, SET, set_dirty, true, build_set, [key, value, ttl]);
write_nif!(
    put_new,
    PUT_NEW,
    put_new_dirty,
    true,
    build_put_new,
    [key, value, ttl]
);
write_nif!(
    compare_and_set,
    COMPARE_AND_SET,
    compare_and_set_dirty,
    true,
    build_compare_and_set,
    [key, expected, new, ttl]
);
write_nif!(incr, INCR, incr_dirty, true, build_incr, [key, by]);
write_nif!(delete, DELETE, delete_dirty, true, build_delete, [key]);
write_nif!(
    expire,
    EXPIRE,
    expire_dirty,
    false,
    build_expire,
    [key, ttl]
);
write_nif!(
    set_many,
    SET_MANY,
    set_many_dirty,
    false,
    build_set_many,
    [pairs]
);
write_nif!(clear, CLEAR, clear_dirty, false, build_clear, []);
write_nif!(compact, COMPACT, compact_dirty, false, build_compact, []);

write_nif!(
    replica_apply,
    REPLICA_APPLY,
    replica_apply_dirty,
    false,
    build_replica_apply,
    [shard, index, now_ms, ops]
);
write_nif!(
    shard_install,
    SHARD_INSTALL,
    shard_install_dirty,
    false,
    build_shard_install,
    [shard, src]
);

fn build_replica_apply(args: &[Term], budget: &mut Budget) -> Result<Request, Refusal> {
    crate::replica::build_apply(args, budget)
}

fn build_shard_install(args: &[Term], budget: &mut Budget) -> Result<Request, Refusal> {
    crate::replica::build_install(args, budget)
}
