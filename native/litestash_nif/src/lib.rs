//! The Erlang NIF of LiteStash: glue only. It holds a `litestash_core::Store`
//! as a resource, converts terms with its own walker, and schedules the work:
//! reads on dirty IO schedulers, writes queued to the shard writer threads,
//! which answer the calling process with a message.

mod error;
mod nifs;
mod term;

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
        eprintln!("litestash: internal error (panic caught) at {location}: {payload}");
    }));
}

fn load(_env: Env, _info: Term) -> bool {
    install_panic_hook();
    true
}

rustler::init!("Elixir.LiteStash.Native", load = load);
