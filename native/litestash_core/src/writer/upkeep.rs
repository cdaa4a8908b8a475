//! A writer's work between its callers' batches: WAL checkpoints, expiry
//! sweeps and stepwise compaction.

use super::room::Need;
use super::Writer;
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::reply::{Outcome, Reply};
use crate::shard::sql;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a checkpoint waits for readers before giving up for now.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(100);

impl Writer {
    /// How long the thread may sleep before the next sweep or compaction
    /// step is due.
    pub(super) fn idle_wait(&self) -> Duration {
        if self.compacting.is_empty() {
            let sweep = self.next_sweep.saturating_duration_since(Instant::now());
            self.disk_wait().map_or(sweep, |disk| disk.min(sweep))
        } else {
            Duration::ZERO
        }
    }

    /// Work done between batches: checkpoints, expiry sweeps, compaction.
    pub(super) fn background(&mut self) {
        self.checkpoint_if_due();
        self.heed_disk();
        // A replica's expired keys are swept through its log, never here.
        if Instant::now() >= self.next_sweep && !self.replica {
            let started = Instant::now();
            // Briefly: another process holding the lock must not make the
            // callers' next batch wait behind a sweep's busy timeout too.
            let swept =
                self.briefly(|w| w.commit_with_room(Need::SWEEP, |w| w.sweep(w.sweep_batch)));
            if let Ok(deleted @ 1..) = swept {
                let shard = self.file.index;
                self.hook.emit(|| Event::Sweep {
                    shard,
                    deleted,
                    duration: started.elapsed(),
                });
            }
            // A full batch means more are due: sweep again soon, between
            // the callers' batches.
            self.next_sweep = match swept {
                Ok(n) if n >= self.sweep_batch => Instant::now(),
                _ => Instant::now() + self.sweep_every,
            };
        }
        if !self.compacting.is_empty() {
            match self.compact_step() {
                Ok(true) => {}
                Ok(false) => {
                    for reply in self.compacting.drain(..) {
                        reply.send(Ok(Outcome::Done));
                    }
                }
                Err(e) => {
                    for reply in self.compacting.drain(..) {
                        reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Answers waiting compactions at shutdown.
    pub(super) fn abandon_compactions(&mut self) {
        for reply in self.compacting.drain(..) {
            reply.send(Err(Error::new(
                ErrorKind::Closed,
                "the store closed before compaction finished; what was done is kept",
            )));
        }
    }

    /// Deletes up to `limit` expired keys (row and expiry row together).
    pub(super) fn sweep(&mut self, limit: usize) -> Result<usize> {
        #[cfg(feature = "test-hooks")]
        if std::mem::take(&mut self.panic_in_sweep) {
            panic!("a panic injected by a test, inside a sweep");
        }
        let due: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare_cached(&sql::expiry_due(limit))
                .map_err(|e| self.file.err(e))?;
            let rows = stmt
                .query_map([self.now().ms], |r| r.get(0))
                .map_err(|e| self.file.err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.file.err(e))?
        };
        for hash in &due {
            self.remove_hash(hash)?;
        }
        Ok(due.len())
    }

    /// Turns on incremental vacuum if the file lacks it (a one-time full
    /// VACUUM), then queues the caller for the stepwise compaction.
    pub(super) fn start_compaction(&mut self, reply: Reply) {
        let mode: Result<i64> = self
            .conn
            .query_row(sql::AUTO_VACUUM, [], |r| r.get(0))
            .map_err(|e| self.file.err(e));
        let ready = match mode {
            Ok(2) => Ok(()),
            Ok(_) => self
                .conn
                .execute_batch(sql::ENABLE_INCREMENTAL_VACUUM)
                .map_err(|e| self.file.err(e)),
            Err(e) => Err(e),
        };
        match ready {
            Ok(()) => self.compacting.push(reply),
            Err(e) => reply.send(Err(e)),
        }
    }

    /// Frees up to 256 pages; `true` while free pages remain.
    fn compact_step(&mut self) -> Result<bool> {
        // The pragma frees one page per row it steps; execute_batch would
        // step it once and free a single page.
        self.conn
            .prepare(sql::INCREMENTAL_VACUUM_STEP)
            .and_then(|mut stmt| {
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
                Ok(())
            })
            .map_err(|e| self.file.err(e))?;
        let free: i64 = self
            .conn
            .query_row(sql::FREELIST_COUNT, [], |r| r.get(0))
            .map_err(|e| self.file.err(e))?;
        if free == 0 {
            let _ = self.checkpoint("TRUNCATE");
        }
        Ok(free > 0)
    }

    /// Whether [`Writer::checkpoint_if_due`] has work to do.
    pub(super) fn checkpoint_due(&self) -> bool {
        let pages = self.wal_pages.load(Ordering::Relaxed);
        pages >= self.checkpoint_pages
            || (pages >= self.truncate_pages && Instant::now() >= self.next_truncate)
    }

    /// Copies the WAL back into the file once it holds `checkpoint_pages`,
    /// without waiting for readers; past `truncate_pages` (a WAL readers kept
    /// from resetting) waits for them and truncates it.
    fn checkpoint_if_due(&mut self) {
        let pages = self.wal_pages.load(Ordering::Relaxed);
        if pages >= self.truncate_pages && Instant::now() >= self.next_truncate {
            // A reader that keeps its snapshot (a slow stream, a backup,
            // another process) blocks the truncation: try again in a
            // second rather than after every batch.
            match self.checkpoint("TRUNCATE") {
                Ok(true) => self.wal_pages.store(0, Ordering::Relaxed),
                _ => self.next_truncate = Instant::now() + Duration::from_secs(1),
            }
        } else if pages >= self.checkpoint_pages {
            let _ = self.checkpoint("PASSIVE");
        }
    }

    /// Runs a checkpoint; `Ok(true)` when it completed. Readers are waited
    /// for briefly, never for the connection's full busy timeout: a reader
    /// holding a snapshot must not stall the shard's writes.
    pub(super) fn checkpoint(&mut self, mode: &str) -> Result<bool> {
        self.briefly(|w| {
            w.conn
                .query_row(&sql::wal_checkpoint(mode), [], |r| {
                    r.get::<_, i64>(0).map(|busy| busy == 0)
                })
                .map_err(|e| w.file.err(e))
        })
    }

    /// Runs `f` with the connection's busy timeout cut to
    /// [`CHECKPOINT_WAIT`]: background work never waits long for a lock.
    /// Inside another `briefly` (a sweep that checkpoints to make room),
    /// `f` just runs: the full timeout comes back only at the outer end.
    fn briefly<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.brief {
            return f(self);
        }
        self.wait_for_lock(CHECKPOINT_WAIT)?;
        self.brief = true;
        let result = f(self);
        self.brief = false;
        self.wait_for_lock(self.busy_timeout)?;
        result
    }
}
