//! The one writer of a shard: a thread that drains its queue into one
//! transaction per batch ("group commit"), answers every caller after the
//! commit, sweeps expired keys in bounded steps, compacts on request, and
//! checkpoints the WAL off the callers' path.

use crate::codec::{canonical, decode, encode, Value};
use crate::error::{Error, ErrorKind, Result};
use crate::shard::{expiry_due, ShardFile, EXPIRY_DELETE, EXPIRY_UPSERT};
use crate::store::lock;
use crate::store::Options;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::{params, Connection, OptionalExtension};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a finished write reports.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The write is committed.
    Done,
    /// The write is committed and produced this integer (`incr`).
    Integer(i64),
}

/// A callback that receives the result of a queued write.
pub type Callback = Box<dyn FnOnce(Result<Outcome>) + Send + 'static>;

/// The promise to answer one caller exactly once. If it is dropped without
/// an answer once queued to a writer (a queue torn down at shutdown, a
/// panic), the caller hears `Closed` or `Internal` rather than waiting
/// forever. Dropped before it was queued, it stays silent: the call that
/// would have queued it returned the refusal as its `Err`.
pub struct Reply {
    callback: Option<Callback>,
    queued: bool,
    inline: bool,
}

impl Reply {
    /// Wraps `callback`.
    pub fn new(callback: impl FnOnce(Result<Outcome>) + Send + 'static) -> Reply {
        Reply {
            callback: Some(Box::new(callback)),
            queued: false,
            inline: false,
        }
    }

    /// Allows the write to commit on the calling thread when the store has
    /// a lone writer (no job queued or in hand at any shard writer) and the
    /// shard's writer is not busy: it then skips the hand-off to the writer
    /// thread and back. Only single-key writes go inline (`set_async`,
    /// `put_new_async`, `compare_and_set_async`, `incr_async`,
    /// `delete_async`); the others queue whatever the reply allows. The
    /// reply is answered on the calling thread before the `*_async` call
    /// returns, while the shard's writer is locked: the callback must not
    /// write to the store or close it. Only for threads that may block on
    /// the disk (never a BEAM normal scheduler).
    pub fn inline(mut self) -> Reply {
        self.inline = true;
        self
    }

    pub(crate) fn allows_inline(&self) -> bool {
        self.inline
    }

    /// Marks the reply as handed to a writer: from now on, dropping it
    /// unanswered answers the caller.
    pub(crate) fn queued(mut self) -> Reply {
        self.queued = true;
        self
    }

    /// A reply nobody waits for (lazy deletes of expired keys).
    pub(crate) fn ignore() -> Reply {
        Reply {
            callback: None,
            queued: false,
            inline: false,
        }
    }

    /// Answers the caller.
    pub fn send(mut self, result: Result<Outcome>) {
        if let Some(callback) = self.callback.take() {
            callback(result);
        }
    }

    /// Drops the callback unanswered: for a write that was never queued,
    /// whose caller gets the error directly.
    pub(crate) fn defuse(mut self) {
        self.callback = None;
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        if let Some(callback) = self.callback.take() {
            let err = if std::thread::panicking() {
                Error::new(
                    ErrorKind::Internal,
                    "internal error while writing (a panic was caught)",
                )
            } else {
                Error::closed()
            };
            // A callback that panics must not unwind out of a destructor.
            let _ = catch_unwind(AssertUnwindSafe(|| callback(Err(err))));
        }
    }
}

/// One row to write.
#[derive(Debug)]
pub(crate) struct Row {
    pub table: usize,
    pub hash: String,
    pub key: String,
    pub value: Vec<u8>,
    /// Unix milliseconds the key expires at; `None` clears any expiry.
    pub expires_at: Option<i64>,
}

/// Where a key's row lives.
#[derive(Debug)]
pub(crate) struct Target {
    pub table: usize,
    pub hash: String,
    pub key: String,
}

