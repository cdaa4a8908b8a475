//! What a write answers, and how the answer reaches its caller.

use crate::error::{Error, ErrorKind, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a committed write reports.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The write is committed.
    Done,
    /// The write is committed and produced this integer (`incr`).
    Integer(i64),
    /// A replicated entry was applied: each op's own answer, in order.
    Replicated(Vec<Result<Outcome>>),
    /// A replicated entry the file already holds (its index is at or below
    /// the applied index): nothing was written.
    Skipped,
}

/// What [`crate::Store::submit`] did with a write.
#[derive(Debug)]
pub enum Submitted {
    /// Committed (or refused) on the calling thread: the answer.
    Committed(Result<Outcome>),
    /// Handed to the shard writers: the [`Reply`] made for it hears the
    /// answer once committed.
    Queued,
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
}

impl Reply {
    /// Wraps `callback`.
    pub fn new(callback: impl FnOnce(Result<Outcome>) + Send + 'static) -> Reply {
        Reply {
            callback: Some(Box::new(callback)),
            queued: false,
        }
    }

    /// Marks the reply as handed to a writer: from now on, dropping it
    /// unanswered answers the caller.
    pub(crate) fn queued(mut self) -> Reply {
        self.queued = true;
        self
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

/// Answers the callers; a callback that panics does not stop the others.
pub(crate) fn answer_all(answers: Vec<(Reply, Result<Outcome>)>) {
    for (reply, result) in answers {
        let _ = catch_unwind(AssertUnwindSafe(|| reply.send(result)));
    }
}
