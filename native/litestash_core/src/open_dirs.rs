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
