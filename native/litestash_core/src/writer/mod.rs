//! The one writer of a shard: a thread that drains its queue into one
//! transaction per batch ("group commit") and answers every caller after
//! the commit; or, when the store has a lone writer, the caller's own
//! thread committing its write under the same lock.
//!
//! [`op`] says what each write does to the file, [`upkeep`] what the writer
//! does between batches (checkpoints, sweeps, compaction).

pub(crate) mod op;
mod replica;
pub(crate) use replica::applied_index as replica_applied_index;
mod queue;
use queue::Message;
pub(crate) use queue::{Job, Pending, Queue};
mod room;
mod slots;
pub(crate) use slots::{CommitSlots, Slot};
mod upkeep;

use crate::cache::{Touched, ValueCache};
use crate::clock::Now;
use crate::disk::{Disk, Wake};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, HookSlot};
use crate::locks::lock;
use crate::options::Options;
use crate::reply::{answer_all, Outcome, Reply};
use crate::shard::{sql, ShardFile};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use op::Op;
use room::Need;
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

/// A shard's writer: its connection and state, shared by the writer thread
/// and by callers that commit inline while the thread is idle. `None` once
/// the writer has stopped.
pub(crate) type Engine = Arc<Mutex<Option<Writer>>>;

/// What every writer of a store shares with it.
pub(crate) struct Shared {
    pub hook: HookSlot,
    pub slots: Arc<CommitSlots>,
    pub pending: Pending,
    pub cache: Arc<ValueCache>,
    pub disk: Arc<Disk>,
}

/// Starts the writer thread of `file` on `conn`.
pub(crate) fn spawn(
    file: Arc<ShardFile>,
    mut conn: Connection,
    options: &Options,
    replica: bool,
    shared: Shared,
) -> Result<(Arc<Queue>, Engine, std::thread::JoinHandle<()>)> {
    let Shared {
        hook,
        slots,
        pending,
        cache,
        disk,
    } = shared;
    let (tx, rx) = crossbeam_channel::unbounded();
    let queue = Arc::new(Queue {
        tx,
        pending,
        wake_sent: AtomicBool::new(false),
        sweep_requested: AtomicBool::new(false),
    });
    let waker: Arc<dyn Wake> = queue.clone();
    disk.register(Arc::downgrade(&waker));
    let wal_pages = Arc::new(AtomicI32::new(0));
    let hook_pages = Arc::clone(&wal_pages);
    let wrote = Arc::new(AtomicBool::new(false));
    let hook_wrote = Arc::clone(&wrote);
    // SQLite calls it after each commit that wrote WAL frames, i.e. each
    // commit that moved the WAL index's change counter (see cache.rs).
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
        hook_pages.store(pages, Ordering::Relaxed);
        hook_wrote.store(true, Ordering::Relaxed);
        Ok(())
    }))
    .map_err(|e| file.err(e))?;
    let writer = Writer {
        file,
        conn,
        wal_pages,
        wrote,
        cache,
        disk_epoch: disk.epoch(),
        disk_tries: 0,
        next_give_back: Instant::now(),
        brief: false,
        slot: None,
        disk,
        touched: Touched::default(),
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
        lock_wait: options.busy_timeout,
        lock_deadline: None,
        last_busy: None,
        compacting: Vec::new(),
        hook,
        replica,
        replay_clock: None,
        #[cfg(feature = "test-hooks")]
        panic_next: false,
        #[cfg(feature = "test-hooks")]
        panic_in_sweep: false,
    };
    let name = format!("litestash {}", crate::key::SHARDS[writer.file.index]);
    let engine: Engine = Arc::new(Mutex::new(Some(writer)));
    let thread_engine = Arc::clone(&engine);
    let thread_queue = Arc::clone(&queue);
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&thread_engine, &thread_queue, &rx, &slots))
        .map_err(|e| Error::io(&e, "starting a shard writer thread"))?;
    Ok((queue, engine, handle))
}

