//! The 16 shards of a data dir behind one handle.

use crate::codec::{decode, encode, Value};
use crate::error::{Error, ErrorKind, Result};
use crate::key::{Key, SHARD_COUNT};
use crate::shard::ShardFile;
use crate::writer::{self, Job, Message, Op, Outcome, Reply, Row};
use crossbeam_channel::Sender;
use once_cell::sync::Lazy;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Caps every shard file at this many pages: a test's stand-in for a
    /// full disk. `None` in production.
    pub max_page_count: Option<i64>,
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
            max_page_count: None,
        }
    }
}

/// Data dirs open in this OS process, so two stores never share one.
static OPEN_DIRS: Lazy<(Mutex<HashMap<PathBuf, bool>>, Condvar)> =
    Lazy::new(|| (Mutex::new(HashMap::new()), Condvar::new()));

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
        writer: Sender<Message>,
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
    writers: Mutex<Vec<JoinHandle<()>>>,
}

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
        claim(&dir)?;
        let mut store = Store {
            dir,
            shards: Vec::with_capacity(SHARD_COUNT),
            options,
            closed: AtomicBool::new(false),
            writers: Mutex::new(Vec::with_capacity(SHARD_COUNT)),
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
        let (writer, handle) = writer::spawn(Arc::clone(&file), conn, &self.options)?;
        lock(&self.writers).push(handle);
        Ok(Shard::Ready {
            file,
            writer,
            readers: Mutex::new(Vec::new()),
        })
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

    fn lookup(file: &ShardFile, conn: &Connection, key: &Key) -> Result<Option<Value>> {
        let found = conn
            .prepare_cached(&file.tables[key.route.table].select)
            .and_then(|mut stmt| {
                stmt.query_row([&key.hash], |row| Ok(column_value(row.get_ref(0)?)))
                    .optional()
            })
            .map_err(|e| file.err(e))?;
        found
            .transpose()
            .map_err(|e| Error::new(e.kind(), format!("key {:?}: {}", key.text, e.message())))
    }

    /// The value of `key`, or `None` when it is not stored.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidKey`], [`ErrorKind::CorruptValue`] for a stored
    /// value that is not contract MessagePack, [`ErrorKind::Closed`], and
    /// the SQLite errors of the key's shard.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        let key = Key::new(key)?;
        self.read(key.route.shard, |file, conn| {
            Store::lookup(file, conn, &key)
        })
    }

    /// Whether `key` is stored.
    ///
    /// # Errors
    /// As [`Store::get`], but a corrupt value still counts as stored.
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        let key = Key::new(key)?;
        self.read(key.route.shard, |file, conn| {
            conn.prepare_cached(&file.tables[key.route.table].select)
                .and_then(|mut stmt| stmt.exists([&key.hash]))
                .map_err(|e| file.err(e))
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
                    out[i] = Store::lookup(file, conn, &keys[i])?;
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Every stored key, shard by shard (no order across shards).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] and the SQLite errors of any shard.
    pub fn keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for shard in 0..SHARD_COUNT {
            self.read(shard, |file, conn| {
                for table in &file.tables {
                    let mut stmt = conn.prepare_cached(&table.keys).map_err(|e| file.err(e))?;
                    let rows = stmt
                        .query_map([], |row| row.get::<_, Option<String>>(0))
                        .map_err(|e| file.err(e))?;
                    for key in rows {
                        keys.extend(key.map_err(|e| file.err(e))?);
                    }
                }
                Ok(())
            })?;
        }
        Ok(keys)
    }

    /// The number of stored keys.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] and the SQLite errors of any shard.
    pub fn count(&self) -> Result<u64> {
        let mut total = 0u64;
        for shard in 0..SHARD_COUNT {
            total += self.read(shard, |file, conn| {
                let mut n = 0u64;
                for table in &file.tables {
                    let c: i64 = conn
                        .prepare_cached(&table.count)
                        .and_then(|mut s| s.query_row([], |r| r.get(0)))
                        .map_err(|e| file.err(e))?;
                    n += c.max(0) as u64;
                }
                Ok(n)
            })?;
        }
        Ok(total)
    }

    fn writer(&self, index: usize) -> Result<&Sender<Message>> {
        match &self.shards[index] {
            Shard::Ready { writer, .. } => Ok(writer),
            Shard::Broken(e) => Err(e.clone()),
        }
    }

    /// Queues `op` on shard `index`. On `Err` the reply was not queued and
    /// will not be called.
    fn submit(&self, index: usize, op: Op, reply: Reply) -> Result<()> {
        let sent = self
            .check_open()
            .and_then(|()| self.writer(index))
            .and_then(|writer| {
                writer.send(Message::Job(Job { op, reply })).map_err(
                    |crossbeam_channel::SendError(msg)| {
                        if let Message::Job(job) = msg {
                            job.reply.defuse();
                        }
                        Error::closed()
                    },
                )
            });
        sent
    }

    /// Queues the write of `value` under `key`; `reply` hears the result once
    /// it is committed.
    ///
    /// # Errors
    /// Refusals found before queueing: [`ErrorKind::InvalidKey`], value
    /// errors from [`encode`], [`ErrorKind::Closed`]. Then `reply` is not called.
    pub fn set_async(&self, key: &[u8], value: &Value, reply: Reply) -> Result<()> {
        let key = Key::new(key)?;
        let value = encode(value)?;
        let shard = key.route.shard;
        self.submit(shard, Op::Put(vec![row(key, value)]), reply)
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
            let value = encode(value)?;
            by_shard[key.route.shard].push(row(key, value));
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
        let op = Op::Delete {
            table: key.route.table,
            hash: key.hash,
        };
        self.submit(key.route.shard, op, reply)
    }

    /// Queues the removal of every key of every shard.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], or a broken shard's error.
    pub fn clear_async(&self, reply: Reply) -> Result<()> {
        let ops = (0..SHARD_COUNT).map(|shard| (shard, Op::Clear)).collect();
        self.fan_out(ops, reply)
    }

    /// Queues one op per shard and answers `reply` when all are done.
    fn fan_out(&self, ops: Vec<(usize, Op)>, reply: Reply) -> Result<()> {
        self.check_open()?;
        for (shard, _) in &ops {
            self.writer(*shard)?;
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

    /// Writes `value` under `key` and waits for the commit.
    ///
    /// # Errors
    /// As [`Store::set_async`], and any error of the commit.
    pub fn set(&self, key: &[u8], value: &Value) -> Result<()> {
        wait(|reply| self.set_async(key, value, reply))
    }

    /// Writes every pair (atomic per shard file) and waits for the commits.
    ///
    /// # Errors
    /// As [`Store::set_many_async`], and any error of the commits.
    pub fn set_many(&self, pairs: &[(&[u8], &Value)]) -> Result<()> {
        wait(|reply| self.set_many_async(pairs, reply))
    }

    /// Deletes `key` and waits for the commit.
    ///
    /// # Errors
    /// As [`Store::delete_async`], and any error of the commit.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        wait(|reply| self.delete_async(key, reply))
    }

    /// Removes every key and waits for the commits.
    ///
    /// # Errors
    /// As [`Store::clear_async`], and any error of the commits.
    pub fn clear(&self) -> Result<()> {
        wait(|reply| self.clear_async(reply))
    }

    /// Commits everything queued, stops the writers, closes every file and
    /// releases the data dir. Calls after it get [`ErrorKind::Closed`].
    /// Closing twice is a no-op.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        mark_closing(&self.dir);
        for shard in &self.shards {
            if let Shard::Ready { writer, .. } = shard {
                let _ = writer.send(Message::Shutdown);
            }
        }
        let handles: Vec<JoinHandle<()>> = lock(&self.writers).drain(..).collect();
        for handle in handles {
            let _ = handle.join();
        }
        for shard in &self.shards {
            if let Shard::Ready { readers, .. } = shard {
                lock(readers).clear();
            }
        }
        release(&self.dir);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn row(key: Key, value: Vec<u8>) -> Row {
    Row {
        table: key.route.table,
        hash: key.hash,
        key: key.text,
        value,
    }
}

/// A stored column as a value: a BLOB is MessagePack, NULL is nil.
fn column_value(column: ValueRef<'_>) -> Result<Value> {
    match column {
        ValueRef::Blob(bytes) => decode(bytes),
        ValueRef::Null => Ok(Value::Nil),
        other => Err(Error::new(
            ErrorKind::CorruptValue,
            format!(
                "the value column holds {:?}, not a MessagePack BLOB",
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
fn wait(start: impl FnOnce(Reply) -> Result<()>) -> Result<()> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    start(Reply::new(move |result| {
        let _ = tx.send(result);
    }))?;
    rx.recv()
        .unwrap_or_else(|_| Err(Error::closed()))
        .map(|_| ())
}
