//! `spindle::sync::RwLock` under every model, shared by green and kernel threads; fairness
//! (neither side starves), poisoning, cancellation, and a stress test.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, TryLockError};

use common::{join_kernel, wait_until};
use spindle::sync::{Mutex, RwLock};
use spindle::Model;

/// Waits until someone is queued on `lock`, which the caller holds shared: from then on
/// `try_read` fails (a queued thread goes first), and only a queued thread can cause that.
fn until_queued<T>(lock: &RwLock<T>) {
    wait_until(|| lock.try_read().is_err());
}

/// A pair the writers keep equal, updated in two steps with a switch in between.
fn write_pair(lock: &RwLock<(u64, u64)>, yield_inside: bool) {
    let mut g = lock.write().unwrap();
    g.0 += 1;
    if yield_inside {
        spindle::yield_now();
    }
    g.1 += 1;
}

fn read_pair(lock: &RwLock<(u64, u64)>, yield_inside: bool) -> u64 {
    let g = lock.read().unwrap();
    let a = g.0;
    if yield_inside {
        spindle::yield_now();
    }
    assert_eq!(a, g.1, "a reader saw a half-done write");
    a
}

cross_model! {
    fn readers_hold_it_together(_model) {
        // Each reader stays inside until all are: possible only if they share the lock.
        let lock = Arc::new(RwLock::new(5));
        let inside = Arc::new(AtomicUsize::new(0));
        let n = 8;
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let (lock, inside) = (lock.clone(), inside.clone());
                spindle::spawn(move || {
                    let g = lock.read().unwrap();
                    inside.fetch_add(1, SeqCst);
                    wait_until(|| inside.load(SeqCst) == n);
                    *g
                })
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), 5);
        }
    }

    fn a_writer_excludes_readers_and_writers(_model) {
        let lock = Arc::new(RwLock::new(0));
        let (held, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let writer = {
            let (lock, held, release) = (lock.clone(), held.clone(), release.clone());
            spindle::spawn(move || {
                let mut g = lock.write().unwrap();
                *g = 1;
                held.store(true, SeqCst);
                wait_until(|| release.load(SeqCst));
                *g = 2;
            })
        };
        wait_until(|| held.load(SeqCst));
        assert!(matches!(lock.try_read(), Err(TryLockError::WouldBlock)));
        assert!(matches!(lock.try_write(), Err(TryLockError::WouldBlock)));
        assert_eq!(format!("{lock:?}"), "RwLock { data: <locked>, poisoned: false, .. }");
        let reader = {
            let lock = lock.clone();
            spindle::spawn(move || *lock.read().unwrap())
        };
        release.store(true, SeqCst);
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), 2, "the reader got in before the writer was done");
    }

    fn readers_exclude_a_writer_which_then_goes_first(_model) {
        let lock = Arc::new(RwLock::new(0));
        let g = lock.read().unwrap();
        assert!(matches!(lock.try_write(), Err(TryLockError::WouldBlock)));
        drop(lock.try_read().expect("readers share the lock"));
        let writer = {
            let lock = lock.clone();
            spindle::spawn(move || *lock.write().unwrap() = 7)
        };
        until_queued(&lock);
        assert!(!writer.is_finished());
        // Readers arriving now queue behind the writer, although the lock is read-held.
        let arrived = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (lock, arrived) = (lock.clone(), arrived.clone());
                spindle::spawn(move || {
                    arrived.fetch_add(1, SeqCst);
                    *lock.read().unwrap()
                })
            })
            .collect();
        wait_until(|| arrived.load(SeqCst) == 4);
        assert_eq!(*g, 0);
        drop(g);
        writer.join().unwrap();
        for r in readers {
            assert_eq!(r.join().unwrap(), 7, "a late reader overtook the queued writer");
        }
    }

    fn a_stream_of_readers_does_not_starve_a_writer(_model) {
        // Three readers re-take the lock in a loop, overlapping each other, until the
        // writer has been in. With readers preferred this would never end.
        let lock = Arc::new(RwLock::new(0u64));
        let done = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (lock, done, started) = (lock.clone(), done.clone(), started.clone());
                spindle::spawn(move || {
                    let mut rounds = 0u64;
                    while !done.load(SeqCst) {
                        let g = lock.read().unwrap();
                        started.fetch_add(1, SeqCst);
                        spindle::yield_now();
                        drop(g);
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        wait_until(|| started.load(SeqCst) >= 3);
        *lock.write().unwrap() = 1;
        done.store(true, SeqCst);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(*lock.read().unwrap(), 1);
    }

    fn a_stream_of_writers_does_not_starve_a_reader(_model) {
        let lock = Arc::new(RwLock::new(0u64));
        let done = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..3)
            .map(|_| {
                let (lock, done, started) = (lock.clone(), done.clone(), started.clone());
                spindle::spawn(move || {
                    while !done.load(SeqCst) {
                        let mut g = lock.write().unwrap();
                        started.fetch_add(1, SeqCst);
                        *g += 1;
                        spindle::yield_now();
                    }
                })
            })
            .collect();
        wait_until(|| started.load(SeqCst) >= 3);
        let seen = *lock.read().unwrap();
        done.store(true, SeqCst);
        for w in writers {
            w.join().unwrap();
        }
        assert!(seen >= 3);
    }

    fn a_panicking_writer_poisons(_model) {
        let lock = Arc::new(RwLock::new(5));
        let l2 = lock.clone();
        let r = spindle::spawn(move || {
            let mut g = l2.write().unwrap();
            *g = 6;
            panic!("poison it");
        })
        .join();
        assert!(r.is_err());
        assert!(lock.is_poisoned());
        assert_eq!(*lock.read().expect_err("poisoned").into_inner(), 6);
        assert_eq!(*lock.write().expect_err("poisoned").into_inner(), 6);
        match lock.try_read() {
            Err(TryLockError::Poisoned(e)) => assert_eq!(*e.into_inner(), 6),
            other => panic!("expected Poisoned, got {other:?}"),
        }
        assert!(matches!(lock.try_write(), Err(TryLockError::Poisoned(_))));
        assert_eq!(format!("{lock:?}"), "RwLock { data: 6, poisoned: true, .. }");
        lock.clear_poison();
        assert!(!lock.is_poisoned());
        *lock.write().unwrap() += 1;
        assert_eq!(*lock.read().unwrap(), 7);
    }

    fn a_panicking_reader_does_not_poison(_model) {
        let lock = Arc::new(RwLock::new(1));
        let l2 = lock.clone();
        let r = spindle::spawn(move || {
            let _g = l2.read().unwrap();
            panic!("readers do not poison");
        })
        .join();
        assert!(r.is_err());
        assert!(!lock.is_poisoned());
        assert_eq!(*lock.write().unwrap(), 1);
    }

    fn into_inner_and_get_mut(_model) {
        let mut lock = RwLock::new(vec![1, 2]);
        lock.get_mut().unwrap().push(3);
        assert_eq!(format!("{lock:?}"), "RwLock { data: [1, 2, 3], poisoned: false, .. }");
        assert_eq!(lock.into_inner().unwrap(), [1, 2, 3]);

        let lock = Arc::new(RwLock::new(String::from("x")));
        let l2 = lock.clone();
        let _ = spindle::spawn(move || {
            let _g = l2.write();
            panic!("poison");
        })
        .join();
        let mut lock = Arc::try_unwrap(lock).unwrap();
        assert!(lock.get_mut().is_err());
        assert_eq!(lock.into_inner().expect_err("poisoned").into_inner(), "x");
        assert_eq!(*RwLock::<u8>::default().read().unwrap(), 0);
        assert_eq!(*RwLock::from(3).write().unwrap(), 3);
    }

    fn green_and_kernel_threads_share_a_rwlock(_model) {
        let lock = Arc::new(RwLock::new((0u64, 0u64)));
        let work = |lock: Arc<RwLock<(u64, u64)>>, t: u64| {
            move || {
                for i in 0..2_000u64 {
                    if (i + t) % 5 == 0 {
                        write_pair(&lock, i % 3 == 0);
                    } else {
                        read_pair(&lock, i % 7 == 0);
                    }
                }
            }
        };
        let kernel: Vec<_> = (0..2).map(|t| std::thread::spawn(work(lock.clone(), t))).collect();
        let green: Vec<_> = (2..6).map(|t| spindle::spawn(work(lock.clone(), t))).collect();
        work(lock.clone(), 6)();
        for h in green {
            h.join().unwrap();
        }
        kernel.into_iter().for_each(join_kernel);
        assert_eq!(*lock.read().unwrap(), (7 * 400, 7 * 400));
    }
}

#[test]
fn queued_readers_enter_together_and_in_fifo_order_in_many_to_one() {
    // Queue: R1, R2, W3, R4 (each runs and parks before the next is spawned). On release
    // R1 and R2 are admitted together (they overlap), then W3, then R4.
    common::run(Model::ManyToOne, || {
        let lock = Arc::new(RwLock::new(()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let w = lock.write().unwrap();
        let spawn = |name: &'static str, write: bool| {
            let (lock, log) = (lock.clone(), log.clone());
            let h = spindle::spawn(move || {
                let guard = if write {
                    (None, Some(lock.write().unwrap()))
                } else {
                    (Some(lock.read().unwrap()), None)
                };
                log.lock().unwrap().push(format!("{name} in"));
                spindle::yield_now();
                log.lock().unwrap().push(format!("{name} out"));
                drop(guard);
            });
            spindle::yield_now(); // it runs and parks on the lock
            h
        };
        let hs = [
            spawn("r1", false),
            spawn("r2", false),
            spawn("w3", true),
            spawn("r4", false),
        ];
        drop(w);
        for h in hs {
            h.join().unwrap();
        }
        let log = log.lock().unwrap().clone();
        let at = |e: &str| log.iter().position(|x| x == e).unwrap();
        assert!(
            at("r1 in") < at("r2 out") && at("r2 in") < at("r1 out"),
            "{log:?}"
        );
        assert!(
            at("w3 in") > at("r1 out") && at("w3 in") > at("r2 out"),
            "{log:?}"
        );
        assert!(at("r4 in") > at("w3 out"), "{log:?}");
    });
}

#[test]
fn a_kernel_thread_outside_any_runtime_can_use_it() {
    let lock = RwLock::new(1);
    *lock.write().unwrap() += 1;
    let (a, b) = (lock.read().unwrap(), lock.read().unwrap());
    assert_eq!(*a + *b, 4);
    drop((a, b));
    assert_eq!(lock.into_inner().unwrap(), 2);
}

#[test]
fn green_waiters_cancelled_by_runtime_drop_leave_the_queue() {
    let lock = Arc::new(RwLock::new(0));
    let guard = lock.write().unwrap();
    let rt = spindle::Runtime::builder().build().unwrap();
    let l2 = lock.clone();
    rt.block_on(move || {
        let l3 = l2.clone();
        spindle::spawn(move || *l3.write().unwrap() += 100);
        spindle::spawn(move || *l2.read().unwrap());
        // They run and park on the lock this kernel thread holds.
        spindle::yield_now();
    });
    drop(rt); // unwinds the parked green threads: their entries must go with them
    drop(guard);
    assert!(
        lock.try_write().is_ok(),
        "a cancelled waiter was left queued or served"
    );
    assert_eq!(*lock.read().unwrap(), 0);
    // The queue is sound: a contended round trip works.
    let g = lock.write().unwrap();
    let l4 = lock.clone();
    let k = std::thread::spawn(move || *l4.write().unwrap() += 1);
    drop(g);
    k.join().unwrap();
    assert_eq!(*lock.read().unwrap(), 1);
}

#[test]
fn readers_behind_a_cancelled_writer_join_the_readers_inside() {
    // This thread holds the lock shared; a green writer queues, then a kernel reader
    // behind it. When the writer is cancelled the reader must be let in at once (the lock
    // is read-held), not only when this thread lets go.
    let lock = Arc::new(RwLock::new(3));
    let guard = lock.read().unwrap();
    let rt = spindle::Runtime::builder().build().unwrap();
    let l2 = lock.clone();
    rt.block_on(move || {
        spindle::spawn(move || *l2.write().unwrap() = 0);
        spindle::yield_now();
    });
    let l3 = lock.clone();
    let reader = std::thread::spawn(move || *l3.read().unwrap());
    drop(rt);
    assert_eq!(reader.join().unwrap(), 3);
    drop(guard);
    assert!(lock.try_write().is_ok());
}

const THREADS: u64 = if cfg!(debug_assertions) { 40 } else { 200 };
const OPS: u64 = if cfg!(debug_assertions) { 200 } else { 2_000 };

/// Many readers and writers, green and kernel, checking mutual exclusion on every step.
fn stress(model: Model) {
    common::run(model, move || {
        let lock = Arc::new(RwLock::new((0u64, 0u64)));
        let readers_in = Arc::new(AtomicU64::new(0));
        let writers_in = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let work = {
            let (lock, readers_in, writers_in, writes) = (
                lock.clone(),
                readers_in.clone(),
                writers_in.clone(),
                writes.clone(),
            );
            move |t: u64| {
                let (lock, readers_in, writers_in, writes) = (
                    lock.clone(),
                    readers_in.clone(),
                    writers_in.clone(),
                    writes.clone(),
                );
                move || {
                    for i in 0..OPS {
                        if (i * 7 + t) % 8 == 0 {
                            let mut g = lock.write().unwrap();
                            assert_eq!(writers_in.fetch_add(1, SeqCst), 0);
                            assert_eq!(readers_in.load(SeqCst), 0);
                            g.0 += 1;
                            if i % 4 == 0 {
                                spindle::yield_now();
                            }
                            g.1 += 1;
                            writes.fetch_add(1, SeqCst);
                            writers_in.fetch_sub(1, SeqCst);
                        } else {
                            let g = lock.read().unwrap();
                            readers_in.fetch_add(1, SeqCst);
                            assert_eq!(writers_in.load(SeqCst), 0);
                            let a = g.0;
                            if i % 16 == 0 {
                                spindle::yield_now();
                            }
                            assert_eq!(a, g.1);
                            readers_in.fetch_sub(1, SeqCst);
                        }
                    }
                }
            }
        };
        let kernel: Vec<_> = (0..2).map(|t| std::thread::spawn(work(t))).collect();
        let n = if model == Model::OneToOne {
            THREADS / 10
        } else {
            THREADS
        };
        let green: Vec<_> = (2..n).map(|t| spindle::spawn(work(t))).collect();
        for h in green {
            h.join().unwrap();
        }
        kernel.into_iter().for_each(join_kernel);
        let w = writes.load(SeqCst);
        assert!(w > 0);
        assert_eq!(*lock.read().unwrap(), (w, w));
    });
}

#[test]
fn stress_many_to_one() {
    stress(Model::ManyToOne);
}

#[test]
fn stress_one_to_one() {
    stress(Model::OneToOne);
}

#[test]
fn stress_many_to_many() {
    stress(Model::ManyToMany { workers: 4 });
}
