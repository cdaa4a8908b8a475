//! The contract's value encoding on its own, for the contract tests and
//! tools: a term to its MessagePack bytes and back.

use crate::error::{error_tuple, guard, ok, result};
use crate::term::{to_term, to_value, Budget};
use rustler::{Binary, Env, NifResult, Term};

/// The contract encoding of a term.
#[rustler::nif(schedule = "DirtyCpu")]
fn encode_value<'a>(env: Env<'a>, value: Term<'a>) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(match to_value(value, &mut Budget::unlimited()) {
            Ok(v) => match litestash_core::encode(&v) {
                Ok(bytes) => ok(env, rustler::OwnedBinary::from_slice(&bytes).release(env)),
                Err(e) => error_tuple(env, &e),
            },
            Err(refusal) => error_tuple(env, &refusal.into_error()),
        })
    })
}

/// The term a stored value's bytes decode to.
#[rustler::nif(schedule = "DirtyCpu")]
fn decode_value<'a>(env: Env<'a>, bytes: Binary<'a>) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(result(
            env,
            litestash_core::decode(bytes.as_slice()).and_then(|v| to_term(env, &v)),
        ))
    })
}
