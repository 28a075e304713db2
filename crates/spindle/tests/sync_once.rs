//! `spindle::sync::{Once, OnceLock}` under every model, shared by green and kernel
//! threads; poisoning (Once) and staying empty (OnceLock) after a panic, cancellation, and
//! a stress test.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use common::{join_kernel, wait_until};
use spindle::sync::{Once, OnceLock};
use spindle::Model;

cross_model! {
    fn call_once_runs_once_and_everyone_waits_for_it(_model) {
        // The initializer waits until every caller has arrived, so they all find it
        // running and must wait for it; each must see its effect when it returns.
        let n = 8;
        let once = Arc::new(Once::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let value = Arc::new(AtomicBool::new(false));
        let caller = {
            let (once, runs, arrived, value) = (once.clone(), runs.clone(), arrived.clone(), value.clone());
            move || {
                let (once, runs, arrived, value) = (once.clone(), runs.clone(), arrived.clone(), value.clone());
                move || {
                    arrived.fetch_add(1, SeqCst);
                    once.call_once(|| {
                        wait_until(|| arrived.load(SeqCst) == n);
                        spindle::yield_now();
                        runs.fetch_add(1, SeqCst);
                        value.store(true, SeqCst);
                    });
                    assert!(value.load(SeqCst), "returned before the initializer finished");
                }
            }
        };
        let hs: Vec<_> = (0..n - 1).map(|_| spindle::spawn(caller())).collect();
        caller()();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(runs.load(SeqCst), 1);
        assert!(once.is_completed());
        once.call_once(|| unreachable!());
        once.call_once_force(|_| unreachable!());
        once.wait();
        assert_eq!(format!("{once:?}"), "Once { state: \"complete\" }");
    }

    fn a_panicking_call_once_poisons(_model) {
        let once = Arc::new(Once::new());
        let o2 = once.clone();
        assert!(spindle::spawn(move || o2.call_once(|| panic!("poison it"))).join().is_err());
        assert!(!once.is_completed());
        assert_eq!(format!("{once:?}"), "Once { state: \"poisoned\" }");
        let r = catch_unwind(AssertUnwindSafe(|| once.call_once(|| unreachable!())));
        assert!(r.is_err(), "call_once on a poisoned Once must panic");
        assert!(catch_unwind(AssertUnwindSafe(|| once.wait())).is_err());
        let mut saw_poison = false;
        once.call_once_force(|state| saw_poison = state.is_poisoned());
        assert!(saw_poison);
        assert!(once.is_completed());
        once.call_once(|| unreachable!());
    }

    fn waiters_see_the_poison_of_the_initializer_they_waited_for(_model) {
        // A runs an initializer that panics once B and C have arrived. B (call_once) must
        // not run its closure; C (call_once_force) must run its own, told of the poison.
        let once = Arc::new(Once::new());
        let a_running = Arc::new(AtomicBool::new(false));
        let arrived = Arc::new(AtomicUsize::new(0));
        let a = {
            let (once, a_running, arrived) = (once.clone(), a_running.clone(), arrived.clone());
            spindle::spawn(move || {
                once.call_once(|| {
                    a_running.store(true, SeqCst);
                    wait_until(|| arrived.load(SeqCst) == 2);
                    spindle::yield_now();
                    panic!("poison it while B and C wait");
                })
            })
        };
        wait_until(|| a_running.load(SeqCst));
        let b = {
            let (once, arrived) = (once.clone(), arrived.clone());
            spindle::spawn(move || {
                arrived.fetch_add(1, SeqCst);
                let r = catch_unwind(AssertUnwindSafe(|| {
                    once.call_once(|| unreachable!("B must not run: the Once is poisoned"))
                }));
                // B panics on the poison, unless C has completed the Once by the time B
                // looks again after A's panic.
                match r {
                    Ok(()) => assert!(once.is_completed()),
                    Err(e) => assert_eq!(
                        e.downcast_ref::<&str>().copied(),
                        Some("Once instance has previously been poisoned")
                    ),
                }
            })
        };
        let c = {
            let (once, arrived) = (once.clone(), arrived.clone());
            spindle::spawn(move || {
                arrived.fetch_add(1, SeqCst);
                let mut poisoned = false;
                once.call_once_force(|s| poisoned = s.is_poisoned());
                poisoned
            })
        };
        assert!(a.join().is_err());
        b.join().unwrap();
        assert!(c.join().unwrap(), "C was not told of the poison");
        assert!(once.is_completed());
    }

    fn wait_parks_until_another_thread_completes(_model) {
        let once = Arc::new(Once::new());
        let done = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (once, done) = (once.clone(), done.clone());
            spindle::spawn(move || {
                once.wait();
                assert!(done.load(SeqCst));
            })
        };
        let forcer = {
            let (once, done) = (once.clone(), done.clone());
            spindle::spawn(move || {
                once.wait_force();
                assert!(done.load(SeqCst));
            })
        };
        spindle::yield_now();
        once.call_once(|| done.store(true, SeqCst));
        waiter.join().unwrap();
        forcer.join().unwrap();
    }

    fn once_lock_get_set_take(_model) {
        let mut cell = OnceLock::new();
        assert_eq!(cell.get(), None);
        assert_eq!(format!("{cell:?}"), "OnceLock(<uninit>)");
        assert_eq!(cell.set(1), Ok(()));
        assert_eq!(cell.set(2), Err(2));
        assert_eq!(cell.get(), Some(&1));
        assert_eq!(*cell.get_or_init(|| unreachable!()), 1);
        assert_eq!(*cell.wait(), 1);
        *cell.get_mut().unwrap() += 1;
        assert_eq!(format!("{cell:?}"), "OnceLock(2)");
        assert_eq!(cell.clone(), OnceLock::from(2));
        assert_eq!(cell.take(), Some(2));
        assert_eq!(cell.get(), None);
        assert_eq!(cell.take(), None);
        assert_eq!(*cell.get_or_init(|| 3), 3);
        assert_eq!(cell.into_inner(), Some(3));
        assert_eq!(OnceLock::<u8>::default().into_inner(), None);
        // The value is dropped with the cell, once.
        let tracked = Arc::new(());
        let cell = OnceLock::new();
        cell.set(tracked.clone()).unwrap();
        assert_eq!(Arc::strong_count(&tracked), 2);
        drop(cell);
        assert_eq!(Arc::strong_count(&tracked), 1);
    }

    fn once_lock_initializes_once_under_contention(_model) {
        let n = 8;
        let cell = Arc::new(OnceLock::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let (cell, runs, arrived) = (cell.clone(), runs.clone(), arrived.clone());
                spindle::spawn(move || {
                    arrived.fetch_add(1, SeqCst);
                    *cell.get_or_init(|| {
                        wait_until(|| arrived.load(SeqCst) == n);
                        runs.fetch_add(1, SeqCst);
                        i
                    })
                })
            })
            .collect();
        let values: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(runs.load(SeqCst), 1);
        assert!(values.iter().all(|&v| v == values[0]));
        assert_eq!(cell.get(), Some(&values[0]));
    }

    fn a_panicking_once_lock_initializer_leaves_it_empty(_model) {
        let cell = Arc::new(OnceLock::<u32>::new());
        let c2 = cell.clone();
        assert!(spindle::spawn(move || *c2.get_or_init(|| panic!("no value"))).join().is_err());
        assert_eq!(cell.get(), None);
        assert_eq!(*cell.get_or_init(|| 5), 5);
    }

    fn waiters_run_their_own_initializer_after_a_panic(_model) {
        let cell = Arc::new(OnceLock::<u32>::new());
        let a_running = Arc::new(AtomicBool::new(false));
        let b_arrived = Arc::new(AtomicBool::new(false));
        let a = {
            let (cell, a_running, b_arrived) = (cell.clone(), a_running.clone(), b_arrived.clone());
            spindle::spawn(move || {
                *cell.get_or_init(|| {
                    a_running.store(true, SeqCst);
                    wait_until(|| b_arrived.load(SeqCst));
                    spindle::yield_now();
                    panic!("no value from A");
                })
            })
        };
        wait_until(|| a_running.load(SeqCst));
        let b = {
            let (cell, b_arrived) = (cell.clone(), b_arrived.clone());
            spindle::spawn(move || {
                b_arrived.store(true, SeqCst);
                *cell.get_or_init(|| 7)
            })
        };
        assert!(a.join().is_err());
        assert_eq!(b.join().unwrap(), 7);
    }

    fn get_or_try_init_failure_leaves_it_empty(_model) {
        let cell = OnceLock::<u32>::new();
        assert_eq!(cell.get_or_try_init(|| Err("nope")), Err("nope"));
        assert_eq!(cell.get(), None);
        assert_eq!(cell.get_or_try_init(|| Ok::<_, ()>(9)), Ok(&9));
        assert_eq!(cell.get_or_try_init(|| Err(())), Ok(&9));
    }

    fn once_lock_wait_and_mixed_green_and_kernel_waiters(_model) {
        let cell = Arc::new(OnceLock::new());
        let waiter = |cell: Arc<OnceLock<String>>| move || cell.wait().clone();
        let kernel: Vec<_> = (0..2).map(|_| std::thread::spawn(waiter(cell.clone()))).collect();
        let green: Vec<_> = (0..2).map(|_| spindle::spawn(waiter(cell.clone()))).collect();
        let getters: Vec<_> = (0..2)
            .map(|i| {
                let cell = cell.clone();
                std::thread::spawn(move || cell.get_or_init(|| format!("kernel {i}")).clone())
            })
            .collect();
        let mine = cell.get_or_init(|| String::from("main")).clone();
        for h in green {
            assert_eq!(h.join().unwrap(), mine);
        }
        for k in kernel.into_iter().chain(getters) {
            assert_eq!(join_kernel(k), mine);
        }
    }
}

