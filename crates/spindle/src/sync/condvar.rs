//! [`Condvar`]: waiters queue on the condvar; a notify moves them to the mutex's queue.
//!
//! ## The protocol
//!
//! A condvar has its own FIFO of entries (the same `LockWaiter` entries the mutex queues,
//! living on the waiters' stacks) behind a spin lock, and remembers which mutex its waiters
//! use (std's rule: one mutex at a time; a second one panics).
//!
//! **Wait.** With the mutex held: link the entry into the condvar's list (`on_condvar` =
//! true), then unlock the mutex, then park until the entry is served. Because the entry is
//! queued *before* the mutex is released, a notifier that changes the condition under the
//! mutex and then notifies cannot miss it: that is the whole lost-wakeup argument of a
//! condition variable, and it holds here by construction.
//!
//! **Notify = requeue ("wait morphing").** `notify_one` and `notify_all` do not wake
//! anybody directly. Under the condvar's lock they unlink one (or all) entries, mark them
//! `on_condvar = false`, and, under the mutex's queue lock, append them to the mutex's wait
//! queue as if they had blocked in `lock` ([`RawMutex::requeue`]). From there each is
//! woken by a mutex unlock, one at a time, and competes for (or is handed) the lock like
//! any mutex waiter. So `notify_all` with a thousand waiters causes no thundering herd:
//! they come out of the mutex one by one, each woken by the previous holder's unlock, and
//! none of them wakes just to block again on the mutex. The usual pattern (notify while
//! holding the mutex) costs no wake-up at all until the notifier unlocks.
//!
//! One case needs care: a notify without the mutex held, when the mutex is free. Nobody
//! will unlock it, so nobody would wake the requeued entries. Then the requeue wakes the
//! first of them itself, exactly as an unlock would (it sets the mutex's `WOKEN` bit for it),
//! which keeps the mutex's invariant ("waiters queued and lock free implies a woken waiter
//! is on its way", see `raw_mutex.rs`).
//!
//! **Lock order:** condvar queue lock, then mutex queue lock. The mutex never takes a
//! condvar's lock.
//!
//! ## Timeouts, and why a notify is never lost to a timed-out waiter
//!
//! `on_condvar` and list membership change only under the condvar's lock. A waiter whose
//! deadline passes takes that lock and looks:
//!
//! - still `on_condvar`: no notify picked it. It unlinks itself, reports a timeout, and
//!   locks the mutex afresh. A later notify can no longer pick it, so it picks another.
//! - not `on_condvar`: a notify already moved it to the mutex's queue. The notify counts as
//!   delivered: the waiter reports no timeout and keeps waiting, now for the mutex.
//!
//! Either the notify or the timeout wins, under one lock; a notify never lands on an entry
//! that then reports a timeout, so none is lost. There are no spurious wake-ups either
//! (std permits them; spindle's `wait` returns only when notified or timed out).
//!
//! ## In a fork child
//!
//! The parent's waiters are gone from the condvar's list (fork.rs, "Objects the parent's
//! threads wait on"; `sync/wait_list.rs` forgets them at the list's first use in the
//! child), so a notify in the child picks the child's own waiters, and a requeue never
//! moves a parent's entry to the mutex (where it would become a woken waiter that never
//! comes back). `mutex` is meaningful only while the list holds entries of this
//! generation, so a child's waiter may use another mutex than the parent's waiters did.
//!
//! ## Cancellation
//!
//! A waiter unwound while parked (its runtime was dropped) unlinks its entry from whichever
//! queue holds it, or, if the mutex already served it, gives the service back (see
//! `RawMutex::abandon`). It does not re-lock the mutex.

use std::ptr;
use std::sync::LockResult;
use std::time::{Duration, Instant};

use super::mutex::{Mutex, MutexGuard};
use super::raw_mutex::{LockWaiter, RawMutex, WOKEN_TO_COMPETE};
use super::spin_lock::SpinLock;
use super::wait_list::WaitList;
use super::waiter::Waiter;
use crate::park::WaitReason;

