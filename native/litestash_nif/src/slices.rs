//! How long our NIF calls hold the calling normal scheduler, measured in
//! the product itself so that the benchmark can hold every call to the
//! scheduler rule's real bound (about 100 us) for any input.
//!
//! Off by default: then a [`Slice`] is one relaxed load and nothing else.
//! While on, every NIF that runs on the caller's scheduler times its body
//! twice: by the wall clock (what the scheduler lost) and by the thread's
//! CPU clock (what the call did: the OS preempting the thread on a busy
//! machine inflates the first, never the second). The totals are the whole
//! VM's, in lock-free histograms, read and reset by `slices_take`.

use litestash_core::{Durations, Histogram};
use rustler::{Encoder, Env, NifResult, Term};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

/// The scheduler rule's bound on one call: 100 us.
const BOUND_NS: u64 = 100_000;

static ON: AtomicBool = AtomicBool::new(false);
static WALL: Histogram = Histogram::new(BOUND_NS);
static CPU: Histogram = Histogram::new(BOUND_NS);

/// This thread's CPU time in ns, or 0 if the clock cannot be read.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    secs * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// One NIF call's time on the caller's scheduler, recorded when dropped:
/// start it first thing in the NIF's body and keep it to the end.
pub struct Slice {
    wall: Instant,
    cpu_ns: u64,
}

impl Slice {
    /// `None` (nothing to record) unless measuring is on.
    #[inline]
    pub fn start() -> Option<Slice> {
        if !ON.load(Relaxed) {
            return None;
        }
        Some(Slice {
            cpu_ns: thread_cpu_ns(),
            wall: Instant::now(),
        })
    }
}

impl Drop for Slice {
    fn drop(&mut self) {
        let wall = u64::try_from(self.wall.elapsed().as_nanos()).unwrap_or(u64::MAX);
        WALL.record(wall);
        CPU.record(thread_cpu_ns().saturating_sub(self.cpu_ns));
    }
}

rustler::atoms! {
    calls,
    bound_ns,
    over_bound_wall,
    over_bound_cpu,
    max_wall_ns,
    max_cpu_ns,
    mean_wall_ns,
    mean_cpu_ns,
    p50_wall_ns,
    p50_cpu_ns,
    p99_wall_ns,
    p999_wall_ns,
    p99_cpu_ns,
    p999_cpu_ns,
}

/// Turns measuring on or off for the whole VM (the totals are kept);
/// whether it was on.
#[rustler::nif]
fn slices_measure(on: bool) -> bool {
    ON.swap(on, Relaxed)
}

/// The totals since the last take, as a map, zeroed as they are read.
#[rustler::nif]
fn slices_take(env: Env) -> NifResult<Term> {
    let wall: Durations = WALL.take();
    let cpu: Durations = CPU.take();
    let pairs: Vec<(Term, Term)> = [
        (calls(), wall.count),
        (bound_ns(), BOUND_NS),
        (over_bound_wall(), wall.over_bound),
        (over_bound_cpu(), cpu.over_bound),
        (max_wall_ns(), wall.max_ns),
        (max_cpu_ns(), cpu.max_ns),
        (mean_wall_ns(), wall.mean_ns()),
        (mean_cpu_ns(), cpu.mean_ns()),
        (p50_wall_ns(), wall.percentile(500)),
        (p50_cpu_ns(), cpu.percentile(500)),
        (p99_wall_ns(), wall.percentile(990)),
        (p999_wall_ns(), wall.percentile(999)),
        (p99_cpu_ns(), cpu.percentile(990)),
        (p999_cpu_ns(), cpu.percentile(999)),
    ]
    .iter()
    .map(|(key, value)| (key.encode(env), value.encode(env)))
    .collect();
    Term::map_from_pairs(env, &pairs).map_err(|_| rustler::Error::BadArg)
}
