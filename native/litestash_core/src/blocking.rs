//! Blocking forms of the writes, for Rust callers that may wait on the
//! calling thread (tests, tools): each submits, then waits for the commit.

use crate::codec::Value;
use crate::error::{Error, ErrorKind, Result};
use crate::reply::{Outcome, Reply, Submitted};
use crate::request::Request;
use crate::store::Store;

impl Store {
    /// Submits `request`, committing it on this thread when the store has
    /// a lone writer, and waits for its answer.
    ///
    /// # Errors
    /// The refusal of the request or of its commit.
    pub fn write(&self, request: Request) -> Result<Outcome> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let reply = move || {
            Reply::new(move |result| {
                let _ = tx.send(result);
            })
        };
        match self.submit(request, self.inline_slot(), reply)? {
            Submitted::Committed(result) => result,
            Submitted::Queued => rx.recv().unwrap_or_else(|_| Err(Error::closed())),
        }
    }

    /// Writes `value` under `key` and waits for the commit.
    ///
    /// # Errors
    /// As [`Request::set`], and any error of the commit.
    pub fn set(&self, key: &[u8], value: &Value) -> Result<()> {
        self.write(Request::set(key, value, None)?).map(|_| ())
    }

    /// Writes every pair (atomic per shard file) and waits for the commits.
    ///
    /// # Errors
    /// As [`Request::set_many`], and any error of the commits.
    pub fn set_many(&self, pairs: &[(&[u8], &Value)]) -> Result<()> {
        self.write(Request::set_many(pairs)?).map(|_| ())
    }

    /// Deletes `key` and waits for the commit.
    ///
    /// # Errors
    /// As [`Request::delete`], and any error of the commit.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.write(Request::delete(key)?).map(|_| ())
    }

    /// Removes every key and waits for the commits.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`], a broken shard's error, and any error of the
    /// commits.
    pub fn clear(&self) -> Result<()> {
        self.write(Request::clear()).map(|_| ())
    }

    /// Adds `by` to the integer under `key` and waits: the new value.
    ///
    /// # Errors
    /// As [`Request::incr`], and [`ErrorKind::NotAnInteger`].
    pub fn incr(&self, key: &[u8], by: i64) -> Result<i64> {
        match self.write(Request::incr(key, by)?)? {
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
    /// [`ErrorKind::Closed`], a broken shard's error, SQLite errors.
    pub fn compact(&self) -> Result<()> {
        self.write(Request::compact()).map(|_| ())
    }
}
