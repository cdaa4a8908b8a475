//! The 16 shards of a data dir behind one handle: open, submit, read, close.

use crate::cache::ValueCache;
use crate::data_dir;
use crate::disk::Disk;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{EventHook, HookSlot};
use crate::key::SHARD_COUNT;
use crate::locks::lock;
use crate::open_dirs;
use crate::options::Options;
use crate::reply::{Outcome, Reply, Submitted};
use crate::request::{Kind, Request};
use crate::shard::ShardFile;
use crate::writer::op::Op;
use crate::writer::{self, Engine, Job, Pending, Queue};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub(crate) enum Shard {
    Ready {
        file: Arc<ShardFile>,
        queue: Arc<Queue>,
        engine: Engine,
        readers: Mutex<Vec<Connection>>,
        /// The file is a replica's (it holds the replica table).
        replica: bool,
    },
    /// A shard of a store opened `read_only`: read connections, no writer.
    Reading {
        file: Arc<ShardFile>,
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
    pub(crate) dir: PathBuf,
    pub(crate) shards: Vec<Shard>,
    pub(crate) options: Options,
    /// The shards are in-memory databases (see [`Store::open_memory`]).
    pub(crate) memory: bool,
    /// Whether this store holds the data dir's claim in [`open_dirs`] (a
    /// writing store on a real dir does).
    claimed: bool,
    closed: AtomicBool,
    /// Whether the data dir has been released (once, by the first close).
    released: AtomicBool,
    pub(crate) writers: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) hook: HookSlot,
    /// Jobs queued or being committed by the writer threads, all shards.
    pending: Pending,
    /// How many writer threads may commit at once.
    pub(crate) slots: Arc<writer::CommitSlots>,
    /// Snapshots open now, counted against `options.max_snapshots`.
    pub(crate) snapshots: Arc<AtomicUsize>,
    pub(crate) cache: Arc<ValueCache>,
    /// The disk under the data dir and the store's reserve on it.
    pub(crate) disk: Arc<Disk>,
    /// Per shard, how reads tried without waiting went.
    pub(crate) nowait: [crate::read::NowaitTally; SHARD_COUNT],
}

/// Writes committing inline right now, in every store of the process: the
/// dirty IO schedulers they occupy are shared by all stores.
static INLINE: AtomicUsize = AtomicUsize::new(0);

/// The right to commit one write inline, on the calling thread (see
/// [`Store::inline_slot`]); given back when dropped.
#[derive(Debug)]
pub struct InlineSlot {
    _claimed: (),
}

impl InlineSlot {
    /// Keeps the slot claimed after this value is gone, for a caller that
    /// carries on in another call (a NIF rescheduled to a dirty scheduler)
    /// and takes it back there with [`InlineSlot::resume`].
    pub fn forget(self) {
        std::mem::forget(self);
    }

    /// Takes back a slot given up with [`InlineSlot::forget`]. Each call
    /// must match one `forget`, or the count of inline commits drifts.
    pub fn resume() -> InlineSlot {
        InlineSlot { _claimed: () }
    }
}

