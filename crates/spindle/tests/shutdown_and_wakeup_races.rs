//! Regression tests for races found in review: runtime drop with detached running threads,
//! runtime drop racing remote wakeups, and a wakeup racing a stale park token. A hang is
//! turned into a failure by a watchdog with a generous deadline (it measures nothing).

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use spindle::{Model, Runtime};

/// Runs `f` on a kernel thread and fails the test if it has not returned after `secs`.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s: a hang"))
}

static GREEN_DROPS: AtomicUsize = AtomicUsize::new(0);
static OTHER_DROPS: AtomicUsize = AtomicUsize::new(0);

struct WhereDropped;

impl Drop for WhereDropped {
    fn drop(&mut self) {
        if spindle::current().is_green() {
            GREEN_DROPS.fetch_add(1, SeqCst);
        } else {
            OTHER_DROPS.fetch_add(1, SeqCst);
        }
    }
}

#[test]
fn dropping_a_runtime_with_detached_running_threads_unwinds_them_as_green_threads() {
    let n = 500;
    let started = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    let s = started.clone();
    rt.block_on(move || {
        for _ in 0..n {
            let s = s.clone();
            // Detached: the queue reference is the only count of these threads.
            drop(spindle::spawn(move || {
                let _probe = WhereDropped;
                s.fetch_add(1, SeqCst);
                loop {
                    spindle::yield_now();
                }
            }));
        }
        while s.load(SeqCst) < n {
            spindle::yield_now();
        }
    });
    within(60, "runtime drop", move || drop(rt));
    assert_eq!(
        GREEN_DROPS.load(SeqCst),
        n,
        "each destructor ran once, on its green thread"
    );
    assert_eq!(OTHER_DROPS.load(SeqCst), 0);
}

#[test]
fn dropping_a_runtime_while_another_thread_unparks_its_threads_returns() {
    let iterations = if cfg!(debug_assertions) { 30 } else { 300 };
    within(120, "runtime drops racing unparks", move || {
        for _ in 0..iterations {
            let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    rt.spawn(|| loop {
                        spindle::park()
                    })
                })
                .collect();
            let threads: Vec<_> = handles.iter().map(|h| h.thread().clone()).collect();
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let waker = std::thread::spawn(move || {
                while !s.load(Relaxed) {
                    threads.iter().for_each(|t| t.unpark());
                }
            });
            drop(rt);
            stop.store(true, Relaxed);
            waker.join().unwrap();
            for h in handles {
                assert!(h.join().is_err(), "cancelled");
            }
        }
    });
}

#[test]
fn an_unpark_racing_a_stale_token_is_not_lost() {
    let rounds: u64 = if cfg!(debug_assertions) {
        2_000
    } else {
        100_000
    };
    within(120, "unpark litmus", move || {
        let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
        let flag = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(AtomicU64::new(0));
        let (f, r) = (flag.clone(), ready.clone());
        let green = rt.spawn(move || {
            for i in 1..=rounds {
                // Leave a stale token, then wait for the kernel thread's flag.
                spindle::current().unpark();
                r.store(i, SeqCst);
                while f.load(Acquire) < i {
                    spindle::park();
                }
            }
        });
        let g = green.thread().clone();
        for i in 1..=rounds {
            while ready.load(Acquire) < i {
                std::hint::spin_loop();
            }
            flag.store(i, Release);
            g.unpark();
        }
        green.join().unwrap();
    });
}
