//! The lock behind [`crate::sync::Mutex`]: a state word, a FIFO of parked waiters.
//!
//! ## The state word
//!
//! One `AtomicU32` with three bits:
//!
//! - `LOCKED`: someone holds the lock.
//! - `WAITERS`: the wait queue is not empty. Changed only under the queue's spin lock.
//! - `WOKEN`: an unlock has woken a waiter that has not yet come back to compete. At most
//!   one waiter is "woken" at a time, and it owns the bit: it clears it when it next
//!   acquires the lock or queues again (the Go runtime's `mutexWoken`).
//!
//! The uncontended paths touch nothing else: `lock` is a load and one CAS `s -> s | LOCKED`
//! (acquire) when `LOCKED` is clear, `unlock` a load and one CAS `s -> s & !LOCKED`
//! (release) when nobody needs waking (`WAITERS` clear, or `WOKEN` set). No allocation, no
//! system call, no thread handle. These are exactly the barging acquire and the quiet
//! release of the contended paths below, taken inline: "free" includes a free lock with
//! waiters queued, so a thread running many short critical sections while others wait
//! (1,000 threads on one lock) pays two atomic operations per section, not the slow paths'
//! four and a queue entry. Before this, the many-to-many contention run of `spindle-lab
//! bench sync` took 1.2-1.4x the time of std's kernel threads; after, about 0.4x.
//!
//! ## The protocol
//!
//! **Lock, contended.** A thread that finds `LOCKED` set first spins a little if it is a
//! kernel thread and nobody is queued (the holder probably runs on another core; a green
//! thread does not spin, since the holder may be waiting for this very kernel thread).
//! Then it takes the queue lock and, in one CAS, sets `WAITERS` if `LOCKED` is still set
//! (clearing `WOKEN` if it owns it); if the lock was released meanwhile it retries instead.
//! It links its entry (on its own stack) and parks until an unlock serves it.
//!
//! **Unlock, contended** (the CAS failed, so another bit is set):
//!
//! - no `WAITERS`, or `WOKEN` set (a woken waiter is already on its way): just clear
//!   `LOCKED` (CAS loop). Not waking a second waiter while one is pending is what keeps a
//!   burst of unlocks from waking the whole queue.
//! - otherwise take the queue lock, pop the head and either
//!   - clear `LOCKED`, set `WOKEN` and wake the head with the outcome "compete", or
//!   - leave `LOCKED` set and wake the head with the outcome "handed off": it owns the lock.
//!
//!   `WAITERS` stays set if entries remain.
//!
//! **Barging, FIFO wake-ups, bounded starvation.** A woken waiter competes with threads
//! that arrive meanwhile ("barging"): that keeps the lock busy instead of idle while the
//! woken thread is being scheduled, which matters most in the many-to-one model, where the
//! unlocker usually keeps running. Waiters are woken in FIFO order. A woken waiter that
//! loses the race goes back to the *front* of the queue, and once it has lost
//! [`HANDOFF_AFTER_LOST_RACES`] races it asks for a hand-off: the next unlock that wakes it
//! passes the lock directly, so no waiter is bypassed more than a bounded number of times
//! per wake-up.
//!
//! ## Why the state may be written with plain stores in the unlock slow path
//!
//! While a thread holds `LOCKED` and the queue lock, with `WOKEN` clear, nobody else can
//! change the word: acquiring needs `LOCKED` clear, setting or clearing `WAITERS` needs the
//! queue lock, and `WOKEN` is set only by unlockers (that is us) or by a condvar requeue
//! under the queue lock, and cleared only by its owner (there is none while it is clear)
//! or, in a fork child, under the queue lock when its owner was a parent thread
//! ("In a fork child" below).
//!
//! ## Invariant, and why no wake-up is lost
//!
//! At every moment: **`WAITERS` set and `LOCKED` clear implies `WOKEN` set.** Each write of
//! the word keeps it (check them: queuing sets `WAITERS` only with `LOCKED` set; the unlock
//! slow path clears `LOCKED` only when `WAITERS` is clear or `WOKEN` is set, or sets `WOKEN`
//! as it clears it; the woken waiter clears `WOKEN` only together with setting `LOCKED` or
//! while `LOCKED` is set).
//!
//! So a queued waiter is never stranded: whenever the lock is free with waiters queued, a
//! woken thread is on its way. It either takes the lock (and its unlock will see
//! `WAITERS`), or queues again with `LOCKED` set by some holder (whose unlock will see
//! `WAITERS` and no `WOKEN`, and wake). A queuing thread's CAS and the holder's fast unlock
//! CAS are on the same word, so one of them fails: either the unlock sees `WAITERS`, or the
//! queuing thread sees the lock free and retries. The wake-up itself goes through the
//! handshake in `sync/waiter.rs`, which cannot lose an unpark.
//!
//! ## Memory orderings
//!
//! Acquire on every CAS that sets `LOCKED`, release on every write that clears it: that is
//! the lock's own happens-before. The bits `WAITERS` and `WOKEN` are hints about the queue,
//! which the queue lock orders, so their updates are relaxed. A hand-off does not clear
//! `LOCKED`; the new owner synchronizes with the old one through the waiter handshake (the
//! outcome's release store and acquire load).
//!
//! ## Cancellation
//!
//! A green thread parked here may be unwound when its runtime is dropped. Its entry's drop
//! guard unlinks it if still queued; if it was already served it gives the service back:
//! unlocks a lock it was handed, or passes on a `WOKEN` it owns (taking and releasing the
//! lock if waiters are queued and the lock is free), so the next waiter is woken instead.
//!
//! ## In a fork child
//!
//! The parent's threads are gone from the queue (fork.rs, "Objects the parent's threads
//! wait on"), and what the word says about them must go too, or the child's waiters are
//! stranded: a `WOKEN` owned by a parent thread makes every unlock in the child a quiet
//! one, and a queue of parent entries would be served instead of the child's waiters. So
//! every critical section under the queue lock that reads or sets `WAITERS` or `WOKEN`
//! (queuing, the unlock slow path, a condvar's requeue) first forgets them
//! (`forget_parent_waiters`):
//!
//! - the queue's stale entries (`WaitList::forget_inherited`), and with them `WAITERS`;
//! - a `WOKEN` set in an earlier generation: whenever `WOKEN` is set (under the queue
//!   lock) the generation is stamped beside it (`woken_in`), so a woken waiter of the
//!   parent's, already off the queue at the fork and never coming back, is told apart from
//!   one woken in the child.
//!
//! The invariant holds across: `WAITERS` is cleared with the stale entries, and a stale
//! `WOKEN` alone can be met only with no child waiter queued (the first one to queue clears
//! it), so clearing it leaves no waiter without a woken thread on its way. The forking
//! thread's own unlock of a lock it held at the fork thus wakes the child's first waiter,
//! or, with none, just releases the lock. The fast paths read no generation: a stale
//! `WOKEN` only makes them take the quiet release, which is right while no child waiter is
//! queued.

