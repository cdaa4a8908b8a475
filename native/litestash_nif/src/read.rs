//! Reads, each one NIF call on a dirty IO scheduler: point reads, walks
//! and counts. The server argument is a name, an owner pid or a handle.

use crate::error::{error_tuple, guard, ok, result};
use crate::registry::resolve;
use crate::resource::CursorResource;
use crate::term::{binary, to_term};
use litestash_core::{Error, ErrorKind, Value};
use rustler::types::atom;
use rustler::{Binary, Encoder, Env, NifResult, ResourceArc, Term};
use std::sync::Mutex;

rustler::atoms! {
    infinity,
}

/// The key as text for a message: what the caller gave, lossily.
fn shown(key: &Binary) -> String {
    String::from_utf8_lossy(key.as_slice()).into_owned()
}

#[rustler::nif(schedule = "DirtyIo")]
fn get<'a>(env: Env<'a>, server: Term<'a>, key: Binary<'a>) -> NifResult<Term<'a>> {
    guard(env, || {
        let found = resolve(server)
            .and_then(|s| s.store.get(key.as_slice()))
            .and_then(|value| match value {
                Some(value) => to_term(env, &value),
                None => Err(Error::not_found(&shown(&key))),
            });
        Ok(result(env, found))
    })
}

/// A read value as a term, or, for a value that does not decode (or
/// decodes to a map with a key twice), `{:error, %LiteStash.Error{reason:
/// :corrupt_value}}` naming `key`: in a map or a walk, one bad value does
/// not hide the others. Tuples are never stored values, so this cannot be
/// mistaken for one.
fn value_or_error<'a>(
    env: Env<'a>,
    key: &str,
    value: Result<Value, Error>,
) -> Result<Term<'a>, Error> {
    let corrupt = |e: Error| {
        if e.kind() == ErrorKind::CorruptValue {
            Ok(error_tuple(env, &e))
        } else {
            Err(e)
        }
    };
    match value {
        Ok(value) => to_term(env, &value).or_else(|e| {
            corrupt(Error::new(
                e.kind(),
                format!("key {key:?}: {}", e.message()),
            ))
        }),
        Err(e) => corrupt(e),
    }
}

/// `{:ok, %{key => value}}`; a key whose value does not decode maps to
/// `{:error, %LiteStash.Error{reason: :corrupt_value}}`.
#[rustler::nif(schedule = "DirtyIo")]
fn get_many<'a>(env: Env<'a>, server: Term<'a>, keys: Vec<Binary<'a>>) -> NifResult<Term<'a>> {
    guard(env, || {
        let slices: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let found = resolve(server)
            .and_then(|s| s.store.get_many(&slices))
            .and_then(|values| {
                let mut map = Term::map_new(env);
                for (key, value) in keys.iter().zip(values) {
                    if let Some(value) = value {
                        let term = value_or_error(env, &shown(key), value)?;
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
fn exists<'a>(env: Env<'a>, server: Term<'a>, key: Binary<'a>) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(result(
            env,
            resolve(server).and_then(|s| s.store.exists(key.as_slice())),
        ))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn keys<'a>(env: Env<'a>, server: Term<'a>, prefix: String) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(result(
            env,
            resolve(server).and_then(|s| s.store.keys(&prefix)),
        ))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn count<'a>(env: Env<'a>, server: Term<'a>, prefix: String) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(result(
            env,
            resolve(server).and_then(|s| s.store.count(&prefix)),
        ))
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn ttl<'a>(env: Env<'a>, server: Term<'a>, key: Binary<'a>) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(
            match resolve(server).and_then(|s| s.store.ttl(key.as_slice())) {
                Ok(Some(Some(ms))) => ok(env, ms),
                Ok(Some(None)) => ok(env, infinity()),
                Ok(None) => error_tuple(env, &Error::not_found(&shown(&key))),
                Err(e) => error_tuple(env, &e),
            },
        )
    })
}

#[rustler::nif(schedule = "DirtyIo")]
fn snapshot_open<'a>(
    env: Env<'a>,
    server: Term<'a>,
    shard: usize,
    prefix: String,
) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(
            match resolve(server).and_then(|s| s.store.snapshot(shard, &prefix)) {
                Ok(snapshot) => ok(
                    env,
                    ResourceArc::new(CursorResource {
                        snapshot: Mutex::new(Some(snapshot)),
                    }),
                ),
                Err(e) => error_tuple(env, &e),
            },
        )
    })
}

/// The next chunk: `{:ok, [{key, value}]}` (or `[key]` without values),
/// a value that does not decode as `{:error, %LiteStash.Error{}}` in its
/// pair; `{:ok, []}` once the walk is over.
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
                    .into_iter()
                    .map(|(k, v)| {
                        let value = value_or_error(env, &k, v)?;
                        Ok((binary(env, k.as_bytes())?, value).encode(env))
                    })
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
