//! The data dirs open in this OS process, so that two stores never share one.

use crate::error::{Error, ErrorKind, Result};
use crate::locks::lock;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Each open dir, `true` while open and `false` while its store closes.
pub(crate) static OPEN_DIRS: Lazy<(Mutex<HashMap<PathBuf, bool>>, Condvar)> =
    Lazy::new(|| (Mutex::new(HashMap::new()), Condvar::new()));

/// The dirs that stores opened `read_only` read in this process, with
/// how many such stores each has.
static READ_ONLY: Lazy<Mutex<HashMap<PathBuf, usize>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// Counts a store opened `read_only` on `dir`, until [`stop_reading`].
pub(crate) fn start_reading(dir: &Path) {
    *lock(&READ_ONLY).entry(dir.to_path_buf()).or_insert(0) += 1;
}

/// Uncounts a store opened `read_only` on `dir`.
pub(crate) fn stop_reading(dir: &Path) {
    let mut map = lock(&READ_ONLY);
    if let Some(n) = map.get_mut(dir) {
        *n -= 1;
        if *n == 0 {
            map.remove(dir);
        }
    }
}

/// Whether a store of this process has `dir` (a canonical path) open.
pub(crate) fn open_here(dir: &Path) -> bool {
    lock(&OPEN_DIRS.0).contains_key(dir) || lock(&READ_ONLY).contains_key(dir)
}

/// Claims `dir` for a store. A store still closing on it is waited for.
pub(crate) fn claim(dir: &Path) -> Result<()> {
    let (map, released) = &*OPEN_DIRS;
    let mut open = lock(map);
    let deadline = Instant::now() + Duration::from_secs(30);
    while open.get(dir) == Some(&false) && Instant::now() < deadline {
        open = released
            .wait_timeout(open, Duration::from_millis(50))
            .map(|(guard, _)| guard)
            .unwrap_or_else(|p| p.into_inner().0);
    }
    if open.contains_key(dir) {
        return Err(Error::new(
            ErrorKind::AlreadyOpen,
            format!(
                "{}: this data dir is already open in this VM",
                dir.display()
            ),
        ));
    }
    open.insert(dir.to_path_buf(), true);
    Ok(())
}

/// Marks `dir` as closing: a new claim waits for [`release`].
pub(crate) fn mark_closing(dir: &Path) {
    lock(&OPEN_DIRS.0).insert(dir.to_path_buf(), false);
}

/// Gives `dir` up.
pub(crate) fn release(dir: &Path) {
    let (map, released) = &*OPEN_DIRS;
    lock(map).remove(dir);
    released.notify_all();
}