#[test]
fn a_kernel_thread_outside_any_runtime_can_use_them() {
    static ONCE: Once = Once::new();
    static CELL: OnceLock<u32> = OnceLock::new();
    let k = std::thread::spawn(|| *CELL.get_or_init(|| 1));
    ONCE.call_once(|| {
        CELL.get_or_init(|| 2);
    });
    let v = k.join().unwrap();
    assert_eq!(CELL.get(), Some(&v));
    assert!(ONCE.is_completed());
}

#[test]
fn cancelled_waiters_leave_the_queue() {
    // A kernel thread runs the initializers; green threads wait for them and are
    // cancelled. Completing afterwards must not touch their (gone) entries.
    let once = Arc::new(Once::new());
    let cell = Arc::new(OnceLock::new());
    let (running, finish) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let runner = {
        let (once, cell, running, finish) =
            (once.clone(), cell.clone(), running.clone(), finish.clone());
        std::thread::spawn(move || {
            std::thread::scope(|s| {
                s.spawn(|| {
                    once.call_once(|| {
                        running.fetch_add(1, SeqCst);
                        while !finish.load(SeqCst) {
                            std::thread::yield_now();
                        }
                    })
                });
                cell.get_or_init(|| {
                    running.fetch_add(1, SeqCst);
                    while !finish.load(SeqCst) {
                        std::thread::yield_now();
                    }
                    4
                });
            })
        })
    };
    while running.load(SeqCst) < 2 {
        std::thread::yield_now();
    }
    let rt = spindle::Runtime::builder().build().unwrap();
    let (o2, c2) = (once.clone(), cell.clone());
    rt.block_on(move || {
        spindle::spawn(move || o2.call_once(|| unreachable!()));
        spindle::spawn(move || *c2.wait());
        spindle::yield_now(); // they park
    });
    drop(rt); // unwinds them: their entries must leave the queues
    finish.store(true, SeqCst);
    runner.join().unwrap();
    assert!(once.is_completed());
    assert_eq!(cell.get(), Some(&4));
}

