//! [`WaitGroup`]: crossbeam's wait group, parking green threads.
//!
//! ## The protocol
//!
//! The group is an `Arc` holding a count of live handles and a list of parked waiters
//! behind a spin lock. Cloning a handle adds one to the count; dropping one, or calling
//! `wait` on it, takes one away. The count never rises again once it reaches zero (only a
//! live handle can be cloned), so zero is final: the last handle is gone.
//!
//! - **Done** (drop, or the first step of `wait`): `fetch_sub(1)` (acquire-release). The
//!   thread that takes the count from 1 to 0 takes the whole waiter list under the lock,
//!   starts every wake-up, unlocks, and finishes them (`WakeBatch`, `sync/wait_entry.rs`).
//! - **Wait**: after its own done, a waiter takes the lock and loads the count; if it is
//!   zero it returns, else it links its entry, unlocks and parks until woken.
//!
//! **Why no wake-up is lost.** The last done's `fetch_sub` comes before its critical
//! section. If a waiter's critical section comes first, its entry is in the list that the
//! last done takes; if it comes after, the lock orders the `fetch_sub` before the waiter's
//! load, which then reads zero. Several threads may wait on clones of one group; all of
//! them are woken. Waking them all at once is what a wait group is for.
//!
//! **Memory orderings.** Every done releases (everything a thread did before dropping its
//! handle) and the decrements form one release sequence, so a waiter that loads zero with
//! acquire, or the last done that acquires with its `fetch_sub`, has seen all of them; woken
//! waiters synchronize with the last done through the outcome's release store.
//!
//! ## Cancellation
//!
//! A green thread parked here may be unwound when its runtime is dropped; its guard unlinks
//! its entry, or, if the group was released meanwhile, waits for the outcome without
//! parking. Its own handle was already counted out.

use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::Arc;

use super::spin_lock::SpinLock;
use super::wait_entry::{WaitEntry, WakeBatch};
use super::wait_list::WaitList;
use super::waiter::FIRST_OUTCOME;
use crate::park::WaitReason;

/// Outcome: every handle is gone.
const ALL_DONE: u8 = FIRST_OUTCOME;

type Entry = WaitEntry<()>;

/// Waits until a group of threads is done: crossbeam's `WaitGroup` API, parking green
/// threads.
///
/// Each clone of a `WaitGroup` is one member of the group; dropping it says that member is
/// done. [`wait`](WaitGroup::wait) consumes a handle and parks the calling thread (only the
/// green thread, on a green thread) until every other handle has been dropped (or has also
/// called `wait`). There is no separate `add`/`done`: clone to add, drop to finish, as in
/// crossbeam (`crossbeam_utils::sync::WaitGroup`), whose users know this API; it also makes
/// it impossible to call `done` too often. Green and kernel threads can hold handles and
/// wait on the same group.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
/// use std::sync::Arc;
/// use spindle::sync::WaitGroup;
///
/// let rt = spindle::Runtime::builder().build()?;
/// rt.block_on(|| {
///     let wg = WaitGroup::new();
///     let done = Arc::new(AtomicUsize::new(0));
///     for _ in 0..4 {
///         let (wg, done) = (wg.clone(), done.clone());
///         spindle::spawn(move || {
///             done.fetch_add(1, SeqCst);
///             drop(wg);
///         });
///     }
///     wg.wait();
///     assert_eq!(done.load(SeqCst), 4);
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct WaitGroup {
    inner: Arc<Inner>,
}

struct Inner {
    /// Live handles.
    count: AtomicUsize,
    /// Entries of parked waiters.
    waiters: SpinLock<WaitList<Entry>>,
}

// SAFETY: the list holds pointers to entries of parked threads; they are dereferenced only
// under the lock or by the thread that unlinked them (sync/waiter.rs), and an entry holds
// only a thread handle, usable from any thread. The count is atomic.
unsafe impl Sync for Inner {}
// SAFETY: as above.
unsafe impl Send for Inner {}

impl WaitGroup {
    /// A group with one member: this handle.
    pub fn new() -> WaitGroup {
        WaitGroup {
            inner: Arc::new(Inner {
                count: AtomicUsize::new(1),
                waiters: SpinLock::new(WaitList::new()),
            }),
        }
    }

    /// Drops this handle and waits until every other handle of the group has been dropped.
    pub fn wait(self) {
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so reading the `Arc` out of it
        // moves the handle's reference; its count is dropped through `done` below.
        let inner: Arc<Inner> = unsafe { std::ptr::read(&this.inner) };
        if inner.done() {
            return;
        }
        let entry = Entry::for_current_thread(());
        {
            let mut waiters = inner.waiters.lock();
            // Acquire: see everything the other members did before they were done.
            if inner.count.load(Acquire) == 0 {
                return;
            }
            // SAFETY: `entry` lives in this frame and is in no list. It stays put until
            // unlinked: we wait below until the last done unlinks and wakes it, and if we
            // are unwound meanwhile the guard unlinks it.
            unsafe { waiters.push_back(&entry) };
        }
        let guard = LeaveOnUnwind {
            inner: &inner,
            entry: &entry,
        };
        let outcome = entry.waiter.wait(WaitReason::WaitGroupWait, None);
        std::mem::forget(guard);
        debug_assert_eq!(outcome, Some(ALL_DONE));
    }
}

impl Inner {
    /// One member is done; returns true if it was the last (the waiters have been woken).
    fn done(&self) -> bool {
        // Release: publish this member's work; acquire: the last one sees every member's.
        if self.count.fetch_sub(1, AcqRel) != 1 {
            return false;
        }
        let mut batch = WakeBatch::new();
        {
            let mut waiters = self.waiters.lock();
            let mut all = waiters.take_all();
            // SAFETY: every entry in the list was queued and is `WAITING` (only the lock
            // holder unlinks), and we unlinked them all under the lock.
            unsafe { batch.push_all(&mut all) };
        }
        batch.wake_all(ALL_DONE);
        true
    }
}

/// Unlinks a parked entry if its thread is unwound while parked.
struct LeaveOnUnwind<'a> {
    inner: &'a Inner,
    entry: &'a Entry,
}

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        let mut waiters = self.inner.waiters.lock();
        if self.entry.waiter.is_waiting() {
            // SAFETY: a `WAITING` entry is in the list (only the lock holder unlinks).
            unsafe { waiters.remove(self.entry) };
            return;
        }
        drop(waiters);
        self.entry.waiter.outcome_without_parking();
    }
}

impl Clone for WaitGroup {
    /// A new member of the group.
    fn clone(&self) -> WaitGroup {
        // Relaxed: a live handle keeps the count above zero, so nothing is decided here
        // (as for `Arc::clone`).
        self.inner.count.fetch_add(1, Relaxed);
        WaitGroup {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for WaitGroup {
    /// This member is done.
    fn drop(&mut self) {
        self.inner.done();
    }
}

impl Default for WaitGroup {
    fn default() -> WaitGroup {
        WaitGroup::new()
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.inner.count.load(Relaxed))
            .finish()
    }
}
