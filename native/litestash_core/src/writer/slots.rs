//! How many of a store's writer threads commit at once.
//!
//! With `synchronous = NORMAL` a commit costs CPU, not disk waits: its WAL
//! frames go to the OS's page cache. Sixteen writer threads that each wake
//! to a short queue and commit it then share the machine's cores with the
//! VM's schedulers, and make many small commits. When writes crowd in
//! ([`CROWD`]), a writer thread takes a slot before it drains its queue
//! and gives it back after its commit:
//! with as many slots as cores, a writer that waits for one is not
//! runnable, its queue grows meanwhile, and it commits more writes per
//! transaction. Measured in `bench/NOTES.md` ("Commit slots").
//!
//! A slot is given up, never waited on, while its holder waits for
//! anything but the CPU: another process's lock on the file (see
//! `Writer::begin_write`), the disk gate or room on a full disk, a whole
//! file's `VACUUM`, a replica's install. A writer takes its slot only once
//! it has its engine (an inline commit may hold that while it waits for a
//! lock). So the writers of different shards never wait for each other's
//! files; they take turns at the CPU only.
//!
//! The bound is on batches, and not strict: a writer that gave its slot up
//! finishes its batch without one, and inline commits, sweeps, checkpoints
//! and compaction steps take none.

use crate::locks::lock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Writes queued or in hand over the whole store from which a writer
/// waits for a commit slot before it takes its batch: 8 per shard on
/// average. Fewer cannot make a batch grow much by waiting (64 callers of
/// W3, each waiting for its own write, make about 4 per shard), and their
/// callers would only wait longer; in 3 interleaved rounds W3 made
/// 24,944-33,136 ops/s with every writer waiting for a slot against
/// 28,751-34,244 with this bound (`bench/NOTES.md`, "Commit slots").
const CROWD: usize = 8 * crate::key::SHARD_COUNT;

/// The commit slots of one store.
pub(crate) struct CommitSlots {
    free: Mutex<usize>,
    freed: Condvar,
    /// [`CROWD`], unless a test set another.
    crowd: AtomicUsize,
}

impl CommitSlots {
    /// `count` slots (at least one).
    pub(crate) fn new(count: usize) -> Arc<CommitSlots> {
        Arc::new(CommitSlots {
            free: Mutex::new(count.max(1)),
            freed: Condvar::new(),
            crowd: AtomicUsize::new(CROWD),
        })
    }

    /// Whether `pending` writes (queued or in hand, the whole store) are
    /// a crowd, for which a writer takes a slot before its batch.
    pub(crate) fn crowded(&self, pending: usize) -> bool {
        pending >= self.crowd.load(Ordering::Relaxed)
    }

    /// Test hook: writers take a slot from `pending` writes on.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn set_crowd(&self, pending: usize) {
        self.crowd.store(pending, Ordering::Relaxed);
    }

    /// Waits for a free slot and takes it; it is free again when the
    /// [`Slot`] is dropped.
    pub(crate) fn take(self: &Arc<CommitSlots>) -> Slot {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Slot(Arc::clone(self))
    }
}

/// A taken commit slot, given back when dropped (a panic while committing
/// gives it back too).
pub(crate) struct Slot(Arc<CommitSlots>);

impl Drop for Slot {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn no_more_holders_at_once_than_slots_and_every_taker_gets_one() {
        for count in [1, 2, 3] {
            let slots = CommitSlots::new(count);
            let holding = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (slots, holding, most) =
                        (Arc::clone(&slots), Arc::clone(&holding), Arc::clone(&most));
                    std::thread::spawn(move || {
                        for _ in 0..50 {
                            let _slot = slots.take();
                            let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_micros(100));
                            holding.fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().expect("a taker panicked");
            }
            assert_eq!(most.load(Ordering::SeqCst), count, "{count} slots");
            assert_eq!(*lock(&slots.free), count, "every slot given back");
        }
    }

    #[test]
    fn a_slot_is_given_back_when_its_holder_panics() {
        let slots = CommitSlots::new(1);
        let held = Arc::clone(&slots);
        let panicked = std::thread::spawn(move || {
            let _slot = held.take();
            panic!("while committing");
        })
        .join();
        assert!(panicked.is_err());
        drop(slots.take());
    }
}