use std::cell::Cell;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crossbeam_utils::Backoff;

use super::spin_lock::SpinLock;
use super::wait_list::{Linked, Links, WaitList};
use super::waiter::{Waiter, FIRST_OUTCOME};
use crate::fork;
use crate::park::WaitReason;
use crate::sched::context;

/// Someone holds the lock.
const LOCKED: u32 = 1;
/// The wait queue is not empty.
const WAITERS: u32 = 2;
/// A waiter has been woken to compete and has not come back yet.
const WOKEN: u32 = 4;

/// Outcome: you were woken to compete for the lock, and you own `WOKEN`.
pub(crate) const WOKEN_TO_COMPETE: u8 = FIRST_OUTCOME;
/// Outcome: the lock was handed to you; you hold it.
pub(crate) const HANDED_OFF: u8 = FIRST_OUTCOME + 1;

/// A woken waiter that lost this many races asks for the lock to be handed to it.
pub(crate) const HANDOFF_AFTER_LOST_RACES: u32 = 2;

/// Backoff rounds a kernel thread spins before queuing (1 + 2 + ... + 32 pause instructions).
const SPIN_ROUNDS: u32 = 6;

/// A queue entry of a thread waiting for a [`RawMutex`] (or, first, for a condvar).
pub(crate) struct LockWaiter {
    links: Links<LockWaiter>,
    pub(crate) waiter: Waiter,
    /// Set by the owner before queuing, read by the unlocker; both under the queue lock.
    wants_handoff: Cell<bool>,
    /// True while the entry is in a condvar's list rather than a mutex's; changed only
    /// under the condvar's queue lock (see `sync/condvar.rs`).
    pub(crate) on_condvar: Cell<bool>,
}

// SAFETY: `links` is a field, returned every time.
unsafe impl Linked for LockWaiter {
    fn links(&self) -> &Links<LockWaiter> {
        &self.links
    }
}

impl LockWaiter {
    /// An entry for the calling thread.
    pub(crate) fn for_current_thread() -> LockWaiter {
        LockWaiter {
            links: Links::new(),
            waiter: Waiter::for_current_thread(),
            wants_handoff: Cell::new(false),
            on_condvar: Cell::new(false),
        }
    }
}

