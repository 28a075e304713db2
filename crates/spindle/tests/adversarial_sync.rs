//! Adversarial tests of `spindle::sync`: FIFO order across barging and across green and
//! kernel threads, what a dropped runtime gives back for waiters that were served but
//! never ran again, re-entrant initialization, and kernel threads in odd places (TLS
//! destructors).

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{join_kernel, wait_until};
use spindle::sync::{Barrier, Condvar, Mutex, OnceLock, RwLock, Semaphore};
use spindle::Model;

fn build(model: Model) -> spindle::Runtime {
    spindle::Runtime::builder().model(model).build().unwrap()
}

// ---------------------------------------------------------------------------------------
// Condvar: FIFO of notified waiters when an arriving thread barges past the woken one.
// ---------------------------------------------------------------------------------------

struct Cv {
    m: Mutex<CvState>,
    cv: Condvar,
}

#[derive(Default)]
struct CvState {
    waiting: usize,
    go: bool,
    order: Vec<usize>,
}

/// `n` green threads wait on the condvar, in the order 0..n (each is waiting before the
/// next is spawned).
fn queue_condvar_waiters(s: &Arc<Cv>, n: usize) -> Vec<spindle::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let s2 = s.clone();
            let h = spindle::spawn(move || {
                let mut g = s2.m.lock().unwrap();
                g.waiting += 1;
                let mut g = s2.cv.wait_while(g, |st| !st.go).unwrap();
                g.order.push(i);
            });
            wait_until(|| s.m.lock().unwrap().waiting == i + 1);
            h
        })
        .collect()
}

/// notify_all moves W0, W1, W2 (in that order) to the mutex's queue; the unlock wakes W0;
/// before W0 runs, the notifier barges and takes the mutex again; W0 loses the race. The
/// raw mutex's docs: "A woken waiter that loses the race goes back to the *front* of the
/// queue", and the condvar's: requeued waiters compete "like any mutex waiter". So W0
/// must still come out first. (The plain-mutex control below passes.)
#[test]
fn condvar_notified_waiter_that_loses_a_barging_race_keeps_its_place() {
    common::run(Model::ManyToOne, || {
        let s = Arc::new(Cv {
            m: Mutex::new(CvState::default()),
            cv: Condvar::new(),
        });
        let hs = queue_condvar_waiters(&s, 3);
        let mut g = s.m.lock().unwrap();
        g.go = true;
        s.cv.notify_all();
        drop(g); // wakes W0 (it competes for the lock)
        let g = s.m.lock().unwrap(); // barge: the lock is free, W0 has not run yet
        spindle::yield_now(); // W0 runs, loses, queues again
        drop(g);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(
            s.m.lock().unwrap().order,
            [0, 1, 2],
            "FIFO order of notify_all lost"
        );
    });
}

/// The control: the same barging against plain mutex waiters keeps FIFO order.
#[test]
fn mutex_woken_waiter_that_loses_a_barging_race_keeps_its_place() {
    common::run(Model::ManyToOne, || {
        let m = Arc::new(Mutex::new(Vec::new()));
        let entered = Arc::new(AtomicUsize::new(0));
        let g = m.lock().unwrap();
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let (m2, e2) = (m.clone(), entered.clone());
                let h = spindle::spawn(move || {
                    e2.fetch_add(1, SeqCst);
                    m2.lock().unwrap().push(i);
                });
                wait_until(|| entered.load(SeqCst) == i + 1);
                spindle::yield_now(); // let it park on the lock
                h
            })
            .collect();
        drop(g); // wakes W0
        let g = m.lock().unwrap(); // barge
        spindle::yield_now(); // W0 loses and goes back to the front
        drop(g);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), [0, 1, 2]);
    });
}

