//! The resources Elixir holds: an open store, and a walk over one shard.

use crate::events::EventFlow;
use crate::registry;
use litestash_core::{Snapshot, Store};
use rustler::{Env, LocalPid, Monitor, Resource};
use std::sync::{Arc, Mutex};

/// The store, owned by the process that opened it: when that process dies,
/// the store is closed and its data dir released.
pub struct StoreResource {
    pub store: Arc<Store>,
    /// The writers' events on their way to the owner.
    pub events: Arc<EventFlow>,
}

#[rustler::resource_impl]
impl Resource for StoreResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        close_in_background(&self.store);
        // Not found by name any more, the store is freed once no process
        // holds it. (The VM keeps the resource alive through this callback.)
        registry::forget(&self.store);
    }
}

impl Drop for StoreResource {
    fn drop(&mut self) {
        // A destructor runs on a scheduler: never block it on a commit.
        close_in_background(&self.store);
    }
}

/// Starts closing `store` at once and finishes on a thread of ours.
pub fn close_in_background(store: &Arc<Store>) {
    if store.is_closed() {
        return;
    }
    // At once, so that the data dir counts as closing, not open: a store
    // opened on it next waits for this close instead of failing. The
    // commits and the joins happen on a thread of ours.
    store.begin_close();
    let store = Arc::clone(store);
    let spawned = std::thread::Builder::new()
        .name("litestash close".into())
        .spawn(move || store.close());
    if spawned.is_err() {
        // No thread to be had: the last `Arc` closes the store when dropped.
    }
}

/// A walk over one shard in a consistent snapshot.
pub struct CursorResource {
    pub snapshot: Mutex<Option<Snapshot>>,
}

#[rustler::resource_impl]
impl Resource for CursorResource {}

impl Drop for CursorResource {
    fn drop(&mut self) {
        // Garbage collection frees a cursor on a normal scheduler; closing
        // its SQLite connection may checkpoint, so that happens elsewhere.
        let snapshot = self
            .snapshot
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(snapshot) = snapshot {
            // If no thread can be had, it is dropped here after all.
            let _ = std::thread::Builder::new()
                .name("litestash cursor".into())
                .spawn(move || drop(snapshot));
        }
    }
}
