//! The budget of socket calls a green thread may complete without switching (see "Fairness"
//! in the module docs of [`crate::net`]).
//!
//! One counter per kernel thread, not per green thread: the threads of a worker share it,
//! so whichever thread completes the [`BUDGET`]-th call since the counter was last reset
//! yields, and a thread that keeps its worker busy with calls that never wait gives way at
//! least that often. The counter is reset when its thread yields here; threads that park
//! or yield for other reasons leave it alone, which only makes the next forced yield come
//! sooner. On a kernel thread (one-to-one, or outside a runtime) nothing is counted: the
//! kernel preempts kernel threads.

use std::cell::Cell;

use crate::sched::context;

/// Socket calls completed on a kernel thread between two forced yields.
pub(crate) const BUDGET: u32 = 128;

thread_local! {
    /// Calls left before the next forced yield.
    static LEFT: Cell<u32> = const { Cell::new(BUDGET) };
}

/// Spends one unit for a socket call that just completed; yields when it was the last.
#[inline]
pub(crate) fn spend() {
    if context::current_green().is_none() {
        return;
    }
    let left = LEFT.with(|l| {
        let left = l.get().saturating_sub(1);
        l.set(if left == 0 { BUDGET } else { left });
        left
    });
    // The green thread that called fork(), in the child, has no worker to yield to; a
    // call that completed must not fail for it (fork.rs).
    if left == 0 && !crate::fork::on_inherited_green_thread() {
        crate::thread::yield_now();
    }
}
