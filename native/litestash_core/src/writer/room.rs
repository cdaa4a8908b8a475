//! What a writer does when the disk is full: gives back the space its WAL
//! holds, borrowing the store's reserve for the checkpoint when it must,
//! and tries the commit once more (see `disk.rs`).

use super::op::Op;
use super::Writer;
use crate::error::{ErrorKind, Result};
use crate::shard::{beside, sql};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After a give-back found no room, none is tried for this long.
const NO_ROOM_PAUSE: Duration = Duration::from_millis(250);

/// How long a write that met a full disk waits for the other writers to
/// give back their WAL.
const AWAIT_OTHERS: Duration = Duration::from_millis(250);

/// Give-backs tried after one alarm while there is no room for them.
const TRIES_PER_ALARM: u32 = 8;

/// Room lent beyond a checkpoint's growth (the file's own rounding).
const LEND_MARGIN: u64 = 256 * 1024;

/// What a transaction's writes ask of the disk.
#[derive(Debug, Clone, Copy)]
pub(super) struct Need {
    /// About how many bytes they add.
    bytes: u64,
    /// They only free space (deletes, clear, sweeps): they may spend the
    /// reserve when nothing else made room.
    frees: bool,
}

impl Need {
    /// What `ops`, committed together, ask.
    pub(super) fn of<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Need {
        ops.into_iter().fold(
            Need {
                bytes: 0,
                frees: true,
            },
            |need, op| Need {
                bytes: need.bytes + op.weight() as u64,
                frees: need.frees && op.frees(),
            },
        )
    }

    /// An expiry sweep's: it frees space, but as background work it does
    /// not spend the reserve, which is kept for the user's own deletes.
    pub(super) const SWEEP: Need = Need {
        bytes: 0,
        frees: false,
    };
}

impl Writer {
    /// Runs `f` in a transaction (see [`Writer::transaction`]); when it
    /// fails because the disk is full (not a page cap), every writer is
    /// told to give back its WAL and this one does at once: if that gave
    /// space back, `f` runs again. Writes that only free space run once
    /// more on the reserve itself, released now or by another shard's
    /// writer (a `clear` fails on many shards at once).
    pub(super) fn commit_with_room<T>(
        &mut self,
        need: Need,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let full = |r: &Result<T>| matches!(r, Err(e) if e.kind() == ErrorKind::DiskFull);
        let mut result = self.transaction(&mut f);
        if !full(&result) || self.file.memory || self.at_page_cap(need) {
            return result;
        }
        // What follows waits for the disk and for the other writers'
        // checkpoints, not for the CPU.
        self.slot = None;
        let epoch = self.disk.alarm();
        self.disk_epoch = epoch;
        if self.give_back_wal() {
            result = self.transaction(&mut f);
            if !full(&result) {
                return result;
            }
        }
        // The other shards' WALs may hold the space: once their writers
        // have given it back, once more.
        if self.disk.await_others(epoch, AWAIT_OTHERS) {
            result = self.transaction(&mut f);
            if !full(&result) {
                return result;
            }
        }
        if need.frees && (self.disk.release() || !self.disk.reserve_held()) {
            result = self.transaction(&mut f);
        }
        result
    }

    /// Whether the file's page cap (`max_page_count`), not the disk, is
    /// what the write met: it would take the file past it.
    fn at_page_cap(&self, need: Need) -> bool {
        match (
            self.pragma(sql::PAGE_COUNT),
            self.pragma(sql::MAX_PAGE_COUNT),
            self.pragma(sql::PAGE_SIZE),
        ) {
            (Some(pages), Some(cap), Some(page_size)) => {
                let pages_needed = i64::try_from(need.bytes).unwrap_or(i64::MAX) / page_size.max(1);
                pages.saturating_add(pages_needed).saturating_add(8) > cap
            }
            _ => true,
        }
    }

