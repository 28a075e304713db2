//! The wake-up handshake between a blocked thread and the thread that serves it.
//!
//! Every queue entry in `sync` and `channel` embeds a [`Waiter`]: the blocked thread's
//! handle and one atomic byte that says where the handshake is. The entry lives on the
//! blocked thread's stack, so the protocol's job is to make sure nobody touches it after
//! its owner has returned, and that no wake-up is lost.
//!
//! ## States and owners
//!
//! | state       | the entry is                        | owned by                                   |
//! |-------------|-------------------------------------|--------------------------------------------|
//! | `WAITING`   | in a wait queue                     | whoever holds the lock of that queue       |
//! | `NOTIFYING` | off the queue, wake-up in progress  | the waker (the blocked thread only reads the state byte) |
//! | an outcome  | off the queue, served               | the blocked thread                         |
//!
//! Outcomes (values from [`FIRST_OUTCOME`] up) are defined by the primitive: "you were
//! handed the lock", "your message was taken", "the channel is disconnected", ...
//!
//! ## The handshake
//!
//! 1. The blocked thread makes the entry (`WAITING`), links it into a queue under the
//!    queue's lock, unlocks, and calls [`Waiter::wait`], which parks while the state is
//!    `WAITING`.
//! 2. A waker, under the same lock, unlinks the entry, does the primitive's work on it (puts
//!    a message in its slot, ...) and calls [`Waiter::start_wake`]: `WAITING -> NOTIFYING`.
//!    It unlocks.
//! 3. Outside the lock, the waker calls [`Waiter::finish_wake`]: it unparks the thread, then
//!    stores the outcome (release). That store is its last access to the entry.
//! 4. The blocked thread returns from `wait` when it loads an outcome (acquire, pairing with
//!    step 3, so it sees everything the waker wrote into the entry or the protected data).
//!    If it loads `NOTIFYING` it spins (and yields) rather than parks: the waker is between
//!    steps 2 and 3, which contain no blocking, only the unpark.
//!
//! Why unpark comes before the outcome store: once the outcome is visible the blocked thread
//! may return, and its thread record may be freed when that thread exits. Unparking first
//! means the waker needs no reference count of its own to the record (which would cost two
//! atomic read-modify-writes per wake-up): the record is alive because its owner cannot have
//! left. Green threads are recorded by a plain pointer for this reason; kernel threads keep a
//! counted handle (they pay a system call per wake-up anyway).
//!
//! Why no wake-up is lost: the waker unparks after `NOTIFYING` is set, and `park` has std's
//! token semantics, so an unpark that lands before the blocked thread parks makes that park
//! return at once. Spurious returns from `park` are absorbed by the loop on the state byte.
//!
//! Timeouts and cancellation: only the lock holder moves an entry out of `WAITING`, so a
//! blocked thread whose deadline passed takes the queue lock and looks. Still `WAITING`: it
//! unlinks itself and owns the entry again (nothing was done to it). Otherwise a waker has
//! already served it; it waits for the outcome (a few nanoseconds away) and takes it. A
//! thread unwound while waiting (its runtime was dropped) does the same from a drop guard,
//! spinning instead of parking, since a thread being unwound must not switch.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_utils::Backoff;

use crate::park::{self, WaitReason};
use crate::sched::context;
use crate::task::thread::Thread;
use crate::task::ThreadInner;

/// The entry is queued.
const WAITING: u8 = 0;
/// The entry is off the queue and its waker is unparking it.
const NOTIFYING: u8 = 1;
/// The smallest value a primitive may use as an outcome.
pub(crate) const FIRST_OUTCOME: u8 = 2;

/// How to wake the blocked thread.
enum BlockedThread {
    /// A green thread's record, borrowed without a count: alive while it is blocked (see
    /// the module doc).
    Green(NonNull<ThreadInner>),
    /// A kernel thread's handle.
    Kernel(Thread),
}

/// A blocked thread's side of the handshake, embedded in its queue entry.
pub(crate) struct Waiter {
    state: AtomicU8,
    thread: BlockedThread,
}

