//! The read connections' VFS: a thin layer over SQLite's default one that,
//! while the calling thread has said it must not wait ([`without_waiting`],
//! a BEAM normal scheduler), never waits either.
//!
//! In that state `xRead` reads with `preadv2(..., RWF_NOWAIT)`, which
//! copies the bytes when the OS page cache holds them and fails at once
//! with `EAGAIN` when it would have to go to the disk; `xFetch` declines
//! (a page fault on the file's mapping could wait for the disk, so SQLite
//! reads the page with `xRead` instead); `xSleep` returns at once. Each of
//! the last two cases marks the attempt as one that would have waited, and
//! [`without_waiting`] answers `None`: the caller redoes the read where
//! waiting is allowed (a dirty IO scheduler). Locks need nothing here: the
//! caller sets a busy timeout of 0 (`SQLITE_BUSY` is an error, not a
//! sleep), and SQLite's POSIX locks never block (`F_SETLK`).
//!
//! Outside that state every call goes straight to the default VFS, so the
//! same connection reads through its mapping on a dirty scheduler.
//!
//! The descriptor is the default VFS's own (`unixFile.h`, the field after
//! three pointers in every SQLite release since 3.7): a second descriptor
//! on the file would drop this process's POSIX locks on it when closed.
//! [`File`] checks it against the file's path when it is opened (same
//! device and inode) and, if it does not match, every read of that file in
//! the no-wait state counts as one that would wait: slower, never wrong.
//! Without `preadv2` (not Linux) the same holds for every file.

use rusqlite::ffi;
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The VFS's name, for `sqlite3_open_v2`.
pub(crate) const NAME: &CStr = c"litestash-nowait";

/// What the calling thread allows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// It may wait: every call goes to the default VFS.
    Waits,
    /// It must not wait, and nothing has yet needed to.
    NoWait,
    /// It must not wait, and something would have.
    WouldWait,
}

thread_local! {
    static STATE: Cell<State> = const { Cell::new(State::Waits) };
}

/// Whether `RWF_NOWAIT` works here; cleared the first time the kernel or
/// the file system says it does not, so that reads stop trying it.
static SUPPORTED: AtomicBool = AtomicBool::new(cfg!(target_os = "linux"));

fn state() -> State {
    STATE.try_with(Cell::get).unwrap_or(State::Waits)
}

/// Notes that the current attempt would have waited.
fn would_wait() {
    let _ = STATE.try_with(|s| {
        if s.get() == State::NoWait {
            s.set(State::WouldWait);
        }
    });
}

/// Runs `f` (reads on connections opened with [`NAME`]) in the no-wait
/// state: `Some` of its answer, or `None` if any of its reads would have
/// waited for the disk or slept (whatever `f` answered then is not to be
/// trusted: a read that would wait fails).
pub(crate) fn without_waiting<T>(f: impl FnOnce() -> T) -> Option<T> {
    /// Puts the thread's state back however `f` ends.
    struct Restore(State);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = STATE.try_with(|s| s.set(self.0));
        }
    }
    let before = STATE.try_with(|s| s.replace(State::NoWait)).ok()?;
    let _restore = Restore(before);
    let out = f();
    (state() == State::NoWait).then_some(out)
}

/// Whether reads can be tried without waiting at all on this system: the
/// VFS is registered and `RWF_NOWAIT` has not been refused.
pub(crate) fn available() -> bool {
    registered() && SUPPORTED.load(Ordering::Relaxed)
}

/// Registers the VFS once (not as the default); `false` if SQLite has no
/// default VFS to build on or refused it.
pub(crate) fn registered() -> bool {
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find initializes SQLite and returns a VFS
        // that lives as long as the process (the default one is never
        // unregistered). The copy is leaked, as registered VFSs must live
        // as long as any connection that uses them.
        unsafe {
            let base = ffi::sqlite3_vfs_find(std::ptr::null());
            if base.is_null() || (*base).iVersion < 2 {
                return false;
            }
            let _ = BASE.set(Base(base));
            let Ok(size) = c_int::try_from(INNER_OFFSET) else {
                return false;
            };
            let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
                szOsFile: (*base).szOsFile + size,
                pNext: std::ptr::null_mut(),
                zName: NAME.as_ptr(),
                xOpen: Some(open),
                xSleep: Some(sleep),
                ..*base
            }));
            ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
        }
    })
}

