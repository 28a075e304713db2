//! Noticing that every green thread of a runtime is asleep for good.
//!
//! Go's runtime reports "all goroutines are asleep - deadlock!" because it knows every
//! thread that could wake one. spindle cannot: a kernel thread outside the runtime (a std
//! thread, a one-to-one runtime's thread, a signal handler's helper) may unpark a green
//! thread at any time. So the report comes after a grace period, and only when nothing
//! the runtime knows of could end the sleep:
//!
//! - every worker sleeps, and none has switched to a green thread since the grace began
//!   (the sum of their switch counts is unchanged; a dump's backtrace captures do not
//!   count as switches);
//! - no worker has a timer armed (no `sleep`, no wait with a timeout, no I/O deadline);
//! - no reactor has I/O in flight (no thread waits for a descriptor or an io_uring
//!   request);
//! - the helper pool runs no `unblock` call and has none queued;
//! - no thread of the runtime runs on a kernel thread that lost its worker (migration),
//!   and none waits for another runtime or a kernel thread it knows of (a `block_on` of
//!   another runtime, a join of a thread that is not this runtime's);
//! - and some green thread has started and not finished (an idle runtime with no threads
//!   is not asleep, it is unused).
//!
//! The monitor watches for this while it parks because every worker sleeps (it wakes when
//! a worker does, `sched/monitor.rs`). When it holds for the whole grace period, it prints
//! a warning with a dump of the runtime's threads to stderr, once per episode (until a
//! green thread runs again). With `Builder::panic_when_all_asleep`, it instead shuts the
//! runtime down with that report as the reason: every green thread is cancelled (its
//! destructors run, as at a drop), so the `block_on` waiting for its root thread panics
//! with the report instead of hanging forever, and the runtime refuses work from then on.
//!
//! Every value read here is published by workers with relaxed stores (`WorkerWatch`):
//! the check is a heuristic, and a stale read can only make it wait longer, since any
//! work that appears wakes a worker and so the monitor.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::sched::pool::PoolShared;

/// How long every green thread must have slept, with nothing pending, before the monitor
/// says so (`runtime::Builder::report_all_asleep`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// What the monitor remembers between looks.
#[derive(Default)]
pub(crate) struct AllAsleep {
    /// The switch total of the episode already reported.
    reported: Option<u64>,
}

impl AllAsleep {
    /// Parks the monitor while every worker sleeps: until a worker wakes, or for the
    /// grace period when the runtime looks asleep for good, and then reports.
    pub(crate) fn park(&mut self, pool: &PoolShared) {
        let cfg = pool.monitor.config;
        let (Some(grace), Some(total)) = (cfg.all_asleep_after, looks_asleep(pool)) else {
            return std::thread::park();
        };
        if self.reported == Some(total) {
            return std::thread::park();
        }
        let since = Instant::now();
        loop {
            let left = grace.saturating_sub(since.elapsed());
            if left.is_zero() {
                break;
            }
            std::thread::park_timeout(left);
            if looks_asleep(pool) != Some(total) || pool.is_shut_down() {
                return;
            }
        }
        if report(pool, grace, total) {
            self.reported = Some(total);
        }
    }
}

/// The workers' switch total, if the runtime looks asleep for good now (module docs).
fn looks_asleep(pool: &PoolShared) -> Option<u64> {
    looks_asleep_but_for_sleeping(pool).filter(|_| pool.workers.iter().all(|w| w.is_sleeping()))
}

/// [`looks_asleep`] without "every worker sleeps": for the look after a dump, whose
/// requests woke the workers (to answer, not to run threads: the total shows that).
fn looks_asleep_but_for_sleeping(pool: &PoolShared) -> Option<u64> {
    let mut total: u64 = 0;
    let mut live = 0;
    for w in &pool.workers {
        let watch = &w.watch;
        if watch.timer_armed.load(Relaxed)
            || w.reactor.has_waiters()
            || watch.away.load(Relaxed) > 0
            || watch.outside_waits.load(Relaxed) > 0
        {
            return None;
        }
        total = total.wrapping_add(w.watch.switches.load(Relaxed));
        live += w.watch.live.load(Relaxed);
    }
    (live > 0 && !pool.blocking.is_busy()).then_some(total)
}

/// Warns, with a dump of the runtime's threads, or shuts the runtime down with it; false
/// if a thread ran while the dump was taken (no report then).
fn report(pool: &PoolShared, grace: Duration, total: u64) -> bool {
    let id = pool.debug_id;
    let snapshot = crate::debug::snapshot_of_runtime(id);
    let n = snapshot.threads.len();
    let headline = format!(
        "spindle: all green threads are asleep: every one of the {n} thread{} of runtime {id} \
         has waited for {:.1} s with no timer, I/O or helper-pool work pending, so only a \
         thread outside the runtime could wake them (a deadlock?)",
        if n == 1 { "" } else { "s" },
        grace.as_secs_f64()
    );
    // Taking the dump took a while: a thread woken meanwhile ends the episode (the dump's
    // captures are not switches, so they do not change the total).
    if looks_asleep_but_for_sleeping(pool) != Some(total) {
        return false;
    }
    if pool.monitor.config.panic_when_all_asleep {
        pool.shut_down_because(format!(
            "{headline}; the runtime was shut down (Builder::panic_when_all_asleep) and its \
             threads cancelled. Its threads, as they were:\n{}",
            snapshot.to_text()
        ));
    } else {
        eprintln!("{headline}. Its threads:\n{}", snapshot.to_text());
    }
    true
}
