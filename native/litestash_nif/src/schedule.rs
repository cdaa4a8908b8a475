//! Continuing a NIF call on a dirty IO scheduler (`enif_schedule_nif`):
//! still one call for Elixir, the rest of it where it may wait.

use rustler::sys::{ErlNifEnv, ErlNifTerm, ERL_NIF_DIRTY_JOB_IO_BOUND};
use rustler::{Env, Term};
use std::ffi::CStr;
use std::os::raw::c_int;

/// The C signature of a NIF continuation.
pub type Continuation =
    unsafe extern "C" fn(*mut ErlNifEnv, c_int, *const ErlNifTerm) -> ErlNifTerm;

/// Continues the call with `args` as `continuation` on a dirty IO
/// scheduler: the term the calling NIF must return.
pub fn reschedule<'a>(
    env: Env<'a>,
    name: &'static CStr,
    continuation: Continuation,
    args: &[Term<'a>],
) -> Term<'a> {
    let raw: Vec<ErlNifTerm> = args.iter().map(|t| t.as_c_arg()).collect();
    // SAFETY: the name is NUL-terminated and static, `raw` holds terms of
    // this env and outlives the call, and the continuation has the NIF
    // signature the VM expects.
    unsafe {
        Term::new(
            env,
            rustler::sys::enif_schedule_nif(
                env.as_c_arg(),
                name.as_ptr(),
                ERL_NIF_DIRTY_JOB_IO_BOUND as c_int,
                continuation,
                raw.len() as c_int,
                raw.as_ptr(),
            ),
        )
    }
}

/// The body of a continuation: builds the env and the argument terms the
/// VM passes, and returns `body`'s term.
///
/// # Safety
/// Only for the arguments the VM passes to a continuation: its env and
/// `argc` terms at `argv`, valid for the call.
pub unsafe fn continued(
    env: *mut ErlNifEnv,
    argc: c_int,
    argv: *const ErlNifTerm,
    body: impl for<'a> FnOnce(Env<'a>, &[Term<'a>]) -> Term<'a>,
) -> ErlNifTerm {
    let marker = ();
    let env = Env::new(&marker, env);
    let args: Vec<Term> = std::slice::from_raw_parts(argv, argc.max(0) as usize)
        .iter()
        .map(|&t| Term::new(env, t))
        .collect();
    body(env, &args).as_c_arg()
}