/// A mutual-exclusion lock with no data: the state word and the wait queue.
pub(crate) struct RawMutex {
    state: AtomicU32,
    /// The fork generation `WOKEN` was last set in (module docs, "In a fork child"). Read
    /// and written only under the queue lock. It takes padding the struct had anyway.
    woken_in: Cell<u32>,
    queue: SpinLock<WaitList<LockWaiter>>,
}

// SAFETY: the queue holds pointers to entries of blocked threads; they are dereferenced
// only under the queue lock or by the waker that unlinked them (sync/waiter.rs), and an
// entry holds only a thread handle and flags, which any thread may use. The state is atomic;
// `woken_in` is touched only under the queue lock, which orders those accesses.
unsafe impl Sync for RawMutex {}
// SAFETY: as above; moving the mutex moves no entry (a mutex with waiters is borrowed).
unsafe impl Send for RawMutex {}

impl RawMutex {
    /// An unlocked mutex.
    pub(crate) const fn new() -> RawMutex {
        RawMutex {
            state: AtomicU32::new(0),
            woken_in: Cell::new(0),
            queue: SpinLock::new(WaitList::new()),
        }
    }

    /// Acquires the lock, parking while it is held.
    #[inline]
    pub(crate) fn lock(&self) {
        // Free is not only 0: with waiters queued the word keeps `WAITERS` (and `WOKEN`
        // while a woken waiter is on its way) while the lock is free, and a thread that
        // arrives then takes it with one CAS all the same (barging, module docs).
        let s = self.state.load(Relaxed);
        if s & LOCKED != 0
            || self
                .state
                .compare_exchange_weak(s, s | LOCKED, Acquire, Relaxed)
                .is_err()
        {
            self.lock_contended();
        }
    }

