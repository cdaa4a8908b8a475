//! Hooks for tests that provoke what production never should: poisoned
//! locks, a panic inside a transaction. Compiled only with the
//! `test-hooks` feature.

use crate::error::Result;
use crate::key::Key;
use crate::locks::lock;
use crate::open_dirs::OPEN_DIRS;
use crate::store::{Shard, Store};

impl Store {
    /// Poisons every lock of this store, and the registry of open data
    /// dirs, by panicking in a thread that holds them all, so that a test
    /// can prove that each one is recovered.
    pub fn poison_locks_for_test(&self) {
        let _ = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _dirs = lock(&OPEN_DIRS.0);
                    let _writers = lock(&self.writers);
                    let _hook = self.hook.raw().write();
                    let _shards: Vec<_> = self
                        .shards
                        .iter()
                        .filter_map(|shard| match shard {
                            Shard::Ready {
                                readers, engine, ..
                            } => Some((lock(readers), lock(engine))),
                            Shard::Reading { .. } | Shard::Broken(_) => None,
                        })
                        .collect();
                    panic!("poisoning LiteStash's locks for a test");
                })
                .join()
        });
    }

    /// Writers take a commit slot before their batch from `pending`
    /// writes (queued or in hand, the whole store) on, instead of the
    /// default crowd of 8 per shard; 0 makes every batch take one.
    pub fn set_slot_crowd_for_test(&self, pending: usize) {
        self.slots.set_crowd(pending);
    }

    /// Takes every commit slot of the store (see `writer/slots.rs`) until
    /// the returned value is dropped: the writer threads then wait for one
    /// before they drain their queues.
    pub fn hold_commit_slots_for_test(&self) -> HeldSlots {
        HeldSlots {
            _slots: (0..self.options.commit_slots())
                .map(|_| self.slots.take())
                .collect(),
        }
    }

    /// Messages queued to shard `shard`'s writer (jobs and wake-ups) right
    /// now; 0 for a shard without a writer.
    pub fn writer_backlog_for_test(&self, shard: usize) -> usize {
        match &self.shards[shard] {
            Shard::Ready { queue, .. } => queue.backlog(),
            _ => 0,
        }
    }

    /// The next write applied on `key`'s shard panics inside its
    /// transaction, as a bug would.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidKey`], a broken shard's error.
    pub fn panic_in_next_write_for_test(&self, key: &[u8]) -> Result<()> {
        let key = Key::new(key)?;
        match &self.shards[key.route.shard] {
            Shard::Ready { engine, .. } => {
                if let Some(writer) = lock(engine).as_mut() {
                    writer.panic_next = true;
                }
                Ok(())
            }
            Shard::Reading { .. } => Err(self.read_only_error()),
            Shard::Broken(e) => Err(e.clone()),
        }
    }
}

impl Store {
    /// The next expiry sweep of shard `shard` panics inside its
    /// transaction, as a bug would, and is asked for now.
    pub fn panic_in_next_sweep_for_test(&self, shard: usize) {
        if let Shard::Ready { engine, queue, .. } = &self.shards[shard] {
            if let Some(writer) = lock(engine).as_mut() {
                writer.panic_in_sweep = true;
            }
            queue.request_sweep();
        }
    }

    /// Whether the panic [`Store::panic_in_next_sweep_for_test`] asked
    /// for is still to come.
    pub fn sweep_panic_pending_for_test(&self, shard: usize) -> bool {
        match &self.shards[shard] {
            Shard::Ready { engine, .. } => lock(engine).as_ref().is_some_and(|w| w.panic_in_sweep),
            _ => false,
        }
    }

    /// Runs `pause` on the writer after each commit, between its COMMIT
    /// and the value cache's recording of it: the window in which another
    /// process's commit must still be noticed. `None` removes it.
    pub fn before_cache_recording_for_test(&self, pause: Option<crate::cache::Pause>) {
        *lock(&self.cache.before_recording) = pause;
    }
}

/// The data dir whose next backup "crashes" (panics, leaving its files as
/// a killed process would) before copying shard `index`.
static BACKUP_CRASH: std::sync::Mutex<Option<(std::path::PathBuf, usize)>> =
    std::sync::Mutex::new(None);

impl Store {
    /// The next backup of this store panics before copying shard `index`,
    /// as if the process were killed there: no clean-up runs.
    pub fn crash_next_backup_for_test(&self, index: usize) {
        *lock(&BACKUP_CRASH) = Some((self.dir.clone(), index));
    }
}

pub(crate) fn crash_backup_if_due(dir: &std::path::Path, index: usize) {
    let mut due = lock(&BACKUP_CRASH);
    if due.as_ref().is_some_and(|(d, i)| d == dir && *i == index) {
        *due = None;
        drop(due);
        panic!("a crash injected by a test, in the middle of a backup");
    }
}

/// Commit slots a test holds ([`Store::hold_commit_slots_for_test`]).
pub struct HeldSlots {
    _slots: Vec<crate::writer::Slot>,
}
