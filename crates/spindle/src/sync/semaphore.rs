//! [`Semaphore`]: a count of permits; acquiring waits in one FIFO queue until enough are
//! free, and a permit goes back when its guard is dropped.
//!
//! ## The state word
//!
//! One `AtomicUsize`: the number of free permits shifted left by one, and `QUEUED` in bit
//! 0: the wait queue is not empty. `QUEUED` is set and cleared only under the queue's spin
//! lock, together with the change that makes the queue non-empty or empty, so at every
//! release of the queue lock: **`QUEUED` set if and only if the queue is not empty.**
//!
//! Uncontended, acquiring is a load and one CAS that subtracts the permits (acquire), and
//! releasing is a load and one CAS that adds them (release): no allocation, no system call.
//! Both fast paths require `QUEUED` clear.
//!
//! ## FIFO, and why a large request is not starved
//!
//! While anyone is queued, nobody takes permits without queuing (`acquire` and
//! `try_acquire` check `QUEUED`), and released permits go to the queue in order: the
//! releaser serves the head while the free permits cover the head's request, and stops at
//! the first request they do not cover. So a request for many permits at the head is never
//! overtaken by smaller ones behind it; it waits only for the permits to come back. Invariant
//! after every serve: **with `QUEUED` set, the free permits do not cover the head's
//! request.** (A request for more permits than will ever be free therefore blocks the
//! queue behind it for good: that is the price of FIFO, as in tokio's semaphore.)
//!
//! ## The protocol
//!
//! **Acquire, contended.** Under the queue lock: if `QUEUED` is clear and the free permits
//! cover the request, take them with a CAS (done, no waiting). Otherwise set `QUEUED` with
//! a CAS (which fails if the word changed meanwhile: look again), link the entry at the
//! back, unlock, park until an outcome says the permits were handed over.
//!
//! **Release, contended** (`QUEUED` set). Under the queue lock: add the permits to the
//! free ones and serve the queue as above, writing the word once: the remaining free
//! permits, plus `QUEUED` if entries remain. Then finish the served entries' wake-ups
//! outside the lock (`WakeBatch`, `sync/wait_entry.rs`). With `QUEUED` set and the queue
//! lock held, nobody else writes the word (every fast path needs `QUEUED` clear, and every
//! slow path the queue lock), so a plain store suffices.
//!
//! **Why no wake-up is lost.** A queuing thread's CAS that sets `QUEUED` and a releaser's
//! fast-path CAS are on the same word, so one of them fails: either the releaser sees
//! `QUEUED` and takes the slow path (after the queuing thread has linked its entry, since
//! that happened under the queue lock it now takes), or the queuing thread looks again and
//! finds the permits. A served entry's wake-up is the hand-shake of `sync/waiter.rs`.
//!
//! **Timeouts.** A waiter whose deadline passes takes the queue lock. Still queued: it
//! unlinks itself, and since it may have been the head whose request blocked the others,
//! it serves the queue with the free permits (or clears `QUEUED` if it was the last). Already
//! served: the permits are its own; it returns them in a guard (a waker got there first, so
//! the acquisition succeeded, just at the deadline).
//!
//! **Memory orderings.** Acquiring permits acquires and releasing them releases, so a
//! permit holder sees what the previous holders of those permits did, as with a lock.
//! Served waiters synchronize with the releaser through the outcome's release store.
//! `QUEUED` is ordered by the queue lock.
//!
//! ## Cancellation
//!
//! A green thread parked here may be unwound when its runtime is dropped: its guard leaves
//! the queue as on a timeout, or, if it was served meanwhile, gives the permits back.
//!
//! ## In a fork child
//!
//! The parent's threads are gone from the queue (fork.rs, "Objects the parent's threads
//! wait on"): permits handed to them would be lost. The critical sections that queue and
//! release first forget the queue's stale entries (`WaitList::forget_inherited`) and, if
//! there were any, `QUEUED` with them (`forget_parent_waiters`), before they read the word.
//! A permit released in the child then goes to the child's own waiters or stays free, and
//! a request of the child is no longer held back behind a parent's larger one.

use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use super::spin_lock::SpinLock;
use super::wait_entry::{WaitEntry, WakeBatch};
use super::wait_list::WaitList;
use super::waiter::FIRST_OUTCOME;
use crate::park::WaitReason;