/// A write, applied atomically in the shard's file.
#[derive(Debug)]
pub(crate) enum Op {
    Put(Vec<Row>),
    Delete(Target),
    /// Deletes the key only if it has expired (a read found it so).
    DeleteExpired(Target),
    /// Sets (`Some`) or clears (`None`) the expiry of a live key.
    Expire(Target, Option<i64>),
    Incr(Target, i64),
    PutNew(Row),
    /// Writes `row` only if the stored value equals `expected` (canonical
    /// encoding; `None` for nil or absent).
    CompareAndSet(Row, Option<Vec<u8>>),
    Clear,
    /// Gives free pages back to the file system, in bounded steps.
    Compact,
}

impl Op {
    fn weight(&self) -> usize {
        match self {
            Op::Put(rows) => rows.iter().map(|r| r.value.len() + r.key.len() + 96).sum(),
            Op::PutNew(row) | Op::CompareAndSet(row, _) => row.value.len() + row.key.len() + 96,
            _ => 96,
        }
    }
}

/// What a shard writer reports as it works, for observability.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum Event {
    /// A group commit: `batch_size` callers' writes in one transaction.
    Commit {
        /// Index into [`crate::SHARDS`].
        shard: usize,
        /// Writes in the transaction.
        batch_size: usize,
        /// From `BEGIN` to the end of `COMMIT`.
        duration: Duration,
    },
    /// An expiry sweep that deleted `deleted` keys.
    Sweep {
        /// Index into [`crate::SHARDS`].
        shard: usize,
        /// Keys deleted.
        deleted: usize,
        /// Time the sweep's transaction took.
        duration: Duration,
    },
}

/// Receives the writers' [`Event`]s: on the writer threads, or on the
/// thread of a caller whose write committed inline. It runs while the
/// shard's writer is locked, so it must not write to the store or close it.
pub type EventHook = Arc<dyn Fn(Event) + Send + Sync>;

/// Where the writers find the current hook (set after the store opens).
pub(crate) type HookSlot = Arc<std::sync::RwLock<Option<EventHook>>>;

pub(crate) struct Job {
    pub op: Op,
    pub reply: Reply,
}

pub(crate) enum Message {
    Job(Job),
    /// Background work is due (a caller committed inline and the WAL has
    /// grown past the checkpoint threshold).
    Wake,
    /// Commit everything queued so far, then stop.
    Shutdown,
}

/// The way into a shard's writer: its channel, and the count of jobs queued
/// or being committed by the writer threads of the whole store (the
/// channel alone does not say: a thread takes a job off it before it has
/// the lock, and an inline commit must not overtake that job). A write
/// commits inline only when that count is zero, i.e. for a lone writer;
/// under concurrency the writer threads batch.
pub(crate) struct Queue {
    tx: Sender<Message>,
    pending: Arc<AtomicUsize>,
    /// A `Wake` is on its way and the writer has not yet run its
    /// background work: no need for another.
    wake_sent: AtomicBool,
}

impl Queue {
    /// Queues `job`; `false` (with the reply defused) when the writer has
    /// stopped.
    pub(crate) fn send(&self, job: Job) -> bool {
        self.add_pending(1);
        match self.tx.send(Message::Job(job)) {
            Ok(()) => true,
            Err(crossbeam_channel::SendError(message)) => {
                self.sub_pending(1);
                if let Message::Job(job) = message {
                    job.reply.defuse();
                }
                false
            }
        }
    }

    /// Tells the writer to commit what is queued, then stop.
    pub(crate) fn shutdown(&self) {
        let _ = self.tx.send(Message::Shutdown);
    }

