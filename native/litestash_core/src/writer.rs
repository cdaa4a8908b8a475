//! The one writer of a shard: a thread that drains its queue into one
//! transaction per batch ("group commit"), answers every caller after the
//! commit, and checkpoints the WAL off the callers' path.

use crate::error::{Error, ErrorKind, Result};
use crate::shard::ShardFile;
use crate::store::Options;
use crossbeam_channel::{Receiver, Sender};
use rusqlite::{params, Connection};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a finished write reports.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The write is committed.
    Done,
}

/// A callback that receives the result of a queued write.
pub type Callback = Box<dyn FnOnce(Result<Outcome>) + Send + 'static>;

/// The promise to answer one caller exactly once. If it is dropped without
/// an answer (a queue torn down at shutdown, a panic), the caller hears
/// `Closed` or `Internal` rather than waiting forever.
pub struct Reply {
    callback: Option<Callback>,
}

impl Reply {
    /// Wraps `callback`.
    pub fn new(callback: impl FnOnce(Result<Outcome>) + Send + 'static) -> Reply {
        Reply {
            callback: Some(Box::new(callback)),
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
}

/// A write, applied atomically in the shard's file.
#[derive(Debug)]
pub(crate) enum Op {
    Put(Vec<Row>),
    Delete { table: usize, hash: String },
    Clear,
}

impl Op {
    fn weight(&self) -> usize {
        match self {
            Op::Put(rows) => rows.iter().map(|r| r.value.len() + r.key.len() + 96).sum(),
            _ => 96,
        }
    }
}

pub(crate) struct Job {
    pub op: Op,
    pub reply: Reply,
}

pub(crate) enum Message {
    Job(Job),
    /// Commit everything queued so far, then stop.
    Shutdown,
}

/// Starts the writer thread of `file` on `conn`.
pub(crate) fn spawn(
    file: Arc<ShardFile>,
    mut conn: Connection,
    options: &Options,
) -> Result<(Sender<Message>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let wal_pages = Arc::new(AtomicI32::new(0));
    let hook_pages = Arc::clone(&wal_pages);
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
        hook_pages.store(pages, Ordering::Relaxed);
        Ok(())
    }))
    .map_err(|e| file.err(e))?;
    let mut writer = Writer {
        file,
        conn,
        wal_pages,
        max_batch: options.max_batch.max(1),
        max_batch_bytes: options.max_batch_bytes.max(1),
        checkpoint_pages: options.checkpoint_pages,
        truncate_pages: options.truncate_pages,
    };
    let name = format!("litestash {}", crate::key::SHARDS[writer.file.index]);
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn(move || writer.run(rx))
        .map_err(|e| Error::io(&e, "starting a shard writer thread"))?;
    Ok((tx, handle))
}

struct Writer {
    file: Arc<ShardFile>,
    conn: Connection,
    /// Frames in the WAL after the last commit, as the WAL hook reported.
    wal_pages: Arc<AtomicI32>,
    max_batch: usize,
    max_batch_bytes: usize,
    checkpoint_pages: i32,
    truncate_pages: i32,
}

fn now() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_micros()))
}

impl Writer {
    fn run(&mut self, rx: Receiver<Message>) {
        let mut stopping = false;
        while !stopping {
            let first = match rx.recv() {
                Ok(Message::Job(job)) => job,
                Ok(Message::Shutdown) | Err(_) => break,
            };
            let mut batch = vec![first];
            let mut bytes = batch[0].op.weight();
            // Take what is already queued, never waiting for more: a lone
            // writer pays no batching delay.
            while batch.len() < self.max_batch && bytes < self.max_batch_bytes {
                match rx.try_recv() {
                    Ok(Message::Job(job)) => {
                        bytes += job.op.weight();
                        batch.push(job);
                    }
                    Ok(Message::Shutdown) => {
                        stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            // A panic here answers every caller of the batch through
            // `Reply`'s destructor and the thread goes on.
            let _ = catch_unwind(AssertUnwindSafe(|| self.commit_batch(batch)));
            self.checkpoint_if_due();
        }
        // Shutdown: whatever was queued before it is committed too.
        let rest: Vec<Job> = rx
            .try_iter()
            .filter_map(|m| match m {
                Message::Job(job) => Some(job),
                Message::Shutdown => None,
            })
            .collect();
        let mut rest = rest.into_iter().peekable();
        while rest.peek().is_some() {
            let batch: Vec<Job> = rest.by_ref().take(self.max_batch).collect();
            let _ = catch_unwind(AssertUnwindSafe(|| self.commit_batch(batch)));
        }
        let _ = self.checkpoint("TRUNCATE");
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        if batch.len() == 1 {
            let results = vec![self.transaction(|w| w.apply(&batch[0].op))];
            return answer(batch, results);
        }
        let together = self.transaction(|w| {
            batch
                .iter()
                .map(|job| w.apply_isolated(&job.op))
                .collect::<Result<Vec<_>>>()
        });
        match together {
            Ok(results) => answer(batch, results),
            // The transaction as a whole failed (the disk filled at commit,
            // a lock timed out): commit each write on its own so that only
            // the writes that fail again get an error.
            Err(_) => {
                let results = batch
                    .iter()
                    .map(|job| self.transaction(|w| w.apply(&job.op)))
                    .collect();
                answer(batch, results)
            }
        }
    }

    /// Runs `f` in `BEGIN IMMEDIATE` ... `COMMIT`, rolling back on error.
    fn transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
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
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(|e| self.file.err(e))
    }

    fn apply(&mut self, op: &Op) -> Result<Outcome> {
        let err = |e| self.file.err(e);
        match op {
            Op::Put(rows) => {
                let (secs, micros) = now();
                for row in rows {
                    let sql = &self.file.tables[row.table].upsert;
                    self.conn
                        .prepare_cached(sql)
                        .and_then(|mut s| {
                            s.execute(params![row.hash, row.key, row.value, secs, micros])
                        })
                        .map_err(err)?;
                }
            }
            Op::Delete { table, hash } => {
                let sql = &self.file.tables[*table].delete;
                self.conn
                    .prepare_cached(sql)
                    .and_then(|mut s| s.execute([hash]))
                    .map_err(err)?;
            }
            Op::Clear => {
                for table in &self.file.tables {
                    self.conn.execute(&table.clear, []).map_err(err)?;
                }
            }
        }
        Ok(Outcome::Done)
    }

    /// Copies the WAL back into the file once it holds `checkpoint_pages`,
    /// without waiting for readers; past `truncate_pages` (a WAL readers kept
    /// from resetting) waits for them and truncates it.
    fn checkpoint_if_due(&mut self) {
        let pages = self.wal_pages.load(Ordering::Relaxed);
        if pages >= self.truncate_pages {
            if self.checkpoint("TRUNCATE").is_ok() {
                self.wal_pages.store(0, Ordering::Relaxed);
            }
        } else if pages >= self.checkpoint_pages {
            let _ = self.checkpoint("PASSIVE");
        }
    }

    fn checkpoint(&self, mode: &str) -> Result<()> {
        self.conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
            .map_err(|e| self.file.err(e))
    }
}

fn answer(batch: Vec<Job>, results: Vec<Result<Outcome>>) {
    for (job, result) in batch.into_iter().zip(results) {
        job.reply.send(result);
    }
}
