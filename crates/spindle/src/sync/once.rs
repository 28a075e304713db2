//! [`Once`]: run an initializer once; threads that arrive while it runs park until it is
//! done. The same protocol (`RawOnce`) carries [`crate::sync::OnceLock`].
//!
//! ## The state word
//!
//! One `AtomicU8`: a state in the low two bits, and `QUEUED` (bit 2): some thread may be
//! parked in the wait queue. The states:
//!
//! | state        | meaning                                           | left by                       |
//! |--------------|---------------------------------------------------|-------------------------------|
//! | `INCOMPLETE` | nothing has run, or the last attempt gave up      | a caller's CAS to `RUNNING`   |
//! | `RUNNING`    | a caller runs the initializer (it owns the state) | that caller's swap, at its end |
//! | `COMPLETE`   | initialized, for good                             | never (but `&mut` resets)     |
//! | `POISONED`   | an initializer panicked                           | a forcing caller's CAS to `RUNNING` |
//!
//! `QUEUED` is set only under the queue's spin lock, in the same critical section that
//! links an entry, and cleared by the runner's final swap (which then wakes the queue) or
//! under the lock by a leaving waiter that empties the queue.
//!
//! ## The protocol
//!
//! - **Fast path.** One acquire load: `COMPLETE` means done, and the initializer's writes
//!   are visible (they happen before its release swap).
//! - **Run.** A caller that sees `INCOMPLETE` (or `POISONED`, when it ignores poisoning)
//!   CASes it to `RUNNING` (keeping `QUEUED`). It runs the initializer, then swaps in the
//!   outcome (acquire-release): `COMPLETE` if it succeeded, `INCOMPLETE` if it returned a
//!   failure (`OnceLock::get_or_try_init`), or, from a drop guard if it panicked (or was
//!   unwound), `POISONED`. If the swapped-out word had `QUEUED`, it takes the lock, takes
//!   the whole queue and wakes every entry (`WakeBatch`, `sync/wait_entry.rs`).
//! - **Wait.** A caller that sees a state it cannot leave (`RUNNING`; for `wait`, also
//!   `INCOMPLETE` and, when ignoring poisoning, `POISONED`) takes the lock and CASes `QUEUED`
//!   into the word if the state is still the one it saw (else it drops the lock and looks
//!   again), links its entry, unlocks and parks. Woken, it looks again from the top: it
//!   returns on `COMPLETE`, panics on `POISONED` unless it ignores poisoning, and otherwise
//!   runs the initializer itself or waits again.
//!
//! **Why no wake-up is lost.** A waiter's CAS that sets `QUEUED` and the runner's final
//! swap are RMWs of one word, so one comes first. If the CAS does, the swap returns
//! `QUEUED`, and the runner takes the lock (after the waiter has linked its entry, which it
//! did while holding it) and wakes it. If the swap does, the CAS fails (the state changed)
//! and the waiter looks again without parking. The wake-up is the hand-shake of
//! `sync/waiter.rs`.
//!
//! **Why waiters are all woken, and why that is no herd.** On success every waiter returns
//! at once, which is what they wait for. After a failure or a panic the waiters must look
//! again: one of them will run the initializer (`call_once_force`, `OnceLock`) or panic
//! (`call_once` on a poisoned `Once`), and waking only one could leave the rest parked
//! behind a thread that panicked. Failures are rare; waking all of them then is the simple
//! choice.
//!
//! **Memory orderings.** The runner's swap releases its initializer's writes; the fast
//! path's acquire load, and a woken waiter's acquire of the outcome (sync/waiter.rs, from
//! the runner, after its swap), see them. The CAS to `RUNNING` acquires, so a runner after a
//! failed attempt sees what that attempt wrote. `QUEUED` is ordered by the queue lock.
//!
//! An initializer that calls into the same `Once` or `OnceLock` waits for itself and
//! deadlocks (std says it "may deadlock or panic").
//!
//! ## Cancellation
//!
//! A green thread parked here may be unwound when its runtime is dropped: its guard
//! unlinks its entry (clearing `QUEUED` if the queue is now empty), or, if it was woken
//! meanwhile, waits for its outcome without parking. A runner that is unwound poisons the
//! state through its drop guard and wakes the waiters, as a panic does.

use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use super::spin_lock::SpinLock;
use super::wait_entry::{WaitEntry, WakeBatch};
use super::wait_list::WaitList;
use super::waiter::FIRST_OUTCOME;
use crate::park::WaitReason;

/// Nothing has run, or the last attempt gave up without panicking.
const INCOMPLETE: u8 = 0;
/// A caller is running the initializer.
const RUNNING: u8 = 1;
/// Initialized.
const COMPLETE: u8 = 2;
/// An initializer panicked.
const POISONED: u8 = 3;
/// The state bits.
const STATE: u8 = 3;
/// Some thread may be parked in the queue.
const QUEUED: u8 = 4;

