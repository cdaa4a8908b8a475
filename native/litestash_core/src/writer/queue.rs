//! The way into a shard's writer: the jobs it is sent, its channel and the
//! store-wide count of jobs in hand.

use super::op::Op;
use crate::disk::Wake;
use crate::reply::Reply;
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A write and the promise to answer its caller.
pub(crate) struct Job {
    pub op: Op,
    pub reply: Reply,
    /// When it was queued: a job queued before a wait for the file's lock
    /// that timed out has had its busy timeout, and is not made to wait
    /// another one (see [`Writer::last_busy`]).
    pub(super) queued_at: Instant,
}

impl Job {
    pub(crate) fn new(op: Op, reply: Reply) -> Job {
        Job {
            op,
            reply,
            queued_at: Instant::now(),
        }
    }
}

pub(super) enum Message {
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
    pub(super) tx: Sender<Message>,
    pub(super) pending: Arc<AtomicUsize>,
    /// A `Wake` is on its way and the writer has not yet run its
    /// background work: no need for another.
    pub(super) wake_sent: AtomicBool,
    /// A read met an expired key: sweep now rather than at the next
    /// interval. A flag, not a job per key, so that reads of expired keys
    /// cost the writer nothing while it is busy.
    pub(super) sweep_requested: AtomicBool,
}

impl Queue {
    /// Queues `job`; `false` (with the reply defused) when the writer has
    /// stopped.
    pub(crate) fn send(&self, job: Job) -> bool {
        self.pending.fetch_add(1, Ordering::AcqRel);
        match self.tx.send(Message::Job(job)) {
            Ok(()) => true,
            Err(crossbeam_channel::SendError(message)) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                if let Message::Job(job) = message {
                    job.reply.defuse();
                }
                false
            }
        }
    }

    /// Messages in the channel now (a test's view of the backlog).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn backlog(&self) -> usize {
        self.tx.len()
    }

    /// Tells the writer to commit what is queued, then stop.
    pub(crate) fn shutdown(&self) {
        let _ = self.tx.send(Message::Shutdown);
    }

    /// Asks the writer for an expiry sweep soon.
    pub(crate) fn request_sweep(&self) {
        if !self.sweep_requested.swap(true, Ordering::AcqRel) {
            self.wake();
        }
    }
}

impl Wake for Queue {
    /// Asks the writer thread for its background work (a checkpoint).
    fn wake(&self) {
        if !self.wake_sent.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Message::Wake);
        }
    }
}

/// Jobs queued or being committed by the writer threads of one store.
pub(crate) type Pending = Arc<AtomicUsize>;
