//! The idle set of a many-to-many runtime: which workers sleep, and waking one when work
//! appears.
//!
//! The handshake, and why it loses no wakeup, is in `sched/README.md` ("The idle set and
//! the sleep handshake"); the steps S1-S5 and P1-P3 named below are the ones of its table.
//! The loom models at the end of this file check it: a worker that would sleep while work
//! is waiting for it shows up there as a deadlock.
//!
//! Nothing here knows what work or a worker is: the caller passes the S3 check and the way
//! to sleep, and gets back the index of the worker to unpark. That keeps the protocol in one
//! place for the runtime and the models alike.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use crate::loom_shim::{fence, AtomicUsize, Mutex};

/// The workers of a runtime that are asleep (or about to be), by index.
pub(crate) struct IdleSet {
    /// The length of `list`, written under its lock, read without it by publishers (P3).
    sleeping: AtomicUsize,
    list: Mutex<Vec<usize>>,
}

impl IdleSet {
    pub(crate) fn new() -> IdleSet {
        IdleSet {
            sleeping: AtomicUsize::new(0),
            list: Mutex::new(Vec::new()),
        }
    }

    /// The sleeper's side (S1-S5): announces worker `me` as sleeping, then sleeps with
    /// `sleep` unless `has_work` finds something; withdraws before returning. `has_work`
    /// must look at every place a publisher's P1 can put work for this worker.
    pub(crate) fn sleep_unless(
        &self,
        me: usize,
        has_work: impl FnOnce() -> bool,
        sleep: impl FnOnce(),
    ) {
        {
            // S1. Under the lock, so the count and the list agree for publishers.
            let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
            list.push(me);
            self.sleeping.store(list.len(), Relaxed);
        }
        // S2. Pairs with P2 (see the module docs).
        fence(SeqCst);
        // S3, S4.
        if !has_work() {
            sleep();
        }
        // S5. Still listed after a timeout, an inbox wakeup or a find in S3; a publisher
        // that popped us has already unparked us (a spurious wakeup at most, later).
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = list.iter().position(|&w| w == me) {
            list.swap_remove(pos);
            self.sleeping.store(list.len(), Relaxed);
        }
    }

    /// The publisher's side, after P1 (the push): returns a sleeping worker to unpark, if
    /// any, taking it off the list so that the next publisher wakes another one.
    #[inline]
    pub(crate) fn pop_sleeper(&self) -> Option<usize> {
        // P2. Pairs with S2.
        fence(SeqCst);
        // P3. The fast path when every worker is busy: one load of a shared, rarely
        // written line.
        if self.sleeping.load(Relaxed) == 0 {
            return None;
        }
        self.pop_slow()
    }

    #[cold]
    fn pop_slow(&self) -> Option<usize> {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        let w = list.pop();
        self.sleeping.store(list.len(), Relaxed);
        w
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Run with `RUSTFLAGS="--cfg loom" cargo test --release -p spindle --lib loom_models`.
    //!
    //! Workers are loom threads running the worker loop in miniature: take work if there
    //! is some, else sleep through `IdleSet::sleep_unless` on a park token. The token is a
    //! flag under a mutex with a condvar (std's park semantics: one token, an unpark
    //! before the park is kept), not loom's own `park`: loom cannot deliver an unpark to a
    //! thread that is blocked on a loom mutex or in a join, which the real `unpark`
    //! allows. Work is a counter standing in for the injector and the fresh queues. If a
    //! wakeup were lost, a worker would park for good with work waiting, and the last item
    //! would never be taken: loom reports that as a deadlock. The last taker sets the
    //! shutdown flag and unparks everyone, as the runtime's drop does.

    use super::IdleSet;
    use loom::sync::atomic::{AtomicBool, AtomicUsize};
    use loom::sync::{Arc, Condvar, Mutex};
    use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

    /// A worker's park token.
    #[derive(Default)]
    struct Token {
        set: Mutex<bool>,
        cv: Condvar,
    }

    impl Token {
        fn park(&self) {
            let mut set = self.set.lock().unwrap();
            while !*set {
                set = self.cv.wait(set).unwrap();
            }
            *set = false;
        }

        fn unpark(&self) {
            *self.set.lock().unwrap() = true;
            self.cv.notify_one();
        }
    }

    struct Pool {
        idle: IdleSet,
        work: AtomicUsize,
        done: AtomicUsize,
        shutdown: AtomicBool,
        tokens: Vec<Token>,
        total: usize,
    }

    impl Pool {
        fn new(workers: usize, total: usize) -> Pool {
            Pool {
                idle: IdleSet::new(),
                work: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                shutdown: AtomicBool::new(false),
                tokens: (0..workers).map(|_| Token::default()).collect(),
                total,
            }
        }

        fn unpark(&self, w: usize) {
            self.tokens[w].unpark();
        }

        /// P1-P3.
        fn publish(&self) {
            self.work.fetch_add(1, Release);
            if let Some(w) = self.idle.pop_sleeper() {
                self.unpark(w);
            }
        }

        fn try_take(&self) -> bool {
            let mut n = self.work.load(Relaxed);
            while n > 0 {
                match self.work.compare_exchange(n, n - 1, Acquire, Relaxed) {
                    Ok(_) => return true,
                    Err(now) => n = now,
                }
            }
            false
        }

        fn worker(&self, me: usize, publishes: usize) {
            for _ in 0..publishes {
                self.publish();
            }
            loop {
                if self.try_take() {
                    if self.done.fetch_add(1, AcqRel) + 1 == self.total {
                        self.shutdown.store(true, Release);
                        for w in 0..self.tokens.len() {
                            self.unpark(w);
                        }
                    }
                    continue;
                }
                if self.shutdown.load(Acquire) {
                    return;
                }
                self.idle.sleep_unless(
                    me,
                    || self.work.load(Relaxed) > 0 || self.shutdown.load(Relaxed),
                    || self.tokens[me].park(),
                );
            }
        }
    }

    /// Work published from outside the runtime (the injector) while both workers may be
    /// going to sleep.
    #[test]
    fn outside_publisher_wakes_a_sleeper() {
        loom::model(|| {
            let pool = Arc::new(Pool::new(2, 2));
            let hs: Vec<_> = (0..2)
                .map(|me| {
                    let pool = pool.clone();
                    loom::thread::spawn(move || pool.worker(me, 0))
                })
                .collect();
            pool.publish();
            pool.publish();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(pool.done.load(Relaxed), 2);
        });
    }

    /// Work published by a worker (a spawn into its fresh queue) while the other sleeps:
    /// both items get run, whichever worker takes them.
    #[test]
    fn worker_publisher_wakes_the_other() {
        loom::model(|| {
            let pool = Arc::new(Pool::new(2, 2));
            let p = pool.clone();
            let other = loom::thread::spawn(move || p.worker(1, 0));
            pool.worker(0, 2);
            other.join().unwrap();
            assert_eq!(pool.done.load(Relaxed), 2);
        });
    }
}
