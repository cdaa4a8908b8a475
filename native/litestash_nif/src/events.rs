//! The writers' events, sent to the store's owner for telemetry.

use crate::error::guard;
use crate::reply::off_scheduler;
use crate::resource::StoreResource;
use litestash_core::{Event, EventHook};
use rustler::env::OwnedEnv;
use rustler::types::atom;
use rustler::{Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use std::sync::Arc;

rustler::atoms! {
    litestash_event,
    commit,
    sweep,
}

/// Sends the writers' events to `pid` as
/// `{:litestash_event, :commit | :sweep, shard, count, duration_us}`; the
/// owner turns them into telemetry events. `nil` stops them.
#[rustler::nif]
fn set_event_receiver(
    env: Env,
    store: ResourceArc<StoreResource>,
    pid: Option<LocalPid>,
) -> NifResult<Term> {
    guard(env, || {
        let Some(pid) = pid else {
            store.store.set_event_hook(None);
            return Ok(atom::ok().encode(env));
        };
        let hook: EventHook = Arc::new(move |event| {
            let (kind, shard, count, duration) = match event {
                Event::Commit {
                    shard,
                    batch_size,
                    duration,
                } => (commit(), shard, batch_size, duration),
                Event::Sweep {
                    shard,
                    deleted,
                    duration,
                } => (sweep(), shard, deleted, duration),
                _ => return,
            };
            // An inline commit reports from a dirty scheduler thread.
            off_scheduler(move || {
                let mut owned = OwnedEnv::new();
                let _ = owned.send_and_clear(&pid, |env| {
                    let name = litestash_core::SHARDS.get(shard).copied().unwrap_or("");
                    (
                        litestash_event(),
                        kind,
                        name,
                        count,
                        duration.as_micros() as u64,
                    )
                        .encode(env)
                });
            });
        });
        store.store.set_event_hook(Some(hook));
        Ok(atom::ok().encode(env))
    })
}
