//! NIFs for tests that provoke what production never should. Compiled only
//! with the `test-hooks` feature, which Mix turns on for `MIX_ENV=test`.

use crate::error::guard;
use crate::resource::StoreResource;
use rustler::types::atom;
use rustler::{Encoder, Env, NifResult, ResourceArc, Term};
use std::sync::Mutex;

/// While `Some`, the panic hook's lines go here instead of stderr, so that
/// a test that provokes panics can assert on them and print nothing.
static CAPTURED: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Keeps `line` if panics are being captured; `false` to print it.
pub fn capture(line: &str) -> bool {
    let mut captured = CAPTURED.lock().unwrap_or_else(|p| p.into_inner());
    match captured.as_mut() {
        Some(lines) => {
            lines.push(line.to_owned());
            true
        }
        None => false,
    }
}

/// Starts (`true`) or stops capturing the panic hook's lines; returns the
/// lines captured so far.
#[rustler::nif]
fn debug_capture_panics(env: Env, on: bool) -> NifResult<Term> {
    guard(env, || {
        let mut captured = CAPTURED.lock().unwrap_or_else(|p| p.into_inner());
        let lines = captured.take().unwrap_or_default();
        *captured = on.then(Vec::new);
        Ok(lines.encode(env))
    })
}

/// Poisons every lock of the store, to prove each is recovered.
#[rustler::nif(schedule = "DirtyIo")]
fn debug_poison_locks(env: Env, store: ResourceArc<StoreResource>) -> NifResult<Term> {
    guard(env, || {
        store.store.poison_locks_for_test();
        Ok(atom::ok().encode(env))
    })
}

/// Panics inside the NIF, to prove a panic reaches the caller as an error
/// and the VM carries on.
#[rustler::nif]
fn debug_panic(env: Env) -> NifResult<Term> {
    guard(env, || panic!("debug_panic called"))
}

/// Makes the next write on `key`'s shard panic inside its transaction.
#[rustler::nif(schedule = "DirtyIo")]
fn debug_panic_in_next_write<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreResource>,
    key: rustler::Binary<'a>,
) -> NifResult<Term<'a>> {
    guard(env, || {
        Ok(crate::error::ok_or_error(
            env,
            store.store.panic_in_next_write_for_test(key.as_slice()),
        ))
    })
}

/// Whether a write of `value` (`set`) stays on the calling normal
/// scheduler, within the walk's units (its deadline left out, so that the
/// answer does not depend on the machine's load), instead of going to a
/// dirty one: for the tests that time the normal-scheduler step at its
/// largest.
#[rustler::nif]
fn debug_fits_normal_budget(value: Term) -> bool {
    let mut budget = crate::term::Budget::normal_units();
    !matches!(
        crate::term::to_value(value, &mut budget),
        Err(crate::term::Refusal::OverBudget)
    )
}

/// As [`debug_fits_normal_budget`], for the pairs of a `set_many`.
#[rustler::nif]
fn debug_pairs_fit_normal_budget(pairs: Term) -> bool {
    !matches!(
        crate::write::build_set_many(&[pairs], &mut crate::term::Budget::normal_units()),
        Err(crate::term::Refusal::OverBudget)
    )
}
