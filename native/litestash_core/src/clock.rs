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
