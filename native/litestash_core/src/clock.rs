//! The wall clock, in the units the contract stores.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix time as the contract's `timestamp` (seconds) and `microsecond`.
pub(crate) fn now_parts() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_micros()))
}

/// Unix milliseconds `ttl_ms` from now.
pub(crate) fn expires_at(ttl_ms: u64) -> i64 {
    now_ms().saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX))
}

/// The clock a write runs by: the wall clock for this store's own writes,
/// or the instant a replication log entry carries, so that every replica
/// applying it computes the same file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Unix milliseconds: what expiry is compared with.
    pub ms: i64,
    /// The contract's `timestamp` (seconds) and `microsecond` columns.
    pub secs: i64,
    pub micros: i64,
}

impl Now {
    /// The wall clock now.
    pub(crate) fn wall() -> Now {
        let (secs, micros) = now_parts();
        Now {
            ms: secs.saturating_mul(1000) + micros / 1000,
            secs,
            micros,
        }
    }

    /// The instant `ms` Unix milliseconds.
    pub(crate) fn at_ms(ms: i64) -> Now {
        Now {
            ms,
            secs: ms.div_euclid(1000),
            micros: ms.rem_euclid(1000) * 1000,
        }
    }
}
