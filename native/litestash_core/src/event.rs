//! What the shard writers report as they work, for observability.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// One thing a shard writer did.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum Event {
    /// A group commit: `batch_size` callers' writes in one transaction.
    Commit {
        /// Index into [`crate::SHARDS`].
        shard: usize,
        /// Writes in the transaction.
        batch_size: usize,
        /// From `BEGIN` to the end of `COMMIT`.
        duration: Duration,
    },
    /// An expiry sweep that deleted `deleted` keys.
    Sweep {
        /// Index into [`crate::SHARDS`].
        shard: usize,
        /// Keys deleted.
        deleted: usize,
        /// Time the sweep's transaction took.
        duration: Duration,
    },
}

/// Receives the writers' [`Event`]s: on the writer threads, or on the
/// thread of a caller whose write committed inline. It runs while the
/// shard's writer is locked, so it must not write to the store or close it.
pub type EventHook = Arc<dyn Fn(Event) + Send + Sync>;

/// Where the writers find the current hook (set after the store opens).
#[derive(Clone, Default)]
pub(crate) struct HookSlot(Arc<RwLock<Option<EventHook>>>);

impl HookSlot {
    /// Replaces the hook.
    pub(crate) fn set(&self, hook: Option<EventHook>) {
        match self.0.write() {
            Ok(mut slot) => *slot = hook,
            Err(poisoned) => *poisoned.into_inner() = hook,
        }
    }

    /// Hands the event `make` builds to the hook, if one is set; a hook
    /// that panics does not reach the writer.
    pub(crate) fn emit(&self, make: impl FnOnce() -> Event) {
        let hook = match self.0.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(hook) = hook {
            let event = make();
            let _ = catch_unwind(AssertUnwindSafe(|| hook(event)));
        }
    }

    #[cfg(feature = "test-hooks")]
    pub(crate) fn raw(&self) -> &RwLock<Option<EventHook>> {
        &self.0
    }
}
