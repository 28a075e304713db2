//! [`Selection`]: the one word a blocked `select` shares among its entries on every channel.
//!
//! The protocol it implements is written down in the module doc of `channel/select.rs`;
//! this file is its state word and the wake-up hand-shake, which is `sync/waiter.rs`'s
//! with one change: a waker *claims* the selection with a CAS instead of a plain store,
//! because the entries of one selection sit in the lists of several channels, under
//! several locks, and only one of their wakers may win.
//!
//! ## The word
//!
//! | state              | meaning                                        | set by                   |
//! |--------------------|------------------------------------------------|--------------------------|
//! | `WAITING`          | undecided: any entry may be claimed            | the selecting thread, before it links its entries |
//! | `ABORTED`          | withdrawn (timeout, readiness seen while registering, unwinding): no entry may be claimed | the selecting thread (CAS from `WAITING`) |
//! | `CLAIMED(i)`       | operation `i`'s waker won and is serving it     | a waker (CAS from `WAITING`) |
//! | `DONE(i, outcome)` | operation `i` completed with `outcome`          | that waker (release store, its last access) |
//!
//! Every transition out of `WAITING` is a CAS from `WAITING`, so exactly one party decides
//! the selection; only the selecting thread moves it back to `WAITING`, and only after it
//! has unlinked every entry of the previous round.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_utils::Backoff;

use crate::park::{self, WaitReason};
use crate::sched::context;
use crate::task::thread::Thread;
use crate::task::ThreadInner;

const WAITING: usize = 0;
const ABORTED: usize = 1;
const CLAIMED: usize = 2;
const DONE: usize = 3;
const TAG: usize = 3;
/// `DONE` keeps the outcome (a `u8`) in bits 2..10 and the index above.
const OUTCOME_SHIFT: usize = 2;
const INDEX_SHIFT: usize = 10;

/// How to wake the selecting thread (as `sync/waiter.rs` does it, and for the same reason).
enum Selector {
    /// A green thread's record, borrowed without a count: it is alive while the thread is
    /// blocked in the select, and a waker's last access comes before the thread can leave.
    Green(NonNull<ThreadInner>),
    /// A kernel thread's handle.
    Kernel(Thread),
}

/// How a wait on a selection ended.
pub(crate) enum WaitEnd {
    /// Operation `index` was completed by a waker, with `outcome`.
    Done { index: usize, outcome: u8 },
    /// The deadline passed and the selecting thread withdrew first.
    TimedOut,
}

/// The shared state of one blocked `select`; lives in the selecting thread's frame.
pub(crate) struct Selection {
    state: AtomicUsize,
    thread: Selector,
}

impl Selection {
    /// A selection for the calling thread, `WAITING`.
    pub(crate) fn for_current_thread() -> Selection {
        let thread = match context::current_green() {
            Some(g) => Selector::Green(NonNull::from(g)),
            None => Selector::Kernel(context::current_thread()),
        };
        Selection {
            state: AtomicUsize::new(WAITING),
            thread,
        }
    }

    /// Back to `WAITING` for a new round. The caller (the selecting thread) has unlinked
    /// every entry of the previous round, so no waker can reach this word; the channel
    /// lock taken to link the next entry publishes the store to the wakers that find it.
    pub(crate) fn reset(&self) {
        self.state.store(WAITING, Relaxed);
    }

    /// Whether the selection is undecided: a hint for readiness tests under a channel lock.
    pub(crate) fn is_waiting(&self) -> bool {
        self.state.load(Relaxed) == WAITING
    }

    /// A waker claims operation `index`: `WAITING -> CLAIMED(index)`. Only one claim (or
    /// abort) can succeed. Relaxed suffices: the entries' contents were published to the
    /// waker by the channel lock, and what the waker writes is published to the selecting
    /// thread by the release store in [`Selection::finish`]; the CAS only has to be atomic.
    pub(crate) fn try_claim(&self, index: usize) -> bool {
        self.state
            .compare_exchange(WAITING, CLAIMED | (index << INDEX_SHIFT), Relaxed, Relaxed)
            .is_ok()
    }