/// The default VFS this one forwards to.
struct Base(*mut ffi::sqlite3_vfs);
// SAFETY: SQLite's VFS objects are immutable once registered and may be
// used from any thread.
unsafe impl Send for Base {}
unsafe impl Sync for Base {}
static BASE: OnceLock<Base> = OnceLock::new();

fn base() -> *mut ffi::sqlite3_vfs {
    BASE.get().map_or(std::ptr::null_mut(), |b| b.0)
}

/// A file of this VFS: SQLite's header, the verified descriptor, then the
/// default VFS's own file object at [`INNER_OFFSET`].
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    /// The default VFS's descriptor for this file, or -1 (never read in
    /// the no-wait state).
    fd: c_int,
    inner: *mut ffi::sqlite3_file,
}

/// Where the default VFS's file object starts: after [`File`], aligned
/// for anything it may hold.
const INNER_OFFSET: usize = std::mem::size_of::<File>().next_multiple_of(16);

/// The default VFS's file object inside `file`.
///
/// # Safety
/// `file` is a [`File`] that [`open`] has set up.
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    (*file.cast::<File>()).inner
}

/// The default VFS's method `$m` of `$inner`.
macro_rules! method {
    ($inner:expr, $m:ident) => {{
        let methods = (*$inner).pMethods;
        if methods.is_null() {
            None
        } else {
            (*methods).$m
        }
    }};
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let _ = vfs;
    let base = base();
    let Some(base_open) = (if base.is_null() { None } else { (*base).xOpen }) else {
        return ffi::SQLITE_CANTOPEN;
    };
    let ours = file.cast::<File>();
    let inner = file
        .cast::<u8>()
        .add(INNER_OFFSET)
        .cast::<ffi::sqlite3_file>();
    (*ours).base.pMethods = std::ptr::null();
    (*ours).fd = -1;
    (*ours).inner = inner;
    (*inner).pMethods = std::ptr::null();
    let rc = base_open(base, name, inner, flags, out_flags);
    if (*inner).pMethods.is_null() {
        return rc;
    }
    (*ours).base.pMethods = &METHODS;
    if rc == ffi::SQLITE_OK
        && flags & (ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL) != 0
        && !name.is_null()
    {
        (*ours).fd = descriptor(inner, name);
    }
    rc
}

/// The default VFS's descriptor of `inner`, if it is the file at `name`.
///
/// # Safety
/// `inner` is an open file of the default (unix) VFS, `name` its path.
unsafe fn descriptor(inner: *mut ffi::sqlite3_file, name: *const c_char) -> c_int {
    // unixFile: pMethod, pVfs, pInode, then int h.
    let fd = *inner
        .cast::<u8>()
        .add(3 * std::mem::size_of::<*const c_void>())
        .cast::<c_int>();
    if fd < 0 {
        return -1;
    }
    let mut by_fd: libc::stat = std::mem::zeroed();
    let mut by_name: libc::stat = std::mem::zeroed();
    if libc::fstat(fd, &mut by_fd) != 0 || libc::stat(name, &mut by_name) != 0 {
        return -1;
    }
    if by_fd.st_dev == by_name.st_dev && by_fd.st_ino == by_name.st_ino {
        fd
    } else {
        -1
    }
}

unsafe extern "C" fn sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    let _ = vfs;
    if state() != State::Waits {
        would_wait();
        return 0;
    }
    let base = base();
    match if base.is_null() { None } else { (*base).xSleep } {
        Some(f) => f(base, micros),
        None => 0,
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    if state() == State::Waits {
        let inner = inner(file);
        return match method!(inner, xRead) {
            Some(f) => f(inner, buf, amount, offset),
            None => ffi::SQLITE_IOERR_READ,
        };
    }
    let fd = (*file.cast::<File>()).fd;
    if fd < 0 || !SUPPORTED.load(Ordering::Relaxed) {
        would_wait();
        return ffi::SQLITE_IOERR_READ;
    }
    read_now(
        fd,
        buf.cast::<u8>(),
        usize::try_from(amount).unwrap_or(0),
        offset,
    )
}