/// The writer thread: waits for work, then takes a commit slot and the
/// engine's lock, drains what is queued into one transaction and does the
/// background work due.
fn run(
    engine: &Mutex<Option<Writer>>,
    queue: &Queue,
    rx: &Receiver<Message>,
    slots: &Arc<CommitSlots>,
) {
    yield_to_schedulers();
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
        // The engine first: an inline commit may hold it while it waits
        // for another process's lock on the file, and no slot is held
        // through that. Inline commits only try the engine's lock, and a
        // slot holder never waits for an engine.
        let mut guard = lock(engine);
        let Some(writer) = guard.as_mut() else {
            return;
        };
        // Then the slot, before the batch is taken, when writes crowd in:
        // they queue up while this thread waits for the CPU (see
        // slots.rs). No inline commit can start meanwhile, as the job in
        // hand is counted as pending.
        writer.slot = first
            .as_ref()
            .filter(|_| slots.crowded(queue.pending.load(Ordering::Acquire)))
            .map(|_| slots.take());
        if let Some(first) = first {
            // Callers that queued while this thread waited for the lock
            // (behind an inline commit) join this batch.
            let (batch, stop) = writer.take_batch(first, rx);
            stopping = stop;
            // Counted until committed (an inline commit must not overtake a
            // job in hand), uncounted before the callers are answered (a
            // lone writer's next write must not see its own job).
            let size = batch.len();
            writer.commit_and_report(batch, || {
                queue.pending.fetch_sub(size, Ordering::AcqRel);
            });
        }
        writer.slot = None;
        queue.wake_sent.store(false, Ordering::Release);
        if queue.sweep_requested.swap(false, Ordering::AcqRel) {
            writer.next_sweep = Instant::now();
        }
        if catch_unwind(AssertUnwindSafe(|| writer.background())).is_err() {
            writer.recover();
        }
    }
    // Shutdown: whatever was queued before it is committed too, then the
    // connection is closed on this thread.
    let writer = lock(engine).take();
    if let Some(mut writer) = writer {
        writer.finish(rx);
    }
}

/// How much lower than the VM's threads a writer thread runs (a nice
/// value): when the cores are busy, the BEAM's schedulers get them first
/// and our 16 writers share what is left, batching more per commit.
const WRITER_NICE: libc::c_int = 10;

/// Lowers the calling writer thread's priority by [`WRITER_NICE`] (Linux
/// sets it per thread). Best effort: a system that refuses leaves it.
fn yield_to_schedulers() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority on the calling thread only.
    unsafe {
        let tid = libc::gettid();
        if let Ok(tid) = libc::id_t::try_from(tid) {
            let _ = libc::setpriority(libc::PRIO_PROCESS, tid, WRITER_NICE);
        }
    }
}

/// Commits `op` on the calling thread when the store has no job queued or
/// in hand at any writer and this shard's writer lock is free: its answer.
/// Gives the op back (`Err`) otherwise, for the caller to queue; never
/// waits for the lock.
pub(crate) fn commit_inline(
    engine: &Mutex<Option<Writer>>,
    queue: &Queue,
    op: Op,
) -> std::result::Result<Result<Outcome>, Op> {
    if queue.pending.load(Ordering::Acquire) != 0 {
        return Err(op);
    }
    let mut guard = match engine.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return Err(op),
    };
    let Some(writer) = guard.as_mut() else {
        return Err(op);
    };
    let result = writer.commit_one(&op);
    let due = writer.checkpoint_due();
    drop(guard);
    if due {
        // Checkpoints stay off the callers' path: the thread does it.
        queue.wake();
    }
    Ok(result)
}

