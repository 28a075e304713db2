//! `spindle::sync::WaitGroup` under every model, shared by green and kernel threads;
//! several waiters, cancellation, and a stress test.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use common::{join_kernel, wait_until};
use spindle::sync::WaitGroup;
use spindle::Model;

cross_model! {
    fn wait_returns_once_every_clone_is_dropped(_model) {
        let wg = WaitGroup::new();
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..20 {
            let (wg, done) = (wg.clone(), done.clone());
            spindle::spawn(move || {
                spindle::yield_now();
                done.fetch_add(1, SeqCst);
                drop(wg);
            });
        }
        wg.wait();
        assert_eq!(done.load(SeqCst), 20);
    }

    fn wait_on_the_only_handle_returns_at_once(_model) {
        WaitGroup::new().wait();
        let wg = WaitGroup::default();
        let other = wg.clone();
        assert_eq!(format!("{wg:?}"), "WaitGroup { count: 2 }");
        drop(other);
        wg.wait();
    }

    fn every_waiter_is_released_and_only_at_the_end(_model) {
        // Four threads wait on clones; one member holds its clone until told. No waiter
        // may return before that member is done, and all must return after.
        let wg = WaitGroup::new();
        let member_done = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let member = {
            let (wg, member_done, go) = (wg.clone(), member_done.clone(), go.clone());
            spindle::spawn(move || {
                wait_until(|| go.load(SeqCst));
                member_done.store(true, SeqCst);
                drop(wg);
            })
        };
        let started = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (wg, member_done, started) = (wg.clone(), member_done.clone(), started.clone());
                spindle::spawn(move || {
                    started.fetch_add(1, SeqCst);
                    wg.wait();
                    assert!(member_done.load(SeqCst), "a waiter returned early");
                })
            })
            .collect();
        wait_until(|| started.load(SeqCst) == 4);
        go.store(true, SeqCst);
        wg.wait();
        assert!(member_done.load(SeqCst));
        member.join().unwrap();
        for w in waiters {
            w.join().unwrap();
        }
    }

    fn green_and_kernel_threads_in_one_group(_model) {
        let wg = WaitGroup::new();
        let done = Arc::new(AtomicUsize::new(0));
        let member = |wg: WaitGroup, done: Arc<AtomicUsize>| {
            move || {
                done.fetch_add(1, SeqCst);
                drop(wg);
            }
        };
        let kernel_members: Vec<_> = (0..3)
            .map(|_| std::thread::spawn(member(wg.clone(), done.clone())))
            .collect();
        let green_members: Vec<_> = (0..3)
            .map(|_| spindle::spawn(member(wg.clone(), done.clone())))
            .collect();
        // Waiters of both kinds, besides this thread.
        let kernel_waiter = {
            let (wg, done) = (wg.clone(), done.clone());
            std::thread::spawn(move || {
                wg.wait();
                done.load(SeqCst)
            })
        };
        let green_waiter = {
            let (wg, done) = (wg.clone(), done.clone());
            spindle::spawn(move || {
                wg.wait();
                done.load(SeqCst)
            })
        };
        wg.wait();
        assert_eq!(done.load(SeqCst), 6);
        assert_eq!(green_waiter.join().unwrap(), 6);
        assert_eq!(join_kernel(kernel_waiter), 6);
        for h in green_members {
            h.join().unwrap();
        }
        kernel_members.into_iter().for_each(join_kernel);
    }
}

#[test]
fn a_kernel_thread_outside_any_runtime_can_use_it() {
    let wg = WaitGroup::new();
    let w2 = wg.clone();
    let k = std::thread::spawn(move || drop(w2));
    wg.wait();
    k.join().unwrap();
}

#[test]
fn a_cancelled_waiter_leaves_the_list() {
    let wg = WaitGroup::new();
    let held = wg.clone();
    let rt = spindle::Runtime::builder().build().unwrap();
    let w2 = wg.clone();
    rt.block_on(move || {
        spindle::spawn(move || w2.wait());
        spindle::yield_now(); // it parks: `held` is alive
    });
    drop(rt); // unwinds it: its entry (on its stack) must leave the list
    let w3 = wg.clone();
    let k = std::thread::spawn(move || w3.wait());
    drop(held); // wakes whoever is listed: only the kernel thread, if it got there
    wg.wait();
    k.join().unwrap();
}

const THREADS: usize = if cfg!(debug_assertions) { 50 } else { 200 };
const ROUNDS: usize = if cfg!(debug_assertions) { 20 } else { 200 };

/// Round after round, a group of green and kernel threads, with several waiters each.
fn stress(model: Model, threads: usize) {
    common::run(model, move || {
        for round in 0..ROUNDS {
            let wg = WaitGroup::new();
            let done = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let (wg, done) = (wg.clone(), done.clone());
                    spindle::spawn(move || {
                        if t % 4 == 0 {
                            // A waiter: counts itself out, then waits for the rest.
                            done.fetch_add(1, SeqCst);
                            wg.wait();
                            assert_eq!(done.load(SeqCst), threads + 1, "round {round}");
                        } else {
                            if t % 3 == 0 {
                                spindle::yield_now();
                            }
                            done.fetch_add(1, SeqCst);
                            drop(wg);
                        }
                    })
                })
                .collect();
            let k = {
                let (wg, done) = (wg.clone(), done.clone());
                std::thread::spawn(move || {
                    done.fetch_add(1, SeqCst);
                    wg.wait();
                })
            };
            wg.wait();
            assert_eq!(done.load(SeqCst), threads + 1);
            for h in hs {
                h.join().unwrap();
            }
            join_kernel(k);
        }
    });
}

#[test]
fn stress_many_to_one() {
    stress(Model::ManyToOne, THREADS);
}

#[test]
fn stress_one_to_one() {
    stress(Model::OneToOne, 8);
}

#[test]
fn stress_many_to_many() {
    stress(Model::ManyToMany { workers: 4 }, THREADS);
}
