//! Which directories may become a data dir, and where a backup may go:
//! LiteStash never adds its files among someone else's, nor copies a
//! store into itself.

use crate::error::{Error, ErrorKind, Result};
use crate::key::SHARD_COUNT;
use std::path::{Component, Path, PathBuf};

/// Whether `dir` holds at least one shard's directory or file.
pub(crate) fn holds_shards(dir: &Path) -> bool {
    (0..SHARD_COUNT).any(|index| {
        crate::shard::path(dir, index)
            .parent()
            .is_some_and(|shard_dir| shard_dir.exists())
    })
}

pub(crate) fn not_a_data_dir(dir: &Path) -> Error {
    Error::new(
        ErrorKind::NotLitestash,
        format!(
            "{}: not a LiteStash data dir (none of the 16 shard dirs, such as tables_03/, is there)",
            dir.display()
        ),
    )
}

/// Refuses a directory that holds files but no shard: opening it would add
/// 16 shard dirs among someone else's files. A missing or empty dir, one
/// with at least one shard, or one holding nothing but a store's disk
/// reserve (its shards deleted), is fine.
pub(crate) fn refuse_foreign_dir(dir: &Path) -> Result<()> {
    let what = || dir.display().to_string();
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&e, &what())),
    };
    let only_reserve = entries
        .all(|entry| entry.is_ok_and(|entry| entry.file_name() == crate::disk::RESERVE_FILE));
    if only_reserve || holds_shards(dir) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::NotLitestash,
        format!(
            "{}: the directory is not empty and holds no LiteStash shard (such as tables_03/), \
             so LiteStash will not add its 16 shard dirs among its files; give a new or empty \
             directory, or a LiteStash data dir",
            what()
        ),
    ))
}

/// Refuses a backup destination that is `data_dir` itself or inside it:
/// the copy would land among the shards it copies (and a later open of the
/// data dir would not know it). `dest` need not exist; symbolic links in
/// the part that exists are resolved.
pub(crate) fn refuse_backup_inside(data_dir: &Path, dest: &Path) -> Result<()> {
    let resolved = resolve(dest).map_err(|e| Error::io(&e, &dest.display().to_string()))?;
    if resolved.starts_with(data_dir) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{}: the backup destination is inside the store's own data dir {}; \
                 back up to a directory outside it",
                dest.display(),
                data_dir.display()
            ),
        ));
    }
    Ok(())
}

/// `path` made absolute and canonical as far as it exists, with the rest
/// (which does not exist yet) appended without `.` and `..`.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(canonical) => {
                let mut out = canonical;
                for part in rest.iter().rev() {
                    match part {
                        Component::ParentDir => {
                            out.pop();
                        }
                        Component::Normal(name) => out.push(name),
                        _ => {}
                    }
                }
                return Ok(out);
            }
            Err(_) => match (existing.parent(), existing.components().next_back()) {
                (Some(parent), Some(last)) => {
                    rest.push(last);
                    existing = parent;
                }
                _ => return Ok(absolute),
            },
        }
    }
}
