//! `spindle::sync::Semaphore` under every model, shared by green and kernel threads; FIFO
//! service of large requests, timeouts, cancellation, and a stress test.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{join_kernel, wait_until};
use spindle::sync::{Mutex, Semaphore};
use spindle::Model;

/// Waits until someone is queued on `sem`, which has at least one free permit: from then
/// on `try_acquire` fails (queued requests go first), and only a queued thread causes that.
fn until_queued(sem: &Semaphore) {
    assert!(sem.available_permits() >= 1);
    wait_until(|| sem.try_acquire().is_none());
}

cross_model! {
    fn permits_are_counted_and_given_back(_model) {
        let sem = Semaphore::new(3);
        let a = sem.acquire();
        assert_eq!((a.num_permits(), sem.available_permits()), (1, 2));
        let b = sem.acquire_many(2);
        assert_eq!(sem.available_permits(), 0);
        assert!(sem.try_acquire().is_none());
        assert!(sem.try_acquire_many(2).is_none());
        drop(a);
        let c = sem.try_acquire().expect("one permit is free");
        c.forget(); // the semaphore has one permit fewer now
        drop(b);
        assert_eq!(sem.available_permits(), 2);
        sem.add_permits(2);
        assert_eq!(sem.available_permits(), 4);
        let d = sem.try_acquire_many(4).expect("four are free");
        assert_eq!(d.num_permits(), 4);
        assert_eq!(sem.acquire_many(0).num_permits(), 0);
        assert_eq!(format!("{d:?}"), "SemaphorePermit { permits: 4, .. }");
        drop(d);
        assert_eq!(
            format!("{sem:?}"),
            "Semaphore { available_permits: 4, waiters: false }"
        );
    }

    fn never_more_holders_than_permits(model) {
        let permits = 3;
        let sem = Arc::new(Semaphore::new(permits));
        let held = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads = if model == Model::OneToOne { 8 } else { 30 };
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (sem, held, most) = (sem.clone(), held.clone(), most.clone());
                spindle::spawn(move || {
                    for i in 0..200usize {
                        let n = 1 + (i + t) % 2;
                        let p = sem.acquire_many(n);
                        let now = held.fetch_add(n, SeqCst) + n;
                        assert!(now <= permits, "{now} permits held out of {permits}");
                        most.fetch_max(now, SeqCst);
                        if i % 3 == 0 {
                            spindle::yield_now();
                        }
                        held.fetch_sub(n, SeqCst);
                        drop(p);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(sem.available_permits(), permits);
        assert!(most.load(SeqCst) >= 2);
    }

    fn acquire_timeout_times_out(_model) {
        let sem = Semaphore::new(0);
        let timeout = Duration::from_millis(20);
        let start = Instant::now();
        assert!(sem.acquire_timeout(timeout).is_none());
        assert!(start.elapsed() >= timeout, "returned before the timeout");
        // The timed-out request left the queue: new permits go to new requests.
        sem.add_permits(2);
        assert!(sem.try_acquire().is_some());
        let start = Instant::now();
        assert!(sem.acquire_many_timeout(3, timeout).is_none());
        assert!(start.elapsed() >= timeout, "returned before the timeout");
        assert_eq!(sem.available_permits(), 2);
        assert!(sem.acquire_timeout(Duration::ZERO).is_some());
    }

    fn acquire_timeout_returns_when_a_permit_comes(_model) {
        let sem = Arc::new(Semaphore::new(0));
        let s2 = sem.clone();
        let h = spindle::spawn(move || {
            let p = s2.acquire_timeout(Duration::from_secs(60));
            p.map(|p| p.num_permits())
        });
        sem.add_permits(1);
        assert_eq!(h.join().unwrap(), Some(1));
        assert_eq!(sem.available_permits(), 1);
    }

    fn a_large_request_at_the_head_is_not_overtaken(_model) {
        // One permit is free; A asks for three and queues. B then asks for one: it must
        // wait behind A although a permit is free, and get it only after A is served.
        let sem = Arc::new(Semaphore::new(1));
        let log = Arc::new(Mutex::new(Vec::new()));
        let release_a = Arc::new(AtomicBool::new(false));
        let a = {
            let (sem, log, release_a) = (sem.clone(), log.clone(), release_a.clone());
            spindle::spawn(move || {
                let p = sem.acquire_many(3);
                log.lock().unwrap().push("a");
                wait_until(|| release_a.load(SeqCst));
                drop(p);
            })
        };
        until_queued(&sem);
        let b_arrived = Arc::new(AtomicBool::new(false));
        let b = {
            let (sem, log, b_arrived) = (sem.clone(), log.clone(), b_arrived.clone());
            spindle::spawn(move || {
                b_arrived.store(true, SeqCst);
                let _p = sem.acquire();
                log.lock().unwrap().push("b");
            })
        };
        wait_until(|| b_arrived.load(SeqCst));
        spindle::yield_now();
        assert!(log.lock().unwrap().is_empty(), "B overtook A");
        assert_eq!(sem.available_permits(), 1);
        sem.add_permits(2); // A's three are there now
        wait_until(|| !log.lock().unwrap().is_empty());
        assert_eq!(*log.lock().unwrap(), ["a"]);
        assert_eq!(sem.available_permits(), 0);
        release_a.store(true, SeqCst);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["a", "b"]);
        assert_eq!(sem.available_permits(), 3);
    }

    fn green_and_kernel_waiters_share_a_semaphore(_model) {
        // No permit at first; six waiters (three kernel, three green) queue; one permit is
        // added and passed from holder to holder until all have had it.
        let sem = Arc::new(Semaphore::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let waiter = |sem: Arc<Semaphore>, served: Arc<AtomicUsize>| {
            move || {
                let _p = sem.acquire();
                served.fetch_add(1, SeqCst);
            }
        };
        let kernel: Vec<_> = (0..3)
            .map(|_| std::thread::spawn(waiter(sem.clone(), served.clone())))
            .collect();
        let green: Vec<_> = (0..3)
            .map(|_| spindle::spawn(waiter(sem.clone(), served.clone())))
            .collect();
        sem.add_permits(1);
        for h in green {
            h.join().unwrap();
        }
        kernel.into_iter().for_each(join_kernel);
        assert_eq!(served.load(SeqCst), 6);
        assert_eq!(sem.available_permits(), 1);
    }

    fn a_timeout_racing_a_release_loses_no_permit(model) {
        // Whatever wins (the timeout or the permit), exactly one permit is left at the end.
        let rounds = if model == Model::OneToOne { 100 } else { 400 };
        for round in 0..rounds {
            let sem = Arc::new(Semaphore::new(0));
            let s2 = sem.clone();
            let short = Duration::from_micros((round % 40) as u64 * 5);
            let h = spindle::spawn(move || s2.acquire_timeout(short).is_some());
            if round % 2 == 0 {
                spindle::yield_now();
            }
            sem.add_permits(1);
            h.join().unwrap();
            assert_eq!(sem.available_permits(), 1, "round {round}");
        }
    }

    fn a_timed_out_head_lets_the_requests_behind_it_through(_model) {
        // One permit free; A asks for two with a timeout, B for one without. When A gives
        // up, B must get the free permit without anybody releasing one.
        let sem = Arc::new(Semaphore::new(1));
        let s2 = sem.clone();
        let a = spindle::spawn(move || s2.acquire_many_timeout(2, Duration::from_millis(30)).is_some());
        until_queued(&sem);
        let s3 = sem.clone();
        let b = spindle::spawn(move || s3.acquire().num_permits());
        assert!(!a.join().unwrap());
        assert_eq!(b.join().unwrap(), 1);
        assert_eq!(sem.available_permits(), 1);
    }
}

#[test]
fn a_kernel_thread_outside_any_runtime_can_use_it() {
    let sem = Arc::new(Semaphore::new(1));
    let p = sem.acquire();
    let s2 = sem.clone();
    let k = std::thread::spawn(move || s2.acquire().num_permits());
    drop(p);
    assert_eq!(k.join().unwrap(), 1);
    assert_eq!(sem.available_permits(), 1);
}

#[test]
#[should_panic(expected = "MAX_PERMITS")]
fn too_many_permits_panic() {
    let sem = Semaphore::new(Semaphore::MAX_PERMITS);
    sem.add_permits(1);
}

#[test]
fn a_cancelled_waiter_leaves_the_queue() {
    // A green thread at the head asks for two permits (one is free) and is cancelled; a
    // kernel thread queued behind it for one must then get the free permit.
    let sem = Arc::new(Semaphore::new(1));
    let rt = spindle::Runtime::builder().build().unwrap();
    let s2 = sem.clone();
    rt.block_on(move || {
        let s3 = s2.clone();
        spindle::spawn(move || s3.acquire_many(2).forget());
        until_queued(&s2);
    });
    let s4 = sem.clone();
    let k = std::thread::spawn(move || s4.acquire().num_permits());
    drop(rt); // unwinds the parked green thread: its entry must go with it
    assert_eq!(k.join().unwrap(), 1);
    assert_eq!(sem.available_permits(), 1);
    sem.add_permits(1);
    assert!(
        sem.try_acquire_many(2).is_some(),
        "a cancelled request kept permits"
    );
}

const THREADS: usize = if cfg!(debug_assertions) { 40 } else { 200 };
const OPS: usize = if cfg!(debug_assertions) { 100 } else { 1_000 };

/// Green and kernel threads acquire 1 to 3 of 4 permits in every way (blocking, try,
/// timeout), checking that the permits held never exceed 4.
fn stress(model: Model, threads: usize) {
    common::run(model, move || {
        const PERMITS: usize = 4;
        let sem = Arc::new(Semaphore::new(PERMITS));
        let held = Arc::new(AtomicUsize::new(0));
        let work = {
            let (sem, held) = (sem.clone(), held.clone());
            move |t: usize| {
                let (sem, held) = (sem.clone(), held.clone());
                move || {
                    for i in 0..OPS {
                        let n = 1 + (i + t) % 3;
                        let p = match (i + t) % 5 {
                            0 => sem.try_acquire_many(n),
                            1 => sem.acquire_many_timeout(n, Duration::from_micros(50)),
                            _ => Some(sem.acquire_many(n)),
                        };
                        let Some(p) = p else { continue };
                        let now = held.fetch_add(n, SeqCst) + n;
                        assert!(now <= PERMITS, "{now} permits held out of {PERMITS}");
                        if i % 4 == 0 {
                            spindle::yield_now();
                        }
                        held.fetch_sub(n, SeqCst);
                        drop(p);
                    }
                }
            }
        };
        let kernel: Vec<_> = (0..2).map(|t| std::thread::spawn(work(t))).collect();
        let green: Vec<_> = (2..threads).map(|t| spindle::spawn(work(t))).collect();
        for h in green {
            h.join().unwrap();
        }
        kernel.into_iter().for_each(join_kernel);
        assert_eq!(sem.available_permits(), PERMITS);
        assert!(sem.try_acquire_many(PERMITS).is_some());
    });
}

#[test]
fn stress_many_to_one() {
    stress(Model::ManyToOne, THREADS);
}

#[test]
fn stress_one_to_one() {
    stress(Model::OneToOne, 16);
}

#[test]
fn stress_many_to_many() {
    stress(Model::ManyToMany { workers: 4 }, THREADS);
}