/// A condition variable for [`Mutex`], for green and kernel threads alike.
///
/// The API is `std::sync::Condvar`'s. Unlike std's, `wait` never wakes spuriously, and
/// `notify_all` wakes the waiters one at a time as the mutex becomes free rather than all
/// at once (see the module documentation for the protocol).
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::{Condvar, Mutex};
///
/// let rt = spindle::Runtime::builder().build()?;
/// rt.block_on(|| {
///     let pair = Arc::new((Mutex::new(false), Condvar::new()));
///     let pair2 = pair.clone();
///     spindle::spawn(move || {
///         *pair2.0.lock().unwrap() = true;
///         pair2.1.notify_one();
///     });
///     let (ready, cv) = &*pair;
///     let guard = cv.wait_while(ready.lock().unwrap(), |ready| !*ready).unwrap();
///     assert!(*guard);
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Condvar {
    queue: SpinLock<CondvarQueue>,
}

struct CondvarQueue {
    /// Entries of waiting threads, `on_condvar` true.
    waiters: WaitList<LockWaiter>,
    /// The mutex every entry in `waiters` waits with; meaningful while `waiters` is not
    /// empty (it is borrowed by each of them, so it is alive then).
    mutex: *const RawMutex,
}

// SAFETY: the queue holds pointers to entries of blocked threads and to the mutex they
// wait with; both are dereferenced only under the queue lock or by the waker that unlinked
// an entry (sync/waiter.rs), and are alive while any entry is queued (module doc). Entries
// hold only thread handles and flags, usable from any thread.
unsafe impl Sync for Condvar {}
// SAFETY: as above; a condvar with waiters is borrowed, so moving it moves no entry.
unsafe impl Send for Condvar {}