/// Outcome: the state changed; look again.
const CHANGED: u8 = FIRST_OUTCOME;

type Entry = WaitEntry<()>;

/// The protocol of the module doc, without data.
pub(crate) struct RawOnce {
    state: AtomicU8,
    queue: SpinLock<WaitList<Entry>>,
}

// SAFETY: the queue holds pointers to entries of parked threads; they are dereferenced only
// under the lock or by the runner that unlinked them (sync/waiter.rs), and an entry holds
// only a thread handle, usable from any thread. The state is atomic.
unsafe impl Sync for RawOnce {}
// SAFETY: as above; a `RawOnce` with parked threads is borrowed, so moving it moves no entry.
unsafe impl Send for RawOnce {}

impl RawOnce {
    /// An `INCOMPLETE` once.
    pub(crate) const fn new() -> RawOnce {
        RawOnce {
            state: AtomicU8::new(INCOMPLETE),
            queue: SpinLock::new(WaitList::new()),
        }
    }

    /// Whether an initializer has completed (with acquire: its writes are visible).
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        self.state.load(Acquire) == COMPLETE
    }

    /// Whether the state is `POISONED` (a snapshot).
    pub(crate) fn is_poisoned(&self) -> bool {
        self.state.load(Relaxed) & STATE == POISONED
    }

    /// Back to `INCOMPLETE`; `&mut self` proves nobody runs or waits.
    pub(crate) fn reset(&mut self) {
        *self.state.get_mut() = INCOMPLETE;
    }

    /// Runs `init` unless the once is complete, waiting while another caller runs its
    /// initializer. `init` gets whether the state was poisoned and returns whether it
    /// succeeded; a `false` leaves the state `INCOMPLETE` for the next caller, a panic
    /// leaves it `POISONED`. `init` runs at most once per call.
    ///
    /// Returns once the state is `COMPLETE`, or right after our own `init` failed.
    ///
    /// # Panics
    ///
    /// If the state is (or becomes, while we wait) `POISONED` and `ignore_poison` is false.
    #[cold]
    pub(crate) fn call(&self, ignore_poison: bool, init: &mut dyn FnMut(&OnceState) -> bool) {
        loop {
            let s = self.state.load(Acquire);
            match s & STATE {
                COMPLETE => return,
                POISONED if !ignore_poison => poisoned(),
                INCOMPLETE | POISONED => {
                    let new = (s & QUEUED) | RUNNING;
                    // Acquire: see what an earlier, failed attempt wrote.
                    if self
                        .state
                        .compare_exchange_weak(s, new, Acquire, Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    let mut finish = Finish {
                        once: self,
                        to: POISONED,
                    };
                    let state = OnceState {
                        poisoned: s & STATE == POISONED,
                    };
                    finish.to = if init(&state) { COMPLETE } else { INCOMPLETE };
                    return; // `finish` publishes the outcome and wakes the waiters
                }
                _ => self.park_while(s),
            }
        }
    }

    /// Waits until the state is `COMPLETE`.
    ///
    /// # Panics
    ///
    /// If it is (or becomes) `POISONED` and `ignore_poison` is false.
    pub(crate) fn wait(&self, ignore_poison: bool) {
        loop {
            let s = self.state.load(Acquire);
            match s & STATE {
                COMPLETE => return,
                POISONED if !ignore_poison => poisoned(),
                _ => self.park_while(s),
            }
        }
    }

    /// Parks until the state may differ from `seen`'s; returns at once if it already does.
    #[cold]
    fn park_while(&self, seen: u8) {
        let entry = Entry::for_current_thread(());
        {
            let mut queue = self.queue.lock();
            let mut s = self.state.load(Relaxed);
            while s & QUEUED == 0 {
                if s & STATE != seen & STATE {
                    return;
                }
                // Relaxed: QUEUED is ordered by the queue lock; what the waiter must see is
                // published by the runner's swap and the outcome store.
                match self
                    .state
                    .compare_exchange_weak(s, s | QUEUED, Relaxed, Relaxed)
                {
                    Ok(_) => s |= QUEUED,
                    Err(actual) => s = actual,
                }
            }
            if s & STATE != seen & STATE {
                return;
            }
            // SAFETY: `entry` lives in this frame and is in no list. It stays put until
            // unlinked: we wait below until the runner unlinks and wakes it, and if we are
            // unwound meanwhile the guard unlinks it.
            unsafe { queue.push_back(&entry) };
        }
        let guard = LeaveOnUnwind {
            once: self,
            entry: &entry,
        };
        let outcome = entry.waiter.wait(WaitReason::OnceWait, None);
        std::mem::forget(guard);
        debug_assert_eq!(outcome, Some(CHANGED));
    }
}

#[cold]
#[inline(never)]
fn poisoned() -> ! {
    panic!("Once instance has previously been poisoned");
}

