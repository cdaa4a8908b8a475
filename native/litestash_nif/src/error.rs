//! Errors as Elixir data: `%LiteStash.Error{reason: atom, message: string}`,
//! and the guard that turns a panic into one.

use litestash_core::{Error, ErrorKind};
use rustler::types::atom;
use rustler::{Atom, Encoder, Env, NifException, NifResult, Term};
use std::panic::{catch_unwind, AssertUnwindSafe};

#[derive(NifException)]
#[module = "LiteStash.Error"]
struct ExError {
    reason: Atom,
    message: String,
}

/// `%LiteStash.Error{}` for `err`.
pub fn exception<'a>(env: Env<'a>, err: &Error) -> Term<'a> {
    let reason = Atom::from_str(env, err.kind().as_str()).unwrap_or_else(|_| atom::error());
    ExError {
        reason,
        message: err.message().to_owned(),
    }
    .encode(env)
}

/// `{:error, %LiteStash.Error{}}` for `err`.
pub fn error_tuple<'a>(env: Env<'a>, err: &Error) -> Term<'a> {
    (atom::error(), exception(env, err)).encode(env)
}

/// `{:error, %LiteStash.Error{reason: :internal}}` for a caught panic.
pub fn panicked<'a>(env: Env<'a>) -> Term<'a> {
    error_tuple(
        env,
        &Error::new(
            ErrorKind::Internal,
            "internal error in LiteStash (a panic was caught; the VM and other callers carry on)",
        ),
    )
}

/// Runs `f`, turning a panic into `{:error, %LiteStash.Error{reason: :internal}}`.
pub fn guard<'a>(env: Env<'a>, f: impl FnOnce() -> NifResult<Term<'a>>) -> NifResult<Term<'a>> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Ok(panicked(env)))
}

/// `{:ok, value}`.
pub fn ok<'a>(env: Env<'a>, value: impl Encoder) -> Term<'a> {
    (atom::ok(), value).encode(env)
}

/// `{:ok, value}` or `{:error, %LiteStash.Error{}}`.
pub fn result<'a, T: Encoder>(env: Env<'a>, r: Result<T, Error>) -> Term<'a> {
    match r {
        Ok(v) => ok(env, v),
        Err(e) => error_tuple(env, &e),
    }
}

/// `:ok`, or `{:error, %LiteStash.Error{}}`.
pub fn ok_or_error(env: Env, attempt: Result<(), Error>) -> Term {
    match attempt {
        Ok(()) => atom::ok().encode(env),
        Err(e) => error_tuple(env, &e),
    }
}

/// Every reason the core can give, for the test that keeps
/// `LiteStash.Error`'s documented list equal to it.
#[rustler::nif]
fn error_reasons(env: Env) -> NifResult<Term> {
    let _slice = crate::slices::Slice::start();

    guard(env, || {
        let names: Vec<Term> = ErrorKind::ALL
            .iter()
            .map(|kind| Atom::from_str(env, kind.as_str()).map(|a| a.encode(env)))
            .collect::<NifResult<_>>()?;
        Ok(names.encode(env))
    })
}