    /// Asks the writer thread for its background work (a checkpoint).
    fn wake(&self) {
        if !self.wake_sent.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Message::Wake);
        }
    }

    fn add_pending(&self, n: usize) {
        self.pending.fetch_add(n, Ordering::AcqRel);
    }

    fn sub_pending(&self, n: usize) {
        self.pending.fetch_sub(n, Ordering::AcqRel);
    }

    /// No job is queued or being committed by a writer thread of the store.
    fn is_quiet(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

/// How long a checkpoint waits for readers before giving up for now.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(100);

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A shard's writer: its connection and state, shared by the writer thread
/// and by callers that commit inline while the thread is idle. `None` once
/// the writer has stopped.
pub(crate) type Engine = Arc<Mutex<Option<Writer>>>;

/// Starts the writer thread of `file` on `conn`.
pub(crate) fn spawn(
    file: Arc<ShardFile>,
    mut conn: Connection,
    options: &Options,
    hook: HookSlot,
    pending: Arc<AtomicUsize>,
) -> Result<(Arc<Queue>, Engine, std::thread::JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let queue = Arc::new(Queue {
        tx,
        pending,
        wake_sent: AtomicBool::new(false),
    });
    let wal_pages = Arc::new(AtomicI32::new(0));
    let hook_pages = Arc::clone(&wal_pages);
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
        hook_pages.store(pages, Ordering::Relaxed);
        Ok(())
    }))
    .map_err(|e| file.err(e))?;
    let writer = Writer {
        file,
        conn,
        wal_pages,
        max_batch: options.max_batch.max(1),
        max_batch_bytes: options.max_batch_bytes.max(1),
        checkpoint_pages: options.checkpoint_pages,
        truncate_pages: options.truncate_pages,
        sweep_every: options.sweep_interval,
        sweep_batch: options.sweep_batch.max(1),
        // Not at once: a fresh store's writer is idle for inline commits,
        // and reads hide expired keys whether swept or not.
        next_sweep: Instant::now() + options.sweep_interval,
        next_truncate: Instant::now(),
        busy_timeout: options.busy_timeout,
        compacting: Vec::new(),
        hook,
        panic_next: false,
    };
    let name = format!("litestash {}", crate::key::SHARDS[writer.file.index]);
    let engine: Engine = Arc::new(Mutex::new(Some(writer)));
    let thread_engine = Arc::clone(&engine);
    let thread_queue = Arc::clone(&queue);
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&thread_engine, &thread_queue, &rx))
        .map_err(|e| Error::io(&e, "starting a shard writer thread"))?;
    Ok((queue, engine, handle))
}

/// The writer thread: waits for work, then takes the engine's lock, drains
/// what is queued into one transaction and does the background work due.
fn run(engine: &Mutex<Option<Writer>>, queue: &Queue, rx: &Receiver<Message>) {
    let mut stopping = false;
    while !stopping {
        let wait = match lock(engine).as_ref() {
            Some(writer) => writer.idle_wait(),
            None => return,
        };
        let first = match rx.recv_timeout(wait) {
            Ok(Message::Job(job)) => Some(job),
            Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => None,
            Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut guard = lock(engine);
        let Some(writer) = guard.as_mut() else {
            return;
        };
        if let Some(first) = first {
            // Callers that queued while this thread waited for the lock
            // (behind an inline commit) join this batch.
            let (batch, stop) = writer.take_batch(first, rx);
            stopping = stop;
            // Counted until committed (an inline commit must not overtake a
            // job in hand), uncounted before the callers are answered (a
            // lone writer's next write must not see its own job).
            let size = batch.len();
            writer.commit_and_report(batch, || queue.sub_pending(size));
        }
        queue.wake_sent.store(false, Ordering::Release);
        if catch_unwind(AssertUnwindSafe(|| writer.background())).is_err() {
            writer.abandon_transaction();
        }
    }
    // Shutdown: whatever was queued before it is committed too, then the
    // connection is closed on this thread.
    let writer = lock(engine).take();
    if let Some(mut writer) = writer {
        writer.finish(rx);
    }
}

/// Commits `job` on the calling thread when the store has no job queued or
/// in hand at any writer and this shard's writer lock is free. Gives the
/// job back (`Some`) otherwise, for the caller to queue; never waits for
/// the lock.
pub(crate) fn commit_inline(
    engine: &Mutex<Option<Writer>>,
    queue: &Queue,
    job: Job,
) -> Option<Job> {
    if !queue.is_quiet() {
        return Some(job);
    }
    let mut guard = match engine.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return Some(job),
    };
    let Some(writer) = guard.as_mut() else {
        return Some(job);
    };
    writer.commit_and_report(vec![job], || {});
    let due = writer.checkpoint_due();
    drop(guard);
    if due {
        // Checkpoints stay off the callers' path: the thread does it.
        queue.wake();
    }
    None
}

