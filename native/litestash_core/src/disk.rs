//! Room on the disk: the reserve a store keeps so that it can always give
//! back the space its own WAL files hold.
//!
//! A WAL holds more than the data it carries (each commit appends whole
//! 4 KiB pages), so a store can fill a small disk with WAL alone: 12 MiB of
//! it for 0.7 MiB of values, seen on a 12 MiB tmpfs. A checkpoint would give
//! that space back, but it first copies the WAL's pages into the database
//! file, which must grow to hold the new ones: on a disk with no byte free
//! it fails too, and so would every delete. So the store keeps a reserve, a
//! file of [`Options::disk_reserve`](crate::Options::disk_reserve) bytes
//! allocated when it opens (`litestash.reserve` in the data dir, beside the
//! shard dirs; no other implementation reads it). When a commit fails for
//! lack of room, the writer checkpoints; a checkpoint that needs to grow
//! its file borrows the reserve's space for it ([`Disk::lend`]) when the
//! WAL it truncates is larger than that growth, and allocates the reserve
//! again at once from what the truncation gave back. Writes that only free
//! space (deletes, clear, sweeps) may spend the reserve itself
//! ([`Disk::release`]) when nothing else made room; it is allocated again
//! once the file system has room for it ([`Disk::restore`]).
//!
//! Every writer hears of a full disk ([`Disk::alarm`]) and checkpoints, not
//! only the one whose commit failed: the disk is the whole store's.

use crate::locks::lock;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

/// The reserve's file name, in the data dir.
pub const RESERVE_FILE: &str = "litestash.reserve";

/// How often a released reserve is tried again.
const RESTORE_EVERY: Duration = Duration::from_secs(1);

/// What a writer can be woken with.
pub(crate) trait Wake: Send + Sync {
    /// Asks the writer thread for its background work soon.
    fn wake(&self);
}

/// The disk under one store, as its writers see it.
pub(crate) struct Disk {
    /// The data dir; `None` for an in-memory or read-only store.
    dir: Option<PathBuf>,
    /// Bytes the reserve holds when allocated.
    bytes: u64,
    /// The reserve's file, open; `None` when there is none (a reserve of
    /// 0, or it could not be created). Locked while lent.
    reserve: Mutex<Option<File>>,
    /// The reserve holds its bytes now.
    held: AtomicBool,
    /// Moved each time the disk filled or a writer gave WAL space back:
    /// every writer that sees it move checkpoints.
    epoch: AtomicU64,
    /// No restore is tried before this.
    next_restore: Mutex<Instant>,
    writers: Mutex<Vec<Weak<dyn Wake>>>,
}

impl Disk {
    /// The disk of a store on `dir` (`None`: no files) with a reserve of
    /// `bytes`, not yet made (see [`Disk::make_reserve`]).
    pub(crate) fn new(dir: Option<&Path>, bytes: u64) -> Disk {
        Disk {
            dir: dir.map(Path::to_path_buf),
            bytes,
            reserve: Mutex::new(None),
            held: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            next_restore: Mutex::new(Instant::now()),
            writers: Mutex::new(Vec::new()),
        }
    }

    /// Allocates the reserve if the file system has room for it (once the
    /// shard dirs exist: a data dir holding only a reserve would not be
    /// one). An existing reserve is reused; with a reserve of 0 it is
    /// removed. A reserve that cannot be made is tried again later.
    pub(crate) fn make_reserve(&self) {
        let Some(dir) = &self.dir else {
            return;
        };
        let path = dir.join(RESERVE_FILE);
        if self.bytes == 0 {
            let _ = std::fs::remove_file(&path);
            return;
        }
        if let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
        {
            self.held
                .store(allocate(&file, self.bytes), Ordering::Release);
            *lock(&self.reserve) = Some(file);
        }
    }

    /// Registers a writer to wake when the disk fills.
    pub(crate) fn register(&self, writer: Weak<dyn Wake>) {
        lock(&self.writers).push(writer);
    }