pub(crate) struct Writer {
    file: Arc<ShardFile>,
    conn: Connection,
    /// Frames in the WAL after the last commit, as the WAL hook reported.
    wal_pages: Arc<AtomicI32>,
    /// The WAL hook ran: the last commit wrote frames.
    wrote: Arc<AtomicBool>,
    cache: Arc<ValueCache>,
    disk: Arc<Disk>,
    /// The disk's alarm count this writer last acted on.
    disk_epoch: u64,
    /// Tries left at giving back the WAL after the last alarm, while the
    /// disk has no room for this shard's checkpoint.
    disk_tries: u32,
    /// No WAL give-back is tried before this (one found no room).
    next_give_back: Instant,
    /// Inside [`Writer::briefly`]: the short busy timeout is set.
    brief: bool,
    /// The commit slot the batch in hand was taken under; dropped while
    /// this writer waits for anything but the CPU.
    slot: Option<Slot>,
    /// What the open transaction's writes touched, for the cache.
    pub(super) touched: Touched,
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
    /// How long the connection waits for the file's lock, as set now.
    lock_wait: Duration,
    /// When the jobs in hand must have the lock: their oldest's call plus
    /// `busy_timeout`. Each transaction for them waits no longer.
    lock_deadline: Option<Instant>,
    /// When the last transaction that timed out waiting for the file's
    /// lock (another process held it) began, and its error; `None` once a
    /// transaction gets the lock. Jobs queued before that moment have
    /// waited a full busy timeout already: they get the error at once, so
    /// that waits do not add up batch after batch.
    last_busy: Option<(Instant, Error)>,
    /// Callers of `compact` waiting for the free list to be empty.
    compacting: Vec<Reply>,
    hook: HookSlot,
    /// The file is a replica's (contract section 10): only replicated ops
    /// write it, and it is not swept here.
    replica: bool,
    /// The clock of the replicated entry being applied; `None` for the
    /// wall clock.
    replay_clock: Option<Now>,
    /// Test hook: the next write applied panics.
    #[cfg(feature = "test-hooks")]
    pub(crate) panic_next: bool,
    /// Test hook: the next sweep panics inside its transaction.
    #[cfg(feature = "test-hooks")]
    pub(crate) panic_in_sweep: bool,
}

