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
    /// Runs `pause` on the writer after each commit, between its COMMIT
    /// and the value cache's recording of it: the window in which another
    /// process's commit must still be noticed. `None` removes it.
    pub fn before_cache_recording_for_test(&self, pause: Option<crate::cache::Pause>) {
        *lock(&self.cache.before_recording) = pause;
    }
}
