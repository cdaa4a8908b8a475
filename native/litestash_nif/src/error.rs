//! Errors as Elixir data: `%LiteStash.Error{reason: atom, message: string}`.

use litestash_core::{Error, ErrorKind};
use rustler::{Atom, Encoder, Env, NifException, Term};

#[derive(NifException)]
#[module = "LiteStash.Error"]
struct ExError {
    reason: Atom,
    message: String,
}

/// `%LiteStash.Error{}` for `err`.
pub fn exception<'a>(env: Env<'a>, err: &Error) -> Term<'a> {
    let reason =
        Atom::from_str(env, err.kind().as_str()).unwrap_or_else(|_| rustler::types::atom::error());
    ExError {
        reason,
        message: err.message().to_owned(),
    }
    .encode(env)
}

/// `{:error, %LiteStash.Error{}}` for `err`.
pub fn error_tuple<'a>(env: Env<'a>, err: &Error) -> Term<'a> {
    (rustler::types::atom::error(), exception(env, err)).encode(env)
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