/// Whether a write on this shard would commit inline now. A hint: the
/// state can change the moment after.
pub(crate) fn is_idle(engine: &Mutex<Option<Writer>>, queue: &Queue) -> bool {
    queue.is_quiet() && !matches!(engine.try_lock(), Err(TryLockError::WouldBlock))
}

pub(crate) struct Writer {
    file: Arc<ShardFile>,
    conn: Connection,
    /// Frames in the WAL after the last commit, as the WAL hook reported.
    wal_pages: Arc<AtomicI32>,
    max_batch: usize,
    max_batch_bytes: usize,
    checkpoint_pages: i32,
    truncate_pages: i32,
    sweep_every: Duration,
    sweep_batch: usize,
    next_sweep: Instant,
    /// No truncating checkpoint is tried before this (after a busy one).
    next_truncate: Instant,
    /// The connection's busy timeout, restored after a checkpoint.
    busy_timeout: Duration,
    /// Callers of `compact` waiting for the free list to be empty.
    compacting: Vec<Reply>,
    hook: HookSlot,
    /// Test hook: the next write applied panics.
    pub(crate) panic_next: bool,
}

fn now() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_micros()))
}

fn not_found(key: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("key {key:?} not found"))
}

impl Writer {
    /// How long the thread may sleep before the next sweep or compaction
    /// step is due.
    fn idle_wait(&self) -> Duration {
        if self.compacting.is_empty() {
            self.next_sweep.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        }
    }

    /// `first` and what is already queued behind it, never waiting for
    /// more: a lone writer pays no batching delay. `true` when a shutdown
    /// was found in the queue.
    fn take_batch(&self, first: Job, rx: &Receiver<Message>) -> (Vec<Job>, bool) {
        let mut bytes = first.op.weight();
        let mut batch = vec![first];
        while batch.len() < self.max_batch && bytes < self.max_batch_bytes {
            match rx.try_recv() {
                Ok(Message::Job(job)) => {
                    bytes += job.op.weight();
                    batch.push(job);
                }
                Ok(Message::Wake) => {}
                Ok(Message::Shutdown) => return (batch, true),
                Err(_) => break,
            }
        }
        (batch, false)
    }

    /// Commits `batch`, calls `committed`, then answers the callers and
    /// reports the commit to the event hook. A panic while committing
    /// answers every caller of the batch through `Reply`'s destructor and
    /// the writer goes on.
    fn commit_and_report(&mut self, batch: Vec<Job>, committed: impl FnOnce()) {
        let size = batch.len();
        let started = Instant::now();
        let answers = catch_unwind(AssertUnwindSafe(|| self.commit_batch(batch)));
        if answers.is_err() {
            self.abandon_transaction();
        }
        committed();
        answer(answers.unwrap_or_default());
        self.emit(|shard| Event::Commit {
            shard,
            batch_size: size,
            duration: started.elapsed(),
        });
    }

    /// Commits what is still queued, answers waiting compactions and
    /// truncates the WAL: the last work of a stopping writer.
    fn finish(&mut self, rx: &Receiver<Message>) {
        let mut rest = rx
            .try_iter()
            .filter_map(|m| match m {
                Message::Job(job) => Some(job),
                Message::Wake | Message::Shutdown => None,
            })
            .peekable();
        while rest.peek().is_some() {
            let batch: Vec<Job> = rest.by_ref().take(self.max_batch).collect();
            match catch_unwind(AssertUnwindSafe(|| self.commit_batch(batch))) {
                Ok(answers) => answer(answers),
                Err(_) => self.abandon_transaction(),
            }
        }
        for reply in self.compacting.drain(..) {
            reply.send(Err(Error::new(
                ErrorKind::Closed,
                "the store closed before compaction finished; what was done is kept",
            )));
        }
        let _ = self.checkpoint("TRUNCATE");
    }