/// Whether a timed wait on a [`Condvar`] returned because its time ran out.
///
/// spindle's own type, since std's `WaitTimeoutResult` cannot be constructed outside std.
#[derive(Debug, PartialEq, Eq, Copy, Clone)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the timeout elapsed, not because of a notify.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A condvar with no waiters.
    pub const fn new() -> Condvar {
        Condvar {
            queue: SpinLock::new(CondvarQueue {
                waiters: WaitList::new(),
                mutex: ptr::null(),
            }),
        }
    }

    /// Unlocks the guard's mutex, waits for a notify, and locks the mutex again.
    ///
    /// Returns `Err` (holding the guard) if the mutex is poisoned when re-acquired.
    ///
    /// # Panics
    ///
    /// If the condvar is being waited on with a different mutex at the same time.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        let (mutex, _) = self.block(guard, None);
        // SAFETY: `block` returns with the mutex locked by this thread.
        unsafe { MutexGuard::new(mutex) }
    }

    /// Waits while `condition` returns true: checks it (with the lock held) before every
    /// wait and returns the guard once it returns false.
    pub fn wait_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> LockResult<MutexGuard<'a, T>>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Like [`Condvar::wait`], but gives up after `timeout`: the result says whether the
    /// time ran out. It does not return before `timeout` has elapsed unless notified.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let deadline = Instant::now().checked_add(timeout);
        let (mutex, timed_out) = self.block(guard, deadline);
        // SAFETY: `block` returns with the mutex locked by this thread.
        match unsafe { MutexGuard::new(mutex) } {
            Ok(g) => Ok((g, WaitTimeoutResult(timed_out))),
            Err(e) => Err(std::sync::PoisonError::new((
                e.into_inner(),
                WaitTimeoutResult(timed_out),
            ))),
        }
    }

    /// [`Condvar::wait_while`] with a timeout over the whole wait; the result says whether
    /// the time ran out with `condition` still true.
    pub fn wait_timeout_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: F,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)>
    where
        F: FnMut(&mut T) -> bool,
    {
        let start = Instant::now();
        loop {
            if !condition(&mut *guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            let left = match timeout.checked_sub(start.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return Ok((guard, WaitTimeoutResult(true))),
            };
            guard = self.wait_timeout(guard, left)?.0;
        }
    }

    /// Wakes one waiter, if any (the one that has waited longest). It runs once it gets
    /// the mutex.
    pub fn notify_one(&self) {
        self.notify(false);
    }

    /// Wakes every waiter. They leave one at a time, as the mutex becomes free.
    pub fn notify_all(&self) {
        self.notify(true);
    }

    fn notify(&self, all: bool) {
        let mut queue = self.queue.lock();
        if queue.waiters.is_empty() {
            return;
        }
        let mut moved = if all {
            queue.waiters.take_all()
        } else {
            let mut one = WaitList::new();
            let head = queue.waiters.pop_front().expect("checked not empty");
            // SAFETY: `head` is a live entry (it was queued) that stays put until unlinked
            // from the mutex's queue (the waiter parks until served; see `block`).
            unsafe { one.push_back(head) };
            one
        };
        moved.for_each(|entry| entry.on_condvar.set(false));
        // SAFETY: the waiters were queued with this mutex and borrow it, so it is alive.
        let mutex = unsafe { &*queue.mutex };
        // SAFETY: the moved entries stay valid until unlinked from the mutex's queue: their
        // threads wait until served, and unlink themselves if unwound (`LeaveOnUnwind`).
        let woken = unsafe { mutex.requeue(&mut moved) };
        drop(queue);
        if let Some(entry) = woken {
            // SAFETY: `requeue` started this wake-up; we finish it once and let go.
            unsafe { Waiter::finish_wake(&raw const (*entry).waiter, WOKEN_TO_COMPETE) };
        }
    }

    /// The wait itself: returns the (re-locked) mutex and whether the deadline passed.
    fn block<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (&'a Mutex<T>, bool) {
        let raw: &'a RawMutex = &guard.mutex().raw;
        let entry = LockWaiter::for_current_thread();
        entry.on_condvar.set(true);
        {
            let mut queue = self.queue.lock();
            if queue.waiters.is_empty() {
                queue.mutex = raw;
            } else if !ptr::eq(queue.mutex, raw) {
                drop(queue);
                panic!("attempted to use a condition variable with two mutexes");
            }
            // SAFETY: `entry` lives in this frame and stays put until unlinked: we return
            // only after a notify unlinked it (and the mutex served it) or after unlinking
            // it ourselves, and `LeaveOnUnwind` unlinks it if we are unwound.
            unsafe { queue.waiters.push_back(&entry) };
        }
        let mutex = guard.into_locked_mutex();
        let unwind = LeaveOnUnwind {
            condvar: self,
            mutex: raw,
            entry: &entry,
        };
        raw.unlock();
        let outcome = match entry.waiter.wait(WaitReason::CondvarWait, deadline) {
            Some(outcome) => outcome,
            None => {
                let mut queue = self.queue.lock();
                if entry.on_condvar.get() {
                    // SAFETY: `on_condvar` entries are in this list.
                    unsafe { queue.waiters.remove(&entry) };
                    drop(queue);
                    std::mem::forget(unwind);
                    raw.lock();
                    return (mutex, true);
                }
                drop(queue);
                // Notified before the deadline: now queued on (or served by) the mutex.
                entry
                    .waiter
                    .wait(WaitReason::MutexLock, None)
                    .expect("no deadline")
            }
        };
        std::mem::forget(unwind);
        raw.lock_after_wake(&entry, outcome);
        (mutex, false)
    }
}

/// Unlinks a waiting entry from the condvar or the mutex, or gives back what the mutex
/// served it, if its thread is unwound while parked.
struct LeaveOnUnwind<'a> {
    condvar: &'a Condvar,
    mutex: &'a RawMutex,
    entry: &'a LockWaiter,
}

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        let mut queue = self.condvar.queue.lock();
        if self.entry.on_condvar.get() {
            // SAFETY: `on_condvar` entries are in this list.
            unsafe { queue.waiters.remove(self.entry) };
            return;
        }
        drop(queue);
        // Moved to the mutex; it stays there until served, so the mutex's rules apply.
        self.mutex.abandon(self.entry);
    }
}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