    /// The number a pragma of the shard's connection answers.
    fn pragma(&self, pragma: &str) -> Option<i64> {
        self.conn.query_row(pragma, [], |r| r.get(0)).ok()
    }

    /// Bytes the shard's WAL file holds.
    fn wal_bytes(&self) -> u64 {
        crate::admin::size(&beside(&self.file.path, "-wal"))
    }

    /// Checkpoints this shard and truncates its WAL: `true` when that gave
    /// space back. A checkpoint that must grow the file and finds no room
    /// borrows that much of the reserve, if the WAL it frees is larger:
    /// the reserve is allocated again from what the truncation gave back.
    /// After one that found no room, none is tried for [`NO_ROOM_PAUSE`]
    /// (a batch whose writes each fail does not checkpoint for each).
    fn give_back_wal(&mut self) -> bool {
        let wal = self.wal_bytes();
        if wal == 0 || self.file.memory || Instant::now() < self.next_give_back {
            return false;
        }
        let done = match self.checkpoint("TRUNCATE") {
            Err(e) if e.kind() == ErrorKind::DiskFull => {
                let growth = self.checkpoint_growth();
                if growth >= wal || growth > self.disk.reserve_bytes() {
                    false
                } else {
                    let disk = Arc::clone(&self.disk);
                    disk.lend(growth.saturating_add(LEND_MARGIN), || {
                        self.checkpoint("TRUNCATE")
                    })
                    .is_some_and(|r| matches!(r, Ok(true)))
                }
            }
            result => matches!(result, Ok(true)),
        };
        if done {
            self.wal_pages.store(0, Ordering::Relaxed);
        } else {
            self.next_give_back = Instant::now() + NO_ROOM_PAUSE;
        }
        done
    }

    /// Bytes of disk the shard's file needs to take the WAL's pages: its
    /// size after a checkpoint less the blocks it has. Allocated blocks,
    /// not its length: a checkpoint extends the file (a hole) before it
    /// writes, so after one that failed the length already says "done".
    fn checkpoint_growth(&self) -> u64 {
        let (Some(pages), Some(page_size)) =
            (self.pragma(sql::PAGE_COUNT), self.pragma(sql::PAGE_SIZE))
        else {
            return u64::MAX;
        };
        let after = u64::try_from(pages.saturating_mul(page_size)).unwrap_or(u64::MAX);
        let has = std::fs::metadata(&self.file.path).map_or(0, |m| m.blocks().saturating_mul(512));
        after.saturating_sub(has)
    }

    /// Background work for the disk: after an alarm, give back this
    /// shard's WAL (tried again a few times while there is no room for
    /// it, as other shards' give-backs may make some); a released reserve
    /// is allocated again once there is room. Never alarms itself, so an
    /// alarm ends once every writer has acted on it.
    pub(super) fn heed_disk(&mut self) {
        let epoch = self.disk.epoch();
        if epoch != self.disk_epoch {
            self.disk_epoch = epoch;
            self.disk_tries = TRIES_PER_ALARM;
            // Whatever the pause after a give-back that found no room: a
            // new alarm may mean another shard made some.
            self.next_give_back = Instant::now();
            let gave_back = self.try_give_back();
            self.disk.acted(epoch, gave_back);
        } else if self.disk_tries > 0 && Instant::now() >= self.next_give_back {
            self.try_give_back();
        }
        self.disk.restore();
    }

    /// One of the tries after an alarm: `true` if it freed space.
    fn try_give_back(&mut self) -> bool {
        self.disk_tries = self.disk_tries.saturating_sub(1);
        let gave_back = self.give_back_wal();
        if gave_back || self.wal_bytes() == 0 {
            self.disk_tries = 0;
        }
        gave_back
    }

    /// How long the thread may sleep before a give-back is due again.
    pub(super) fn disk_wait(&self) -> Option<Duration> {
        (self.disk_tries > 0).then(|| {
            self.next_give_back
                .saturating_duration_since(Instant::now())
        })
    }
}
