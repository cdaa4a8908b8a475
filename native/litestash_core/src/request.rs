//! A write as a caller asks for it: validated, hashed, routed and encoded
//! once, before it reaches a shard writer ([`crate::Store::submit`]).

use crate::clock::expires_at;
use crate::codec::{canonical, encode, Value};
use crate::error::Result;
use crate::key::{Key, SHARD_COUNT};
use crate::writer::op::{Op, Row, Target};

/// A write ready to submit. Build it with one of the constructors, which
/// refuse bad input before anything is queued.
#[derive(Debug)]
pub struct Request {
    pub(crate) kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// A write of one key: it may commit inline.
    One { shard: usize, op: Op },
    /// One op per shard, answered once all are done.
    Each(Vec<(usize, Op)>),
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

fn target(key: Key) -> Target {
    Target {
        table: key.route.table,
        hash: key.hash,
        key: key.text,
    }
}

impl Request {
    fn one(shard: usize, op: Op) -> Request {
        Request {
            kind: Kind::One { shard, op },
        }
    }

    fn each(ops: impl Iterator<Item = (usize, Op)>) -> Request {
        Request {
            kind: Kind::Each(ops.collect()),
        }
    }

    /// Writes `value` under `key`, expiring `ttl_ms` milliseconds from now
    /// when given, else clearing any expiry.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidKey`], and value errors from [`encode`].
    pub fn set(key: &[u8], value: &Value, ttl_ms: Option<u64>) -> Result<Request> {
        let key = Key::new(key)?;
        let shard = key.route.shard;
        let row = row(key, encode(value)?, ttl_ms.map(expires_at));
        Ok(Request::one(shard, Op::Put(vec![row])))
    }

    /// Writes every pair, atomic per shard file; every pair is validated
    /// and encoded before anything is queued.
    ///
    /// # Errors
    /// As [`Request::set`], for the first pair that is refused.
    pub fn set_many(pairs: &[(&[u8], &Value)]) -> Result<Request> {
        let mut by_shard: Vec<Vec<Row>> = (0..SHARD_COUNT).map(|_| Vec::new()).collect();
        for (key, value) in pairs {
            let key = Key::new(key)?;
            let shard = key.route.shard;
            by_shard[shard].push(row(key, encode(value)?, None));
        }
        Ok(Request::each(
            by_shard
                .into_iter()
                .enumerate()
                .filter(|(_, rows)| !rows.is_empty())
                .map(|(shard, rows)| (shard, Op::Put(rows))),
        ))
    }

    /// Deletes `key` (an absent key is fine).
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidKey`].
    pub fn delete(key: &[u8]) -> Result<Request> {
        let key = Key::new(key)?;
        Ok(Request::one(key.route.shard, Op::Delete(target(key))))
    }

    /// Sets (`Some(ms)` from now) or clears (`None`) the expiry of a stored
    /// key; answers [`crate::ErrorKind::NotFound`] for a key not stored.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidKey`].
    pub fn expire(key: &[u8], ttl_ms: Option<u64>) -> Result<Request> {
        let key = Key::new(key)?;
        let shard = key.route.shard;
        Ok(Request::one(
            shard,
            Op::Expire(target(key), ttl_ms.map(expires_at)),
        ))
    }

    /// Adds `by` to the integer under `key` (an absent key counts from 0)
    /// in one transaction: answers `Outcome::Integer(new value)` or
    /// [`crate::ErrorKind::NotAnInteger`].
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidKey`].
    pub fn incr(key: &[u8], by: i64) -> Result<Request> {
        let key = Key::new(key)?;
        Ok(Request::one(key.route.shard, Op::Incr(target(key), by)))
    }

    /// Writes `value` only if `key` is absent (or expired), expiring
    /// `ttl_ms` from now when given (an expiring lock in one write);
    /// answers [`crate::ErrorKind::Exists`] otherwise.
    ///
    /// # Errors
    /// As [`Request::set`].
    pub fn put_new(key: &[u8], value: &Value, ttl_ms: Option<u64>) -> Result<Request> {
        let key = Key::new(key)?;
        let shard = key.route.shard;
        let row = row(key, encode(value)?, ttl_ms.map(expires_at));
        Ok(Request::one(shard, Op::PutNew(row)))
    }

    /// Writes `new` only if the stored value equals `expected` (compared by
    /// [`canonical`] encoding: map order does not matter, `1` and `1.0`
    /// differ). An `expected` of nil matches an absent key and a stored
    /// nil. Answers [`crate::ErrorKind::Mismatch`] otherwise. Like
    /// [`Request::set`], the write sets the key's expiry to `ttl_ms` from
    /// now, or clears it when `None`.
    ///
    /// # Errors
    /// As [`Request::set`], for either value.
    pub fn compare_and_set(
        key: &[u8],
        expected: &Value,
        new: &Value,
        ttl_ms: Option<u64>,
    ) -> Result<Request> {
        let key = Key::new(key)?;
        let expected = match expected {
            Value::Nil => None,
            other => Some(canonical(other)?),
        };
        let shard = key.route.shard;
        Ok(Request::one(
            shard,
            Op::CompareAndSet(row(key, encode(new)?, ttl_ms.map(expires_at)), expected),
        ))
    }

    /// Removes every key of every shard.
    pub fn clear() -> Request {
        Request::each((0..SHARD_COUNT).map(|shard| (shard, Op::Clear)))
    }

    /// Gives the space of deleted rows back to the file system, on every
    /// shard, in bounded steps between the writers' other work.
    pub fn compact() -> Request {
        Request::each((0..SHARD_COUNT).map(|shard| (shard, Op::Compact)))
    }

    /// Whether the request may commit inline: a write of one key.
    pub fn is_single_key(&self) -> bool {
        matches!(self.kind, Kind::One { .. })
    }
}
