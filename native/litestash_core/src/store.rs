//! The 16 shards of a data dir behind one handle.

use crate::codec::{canonical, decode, encode, Value};
use crate::error::{Error, ErrorKind, Result};
use crate::key::{Key, SHARD_COUNT};
use crate::shard::ShardFile;
use crate::shard::EXPIRY_ANY_DUE;
use crate::writer::{
    self, now_ms, Engine, EventHook, HookSlot, Job, Op, Outcome, Queue, Reply, Row, Target,
};
use once_cell::sync::Lazy;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How hard a commit pushes to disk (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// A commit survives a crash of the process; the last commits before a
    /// power loss or OS crash may be rolled back. The file is never corrupted.
    Normal,
    /// A commit is fsynced before it is acknowledged: it survives power loss.
    Full,
}

/// Options of [`Store::open`]. `Options::default()` is what LiteStash uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Durability of a commit.
    pub synchronous: Synchronous,
    /// How long a connection waits for another process's lock.
    pub busy_timeout: Duration,
    /// Page cache of each connection, in KiB.
    pub cache_size_kib: i64,
    /// Bytes of each file mapped into memory for reads.
    pub mmap_size: i64,
    /// Size the WAL is truncated to after a checkpoint resets it.
    pub journal_size_limit: i64,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Most bytes of values committed in one transaction.
    pub max_batch_bytes: usize,
    /// WAL frames after which the writer runs a passive checkpoint.
    pub checkpoint_pages: i32,
    /// WAL frames after which the writer waits for readers and truncates.
    pub truncate_pages: i32,
    /// Idle read connections kept per shard.
    pub readers_per_shard: usize,
    /// How often each writer sweeps expired keys when nothing is due sooner.
    pub sweep_interval: Duration,
    /// Most expired keys deleted in one sweep transaction.
    pub sweep_batch: usize,
    /// Caps every shard file at this many pages: a test's stand-in for a
    /// full disk. `None` in production.
    pub max_page_count: Option<i64>,
    /// Most writes committing inline (on their callers' threads, see
    /// [`Reply::inline`]) at once, counted over every store of the process;
    /// 0 sends every write through the writer threads.
    pub inline_commits: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(30),
            cache_size_kib: 16 * 1024,
            mmap_size: 256 * 1024 * 1024,
            journal_size_limit: 64 * 1024 * 1024,
            max_batch: 1024,
            max_batch_bytes: 32 * 1024 * 1024,
            checkpoint_pages: 2000,
            truncate_pages: 12000,
            readers_per_shard: 16,
            sweep_interval: Duration::from_secs(1),
            sweep_batch: 500,
            max_page_count: None,
            inline_commits: 1,
        }
    }
}

