//! [`Barrier`]: `n` threads wait until all of them have arrived, then all go on.
//!
//! ## The protocol
//!
//! A barrier is a count of arrived threads and a list of the parked ones, both behind one
//! spin lock (`sync/spin_lock.rs`); there is no atomic state outside it, so every arrival
//! is one short critical section.
//!
//! - **Arrive, not last.** Under the lock: count the arrival, link the entry (on the
//!   thread's stack), unlock, park until the entry's outcome says the generation is over.
//! - **Arrive, last** (the count reaches `n`): under the lock, reset the count to 0 and
//!   take the whole list, starting every wake-up; unlock; finish the wake-ups
//!   (`WakeBatch`, `sync/wait_entry.rs`). This thread is the generation's leader.
//!
//! **Generations.** The count is reset in the same critical section that takes the list,
//! so a thread arriving afterwards (even one just released, going round again) counts
//! towards the next generation and parks on the now empty list; the released entries are
//! no longer in the list, so a fast thread can never be counted twice in one generation
//! or released by the wrong one.
//!
//! **Why no wake-up is lost.** Linking and counting happen in one critical section, and
//! the leader takes the list in a later one: every thread it counted is in the list it
//! takes. The wake-up is the hand-shake of `sync/waiter.rs`. Everything each thread did
//! before `wait` happens before everything any thread does after it: arrivals are ordered
//! by the lock (acquire/release), so the leader has seen them all, and the released
//! threads synchronize with the leader through the outcome's release store.
//!
//! Waking a whole generation at once is the point of a barrier, so this is the one place
//! that does wake everyone; the leader does it without holding the lock.
//!
//! ## In a fork child
//!
//! The parent's parked threads are gone from the list (fork.rs, "Objects the parent's
//! threads wait on"; the list forgets their entries at its first use in the child), but
//! their arrivals stay counted: they happened before the fork, as a lock taken by a parent
//! thread stays taken. So the child's current group completes when its arrivals and those
//! make `n`, and its leader wakes only threads of the child.
//!
//! ## Cancellation
//!
//! A green thread parked here may be unwound when its runtime is dropped. Its guard takes
//! the lock: if the entry is still queued it unlinks it and takes back its arrival (the
//! thread never got through, so the generation still needs one more); if the generation
//! was released meanwhile, it waits for its outcome without parking.

use std::fmt;

use super::spin_lock::SpinLock;
use super::wait_entry::{WaitEntry, WakeBatch};
use super::wait_list::WaitList;
use super::waiter::FIRST_OUTCOME;
use crate::park::WaitReason;

/// Outcome: the generation is complete, go on.
const RELEASED: u8 = FIRST_OUTCOME;

type Entry = WaitEntry<()>;

/// A barrier: `n` threads call [`Barrier::wait`], and none returns before all have.
///
/// The API is `std::sync::Barrier`'s. It is reusable: once a group of `n` has passed, the
/// next `n` calls form the next group. One thread of each group (the last to arrive) is
/// told it is the leader. Green threads park only themselves; green and kernel threads can
/// wait on the same barrier.
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::Barrier;
///
/// let rt = spindle::Runtime::builder().build()?;
/// let leaders = rt.block_on(|| {
///     let barrier = Arc::new(Barrier::new(5));
///     let hs: Vec<_> = (0..5)
///         .map(|_| {
///             let barrier = barrier.clone();
///             spindle::spawn(move || barrier.wait().is_leader())
///         })
///         .collect();
///     hs.into_iter().map(|h| h.join().unwrap()).filter(|&l| l).count()
/// });
/// assert_eq!(leaders, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Barrier {
    n: usize,
    state: SpinLock<BarrierState>,
}

struct BarrierState {
    /// Threads that have arrived in the current generation.
    arrived: usize,
    /// Entries of the parked ones (all of them, for the current generation).
    parked: WaitList<Entry>,
}

// SAFETY: the list holds pointers to entries of parked threads; they are dereferenced only
// under the lock or by the leader that unlinked them (sync/waiter.rs), and an entry holds
// only a thread handle, usable from any thread.
unsafe impl Sync for Barrier {}
// SAFETY: as above; a barrier with parked threads is borrowed, so moving it moves no entry.
unsafe impl Send for Barrier {}

/// What [`Barrier::wait`] returns: whether this thread was its group's leader.
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for exactly one thread of each group: the last one to arrive.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl fmt::Debug for BarrierWaitResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierWaitResult")
            .field("is_leader", &self.0)
            .finish()
    }
}

impl Barrier {
    /// A barrier for groups of `n` threads. A barrier of 0 behaves as one of 1: `wait`
    /// returns at once, and every caller is a leader.
    pub const fn new(n: usize) -> Barrier {
        Barrier {
            n,
            state: SpinLock::new(BarrierState {
                arrived: 0,
                parked: WaitList::new(),
            }),
        }
    }

    /// Waits until `n` threads (this one included) have called `wait`, parking the calling
    /// thread (only the green thread, on a green thread) meanwhile.
    pub fn wait(&self) -> BarrierWaitResult {
        let entry = Entry::for_current_thread(());
        let mut batch = WakeBatch::new();
        {
            let mut state = self.state.lock();
            state.arrived += 1;
            if state.arrived < self.n {
                // SAFETY: `entry` lives in this frame and is in no list; it stays put until
                // unlinked: we wait below until the leader has unlinked and served it, and
                // if we are unwound meanwhile the guard unlinks it.
                unsafe { state.parked.push_back(&entry) };
            } else {
                state.arrived = 0;
                let mut parked = state.parked.take_all();
                // SAFETY: every entry in the list was queued and is `WAITING` (only the
                // lock holder unlinks), and we unlinked them all under the lock.
                unsafe { batch.push_all(&mut parked) };
                drop(state);
                batch.wake_all(RELEASED);
                return BarrierWaitResult(true);
            }
        }
        self.wait_parked(&entry)
    }

    fn wait_parked(&self, entry: &Entry) -> BarrierWaitResult {
        let guard = LeaveOnUnwind {
            barrier: self,
            entry,
        };
        let outcome = entry.waiter.wait(WaitReason::BarrierWait, None);
        std::mem::forget(guard);
        debug_assert_eq!(outcome, Some(RELEASED));
        BarrierWaitResult(false)
    }
}

/// Unlinks a parked entry (taking back its arrival) if its thread is unwound while parked.
struct LeaveOnUnwind<'a> {
    barrier: &'a Barrier,
    entry: &'a Entry,
}

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        let mut state = self.barrier.state.lock();
        if self.entry.waiter.is_waiting() {
            // SAFETY: a `WAITING` entry is in the list (only the lock holder unlinks).
            unsafe { state.parked.remove(self.entry) };
            state.arrived -= 1;
            return;
        }
        drop(state);
        self.entry.waiter.outcome_without_parking();
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}
