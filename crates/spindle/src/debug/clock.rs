//! The coarse clock that stamps a green thread's spawn.
//!
//! Reading a clock at every spawn would cost a spawn 10 ns (`CLOCK_MONOTONIC_COARSE`) to
//! 35 ns (`Instant::now`) on this machine, a sixth of a whole spawn and join. So the
//! monitor of every green-thread runtime publishes the time at each of its ticks (a few
//! milliseconds apart while any worker is awake, and right after it wakes up) and a spawn
//! reads that with one relaxed load. A green thread is spawned by a green thread, so some
//! worker of its runtime is awake and its monitor ticks: the stamp is late by at most a
//! tick. Kernel threads read the real clock: creating one costs microseconds anyway.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What stamps are counted from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`] at the latest tick of any monitor (0 before the first).
static NOW_MICROS: AtomicU64 = AtomicU64::new(0);

/// A monitor's tick: publishes `now`. Relaxed: a stamp is a hint for humans, not an order.
pub(crate) fn publish(now: Instant) {
    NOW_MICROS.fetch_max(stamp_of(now), Relaxed);
}

/// The stamp for a green thread spawned now: one relaxed load.
#[inline]
pub(crate) fn coarse_stamp() -> u64 {
    NOW_MICROS.load(Relaxed)
}

/// The stamp for a kernel thread created now, from the real clock.
pub(crate) fn exact_stamp() -> u64 {
    let micros = stamp_of(Instant::now());
    NOW_MICROS.fetch_max(micros, Relaxed);
    micros
}

/// The stamp of `t`: whole microseconds since [`epoch`] (0 before it).
fn stamp_of(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_micros() as u64
}

/// The stamp of `t` (after the epoch, as every deadline a thread waits for is), rounded up
/// to the next microsecond: a deadline shown from it is never before `t`.
pub(crate) fn stamp_rounded_up(t: Instant) -> u64 {
    let exact = t.saturating_duration_since(epoch()).subsec_nanos() % 1000 == 0;
    stamp_of(t).saturating_add(u64::from(!exact))
}

/// The instant a stamp stands for.
pub(crate) fn instant_of(stamp: u64) -> Instant {
    epoch() + Duration::from_micros(stamp)
}