/// Data dirs open in this OS process, so two stores never share one.
static OPEN_DIRS: Lazy<(Mutex<HashMap<PathBuf, bool>>, Condvar)> =
    Lazy::new(|| (Mutex::new(HashMap::new()), Condvar::new()));

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not turn every later call into one.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Claims `dir` for this store. A store still closing on it is waited for.
fn claim(dir: &Path) -> Result<()> {
    let (map, released) = &*OPEN_DIRS;
    let mut open = lock(map);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while open.get(dir) == Some(&false) && std::time::Instant::now() < deadline {
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

fn mark_closing(dir: &Path) {
    lock(&OPEN_DIRS.0).insert(dir.to_path_buf(), false);
}

fn release(dir: &Path) {
    let (map, released) = &*OPEN_DIRS;
    lock(map).remove(dir);
    released.notify_all();
}

enum Shard {
    Ready {
        file: Arc<ShardFile>,
        writer: Arc<Queue>,
        engine: Engine,
        readers: Mutex<Vec<Connection>>,
    },
    /// A shard whose file is damaged: every call that touches it gets this
    /// error while the other shards serve.
    Broken(Error),
}

/// An open data dir: 16 shard files, each with one writer thread and a pool
/// of read connections.
///
/// ```
/// use litestash_core::{Options, Store, Value};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), Options::default()).unwrap();
/// store.set(b"user:1001", &Value::Str("Alice".into())).unwrap();
/// assert_eq!(store.get(b"user:1001").unwrap(), Some(Value::Str("Alice".into())));
/// store.close();
/// ```
pub struct Store {
    dir: PathBuf,
    shards: Vec<Shard>,
    options: Options,
    closed: AtomicBool,
    /// Whether the data dir has been released (once, by the first close).
    released: AtomicBool,
    writers: Mutex<Vec<JoinHandle<()>>>,
    hook: HookSlot,
    /// Jobs queued or being committed by the writer threads, all shards.
    pending: Arc<AtomicUsize>,
}

/// Writes committing inline right now, in every store of the process: the
/// dirty IO schedulers they occupy are shared by all stores.
static INLINE: AtomicUsize = AtomicUsize::new(0);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when missing) the data dir `dir`.
    ///
    /// A shard file that is damaged does not stop the open: calls that touch
    /// it get [`ErrorKind::Corrupt`] and the other shards serve.
    ///
    /// # Errors
    /// [`ErrorKind::NotADirectory`], [`ErrorKind::NotLitestash`],
    /// [`ErrorKind::NewerVersion`], [`ErrorKind::LegacyFormat`] for a dir or
    /// file LiteStash must not write to (it is left unmodified);
    /// [`ErrorKind::AlreadyOpen`] when this process has it open; I/O and
    /// permission errors, each naming the path.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let dir = dir.as_ref();
        if dir.exists() && !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{}: the data dir is not a directory", dir.display()),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(&e, &dir.display().to_string()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::io(&e, &dir.display().to_string()))?;
        // Every shard is checked before any is created or written, so that
        // a data dir LiteStash refuses is left exactly as it was.
        for index in 0..SHARD_COUNT {
            ShardFile::new(&dir, index).check(&options)?;
        }
        claim(&dir)?;
        let mut store = Store {
            dir,
            shards: Vec::with_capacity(SHARD_COUNT),
            options,
            closed: AtomicBool::new(false),
            released: AtomicBool::new(false),
            writers: Mutex::new(Vec::with_capacity(SHARD_COUNT)),
            hook: HookSlot::default(),
            pending: Arc::new(AtomicUsize::new(0)),
        };
        for index in 0..SHARD_COUNT {
            // On an error, dropping `store` stops the writers started so far
            // and releases the dir.
            let shard = store.open_shard(index)?;
            store.shards.push(shard);
        }
        Ok(store)
    }

    fn open_shard(&self, index: usize) -> Result<Shard> {
        let file = Arc::new(ShardFile::new(&self.dir, index));
        let conn = match file.open_writer(&self.options) {
            Ok(conn) => conn,
            Err(e) if e.kind() == ErrorKind::Corrupt => return Ok(Shard::Broken(e)),
            Err(e) => return Err(e),
        };
        let (writer, engine, handle) = writer::spawn(
            Arc::clone(&file),
            conn,
            &self.options,
            Arc::clone(&self.hook),
            Arc::clone(&self.pending),
        )?;
        lock(&self.writers).push(handle);
        Ok(Shard::Ready {
            file,
            writer,
            engine,
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Sets (or with `None` removes) the hook that receives the writers'
    /// events: each group commit and each expiry sweep.
    pub fn set_event_hook(&self, hook: Option<EventHook>) {
        match self.hook.write() {
            Ok(mut slot) => *slot = hook,
            Err(poisoned) => *poisoned.into_inner() = hook,
        }
    }

    /// The canonical path of the data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether [`Store::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    /// Runs `f` on a read connection of shard `index`.
    fn read<T>(
        &self,
        index: usize,
        f: impl FnOnce(&ShardFile, &Connection) -> Result<T>,
    ) -> Result<T> {
        self.check_open()?;
        let (file, readers) = match &self.shards[index] {
            Shard::Ready { file, readers, .. } => (file, readers),
            Shard::Broken(e) => return Err(e.clone()),
        };
        let pooled = lock(readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => file.open_reader(&self.options)?,
        };
        let result = f(file, &conn);
        if !self.is_closed() {
            let mut pool = lock(readers);
            if pool.len() < self.options.readers_per_shard {
                pool.push(conn);
            }
        }
        result
    }

    /// The stored bytes and expiry of `key`, read on `conn`.
    fn fetch(file: &ShardFile, conn: &Connection, key: &Key) -> Result<Option<StoredRow>> {
        conn.prepare_cached(&file.tables[key.route.table].select)
            .and_then(|mut stmt| {
                stmt.query_row([&key.hash], |row| {
                    Ok((value_bytes(row.get_ref(0)?), row.get(1)?))
                })
                .optional()
            })
            .map_err(|e| file.err(e))
    }

    /// The live row of `key`: `None` when absent or expired. An expired key
    /// is handed to its writer for deletion.
    fn live(&self, file: &ShardFile, conn: &Connection, key: &Key) -> Result<Option<StoredRow>> {
        match Store::fetch(file, conn, key)? {
            Some((_, Some(at))) if at <= now_ms() => {
                let _ = self.submit(
                    key.route.shard,
                    Op::DeleteExpired(target(key)),
                    Reply::ignore(),
                );
                Ok(None)
            }
            found => Ok(found),
        }
    }

    fn lookup(&self, file: &ShardFile, conn: &Connection, key: &Key) -> Result<Option<Value>> {
        let Some((bytes, _)) = self.live(file, conn, key)? else {
            return Ok(None);
        };
        let value = match bytes {
            Ok(Some(bytes)) => decode(&bytes),
            Ok(None) => Ok(Value::Nil),
            Err(e) => Err(e),
        };
        value
            .map(Some)
            .map_err(|e| Error::new(e.kind(), format!("key {:?}: {}", key.text, e.message())))
    }

    /// The value of `key`, or `None` when it is not stored (or has expired).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::CorruptValue`] for a stored
    /// value that is not contract MessagePack, [`ErrorKind::Closed`], and
    /// the SQLite errors of the key's shard.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        let key = Key::new(key)?;
        self.read(key.route.shard, |file, conn| self.lookup(file, conn, &key))
    }

    /// Whether `key` is stored and not expired.
    ///
    /// # Errors
    /// As [`Store::get`], but a corrupt value still counts as stored.
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        let key = Key::new(key)?;
        self.read(key.route.shard, |file, conn| {
            Ok(self.live(file, conn, &key)?.is_some())
        })
    }

    /// The time to live of `key` in milliseconds: `Some(None)` when it
    /// never expires, `None` when it is not stored.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn ttl(&self, key: &[u8]) -> Result<Option<Option<i64>>> {
        let key = Key::new(key)?;
        self.read(key.route.shard, |file, conn| {
            Ok(self
                .live(file, conn, &key)?
                .map(|(_, at)| at.map(|at| (at - now_ms()).max(0))))
        })
    }

    /// The values of `keys`, in order (`None` for a key not stored). All keys
    /// are validated before any is read; keys are read shard by shard.
    ///
    /// # Errors
    /// As [`Store::get`]; the first error ends the call.
    pub fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Value>>> {
        let keys: Vec<Key> = keys.iter().map(|k| Key::new(k)).collect::<Result<_>>()?;
        let mut out = vec![None; keys.len()];
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); SHARD_COUNT];
        for (i, key) in keys.iter().enumerate() {
            by_shard[key.route.shard].push(i);
        }
        for (shard, positions) in by_shard.iter().enumerate() {
            if positions.is_empty() {
                continue;
            }
            self.read(shard, |file, conn| {
                for &i in positions {
                    out[i] = self.lookup(file, conn, &keys[i])?;
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Every live key that starts with `prefix` (`""` for all), shard by
    /// shard; in key order within a shard, no order across shards.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] and the SQLite errors of any shard.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for shard in 0..SHARD_COUNT {
            let mut snapshot = self.snapshot(shard, prefix)?;
            loop {
                let chunk = snapshot.next_keys(1000)?;
                if chunk.is_empty() {
                    break;
                }
                keys.extend(chunk);
            }
        }
        Ok(keys)
    }

    /// The number of live keys that start with `prefix` (`""` for all).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] and the SQLite errors of any shard.
    pub fn count(&self, prefix: &str) -> Result<u64> {
        let (low, high) = bounds(prefix);
        let mut total = 0u64;
        for shard in 0..SHARD_COUNT {
            total += self.read(shard, |file, conn| {
                let now = now_ms();
                let any_due: bool = conn
                    .prepare_cached(EXPIRY_ANY_DUE)
                    .and_then(|mut s| s.query_row([now], |r| r.get(0)))
                    .map_err(|e| file.err(e))?;
                let mut n = 0u64;
                for table in &file.tables {
                    let c: i64 = if prefix.is_empty() && !any_due {
                        conn.prepare_cached(&table.count)
                            .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    } else {
                        conn.prepare_cached(&table.count_live)
                            .and_then(|mut s| s.query_row(params![low, high, now], |r| r.get(0)))
                    }
                    .map_err(|e| file.err(e))?;
                    n += c.max(0) as u64;
                }
                Ok(n)
            })?;
        }
        Ok(total)
    }

    /// A consistent snapshot of shard `shard` (an index into
    /// [`crate::SHARDS`]) to walk the live keys starting with `prefix` in
    /// key order, a chunk at a time. It holds one read transaction open
    /// until dropped.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], a broken shard's error, SQLite errors.
    pub fn snapshot(&self, shard: usize, prefix: &str) -> Result<Snapshot> {
        self.check_open()?;
        let file = match self.shards.get(shard) {
            Some(Shard::Ready { file, .. }) => Arc::clone(file),
            Some(Shard::Broken(e)) => return Err(e.clone()),
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("there is no shard {shard}"),
                ))
            }
        };
        let conn = file.open_reader(&self.options)?;
        conn.execute_batch("BEGIN").map_err(|e| file.err(e))?;
        let (low, high) = bounds(prefix);
        Ok(Snapshot {
            file,
            conn,
            now: now_ms(),
            next: low,
            high,
            done: false,
        })
    }

    /// Per-shard figures: live keys, file and WAL sizes in bytes.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`]; a broken shard is reported in its entry.
    pub fn info(&self) -> Result<Vec<ShardInfo>> {
        self.check_open()?;
        let mut out = Vec::with_capacity(SHARD_COUNT);
        for (index, shard) in self.shards.iter().enumerate() {
            let path = crate::shard::ShardFile::new(&self.dir, index).path;
            let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            let mut wal = path.clone().into_os_string();
            wal.push("-wal");
            let keys = match shard {
                Shard::Ready { .. } => self.count_shard(index).map_err(|e| e.message().to_owned()),
                Shard::Broken(e) => Err(e.message().to_owned()),
            };
            out.push(ShardInfo {
                shard: crate::key::SHARDS[index],
                keys,
                file_bytes: size(&path),
                wal_bytes: size(Path::new(&wal)),
            });
        }
        Ok(out)
    }

    fn count_shard(&self, shard: usize) -> Result<u64> {
        let mut snapshot = self.snapshot(shard, "")?;
        let mut n = 0u64;
        loop {
            let chunk = snapshot.next_keys(4096)?;
            if chunk.is_empty() {
                return Ok(n);
            }
            n += chunk.len() as u64;
        }
    }

    /// Copies a consistent image of every shard (each in its own snapshot,
    /// taken while writes go on) into `dest`, which must not exist or be
    /// empty. The copy is a LiteStash data dir.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] for a `dest` that is not empty; I/O and
    /// SQLite errors naming the file.
    pub fn backup(&self, dest: &Path) -> Result<()> {
        self.check_open()?;
        if dest.exists()
            && std::fs::read_dir(dest)
                .map_err(|e| Error::io(&e, &dest.display().to_string()))?
                .next()
                .is_some()
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{}: the backup destination must be empty or not exist",
                    dest.display()
                ),
            ));
        }
        for index in 0..SHARD_COUNT {
            let target = ShardFile::new(dest, index).path;
            let dir = target.parent().unwrap_or(dest);
            std::fs::create_dir_all(dir).map_err(|e| Error::io(&e, &dir.display().to_string()))?;
            let target_text = target.to_str().ok_or_else(|| {
                Error::new(ErrorKind::InvalidArgument, "the backup path is not UTF-8")
            })?;
            let file = match &self.shards[index] {
                Shard::Ready { file, .. } => file,
                Shard::Broken(e) => return Err(e.clone()),
            };
            // Not a pooled reader: those are query_only, and VACUUM INTO
            // counts as a write.
            let conn = file.connect(&self.options)?;
            conn.execute("VACUUM INTO ?1", [target_text])
                .map_err(|e| file.err(e))?;
            // VACUUM INTO writes a rollback-journal file; the contract's
            // files are WAL.
            let copy = Connection::open(&target).map_err(|e| Error::sqlite(e, target_text))?;
            copy.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                .map_err(|e| Error::sqlite(e, target_text))?;
        }
        Ok(())
    }

    /// Queues `op` on shard `index`, or commits it on this thread when the
    /// reply allows it and the shard's writer is idle. On `Err` the reply was
    /// not queued and will not be called.
    fn submit(&self, index: usize, op: Op, reply: Reply) -> Result<()> {
        self.check_open()?;
        let (writer, engine) = match &self.shards[index] {
            Shard::Ready { writer, engine, .. } => (writer, engine),
            Shard::Broken(e) => return Err(e.clone()),
        };
        let inline = reply.allows_inline();
        let mut job = Job {
            op,
            reply: reply.queued(),
        };
        if inline {
            match self.commit_inline(engine, writer, job) {
                None => return Ok(()),
                Some(back) => job = back,
            }
        }
        if writer.send(job) {
            Ok(())
        } else {
            Err(Error::closed())
        }
    }

    /// Commits `job` on this thread if an inline slot is free and the
    /// shard's writer is idle; gives it back (`Some`) otherwise.
    fn commit_inline(&self, engine: &Engine, queue: &Queue, job: Job) -> Option<Job> {
        /// One of the VM-wide inline slots, given back however the commit
        /// ends.
        struct Slot;
        impl Drop for Slot {
            fn drop(&mut self) {
                INLINE.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let slot = Slot;
        if INLINE.fetch_add(1, Ordering::AcqRel) >= self.options.inline_commits {
            return Some(job);
        }
        let done = writer::commit_inline(engine, queue, job);
        drop(slot);
        done
    }

    /// Whether a write of `key` with an inline reply would commit on the
    /// caller's thread now: the VM-wide count of inline commits is under
    /// this store's `inline_commits`, no writer thread of the store has a
    /// job queued or in hand, and the key's shard writer is not busy (no
    /// batch, sweep, checkpoint or compaction step holding its lock). A
    /// hint for choosing the thread to call from; the state can change at
    /// once.
    pub fn would_commit_inline(&self, key: &[u8]) -> bool {
        if self.is_closed() || INLINE.load(Ordering::Acquire) >= self.options.inline_commits {
            return false;
        }
        let Ok(text) = crate::key::validate(key) else {
            return false;
        };
        let Ok(route) = crate::key::route(&crate::key::key_hash(text)) else {
            return false;
        };
        match &self.shards[route.shard] {
            Shard::Ready { writer, engine, .. } => writer::is_idle(engine, writer),
            Shard::Broken(_) => false,
        }
    }

    /// Queues the write of `value` under `key`, expiring `ttl_ms`
    /// milliseconds from now when given (else clearing any expiry); `reply`
    /// hears the result once it is committed.
    ///
    /// # Errors
    /// Refusals found before queueing: [`ErrorKind::InvalidKey`], value
    /// errors from [`encode`], [`ErrorKind::Closed`]. Then `reply` is not called.
    pub fn set_async(
        &self,
        key: &[u8],
        value: &Value,
        ttl_ms: Option<u64>,
        reply: Reply,
    ) -> Result<()> {
        let key = Key::new(key)?;
        let shard = key.route.shard;
        let row = row(key, encode(value)?, ttl_ms.map(expires_at));
        self.submit(shard, Op::Put(vec![row]), reply)
    }

    /// Queues the write of every pair, atomic per shard file; every pair is
    /// validated and encoded before any is queued. `reply` hears once all
    /// shards have committed (or the first error).
    ///
    /// # Errors
    /// As [`Store::set_async`], for the first pair that is refused.
    pub fn set_many_async(&self, pairs: &[(&[u8], &Value)], reply: Reply) -> Result<()> {
        let mut by_shard: Vec<Vec<Row>> = (0..SHARD_COUNT).map(|_| Vec::new()).collect();
        for (key, value) in pairs {
            let key = Key::new(key)?;
            let shard = key.route.shard;
            by_shard[shard].push(row(key, encode(value)?, None));
        }
        let ops = by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, rows)| !rows.is_empty())
            .map(|(shard, rows)| (shard, Op::Put(rows)))
            .collect();
        self.fan_out(ops, reply)
    }

    /// Queues the delete of `key` (absent keys are fine).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::Closed`].
    pub fn delete_async(&self, key: &[u8], reply: Reply) -> Result<()> {
        let key = Key::new(key)?;
        self.submit(key.route.shard, Op::Delete(target(&key)), reply)
    }

    /// Queues setting (`Some(ms)` from now) or clearing (`None`) the expiry
    /// of a stored key; `reply` hears [`ErrorKind::NotFound`] for a key that
    /// is not stored.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::Closed`].
    pub fn expire_async(&self, key: &[u8], ttl_ms: Option<u64>, reply: Reply) -> Result<()> {
        let key = Key::new(key)?;
        let op = Op::Expire(target(&key), ttl_ms.map(expires_at));
        self.submit(key.route.shard, op, reply)
    }

    /// Queues adding `by` to the integer under `key` (an absent key counts
    /// from 0) in one transaction of the shard's writer; `reply` hears
    /// `Outcome::Integer(new value)` or [`ErrorKind::NotAnInteger`].
    ///
    /// # Errors
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::Closed`].
    pub fn incr_async(&self, key: &[u8], by: i64, reply: Reply) -> Result<()> {
        let key = Key::new(key)?;
        self.submit(key.route.shard, Op::Incr(target(&key), by), reply)
    }

    /// Queues writing `value` only if `key` is absent; `reply` hears
    /// [`ErrorKind::Exists`] otherwise.
    ///
    /// # Errors
    /// As [`Store::set_async`].
    pub fn put_new_async(&self, key: &[u8], value: &Value, reply: Reply) -> Result<()> {
        let key = Key::new(key)?;
        let shard = key.route.shard;
        self.submit(shard, Op::PutNew(row(key, encode(value)?, None)), reply)
    }

    /// Queues writing `new` only if the stored value equals `expected`
    /// (compared by canonical encoding: map order does not matter, `1` and
    /// `1.0` differ). An `expected` of nil matches an absent key and a stored
    /// nil. `reply` hears [`ErrorKind::Mismatch`] otherwise.
    ///
    /// # Errors
    /// As [`Store::set_async`], for either value.
    pub fn compare_and_set_async(
        &self,
        key: &[u8],
        expected: &Value,
        new: &Value,
        reply: Reply,
    ) -> Result<()> {
        let key = Key::new(key)?;
        let expected = match expected {
            Value::Nil => None,
            other => Some(canonical(other)?),
        };
        let shard = key.route.shard;
        self.submit(
            shard,
            Op::CompareAndSet(row(key, encode(new)?, None), expected),
            reply,
        )
    }

    /// Queues the removal of every key of every shard.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], or a broken shard's error.
    pub fn clear_async(&self, reply: Reply) -> Result<()> {
        let ops = (0..SHARD_COUNT).map(|shard| (shard, Op::Clear)).collect();
        self.fan_out(ops, reply)
    }

    /// Queues giving the space of deleted rows back to the file system, on
    /// every shard, in bounded steps between the writers' other work.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], or a broken shard's error.
    pub fn compact_async(&self, reply: Reply) -> Result<()> {
        let ops = (0..SHARD_COUNT).map(|shard| (shard, Op::Compact)).collect();
        self.fan_out(ops, reply)
    }

    /// Queues one op per shard and answers `reply` when all are done.
    fn fan_out(&self, ops: Vec<(usize, Op)>, reply: Reply) -> Result<()> {
        self.check_open()?;
        for (shard, _) in &ops {
            if let Shard::Broken(e) = &self.shards[*shard] {
                return Err(e.clone());
            }
        }
        if ops.is_empty() {
            reply.send(Ok(Outcome::Done));
            return Ok(());
        }
        let gather = Arc::new(Mutex::new(Gather {
            pending: ops.len(),
            first_error: None,
            reply: Some(reply),
        }));
        for (shard, op) in ops {
            let part = Arc::clone(&gather);
            let part_reply = Reply::new(move |result| lock(&part).finish(result));
            if let Err(e) = self.submit(shard, op, part_reply) {
                lock(&gather).finish(Err(e));
            }
        }
        Ok(())
    }

    /// Test hook: poisons every lock of this store, and the registry of open
    /// data dirs, by panicking in a thread that holds them all, so that a
    /// test can prove that each one is recovered.
    #[doc(hidden)]
    pub fn poison_locks_for_test(&self) {
        let _ = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _dirs = lock(&OPEN_DIRS.0);
                    let _writers = lock(&self.writers);
                    let _hook = self.hook.write();
                    let _shards: Vec<_> = self
                        .shards
                        .iter()
                        .filter_map(|shard| match shard {
                            Shard::Ready {
                                readers, engine, ..
                            } => Some((lock(readers), lock(engine))),
                            Shard::Broken(_) => None,
                        })
                        .collect();
                    panic!("poisoning LiteStash's locks for a test");
                })
                .join()
        });
    }

    /// Test hook: the next write applied on `key`'s shard panics inside its
    /// transaction, as a bug would.
    #[doc(hidden)]
    pub fn panic_in_next_write_for_test(&self, key: &[u8]) -> Result<()> {
        let key = Key::new(key)?;
        match &self.shards[key.route.shard] {
            Shard::Ready { engine, .. } => {
                if let Some(writer) = lock(engine).as_mut() {
                    writer.panic_next = true;
                }
                Ok(())
            }
            Shard::Broken(e) => Err(e.clone()),
        }
    }

    /// Writes `value` under `key` and waits for the commit.
    ///
    /// # Errors
    /// As [`Store::set_async`], and any error of the commit.
    pub fn set(&self, key: &[u8], value: &Value) -> Result<()> {
        wait(|reply| self.set_async(key, value, None, reply)).map(|_| ())
    }

    /// Writes every pair (atomic per shard file) and waits for the commits.
    ///
    /// # Errors
    /// As [`Store::set_many_async`], and any error of the commits.
    pub fn set_many(&self, pairs: &[(&[u8], &Value)]) -> Result<()> {
        wait(|reply| self.set_many_async(pairs, reply)).map(|_| ())
    }

    /// Deletes `key` and waits for the commit.
    ///
    /// # Errors
    /// As [`Store::delete_async`], and any error of the commit.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        wait(|reply| self.delete_async(key, reply)).map(|_| ())
    }

    /// Removes every key and waits for the commits.
    ///
    /// # Errors
    /// As [`Store::clear_async`], and any error of the commits.
    pub fn clear(&self) -> Result<()> {
        wait(|reply| self.clear_async(reply)).map(|_| ())
    }

    /// Adds `by` to the integer under `key` and waits: the new value.
    ///
    /// # Errors
    /// As [`Store::incr_async`], and [`ErrorKind::NotAnInteger`].
    pub fn incr(&self, key: &[u8], by: i64) -> Result<i64> {
        match wait(|reply| self.incr_async(key, by, reply))? {
            Outcome::Integer(n) => Ok(n),
            other => Err(Error::new(
                ErrorKind::Internal,
                format!("incr answered {other:?}"),
            )),
        }
    }

    /// Compacts every shard and waits.
    ///
    /// # Errors
    /// As [`Store::compact_async`].
    pub fn compact(&self) -> Result<()> {
        wait(|reply| self.compact_async(reply)).map(|_| ())
    }

    /// Starts closing without waiting for the disk: calls from now on get
    /// [`ErrorKind::Closed`], a new open of the data dir waits for this
    /// close to finish rather than failing with [`ErrorKind::AlreadyOpen`],
    /// and every writer is told to commit what is queued, then stop.
    /// [`Store::close`] finishes the job.
    pub fn begin_close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        mark_closing(&self.dir);
        for shard in &self.shards {
            if let Shard::Ready { writer, .. } = shard {
                writer.shutdown();
            }
        }
    }

    /// Commits everything queued, stops the writers, closes every file and
    /// releases the data dir. Calls after it get [`ErrorKind::Closed`].
    /// Closing again, or from several threads at once, is safe: each call
    /// returns once the store is closed.
    pub fn close(&self) {
        self.begin_close();
        // Held while joining, so that a concurrent close waits for this one.
        let mut writers = lock(&self.writers);
        for handle in writers.drain(..) {
            let _ = handle.join();
        }
        if !self.released.swap(true, Ordering::AcqRel) {
            for shard in &self.shards {
                if let Shard::Ready { readers, .. } = shard {
                    lock(readers).clear();
                }
            }
            release(&self.dir);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn row(key: Key, value: Vec<u8>, expires_at: Option<i64>) -> Row {
    Row {
        table: key.route.table,
        hash: key.hash,
        key: key.text,
        value,
        expires_at,
    }
}

fn target(key: &Key) -> Target {
    Target {
        table: key.route.table,
        hash: key.hash.clone(),
        key: key.text.clone(),
    }
}

/// Unix milliseconds `ttl_ms` from now.
fn expires_at(ttl_ms: u64) -> i64 {
    now_ms().saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX))
}

/// The key range `[low, high)` of the keys that start with `prefix`. Keys
/// compare as bytes; no UTF-8 byte is 0xFF, so the prefix with its last
/// byte raised bounds it from above. For `""` the bound is an empty BLOB,
/// which sorts after every text.
fn bounds(prefix: &str) -> (SqlBound, SqlBound) {
    let low = SqlBound::Text(prefix.as_bytes().to_vec());
    let high = match prefix.as_bytes().split_last() {
        None => SqlBound::AfterAllText,
        Some((last, head)) => {
            let mut bytes = head.to_vec();
            bytes.push(last.saturating_add(1));
            SqlBound::Text(bytes)
        }
    };
    (low, high)
}

/// A bound of a key range, bound as TEXT (possibly not UTF-8) or as BLOB.
#[derive(Debug, Clone)]
enum SqlBound {
    Text(Vec<u8>),
    AfterAllText,
}

impl rusqlite::ToSql for SqlBound {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match self {
            SqlBound::Text(bytes) => ValueRef::Text(bytes),
            SqlBound::AfterAllText => ValueRef::Blob(&[]),
        }))
    }
}

/// Live figures of one shard.
#[derive(Debug, Clone)]
pub struct ShardInfo {
    /// The shard's name.
    pub shard: &'static str,
    /// Live keys, or why they could not be counted.
    pub keys: std::result::Result<u64, String>,
    /// Size of the `.db` file.
    pub file_bytes: u64,
    /// Size of its `-wal` file.
    pub wal_bytes: u64,
}

/// A consistent snapshot of one shard, walked in key order a chunk at a
/// time (see [`Store::snapshot`]).
pub struct Snapshot {
    file: Arc<ShardFile>,
    conn: Connection,
    now: i64,
    /// The lowest key not yet returned.
    next: SqlBound,
    high: SqlBound,
    done: bool,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("file", &self.file.path)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Up to `limit` live `(key, value)` pairs after the last ones returned,
    /// in key order; empty when the walk is over.
    ///
    /// # Errors
    /// SQLite errors; [`ErrorKind::CorruptValue`] naming the key.
    pub fn next_pairs(&mut self, limit: usize) -> Result<Vec<(String, Value)>> {
        self.next_rows(limit)?
            .into_iter()
            .map(|(key, bytes)| {
                let value = bytes
                    .and_then(|b| b.map_or(Ok(Value::Nil), |b| decode(&b)))
                    .map_err(|e| Error::new(e.kind(), format!("key {key:?}: {}", e.message())))?;
                Ok((key, value))
            })
            .collect()
    }

    /// Like [`Snapshot::next_pairs`], keys only.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn next_keys(&mut self, limit: usize) -> Result<Vec<String>> {
        Ok(self.next_rows(limit)?.into_iter().map(|(k, _)| k).collect())
    }

    /// The next rows of the shard in key order, merged from its 4 tables.
    ///
    /// Each table is read up to `limit` rows past the last key returned.
    /// Rows up to the smallest "last key read" of the tables that filled
    /// their page are complete in every table, so they are returned (at
    /// most 4 x `limit`); the walk resumes after them. Expired rows are
    /// skipped; a page of nothing but expired rows does not end the walk.
    #[allow(clippy::type_complexity)]
    fn next_rows(&mut self, limit: usize) -> Result<Vec<(String, Result<Option<Vec<u8>>>)>> {
        let limit = limit.max(1);
        while !self.done {
            let mut merged: Vec<(String, Result<Option<Vec<u8>>>)> = Vec::new();
            // The largest key up to which every table has been read.
            let mut horizon: Option<String> = None;
            for table in 0..crate::key::TABLES_PER_SHARD {
                let mut stmt = self
                    .conn
                    .prepare_cached(&self.file.tables[table].range(limit))
                    .map_err(|e| self.file.err(e))?;
                let rows = stmt
                    .query_map(params![self.next, self.high], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            value_bytes(r.get_ref(1)?),
                            r.get::<_, Option<i64>>(2)?,
                        ))
                    })
                    .map_err(|e| self.file.err(e))?;
                let mut read = 0;
                let mut last = None;
                for row in rows {
                    let (key, value, expires) = row.map_err(|e| self.file.err(e))?;
                    read += 1;
                    last = Some(key.clone());
                    if expires.is_none_or(|at| at > self.now) {
                        merged.push((key, value));
                    }
                }
                if read == limit {
                    if let Some(last) = last {
                        if horizon
                            .as_ref()
                            .is_none_or(|h| last.as_bytes() < h.as_bytes())
                        {
                            horizon = Some(last);
                        }
                    }
                }
            }
            merged.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            match horizon {
                Some(h) => {
                    merged.retain(|(k, _)| k.as_bytes() <= h.as_bytes());
                    let mut after = h.into_bytes();
                    after.push(0);
                    self.next = SqlBound::Text(after);
                }
                None => self.done = true,
            }
            if !merged.is_empty() {
                return Ok(merged);
            }
        }
        Ok(Vec::new())
    }
}

/// A key's stored value column (its bytes, `None` for NULL, or why it is
/// unreadable) and its expiry in Unix milliseconds.
type StoredRow = (Result<Option<Vec<u8>>>, Option<i64>);

/// The bytes of a stored `value` column: a BLOB, or `None` for NULL (nil).
/// Any other type is a foreign writer's mistake, reported for that key only.
fn value_bytes(column: ValueRef<'_>) -> Result<Option<Vec<u8>>> {
    match column {
        ValueRef::Blob(bytes) => Ok(Some(bytes.to_vec())),
        ValueRef::Null => Ok(None),
        other => Err(Error::new(
            ErrorKind::CorruptValue,
            format!(
                "the value column holds {}, not a MessagePack BLOB",
                other.data_type()
            ),
        )),
    }
}

/// Collects the parts of a write that spans shards.
struct Gather {
    pending: usize,
    first_error: Option<Error>,
    reply: Option<Reply>,
}

impl Gather {
    fn finish(&mut self, result: Result<Outcome>) {
        if let Err(e) = result {
            self.first_error.get_or_insert(e);
        }
        self.pending = self.pending.saturating_sub(1);
        if self.pending == 0 {
            if let Some(reply) = self.reply.take() {
                reply.send(match self.first_error.take() {
                    Some(e) => Err(e),
                    None => Ok(Outcome::Done),
                });
            }
        }
    }
}

/// Runs an async write and blocks until its reply.
fn wait(start: impl FnOnce(Reply) -> Result<()>) -> Result<Outcome> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    start(
        Reply::new(move |result| {
            let _ = tx.send(result);
        })
        .inline(),
    )?;
    rx.recv().unwrap_or_else(|_| Err(Error::closed()))
}