/// Reads `amount` bytes at `offset` from the page cache alone, as SQLite's
/// `xRead` answers: a read past the end fills the rest with zeros and says
/// `SQLITE_IOERR_SHORT_READ`.
#[cfg(target_os = "linux")]
unsafe fn read_now(fd: c_int, buf: *mut u8, amount: usize, offset: i64) -> c_int {
    let mut done = 0usize;
    while done < amount {
        let iov = libc::iovec {
            iov_base: buf.add(done).cast::<c_void>(),
            iov_len: amount - done,
        };
        let at = offset + i64::try_from(done).unwrap_or(i64::MAX);
        let n = libc::preadv2(fd, &iov, 1, at, libc::RWF_NOWAIT);
        if n > 0 {
            done += usize::try_from(n).unwrap_or(0);
            continue;
        }
        if n == 0 {
            std::ptr::write_bytes(buf.add(done), 0, amount - done);
            return ffi::SQLITE_IOERR_SHORT_READ;
        }
        let errno = *libc::__errno_location();
        if matches!(errno, libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) {
            SUPPORTED.store(false, Ordering::Relaxed);
        }
        would_wait();
        return ffi::SQLITE_IOERR_READ;
    }
    ffi::SQLITE_OK
}

#[cfg(not(target_os = "linux"))]
unsafe fn read_now(_fd: c_int, _buf: *mut u8, _amount: usize, _offset: i64) -> c_int {
    would_wait();
    ffi::SQLITE_IOERR_READ
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let inner = inner(file);
    match method!(inner, xFetch) {
        Some(f) if state() == State::Waits => f(inner, offset, amount, out),
        _ => {
            // Declined: SQLite reads the page with xRead.
            *out = std::ptr::null_mut();
            ffi::SQLITE_OK
        }
    }
}

/// Defines `$name`, forwarding `xMethod` to the default VFS's file object
/// (`$missing` when it has no such method).
macro_rules! forward {
    ($name:ident, $m:ident, $missing:expr, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            let inner = inner(file);
            match method!(inner, $m) {
                Some(f) => f(inner $(, $arg)*),
                None => $missing,
            }
        }
    };
}

forward!(write, xWrite, ffi::SQLITE_IOERR_WRITE,
    (buf: *const c_void, amount: c_int, offset: ffi::sqlite3_int64) -> c_int);
forward!(truncate, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, (size: ffi::sqlite3_int64) -> c_int);
forward!(sync, xSync, ffi::SQLITE_IOERR_FSYNC, (flags: c_int) -> c_int);
forward!(file_size, xFileSize, ffi::SQLITE_IOERR_FSTAT, (size: *mut ffi::sqlite3_int64) -> c_int);
forward!(lock, xLock, ffi::SQLITE_IOERR_LOCK, (level: c_int) -> c_int);
forward!(unlock, xUnlock, ffi::SQLITE_IOERR_UNLOCK, (level: c_int) -> c_int);
forward!(check_reserved, xCheckReservedLock, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
    (out: *mut c_int) -> c_int);
forward!(file_control, xFileControl, ffi::SQLITE_NOTFOUND, (op: c_int, arg: *mut c_void) -> c_int);
forward!(sector_size, xSectorSize, 4096, () -> c_int);
forward!(device_characteristics, xDeviceCharacteristics, 0, () -> c_int);
forward!(shm_map, xShmMap, ffi::SQLITE_IOERR_SHMMAP,
    (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int);
forward!(shm_lock, xShmLock, ffi::SQLITE_IOERR_SHMLOCK,
    (offset: c_int, n: c_int, flags: c_int) -> c_int);
forward!(shm_barrier, xShmBarrier, (), () -> ());
forward!(shm_unmap, xShmUnmap, ffi::SQLITE_OK, (delete: c_int) -> c_int);
forward!(unfetch, xUnfetch, ffi::SQLITE_OK, (offset: ffi::sqlite3_int64, page: *mut c_void) -> c_int);

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let inner = inner(file);
    (*file.cast::<File>()).fd = -1;
    match method!(inner, xClose) {
        Some(f) => f(inner),
        None => ffi::SQLITE_OK,
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};