impl Waiter {
    /// A waiter for the calling thread, in the `WAITING` state.
    #[inline]
    pub(crate) fn for_current_thread() -> Waiter {
        let thread = match context::current_green() {
            Some(g) => BlockedThread::Green(NonNull::from(g)),
            None => BlockedThread::Kernel(context::current_thread()),
        };
        Waiter {
            state: AtomicU8::new(WAITING),
            thread,
        }
    }

    /// Whether the entry is still queued. Call it under the queue's lock: only the lock
    /// holder moves an entry out of `WAITING`, so a relaxed load is exact there.
    pub(crate) fn is_waiting(&self) -> bool {
        self.state.load(Relaxed) == WAITING
    }

    /// Back to `WAITING`, to queue the same entry again. The caller has taken its outcome
    /// (so no waker touches it any more) and is about to link it under the queue's lock,
    /// whose release publishes this store.
    pub(crate) fn reset(&self) {
        self.state.store(WAITING, Relaxed);
    }

    /// Step 2: the entry has been unlinked under the queue's lock; claim the wake-up.
    /// Relaxed: the blocked thread only uses `NOTIFYING` to decide to spin; what it must
    /// see is published by the outcome store.
    #[inline]
    pub(crate) fn start_wake(&self) {
        self.state.store(NOTIFYING, Relaxed);
    }

    /// Step 3: unparks the blocked thread and hands it `outcome`.
    ///
    /// # Safety
    ///
    /// `this` points to a live waiter on which the caller called [`Waiter::start_wake`] and
    /// has not called `finish_wake`. After this call returns the caller must not touch it:
    /// its owner may have returned and popped its frame.
    #[inline]
    pub(crate) unsafe fn finish_wake(this: *const Waiter, outcome: u8) {
        debug_assert!(outcome >= FIRST_OUTCOME);
        // SAFETY: the waiter is `NOTIFYING`, so its owner is still inside `wait` (it returns
        // only on an outcome) and the waiter, and the thread record it names, are alive
        // until the store below. For a green thread the record pointer came from the
        // `Arc<ThreadInner>` its worker runs it from; the `Arc` we rebuild from it is
        // never dropped (`ManuallyDrop`), so the counts are untouched.
        unsafe {
            match &(*this).thread {
                BlockedThread::Green(record) => {
                    let record = ManuallyDrop::new(Arc::from_raw(record.as_ptr().cast_const()));
                    park::unpark(&record);
                }
                BlockedThread::Kernel(thread) => thread.unpark(),
            }
            // Release: everything the waker did for this entry happens-before the owner's
            // acquire load of the outcome. Last access to the entry.
            (*this).state.store(outcome, Release);
        }
    }

    /// Step 4: parks until an outcome arrives and returns it, or returns `None` once
    /// `deadline` has passed with the entry still queued (the caller then takes the queue
    /// lock and either unlinks the entry or, if a waker got there first, waits again).
    #[inline]
    pub(crate) fn wait(&self, reason: WaitReason, deadline: Option<Instant>) -> Option<u8> {
        let backoff = Backoff::new();
        loop {
            // Acquire pairs with the release store in `finish_wake`.
            match self.state.load(Acquire) {
                WAITING => match deadline {
                    None => park::park(reason),
                    Some(d) => {
                        if Instant::now() >= d {
                            return None;
                        }
                        park::park_until(reason, d);
                    }
                },
                NOTIFYING => backoff.snooze(),
                outcome => return Some(outcome),
            }
        }
    }

    /// The outcome of an entry that a waker has unlinked, without parking: for drop guards
    /// that run while the thread is unwound, which must not switch. The waker is between
    /// steps 2 and 3, so this spins for nanoseconds.
    pub(crate) fn outcome_without_parking(&self) -> u8 {
        let backoff = Backoff::new();
        loop {
            let s = self.state.load(Acquire);
            debug_assert_ne!(s, WAITING, "entry still queued");
            if s >= FIRST_OUTCOME {
                return s;
            }
            backoff.snooze();
        }
    }
}
