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
use std::os::unix::fs::MetadataExt;
#[cfg(not(target_vendor = "apple"))]
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, RwLock, RwLockReadGuard, TryLockError, Weak};
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
    /// Moved by each alarm (a commit found the disk full): every writer
    /// that sees it move gives back its WAL.
    epoch: AtomicU64,
    /// No restore is tried before this.
    next_restore: Mutex<Instant>,
    /// The latest alarm writers acted on, and how many have: a writer that
    /// raised it waits for the others (see [`Disk::await_others`]).
    acted: Mutex<(u64, usize)>,
    acted_changed: Condvar,
    /// WAL give-backs that freed space, ever.
    given_back: AtomicU64,
    /// Held shared by every commit, exclusive while the reserve is lent:
    /// the space lent to one shard's checkpoint is not taken by another
    /// shard's commit meanwhile.
    gate: RwLock<()>,
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
            acted: Mutex::new((0, 0)),
            acted_changed: Condvar::new(),
            given_back: AtomicU64::new(0),
            gate: RwLock::new(()),
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

    /// Tells every writer that the disk filled: each gives back its WAL
    /// between its next batches, then says so ([`Disk::acted`]). The new
    /// alarm count.
    pub(crate) fn alarm(&self) -> u64 {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let writers: Vec<_> = lock(&self.writers)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for writer in writers {
            writer.wake();
        }
        epoch
    }

    /// A writer acted on alarm `epoch` (`gave_back`: and freed space).
    pub(crate) fn acted(&self, epoch: u64, gave_back: bool) {
        if gave_back {
            self.given_back.fetch_add(1, Ordering::AcqRel);
        }
        let mut acted = lock(&self.acted);
        match acted.0.cmp(&epoch) {
            std::cmp::Ordering::Less => *acted = (epoch, 1),
            std::cmp::Ordering::Equal => acted.1 += 1,
            std::cmp::Ordering::Greater => {}
        }
        self.acted_changed.notify_all();
    }

    /// Waits, at most `timeout`, until every writer but the caller has
    /// acted on alarm `epoch` (or a later one): `true` if any freed space
    /// meanwhile. Only writer threads and inline commits (on dirty
    /// schedulers) call it, on a write that met a full disk.
    pub(crate) fn await_others(&self, epoch: u64, timeout: Duration) -> bool {
        let before = self.given_back.load(Ordering::Acquire);
        let others = lock(&self.writers).len().saturating_sub(1);
        let deadline = Instant::now() + timeout;
        let mut acted = lock(&self.acted);
        while acted.0 < epoch || (acted.0 == epoch && acted.1 < others) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            acted = match self.acted_changed.wait_timeout(acted, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        drop(acted);
        self.given_back.load(Ordering::Acquire) != before
    }

    /// The alarm's count: a writer that saw another one checkpoints.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The reserve's size when allocated.
    pub(crate) fn reserve_bytes(&self) -> u64 {
        self.bytes
    }

    /// Runs `f` with up to `bytes` of the reserve's space given back to the
    /// file system (`None`, without running it, when the reserve is not
    /// held), then allocates the reserve again from what `f` gave back, if
    /// it can; if it cannot, the reserve is released (see
    /// [`Disk::restore`]).
    pub(crate) fn lend<T>(&self, bytes: u64, f: impl FnOnce() -> T) -> Option<T> {
        let _alone = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let guard = lock(&self.reserve);
        let file = guard.as_ref()?;
        let keep = self.bytes.saturating_sub(bytes);
        if !self.held.load(Ordering::Acquire) || file.set_len(keep).is_err() {
            return None;
        }
        self.held.store(false, Ordering::Release);
        let result = f();
        self.held
            .store(allocate(file, self.bytes), Ordering::Release);
        Some(result)
    }

    /// Held by a commit for its duration (see `gate`). Commits run on
    /// writer threads and dirty schedulers only; a loan holds it
    /// exclusively for one checkpoint.
    pub(crate) fn commit_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// [`Disk::commit_gate`] if it is free now: `None` while a loan holds
    /// it or waits for it.
    pub(crate) fn try_commit_gate(&self) -> Option<RwLockReadGuard<'_, ()>> {
        match self.gate.try_read() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
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

/// Allocates `bytes` of disk to `file` (blocks, not a sparse hole: a
/// copy of the file made sparse, or one cut short, is allocated again);
/// `true` on success. On failure the file is cut back to nothing, so that
/// a partial allocation holds no space.
fn allocate(file: &File, bytes: u64) -> bool {
    let allocated = |file: &File| {
        file.metadata()
            .is_ok_and(|m| m.len() == bytes && m.blocks().saturating_mul(512) >= bytes)
    };
    if allocated(file) {
        return true;
    }
    if preallocate(file, bytes) && allocated(file) {
        return true;
    }
    let _ = file.set_len(0);
    false
}

/// `posix_fallocate` where the C library has it.
#[cfg(not(target_vendor = "apple"))]
fn preallocate(file: &File, bytes: u64) -> bool {
    let Ok(len) = libc::off_t::try_from(bytes) else {
        return false;
    };
    let _ = file.set_len(bytes.min(file.metadata().map_or(0, |m| m.len())));
    // SAFETY: a valid open descriptor; posix_fallocate only allocates.
    unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) == 0 }
}