#[test]
fn a_cancelled_initializer_leaves_the_cell_empty() {
    let cell = Arc::new(OnceLock::<i32>::new());
    let rt = spindle::Runtime::builder().build().unwrap();
    let c2 = cell.clone();
    rt.block_on(move || {
        spindle::spawn(move || {
            c2.get_or_init(|| loop {
                spindle::park();
            });
        });
        spindle::yield_now(); // it runs the initializer and parks in it
    });
    drop(rt); // unwinds the initializer
    assert_eq!(cell.get(), None);
    assert_eq!(*cell.get_or_init(|| 6), 6);
}

const THREADS: usize = if cfg!(debug_assertions) { 40 } else { 200 };
const CELLS: usize = if cfg!(debug_assertions) { 50 } else { 500 };

/// Many threads race to initialize many cells; every cell must be initialized exactly
/// once and everyone must see the same value.
fn stress(model: Model, threads: usize) {
    common::run(model, move || {
        let cells: Arc<Vec<OnceLock<usize>>> =
            Arc::new((0..CELLS).map(|_| OnceLock::new()).collect());
        let onces: Arc<Vec<Once>> = Arc::new((0..CELLS).map(|_| Once::new()).collect());
        let runs: Arc<Vec<AtomicUsize>> =
            Arc::new((0..CELLS).map(|_| AtomicUsize::new(0)).collect());
        let work = {
            let (cells, onces, runs) = (cells.clone(), onces.clone(), runs.clone());
            move |t: usize| {
                let (cells, onces, runs) = (cells.clone(), onces.clone(), runs.clone());
                move || {
                    let mut seen = Vec::with_capacity(CELLS);
                    for k in 0..CELLS {
                        // Threads walk the cells in nearly the same order, so that many
                        // arrive at a cell while its initializer runs (and switches).
                        let i = (k + t % 3) % CELLS;
                        let v = *cells[i].get_or_init(|| {
                            spindle::yield_now();
                            i * 1000 + t
                        });
                        onces[i].call_once(|| {
                            spindle::yield_now();
                            runs[i].fetch_add(1, SeqCst);
                        });
                        assert_eq!(runs[i].load(SeqCst), 1);
                        seen.push((i, v));
                    }
                    seen
                }
            }
        };
        let kernel = std::thread::spawn(work(0));
        let green: Vec<_> = (1..threads).map(|t| spindle::spawn(work(t))).collect();
        let mut all: Vec<Vec<(usize, usize)>> =
            green.into_iter().map(|h| h.join().unwrap()).collect();
        all.push(join_kernel(kernel));
        for seen in all {
            for (i, v) in seen {
                assert_eq!(Some(&v), cells[i].get());
                assert_eq!(v / 1000, i);
            }
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