/// The wait queue is not empty.
const QUEUED: usize = 1;
/// Shift of the free-permit count in the word.
const SHIFT: u32 = 1;

/// Outcome: the permits you asked for are yours.
const GRANTED: u8 = FIRST_OUTCOME;

/// A queued request: how many permits it waits for.
type Entry = WaitEntry<usize>;

/// A counting semaphore for green and kernel threads alike, with FIFO fairness.
///
/// [`acquire`](Semaphore::acquire) takes a permit, parking the calling thread (only the
/// green thread, on a green thread) until one is free, and returns a
/// [`SemaphorePermit`] that gives it back when dropped. Waiters are served strictly in
/// arrival order, including requests for several permits
/// ([`acquire_many`](Semaphore::acquire_many)): a large request at the head of the queue
/// is not overtaken by smaller ones behind it, and while anyone waits,
/// [`try_acquire`](Semaphore::try_acquire) fails even if some permits are free.
///
/// Uncontended, acquiring and releasing are one atomic read-modify-write each.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
/// use spindle::sync::Semaphore;
///
/// let rt = spindle::Runtime::builder().build()?;
/// rt.block_on(|| {
///     let sem = Arc::new(Semaphore::new(2));
///     let inside = Arc::new(AtomicUsize::new(0));
///     let hs: Vec<_> = (0..8)
///         .map(|_| {
///             let (sem, inside) = (sem.clone(), inside.clone());
///             spindle::spawn(move || {
///                 let _permit = sem.acquire();
///                 assert!(inside.fetch_add(1, SeqCst) < 2);
///                 spindle::yield_now();
///                 inside.fetch_sub(1, SeqCst);
///             })
///         })
///         .collect();
///     hs.into_iter().for_each(|h| h.join().unwrap());
///     assert_eq!(sem.available_permits(), 2);
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Semaphore {
    state: AtomicUsize,
    queue: SpinLock<WaitList<Entry>>,
}

// SAFETY: the queue holds pointers to entries of blocked threads; they are dereferenced
// only under the queue lock or by the waker that unlinked them (sync/waiter.rs), and an
// entry holds only a thread handle and a count, usable from any thread.
unsafe impl Sync for Semaphore {}
// SAFETY: as above; a semaphore with waiters is borrowed, so moving it moves no entry.
unsafe impl Send for Semaphore {}

/// Permits acquired from a [`Semaphore`]; dropping it gives them back.
#[must_use = "the permits are given back as soon as the guard is dropped"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    permits: usize,
}

impl Semaphore {
    /// The largest number of permits a semaphore can hold.
    pub const MAX_PERMITS: usize = usize::MAX >> 2;