cross_model! {
    // notify_one serves waiters in arrival order, alternating green and kernel threads
    // on the one condvar.
    fn condvar_notify_one_is_fifo_across_green_and_kernel_waiters(_model) {
        let s = Arc::new(Cv { m: Mutex::new(CvState::default()), cv: Condvar::new() });
        let n = 6;
        let mut green = Vec::new();
        let mut kernel = Vec::new();
        for i in 0..n {
            let s2 = s.clone();
            let body = move || {
                let mut g = s2.m.lock().unwrap();
                g.waiting += 1;
                let mut g = s2.cv.wait(g).unwrap(); // spindle: no spurious wake-ups
                g.order.push(i);
            };
            if i % 2 == 0 {
                green.push(spindle::spawn(body));
            } else {
                kernel.push(std::thread::spawn(body));
            }
            wait_until(|| s.m.lock().unwrap().waiting == i + 1);
        }
        for k in 0..n {
            {
                let _g = s.m.lock().unwrap();
                s.cv.notify_one();
            }
            wait_until(|| s.m.lock().unwrap().order.len() == k + 1);
        }
        for h in green {
            h.join().unwrap();
        }
        kernel.into_iter().for_each(join_kernel);
        assert_eq!(s.m.lock().unwrap().order, (0..n).collect::<Vec<_>>());
    }

    // std allows a condvar to be used with another mutex once nobody waits with the
    // first: a waiter of mutex A that was notified (moved to A's queue, not yet back)
    // must not make a wait with mutex B panic.
    fn condvar_may_change_mutex_once_the_old_waiters_were_notified(_model) {
        let a = Arc::new(Mutex::new(false));
        let b = Arc::new(Mutex::new(false));
        let cv = Arc::new(Condvar::new());
        let waiting = Arc::new(AtomicUsize::new(0));
        let wa = {
            let (a, cv, waiting) = (a.clone(), cv.clone(), waiting.clone());
            spindle::spawn(move || {
                let g = a.lock().unwrap();
                waiting.fetch_add(1, SeqCst);
                drop(cv.wait_while(g, |go| !*go).unwrap());
            })
        };
        wait_until(|| waiting.load(SeqCst) == 1 && a.try_lock().is_ok());
        let mut ga = a.lock().unwrap();
        *ga = true;
        cv.notify_one(); // WA is now in A's queue; A is held by us
        let wb = {
            let (b, cv, waiting) = (b.clone(), cv.clone(), waiting.clone());
            std::thread::spawn(move || {
                let g = b.lock().unwrap();
                waiting.fetch_add(1, SeqCst);
                drop(cv.wait_while(g, |go| !*go).unwrap());
            })
        };
        wait_until(|| waiting.load(SeqCst) == 2 && b.try_lock().is_ok());
        drop(ga);
        wa.join().unwrap();
        *b.lock().unwrap() = true;
        cv.notify_all();
        join_kernel(wb);
    }

    // A timed wait never reports a timeout before its time, on green and kernel threads
    // waiting on the same condvar and semaphore (lower bounds only).
    fn timeouts_are_never_early(_model) {
        let m = Arc::new(Mutex::new(()));
        let cv = Arc::new(Condvar::new());
        let sem = Arc::new(Semaphore::new(0));
        let check = {
            let (m, cv, sem) = (m.clone(), cv.clone(), sem.clone());
            move |salt: u64| {
                for i in 0..12u64 {
                    let d = Duration::from_micros(((i * 7 + salt) % 12) * 250);
                    let t = Instant::now();
                    let (_g, r) = cv.wait_timeout(m.lock().unwrap(), d).unwrap();
                    if r.timed_out() {
                        assert!(t.elapsed() >= d, "condvar timed out after {:?} < {d:?}", t.elapsed());
                    }
                    let t = Instant::now();
                    assert!(sem.acquire_timeout(d).is_none());
                    assert!(t.elapsed() >= d, "semaphore timed out after {:?} < {d:?}", t.elapsed());
                }
            }
        };
        let k = { let c = check.clone(); std::thread::spawn(move || c(1)) };
        let g = { let c = check.clone(); spindle::spawn(move || c(2)) };
        check(3);
        g.join().unwrap();
        join_kernel(k);
    }

    // Under a storm of timed acquires, some racing releases, the permits held never
    // exceed the semaphore's count and none is lost or created.
    fn semaphore_timeouts_never_over_issue(model) {
        let sem = Arc::new(Semaphore::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let rounds = if model == Model::OneToOne { 300 } else { 1500 };
        let body = {
            let (sem, inside) = (sem.clone(), inside.clone());
            move |seed: usize| {
                for i in 0..rounds {
                    let n = 1 + (i + seed) % 2;
                    let d = Duration::from_micros(((i * 13 + seed) % 40) as u64);
                    if let Some(p) = sem.acquire_many_timeout(n, d) {
                        let now = inside.fetch_add(n, SeqCst) + n;
                        assert!(now <= 2, "{now} permits held out of 2");
                        if i % 3 == 0 {
                            spindle::yield_now();
                        }
                        inside.fetch_sub(n, SeqCst);
                        drop(p);
                    }
                }
            }
        };
        let kernel: Vec<_> = (0..2)
            .map(|s| { let b = body.clone(); std::thread::spawn(move || b(s)) })
            .collect();
        let green: Vec<_> = (2..5)
            .map(|s| { let b = body.clone(); spindle::spawn(move || b(s)) })
            .collect();
        for h in green {
            h.join().unwrap();
        }
        kernel.into_iter().for_each(join_kernel);
        assert_eq!(sem.available_permits(), 2);
        assert!(sem.try_acquire_many(2).is_some());
    }

    // Barrier generations with green and kernel threads, many rounds: exactly one
    // leader per generation, and nobody leaves generation g before all have arrived.
    fn barrier_generations_with_mixed_threads(model) {
        let n = 4;
        let gens = if model == Model::OneToOne { 200 } else { 1000 };
        let barrier = Arc::new(Barrier::new(n));
        let arrived = Arc::new((0..gens).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
        let leaders = Arc::new((0..gens).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
        let body = {
            let (barrier, arrived, leaders) = (barrier.clone(), arrived.clone(), leaders.clone());
            move || {
                for g in 0..gens {
                    arrived[g].fetch_add(1, SeqCst);
                    let r = barrier.wait();
                    assert_eq!(arrived[g].load(SeqCst), n, "left generation {g} early");
                    if r.is_leader() {
                        leaders[g].fetch_add(1, SeqCst);
                    }
                }
            }
        };
        let k = { let b = body.clone(); std::thread::spawn(b) };
        let gs: Vec<_> = (0..2).map(|_| spindle::spawn(body.clone())).collect();
        body();
        for h in gs {
            h.join().unwrap();
        }
        join_kernel(k);
        for (g, l) in leaders.iter().enumerate() {
            assert_eq!(l.load(SeqCst), 1, "generation {g}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// A dropped runtime and waiters that were served but never ran again.
// ---------------------------------------------------------------------------------------

/// Waiters on a many-to-one or many-to-many runtime are served (a mutex wake-up, permits,
/// a read grant, a barrier release, a requeued condvar waiter's wake-up) while a hog keeps
/// their worker busy; then the runtime is dropped and they are cancelled without having
/// run again. What they were served must go back: waiters on a second runtime queued
/// behind them get through, the permits and the locks are free again. (If a served
/// thread runs before the drop after all, it gives everything back itself: the checks
/// hold either way, only the path differs; `ran` says which.)
fn served_but_cancelled(model: Model) {
    let m = Arc::new(Mutex::new(Vec::<&str>::new()));
    let m2 = Arc::new(Mutex::new(()));
    let cv = Arc::new(Condvar::new());
    let sem = Arc::new(Semaphore::new(0));
    let rw = Arc::new(RwLock::new(0u32));
    let barrier = Arc::new(Barrier::new(2));
    let hog_go = Arc::new(Semaphore::new(0));
    let hogging = Arc::new(AtomicBool::new(false));
    let about_to_drop = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicUsize::new(0));

    let guard = m.lock().unwrap();
    let wguard = rw.write().unwrap();
    let rt1 = build(model);
    let rt2 = build(Model::ManyToOne);
    {
        let (m, m2, cv, sem, rw, barrier) = (
            m.clone(),
            m2.clone(),
            cv.clone(),
            sem.clone(),
            rw.clone(),
            barrier.clone(),
        );
        let (hog_go, hogging, about_to_drop, ran) = (
            hog_go.clone(),
            hogging.clone(),
            about_to_drop.clone(),
            ran.clone(),
        );
        rt1.block_on(move || {
            let r = ran.clone();
            let hs = vec![
                spindle::spawn(move || {
                    m.lock().unwrap().push("green");
                    r.fetch_add(1, SeqCst);
                }),
                {
                    let r = ran.clone();
                    spindle::spawn(move || {
                        drop(sem.acquire());
                        r.fetch_add(1, SeqCst);
                    })
                },
                {
                    let (rw, r) = (rw.clone(), ran.clone());
                    spindle::spawn(move || {
                        drop(rw.read().unwrap());
                        r.fetch_add(1, SeqCst);
                    })
                },
                {
                    let r = ran.clone();
                    spindle::spawn(move || {
                        drop(rw.read().unwrap());
                        r.fetch_add(1, SeqCst);
                    })
                },
                {
                    let r = ran.clone();
                    spindle::spawn(move || {
                        let _ = barrier.wait();
                        r.fetch_add(1, SeqCst);
                    })
                },
                {
                    let r = ran.clone();
                    spindle::spawn(move || {
                        let g = m2.lock().unwrap();
                        drop(cv.wait(g).unwrap());
                        r.fetch_add(1, SeqCst);
                    })
                },
            ];
            let reasons = [
                spindle::WaitReason::MutexLock,
                spindle::WaitReason::SemaphoreAcquire,
                spindle::WaitReason::RwLockRead,
                spindle::WaitReason::RwLockRead,
                spindle::WaitReason::BarrierWait,
                spindle::WaitReason::CondvarWait,
            ];
            for (h, r) in hs.iter().zip(reasons) {
                let id = h.thread().id();
                common::wait_until_parked(id, r);
            }
            spindle::spawn(move || {
                hog_go.acquire().forget();
                hogging.store(true, SeqCst);
                while !about_to_drop.load(SeqCst) {
                    std::hint::spin_loop();
                }
                // Give the drop time to ask for shutdown before this worker switches.
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(100) {
                    std::hint::spin_loop();
                }
                spindle::yield_now();
            });
            drop(hs); // detach
        });
    }
    // Waiters on another runtime queue behind the served ones.
    let (k_mutex, k_cv) = {
        let (m, m2, cv) = (m.clone(), m2.clone(), cv.clone());
        let (hog_go, hogging) = (hog_go.clone(), hogging.clone());
        rt2.block_on(move || {
            let km = spindle::spawn(move || m.lock().unwrap().push("other runtime"));
            common::wait_until_parked(km.thread().id(), spindle::WaitReason::MutexLock);
            // Move the condvar waiter to m2's queue while m2 is held, then queue behind it.
            let g2 = m2.lock().unwrap();
            cv.notify_one();
            let kc = {
                let m2 = m2.clone();
                spindle::spawn(move || drop(m2.lock().unwrap()))
            };
            common::wait_until_parked(kc.thread().id(), spindle::WaitReason::MutexLock);
            // From here on, no dumps: rt1's worker will not answer.
            hog_go.add_permits(1);
            wait_until(|| hogging.load(SeqCst));
            drop(g2); // wakes the requeued condvar waiter (rt1, hogged)
            (km, kc)
        })
    };
    drop(guard); // wakes the green mutex waiter
    sem.add_permits(1); // grants the permit to the green waiter
    drop(wguard); // grants both green readers
    assert!(barrier.wait().is_leader()); // releases the green barrier waiter
    about_to_drop.store(true, SeqCst);
    drop(rt1);
    eprintln!(
        "served threads that ran before the drop: {}",
        ran.load(SeqCst)
    );

    rt2.block_on(move || {
        k_mutex.join().unwrap();
        k_cv.join().unwrap();
    });
    assert!(!m.is_poisoned());
    assert!(m.lock().unwrap().ends_with(&["other runtime"]));
    assert!(m2.try_lock().is_ok(), "m2 left locked");
    assert_eq!(sem.available_permits(), 1, "a granted permit was lost");
    assert!(
        rw.try_write().is_ok(),
        "read grants of cancelled readers were kept"
    );
    // The barrier works for a new generation.
    let b2 = barrier.clone();
    let k = std::thread::spawn(move || b2.wait().is_leader());
    let me = barrier.wait().is_leader();
    assert!(me ^ k.join().unwrap());
}

#[test]
fn served_but_cancelled_waiters_give_back_many_to_one() {
    served_but_cancelled(Model::ManyToOne);
}

#[test]
fn served_but_cancelled_waiters_give_back_many_to_many() {
    served_but_cancelled(Model::ManyToMany { workers: 1 });
}

// ---------------------------------------------------------------------------------------
// Re-entrant initialization.
// ---------------------------------------------------------------------------------------

/// An initializer that calls `get_or_init` on its own cell deadlocks (as documented, and
/// as std does today): the inner call must park (not run a second initializer, not
/// return a half-made value), and a runtime drop must unwind it cleanly, leaving the cell
/// empty and usable.
fn reentrant_once_lock(model: Model) {
    let cell = Arc::new(OnceLock::<u32>::new());
    let inits = Arc::new(AtomicUsize::new(0));
    let rt = build(model);
    {
        let (cell, inits) = (cell.clone(), inits.clone());
        rt.block_on(move || {
            let h = {
                let (cell, inits) = (cell.clone(), inits.clone());
                spindle::spawn(move || {
                    *cell.get_or_init(|| {
                        inits.fetch_add(1, SeqCst);
                        *cell.get_or_init(|| {
                            inits.fetch_add(100, SeqCst);
                            7
                        }) + 1
                    })
                })
            };
            common::wait_until_parked(h.thread().id(), spindle::WaitReason::OnceWait);
            assert_eq!(cell.get(), None);
            drop(h);
        });
    }
    drop(rt);
    assert_eq!(inits.load(SeqCst), 1, "a second initializer ran");
    assert_eq!(cell.get(), None);
    assert_eq!(*cell.get_or_init(|| 5), 5);
}

#[test]
fn reentrant_once_lock_init_parks_and_runtime_drop_recovers_many_to_one() {
    reentrant_once_lock(Model::ManyToOne);
}

#[test]
fn reentrant_once_lock_init_parks_and_runtime_drop_recovers_many_to_many() {
    reentrant_once_lock(Model::ManyToMany { workers: 2 });
}

// ---------------------------------------------------------------------------------------
// Kernel threads in TLS destructors.
// ---------------------------------------------------------------------------------------

struct BlocksOnDrop;

impl Drop for BlocksOnDrop {
    fn drop(&mut self) {
        // A contended (timed) wait on a plain kernel thread, as std's primitives allow.
        let sem = Semaphore::new(0);
        assert!(sem.acquire_timeout(Duration::from_millis(1)).is_none());
        let m = Mutex::new(());
        let cv = Condvar::new();
        let (_g, r) = cv
            .wait_timeout(m.lock().unwrap(), Duration::from_millis(1))
            .unwrap();
        assert!(r.timed_out());
        eprintln!("tls destructor finished its waits");
    }
}

thread_local! {
    static BLOCKS_ON_DROP: BlocksOnDrop = const { BlocksOnDrop };
}

struct SpawnsOnDrop;

impl Drop for SpawnsOnDrop {
    fn drop(&mut self) {
        // A spawn on a plain kernel thread is a kernel thread, as std's.
        assert_eq!(spindle::spawn(|| 7).join().unwrap(), 7);
        eprintln!("tls destructor spawned and joined");
    }
}

thread_local! {
    static SPAWNS_ON_DROP: SpawnsOnDrop = const { SpawnsOnDrop };
}

/// Runs `test` (this file's test of that name) again in a child process with `CHILD` set,
/// and checks that the child succeeds and prints `done`.
fn in_a_child(test: &str, done: &str) {
    let out = common::rerun_in_child(test, CHILD);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains(done),
        "child failed: {:?}\n{stderr}",
        out.status
    );
}

/// Set in the child processes of the tests below.
const CHILD: &str = "ADVERSARIAL_SYNC_TLS_CHILD";

/// A thread-local whose destructor waits on a spindle primitive, on a kernel thread that
/// had used spindle before (so spindle's own thread-local record was made after the
/// user's one and is destroyed first). std's primitives work there; spindle's must not
/// panic in the destructor (which aborts the process).
#[test]
fn a_wait_in_a_tls_destructor_after_spindle_was_used_on_the_thread() {
    if std::env::var_os(CHILD).is_some() {
        std::thread::spawn(|| {
            BLOCKS_ON_DROP.with(|_| {}); // registered first, destroyed last
            let _ = spindle::current(); // spindle's record of this kernel thread
        })
        .join()
        .unwrap();
        return;
    }
    in_a_child(
        "a_wait_in_a_tls_destructor_after_spindle_was_used_on_the_thread",
        "tls destructor finished its waits",
    );
}

/// As above for a spawn: spindle's note of the one-to-one runtime this kernel thread is
/// in may be destroyed before the user's thread-local; the spawn then makes a kernel
/// thread of no runtime, as it would on a thread that never entered one.
#[test]
fn a_spawn_in_a_tls_destructor_after_spindle_spawned_from_the_thread() {
    if std::env::var_os(CHILD).is_some() {
        std::thread::spawn(|| {
            SPAWNS_ON_DROP.with(|_| {}); // registered first, destroyed last
            assert_eq!(spindle::spawn(|| 1).join().unwrap(), 1);
        })
        .join()
        .unwrap();
        return;
    }
    in_a_child(
        "a_spawn_in_a_tls_destructor_after_spindle_spawned_from_the_thread",
        "tls destructor spawned and joined",
    );
}

// ---------------------------------------------------------------------------------------
// Guards held by a green thread that a runtime drop unwinds.
// ---------------------------------------------------------------------------------------

/// The poison module's docs: a green thread unwound because its runtime was dropped
/// counts as panicking, so a `Mutex` or `RwLock` write guard it held poisons the lock (as
/// std does for a panicking holder), a read guard does not, and the locks are released:
/// a kernel thread queued on each gets it.
fn guards_of_a_cancelled_thread(model: Model) {
    let m = Arc::new(Mutex::new(0));
    let rw = Arc::new(RwLock::new(0));
    let rr = Arc::new(RwLock::new(0));
    let never = Arc::new(Semaphore::new(0));
    let rt = build(model);
    {
        let (m, rw, rr, never) = (m.clone(), rw.clone(), rr.clone(), never.clone());
        rt.block_on(move || {
            let h = spindle::spawn(move || {
                let _g = m.lock().unwrap();
                let _w = rw.write().unwrap();
                let _r = rr.read().unwrap();
                drop(never.acquire()); // parks for good
            });
            common::wait_until_parked(h.thread().id(), spindle::WaitReason::SemaphoreAcquire);
            drop(h);
        });
    }
    let km = {
        let m = m.clone();
        std::thread::spawn(move || m.lock().is_err())
    };
    let kw = {
        let rw = rw.clone();
        std::thread::spawn(move || rw.write().is_err())
    };
    let kr = {
        let rr = rr.clone();
        std::thread::spawn(move || rr.write().is_err())
    };
    drop(rt);
    assert!(
        km.join().unwrap(),
        "a mutex held by a cancelled thread was not poisoned"
    );
    assert!(
        kw.join().unwrap(),
        "a write guard of a cancelled thread did not poison"
    );
    assert!(
        !kr.join().unwrap(),
        "a read guard of a cancelled thread poisoned"
    );
    assert_eq!(never.available_permits(), 0);
}

#[test]
fn guards_of_a_cancelled_thread_are_released_and_poison_as_documented_many_to_one() {
    guards_of_a_cancelled_thread(Model::ManyToOne);
}

#[test]
fn guards_of_a_cancelled_thread_are_released_and_poison_as_documented_many_to_many() {
    guards_of_a_cancelled_thread(Model::ManyToMany { workers: 2 });
}
