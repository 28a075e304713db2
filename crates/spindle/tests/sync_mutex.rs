//! `spindle::sync::Mutex` under every model, and shared by green and kernel threads.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, TryLockError};

use common::join_kernel;
use spindle::sync::Mutex;
use spindle::Model;

/// Waits (yielding) until `flag` is set: synchronizes on an event, not on time.
fn wait_for(flag: &AtomicBool) {
    while !flag.load(SeqCst) {
        spindle::yield_now();
    }
}

/// Adds 1 to the counter `times` times as a separate read and write, yielding inside the
/// critical section now and then so that other threads really contend (and park).
fn add_slowly(counter: &Mutex<u64>, times: u64) {
    for i in 0..times {
        let mut g = counter.lock().unwrap();
        let v = *g;
        if i % 64 == 0 {
            spindle::yield_now();
        }
        *g = v + 1;
    }
}

cross_model! {
    fn counter_is_exact_with_100_threads(_model) {
        let counter = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..100)
            .map(|_| {
                let counter = counter.clone();
                spindle::spawn(move || add_slowly(&counter, 1000))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*counter.lock().unwrap(), 100_000);
    }

    fn green_and_kernel_threads_share_a_mutex(_model) {
        let counter = Arc::new(Mutex::new(0u64));
        let kernel: Vec<_> = (0..2)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || add_slowly(&counter, 20_000))
            })
            .collect();
        let spawned: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                spindle::spawn(move || add_slowly(&counter, 20_000))
            })
            .collect();
        add_slowly(&counter, 20_000);
        for h in spawned {
            h.join().unwrap();
        }
        kernel.into_iter().for_each(join_kernel);
        assert_eq!(*counter.lock().unwrap(), 7 * 20_000);
    }

    fn try_lock_fails_while_held_elsewhere(_model) {
        let m = Arc::new(Mutex::new(1));
        let (held, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let h = {
            let (m, held, release) = (m.clone(), held.clone(), release.clone());
            spindle::spawn(move || {
                let g = m.lock().unwrap();
                held.store(true, SeqCst);
                wait_for(&release);
                drop(g);
            })
        };
        wait_for(&held);
        assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
        release.store(true, SeqCst);
        h.join().unwrap();
        assert_eq!(*m.try_lock().unwrap(), 1);
    }

    fn a_panic_while_holding_poisons(_model) {
        let m = Arc::new(Mutex::new(5));
        let m2 = m.clone();
        let r = spindle::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(r.is_err());
        assert!(m.is_poisoned());
        let g = m.lock().expect_err("poisoned").into_inner();
        assert_eq!(*g, 5);
        drop(g);
        match m.try_lock() {
            Err(TryLockError::Poisoned(e)) => assert_eq!(*e.into_inner(), 5),
            other => panic!("expected Poisoned, got {other:?}"),
        }
        m.clear_poison();
        assert!(!m.is_poisoned());
        assert_eq!(*m.lock().unwrap(), 5);
    }

    fn a_panic_without_the_lock_does_not_poison(_model) {
        let m = Arc::new(Mutex::new(0));
        let m2 = m.clone();
        let r = spindle::spawn(move || {
            drop(m2.lock().unwrap());
            panic!("not holding it");
        })
        .join();
        assert!(r.is_err());
        assert!(!m.is_poisoned());
    }

    fn into_inner_and_get_mut(_model) {
        let mut m = Mutex::new(vec![1, 2]);
        m.get_mut().unwrap().push(3);
        assert_eq!(format!("{m:?}"), "Mutex { data: [1, 2, 3], poisoned: false, .. }");
        assert_eq!(m.into_inner().unwrap(), [1, 2, 3]);

        let m = Arc::new(Mutex::new(String::from("x")));
        let m2 = m.clone();
        let _ = spindle::spawn(move || {
            let _g = m2.lock();
            panic!("poison");
        })
        .join();
        let mut m = Arc::try_unwrap(m).unwrap();
        assert!(m.get_mut().is_err());
        assert_eq!(m.into_inner().expect_err("poisoned").into_inner(), "x");
    }

    fn a_starved_waiter_gets_the_lock_handed_over(model) {
        // The main thread keeps re-taking the lock right after releasing it (barging). The
        // waiter must still get it: after losing a bounded number of races it is handed
        // the lock. In many-to-one the schedule is deterministic, so the bound is exact.
        let m = Arc::new(Mutex::new(()));
        let got_it = Arc::new(AtomicBool::new(false));
        let mut guard = m.lock().unwrap();
        let h = {
            let (m, got_it) = (m.clone(), got_it.clone());
            spindle::spawn(move || {
                let _g = m.lock().unwrap();
                got_it.store(true, SeqCst);
            })
        };
        // Let the waiter queue up (in many-to-one it runs now and parks on the lock).
        spindle::yield_now();
        let mut rounds = 0;
        while !got_it.load(SeqCst) {
            drop(guard);
            guard = m.lock().unwrap();
            rounds += 1;
            spindle::yield_now();
        }
        drop(guard);
        h.join().unwrap();
        if model == Model::ManyToOne {
            // Woken and beaten twice, then handed the lock on the third release.
            assert_eq!(rounds, 3);
        }
    }
}

#[test]
fn waiters_are_woken_in_fifo_order_in_many_to_one() {
    common::run(Model::ManyToOne, || {
        let m = Arc::new(Mutex::new(Vec::new()));
        let guard = m.lock().unwrap();
        let hs: Vec<_> = (0..5)
            .map(|i| {
                let m = m.clone();
                let h = spindle::spawn(move || m.lock().unwrap().push(i));
                // The new thread runs and parks on the lock before we go on.
                spindle::yield_now();
                h
            })
            .collect();
        drop(guard);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), [0, 1, 2, 3, 4]);
    });
}

#[test]
fn a_kernel_thread_outside_any_runtime_can_use_it() {
    let m = Mutex::new(1);
    *m.lock().unwrap() += 1;
    assert_eq!(m.into_inner().unwrap(), 2);
}

#[test]
fn a_green_waiter_cancelled_by_runtime_drop_leaves_the_queue() {
    let m = Arc::new(Mutex::new(0));
    let guard = m.lock().unwrap();
    let rt = spindle::Runtime::builder().build().unwrap();
    let m2 = m.clone();
    rt.block_on(move || {
        spindle::spawn(move || *m2.lock().unwrap() += 100);
        // It runs and parks on the lock this kernel thread holds.
        spindle::yield_now();
    });
    drop(rt); // unwinds the parked green thread: its queue entry must go with it
    drop(guard);
    *m.lock().unwrap() += 1;
    assert_eq!(*m.lock().unwrap(), 1);
    // The queue is sound: a new contended round trip works.
    let g = m.lock().unwrap();
    let m3 = m.clone();
    let k = std::thread::spawn(move || *m3.lock().unwrap() += 1);
    drop(g);
    k.join().unwrap();
    assert_eq!(*m.lock().unwrap(), 2);
}
