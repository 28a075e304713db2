//! A green thread's park word: the state machine of `sched/README.md` ("The park word").
//!
//! `EMPTY` (no token, running or runnable), `NOTIFIED` (a token is waiting), `PARKED`
//! (switched out and waiting; the word owns the thread's queue reference). The transitions:
//!
//! | who               | from       | to         | ordering | method               |
//! |-------------------|------------|------------|----------|----------------------|
//! | parker, fast path | `NOTIFIED` | `EMPTY`    | acquire  | `try_consume_token`  |
//! | worker, commit    | `EMPTY`    | `PARKED`   | release  | `commit_park`        |
//! | worker, commit    | `NOTIFIED` | `EMPTY`    | acquire  | `commit_park` (fails)|
//! | waker             | `EMPTY`    | `NOTIFIED` | release  | `wake(true)`         |
//! | waker             | `NOTIFIED` | `NOTIFIED` | release  | `wake(true)`         |
//! | waker, timer      | `PARKED`   | `EMPTY`    | acq-rel  | `wake(_)` -> true    |
//!
//! Every move out of `NOTIFIED` and every waker's move is a read-modify-write: a waker that
//! finds a token already there still writes the word, and the side that consumes a token
//! reads it with an RMW, so the consumer synchronizes with the *last* waker and sees what it
//! wrote before waking. (A plain load on the waker's side, or a plain store on the
//! consumer's, loses wakeups; the loom models below find both.)

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use crate::loom_shim::AtomicU32;

/// No token, not parked.
pub(crate) const EMPTY: u32 = 0;
/// A token is available.
pub(crate) const NOTIFIED: u32 = 1;
/// Parked: switched out, waiting for a waker.
pub(crate) const PARKED: u32 = 2;

/// The park word of one green thread.
pub(crate) struct ParkWord(AtomicU32);

impl ParkWord {
    pub(crate) fn new() -> ParkWord {
        ParkWord(AtomicU32::new(EMPTY))
    }

    /// Parker's fast path: consumes a waiting token. Returns true if there was one.
    #[inline]
    pub(crate) fn try_consume_token(&self) -> bool {
        self.0.load(Relaxed) == NOTIFIED
            && self
                .0
                .compare_exchange(NOTIFIED, EMPTY, Acquire, Relaxed)
                .is_ok()
    }

    /// The worker commits a park after the thread switched away. Returns true if the thread
    /// is now parked (the caller leaks its queue reference into the word), false if a token
    /// came first: it is consumed and the thread must run again.
    #[inline]
    pub(crate) fn commit_park(&self) -> bool {
        match self.0.compare_exchange(EMPTY, PARKED, Release, Acquire) {
            Ok(_) => true,
            Err(NOTIFIED) => {
                // Consume with an RMW (not a store): a waker may have rewritten NOTIFIED
                // since the CAS above read it, and we must synchronize with that one too.
                let prev = self.0.swap(EMPTY, Acquire);
                debug_assert_eq!(prev, NOTIFIED, "wakers never move the word out of NOTIFIED");
                false
            }
            Err(other) => unreachable!("park word {other} while committing a park"),
        }
    }

    /// A waker's move. Returns true if the thread was parked and the caller now owns waking
    /// it (`PARKED -> EMPTY`: it holds the leaked queue reference). Otherwise, if
    /// `leave_token`, makes sure a token is there; a timer passes false, since a timeout
    /// must not leave a token behind.
    #[inline]
    pub(crate) fn wake(&self, leave_token: bool) -> bool {
        let mut s = self.0.load(Relaxed);
        loop {
            let (to, wakes) = match s {
                PARKED => (EMPTY, true),
                EMPTY | NOTIFIED if leave_token => (NOTIFIED, false),
                _ => return false,
            };
            // Release publishes the waker's writes; Acquire (on PARKED) pairs with the
            // worker's release when it committed the park.
            match self.0.compare_exchange_weak(s, to, AcqRel, Relaxed) {
                Ok(_) => return wakes,
                Err(actual) => s = actual,
            }
        }
    }

    /// Whether the thread is parked right now (a hint unless the caller excludes wakers).
    #[inline]
    pub(crate) fn is_parked(&self) -> bool {
        self.0.load(Acquire) == PARKED
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Run with `RUSTFLAGS="--cfg loom" cargo test --release -p spindle --lib park_word`.
    //!
    //! The worker's "run the thread again" is modelled with loom's own park/unpark, which
    //! has no spurious wakeups: a committed park that no waker ever takes over leaves the
    //! parker blocked forever, which loom reports as a deadlock.
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed as Rlx;

    /// The parker's side of one `park()`: the fast path, else "switch away" and let the
    /// worker commit; a committed park waits until a waker schedules it. Returns whether
    /// the park was committed.
    fn park_once(word: &ParkWord) -> bool {
        if word.try_consume_token() {
            return false;
        }
        let committed = word.commit_park();
        if committed {
            loom::thread::park();
        }
        committed
    }

    /// A waker publishes `data` (relaxed: the park word alone must carry it) and unparks;
    /// the parker, which left itself a stale token first, parks until it sees the data.
    #[test]
    fn no_wakeup_is_lost_with_a_stale_token() {
        loom::model(|| {
            let word = Arc::new(ParkWord::new());
            let data = Arc::new(AtomicUsize::new(0));
            let parker = loom::thread::current();
            // A stale token from an earlier unpark.
            assert!(!word.wake(true));
            let waker = {
                let (word, data) = (word.clone(), data.clone());
                loom::thread::spawn(move || {
                    data.store(1, Rlx);
                    if word.wake(true) {
                        parker.unpark();
                    }
                })
            };
            while data.load(Rlx) != 1 {
                park_once(&word);
            }
            waker.join().unwrap();
        });
    }

    /// Two wakers, each publishing its own increment: the parker sees both, and no more
    /// parks are taken over by wakers than were committed (a thread is never scheduled
    /// twice for one park).
    #[test]
    fn two_wakers_each_wake_once() {
        loom::model(|| {
            let word = Arc::new(ParkWord::new());
            let data = Arc::new(AtomicUsize::new(0));
            let takeovers = Arc::new(AtomicUsize::new(0));
            let parker = loom::thread::current();
            let wakers: Vec<_> = (0..2)
                .map(|_| {
                    let (word, data, takeovers) = (word.clone(), data.clone(), takeovers.clone());
                    let parker = parker.clone();
                    loom::thread::spawn(move || {
                        data.fetch_add(1, Rlx);
                        if word.wake(true) {
                            takeovers.fetch_add(1, Rlx);
                            parker.unpark();
                        }
                    })
                })
                .collect();
            let mut committed = 0;
            while data.load(Rlx) != 2 {
                committed += usize::from(park_once(&word));
            }
            for w in wakers {
                w.join().unwrap();
            }
            assert_eq!(takeovers.load(Rlx), committed);
        });
    }
}
