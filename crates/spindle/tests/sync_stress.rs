//! Stress: 1,000 green threads x 1,000 critical sections on one `Mutex`, many-to-one, and
//! 1,000 x 10,000 in many-to-many, where the threads also run in parallel.
//!
//! Full size in release builds (CI runs `cargo test --release`); scaled down by 10 in each
//! dimension in debug builds so that `cargo test` stays quick.

mod common;

use std::sync::Arc;

use spindle::sync::{Condvar, Mutex};
use spindle::Model;

const THREADS: u64 = if cfg!(debug_assertions) { 100 } else { 1_000 };
const OPS: u64 = if cfg!(debug_assertions) { 100 } else { 1_000 };

#[test]
fn a_thousand_green_threads_on_one_mutex() {
    common::run(Model::ManyToOne, || {
        let m = Arc::new(Mutex::new((0u64, 0u64)));
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = m.clone();
                spindle::spawn(move || {
                    for i in 0..OPS {
                        let mut g = m.lock().unwrap();
                        let (count, sum) = *g;
                        if i % 16 == t % 16 {
                            // Switch while holding it, so that others queue and park.
                            spindle::yield_now();
                        }
                        *g = (count + 1, sum + t * OPS + i);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let n = THREADS * OPS;
        assert_eq!(*m.lock().unwrap(), (n, n * (n - 1) / 2));
    });
}

/// 1,000 green threads x 10,000 critical sections on two workers: count and sum exact.
#[test]
fn a_thousand_green_threads_times_ten_thousand_on_one_mutex_in_many_to_many() {
    const OPS_MN: u64 = OPS * 10;
    common::run(Model::ManyToMany { workers: 2 }, || {
        let m = Arc::new(Mutex::new((0u64, 0u64)));
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = m.clone();
                spindle::spawn(move || {
                    for i in 0..OPS_MN {
                        let mut g = m.lock().unwrap();
                        // Read, then write: an increment lost to a second holder shows.
                        let (count, sum) = *g;
                        *g = (count + 1, sum + t * OPS_MN + i);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let n = THREADS * OPS_MN;
        assert_eq!(*m.lock().unwrap(), (n, n * (n - 1) / 2));
    });
}

#[test]
fn a_thousand_green_threads_through_one_condvar() {
    // A ticket relay: thread t may take ticket k only when k % THREADS == t, so every step
    // needs a notify to reach the right thread among a thousand waiters.
    let ops = OPS / 10;
    common::run(Model::ManyToOne, move || {
        let state = Arc::new((Mutex::new(0u64), Condvar::new()));
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let state = state.clone();
                spindle::spawn(move || {
                    let (m, cv) = &*state;
                    for _ in 0..ops {
                        let mut g = cv
                            .wait_while(m.lock().unwrap(), |k| *k % THREADS != t)
                            .unwrap();
                        *g += 1;
                        cv.notify_all();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*state.0.lock().unwrap(), THREADS * ops);
    });
}
