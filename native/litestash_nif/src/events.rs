//! The writers' events, sent to the store's owner for telemetry, with
//! backpressure: at most [`MAX_IN_FLIGHT`] wait in the owner's mailbox.
//! Past that they are dropped and counted, and the next event delivered
//! carries the count, so that a slow handler can neither grow the owner's
//! mailbox without bound nor hold `stop/1` behind it.

use crate::error::guard;
use crate::reply::off_scheduler;
use crate::resource::StoreResource;
use litestash_core::{Event, EventHook};
use rustler::env::OwnedEnv;
use rustler::types::atom;
use rustler::{Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

rustler::atoms! {
    litestash_event,
    commit,
    sweep,
}

/// Events sent to the owner and not yet handled, at most.
pub const MAX_IN_FLIGHT: usize = 64;

/// A store's events between its writers and its owner.
#[derive(Default)]
pub struct EventFlow {
    /// Sent and not yet handled (see [`event_handled`]).
    in_flight: AtomicUsize,
    /// Dropped since the last event sent.
    dropped: AtomicU64,
    /// Whether a receiver is set: the events already in its mailbox when
    /// it is unset are handled without telemetry.
    receiving: AtomicBool,
}

impl EventFlow {
    /// Claims a place in the owner's mailbox: the events dropped before
    /// this one, or `None` (and this one counted as dropped) when full.
    fn claim(&self) -> Option<u64> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::AcqRel);
            return None;
        }
        Some(self.dropped.swap(0, Ordering::AcqRel))
    }

    /// An event that was claimed and could not be sent, with the drops it
    /// carried.
    fn undeliverable(&self, dropped: u64) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.dropped.fetch_add(dropped + 1, Ordering::AcqRel);
    }
}

/// Sends the writers' events to `pid` as `{:litestash_event, :commit |
/// :sweep, shard, count, duration_us, dropped}`, `dropped` being the events
/// dropped since the last one sent; the owner turns them into telemetry
/// events and acknowledges each with [`event_handled`]. `nil` stops them.
#[rustler::nif]
fn set_event_receiver(
    env: Env,
    store: ResourceArc<StoreResource>,
    pid: Option<LocalPid>,
) -> NifResult<Term> {
    let _slice = crate::slices::Slice::start();

    guard(env, || {
        let flow = Arc::clone(&store.events);
        flow.receiving.store(pid.is_some(), Ordering::Release);
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
            let Some(dropped) = flow.claim() else {
                return;
            };
            let flow = Arc::clone(&flow);
            // An inline commit reports from a dirty scheduler thread.
            off_scheduler(move || {
                let mut owned = OwnedEnv::new();
                let sent = owned.send_and_clear(&pid, |env| {
                    let name = litestash_core::SHARDS.get(shard).copied().unwrap_or("");
                    (
                        litestash_event(),
                        kind,
                        name,
                        count,
                        duration.as_micros() as u64,
                        dropped,
                    )
                        .encode(env)
                });
                if sent.is_err() {
                    flow.undeliverable(dropped);
                }
            });
        });
        store.store.set_event_hook(Some(hook));
        Ok(atom::ok().encode(env))
    })
}

/// The owner has taken one event from its mailbox: frees its place, and
/// answers whether to emit it (false once the receiver was unset, as
/// `stop/1` does first, so that the events still queued take no time).
#[rustler::nif]
fn event_handled(store: ResourceArc<StoreResource>) -> bool {
    let _slice = crate::slices::Slice::start();

    let flow = &store.events;
    let _ = flow
        .in_flight
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    flow.receiving.load(Ordering::Acquire)
}
