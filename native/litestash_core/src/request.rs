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
    /// An entry of a replication log (or a snapshot install), which only a
    /// replica applies.
    pub(crate) replicated: bool,
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
            replicated: false,
        }
    }

    fn each(ops: impl Iterator<Item = (usize, Op)>) -> Request {
        Request {
            kind: Kind::Each(ops.collect()),
            replicated: false,
        }
    }

    /// The ops of replication log entry `index` for shard `shard`, applied
    /// in one transaction with the entry's index by the clock `now_ms`
    /// (Unix milliseconds, chosen once by the log's leader): answers
    /// `Outcome::Replicated` with each op's answer, or `Outcome::Skipped`
    /// for an entry the file already holds. Expiry deadlines in `ops` are
    /// absolute (Unix milliseconds).
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidKey`] for a bad key,
    /// [`crate::ErrorKind::InvalidArgument`] for a key of another shard,
    /// value errors from [`encode`].
    pub fn replicated(
        shard: usize,
        index: u64,
        now_ms: i64,
        ops: &[ReplicaOp<'_>],
    ) -> Result<Request> {
        let ops = ops
            .iter()
            .map(|op| op.to_op(shard))
            .collect::<Result<Vec<Op>>>()?;
        Ok(Request {
            kind: Kind::One {
                shard,
                op: Op::Replicated { index, now_ms, ops },
            },
            replicated: true,
        })
    }

    /// Replaces shard `shard`'s file contents with the replica's shard file
    /// at `path` (a snapshot taken with [`crate::Store::shard_snapshot`]).
    pub fn install(shard: usize, path: &std::path::Path) -> Request {
        Request {
            kind: Kind::One {
                shard,
                op: Op::Install(path.to_path_buf()),
            },
            replicated: true,
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

/// One op of a replication log entry, as [`Request::replicated`] takes it.
/// Deadlines are absolute Unix milliseconds (`None`: no expiry).
#[derive(Debug)]
pub enum ReplicaOp<'a> {
    /// Writes a value.
    Set(&'a [u8], &'a Value, Option<i64>),
    /// Writes a value if the key is absent.
    PutNew(&'a [u8], &'a Value, Option<i64>),
    /// Writes `new` if the stored value equals `expected`.
    CompareAndSet(&'a [u8], &'a Value, &'a Value, Option<i64>),
    /// Adds to an integer.
    Incr(&'a [u8], i64),
    /// Deletes a key.
    Delete(&'a [u8]),
    /// Sets or clears a key's expiry.
    Expire(&'a [u8], Option<i64>),
    /// Deletes every key of the shard.
    Clear,
    /// Deletes up to this many keys expired by the entry's clock.
    Sweep(usize),
}

impl ReplicaOp<'_> {
    fn to_op(&self, shard: usize) -> Result<Op> {
        let key_of = |key: &[u8]| -> Result<Key> {
            let key = Key::new(key)?;
            if key.route.shard != shard {
                return Err(crate::error::Error::new(
                    crate::error::ErrorKind::InvalidArgument,
                    format!(
                        "key {:?} belongs to shard {}, not {}",
                        key.text,
                        crate::key::SHARDS[key.route.shard],
                        crate::key::SHARDS[shard]
                    ),
                ));
            }
            Ok(key)
        };
        Ok(match *self {
            ReplicaOp::Set(key, value, at) => Op::Put(vec![row(key_of(key)?, encode(value)?, at)]),
            ReplicaOp::PutNew(key, value, at) => Op::PutNew(row(key_of(key)?, encode(value)?, at)),
            ReplicaOp::CompareAndSet(key, expected, new, at) => {
                let expected = match expected {
                    Value::Nil => None,
                    other => Some(canonical(other)?),
                };
                Op::CompareAndSet(row(key_of(key)?, encode(new)?, at), expected)
            }
            ReplicaOp::Incr(key, by) => Op::Incr(target(key_of(key)?), by),
            ReplicaOp::Delete(key) => Op::Delete(target(key_of(key)?)),
            ReplicaOp::Expire(key, at) => Op::Expire(target(key_of(key)?), at),
            ReplicaOp::Clear => Op::Clear,
            ReplicaOp::Sweep(limit) => Op::Sweep(limit.max(1)),
        })
    }
}
