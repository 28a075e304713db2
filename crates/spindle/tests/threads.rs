//! Behaviour of threads under every model: spawn, join, panics, scope, park, sleep, names.

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spindle::Model;

/// How many threads a test may spawn in this model (kernel threads are costlier).
fn many(model: Model, green: usize, kernel: usize) -> usize {
    match model {
        Model::OneToOne => kernel,
        _ => green,
    }
}

cross_model! {
    fn join_returns_the_value(_model) {
        let h = spindle::spawn(|| 6 * 7);
        assert_eq!(h.join().unwrap(), 42);
    }

    fn join_returns_a_panic_as_err(_model) {
        let seven = std::hint::black_box(7);
        let h = spindle::spawn(move || -> u32 { panic!("boom {seven}") });
        let payload = h.join().expect_err("the thread panicked");
        assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("boom 7"));
    }

    fn is_finished_turns_true(_model) {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let h = spindle::spawn(move || {
            drop(tx);
        });
        // The sender is dropped when the thread ends; wait for that event, not for time.
        while rx.try_recv() != Err(std::sync::mpsc::TryRecvError::Disconnected) {
            spindle::yield_now();
        }
        while !h.is_finished() {
            spindle::yield_now();
        }
        h.join().unwrap();
    }

    fn nested_spawns_add_up(model) {
        fn tree(depth: u32) -> u64 {
            if depth == 0 {
                return 1;
            }
            let hs: Vec<_> = (0..3).map(|_| spindle::spawn(move || tree(depth - 1))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        }
        let depth = if model == Model::OneToOne { 3 } else { 6 };
        assert_eq!(tree(depth), 3u64.pow(depth));
    }

    fn scope_threads_borrow_the_stack(_model) {
        let numbers: Vec<u64> = (1..=100).collect();
        let mut total = 0;
        let mut doubled = Vec::new();
        spindle::scope(|s| {
            s.spawn(|| total = numbers.iter().sum());
            s.spawn(|| doubled = numbers.iter().map(|n| n * 2).collect());
            let h = s.spawn(|| numbers.len());
            assert_eq!(h.join().unwrap(), 100);
        });
        assert_eq!(total, 5050);
        assert_eq!(doubled.iter().sum::<u64>(), 10100);
    }

    fn scope_panics_when_an_unjoined_thread_panicked(_model) {
        let outcome = std::panic::catch_unwind(|| {
            spindle::scope(|s| {
                s.spawn(|| panic!("scoped boom"));
            })
        });
        assert!(outcome.is_err(), "scope must panic when a thread nobody joined panicked");
    }

    fn scope_does_not_panic_when_the_panic_was_joined(_model) {
        spindle::scope(|s| {
            let h = s.spawn(|| panic!("joined boom"));
            assert!(h.join().is_err());
        });
    }

    fn unpark_before_park_is_remembered(_model) {
        spindle::current().unpark();
        // Must return at once: the token is there.
        spindle::park();
    }

    fn tokens_do_not_accumulate(_model) {
        let me = spindle::current();
        me.unpark();
        me.unpark();
        spindle::park();
        let start = Instant::now();
        let timeout = Duration::from_millis(20);
        // Only one token was made, so this waits out its timeout (or returns spuriously,
        // which std allows; loop until the deadline to check that no token is left).
        while start.elapsed() < timeout {
            spindle::park_timeout(timeout.saturating_sub(start.elapsed()));
        }
        assert!(start.elapsed() >= timeout);
    }

    fn unpark_wakes_a_parked_thread(_model) {
        let go = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let child = {
            let go = go.clone();
            spindle::spawn(move || {
                while !go.load(SeqCst) {
                    spindle::park();
                }
                "woken"
            })
        };
        go.store(true, SeqCst);
        child.thread().unpark();
        assert_eq!(child.join().unwrap(), "woken");
    }

    fn a_kernel_thread_unparks_this_thread(_model) {
        let me = spindle::current();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        let k = std::thread::spawn(move || {
            d.store(true, SeqCst);
            me.unpark();
        });
        while !done.load(SeqCst) {
            spindle::park();
        }
        k.join().unwrap();
    }

    fn this_thread_unparks_a_kernel_thread(_model) {
        let (tx, rx) = std::sync::mpsc::channel();
        let go = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let g = go.clone();
        let k = std::thread::spawn(move || {
            tx.send(spindle::current()).unwrap();
            while !g.load(SeqCst) {
                spindle::park();
            }
        });
        let kernel = loop {
            match rx.try_recv() {
                Ok(t) => break t,
                Err(_) => spindle::yield_now(),
            }
        };
        assert!(!kernel.is_green());
        go.store(true, SeqCst);
        kernel.unpark();
        k.join().unwrap();
    }

    fn park_timeout_returns(_model) {
        let start = Instant::now();
        spindle::park_timeout(Duration::from_millis(5));
        // May return spuriously, but never hangs; the call returned, which is the check.
        let _ = start.elapsed();
    }

    fn sleep_lasts_at_least_its_duration(_model) {
        let start = Instant::now();
        spindle::sleep(Duration::from_millis(15));
        assert!(start.elapsed() >= Duration::from_millis(15));
    }

    fn sleepers_wake_in_deadline_order(_model) {
        let order = Arc::new(Mutex::new(Vec::new()));
        let hs: Vec<_> = [300u64, 0, 150]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                spindle::spawn(move || {
                    spindle::sleep(Duration::from_millis(ms));
                    order.lock().unwrap().push(ms);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 150, 300]);
    }

    fn sleep_does_not_consume_the_park_token(_model) {
        spindle::current().unpark();
        spindle::sleep(Duration::from_millis(1));
        // The token made before the sleep is still there.
        spindle::park();
    }

    fn names_and_ids(_model) {
        let h = spindle::thread::Builder::new()
            .name("worker-7".into())
            .spawn(|| (spindle::current().name().map(String::from), spindle::current().id()))
            .unwrap();
        let expected = h.thread().id();
        let (name, id) = h.join().unwrap();
        assert_eq!(name.as_deref(), Some("worker-7"));
        assert_eq!(id, expected);
        assert_ne!(id, spindle::current().id());
    }

    fn many_threads_spawned_and_joined(model) {
        let n = many(model, 100_000, 2_000);
        let count = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let count = count.clone();
                spindle::spawn(move || {
                    count.fetch_add(1, Relaxed);
                    i
                })
            })
            .collect();
        let sum: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, n * (n - 1) / 2);
        assert_eq!(count.load(Relaxed), n);
    }

    fn spawned_threads_are_of_the_model(model) {
        let green = spindle::spawn(|| spindle::current().is_green()).join().unwrap();
        assert_eq!(green, model != Model::OneToOne);
        assert_eq!(common::on_green_thread(), model != Model::OneToOne);
    }

    fn stack_size_is_honoured(_model) {
        // A thread with a bigger stack can use it.
        let h = spindle::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(|| {
                let big = [7u8; 512 * 1024];
                std::hint::black_box(&big).iter().map(|&b| b as u64).sum::<u64>()
            })
            .unwrap();
        assert_eq!(h.join().unwrap(), 7 * 512 * 1024);
    }
}

#[test]
fn yields_interleave_in_many_to_one() {
    common::run(Model::ManyToOne, || {
        let log = Arc::new(Mutex::new(Vec::new()));
        let hs: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|who| {
                let log = log.clone();
                spindle::spawn(move || {
                    for _ in 0..3 {
                        log.lock().unwrap().push(who);
                        spindle::yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // Which starts first is the scheduler's choice (newest first, sched/README.md);
        // from then on each yield hands over to the other.
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 6, "{log:?}");
        assert!(log.windows(2).all(|w| w[0] != w[1]), "{log:?}");
    });
}

#[test]
fn spawn_outside_a_runtime_makes_a_kernel_thread() {
    let green = spindle::spawn(|| spindle::current().is_green())
        .join()
        .unwrap();
    assert!(!green);
}

#[test]
fn block_on_resumes_the_root_panic() {
    let rt = spindle::Runtime::builder().build().unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(|| panic!("root boom"));
    }));
    let payload = outcome.expect_err("block_on must resume the panic");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"root boom"));
    // The runtime is still usable afterwards.
    assert_eq!(rt.block_on(|| 5), 5);
}