/// The runner's end: publishes the outcome and wakes the waiters, also when the
/// initializer panics (then `to` is still `POISONED`).
struct Finish<'a> {
    once: &'a RawOnce,
    to: u8,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        // Release: the initializer's writes happen before every acquire that sees `to`.
        // Acquire: a waiter's QUEUED (ordered by the queue lock, which we take next).
        let prev = self.once.state.swap(self.to, AcqRel);
        debug_assert_eq!(prev & STATE, RUNNING);
        if prev & QUEUED == 0 {
            return;
        }
        let mut batch = WakeBatch::new();
        {
            let mut queue = self.once.queue.lock();
            let mut all = queue.take_all();
            // SAFETY: every entry in the queue was linked by a waiter and is `WAITING`
            // (only the lock holder unlinks), and we unlinked them all under the lock.
            unsafe { batch.push_all(&mut all) };
        }
        batch.wake_all(CHANGED);
    }
}

/// Unlinks a parked entry if its thread is unwound while parked.
struct LeaveOnUnwind<'a> {
    once: &'a RawOnce,
    entry: &'a Entry,
}

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        let mut queue = self.once.queue.lock();
        if self.entry.waiter.is_waiting() {
            // SAFETY: a `WAITING` entry is in the queue (only the lock holder unlinks).
            unsafe { queue.remove(self.entry) };
            if queue.is_empty() {
                // QUEUED changes only under this lock; with the queue empty nobody needs it.
                self.once.state.fetch_and(!QUEUED, Relaxed);
            }
            return;
        }
        drop(queue);
        self.entry.waiter.outcome_without_parking();
    }
}

/// Runs a one-time initialization, for green and kernel threads alike.
///
/// The API is `std::sync::Once`'s, poisoning included: if the closure given to
/// [`call_once`](Once::call_once) panics, the `Once` is poisoned, and later `call_once`
/// calls (and the ones waiting at the time) panic; [`call_once_force`](Once::call_once_force)
/// runs its closure anyway and is told. Threads that call while another runs the closure
/// park until it is done (a green thread parks only itself).
///
/// ```
/// use spindle::sync::Once;
///
/// static INIT: Once = Once::new();
/// let rt = spindle::Runtime::builder().build()?;
/// rt.block_on(|| {
///     let hs: Vec<_> = (0..4)
///         .map(|_| spindle::spawn(|| INIT.call_once(|| println!("runs once"))))
///         .collect();
///     hs.into_iter().for_each(|h| h.join().unwrap());
///     assert!(INIT.is_completed());
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Once {
    raw: RawOnce,
}

impl UnwindSafe for Once {}
impl RefUnwindSafe for Once {}

/// What [`Once::call_once_force`] tells its closure.
///
/// spindle's own type, since std's `OnceState` cannot be constructed outside std.
#[derive(Debug)]
pub struct OnceState {
    poisoned: bool,
}

impl OnceState {
    /// True if an earlier initializer panicked (the `Once` was poisoned).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

impl Once {
    /// A `Once` whose closure has not run.
    pub const fn new() -> Once {
        Once {
            raw: RawOnce::new(),
        }
    }

    /// Runs `f` if no closure has completed on this `Once` yet; if another thread is
    /// running one, parks until it is done. When this returns, a closure has completed.
    ///
    /// # Panics
    ///
    /// If the `Once` is poisoned (a closure panicked), or `f` panics (which poisons it).
    pub fn call_once<F: FnOnce()>(&self, f: F) {
        if self.raw.is_completed() {
            return;
        }
        let mut f = Some(f);
        self.raw.call(false, &mut |_| {
            (f.take().expect("runs at most once"))();
            true
        });
    }

    /// Like [`call_once`](Once::call_once), but runs `f` even if the `Once` is poisoned,
    /// telling it so through [`OnceState::is_poisoned`]; if `f` completes, the `Once` is
    /// no longer poisoned.
    pub fn call_once_force<F: FnOnce(&OnceState)>(&self, f: F) {
        if self.raw.is_completed() {
            return;
        }
        let mut f = Some(f);
        self.raw.call(true, &mut |state| {
            (f.take().expect("runs at most once"))(state);
            true
        });
    }

    /// Whether a closure has completed. False while one runs, and when poisoned.
    pub fn is_completed(&self) -> bool {
        self.raw.is_completed()
    }

    /// Parks until a closure has completed on this `Once` (run by another thread).
    ///
    /// # Panics
    ///
    /// If the `Once` is or becomes poisoned.
    pub fn wait(&self) {
        if !self.raw.is_completed() {
            self.raw.wait(false);
        }
    }

    /// Like [`wait`](Once::wait), but waits through poisoning until a closure completes.
    pub fn wait_force(&self) {
        if !self.raw.is_completed() {
            self.raw.wait(true);
        }
    }
}

impl Default for Once {
    fn default() -> Once {
        Once::new()
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.raw.is_completed() {
            "complete"
        } else if self.raw.is_poisoned() {
            "poisoned"
        } else {
            "incomplete"
        };
        f.debug_struct("Once").field("state", &state).finish()
    }
}