impl Drop for InlineSlot {
    fn drop(&mut self) {
        INLINE.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when missing) the data dir `dir`: a directory that
    /// is missing, empty, or already holds LiteStash shards.
    ///
    /// A shard file that is damaged does not stop the open: calls that touch
    /// it get [`ErrorKind::Corrupt`] and the other shards serve.
    ///
    /// With [`Options::read_only`] the dir must exist and hold the 16 shard
    /// files; nothing is created, no writer thread starts, the connections
    /// are read-only and every write gets [`ErrorKind::ReadOnly`]. SQLite
    /// reads a WAL file read-only when its `-wal` and `-shm` files exist
    /// (another process has the store open: they must be readable) or can
    /// be created (the directory is writable; a store closed cleanly leaves
    /// neither). Another store, in this process or another, may have the
    /// dir open for writing meanwhile.
    ///
    /// # Errors
    /// [`ErrorKind::NotADirectory`], [`ErrorKind::NotLitestash`] (also for a
    /// non-empty dir that holds no shard),
    /// [`ErrorKind::NewerVersion`], [`ErrorKind::LegacyFormat`] for a dir or
    /// file LiteStash must not write to (it is left unmodified);
    /// [`ErrorKind::AlreadyOpen`] when this process has it open for
    /// writing; I/O and permission errors, each naming the path.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let dir = dir.as_ref();
        if dir.exists() && !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{}: the data dir is not a directory", dir.display()),
            ));
        }
        crate::admin::refuse_incomplete_backup(dir)?;
        if options.read_only {
            return Store::open_read_only(dir, options);
        }
        data_dir::refuse_foreign_dir(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(&e, &dir.display().to_string()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::io(&e, &dir.display().to_string()))?;
        // Every shard is checked before any is created or written, so that
        // a data dir LiteStash refuses is left exactly as it was.
        for index in 0..SHARD_COUNT {
            ShardFile::new(&dir, index).check(&options)?;
        }
        open_dirs::claim(&dir)?;
        let store = Store::new(dir, options, false, true);
        store.open_shards()
    }

    /// Opens a store whose 16 shards are SQLite in-memory databases: the
    /// same API as a store on disk, no files, and the data gone once the
    /// store is closed. Without WAL, a shard's readers and its writer take
    /// turns on the database's lock (a commit waits for the reads in
    /// progress, a read waits for a commit), and a snapshot copies its
    /// shard, so that a walk never holds the lock between chunks.
    ///
    /// ```
    /// use litestash_core::{Options, Store, Value};
    /// let store = Store::open_memory(Options::default()).unwrap();
    /// store.set(b"k", &Value::Int(1)).unwrap();
    /// assert_eq!(store.get(b"k").unwrap(), Some(Value::Int(1)));
    /// store.close();
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] with [`Options::read_only`] (an
    /// in-memory store starts empty); SQLite errors.
    pub fn open_memory(options: Options) -> Result<Store> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        if options.read_only {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "an in-memory store cannot be read_only: it starts empty",
            ));
        }
        let tag = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let store = Store::new(PathBuf::from(format!("memory:{tag}")), options, true, false);
        store.open_shards()
    }

    fn open_read_only(dir: &Path, options: Options) -> Result<Store> {
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::io(&e, &format!("{} (read_only: true)", dir.display())))?;
        if !data_dir::holds_shards(&dir) {
            return Err(data_dir::not_a_data_dir(&dir));
        }
        open_dirs::start_reading(&dir);
        let store = Store::new(dir, options, false, false);
        store.open_shards()
    }

    fn new(dir: PathBuf, options: Options, memory: bool, claimed: bool) -> Store {
        let disk = Arc::new(if memory || options.read_only {
            Disk::new(None, 0)
        } else {
            Disk::new(Some(&dir), options.disk_reserve)
        });
        Store {
            dir,
            shards: Vec::with_capacity(SHARD_COUNT),
            options: options.clone(),
            memory,
            claimed,
            closed: AtomicBool::new(false),
            released: AtomicBool::new(false),
            writers: Mutex::new(Vec::with_capacity(SHARD_COUNT)),
            hook: HookSlot::default(),
            pending: Arc::new(AtomicUsize::new(0)),
            slots: writer::CommitSlots::new(options.commit_slots()),
            snapshots: Arc::new(AtomicUsize::new(0)),
            cache: Arc::new(ValueCache::new(options.cache_size)),
            disk,
            nowait: Default::default(),
        }
    }

    fn open_shards(mut self) -> Result<Store> {
        for index in 0..SHARD_COUNT {
            // On an error, dropping `self` stops the writers started so far
            // and releases the dir.
            let shard = self.open_shard(index)?;
            self.shards.push(shard);
        }
        self.disk.make_reserve();
        Ok(self)
    }

    /// The file (or in-memory database) of shard `index`.
    pub(crate) fn shard_file(&self, index: usize) -> ShardFile {
        if self.memory {
            ShardFile::in_memory(
                self.dir.to_string_lossy().trim_start_matches("memory:"),
                index,
            )
        } else {
            ShardFile::new(&self.dir, index)
        }
    }

    fn open_shard(&self, index: usize) -> Result<Shard> {
        let file = Arc::new(self.shard_file(index));
        if self.options.read_only {
            return match file.open_read_only(&self.options) {
                Ok(conn) => Ok(Shard::Reading {
                    file,
                    readers: Mutex::new(vec![conn]),
                }),
                Err(e) if e.kind() == ErrorKind::Corrupt => Ok(Shard::Broken(e)),
                Err(e) => Err(e),
            };
        }
        let conn = match file.open_writer(&self.options) {
            Ok(conn) => conn,
            Err(e) if e.kind() == ErrorKind::Corrupt => return Ok(Shard::Broken(e)),
            Err(e) => return Err(e),
        };
        let replica = file.is_replica(&conn)?;
        // The writer's connection has the file in WAL: SQLite has mapped
        // its WAL index, which the cache reads through that connection.
        self.cache.attach(index, &conn);
        let (queue, engine, handle) = writer::spawn(
            Arc::clone(&file),
            conn,
            &self.options,
            replica,
            writer::Shared {
                hook: self.hook.clone(),
                slots: Arc::clone(&self.slots),
                pending: Arc::clone(&self.pending),
                cache: Arc::clone(&self.cache),
                disk: Arc::clone(&self.disk),
            },
        )?;
        lock(&self.writers).push(handle);
        // One reader ready, so that the first reads of the shard can be
        // tried without waiting (`read_stored_now` never opens one). One
        // that fails to open now fails again, and reports, on first use.
        let readers = if self.options.nowait_reads && !self.memory {
            file.open_reader(&self.options).ok().into_iter().collect()
        } else {
            Vec::new()
        };
        Ok(Shard::Ready {
            file,
            queue,
            engine,
            readers: Mutex::new(readers),
            replica,
        })
    }

    /// Sets (or with `None` removes) the hook that receives the writers'
    /// events: each group commit and each expiry sweep.
    pub fn set_event_hook(&self, hook: Option<EventHook>) {
        self.hook.set(hook);
    }

    /// The canonical path of the data dir (`memory:<tag>` for an
    /// in-memory store).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the store was opened with [`Options::read_only`].
    pub fn is_read_only(&self) -> bool {
        self.options.read_only
    }

    /// The error of a write to a store opened `read_only`, naming it.
    pub fn read_only_error(&self) -> Error {
        Error::new(
            ErrorKind::ReadOnly,
            format!(
                "{}: this store was opened with read_only: true and refuses writes",
                self.dir.display()
            ),
        )
    }

    /// Whether [`Store::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    /// The file of shard `index`, or the error of a broken one.
    pub(crate) fn file(&self, index: usize) -> Result<&Arc<ShardFile>> {
        match self.shards.get(index) {
            Some(Shard::Ready { file, .. } | Shard::Reading { file, .. }) => Ok(file),
            Some(Shard::Broken(e)) => Err(e.clone()),
            None => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("there is no shard {index}"),
            )),
        }
    }

    /// Claims the right to commit a write inline on the calling thread, if
    /// the store has a lone writer now: the process-wide count of inline
    /// commits is under this store's `inline_commits`, and no writer
    /// thread of the store has a job queued or in hand. It does not look at
    /// any key: [`Store::submit`] still queues the write when its shard's
    /// writer turns out busy. Only for threads that may block on the disk
    /// (never a BEAM normal scheduler).
    pub fn inline_slot(&self) -> Option<InlineSlot> {
        if self.is_closed() || self.options.read_only || self.pending.load(Ordering::Acquire) != 0 {
            return None;
        }
        if INLINE.fetch_add(1, Ordering::AcqRel) >= self.options.inline_commits {
            INLINE.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InlineSlot { _claimed: () })
    }

    /// Hands `request` over. With an inline `slot`, a write of one key
    /// commits on this thread when its shard's writer is idle, and the
    /// answer is returned (`Submitted::Committed`). Otherwise it is queued
    /// to the shard writers (`Submitted::Queued`), and `reply()` is called
    /// once to make the [`Reply`] that hears the answer after the commit.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], [`ErrorKind::ReadOnly`] for a store opened
    /// `read_only`, or the error of a broken shard: then nothing was queued
    /// and no reply is made.
    pub fn submit(
        &self,
        request: Request,
        slot: Option<InlineSlot>,
        reply: impl FnOnce() -> Reply,
    ) -> Result<Submitted> {
        self.check_open()?;
        if self.options.read_only {
            return Err(self.read_only_error());
        }
        self.may_write(&request)?;
        match request.kind {
            Kind::One { shard, op } => {
                let (queue, engine) = self.writer(shard)?;
                let op = match slot {
                    Some(slot) => match writer::commit_inline(engine, queue, op) {
                        Ok(result) => {
                            drop(slot);
                            return Ok(Submitted::Committed(result));
                        }
                        Err(op) => op,
                    },
                    None => op,
                };
                self.queue(queue, op, reply())?;
                Ok(Submitted::Queued)
            }
            Kind::Each(ops) if ops.is_empty() => Ok(Submitted::Committed(Ok(Outcome::Done))),
            Kind::Each(ops) => {
                self.fan_out(ops, reply())?;
                Ok(Submitted::Queued)
            }
        }
    }

    /// Refuses a write the files' owner would not make: an ordinary write
    /// to a replica's file, or a replicated one to a store that is not a
    /// replica. Compaction changes no key, so a replica's member compacts
    /// its own files outside the log.
    fn may_write(&self, request: &Request) -> Result<()> {
        match &request.kind {
            Kind::Each(ops)
                if self.options.replica && ops.iter().all(|(_, op)| matches!(op, Op::Compact)) =>
            {
                Ok(())
            }
            Kind::One { shard, .. } => self.may_write_shard(*shard, request.replicated),
            Kind::Each(ops) => ops
                .iter()
                .try_for_each(|(shard, _)| self.may_write_shard(*shard, request.replicated)),
        }
    }

    fn may_write_shard(&self, shard: usize, replicated: bool) -> Result<()> {
        let is_replica = matches!(
            self.shards.get(shard),
            Some(Shard::Ready { replica: true, .. })
        );
        if replicated && !(self.options.replica && is_replica) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{}: replicated entries are applied only by a store opened as a replica",
                    self.dir.display()
                ),
            ));
        }
        if !replicated && (is_replica || self.options.replica) {
            return Err(Error::new(
                ErrorKind::Replicated,
                format!(
                    "{}: shard {} is a replica's file (it holds litestash_replica): it is written \
                     only through its cluster's log; open it with the cluster, or read it",
                    self.dir.display(),
                    crate::key::SHARDS[shard]
                ),
            ));
        }
        Ok(())
    }

    fn writer(&self, shard: usize) -> Result<(&Queue, &Engine)> {
        match &self.shards[shard] {
            Shard::Ready { queue, engine, .. } => Ok((queue, engine)),
            Shard::Reading { .. } => Err(self.read_only_error()),
            Shard::Broken(e) => Err(e.clone()),
        }
    }

    fn queue(&self, queue: &Queue, op: Op, reply: Reply) -> Result<()> {
        let job = Job::new(op, reply.queued());
        if queue.send(job) {
            Ok(())
        } else {
            Err(Error::closed())
        }
    }

    /// Queues one op per shard and answers `reply` when all are done.
    fn fan_out(&self, ops: Vec<(usize, Op)>, reply: Reply) -> Result<()> {
        for (shard, _) in &ops {
            self.writer(*shard)?;
        }
        let gather = Arc::new(Mutex::new(Gather {
            pending: ops.len(),
            first_error: None,
            reply: Some(reply),
        }));
        for (shard, op) in ops {
            let part = Arc::clone(&gather);
            let part_reply = Reply::new(move |result| lock(&part).finish(result));
            let queued = self
                .writer(shard)
                .and_then(|(queue, _)| self.queue(queue, op, part_reply));
            if let Err(e) = queued {
                lock(&gather).finish(Err(e));
            }
        }
        Ok(())
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
        if self.claimed {
            open_dirs::mark_closing(&self.dir);
        }
        self.cache.shut();
        for shard in &self.shards {
            if let Shard::Ready { queue, .. } = shard {
                queue.shutdown();
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
                if let Shard::Ready { readers, .. } | Shard::Reading { readers, .. } = shard {
                    lock(readers).clear();
                }
            }
            if self.claimed {
                open_dirs::release(&self.dir);
            } else if self.options.read_only {
                open_dirs::stop_reading(&self.dir);
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
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
