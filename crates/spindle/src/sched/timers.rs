//! The timers of one worker: sleeping threads and parks with a deadline.
//!
//! A binary heap ordered by deadline (ties broken by arming order, so equal deadlines fire
//! in the order they were set). Only the owning worker touches it, so it needs no lock.
//! A timer for a park may outlive that park (the thread was unparked first); such a timer
//! is recognised as stale by the park sequence number and fires as a no-op, or is dropped
//! earlier: by a compaction, or from the front of the heap before the worker sleeps.

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
///
/// Stale park timers (the park ended early) stay in the heap until their deadline or until
/// the heap has doubled since it was last compacted, whichever comes first: then
/// [`Timers::compact`] drops them, so the heap stays within twice the live timers plus a
/// constant, at an amortized constant cost per timer.
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
    armed: u64,
    compact_at: usize,
}

/// Heap size below which stale timers are never compacted away.
const MIN_COMPACT: usize = 1024;

impl Default for Timers {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            armed: 0,
            compact_at: MIN_COMPACT,
        }
    }
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

    /// Whether the heap has grown enough since the last compaction to look for stale timers.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.heap.len() >= self.compact_at
    }

    /// Drops the timers `is_stale` says will fire as no-ops, and sets the next threshold.
    pub(crate) fn compact(&mut self, mut is_stale: impl FnMut(&Timer) -> bool) {
        let heap = std::mem::take(&mut self.heap);
        self.heap = heap.into_iter().filter(|t| !is_stale(&t.0)).collect();
        self.compact_at = (2 * self.heap.len()).max(MIN_COMPACT);
    }

    /// Drops timers from the front while `is_stale` says they would fire as no-ops, so that
    /// [`Timers::next_deadline`] names a timer that will do something: a worker about to
    /// sleep neither wakes for a park that already ended nor counts it as an armed timer
    /// (which would keep the all-asleep report away until its deadline), and the records
    /// those timers hold are let go.
    pub(crate) fn drop_stale_front(&mut self, mut is_stale: impl FnMut(&Timer) -> bool) {
        while self.heap.peek().is_some_and(|t| is_stale(&t.0)) {
            self.heap.pop();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::ThreadKind;
    use std::time::Duration;

    fn record() -> Arc<ThreadInner> {
        ThreadInner::new(None, || ThreadKind::Kernel(std::sync::OnceLock::new()))
    }

    #[test]
    fn due_timers_come_out_in_deadline_then_arming_order() {
        let mut t = Timers::default();
        let now = Instant::now();
        let (a, b, c) = (record(), record(), record());
        t.arm(
            now + Duration::from_millis(5),
            a.clone(),
            TimerAction::WakeSleeper,
        );
        t.arm(now, b.clone(), TimerAction::WakeSleeper);
        t.arm(now, c.clone(), TimerAction::WakeSleeper);
        assert_eq!(t.next_deadline(), Some(now));
        let order: Vec<_> = std::iter::from_fn(|| t.pop_due(now + Duration::from_millis(5)))
            .map(|timer| timer.task.id)
            .collect();
        assert_eq!(order, vec![b.id, c.id, a.id]);
        assert!(t.is_empty());
    }

    #[test]
    fn compaction_keeps_live_timers_and_bounds_the_heap() {
        let mut t = Timers::default();
        let later = Instant::now() + Duration::from_secs(3600);
        let task = record();
        for seq in 0..(MIN_COMPACT as u64) {
            t.arm(later, task.clone(), TimerAction::ExpirePark { seq });
        }
        assert!(t.wants_compaction());
        // Only the latest park is live.
        let live = MIN_COMPACT as u64 - 1;
        t.compact(|timer| !matches!(timer.action, TimerAction::ExpirePark { seq } if seq == live));
        assert_eq!(t.heap.len(), 1);
        assert!(!t.wants_compaction());
        assert_eq!(
            Arc::strong_count(&task),
            2,
            "stale timers released their counts"
        );
    }

    #[test]
    fn stale_timers_in_front_are_dropped_up_to_the_first_live_one() {
        let mut t = Timers::default();
        let now = Instant::now();
        let task = record();
        for seq in 0..4u64 {
            let deadline = now + Duration::from_secs(seq);
            t.arm(deadline, task.clone(), TimerAction::ExpirePark { seq });
        }
        // Parks 0 and 1 ended early, 2 is live; 3, behind it, stays whatever it is.
        let is_stale =
            |timer: &Timer| matches!(timer.action, TimerAction::ExpirePark { seq } if seq != 2);
        t.drop_stale_front(is_stale);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(2)));
        assert_eq!(t.heap.len(), 2);
        t.drop_stale_front(|_| true);
        assert!(t.is_empty());
        assert_eq!(
            Arc::strong_count(&task),
            1,
            "dropped timers released their counts"
        );
    }
}
