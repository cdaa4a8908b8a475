//! What a writer does when the disk is full: gives back the space its WAL
//! holds, borrowing the store's reserve for the checkpoint when it must,
//! and tries the commit once more (see `disk.rs`).

use super::op::Op;
use super::Writer;
use crate::error::{ErrorKind, Result};
use crate::shard::{beside, sql};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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

    /// An expiry sweep's.
    pub(super) const SWEEP: Need = Need {
        bytes: 0,
        frees: true,
    };
}

impl Writer {
    /// Runs `f` in a transaction (see [`Writer::transaction`]); when it
    /// fails because the disk is full, makes room and runs it again: once
    /// after giving back WAL space, and for writes that only free space
    /// once more on the reserve.
    pub(super) fn commit_with_room<T>(
        &mut self,
        need: Need,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let mut result = self.transaction(&mut f);
        for attempt in 0..2 {
            match &result {
                Err(e) if e.kind() == ErrorKind::DiskFull && self.make_room(need, attempt) => {
                    result = self.transaction(&mut f);
                }
                _ => break,
            }
        }
        result
    }

    /// After a commit failed for lack of room: `true` when room was made
    /// that may let it through. At the first failure every writer is told
    /// to give back its WAL, and this one does at once. Writes that only
    /// free space may also go through on the reserve, released now or by
    /// another shard's writer (a `clear` fails on many shards at once). A
    /// page cap the write would pass is left alone.
    fn make_room(&mut self, need: Need, attempt: u32) -> bool {
        if attempt == 0 {
            if self.file.memory || self.at_page_cap(need) {
                return false;
            }
            self.disk.alarm();
            self.disk_epoch = self.disk.epoch();
            if self.give_back_wal() {
                self.disk.alarm();
                return true;
            }
        }
        need.frees && (self.disk.release() || !self.disk.reserve_held())
    }

    /// Checkpoints this shard and truncates its WAL: `true` when that gave
    /// space back. A checkpoint that must grow the file and finds no room
    /// borrows the reserve for it, if the WAL it frees is the larger: the
    /// reserve is allocated again from what the truncation gave back.
    fn give_back_wal(&mut self) -> bool {
        let wal = crate::admin::size(&beside(&self.file.path, "-wal"));
        if wal == 0 || self.file.memory {
            return false;
        }
        let done = match self.checkpoint("TRUNCATE") {
            Err(e) if e.kind() == ErrorKind::DiskFull => {
                let growth = self.checkpoint_growth();
                if growth >= wal || growth > self.disk.reserve_bytes() {
                    return false;
                }
                let disk = Arc::clone(&self.disk);
                disk.lend(|| self.checkpoint("TRUNCATE"))
                    .is_some_and(|r| matches!(r, Ok(true)))
            }
            result => matches!(result, Ok(true)),
        };
        if done {
            self.wal_pages.store(0, Ordering::Relaxed);
        }
        done
    }

    /// Whether the file's page cap (`max_page_count`), not the disk, is
    /// what the write met: it would take the file past it.
    fn at_page_cap(&self, need: Need) -> bool {
        let query = |pragma: &str| self.conn.query_row(pragma, [], |r| r.get::<_, i64>(0));
        match (query(sql::PAGE_COUNT), query(sql::MAX_PAGE_COUNT)) {
            (Ok(pages), Ok(cap)) => {
                let pages_needed = i64::try_from(need.bytes / 4096).unwrap_or(i64::MAX);
                pages.saturating_add(pages_needed).saturating_add(8) > cap
            }
            _ => true,
        }
    }

    /// Bytes the shard's file grows by when its WAL is checkpointed: the
    /// pages the WAL adds past the file's end.
    fn checkpoint_growth(&self) -> u64 {
        let query = |pragma: &str| self.conn.query_row(pragma, [], |r| r.get::<_, i64>(0));
        let (Ok(pages), Ok(page_size)) = (query(sql::PAGE_COUNT), query(sql::PAGE_SIZE)) else {
            return u64::MAX;
        };
        let after = u64::try_from(pages.saturating_mul(page_size)).unwrap_or(u64::MAX);
        after.saturating_sub(crate::admin::size(&self.file.path))
    }

    /// Background work for the disk: after an alarm, give back this
    /// shard's WAL (telling the others if that made room); a released
    /// reserve is allocated again once there is room.
    pub(super) fn heed_disk(&mut self) {
        let epoch = self.disk.epoch();
        if epoch != self.disk_epoch {
            self.disk_epoch = epoch;
            if self.give_back_wal() {
                self.disk.alarm();
                self.disk_epoch = self.disk.epoch();
            }
        }
        self.disk.restore();
    }
}