    /// Whether the reserve holds its bytes now.
    pub(crate) fn reserve_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Bytes the file system under the data dir has free for us; `None`
    /// when it cannot tell (or there are no files).
    fn available(&self) -> Option<u64> {
        let dir = self.dir.as_ref()?;
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: a NUL-terminated path and a zeroed statvfs for the call
        // to fill.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
        // Both are u64 on 64-bit Linux, narrower elsewhere.
        #[allow(clippy::useless_conversion)]
        let free = u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize));
        (rc == 0).then_some(free)
    }

    /// Tells every writer that the disk filled (or room came back): each
    /// checkpoints between its next batches.
    pub(crate) fn alarm(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let writers: Vec<_> = lock(&self.writers)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for writer in writers {
            writer.wake();
        }
    }

    /// The alarm's count: a writer that saw another one checkpoints.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The reserve's size when allocated.
    pub(crate) fn reserve_bytes(&self) -> u64 {
        self.bytes
    }

    /// Runs `f` with the reserve's space given back to the file system
    /// (`None`, without running it, when the reserve is not held), then
    /// allocates the reserve again from what `f` gave back, if it can.
    pub(crate) fn lend<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        let guard = lock(&self.reserve);
        let file = guard.as_ref()?;
        if !self.held.load(Ordering::Acquire) || file.set_len(0).is_err() {
            return None;
        }
        self.held.store(false, Ordering::Release);
        let result = f();
        self.held
            .store(allocate(file, self.bytes), Ordering::Release);
        Some(result)
    }

    /// Gives the reserve's space to the file system for good (until
    /// [`Disk::restore`]): for writes that free space and found no room.
    /// `true` if it held space to give.
    pub(crate) fn release(&self) -> bool {
        let guard = lock(&self.reserve);
        match guard.as_ref() {
            Some(file) if self.held.load(Ordering::Acquire) && file.set_len(0).is_ok() => {
                self.held.store(false, Ordering::Release);
                true
            }
            _ => false,
        }
    }

    /// Allocates a released reserve again once the file system has room
    /// for it twice over (so that making it leaves as much free), trying at
    /// most once a second. Cheap when the reserve is held.
    pub(crate) fn restore(&self) {
        if self.held.load(Ordering::Acquire) || self.bytes == 0 {
            return;
        }
        {
            let Ok(mut next) = self.next_restore.try_lock() else {
                return;
            };
            if Instant::now() < *next {
                return;
            }
            *next = Instant::now() + RESTORE_EVERY;
        }
        if self
            .available()
            .is_none_or(|free| free < self.bytes.saturating_mul(2))
        {
            return;
        }
        let Ok(guard) = self.reserve.try_lock() else {
            return;
        };
        if let Some(file) = guard.as_ref() {
            if !self.held.load(Ordering::Acquire) {
                self.held
                    .store(allocate(file, self.bytes), Ordering::Release);
            }
        }
    }
}

/// Allocates `bytes` of disk to `file` (not a sparse hole: the blocks are
/// the file system's to give); `true` on success. On failure the file is
/// cut back to nothing, so that a partial allocation holds no space.
fn allocate(file: &File, bytes: u64) -> bool {
    let Ok(len) = libc::off_t::try_from(bytes) else {
        return false;
    };
    if file.metadata().is_ok_and(|m| m.len() == bytes) {
        return true;
    }
    let _ = file.set_len(0);
    // SAFETY: a valid open descriptor; posix_fallocate only allocates.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc != 0 {
        let _ = file.set_len(0);
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Counter(AtomicU64);
    impl Wake for Counter {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn reserve_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(RESERVE_FILE)).map_or(0, |m| m.len())
    }

    #[test]
    fn the_reserve_is_allocated_lent_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(Some(dir.path()), 64 * 1024);
        assert!(!disk.reserve_held(), "not made yet");
        disk.make_reserve();
        assert!(disk.reserve_held());
        assert_eq!(reserve_len(dir.path()), 64 * 1024);
        let seen = disk.lend(|| reserve_len(dir.path()));
        assert_eq!(seen, Some(0), "the reserve is empty while lent");
        assert!(disk.reserve_held(), "allocated again after the loan");
        assert_eq!(reserve_len(dir.path()), 64 * 1024);
        assert!(disk.release());
        assert!(!disk.reserve_held());
        assert_eq!(reserve_len(dir.path()), 0);
        assert_eq!(disk.lend(|| ()), None, "nothing to lend once released");
        assert!(!disk.release());
        disk.restore();
        assert!(disk.reserve_held(), "restored: the disk has room");
        assert_eq!(reserve_len(dir.path()), 64 * 1024);
    }

    #[test]
    fn a_reserve_of_zero_removes_the_file_and_lends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        Disk::new(Some(dir.path()), 4096).make_reserve();
        assert_eq!(reserve_len(dir.path()), 4096);
        let disk = Disk::new(Some(dir.path()), 0);
        disk.make_reserve();
        assert!(!dir.path().join(RESERVE_FILE).exists());
        assert!(!disk.reserve_held());
        assert_eq!(disk.lend(|| ()), None);
        disk.restore();
        assert!(!disk.reserve_held());
    }

    #[test]
    fn the_alarm_wakes_every_writer_still_there() {
        let disk = Disk::new(None, 0);
        let here = Arc::new(Counter(AtomicU64::new(0)));
        let gone = Arc::new(Counter(AtomicU64::new(0)));
        let (a, b): (Arc<dyn Wake>, Arc<dyn Wake>) = (here.clone(), gone.clone());
        disk.register(Arc::downgrade(&a));
        disk.register(Arc::downgrade(&b));
        drop((a, b, gone));
        let before = disk.epoch();
        disk.alarm();
        disk.alarm();
        assert_eq!(disk.epoch(), before + 2);
        assert_eq!(here.0.load(Ordering::Relaxed), 2);
    }
}