    /// A semaphore with `permits` free permits.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    pub const fn new(permits: usize) -> Semaphore {
        assert!(
            permits <= Semaphore::MAX_PERMITS,
            "a semaphore cannot hold more than MAX_PERMITS permits"
        );
        Semaphore {
            state: AtomicUsize::new(permits << SHIFT),
            queue: SpinLock::new(WaitList::new()),
        }
    }

    /// The number of free permits right now (a snapshot: it may change at once).
    pub fn available_permits(&self) -> usize {
        self.state.load(Relaxed) >> SHIFT
    }

    /// Takes one permit, parking until one is free and every earlier waiter is served.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.acquire_many(1)
    }

    /// Takes `n` permits at once, parking until they are free and every earlier waiter is
    /// served. `n == 0` returns at once. A request for more permits than will ever be free
    /// never returns, and, since service is FIFO, neither do the requests queued behind it.
    pub fn acquire_many(&self, n: usize) -> SemaphorePermit<'_> {
        match self.acquire_inner(n, None) {
            Some(permit) => permit,
            None => unreachable!("an acquire without a deadline timed out"),
        }
    }

    /// Takes one permit if one is free and nobody is waiting.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if they are free and nobody is waiting.
    pub fn try_acquire_many(&self, n: usize) -> Option<SemaphorePermit<'_>> {
        let mut s = self.state.load(Relaxed);
        loop {
            if s & QUEUED != 0 || s >> SHIFT < n {
                return None;
            }
            match self
                .state
                .compare_exchange_weak(s, s - (n << SHIFT), Acquire, Relaxed)
            {
                Ok(_) => return Some(self.permit(n)),
                Err(actual) => s = actual,
            }
        }
    }

    /// Like [`acquire`](Semaphore::acquire), but gives up after `timeout`: `None` if no
    /// permit was handed over in time. It does not return `None` before `timeout` has
    /// elapsed.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        self.acquire_many_timeout(1, timeout)
    }

    /// Like [`acquire_many`](Semaphore::acquire_many), but gives up after `timeout`. When
    /// a waiter at the head of the queue gives up, the waiters behind it are served with
    /// the permits that are free.
    pub fn acquire_many_timeout(&self, n: usize, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        // A deadline too far away to represent is "never".
        self.acquire_inner(n, Instant::now().checked_add(timeout))
    }

    /// Adds `n` permits, serving waiters with them.
    ///
    /// # Panics
    ///
    /// If the free permits would exceed [`Semaphore::MAX_PERMITS`].
    pub fn add_permits(&self, n: usize) {
        self.release(n);
    }

    fn permit(&self, n: usize) -> SemaphorePermit<'_> {
        SemaphorePermit {
            sem: self,
            permits: n,
        }
    }

    fn acquire_inner(&self, n: usize, deadline: Option<Instant>) -> Option<SemaphorePermit<'_>> {
        if n == 0 {
            return Some(self.permit(0));
        }
        let s = self.state.load(Relaxed);
        if s & QUEUED == 0
            && s >> SHIFT >= n
            && self
                .state
                .compare_exchange_weak(s, s - (n << SHIFT), Acquire, Relaxed)
                .is_ok()
        {
            return Some(self.permit(n));
        }
        self.acquire_contended(n, deadline)
    }

    #[cold]
    #[inline(never)]
    fn acquire_contended(
        &self,
        n: usize,
        deadline: Option<Instant>,
    ) -> Option<SemaphorePermit<'_>> {
        let entry = Entry::for_current_thread(n);
        {
            let mut queue = self.queue.lock();
            self.forget_parent_waiters(&mut queue);
            let mut s = self.state.load(Relaxed);
            loop {
                let new = if s & QUEUED == 0 && s >> SHIFT >= n {
                    s - (n << SHIFT)
                } else if s & QUEUED == 0 {
                    s | QUEUED
                } else {
                    break; // QUEUED already set; it stays set while we hold the lock
                };
                // Acquire if we take permits; QUEUED itself is ordered by the queue lock.
                match self.state.compare_exchange_weak(s, new, Acquire, Relaxed) {
                    Ok(_) if new & QUEUED == 0 => return Some(self.permit(n)),
                    Ok(_) => break,
                    Err(actual) => s = actual,
                }
            }
            // SAFETY: `entry` lives in this frame and is in no list. It stays put until
            // unlinked: we wait below until a releaser has unlinked and served it, or unlink
            // it ourselves on timeout; if we are unwound meanwhile the guard unlinks it.
            unsafe { queue.push_back(&entry) };
        }
        let guard = LeaveOnUnwind {
            sem: self,
            entry: &entry,
        };
        let outcome = match entry.waiter.wait(WaitReason::SemaphoreAcquire, deadline) {
            Some(outcome) => outcome,
            None => {
                if self.leave_queue(&entry) {
                    std::mem::forget(guard);
                    return None;
                }
                // Served before we could leave: the permits are ours.
                entry
                    .waiter
                    .wait(WaitReason::SemaphoreAcquire, None)
                    .expect("no deadline")
            }
        };
        std::mem::forget(guard);
        debug_assert_eq!(outcome, GRANTED);
        Some(self.permit(n))
    }

    /// Unlinks `entry` if it is still queued and returns true; false if a releaser has
    /// already served it. When it leaves, the waiters behind it are served with the free
    /// permits, which its request may have been holding back.
    fn leave_queue(&self, entry: &Entry) -> bool {
        let mut batch = WakeBatch::new();
        {
            let mut queue = self.queue.lock();
            if !entry.waiter.is_waiting() {
                return false;
            }
            // SAFETY: a `WAITING` entry is in this queue (only the lock holder unlinks).
            unsafe { queue.remove(entry) };
            self.serve(&mut queue, 0, &mut batch);
        }
        batch.wake_all(GRANTED);
        true
    }

    /// Gives `n` permits back (or adds them).
    fn release(&self, n: usize) {
        let mut s = self.state.load(Relaxed);
        while s & QUEUED == 0 {
            let new = add_permits_to(s, n);
            // Release: what the holder did happens before the next acquire of the permits.
            match self.state.compare_exchange_weak(s, new, Release, Relaxed) {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
        self.release_contended(n);
    }

    #[cold]
    #[inline(never)]
    fn release_contended(&self, n: usize) {
        let mut batch = WakeBatch::new();
        {
            let mut queue = self.queue.lock();
            self.forget_parent_waiters(&mut queue);
            let mut s = self.state.load(Relaxed);
            // Waiters may have left meanwhile, emptying the queue (or, in a fork child, been
            // the parent's): then add as usual (with QUEUED clear, fast paths may write the
            // word concurrently, hence the CAS).
            while s & QUEUED == 0 {
                match self
                    .state
                    .compare_exchange_weak(s, add_permits_to(s, n), Release, Relaxed)
                {
                    Ok(_) => return,
                    Err(actual) => s = actual,
                }
            }
            self.serve(&mut queue, n, &mut batch);
        }
        batch.wake_all(GRANTED);
    }

    /// Under the queue lock: forgets the queue's entries linked before a fork (threads of
    /// the parent process) and `QUEUED` with them (module docs, "In a fork child").
    #[inline]
    fn forget_parent_waiters(&self, queue: &mut WaitList<Entry>) {
        if queue.forget_inherited() {
            // Relaxed: QUEUED is ordered by the queue lock (module doc).
            self.state.fetch_and(!QUEUED, Relaxed);
        }
    }

    /// Under the queue lock: adds `extra` permits to the free ones, hands permits to the
    /// queue in order while they cover the head's request, and writes the word once. The
    /// caller finishes the served entries' wake-ups after unlocking.
    ///
    /// Call only with `QUEUED` set, or with `extra == 0` after unlinking an entry (then
    /// `QUEUED` is still set: the queue was not empty).
    fn serve(&self, queue: &mut WaitList<Entry>, extra: usize, batch: &mut WakeBatch<usize>) {
        // Acquire: the permits handed out below were released by others; the served
        // threads must see what those did (they synchronize with us through the outcome).
        let s = self.state.load(Acquire);
        debug_assert!(s & QUEUED != 0);
        let mut free = add_permits_to(s, extra) >> SHIFT;
        while let Some(head) = queue.pop_front() {
            // SAFETY: `head` was queued, so it is live; its `data` is not written while
            // it is queued.
            let want = unsafe { (*head).data };
            if want > free {
                // SAFETY: `head` was the head a moment ago, still live.
                unsafe { queue.push_front(head) };
                break;
            }
            free -= want;
            // SAFETY: unlinked just now under the queue lock, and `WAITING`.
            unsafe { batch.push(head) };
        }
        let queued = if queue.is_empty() { 0 } else { QUEUED };
        // With QUEUED set and the queue lock held, the word is ours (module doc). Release:
        // a later fast-path acquire of these permits sees what their holders did.
        self.state.store(free << SHIFT | queued, Release);
    }
}

/// `s` with `n` more free permits.
///
/// # Panics
///
/// If that exceeds [`Semaphore::MAX_PERMITS`].
fn add_permits_to(s: usize, n: usize) -> usize {
    match (s >> SHIFT).checked_add(n) {
        Some(total) if total <= Semaphore::MAX_PERMITS => s + (n << SHIFT),
        _ => panic!("a semaphore cannot hold more than MAX_PERMITS permits"),
    }
}

/// Leaves the queue, or gives back the permits it was handed, if the thread is unwound
/// while parked.
struct LeaveOnUnwind<'a> {
    sem: &'a Semaphore,
    entry: &'a Entry,
}

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        if !self.sem.leave_queue(self.entry) {
            self.entry.waiter.outcome_without_parking();
            self.sem.release(self.entry.data);
        }
    }
}

impl SemaphorePermit<'_> {
    /// How many permits this guard holds.
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// Drops the guard without giving the permits back: the semaphore has that many
    /// fewer from now on.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.permits > 0 {
            self.sem.release(self.permits);
        }
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.load(Relaxed);
        f.debug_struct("Semaphore")
            .field("available_permits", &(s >> SHIFT))
            .field("waiters", &(s & QUEUED != 0))
            .finish()
    }
}