    /// Work done between batches: checkpoints, expiry sweeps, compaction.
    fn background(&mut self) {
        self.checkpoint_if_due();
        if Instant::now() >= self.next_sweep {
            let started = Instant::now();
            let swept = self.transaction(|w| w.sweep(w.sweep_batch));
            if let Ok(deleted @ 1..) = swept {
                self.emit(|shard| Event::Sweep {
                    shard,
                    deleted,
                    duration: started.elapsed(),
                });
            }
            // A full batch means more are due: sweep again soon, between
            // the callers' batches.
            self.next_sweep = match swept {
                Ok(n) if n >= self.sweep_batch => Instant::now(),
                _ => Instant::now() + self.sweep_every,
            };
        }
        if !self.compacting.is_empty() {
            match self.compact_step() {
                Ok(true) => {}
                Ok(false) => {
                    for reply in self.compacting.drain(..) {
                        reply.send(Ok(Outcome::Done));
                    }
                }
                Err(e) => {
                    for reply in self.compacting.drain(..) {
                        reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Hands an event to the hook, if one is set.
    fn emit(&self, event: impl FnOnce(usize) -> Event) {
        let hook = match self.hook.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(hook) = hook {
            let event = event(self.file.index);
            let _ = catch_unwind(AssertUnwindSafe(|| hook(event)));
        }
    }

    /// Commits `batch`; the callers' answers, not yet sent.
    fn commit_batch(&mut self, mut batch: Vec<Job>) -> Vec<(Reply, Result<Outcome>)> {
        // Compaction runs in steps between batches, never inside one.
        let mut i = 0;
        while i < batch.len() {
            if matches!(batch[i].op, Op::Compact) {
                let job = batch.swap_remove(i);
                self.start_compaction(job.reply);
            } else {
                i += 1;
            }
        }
        if batch.is_empty() {
            return Vec::new();
        }
        if batch.len() == 1 {
            let results = vec![self.transaction(|w| w.apply(&batch[0].op))];
            return pair(batch, results);
        }
        let together = self.transaction(|w| {
            batch
                .iter()
                .map(|job| w.apply_isolated(&job.op))
                .collect::<Result<Vec<_>>>()
        });
        match together {
            Ok(results) => pair(batch, results),
            // The transaction as a whole failed (the disk filled at commit,
            // a lock timed out): commit each write on its own so that only
            // the writes that fail again get an error.
            Err(_) => {
                let results = batch
                    .iter()
                    .map(|job| self.transaction(|w| w.apply(&job.op)))
                    .collect();
                pair(batch, results)
            }
        }
    }

    /// Rolls back a transaction a caught panic left open, so that the
    /// shard's next `BEGIN` works and other processes get the lock back.
    fn abandon_transaction(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// Runs `f` in `BEGIN IMMEDIATE` ... `COMMIT`, rolling back on error.
    fn transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        // Whatever left a transaction open, this one starts clean.
        self.abandon_transaction();
        self.exec("BEGIN IMMEDIATE")?;
        let result = f(self).and_then(|value| self.exec("COMMIT").map(|()| value));
        if result.is_err() && !self.conn.is_autocommit() {
            let _ = self.exec("ROLLBACK");
        }
        result
    }

    /// Applies one write inside a savepoint, so that its failure undoes it
    /// alone. `Err` only when the whole transaction is lost.
    fn apply_isolated(&mut self, op: &Op) -> Result<Result<Outcome>> {
        self.exec("SAVEPOINT w")?;
        let result = self.apply(op);
        if self.conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error).
            return Err(result.err().unwrap_or_else(|| {
                Error::new(ErrorKind::Internal, "transaction ended unexpectedly")
            }));
        }
        if result.is_err() {
            self.exec("ROLLBACK TO w")?;
        }
        self.exec("RELEASE w")?;
        Ok(result)
    }

    fn exec(&self, sql: &str) -> Result<()> {
        self.sql(sql, [])
    }

    fn sql<P: rusqlite::Params>(&self, sql: &str, params: P) -> Result<()> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(params))
            .map(|_| ())
            .map_err(|e| self.file.err(e))
    }

    fn put(&self, row: &Row, secs: i64, micros: i64) -> Result<()> {
        self.sql(
            &self.file.tables[row.table].upsert,
            params![row.hash, row.key, row.value, secs, micros],
        )?;
        match row.expires_at {
            Some(at) => self.sql(EXPIRY_UPSERT, params![row.hash, at]),
            None => self.sql(EXPIRY_DELETE, [&row.hash]),
        }
    }

    fn remove(&self, table: usize, hash: &str) -> Result<()> {
        self.sql(&self.file.tables[table].delete, [hash])?;
        self.sql(EXPIRY_DELETE, [hash])
    }

    /// The stored bytes of a key that exists and has not expired. An expired
    /// key found here is deleted on the spot.
    fn live(&self, target: &Target) -> Result<Option<Option<Vec<u8>>>> {
        let found: Option<(Option<Vec<u8>>, Option<i64>)> = self
            .conn
            .prepare_cached(&self.file.tables[target.table].select)
            .and_then(|mut s| {
                s.query_row([&target.hash], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.file.err(e))?;
        match found {
            Some((_, Some(at))) if at <= now_ms() => {
                self.remove(target.table, &target.hash)?;
                Ok(None)
            }
            Some((value, _)) => Ok(Some(value)),
            None => Ok(None),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<Outcome> {
        if std::mem::take(&mut self.panic_next) {
            panic!("a panic injected by a test, inside a write's transaction");
        }
        let (secs, micros) = now();
        match op {
            Op::Put(rows) => {
                for row in rows {
                    self.put(row, secs, micros)?;
                }
            }
            Op::Delete(t) => self.remove(t.table, &t.hash)?,
            Op::DeleteExpired(t) => {
                self.live(t)?;
            }
            Op::Expire(t, at) => {
                if self.live(t)?.is_none() {
                    return Err(not_found(&t.key));
                }
                match at {
                    Some(at) => self.sql(EXPIRY_UPSERT, params![t.hash, at])?,
                    None => self.sql(EXPIRY_DELETE, [&t.hash])?,
                }
            }
            Op::Incr(t, by) => {
                let current = match self.live(t)? {
                    None => 0,
                    Some(bytes) => match bytes.as_deref().map(decode).transpose()? {
                        Some(Value::Int(n)) => n,
                        _ => {
                            return Err(Error::new(
                                ErrorKind::NotAnInteger,
                                format!("key {:?} holds a value that is not an integer", t.key),
                            ))
                        }
                    },
                };
                let next = current.checked_add(*by).ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotAnInteger,
                        format!("incrementing key {:?} by {by} leaves -2^63..2^63-1", t.key),
                    )
                })?;
                let row = Row {
                    table: t.table,
                    hash: t.hash.clone(),
                    key: t.key.clone(),
                    value: encode(&Value::Int(next))?,
                    expires_at: None,
                };
                // An increment keeps the key's expiry.
                self.sql(
                    &self.file.tables[row.table].upsert,
                    params![row.hash, row.key, row.value, secs, micros],
                )?;
                return Ok(Outcome::Integer(next));
            }
            Op::PutNew(row) => {
                let target = Target {
                    table: row.table,
                    hash: row.hash.clone(),
                    key: row.key.clone(),
                };
                if self.live(&target)?.is_some() {
                    return Err(Error::new(
                        ErrorKind::Exists,
                        format!("key {:?} already exists", row.key),
                    ));
                }
                self.put(row, secs, micros)?;
            }
            Op::CompareAndSet(row, expected) => {
                let target = Target {
                    table: row.table,
                    hash: row.hash.clone(),
                    key: row.key.clone(),
                };
                let stored = match self.live(&target)?.flatten() {
                    None => None,
                    Some(bytes) => match decode(&bytes)? {
                        Value::Nil => None,
                        value => Some(canonical(&value)?),
                    },
                };
                if &stored != expected {
                    return Err(Error::new(
                        ErrorKind::Mismatch,
                        format!("key {:?} does not hold the expected value", row.key),
                    ));
                }
                self.put(row, secs, micros)?;
            }
            Op::Clear => {
                for table in &self.file.tables {
                    self.conn
                        .execute(&table.clear, [])
                        .map_err(|e| self.file.err(e))?;
                }
                self.conn
                    .execute("DELETE FROM litestash_expiry", [])
                    .map_err(|e| self.file.err(e))?;
            }
            Op::Compact => {}
        }
        Ok(Outcome::Done)
    }

    /// Deletes up to `limit` expired keys (row and expiry row together).
    fn sweep(&mut self, limit: usize) -> Result<usize> {
        let due: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare_cached(&expiry_due(limit))
                .map_err(|e| self.file.err(e))?;
            let rows = stmt
                .query_map([now_ms()], |r| r.get(0))
                .map_err(|e| self.file.err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.file.err(e))?
        };
        for hash in &due {
            match crate::key::route(hash) {
                Ok(route) if route.shard == self.file.index => self.remove(route.table, hash)?,
                // An expiry row for a key of another file: drop it alone.
                _ => self.sql(EXPIRY_DELETE, [hash])?,
            }
        }
        Ok(due.len())
    }

    /// Turns on incremental vacuum if the file lacks it (a one-time full
    /// VACUUM), then queues the caller for the stepwise compaction.
    fn start_compaction(&mut self, reply: Reply) {
        let mode: Result<i64> = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .map_err(|e| self.file.err(e));
        let ready = match mode {
            Ok(2) => Ok(()),
            Ok(_) => self
                .conn
                .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
                .map_err(|e| self.file.err(e)),
            Err(e) => Err(e),
        };
        match ready {
            Ok(()) => self.compacting.push(reply),
            Err(e) => reply.send(Err(e)),
        }
    }

    /// Frees up to 256 pages; `true` while free pages remain.
    fn compact_step(&mut self) -> Result<bool> {
        // The pragma frees one page per row it steps; execute_batch would
        // step it once and free a single page.
        self.conn
            .prepare("PRAGMA incremental_vacuum(256)")
            .and_then(|mut stmt| {
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
                Ok(())
            })
            .map_err(|e| self.file.err(e))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .map_err(|e| self.file.err(e))?;
        if free == 0 {
            let _ = self.checkpoint("TRUNCATE");
        }
        Ok(free > 0)
    }

    /// Whether [`Writer::checkpoint_if_due`] has work to do.
    fn checkpoint_due(&self) -> bool {
        let pages = self.wal_pages.load(Ordering::Relaxed);
        pages >= self.checkpoint_pages
            || (pages >= self.truncate_pages && Instant::now() >= self.next_truncate)
    }

    /// Copies the WAL back into the file once it holds `checkpoint_pages`,
    /// without waiting for readers; past `truncate_pages` (a WAL readers kept
    /// from resetting) waits for them and truncates it.
    fn checkpoint_if_due(&mut self) {
        let pages = self.wal_pages.load(Ordering::Relaxed);
        if pages >= self.truncate_pages && Instant::now() >= self.next_truncate {
            // A reader that keeps its snapshot (a slow stream, a backup,
            // another process) blocks the truncation: try again in a
            // second rather than after every batch.
            match self.checkpoint("TRUNCATE") {
                Ok(true) => self.wal_pages.store(0, Ordering::Relaxed),
                _ => self.next_truncate = Instant::now() + Duration::from_secs(1),
            }
        } else if pages >= self.checkpoint_pages {
            let _ = self.checkpoint("PASSIVE");
        }
    }

    /// Runs a checkpoint; `Ok(true)` when it completed. Readers are waited
    /// for briefly, never for the connection's full busy timeout: a reader
    /// holding a snapshot must not stall the shard's writes.
    fn checkpoint(&self, mode: &str) -> Result<bool> {
        self.conn
            .busy_timeout(CHECKPOINT_WAIT)
            .map_err(|e| self.file.err(e))?;
        let done = self
            .conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                r.get::<_, i64>(0).map(|busy| busy == 0)
            })
            .map_err(|e| self.file.err(e));
        self.conn
            .busy_timeout(self.busy_timeout)
            .map_err(|e| self.file.err(e))?;
        done
    }
}

/// Each job's reply with its result.
fn pair(batch: Vec<Job>, results: Vec<Result<Outcome>>) -> Vec<(Reply, Result<Outcome>)> {
    batch
        .into_iter()
        .zip(results)
        .map(|(job, result)| (job.reply, result))
        .collect()
}

/// Answers the callers; a callback that panics does not stop the others.
fn answer(answers: Vec<(Reply, Result<Outcome>)>) {
    for (reply, result) in answers {
        let _ = catch_unwind(AssertUnwindSafe(|| reply.send(result)));
    }
}
