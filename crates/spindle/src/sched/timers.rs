//! The timers of one worker: sleeping threads and parks with a deadline.
//!
//! A binary heap ordered by deadline (ties broken by arming order, so equal deadlines fire
//! in the order they were set). Only the owning worker touches it, so it needs no lock.
//! A timer for a park may outlive that park (the thread was unparked first); such a timer
//! is recognised as stale by the park sequence number and fires as a no-op.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use crate::task::ThreadInner;

/// What a timer does when it fires.
pub(crate) enum TimerAction {
    /// Make a sleeping thread runnable (the timer owns the thread's only queue reference).
    WakeSleeper,
    /// Time out the park with this sequence number, if the thread is still in it.
    ExpirePark { seq: u64 },
}

/// One armed timer.
pub(crate) struct Timer {
    pub(crate) deadline: Instant,
    order: u64,
    pub(crate) task: Arc<ThreadInner>,
    pub(crate) action: TimerAction,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.order).cmp(&(other.deadline, other.order))
    }
}

/// A worker's timer heap.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
    armed: u64,
}

impl Timers {
    /// Arms a timer.
    pub(crate) fn arm(&mut self, deadline: Instant, task: Arc<ThreadInner>, action: TimerAction) {
        self.armed += 1;
        self.heap.push(Reverse(Timer {
            deadline,
            order: self.armed,
            task,
            action,
        }));
    }

    /// The earliest deadline, if any timer is armed.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|t| t.0.deadline)
    }

    /// Whether no timer is armed.
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Removes and returns the earliest timer if its deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.heap.peek()?.0.deadline <= now {
            self.heap.pop().map(|t| t.0)
        } else {
            None
        }
    }

    /// Removes every timer (runtime shutdown).
    pub(crate) fn clear(&mut self) -> Vec<Timer> {
        self.heap.drain().map(|t| t.0).collect()
    }
}
