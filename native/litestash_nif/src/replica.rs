//! A replica's primitives (contract section 10), for LiteStash.Cluster:
//! routing a key, applying a replication log entry, the applied index, and
//! shard snapshots. The writes among them go through write.rs.

use crate::error::{guard, ok_or_error, result};
use crate::registry::resolve;
use crate::term::{to_value, Budget, Refusal, PAIR};
use litestash_core::{Error, ErrorKind, Key, ReplicaOp, Request, Value};
use rustler::{Atom, Binary, Env, NifResult, Term};

rustler::atoms! {
    set,
    put_new,
    cas,
    incr,
    delete,
    expire,
    clear,
    sweep,
}

/// The shard index (0..15) of `key`, or an `:invalid_key` error.
#[rustler::nif]
fn shard_of<'a>(env: Env<'a>, key: Binary<'a>) -> NifResult<Term<'a>> {
    let _slice = crate::slices::Slice::start();

    guard(env, || {
        Ok(result(env, Key::new(key.as_slice()).map(|k| k.route.shard)))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn replica_applied<'a>(env: Env<'a>, server: Term<'a>, shard: usize) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(result(
            env,
            resolve(server).and_then(|s| s.store.replica_applied(shard)),
        ))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn shard_snapshot<'a>(
    env: Env<'a>,
    server: Term<'a>,
    shard: usize,
    dest: String,
) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(ok_or_error(
            env,
            resolve(server)
                .and_then(|s| s.store.shard_snapshot(shard, std::path::Path::new(&dest))),
        ))
    })
}

/// An op of an entry with its values converted, before it borrows them.
enum Parsed<'a> {
    Set(Binary<'a>, Value, Option<i64>),
    PutNew(Binary<'a>, Value, Option<i64>),
    Cas(Binary<'a>, Value, Value, Option<i64>),
    Incr(Binary<'a>, i64),
    Delete(Binary<'a>),
    Expire(Binary<'a>, Option<i64>),
    Clear,
    Sweep(usize),
}

fn bad(what: &str) -> Refusal {
    Refusal::Error(Error::new(
        ErrorKind::InvalidArgument,
        format!("a replicated op {what}"),
    ))
}

fn parse<'a>(term: Term<'a>, budget: &mut Budget) -> Result<Parsed<'a>, Refusal> {
    if let Ok(tag) = term.decode::<Atom>() {
        return if tag == clear() {
            Ok(Parsed::Clear)
        } else {
            Err(bad("is :clear, {:sweep, limit} or a tuple naming a write"))
        };
    }
    let items = rustler::types::tuple::get_tuple(term).map_err(|_| bad("is not a tuple"))?;
    let tag: Atom = items
        .first()
        .and_then(|t| t.decode().ok())
        .ok_or_else(|| bad("does not start with its name"))?;
    let key = |i: usize| -> Result<Binary<'a>, Refusal> {
        items
            .get(i)
            .and_then(|t| t.decode().ok())
            .ok_or_else(|| bad("has no binary key"))
    };
    let at = |i: usize| -> Result<Option<i64>, Refusal> {
        items
            .get(i)
            .and_then(|t| t.decode().ok())
            .ok_or_else(|| bad("has a bad deadline"))
    };
    budget.next_value();
    let value = |i: usize, budget: &mut Budget| -> Result<Value, Refusal> {
        budget.next_value();
        to_value(*items.get(i).ok_or_else(|| bad("lacks a value"))?, budget)
    };
    Ok(match (tag, items.len()) {
        (t, 4) if t == set() => Parsed::Set(key(1)?, value(2, budget)?, at(3)?),
        (t, 4) if t == put_new() => Parsed::PutNew(key(1)?, value(2, budget)?, at(3)?),
        (t, 5) if t == cas() => {
            let expected = value(2, budget)?;
            Parsed::Cas(key(1)?, expected, value(3, budget)?, at(4)?)
        }
        (t, 3) if t == incr() => Parsed::Incr(
            key(1)?,
            items[2].decode().map_err(|_| bad("has a bad amount"))?,
        ),
        (t, 2) if t == delete() => Parsed::Delete(key(1)?),
        (t, 3) if t == expire() => Parsed::Expire(key(1)?, at(2)?),
        (t, 2) if t == sweep() => {
            Parsed::Sweep(items[1].decode().map_err(|_| bad("has a bad limit"))?)
        }
        _ => return Err(bad("has an unknown name or arity")),
    })
}

/// `[shard, index, now_ms, ops]` to the entry's request.
pub fn build_apply(args: &[Term], budget: &mut Budget) -> Result<Request, Refusal> {
    let number = |i: usize, what: &str| -> Result<i64, Refusal> {
        args[i]
            .decode()
            .map_err(|_| bad(&format!("entry has a bad {what}")))
    };
    let shard = usize::try_from(number(0, "shard")?).map_err(|_| bad("entry has a bad shard"))?;
    let index = u64::try_from(number(1, "index")?).map_err(|_| bad("entry has a bad index"))?;
    let now_ms = number(2, "clock")?;
    let list = args[3]
        .into_list_iterator()
        .map_err(|_| bad("list is not a list"))?;
    let mut parsed = Vec::new();
    for term in list {
        budget.charge(PAIR)?;
        parsed.push(parse(term, budget)?);
    }
    let ops: Vec<ReplicaOp> = parsed
        .iter()
        .map(|p| match p {
            Parsed::Set(k, v, at) => ReplicaOp::Set(k.as_slice(), v, *at),
            Parsed::PutNew(k, v, at) => ReplicaOp::PutNew(k.as_slice(), v, *at),
            Parsed::Cas(k, e, n, at) => ReplicaOp::CompareAndSet(k.as_slice(), e, n, *at),
            Parsed::Incr(k, by) => ReplicaOp::Incr(k.as_slice(), *by),
            Parsed::Delete(k) => ReplicaOp::Delete(k.as_slice()),
            Parsed::Expire(k, at) => ReplicaOp::Expire(k.as_slice(), *at),
            Parsed::Clear => ReplicaOp::Clear,
            Parsed::Sweep(limit) => ReplicaOp::Sweep(*limit),
        })
        .collect();
    Ok(Request::replicated(shard, index, now_ms, &ops)?)
}

/// `[shard, src_path]` to the install request.
pub fn build_install(args: &[Term], _: &mut Budget) -> Result<Request, Refusal> {
    let shard: usize = args[0]
        .decode()
        .map_err(|_| bad("install has a bad shard"))?;
    let path: String = args[1]
        .decode()
        .map_err(|_| bad("install has a bad path"))?;
    if shard >= litestash_core::SHARD_COUNT {
        return Err(bad("install names no shard"));
    }
    Ok(Request::install(shard, std::path::Path::new(&path)))
}
