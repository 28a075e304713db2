//! `spindle::sync::Condvar` under every model, and shared by green and kernel threads.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::join_kernel;
use spindle::sync::{Condvar, Mutex};

/// A counter and a condvar, the shape most tests need.
struct State {
    m: Mutex<Counts>,
    cv: Condvar,
}

#[derive(Default, Debug)]
struct Counts {
    /// Threads that are waiting (incremented under the lock right before waiting).
    waiting: usize,
    /// Tokens handed out by the notifier, each consumed by one waiter.
    tokens: usize,
    /// Set to release everyone.
    go: bool,
}

fn state() -> Arc<State> {
    Arc::new(State {
        m: Mutex::new(Counts::default()),
        cv: Condvar::new(),
    })
}

/// Waits until `n` threads have announced (under the lock) that they wait.
///
/// Since a waiter is queued on the condvar before it releases the mutex, once the notifier
/// holds the mutex and sees the count, all of them are queued.
fn until_waiting(s: &State, n: usize) -> spindle::sync::MutexGuard<'_, Counts> {
    loop {
        let g = s.m.lock().unwrap();
        if g.waiting >= n {
            return g;
        }
        drop(g);
        spindle::yield_now();
    }
}

fn spawn_token_waiter(s: &Arc<State>) -> spindle::JoinHandle<()> {
    let s = s.clone();
    spindle::spawn(move || {
        let mut g = s.m.lock().unwrap();
        g.waiting += 1;
        g = s.cv.wait_while(g, |c| c.tokens == 0).unwrap();
        g.tokens -= 1;
    })
}