/// Elsewhere (macOS has no posix_fallocate): the bytes written out.
#[cfg(target_vendor = "apple")]
fn preallocate(file: &File, bytes: u64) -> bool {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = file;
    let block = [0x5a_u8; 64 * 1024];
    if file.set_len(0).is_err() || file.seek(SeekFrom::Start(0)).is_err() {
        return false;
    }
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
        if file.write_all(&block[..n]).is_err() {
            return false;
        }
        left -= n as u64;
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
        let seen = disk.lend(16 * 1024, || reserve_len(dir.path()));
        assert_eq!(seen, Some(48 * 1024), "16 KiB of it lent");
        let seen = disk.lend(u64::MAX, || reserve_len(dir.path()));
        assert_eq!(seen, Some(0), "all of it lent");
        assert!(disk.reserve_held(), "allocated again after the loan");
        assert_eq!(reserve_len(dir.path()), 64 * 1024);
        assert!(disk.release());
        assert!(!disk.reserve_held());
        assert_eq!(reserve_len(dir.path()), 0);
        assert_eq!(disk.lend(1, || ()), None, "nothing to lend once released");
        assert!(!disk.release());
        disk.restore();
        assert!(disk.reserve_held(), "restored: the disk has room");
        assert_eq!(reserve_len(dir.path()), 64 * 1024);
    }

    #[test]
    fn a_sparse_reserve_is_allocated_for_real() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESERVE_FILE);
        // A copy made sparse: the right length, no blocks.
        File::create(&path).unwrap().set_len(256 * 1024).unwrap();
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 < 256 * 1024);
        let disk = Disk::new(Some(dir.path()), 256 * 1024);
        disk.make_reserve();
        assert!(disk.reserve_held());
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 >= 256 * 1024);
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
        assert_eq!(disk.lend(1, || ()), None);
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
        assert_eq!(disk.alarm(), before + 1);
        assert_eq!(disk.alarm(), before + 2);
        assert_eq!(here.0.load(Ordering::Relaxed), 2);
        // One other writer registered still (`here`): it acts, freeing space.
        let epoch = disk.epoch();
        let waiter = {
            let disk = Arc::new(disk);
            let d = Arc::clone(&disk);
            let t = std::thread::spawn(move || d.await_others(epoch, Duration::from_secs(10)));
            std::thread::sleep(Duration::from_millis(20));
            disk.acted(epoch, true);
            t
        };
        assert!(waiter.join().unwrap(), "saw the space freed");
    }
}