impl Writer {
    /// The writer's connection, for figures.
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The clock of the write being applied.
    fn now(&self) -> Now {
        self.replay_clock.unwrap_or_else(Now::wall)
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

    /// Commits one write on its own (inline) and reports it: its answer. A
    /// panic while committing is an `Internal` error and the writer goes on.
    fn commit_one(&mut self, op: &Op) -> Result<Outcome> {
        // Inline: no queue wait, the whole busy timeout.
        self.lock_deadline = None;
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| match op {
            // A snapshot is installed outside any transaction.
            Op::Install(path) => self.install(path).map(|()| Outcome::Done),
            op => self.commit_with_room(Need::of([op]), |w| w.apply(op)),
        }))
        .inspect(|result| self.note_lock(started, result))
        .unwrap_or_else(|_| {
            self.abandon_transaction();
            Err(Error::new(
                ErrorKind::Internal,
                "internal error while writing (a panic was caught)",
            ))
        });
        self.report_commit(1, started);
        result
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
        answer_all(answers.unwrap_or_default());
        self.report_commit(size, started);
    }

    fn report_commit(&self, batch_size: usize, started: Instant) {
        let shard = self.file.index;
        self.hook.emit(|| Event::Commit {
            shard,
            batch_size,
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
                Ok(answers) => answer_all(answers),
                Err(_) => self.abandon_transaction(),
            }
        }
        self.abandon_compactions();
        let _ = self.checkpoint("TRUNCATE");
    }

    /// Commits `batch`; the callers' answers, not yet sent.
    fn commit_batch(&mut self, mut batch: Vec<Job>) -> Vec<(Reply, Result<Outcome>)> {
        // Compaction runs in steps between batches, never inside one, and
        // an install replaces the file outside any transaction.
        let mut answers = Vec::new();
        let mut i = 0;
        while i < batch.len() {
            match &batch[i].op {
                Op::Compact => {
                    // A file without auto_vacuum is vacuumed whole here.
                    self.slot = None;
                    let job = batch.remove(i);
                    self.start_compaction(job.reply);
                }
                Op::Install(path) => {
                    // Replacing the file waits for the disk, not the CPU.
                    self.slot = None;
                    let result = self.install(&path.clone()).map(|()| Outcome::Done);
                    answers.push((batch.remove(i).reply, result));
                }
                _ => i += 1,
            }
        }
        if !answers.is_empty() {
            answers.extend(self.commit_batch(batch));
            return answers;
        }
        answers = self.answer_timed_out(&mut batch);
        if batch.is_empty() {
            return answers;
        }
        // No caller waits for the file's lock more than about one busy
        // timeout from its call, however many batches meet the lock held:
        // every transaction for this batch (retries included) waits only
        // what is left of its oldest job's.
        self.lock_deadline = batch
            .iter()
            .map(|job| job.queued_at)
            .min()
            .and_then(|oldest| oldest.checked_add(self.busy_timeout));
        answers.extend(self.commit_jobs(batch));
        self.lock_deadline = None;
        answers
    }

    /// Sets how long the connection waits for the file's lock, when that
    /// changes.
    pub(super) fn wait_for_lock(&mut self, wait: Duration) -> Result<()> {
        if wait != self.lock_wait {
            self.conn.busy_timeout(wait).map_err(|e| self.file.err(e))?;
            self.lock_wait = wait;
        }
        Ok(())
    }

    /// Commits the jobs of `batch` (no compaction or install among them)
    /// in one transaction, each in its savepoint; their answers.
    fn commit_jobs(&mut self, batch: Vec<Job>) -> Vec<(Reply, Result<Outcome>)> {
        let started = Instant::now();
        if batch.len() == 1 {
            let op = &batch[0].op;
            let result = self.commit_with_room(Need::of([op]), |w| w.apply(op));
            self.note_lock(started, &result);
            return pair(batch, vec![result]);
        }
        let together = self.commit_with_room(Need::of(batch.iter().map(|j| &j.op)), |w| {
            batch
                .iter()
                .map(|job| w.apply_isolated(&job.op))
                .collect::<Result<Vec<_>>>()
        });
        self.note_lock(started, &together);
        let results = match together {
            Ok(results) => results,
            // The file's lock was not had within the busy timeout: every
            // write of the batch has waited it, and gets the answer now.
            Err(e) if e.kind() == ErrorKind::Busy => batch.iter().map(|_| Err(e.clone())).collect(),
            // The transaction as a whole failed for a reason that may be
            // one write's (the disk filled at commit): commit each write on
            // its own so that only the writes that fail again get an error,
            // and stop trying as soon as the lock is lost.
            Err(_) => {
                let mut results = Vec::with_capacity(batch.len());
                for job in &batch {
                    let result = match &self.last_busy {
                        Some((_, e)) => Err(e.clone()),
                        None => {
                            let started = Instant::now();
                            let op = &job.op;
                            let result = self.commit_with_room(Need::of([op]), |w| w.apply(op));
                            self.note_lock(started, &result);
                            result
                        }
                    };
                    results.push(result);
                }
                results
            }
        };
        pair(batch, results)
    }

    /// Takes out of `batch` the jobs queued before the last transaction
    /// that timed out on the lock began: their answers, that error.
    fn answer_timed_out(&self, batch: &mut Vec<Job>) -> Vec<(Reply, Result<Outcome>)> {
        let Some((since, error)) = &self.last_busy else {
            return Vec::new();
        };
        let (stale, fresh): (Vec<Job>, Vec<Job>) =
            batch.drain(..).partition(|job| job.queued_at <= *since);
        *batch = fresh;
        stale
            .into_iter()
            .map(|job| (job.reply, Err(error.clone())))
            .collect()
    }

    /// Records whether a transaction begun at `started` had the lock.
    fn note_lock<T>(&mut self, started: Instant, result: &Result<T>) {
        match result {
            Err(e) if e.kind() == ErrorKind::Busy => self.last_busy = Some((started, e.clone())),
            _ => self.last_busy = None,
        }
    }

    /// After a panic caught in the writer's background work: rolls back
    /// what it left open, and ends a [`Writer::briefly`] it cut short, so
    /// that the next transactions wait for the file's lock as long as they
    /// should again, not a background task's 100 ms.
    fn recover(&mut self) {
        self.abandon_transaction();
        self.brief = false;
        let _ = self.wait_for_lock(self.busy_timeout);
    }

    /// Rolls back a transaction a caught panic left open, so that the
    /// shard's next `BEGIN` works and other processes get the lock back.
    fn abandon_transaction(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch(sql::ROLLBACK);
        }
    }

    /// Runs `f` in `BEGIN IMMEDIATE` ... `COMMIT`, rolling back on error.
    /// After a commit, before anyone hears of it, the value cache drops
    /// what the transaction touched and records the change counter the
    /// commit made: the one read under the write lock at `BEGIN`, plus one
    /// if the commit wrote to the WAL.
    fn transaction<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T>) -> Result<T> {
        // Whatever left a transaction open, this one starts clean.
        self.abandon_transaction();
        if !self.brief {
            let wait = self.lock_deadline.map_or(self.busy_timeout, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            self.wait_for_lock(wait.min(self.busy_timeout))?;
        }
        let disk = Arc::clone(&self.disk);
        let _room = match disk.try_commit_gate() {
            Some(gate) => gate,
            // A loan of the disk's reserve (a full disk) holds the gate or
            // waits for it: a wait for the disk, not for the CPU.
            None => {
                self.slot = None;
                disk.commit_gate()
            }
        };
        self.begin_write()?;
        let begun = self.cache.begin(self.file.index);
        self.touched = Touched::default();
        let result = f(self).and_then(|value| {
            self.wrote.store(false, Ordering::Relaxed);
            self.exec(sql::COMMIT).map(|()| value)
        });
        if result.is_err() && !self.conn.is_autocommit() {
            let _ = self.exec(sql::ROLLBACK);
        }
        if result.is_ok() {
            let wrote = self.wrote.load(Ordering::Relaxed);
            self.cache
                .committed(self.file.index, begun, wrote, &self.touched);
        }
        result
    }

    /// `BEGIN IMMEDIATE`, waiting for the file's lock as set. A writer that
    /// holds a commit slot first tries without waiting, and gives the slot
    /// up before it waits: another process's hold on this file must not
    /// keep the other shards' writers from committing.
    fn begin_write(&mut self) -> Result<()> {
        if self.slot.is_some() && !self.brief {
            let wait = self.lock_wait;
            self.wait_for_lock(Duration::ZERO)?;
            let tried = self.exec(sql::BEGIN_WRITE);
            if let Err(e) = self.wait_for_lock(wait) {
                self.abandon_transaction();
                return Err(e);
            }
            match tried {
                Err(e) if e.kind() == ErrorKind::Busy => self.slot = None,
                tried => return tried,
            }
        }
        self.exec(sql::BEGIN_WRITE)
    }

    /// Applies one write inside a savepoint, so that its failure undoes it
    /// alone. `Err` only when the whole transaction is lost.
    fn apply_isolated(&mut self, op: &Op) -> Result<Result<Outcome>> {
        self.apply_in(&sql::WRITE_SAVEPOINT, op)
    }

    /// Applies `op` inside `savepoint`: its failure undoes it alone. `Err`
    /// only when SQLite rolled the whole transaction back (disk full, I/O
    /// error).
    fn apply_in(&mut self, savepoint: &sql::Savepoint, op: &Op) -> Result<Result<Outcome>> {
        self.exec(savepoint.begin)?;
        let result = self.apply(op);
        if self.conn.is_autocommit() {
            return Err(result.err().unwrap_or_else(|| {
                Error::new(ErrorKind::Internal, "transaction ended unexpectedly")
            }));
        }
        if result.is_err() {
            self.exec(savepoint.rollback)?;
        }
        self.exec(savepoint.release)?;
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
}

/// Each job's reply with its result.
fn pair(batch: Vec<Job>, results: Vec<Result<Outcome>>) -> Vec<(Reply, Result<Outcome>)> {
    batch
        .into_iter()
        .zip(results)
        .map(|(job, result)| (job.reply, result))
        .collect()
}
