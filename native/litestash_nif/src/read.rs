//! Reads, each one NIF call: point reads, walks and counts. The server
//! argument is a name, an owner pid or a handle.
//!
//! `get`, `exists` and `ttl` start on the caller's scheduler and ask the
//! store's value cache, which answers from memory or not at all (it never
//! waits, never touches the disk, and holds only values small enough to
//! turn into a term in microseconds). On a miss they read the shard file
//! there too if that cannot wait (`Store::read_stored_now`: pages in
//! memory, a value of at most 4 KiB); otherwise the call continues itself
//! on a dirty IO scheduler (`enif_schedule_nif`, still the same call for
//! Elixir). Either read fills the cache. Everything else runs on a dirty
//! IO scheduler from the start.

use crate::error::{error_tuple, guard, ok, panicked, result};
use crate::registry::resolve;
use crate::resource::CursorResource;
use crate::schedule::reschedule;
use crate::term::{binary, decode_term, to_term};
use litestash_core::{Error, ErrorKind, Stored, Value};
use rustler::sys::{ErlNifEnv, ErlNifTerm};
use rustler::types::atom;
use rustler::{Binary, Encoder, Env, NifResult, ResourceArc, Term};
use std::ffi::CStr;
use std::os::raw::c_int;
use std::sync::Arc;
use std::sync::Mutex;

/// Defines a key read: the NIF `$name(server, key)` that answers on the
/// caller's scheduler from the value cache or else from a read of the file
/// that waits for nothing (`Store::read_stored_now`: its value is at most
/// `CACHEABLE_BYTES`, so its term is quick to build too), both through
/// `$found` (what was found to the answer), and its dirty IO continuation
/// `$cont` that answers with `$read` when neither could.
macro_rules! key_read {
    ($name:ident, $cont:ident, $found:expr, $read:expr) => {
        unsafe extern "C" fn $cont(
            env: *mut ErlNifEnv,
            argc: c_int,
            argv: *const ErlNifTerm,
        ) -> ErlNifTerm {
            // SAFETY: the VM's own arguments to a continuation.
            crate::schedule::continued(env, argc, argv, |env, args| {
                let done = guard(env, || {
                    match (args.first(), args.get(1).map(|k| k.decode::<Binary>())) {
                        (Some(&server), Some(Ok(key))) => Ok($read(env, server, key)),
                        _ => Ok(panicked(env)),
                    }
                });
                done.unwrap_or_else(|_| panicked(env))
            })
        }

        #[rustler::nif]
        fn $name<'a>(env: Env<'a>, server: Term<'a>, key: Binary<'a>) -> NifResult<Term<'a>> {
            let _slice = crate::slices::Slice::start();

            guard(env, || {
                // The continuation gets the handle: no second registry look-up.
                let server = match resolve(server) {
                    Ok(store) => {
                        if let Some(hit) = store.store.get_cached(key.as_slice()) {
                            return Ok($found(env, Ok(Some(hit)), &key));
                        }
                        if let Some(found) = store.store.read_stored_now(key.as_slice()) {
                            return Ok($found(env, found, &key));
                        }
                        store.encode(env)
                    }
                    Err(_) => server,
                };
                let name =
                    match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                        Ok(name) => name,
                        Err(_) => return Ok(panicked(env)),
                    };
                Ok(reschedule(env, name, $cont, &[server, key.to_term(env)]))
            })
        }
    };
}

rustler::atoms! {
    infinity,
}

/// The key as text for a message: what the caller gave, lossily.
fn shown(key: &Binary) -> String {
    String::from_utf8_lossy(key.as_slice()).into_owned()
}

/// The term of a read value; a corrupt one is an error naming `key`.
fn value_term<'a>(env: Env<'a>, stored: &Stored, key: &Binary) -> Result<Term<'a>, Error> {
    decode_term(env, stored.encoded())
        .map_err(|e| Error::new(e.kind(), format!("key {:?}: {}", shown(key), e.message())))
}

/// What a key read found: the stored value of the key, if it has one.
type Found = Result<Option<Arc<Stored>>, Error>;

/// `get`'s answer to what was found.
fn get_found<'a>(env: Env<'a>, found: Found, key: &Binary) -> Term<'a> {
    let term = found.and_then(|value| match value {
        Some(stored) => value_term(env, &stored, key),
        None => Err(Error::not_found(&shown(key))),
    });
    result(env, term)
}

fn get_read<'a>(env: Env<'a>, server: Term<'a>, key: Binary<'a>) -> Term<'a> {
    // The caller's scheduler has just asked the cache: read the file.
    let found = resolve(server).and_then(|s| s.store.read_stored(key.as_slice()));
    get_found(env, found, &key)
}

key_read!(get, get_dirty, get_found, get_read);

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

/// `exists`'s answer to what was found.
fn exists_found<'a>(env: Env<'a>, found: Found, _key: &Binary) -> Term<'a> {
    result(env, found.map(|stored| stored.is_some()))
}

fn exists_read<'a>(env: Env<'a>, server: Term<'a>, key: Binary<'a>) -> Term<'a> {
    result(
        env,
        resolve(server).and_then(|s| s.store.exists(key.as_slice())),
    )
}

key_read!(exists, exists_dirty, exists_found, exists_read);

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

/// `ttl`'s answer to what was found.
fn ttl_found<'a>(env: Env<'a>, found: Found, key: &Binary) -> Term<'a> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    match found.map(|stored| stored.map(|s| s.expires_at())) {
        Ok(Some(None)) => ok(env, infinity()),
        Ok(Some(Some(at))) if at > now => ok(env, at - now),
        Ok(_) => error_tuple(env, &Error::not_found(&shown(key))),
        Err(e) => error_tuple(env, &e),
    }
}

fn ttl_read<'a>(env: Env<'a>, server: Term<'a>, key: Binary<'a>) -> Term<'a> {
    match resolve(server).and_then(|s| s.store.ttl(key.as_slice())) {
        Ok(Some(Some(ms))) => ok(env, ms),
        Ok(Some(None)) => ok(env, infinity()),
        Ok(None) => error_tuple(env, &Error::not_found(&shown(&key))),
        Err(e) => error_tuple(env, &e),
    }
}

key_read!(ttl, ttl_dirty, ttl_found, ttl_read);

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