cross_model! {
    fn notify_one_wakes_a_waiter(_model) {
        let s = state();
        let h = spawn_token_waiter(&s);
        let mut g = until_waiting(&s, 1);
        g.tokens = 1;
        s.cv.notify_one();
        drop(g);
        h.join().unwrap();
        assert_eq!(s.m.lock().unwrap().tokens, 0);
    }

    fn every_notify_one_is_delivered(model) {
        // Each notify_one comes with one token; each waiter needs one. A lost notify would
        // leave a waiter asleep with a token available, and the joins would hang.
        let s = state();
        let n = if model == spindle::Model::OneToOne { 20 } else { 200 };
        let hs: Vec<_> = (0..n).map(|_| spawn_token_waiter(&s)).collect();
        drop(until_waiting(&s, n));
        for _ in 0..n {
            s.m.lock().unwrap().tokens += 1;
            s.cv.notify_one();
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.m.lock().unwrap().tokens, 0);
    }

    fn notify_all_wakes_every_waiter(_model) {
        let s = state();
        let n = 50;
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let s = s.clone();
                spindle::spawn(move || {
                    let mut g = s.m.lock().unwrap();
                    g.waiting += 1;
                    let mut g = s.cv.wait_while(g, |c| !c.go).unwrap();
                    g.waiting -= 1;
                })
            })
            .collect();
        let mut g = until_waiting(&s, n);
        g.go = true;
        s.cv.notify_all();
        drop(g);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.m.lock().unwrap().waiting, 0);
    }

    fn notify_all_without_holding_the_mutex(_model) {
        // The requeue onto a free mutex must wake the first waiter itself.
        let s = state();
        let hs: Vec<_> = (0..10)
            .map(|_| {
                let s = s.clone();
                spindle::spawn(move || {
                    let mut g = s.m.lock().unwrap();
                    g.waiting += 1;
                    drop(s.cv.wait_while(g, |c| !c.go).unwrap());
                })
            })
            .collect();
        let mut g = until_waiting(&s, 10);
        g.go = true;
        drop(g);
        s.cv.notify_all();
        for h in hs {
            h.join().unwrap();
        }
    }

    fn green_and_kernel_waiters_on_one_condvar(_model) {
        let s = state();
        let waiter = |s: Arc<State>| {
            move || {
                let mut g = s.m.lock().unwrap();
                g.waiting += 1;
                g = s.cv.wait_while(g, |c| c.tokens == 0).unwrap();
                g.tokens -= 1;
            }
        };
        let kernel: Vec<_> = (0..3).map(|_| std::thread::spawn(waiter(s.clone()))).collect();
        let green: Vec<_> = (0..3).map(|_| spindle::spawn(waiter(s.clone()))).collect();
        let mut g = until_waiting(&s, 6);
        g.tokens = 6;
        s.cv.notify_all();
        drop(g);
        for h in green {
            h.join().unwrap();
        }
        kernel.into_iter().for_each(join_kernel);
        assert_eq!(s.m.lock().unwrap().tokens, 0);
    }

    fn wait_timeout_times_out(_model) {
        let s = state();
        let timeout = Duration::from_millis(20);
        let start = Instant::now();
        let (g, r) = s.cv.wait_timeout(s.m.lock().unwrap(), timeout).unwrap();
        assert!(r.timed_out());
        assert!(start.elapsed() >= timeout, "returned before the timeout");
        drop(g);
        // The timed-out entry left the queue: a notify now finds nobody, and a new waiter
        // is served normally.
        s.cv.notify_one();
        let h = spawn_token_waiter(&s);
        let mut g = until_waiting(&s, 1);
        g.tokens = 1;
        s.cv.notify_one();
        drop(g);
        h.join().unwrap();
    }

    fn wait_timeout_returns_early_when_notified(_model) {
        let s = state();
        let s2 = s.clone();
        let h = spindle::spawn(move || {
            let mut g = s2.m.lock().unwrap();
            g.waiting += 1;
            let (g, r) = s2.cv.wait_timeout(g, Duration::from_secs(60)).unwrap();
            assert!(!r.timed_out());
            assert!(g.go);
        });
        let mut g = until_waiting(&s, 1);
        g.go = true;
        s.cv.notify_one();
        drop(g);
        h.join().unwrap();
    }

    fn a_notify_racing_a_timeout_is_not_lost(model) {
        // W1 (short timeout) queues first, W2 (no timeout in practice) second; one notify.
        // Either W1 takes the notify (and says so) or W2 gets it: it must never happen that
        // W1 reports a timeout and W2 sleeps on. Timeouts sweep across the notify's moment.
        let rounds = if model == spindle::Model::OneToOne { 100 } else { 400 };
        for round in 0..rounds {
            let s = state();
            let short = Duration::from_micros((round % 40) as u64 * 5);
            let w1 = {
                let s = s.clone();
                spindle::spawn(move || {
                    let mut g = s.m.lock().unwrap();
                    g.waiting += 1;
                    let (_g, r) = s.cv.wait_timeout(g, short).unwrap();
                    !r.timed_out()
                })
            };
            drop(until_waiting(&s, 1));
            let w2 = {
                let s = s.clone();
                spindle::spawn(move || {
                    let mut g = s.m.lock().unwrap();
                    g.waiting += 1;
                    let (_g, r) = s.cv.wait_timeout(g, Duration::from_secs(60)).unwrap();
                    !r.timed_out()
                })
            };
            drop(until_waiting(&s, 2));
            s.cv.notify_one();
            let w1_notified = w1.join().unwrap();
            if w1_notified {
                // W1 consumed the notify; release W2 with another.
                s.cv.notify_one();
            }
            assert!(w2.join().unwrap(), "round {round}: W2 timed out, a notify was lost");
        }
    }

    fn wait_while_and_wait_timeout_while(_model) {
        let s = state();
        // Condition already false: no wait at all.
        let g = s.cv.wait_while(s.m.lock().unwrap(), |c| c.go).unwrap();
        drop(g);
        let (g, r) = s
            .cv
            .wait_timeout_while(s.m.lock().unwrap(), Duration::from_millis(5), |c| !c.go)
            .unwrap();
        assert!(r.timed_out() && !g.go);
        drop(g);
        let s2 = s.clone();
        let h = spindle::spawn(move || {
            let mut g = s2.m.lock().unwrap();
            g.waiting += 1;
            let (g, r) = s2
                .cv
                .wait_timeout_while(g, Duration::from_secs(60), |c| c.tokens < 3)
                .unwrap();
            assert!(!r.timed_out());
            g.tokens
        });
        drop(until_waiting(&s, 1));
        for _ in 0..3 {
            // Wake it for each token: it must go back to waiting until the third.
            s.m.lock().unwrap().tokens += 1;
            s.cv.notify_all();
        }
        assert_eq!(h.join().unwrap(), 3);
    }

    fn wait_reports_a_mutex_poisoned_meanwhile(_model) {
        let s = state();
        let s2 = s.clone();
        let h = spindle::spawn(move || {
            let mut g = s2.m.lock().unwrap();
            g.waiting += 1;
            let r = s2.cv.wait(g);
            let err = r.expect_err("poisoned while waiting");
            assert!(err.into_inner().go);
        });
        let s3 = s.clone();
        let poisoner = spindle::spawn(move || {
            let mut g = until_waiting(&s3, 1);
            g.go = true;
            s3.cv.notify_one();
            panic!("poison the mutex while the waiter waits for it");
        });
        assert!(poisoner.join().is_err());
        h.join().unwrap();
    }
}

#[test]
fn waiting_with_two_mutexes_panics() {
    common::run(spindle::Model::ManyToOne, || {
        let s = state();
        let h = spawn_token_waiter(&s);
        drop(until_waiting(&s, 1));
        let other = Mutex::new(());
        let cv = &s.cv;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = cv.wait(other.lock().unwrap());
        }));
        assert!(r.is_err());
        assert!(
            other.is_poisoned(),
            "the guard was dropped by the unwind, as std does"
        );
        s.m.lock().unwrap().tokens = 1;
        s.cv.notify_one();
        h.join().unwrap();
    });
}

#[test]
fn a_cancelled_condvar_waiter_leaves_the_queue() {
    let s = state();
    let rt = spindle::Runtime::builder().build().unwrap();
    let s2 = s.clone();
    rt.block_on(move || {
        let _parked = spawn_token_waiter(&s2);
        drop(until_waiting(&s2, 1));
    });
    drop(rt); // unwinds the parked waiter: its entry must leave the condvar's queue
    let s3 = s.clone();
    let k = std::thread::spawn(move || {
        let mut g = s3.m.lock().unwrap();
        g.waiting += 1;
        g = s3.cv.wait_while(g, |c| c.tokens == 0).unwrap();
        g.tokens -= 1;
    });
    let mut g = until_waiting(&s, 2);
    g.tokens = 1;
    s.cv.notify_one(); // must reach the kernel thread, not the cancelled entry
    drop(g);
    k.join().unwrap();
}