    /// Finishes a claim: unparks the selecting thread, then stores `DONE(index, outcome)`.
    ///
    /// # Safety
    ///
    /// `this` is a live selection that the caller claimed with [`Selection::try_claim`] for
    /// `index` and has not finished. After this call the caller must not touch it, nor any
    /// entry of the selection: the selecting thread may have returned.
    pub(crate) unsafe fn finish(this: *const Selection, index: usize, outcome: u8) {
        // SAFETY: the selection is `CLAIMED`, so its thread is inside `wait`/`settle` (it
        // returns only on `DONE`) and the selection, and the thread record it names, are
        // alive until the store below. The green record's `Arc` is rebuilt without taking
        // a count and never dropped (`ManuallyDrop`), as in `sync/waiter.rs`.
        unsafe {
            match &(*this).thread {
                Selector::Green(record) => {
                    let record = ManuallyDrop::new(Arc::from_raw(record.as_ptr().cast_const()));
                    park::unpark(&record);
                }
                Selector::Kernel(thread) => thread.unpark(),
            }
            // Release: the waker's work on the entry (a message put in or taken out of its
            // slot) happens-before the selecting thread's acquire load of `DONE`. Last
            // access.
            (*this).state.store(
                DONE | ((outcome as usize) << OUTCOME_SHIFT) | (index << INDEX_SHIFT),
                Release,
            );
        }
    }

    /// Parks until a waker completes an operation, or until `deadline` (forever with
    /// `None`), when it withdraws unless a waker claimed the selection first.
    pub(crate) fn wait(&self, reason: WaitReason, deadline: Option<Instant>) -> WaitEnd {
        let backoff = Backoff::new();
        loop {
            // Acquire pairs with the release store in `finish`.
            let s = self.state.load(Acquire);
            match s & TAG {
                WAITING => match deadline {
                    None => park::park(reason),
                    Some(d) => {
                        if Instant::now() < d {
                            park::park_until(reason, d);
                        } else if self.try_abort() {
                            return WaitEnd::TimedOut;
                        }
                        // Otherwise a waker claimed it meanwhile: take its outcome.
                    }
                },
                // The waker is between its claim and its store, which contain no blocking,
                // only an unpark: spin, as `sync/waiter.rs` does for `NOTIFYING`.
                CLAIMED => backoff.snooze(),
                DONE => {
                    let (index, outcome) = decode(s);
                    return WaitEnd::Done { index, outcome };
                }
                _ => unreachable!("only the selecting thread aborts, and it is waiting"),
            }
        }
    }

    /// The selecting thread withdraws: `WAITING -> ABORTED`. Fails if a waker claimed the
    /// selection first (then an operation is being completed: see [`Selection::settle`]).
    pub(crate) fn try_abort(&self) -> bool {
        // Relaxed: if it succeeds no waker will touch the entries' slots; if it fails the
        // caller takes the outcome with an acquire load.
        self.state
            .compare_exchange(WAITING, ABORTED, Relaxed, Relaxed)
            .is_ok()
    }

    /// Makes sure no waker will act on the selection any more, without parking: withdraws
    /// it if still undecided, or waits (spinning for the nanoseconds between a claim and
    /// its finish) until the claiming waker is done. Returns the completed operation, if
    /// one was. Used after a deliberate abort and by the unwinding guard, which must not
    /// switch.
    pub(crate) fn settle(&self) -> Option<(usize, u8)> {
        let backoff = Backoff::new();
        loop {
            let s = self.state.load(Acquire);
            match s & TAG {
                WAITING => {
                    if self.try_abort() {
                        return None;
                    }
                }
                ABORTED => return None,
                CLAIMED => backoff.snooze(),
                _ => return Some(decode(s)),
            }
        }
    }
}

/// The operation index and outcome of a `DONE` word.
fn decode(s: usize) -> (usize, u8) {
    (s >> INDEX_SHIFT, ((s >> OUTCOME_SHIFT) & 0xff) as u8)
}
