//! The Erlang NIF of LiteStash: glue only. It holds a `litestash_core::Store`
//! as a resource, converts terms with its own walker, and schedules the work.
//!
//! One file per domain: `resource.rs` (what Elixir holds), `registry.rs`
//! (stores by name and owner), `admin.rs` (open, close, info, backup,
//! inspect), `read.rs` (reads: the value cache on the caller's scheduler,
//! the files on dirty IO ones), `write.rs` (writes: queued from the
//! caller's scheduler or committed inline on a dirty IO one, in one call),
//! `replica.rs` (a replica's primitives), `reply.rs` (answers by message),
//! `events.rs` (the writers' telemetry), `contract.rs` (the value encoding
//! alone), `term.rs` (terms to values and back), `schedule.rs` (continuing
//! a call on a dirty IO scheduler), `slices.rs` (how long calls hold the
//! caller's scheduler), `error.rs` (errors as data), and `test_hooks.rs`
//! (only with the `test-hooks` feature).
//!
//! Every NIF that runs on the caller's (normal) scheduler starts a
//! `slices::Slice` first, so that the benchmark can time each of them.

mod admin;
mod contract;
mod error;
mod events;
mod read;
mod registry;
mod replica;
mod reply;
mod resource;
mod schedule;
mod slices;
mod term;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod write;

use rustler::{Env, Term};

/// A panic is a bug, caught at the NIF boundary and reported as an
/// `:internal` error. The hook keeps it to one line on stderr instead of
/// the full backtrace `RUST_BACKTRACE=1` would print.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let line = format!("litestash: internal error (panic caught) at {location}: {payload}");
        #[cfg(feature = "test-hooks")]
        if test_hooks::capture(&line) {
            return;
        }
        eprintln!("{line}");
    }));
}

fn load(_env: Env, _info: Term) -> bool {
    install_panic_hook();
    true
}

rustler::init!("Elixir.LiteStash.Native", load = load);
