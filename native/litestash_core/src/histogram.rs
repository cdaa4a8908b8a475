//! A histogram of durations that many threads record into without a lock
//! (atomics only), read and reset in one pass: what the NIF uses to time
//! its calls on the caller's scheduler. It knows nothing of schedulers.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bits of a duration below its leading one that pick its bucket: 16
/// buckets per power of two, so a percentile read from them is at most
/// 6.25 % above the true one (below 16 ns a bucket is 1 ns wide, and
/// from 2^40 ns on, 18 minutes, everything is in the last one).
const SUB_BITS: u32 = 4;
const STEPS: u32 = 1 << SUB_BITS;
/// Enough buckets for 2^40 ns (18 minutes); longer lands in the last.
const BUCKETS: usize = 40 * STEPS as usize;

/// Durations in ns, with a count of those over a bound.
pub struct Histogram {
    bound_ns: u64,
    over_bound: AtomicU64,
    max_ns: AtomicU64,
    total_ns: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

/// What a [`Histogram`] held when it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durations {
    /// How many durations were recorded.
    pub count: u64,
    /// How many of them were over the histogram's bound.
    pub over_bound: u64,
    /// The longest, in ns.
    pub max_ns: u64,
    /// Their sum, in ns.
    pub total_ns: u64,
    buckets: [u64; BUCKETS],
}

impl Histogram {
    /// An empty histogram that counts durations over `bound_ns` apart.
    pub const fn new(bound_ns: u64) -> Self {
        Histogram {
            bound_ns,
            over_bound: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }

    /// Records one duration.
    pub fn record(&self, ns: u64) {
        if ns > self.bound_ns {
            self.over_bound.fetch_add(1, Relaxed);
        }
        self.max_ns.fetch_max(ns, Relaxed);
        self.total_ns.fetch_add(ns, Relaxed);
        self.buckets[bucket(ns)].fetch_add(1, Relaxed);
    }

    /// What was recorded since the last take, zeroed as it is read. A
    /// record racing the take lands in this take or the next, field by
    /// field: take while nothing records for exact figures.
    pub fn take(&self) -> Durations {
        let buckets: [u64; BUCKETS] = std::array::from_fn(|i| self.buckets[i].swap(0, Relaxed));
        let count = buckets.iter().sum();
        // A record split by this take may have left its bucket here and
        // its maximum in the last take: the longest is at least the lowest
        // duration of the highest bucket that holds one.
        let highest = buckets.iter().rposition(|&n| n > 0);
        let floor = highest.map_or(0, |i| if i == 0 { 0 } else { upper_edge(i - 1) });
        Durations {
            count,
            over_bound: self.over_bound.swap(0, Relaxed).min(count),
            max_ns: self.max_ns.swap(0, Relaxed).max(floor),
            total_ns: self.total_ns.swap(0, Relaxed),
            buckets,
        }
    }
}

impl Durations {
    /// The duration that `per_mille` thousandths of the recorded ones do
    /// not exceed, rounded up to its bucket's edge but never above the
    /// longest one; 0 when none was recorded.
    pub fn percentile(&self, per_mille: u64) -> u64 {
        let rank = (self.count * per_mille.min(1000)).div_ceil(1000).max(1);
        let mut seen = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_edge(i).min(self.max_ns);
            }
        }
        0
    }

    /// The mean duration in ns, 0 when none was recorded.
    pub fn mean_ns(&self) -> u64 {
        self.total_ns.checked_div(self.count).unwrap_or(0)
    }
}

/// The bucket of `ns`: `STEPS` per power of two from `STEPS` ns on; below
/// that, one per ns (and the buckets up to the first octave's stay empty).
fn bucket(ns: u64) -> usize {
    if ns < u64::from(STEPS) {
        return ns as usize;
    }
    let octave = 63 - ns.leading_zeros();
    // The bits below the leading one say where in its octave.
    let fraction = (ns >> (octave - SUB_BITS)) & u64::from(STEPS - 1);
    ((octave * STEPS) as usize + fraction as usize).min(BUCKETS - 1)
}

/// The smallest duration of the bucket after `i`.
fn upper_edge(i: usize) -> u64 {
    let first = (SUB_BITS * STEPS) as usize;
    if i < first {
        return (i as u64 + 1).min(u64::from(STEPS));
    }
    let next = i as u32 + 1;
    let fraction = u64::from(next % STEPS);
    (u64::from(STEPS) + fraction) << (next / STEPS - SUB_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_lies_in_its_bucket() {
        for ns in (0..200_000u64).chain([1 << 30, (1 << 39) - 1]) {
            let i = bucket(ns);
            assert!(upper_edge(i) > ns, "{ns} above bucket {i}");
            assert!(i == 0 || upper_edge(i - 1) <= ns, "{ns} below bucket {i}");
        }
    }

    #[test]
    fn percentiles_count_and_bound_what_was_recorded() {
        let h = Histogram::new(100_000);
        for ns in 1..=1000u64 {
            h.record(ns * 1000);
        }
        let d = h.take();
        assert_eq!((d.count, d.over_bound, d.max_ns), (1000, 900, 1_000_000));
        assert_eq!(d.mean_ns(), 500_500);
        // The 990th duration is 990 us: its bucket's edge, within 6.25 %.
        let p99 = d.percentile(990);
        assert!((990_000..=990_000 * 10625 / 10000).contains(&p99), "{p99}");
        assert_eq!(d.percentile(1000), 1_000_000);
        assert!((500_000..=531_250).contains(&d.percentile(500)));
        // Taken means reset.
        let empty = h.take();
        assert_eq!(
            (empty.count, empty.max_ns, empty.percentile(990)),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_take_between_a_records_maximum_and_its_bucket_stays_consistent() {
        let h = Histogram::new(10);
        // As if a record of 5,000 ns had set the maximum of the last take
        // and put its count in this one.
        h.buckets[bucket(5_000)].fetch_add(1, Relaxed);
        h.over_bound.fetch_add(2, Relaxed);
        let d = h.take();
        assert_eq!((d.count, d.over_bound), (1, 1));
        assert!(d.max_ns > 4_000 && d.max_ns <= 5_000, "{}", d.max_ns);
        assert_eq!(d.percentile(990), d.max_ns);
    }

    #[test]
    fn threads_record_without_losing_a_count() {
        let h = Histogram::new(10);
        std::thread::scope(|s| {
            for t in 0..4 {
                let h = &h;
                s.spawn(move || (0..10_000u64).for_each(|i| h.record(t * 10_000 + i)));
            }
        });
        let d = h.take();
        assert_eq!(
            (d.count, d.over_bound, d.max_ns),
            (40_000, 40_000 - 11, 39_999)
        );
    }
}