    /// Acquires the lock if it is free (barging past queued waiters, as `lock` does).
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        loop {
            if s & LOCKED != 0 {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(s, s | LOCKED, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// Releases the lock, waking a waiter if one needs it. The caller holds the lock.
    #[inline]
    pub(crate) fn unlock(&self) {
        // Nobody to wake (no `WAITERS`), or a woken waiter already on its way (`WOKEN`):
        // clear `LOCKED` with one CAS. Otherwise, or if the word changed, the slow path.
        let s = self.state.load(Relaxed);
        if (s & WAITERS != 0 && s & WOKEN == 0)
            || self
                .state
                .compare_exchange(s, s & !LOCKED, Release, Relaxed)
                .is_err()
        {
            self.unlock_contended();
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        // With waiters queued the word is not 0 even when the lock is free (`WAITERS`, and
        // `WOKEN` while a woken waiter is on its way): barge as `lock_queued` would, but
        // before making a queue entry, which costs a thread handle.
        let mut s = self.state.load(Relaxed);
        while s & LOCKED == 0 {
            match self
                .state
                .compare_exchange_weak(s, s | LOCKED, Acquire, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
        let entry = LockWaiter::for_current_thread();
        self.lock_queued(&entry, false);
    }

    /// Acquires the lock for a thread whose `entry` is in no queue. `woken`: the caller was
    /// woken by an unlock and owns the `WOKEN` bit.
    pub(crate) fn lock_queued(&self, entry: &LockWaiter, mut woken: bool) {
        let may_spin = context::current_green().is_none();
        let mut spins = 0;
        let backoff = Backoff::new();
        // A woken caller that loses the race below has lost one already: it goes back to
        // the front of the queue, like a mutex waiter woken after queuing here.
        let mut lost_races = u32::from(woken);
        loop {
            let s = self.state.load(Relaxed);
            if s & LOCKED == 0 {
                let new = (s | LOCKED) & if woken { !WOKEN } else { !0 };
                if self
                    .state
                    .compare_exchange_weak(s, new, Acquire, Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if may_spin && s & WAITERS == 0 && spins < SPIN_ROUNDS {
                spins += 1;
                backoff.spin();
                continue;
            }
            match self.queue_and_wait(entry, woken, lost_races) {
                None => continue, // released before we could queue: compete again
                Some(HANDED_OFF) => return,
                Some(_) => {
                    woken = true;
                    lost_races += 1;
                }
            }
        }
    }

    /// Queues `entry` if the lock is still held and parks until an unlock serves it.
    /// Returns the outcome, or `None` (without queuing) if the lock was free.
    fn queue_and_wait(&self, entry: &LockWaiter, woken: bool, lost_races: u32) -> Option<u8> {
        {
            let mut queue = self.queue.lock();
            self.forget_parent_waiters(&mut queue);
            let mut s = self.state.load(Relaxed);
            loop {
                if s & LOCKED == 0 {
                    return None;
                }
                // Relaxed: WAITERS and WOKEN are ordered by the queue lock (module doc).
                let new = (s | WAITERS) & if woken { !WOKEN } else { !0 };
                match self.state.compare_exchange_weak(s, new, Relaxed, Relaxed) {
                    Ok(_) => break,
                    Err(actual) => s = actual,
                }
            }
            entry.waiter.reset();
            entry
                .wants_handoff
                .set(lost_races >= HANDOFF_AFTER_LOST_RACES);
            // SAFETY: `entry` lives in our caller's frame and is in no list (the caller's
            // contract, or it was unlinked by the waker that served it last time). It stays
            // put until unlinked: we wait below until a waker has unlinked and served it,
            // and if we are unwound meanwhile the guard unlinks it.
            unsafe {
                if lost_races > 0 {
                    queue.push_front(entry);
                } else {
                    queue.push_back(entry);
                }
            }
        }
        let guard = AbandonOnUnwind { mutex: self, entry };
        let outcome = entry.waiter.wait(WaitReason::MutexLock, None);
        std::mem::forget(guard);
        outcome
    }

    /// Finishes acquiring after a wake-up with `outcome` (for a condvar waiter that was
    /// moved to this mutex's queue).
    pub(crate) fn lock_after_wake(&self, entry: &LockWaiter, outcome: u8) {
        match outcome {
            HANDED_OFF => {}
            WOKEN_TO_COMPETE => self.lock_queued(entry, true),
            other => unreachable!("mutex wake-up outcome {other}"),
        }
    }

    #[cold]
    #[inline(never)]
    fn unlock_contended(&self) {
        let mut s = self.state.load(Relaxed);
        while s & WAITERS == 0 || s & WOKEN != 0 {
            debug_assert!(s & LOCKED != 0, "unlock of an unlocked mutex");
            match self
                .state
                .compare_exchange_weak(s, s & !LOCKED, Release, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
        let mut queue = self.queue.lock();
        // In a fork child, the parent's waiters are not there to be woken (module doc).
        self.forget_parent_waiters(&mut queue);
        // From here the word is ours alone (module doc), so plain stores suffice.
        let s = self.state.load(Relaxed);
        debug_assert_eq!(s & (LOCKED | WOKEN), LOCKED);
        let Some(head) = queue.pop_front() else {
            // Every queued waiter was unwound since we looked, or was a thread of the
            // parent process (we are in a fork child).
            self.state.store(0, Release);
            return;
        };
        let rest = if queue.is_empty() { 0 } else { WAITERS };
        // SAFETY: `head` was queued, so it is a live entry (wait_list.rs push contract),
        // and we hold the queue lock that guards `wants_handoff`.
        let handoff = unsafe { (*head).wants_handoff.get() };
        let outcome = if handoff {
            // Keep LOCKED: the head owns the lock now.
            self.state.store(LOCKED | rest, Relaxed);
            HANDED_OFF
        } else {
            self.woken_in.set(fork::generation());
            self.state.store(WOKEN | rest, Release);
            WOKEN_TO_COMPETE
        };
        // SAFETY: as above; unlinked under the lock, so we may start its wake-up.
        unsafe { (*head).waiter.start_wake() };
        drop(queue);
        // SAFETY: we started this wake-up and finish it once; we do not touch `head` after.
        unsafe { Waiter::finish_wake(&raw const (*head).waiter, outcome) };
    }

    /// Moves condvar waiters (unlinked from the condvar, `on_condvar` already false, still
    /// `WAITING`) to the back of this mutex's queue, so that unlocks wake them one at a time.
    /// If the mutex is free and no waiter is woken, nobody would wake them: then the first
    /// queued entry is popped, `WOKEN` set for it, and its wake-up started; the caller
    /// finishes it (outcome [`WOKEN_TO_COMPETE`]) once it has released its own lock.
    ///
    /// # Safety
    ///
    /// The entries in `moved` satisfy the push contract of [`WaitList`] for this mutex's
    /// queue: they stay valid until unlinked from it.
    pub(crate) unsafe fn requeue(
        &self,
        moved: &mut WaitList<LockWaiter>,
    ) -> Option<*const LockWaiter> {
        let mut queue = self.queue.lock();
        self.forget_parent_waiters(&mut queue);
        queue.append(moved);
        let mut s = self.state.load(Relaxed);
        loop {
            if s & (LOCKED | WOKEN) != 0 {
                // A holder's unlock, or the woken waiter, will get to them.
                match self
                    .state
                    .compare_exchange_weak(s, s | WAITERS, Relaxed, Relaxed)
                {
                    Ok(_) => return None,
                    Err(actual) => s = actual,
                }
                continue;
            }
            // Free and nobody woken: by the invariant the queue was empty before `append`.
            let rest = if queue.has_one() { 0 } else { WAITERS };
            match self
                .state
                .compare_exchange_weak(s, s | WOKEN | rest, Relaxed, Relaxed)
            {
                Ok(_) => {
                    self.woken_in.set(fork::generation());
                    let head = queue.pop_front().expect("requeued entries are queued");
                    // SAFETY: `head` is a live entry we just unlinked under the queue lock.
                    unsafe { (*head).waiter.start_wake() };
                    return Some(head);
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// Under the queue lock: forgets what threads of a parent process left in the queue
    /// and the word, in a fork child (module docs, "In a fork child"): the queue's stale
    /// entries with `WAITERS`, and a `WOKEN` set before the fork. In a process that never
    /// forked: the list's look at its head, and two loads and a compare.
    #[inline]
    fn forget_parent_waiters(&self, queue: &mut WaitList<LockWaiter>) {
        let mut stale = 0;
        if queue.forget_inherited() {
            stale |= WAITERS;
        }
        if self.woken_in.get() != fork::generation() {
            // Set in an earlier generation if set at all: its owner is a parent thread.
            stale |= WOKEN;
        }
        // Relaxed: `WAITERS` and `WOKEN` are ordered by the queue lock (module doc).
        if stale != 0 && self.state.load(Relaxed) & stale != 0 {
            self.state.fetch_and(!stale, Relaxed);
        }
    }

    /// A thread whose `entry` was queued here is being unwound: unlink it, or give back
    /// what it was served. Never parks.
    pub(crate) fn abandon(&self, entry: &LockWaiter) {
        let mut queue = self.queue.lock();
        if entry.waiter.is_waiting() {
            // SAFETY: a `WAITING` entry that is not on a condvar is in this queue.
            unsafe { queue.remove(entry) };
            if queue.is_empty() {
                self.state.fetch_and(!WAITERS, Relaxed);
            }
            return;
        }
        drop(queue);
        match entry.waiter.outcome_without_parking() {
            HANDED_OFF => self.unlock(),
            _ => self.pass_on_wakeup(),
        }
    }

    /// Gives up the `WOKEN` bit we own without competing: if waiters are queued and the lock
    /// is free, take it and release it through the path that wakes the next one.
    fn pass_on_wakeup(&self) {
        let mut s = self.state.load(Relaxed);
        loop {
            let (new, took_lock) = if s & LOCKED == 0 && s & WAITERS != 0 {
                ((s | LOCKED) & !WOKEN, true)
            } else {
                (s & !WOKEN, false)
            };
            match self.state.compare_exchange_weak(s, new, Acquire, Relaxed) {
                Ok(_) => {
                    if took_lock {
                        self.unlock();
                    }
                    return;
                }
                Err(actual) => s = actual,
            }
        }
    }
}

/// Unlinks a queued entry, or gives back its service, if its thread is unwound while parked.
struct AbandonOnUnwind<'a> {
    mutex: &'a RawMutex,
    entry: &'a LockWaiter,
}

impl Drop for AbandonOnUnwind<'_> {
    fn drop(&mut self) {
        self.mutex.abandon(self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::RawMutex;
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    struct Counter {
        lock: RawMutex,
        value: UnsafeCell<u64>,
    }
    // SAFETY: `value` is only touched with `lock` held.
    unsafe impl Sync for Counter {}

    /// `woken_in` takes padding the struct had: a mutex is no bigger for it.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_fork_stamp_costs_no_space() {
        assert_eq!(std::mem::size_of::<RawMutex>(), 32);
    }

    #[test]
    fn kernel_threads_exclude_each_other() {
        let c = Arc::new(Counter {
            lock: RawMutex::new(),
            value: UnsafeCell::new(0),
        });
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        c.lock.lock();
                        // SAFETY: we hold the lock.
                        unsafe { *c.value.get() += 1 };
                        c.lock.unlock();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(c.lock.try_lock());
        // SAFETY: we hold the lock.
        assert_eq!(unsafe { *c.value.get() }, 160_000);
        assert!(!c.lock.try_lock());
        c.lock.unlock();
    }
}
