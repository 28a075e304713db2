//! Adversarial tests of the core runtime, under every model where the behaviour is common:
//!
//! - spawn and join: panic payloads of any type, chains of threads each joining the next,
//!   spawns from a panicking thread's destructor and from thread-local destructors (green
//!   `spindle::local!` and std `thread_local!`), and whether `join` waits for a kernel
//!   thread's std thread-locals as std's does;
//! - `thread::Builder`: stack sizes out of range (0, 1, `usize::MAX`) and names with a NUL
//!   byte, which must fail as errors, not panics, and leave nothing behind;
//! - `scope`: nested scopes borrowing from every level, a panicking body that must still
//!   wait for its threads, and a scoped spawn that fails;
//! - park/unpark: unparks from many kernel threads coalescing into one token, a long
//!   ping-pong between a green thread and a kernel thread that mixes plain parks with
//!   timeouts (so stale timers race live parks), timeouts of zero, `Duration::MAX` and huge
//!   but representable durations;
//! - sleep: no CPU while sleeping (measured on the workers' CPU clocks), strict deadline
//!   order on one worker, `sleep(0)`, an unpark does not cut a sleep short, and durations
//!   too long to represent are cancelled cleanly at drop;
//! - `yield_now` lets every other ready thread run first (many-to-one); a yielding spinner
//!   does not starve sleepers; `current()` identity and ids;
//! - runtime lifetime: nested `block_on`, many `block_on`s, drop with joiners, parkers and
//!   sleepers, drop from inside one of the runtime's own green threads, drop while a green
//!   thread sits in a raw blocking call, spawns from destructors of cancelled threads;
//! - many-to-many: unstarted threads escape a worker stuck in a raw blocking read, and so
//!   do spawns from outside; `checkpoint()` spinners and sleepers.
//!
//! Bugs this review found and that are fixed keep their tests here: a many-to-many
//! runtime dropped from its own green thread deadlocked; a NUL byte in a one-to-one
//! thread's name panicked and left a phantom in `debug::threads()`; a sleeper behind a
//! `checkpoint()`ing computation waited ~64 time slices; a busy many-to-many worker never
//! took a stuck worker's unstarted threads; a kernel thread's `join` did not wait for its
//! std thread-locals' destructors. The test of the bug still open is `#[ignore]`d with
//! the reason, and its doc says what it expects and why: a green thread parked mid-unwind
//! makes `std::thread::panicking()` true for the other threads of its worker (which then
//! poison spindle Mutexes). Run it with `-- --ignored`.
//! Nothing here waits on time for another thread to reach a point: waits are on events
//! (`wait_until_parked`, channels, flags), and every test is bounded (a `Watchdog`, or a
//! `within` that fails instead of hanging).

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{join_kernel, wait_until, wait_until_parked, Watchdog};
use spindle::thread::{Builder, Cancelled};
use spindle::{Model, Runtime, WaitReason};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The two green models.
const GREEN_MODELS: [Model; 2] = [Model::ManyToOne, Model::ManyToMany { workers: 2 }];

fn build(model: Model) -> Runtime {
    Runtime::builder()
        .model(model)
        .build()
        .unwrap_or_else(|e| panic!("cannot build a {model} runtime: {e}"))
}

/// Runs `f` on a kernel thread and returns its result, or `Err` if it has not returned
/// within `limit` (the thread is then left behind: for tests that show a hang).
fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, mpsc::RecvTimeoutError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
}

/// Counts its drops.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Asserts that `join` gave `Err` holding [`Cancelled`] (the runtime was dropped).
fn assert_cancelled<T: std::fmt::Debug>(joined: std::thread::Result<T>, what: &str) {
    match joined {
        Ok(v) => panic!("{what}: expected Cancelled, got Ok({v:?})"),
        Err(payload) => assert!(
            payload.downcast_ref::<Cancelled>().is_some(),
            "{what}: expected a Cancelled payload, got a panic {:?}",
            payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or(payload.downcast_ref::<&str>().copied())
        ),
    }
}

/// The CPU clock of the calling kernel thread (on a green thread: its worker's).
fn own_cpu_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `pthread_self` is this live thread; `clock` is a valid out pointer.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    assert_eq!(rc, 0, "pthread_getcpuclockid");
    clock
}

/// The CPU time a thread's clock (from [`own_cpu_clock`]) reads now.
fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer; the clock's thread (a worker) is alive.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The CPU clocks of all `workers` workers of `rt`: one green thread per worker, each
/// holding its worker (spinning) until all have reported, so no two share a worker.
fn worker_cpu_clocks(rt: &Runtime, workers: usize) -> Vec<libc::clockid_t> {
    let reported = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..workers)
        .map(|_| {
            let reported = reported.clone();
            rt.spawn(move || {
                let clock = own_cpu_clock();
                let index = spindle::runtime::worker_index().unwrap();
                reported.fetch_add(1, SeqCst);
                while reported.load(SeqCst) < workers {
                    std::hint::spin_loop();
                }
                (index, clock)
            })
        })
        .collect();
    let mut seen: Vec<(usize, libc::clockid_t)> =
        hs.into_iter().map(|h| h.join().unwrap()).collect();
    seen.sort_by_key(|&(i, _)| i);
    seen.dedup_by_key(|&mut (i, _)| i);
    assert_eq!(seen.len(), workers, "one reporter per worker");
    seen.into_iter().map(|(_, c)| c).collect()
}

/// A pipe, both ends owned.
fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    rustix::pipe::pipe().expect("pipe()")
}

/// Blocks this kernel thread (a raw call: the worker, on a green thread) until `fd` is
/// readable or `limit` passes; true if it became readable.
fn raw_wait_readable(fd: &std::os::fd::OwnedFd, limit: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as i32) };
    ready == 1
}

fn write_byte(fd: &std::os::fd::OwnedFd) {
    assert_eq!(rustix::io::write(fd, b"x").expect("write to the pipe"), 1);
}

// ---------------------------------------------------------------------------------------
// Spawn and join
// ---------------------------------------------------------------------------------------

/// A panic payload that is neither `&str` nor `String`.
#[derive(Debug, PartialEq)]
struct Payload(u32);

spindle::local! {
    static SPAWNS_IN_DTOR: std::cell::RefCell<Option<SpawnInDrop>> = std::cell::RefCell::new(None);
}

/// On drop, spawns a thread, joins it and reports its result.
struct SpawnInDrop(mpsc::Sender<u32>);

impl Drop for SpawnInDrop {
    fn drop(&mut self) {
        let v = spindle::spawn(|| 40 + 2).join().unwrap();
        self.0.send(v).unwrap();
    }
}

cross_model! {
    fn a_panic_payload_of_any_type_comes_back_from_join(_model) {
        let h = Builder::new()
            .name("payload".into())
            .spawn(|| -> u8 { std::panic::panic_any(Payload(7)) })
            .unwrap();
        let id = h.thread().id();
        wait_until(|| h.is_finished());
        assert_eq!(h.thread().id(), id);
        assert_eq!(h.thread().name(), Some("payload"));
        let payload = h.join().expect_err("the thread panicked");
        assert_eq!(payload.downcast_ref::<Payload>(), Some(&Payload(7)));
    }

    fn join_chains_through_threads_that_are_themselves_joining(_model) {
        // main joins a, a joins b, b joins c; c finishes only once a and b are parked in
        // their joins, so every join really waits.
        let (ids_tx, ids_rx) = mpsc::channel::<spindle::ThreadId>();
        let a = spindle::spawn(move || {
            let ids_tx2 = ids_tx.clone();
            let b = spindle::spawn(move || {
                let c = spindle::spawn(move || {
                    let (a, b) = (ids_rx.recv().unwrap(), ids_rx.recv().unwrap());
                    wait_until_parked(a, WaitReason::Join);
                    wait_until_parked(b, WaitReason::Join);
                    1u64
                });
                ids_tx2.send(spindle::current().id()).unwrap();
                c.join().unwrap() + 10
            });
            ids_tx.send(spindle::current().id()).unwrap();
            b.join().unwrap() + 100
        });
        assert_eq!(a.join().unwrap(), 111);
    }

    fn a_thread_spawned_from_a_panicking_threads_destructor_runs(_model) {
        struct OnUnwind(mpsc::Sender<u32>);
        impl Drop for OnUnwind {
            fn drop(&mut self) {
                assert!(std::thread::panicking());
                let child = spindle::spawn(|| {
                    spindle::yield_now();
                    spindle::sleep(Duration::from_millis(1));
                    5u32
                });
                self.0.send(child.join().unwrap()).unwrap();
            }
        }
        let (tx, rx) = mpsc::channel();
        let h = spindle::spawn(move || {
            let _guard = OnUnwind(tx);
            std::panic::panic_any(Payload(3));
        });
        let payload = h.join().expect_err("panicked");
        assert_eq!(payload.downcast_ref::<Payload>(), Some(&Payload(3)));
        assert_eq!(rx.try_recv(), Ok(5), "the destructor's child ran before the join returned");
    }

    fn a_spindle_local_destructor_may_spawn_and_join(_model) {
        let (tx, rx) = mpsc::channel();
        let h = spindle::spawn(move || {
            SPAWNS_IN_DTOR.with_borrow_mut(|v| *v = Some(SpawnInDrop(tx)));
        });
        h.join().unwrap();
        assert_eq!(rx.try_recv(), Ok(42), "the local's destructor ran before the join returned");
    }

    fn builder_rejects_out_of_range_stack_sizes_with_an_error(model) {
        // usize::MAX cannot be a stack in any model; it must be an error, never a panic.
        let err = Builder::new().stack_size(usize::MAX).spawn(|| ()).unwrap_err();
        assert!(!err.to_string().is_empty());
        for size in [0usize, 1] {
            match Builder::new().stack_size(size).spawn(|| 9) {
                Ok(h) => {
                    // std rounds a kernel thread's tiny stack up to the minimum.
                    assert_eq!(model, Model::OneToOne, "a green stack of {size} bytes");
                    assert_eq!(h.join().unwrap(), 9);
                }
                Err(e) => {
                    assert_ne!(model, Model::OneToOne);
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
                    assert!(e.to_string().contains("stack"), "{e}");
                }
            }
        }
        // A failed scoped spawn leaves the scope's count alone: the scope returns.
        let borrowed = 5;
        let n = spindle::scope(|s| {
            assert!(Builder::new().stack_size(usize::MAX).spawn_scoped(s, || borrowed).is_err());
            s.spawn(|| borrowed + 1).join().unwrap()
        });
        assert_eq!(n, 6);
    }

    fn nested_scopes_borrow_from_every_level_and_a_joined_panic_stays_inside(_model) {
        let outer = [1u64, 2, 3];
        let total = AtomicU64::new(0);
        spindle::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let inner = [10u64, 20];
                    spindle::scope(|s2| {
                        s2.spawn(|| total.fetch_add(outer.iter().sum::<u64>(), SeqCst));
                        s2.spawn(|| total.fetch_add(inner.iter().sum::<u64>(), SeqCst));
                        let bad = s2.spawn(|| -> u8 { std::panic::panic_any(Payload(1)) });
                        assert!(bad.join().is_err());
                    });
                });
            }
        });
        assert_eq!(total.load(SeqCst), 2 * (6 + 30));
    }

    fn a_panicking_scope_body_still_waits_for_its_threads(_model) {
        // The body panics while its thread is not finished; a kernel helper releases the
        // thread only once it is parked. The scope must wait for it before unwinding on.
        let finished = AtomicBool::new(false);
        let go = Arc::new(AtomicBool::new(false));
        let (thread_tx, thread_rx) = mpsc::channel::<spindle::Thread>();
        let helper = {
            let go = go.clone();
            std::thread::spawn(move || {
                let t = thread_rx.recv().unwrap();
                wait_until_parked(t.id(), WaitReason::Park);
                go.store(true, SeqCst);
                t.unpark();
            })
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            spindle::scope(|s| {
                let h = s.spawn(|| {
                    while !go.load(SeqCst) {
                        spindle::park();
                    }
                    finished.store(true, SeqCst);
                });
                thread_tx.send(h.thread().clone()).unwrap();
                std::panic::panic_any(Payload(9));
            })
        }));
        let payload = outcome.expect_err("the body panicked");
        assert_eq!(payload.downcast_ref::<Payload>(), Some(&Payload(9)));
        assert!(finished.load(SeqCst), "scope returned before its thread finished");
        join_kernel(helper);
    }

    fn unparks_from_many_kernel_threads_coalesce_into_one_token(_model) {
        let me = spindle::current();
        let ks: Vec<_> = (0..4)
            .map(|_| {
                let me = me.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        me.unpark();
                    }
                })
            })
            .collect();
        for k in ks {
            join_kernel(k);
        }
        // One token: the first park returns at once...
        spindle::park();
        // ...and no second one is left (a spurious return is allowed, so loop to the end).
        let timeout = Duration::from_millis(20);
        let start = Instant::now();
        while start.elapsed() < timeout {
            spindle::park_timeout(timeout.saturating_sub(start.elapsed()));
        }
        assert!(start.elapsed() >= timeout);
    }

    fn an_unpark_before_the_thread_starts_is_kept_and_one_after_it_ends_is_harmless(_model) {
        // Unparked at once, before it can have run (in many-to-one it cannot run before
        // this thread switches): its first park must return on that token.
        let h = spindle::spawn(|| {
            spindle::park();
            spindle::current().id()
        });
        h.thread().unpark();
        let id = h.thread().id();
        assert_eq!(h.join().unwrap(), id);
        // A parked thread is not finished; unparking a finished thread (through a handle
        // kept from its JoinHandle) does nothing.
        let go = Arc::new(AtomicBool::new(false));
        let g = go.clone();
        let h = spindle::spawn(move || {
            while !g.load(SeqCst) {
                spindle::park();
            }
        });
        wait_until_parked(h.thread().id(), WaitReason::Park);
        assert!(!h.is_finished());
        let t = h.thread().clone();
        go.store(true, SeqCst);
        t.unpark();
        h.join().unwrap();
        t.unpark();
        t.unpark();
    }

    fn park_unpark_ping_pong_with_a_kernel_thread_mixing_timeouts(_model) {
        let _dog = Watchdog::new("park_unpark_ping_pong", Duration::from_secs(30));
        const ROUNDS: u64 = 5_000;
        let to_green = Arc::new(AtomicU64::new(0));
        let to_kernel = Arc::new(AtomicU64::new(0));
        let green = spindle::current();
        let (kernel_tx, kernel_rx) = mpsc::channel::<spindle::Thread>();
        let k = {
            let (to_green, to_kernel) = (to_green.clone(), to_kernel.clone());
            std::thread::spawn(move || {
                kernel_tx.send(spindle::current()).unwrap();
                for r in 1..=ROUNDS {
                    to_green.store(r, SeqCst);
                    green.unpark();
                    while to_kernel.load(SeqCst) < r {
                        if r % 2 == 0 {
                            spindle::park();
                        } else {
                            spindle::park_timeout(Duration::from_micros(r % 7));
                        }
                    }
                }
            })
        };
        let kernel = kernel_rx.recv().unwrap();
        for r in 1..=ROUNDS {
            // Timeouts of 0 to 40 µs leave stale timers behind that fire during later
            // parks, some of them plain parks (every third round): those must only
            // return on the unpark, and the unpark must never be lost.
            while to_green.load(SeqCst) < r {
                if r % 3 == 0 {
                    spindle::park();
                } else {
                    spindle::park_timeout(Duration::from_micros(r % 41));
                }
            }
            to_kernel.store(r, SeqCst);
            kernel.unpark();
        }
        join_kernel(k);
    }

    fn park_timeouts_of_zero_max_and_huge_durations(model) {
        // Zero: returns, after consuming a waiting token (as std's does, on a kernel thread
        // too).
        spindle::park_timeout(Duration::ZERO);
        spindle::current().unpark();
        spindle::park_timeout(Duration::ZERO);
        // The token is gone: a 10 ms park waits it out.
        let start = Instant::now();
        spindle::park_timeout(Duration::from_millis(10));
        assert!(
            start.elapsed() >= Duration::from_millis(10),
            "a token was left in {model}"
        );
        // Durations that overflow an Instant, or nearly: they act as a plain park and an
        // unpark ends them.
        for timeout in [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            Duration::from_secs(u64::MAX / 4),
            Duration::from_secs(1 << 40),
        ] {
            let h = spindle::spawn(move || spindle::park_timeout(timeout));
            wait_until_parked(h.thread().id(), WaitReason::Park);
            h.thread().unpark();
            h.join().unwrap_or_else(|_| panic!("park_timeout({timeout:?}) panicked"));
        }
    }

    fn sleep_zero_returns_and_an_unpark_does_not_cut_a_sleep_short(_model) {
        spindle::sleep(Duration::ZERO);
        let d = Duration::from_millis(30);
        let h = spindle::spawn(move || {
            let start = Instant::now();
            spindle::sleep(d);
            let slept = start.elapsed();
            // The unpark left its token: this returns at once.
            spindle::park();
            slept
        });
        wait_until_parked(h.thread().id(), WaitReason::Sleep);
        h.thread().unpark();
        h.thread().unpark();
        let slept = h.join().unwrap();
        assert!(slept >= d, "slept {slept:?} of {d:?}");
    }

    fn a_yielding_spinner_does_not_starve_sleepers_or_remote_wakeups(_model) {
        let _dog = Watchdog::new("yielding_spinner", Duration::from_secs(30));
        let done = Arc::new(AtomicUsize::new(0));
        let spinner = {
            let done = done.clone();
            spindle::spawn(move || {
                let mut spins = 0u64;
                while done.load(SeqCst) < 2 {
                    spindle::yield_now();
                    spins += 1;
                }
                spins
            })
        };
        let sleeper = {
            let done = done.clone();
            spindle::spawn(move || {
                for _ in 0..5 {
                    spindle::sleep(Duration::from_millis(1));
                }
                done.fetch_add(1, SeqCst);
            })
        };
        let parker = {
            let done = done.clone();
            spindle::spawn(move || {
                spindle::park();
                done.fetch_add(1, SeqCst);
            })
        };
        let id = parker.thread().id();
        let t = parker.thread().clone();
        let k = std::thread::spawn(move || {
            wait_until_parked(id, WaitReason::Park);
            t.unpark();
        });
        sleeper.join().unwrap();
        parker.join().unwrap();
        join_kernel(k);
        spinner.join().unwrap();
    }

    fn current_is_stable_and_ids_are_unique(model) {
        let me = spindle::current();
        assert_eq!(me.id(), spindle::current().id());
        if model != Model::OneToOne {
            assert_eq!(me.name(), Some("main"), "block_on's root thread");
        }
        // Ids from spawns on several kernel threads (each reserves its own block) and on
        // this thread never collide, and each handle's id is the thread's own.
        let ks: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..300)
                        .map(|_| {
                            let h = spindle::spawn(|| spindle::current().id());
                            let id = h.thread().id();
                            assert_eq!(h.join().unwrap(), id);
                            id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut ids: Vec<_> = (0..300)
            .map(|_| {
                let h = spindle::spawn(|| spindle::current().id());
                let id = h.thread().id();
                assert_eq!(h.join().unwrap(), id);
                id
            })
            .collect();
        for k in ks {
            ids.extend(join_kernel(k));
        }
        ids.push(me.id());
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "a thread id was handed out twice");
    }
}

/// std counts panics per kernel thread. A green thread whose destructor parks while it
/// unwinds from a panic (as the destructors above do when they spawn and join, or as any
/// destructor that takes a spindle lock may) leaves that count raised on its worker's
/// kernel thread while the worker runs other green threads: `std::thread::panicking()`
/// is then true in threads that never panicked, and a `spindle::sync::Mutex` such a
/// thread unlocks is poisoned (`sync/poison.rs` decides with `std::thread::panicking()`).
///
/// Here B takes a lock and parks; A panics and parks in a destructor; B, woken, releases
/// the lock. B never panicked.
#[test]
#[ignore = "BUG: a green thread parked mid-unwind makes std::thread::panicking() true for \
            the other green threads of its worker, which then poison the spindle Mutexes \
            they unlock (the worker does not switch std's per-kernel-thread panic count)"]
fn one_green_threads_unwinding_does_not_leak_into_the_others_on_its_worker() {
    struct ParkOnUnwind;
    impl Drop for ParkOnUnwind {
        fn drop(&mut self) {
            spindle::park();
        }
    }
    common::run(Model::ManyToOne, || {
        let m = Arc::new(spindle::sync::Mutex::new(0u32));
        let m2 = m.clone();
        let b = spindle::spawn(move || {
            let mut g = m2.lock().unwrap();
            spindle::park();
            *g += 1;
            let seen = std::thread::panicking();
            drop(g);
            seen
        });
        wait_until_parked(b.thread().id(), WaitReason::Park);
        let a = spindle::spawn(|| {
            let _p = ParkOnUnwind;
            std::panic::panic_any(Payload(1));
        });
        wait_until_parked(a.thread().id(), WaitReason::Park);
        b.thread().unpark();
        let b_saw_a_panic = b.join().unwrap();
        a.thread().unpark();
        assert!(a.join().is_err());
        let poisoned = m.is_poisoned();
        assert!(
            !b_saw_a_panic && !poisoned,
            "in a green thread that never panicked, std::thread::panicking() was \
             {b_saw_a_panic}, and the Mutex it released normally is poisoned: {poisoned}"
        );
    });
}

/// A destructor that spawns, in a thread cancelled by a runtime drop: `Builder::spawn`
/// must give an error (the runtime is gone), not panic, which would abort the process
/// during the forced unwind.
#[test]
fn a_destructor_of_a_cancelled_thread_gets_an_error_from_spawn() {
    struct TrySpawn(mpsc::Sender<String>);
    impl Drop for TrySpawn {
        fn drop(&mut self) {
            let outcome = match Builder::new().spawn(|| ()) {
                Ok(h) => format!("spawned: {:?}", h.join().map_err(|_| ())),
                Err(e) => e.to_string(),
            };
            self.0.send(outcome).unwrap();
        }
    }
    for model in GREEN_MODELS {
        let rt = build(model);
        let (tx, rx) = mpsc::channel();
        let h = rt.spawn(move || {
            let _guard = TrySpawn(tx);
            spindle::park();
        });
        wait_until_parked(h.thread().id(), WaitReason::Park);
        within(Duration::from_secs(20), move || drop(rt)).expect("drop hung");
        assert_cancelled(h.join(), "the parked thread");
        let outcome = rx.try_recv().expect("the destructor ran");
        assert!(
            outcome.contains("runtime has been dropped"),
            "{model}: {outcome}"
        );
    }
}

/// A spawn from a std thread-local's destructor on a plain kernel thread makes a kernel
/// thread (no runtime is entered there any more) that runs and can be joined.
#[test]
fn a_std_thread_local_destructor_may_spawn_and_join() {
    struct SpawnOnExit(mpsc::Sender<(bool, u32)>);
    impl Drop for SpawnOnExit {
        fn drop(&mut self) {
            let h = spindle::spawn(|| (spindle::current().is_green(), 7));
            self.0.send(h.join().unwrap()).unwrap();
        }
    }
    thread_local! {
        static ON_EXIT: std::cell::RefCell<Option<SpawnOnExit>> = const { std::cell::RefCell::new(None) };
    }
    for model in [None, Some(Model::OneToOne)] {
        let (tx, rx) = mpsc::channel();
        let body = move || ON_EXIT.with(|v| *v.borrow_mut() = Some(SpawnOnExit(tx)));
        match model {
            None => std::thread::spawn(body).join().unwrap(),
            Some(m) => {
                let rt = build(m);
                rt.block_on(|| spindle::spawn(body).join().unwrap());
            }
        }
        let got = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the destructor's spawn ran");
        assert_eq!(got, (false, 7));
    }
}

/// std's `JoinHandle::join` returns once the thread has exited, so the destructors of its
/// std thread-locals have run: a thread-local that flushes a buffer on exit is flushed
/// when `join` returns. spindle's kernel threads (one-to-one, and `spindle::spawn`
/// outside any runtime) are documented to behave "as in `std::thread`"; their `join` used
/// to return when the closure's result was published, before the kernel thread's
/// thread-local destructors had run (it is now published from a thread-local destructor
/// registered first, `sched/one_to_one.rs`).
///
/// The destructor below waits (up to 300 ms) for a message the joiner sends only after
/// its `join` has returned: with std's semantics `join` cannot return before the
/// destructor is done, so the flag is set when it is read.
#[test]
fn join_of_a_kernel_thread_waits_for_its_std_thread_local_destructors() {
    struct Flush {
        done: Arc<AtomicBool>,
        release: mpsc::Receiver<()>,
    }
    impl Drop for Flush {
        fn drop(&mut self) {
            let _ = self.release.recv_timeout(Duration::from_millis(300));
            self.done.store(true, SeqCst);
        }
    }
    thread_local! {
        static BUFFER: std::cell::RefCell<Option<Flush>> = const { std::cell::RefCell::new(None) };
    }
    /// Whether the thread-local was flushed when `join` returned, for a thread made by
    /// std (`std_thread`) or by `spindle::spawn`.
    fn flushed_when_joined(std_thread: bool) -> bool {
        let done = Arc::new(AtomicBool::new(false));
        let (release_tx, release) = mpsc::channel();
        let d = done.clone();
        let body = move || BUFFER.with(|b| *b.borrow_mut() = Some(Flush { done: d, release }));
        if std_thread {
            std::thread::spawn(body).join().unwrap();
        } else {
            spindle::spawn(body).join().unwrap();
        }
        let flushed = done.load(SeqCst);
        let _ = release_tx.send(());
        flushed
    }
    assert!(flushed_when_joined(true), "the control: std");
    let outside = flushed_when_joined(false);
    let one_to_one = build(Model::OneToOne).block_on(|| flushed_when_joined(false));
    assert!(
        outside && one_to_one,
        "join returned before the thread-local's destructor ran: outside a runtime: {}, \
         one-to-one: {}",
        !outside,
        !one_to_one
    );
}

/// The other side of the join above: std's scope counts a thread as done when its closure
/// has ended, before its thread-locals' destructors, so a destructor may wait for what the
/// scope's owner does after the scope. A spindle scope of kernel threads must not wait for
/// those destructors either (it did, for a while, and deadlocked where std does not).
#[test]
fn a_scope_does_not_wait_for_the_std_thread_local_destructors_of_its_threads() {
    struct WaitsForOwner {
        release: mpsc::Receiver<()>,
        report: mpsc::Sender<bool>,
    }
    impl Drop for WaitsForOwner {
        fn drop(&mut self) {
            let got = self.release.recv_timeout(Duration::from_secs(10)).is_ok();
            let _ = self.report.send(got);
        }
    }
    thread_local! {
        static WAITER: std::cell::RefCell<Option<WaitsForOwner>> =
            const { std::cell::RefCell::new(None) };
    }
    /// Whether the destructor got the owner's release, sent after the scope returned.
    fn scope_then_release(std_scope: bool) -> bool {
        let (release_tx, release) = mpsc::channel();
        let (report, report_rx) = mpsc::channel();
        let body =
            move || WAITER.with(|w| *w.borrow_mut() = Some(WaitsForOwner { release, report }));
        if std_scope {
            std::thread::scope(|s| {
                s.spawn(body);
            });
        } else {
            spindle::scope(|s| {
                s.spawn(body);
            });
        }
        let _ = release_tx.send(());
        report_rx.recv().unwrap()
    }
    assert!(scope_then_release(true), "the control: std");
    let outside = scope_then_release(false);
    let one_to_one = build(Model::OneToOne).block_on(|| scope_then_release(false));
    assert!(
        outside && one_to_one,
        "the scope waited for a scoped thread's thread-local destructor: outside a \
         runtime: {}, one-to-one: {}",
        !outside,
        !one_to_one
    );
}

/// A detached thread's result is dropped on the thread as its closure ends, while its
/// thread-locals live (std drops it there too): a result whose destructor uses one of the
/// thread's thread-locals finds it.
#[test]
fn a_detached_kernel_threads_result_is_dropped_while_its_thread_locals_live() {
    thread_local! {
        static TRACE: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    struct Res(mpsc::Sender<bool>);
    impl Drop for Res {
        fn drop(&mut self) {
            let alive = TRACE.try_with(|t| t.borrow_mut().push(1)).is_ok();
            let _ = self.0.send(alive);
        }
    }
    fn sees_its_thread_locals(std_thread: bool) -> bool {
        let (go_tx, go) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let body = move || {
            TRACE.with(|t| t.borrow_mut().push(0));
            go.recv().unwrap();
            Res(tx)
        };
        if std_thread {
            drop(std::thread::spawn(body));
        } else {
            drop(spindle::spawn(body));
        }
        go_tx.send(()).unwrap();
        rx.recv_timeout(Duration::from_secs(20)).unwrap()
    }
    assert!(sees_its_thread_locals(true), "the control: std");
    let outside = sees_its_thread_locals(false);
    let one_to_one = build(Model::OneToOne).block_on(|| sees_its_thread_locals(false));
    assert!(
        outside && one_to_one,
        "the result was dropped after the thread's thread-locals: outside a runtime: {}, \
         one-to-one: {}",
        !outside,
        !one_to_one
    );
}

/// A handle dropped after a kernel thread's closure ended but before the thread exited
/// (its result stored, the joiner not told yet) drops the result on the handle's own
/// thread, as std's does; the exiting thread then leaves it alone.
#[test]
fn a_handle_dropped_between_a_kernel_threads_closure_and_its_exit_drops_the_result() {
    /// Held by the thread's thread-local: says that the thread is tearing its
    /// thread-locals down (its closure's result is stored by then), then waits.
    struct Hold(mpsc::Sender<()>, mpsc::Receiver<()>);
    impl Drop for Hold {
        fn drop(&mut self) {
            let _ = self.0.send(());
            let _ = self.1.recv_timeout(Duration::from_secs(20));
        }
    }
    thread_local! {
        static HOLD: std::cell::RefCell<Option<Hold>> = const { std::cell::RefCell::new(None) };
    }
    struct Res(mpsc::Sender<std::thread::ThreadId>);
    impl Drop for Res {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().id());
        }
    }
    for model in [None, Some(Model::OneToOne)] {
        let run = || {
            let (release_tx, release) = mpsc::channel();
            let (tx, rx) = mpsc::channel();
            let (tearing_down_tx, tearing_down) = mpsc::channel();
            let h = spindle::spawn(move || {
                HOLD.with(|h| *h.borrow_mut() = Some(Hold(tearing_down_tx, release)));
                Res(tx)
            });
            tearing_down.recv().unwrap();
            assert!(
                !h.is_finished(),
                "joinable only once the thread-locals are gone"
            );
            drop(h);
            let dropped_on = rx.recv_timeout(Duration::from_secs(20)).unwrap();
            release_tx.send(()).unwrap();
            (dropped_on, std::thread::current().id())
        };
        let (dropped_on, handle_thread) = match model {
            None => run(),
            Some(m) => build(m).block_on(run),
        };
        assert_eq!(dropped_on, handle_thread, "{model:?}");
    }
}

/// A name with a NUL byte fails `Builder::spawn` with `InvalidInput` naming the cause, in
/// every model alike, and nothing is left listed. (It used to be accepted by the green
/// models, while in one-to-one std's builder panicked and the runtime kept listing the
/// thread that was never made.)
#[test]
fn a_name_with_a_nul_byte_fails_cleanly_in_every_model() {
    for model in common::MODELS {
        let rt = build(model);
        let marker = format!("nul\0name-{model}");
        let m = marker.clone();
        let err = rt
            .block_on(move || Builder::new().name(m).spawn(|| ()).map(|h| h.join()))
            .expect_err("a NUL byte in a thread name is refused");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidInput,
            "{model}: {err}"
        );
        assert!(err.to_string().contains("NUL"), "{model}: {err}");
        let phantoms: Vec<_> = spindle::debug::threads()
            .into_iter()
            .filter(|t| t.name.as_deref() == Some(marker.as_str()))
            .map(|t| (t.id, t.state))
            .collect();
        assert!(
            phantoms.is_empty(),
            "{model}: debug::threads() lists {phantoms:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Sleep
// ---------------------------------------------------------------------------------------

/// Sleeping and parked-with-timeout green threads, some with deadlines far away, cost
/// their workers no CPU: measured on each worker's kernel-thread CPU clock over 300 ms.
#[test]
fn sleeping_green_threads_cost_their_workers_no_cpu() {
    let _dog = Watchdog::new("sleeping_cost", Duration::from_secs(30));
    for (model, workers) in [(Model::ManyToOne, 1), (Model::ManyToMany { workers: 2 }, 2)] {
        let rt = build(model);
        let clocks = worker_cpu_clocks(&rt, workers);
        let started = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for i in 0..200u64 {
            let started = started.clone();
            hs.push(rt.spawn(move || {
                started.fetch_add(1, SeqCst);
                match i % 4 {
                    0 => spindle::sleep(Duration::from_secs(3600) + Duration::from_millis(i)),
                    1 => spindle::park_timeout(Duration::from_secs(3600 + i)),
                    2 => spindle::sleep(Duration::from_secs(1 << 40)),
                    _ => spindle::sleep(Duration::MAX),
                }
            }));
        }
        // Wait until every thread is asleep: none runnable, every worker idle.
        let ids: Vec<_> = hs.iter().map(|h| h.thread().id()).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let infos = spindle::debug::threads();
            let asleep = ids
                .iter()
                .filter(|id| {
                    infos
                        .iter()
                        .any(|t| t.id == **id && t.state.wait_reason().is_some())
                })
                .count();
            if asleep == ids.len() {
                break;
            }
            assert!(Instant::now() < deadline, "{model}: only {asleep} asleep");
            std::thread::sleep(Duration::from_millis(1));
        }
        let before: Vec<_> = clocks.iter().map(|&c| cpu_time(c)).collect();
        std::thread::sleep(Duration::from_millis(300)); // the measuring window
        let used: Vec<_> = clocks
            .iter()
            .zip(&before)
            .map(|(&c, &b)| cpu_time(c) - b)
            .collect();
        for (i, u) in used.iter().enumerate() {
            assert!(
                *u < Duration::from_millis(30),
                "{model}: worker {i} used {u:?} of CPU in 300 ms with every thread asleep"
            );
        }
        within(Duration::from_secs(20), move || drop(rt)).expect("drop hung");
        for h in hs {
            assert_cancelled(h.join(), "a sleeper");
        }
    }
}

/// On one worker, sleepers wake strictly in deadline order, whatever the order in which
/// they went to sleep (the timers are one heap).
#[test]
fn many_sleepers_wake_in_deadline_order_on_one_worker() {
    common::run(Model::ManyToOne, || {
        let n = 100u64;
        let base = Instant::now() + Duration::from_millis(20);
        let order = Arc::new(Mutex::new(Vec::new()));
        // A fixed shuffle of 0..n.
        let offsets: Vec<u64> = (0..n).map(|i| (i * 37 + 11) % n).collect();
        let hs: Vec<_> = offsets
            .iter()
            .map(|&k| {
                let order = order.clone();
                spindle::spawn(move || {
                    let target = base + Duration::from_micros(500 * k);
                    spindle::sleep(target.saturating_duration_since(Instant::now()));
                    assert!(Instant::now() >= target);
                    order.lock().unwrap().push(k);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(*order, (0..n).collect::<Vec<_>>());
    });
}

// ---------------------------------------------------------------------------------------
// Yield
// ---------------------------------------------------------------------------------------

/// In many-to-one, a yield lets every other ready thread run before the yielder goes on:
/// one just spawned, and one just woken by an unpark from this thread.
#[test]
fn a_yield_runs_every_other_ready_thread_first() {
    common::run(Model::ManyToOne, || {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let woken = spindle::spawn(move || {
            spindle::park();
            l.lock().unwrap().push("woken");
        });
        wait_until_parked(woken.thread().id(), WaitReason::Park);
        let l = log.clone();
        let fresh = spindle::spawn(move || l.lock().unwrap().push("fresh"));
        woken.thread().unpark();
        spindle::yield_now();
        log.lock().unwrap().push("yielder");
        fresh.join().unwrap();
        woken.join().unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log.last(), Some(&"yielder"), "{log:?}");
        assert_eq!(log.len(), 3, "{log:?}");
    });
}

// ---------------------------------------------------------------------------------------
// Runtime lifetime
// ---------------------------------------------------------------------------------------

/// `block_on` nested on the same runtime, from its own threads, and a runtime reused by
/// many `block_on`s in a row.
#[test]
fn nested_and_repeated_block_on() {
    let _dog = Watchdog::new("nested_block_on", Duration::from_secs(30));
    for model in common::MODELS {
        let rt = build(model);
        let v = rt.block_on(|| {
            let inner = rt.block_on(|| {
                // And from a (scoped) thread spawned by the nested root.
                spindle::scope(|s| s.spawn(|| rt.block_on(|| 1)).join().unwrap()) + 10
            });
            inner + 100
        });
        assert_eq!(v, 111, "{model}");
        for i in 0..200u64 {
            let got = rt.block_on(|| {
                let hs: Vec<_> = (0..5).map(|j| spindle::spawn(move || i + j)).collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            });
            assert_eq!(got, 5 * i + 10);
        }
    }
}

/// Dropping a runtime whose threads park in joins of each other (a chain), in a plain
/// park, a park with a one-hour timeout, a sleep, and a yield loop: every thread is
/// cancelled, its destructors run, and every outside joiner gets `Cancelled`.
#[test]
fn dropping_a_runtime_cancels_joiners_parkers_sleepers_and_yielders() {
    let _dog = Watchdog::new("drop_cancels_all", Duration::from_secs(30));
    for model in GREEN_MODELS {
        let rt = build(model);
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let hs = rt.block_on(move || {
            let guard = || DropCount(d.clone());
            let (g1, g2, g3) = (guard(), guard(), guard());
            let chain = spindle::spawn(move || {
                let _g = g1;
                let b = spindle::spawn(move || {
                    let _g = g2;
                    let c = spindle::spawn(move || {
                        let _g = g3;
                        loop {
                            spindle::park();
                        }
                    });
                    c.join().unwrap();
                });
                b.join().unwrap();
            });
            let g = guard();
            let timed = spindle::spawn(move || {
                let _g = g;
                spindle::park_timeout(Duration::from_secs(3600));
            });
            let g = guard();
            let sleeper = spindle::spawn(move || {
                let _g = g;
                spindle::sleep(Duration::from_secs(3600));
            });
            let g = guard();
            let yielder = spindle::spawn(move || {
                let _g = g;
                loop {
                    spindle::yield_now();
                }
            });
            wait_until_parked(chain.thread().id(), WaitReason::Join);
            wait_until_parked(timed.thread().id(), WaitReason::Park);
            wait_until_parked(sleeper.thread().id(), WaitReason::Sleep);
            vec![chain, timed, sleeper, yielder]
        });
        within(Duration::from_secs(20), move || drop(rt)).expect("runtime drop hung");
        assert_eq!(drops.load(SeqCst), 6, "{model}: every destructor ran");
        for h in hs {
            assert_cancelled(h.join(), "an outside joiner");
        }
    }
}

/// The runtime docs: drop "returns ... at once when called from one of the runtime's own
/// green threads (the worker then cancels the rest as soon as that thread switches)".
/// In many-to-many it used to deadlock: `GreenRuntime::drop` joined the *other* workers'
/// kernel threads from the green thread, which holds its own worker, and another worker
/// with a started thread left waited in `CancelOrder::wait_turn` for this worker to
/// publish its youngest thread, which it never did while blocked in that drop.
///
/// Here a thread parks on one worker and the runtime is dropped from a green thread on
/// the other (the parker holds its worker, spinning, until the dropper has started, so
/// they are on different workers).
#[test]
fn dropping_a_many_to_many_runtime_from_its_own_green_thread_returns() {
    let rt = build(Model::ManyToMany { workers: 2 });
    let slot: Arc<Mutex<Option<Runtime>>> = Arc::new(Mutex::new(None));
    let dropper_started = Arc::new(AtomicBool::new(false));
    let parker_running = Arc::new(AtomicBool::new(false));
    let parker = {
        let (started, running) = (dropper_started.clone(), parker_running.clone());
        rt.spawn(move || {
            running.store(true, SeqCst);
            while !started.load(SeqCst) {
                std::hint::spin_loop();
            }
            loop {
                spindle::park();
            }
        })
    };
    while !parker_running.load(SeqCst) {
        std::thread::yield_now();
    }
    let (tx, rx) = mpsc::channel();
    let parker_id = parker.thread().id();
    {
        let slot = slot.clone();
        rt.spawn(move || {
            dropper_started.store(true, SeqCst);
            let me = spindle::runtime::worker_index().unwrap();
            wait_until_parked(parker_id, WaitReason::Park);
            let rt = loop {
                if let Some(rt) = slot.lock().unwrap().take() {
                    break rt;
                }
                spindle::sleep(Duration::from_millis(1));
            };
            drop(rt);
            tx.send(me).unwrap();
        });
    }
    *slot.lock().unwrap() = Some(rt);
    let dropped = rx.recv_timeout(Duration::from_secs(10));
    assert!(
        dropped.is_ok(),
        "the drop from a green thread never returned (deadlock)"
    );
    assert_cancelled(parker.join(), "the parked thread");
}

/// The documented case in many-to-one: a drop from one of the runtime's own green
/// threads returns at once, and the worker cancels the rest (a parked thread, and the
/// dropper itself at its next switch).
#[test]
fn dropping_a_many_to_one_runtime_from_its_own_green_thread_returns() {
    let _dog = Watchdog::new("drop_from_inside_m1", Duration::from_secs(30));
    let rt = build(Model::ManyToOne);
    let drops = Arc::new(AtomicUsize::new(0));
    let g = DropCount(drops.clone());
    let parker = rt.spawn(move || {
        let _g = g;
        spindle::park();
    });
    let slot = Arc::new(Mutex::new(Some(rt)));
    let s = slot.clone();
    let g = DropCount(drops.clone());
    let (tx, rx) = mpsc::channel();
    let parker_id = parker.thread().id();
    let dropper = slot.lock().unwrap().as_ref().unwrap().spawn(move || {
        let _g = g;
        wait_until_parked(parker_id, WaitReason::Park);
        let rt = s.lock().unwrap().take().unwrap();
        drop(rt);
        tx.send(()).unwrap();
        // The worker cancels this thread when it switches.
        spindle::yield_now();
        unreachable!("resumed after its runtime was dropped");
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the drop returned");
    assert_cancelled(parker.join(), "the parked thread");
    assert_cancelled(dropper.join(), "the dropper");
    assert_eq!(drops.load(SeqCst), 2);
}

/// A drop while a green thread sits in a raw blocking call cannot interrupt it: it waits
/// for the call to return, then cancels that thread and the others. (The other worker's
/// parked thread is not cancelled before that either: workers cancel youngest first in
/// turns, and the stuck worker cannot take its turn; `sched/README.md`.)
#[test]
fn dropping_a_runtime_while_a_thread_is_in_a_raw_blocking_call() {
    let _dog = Watchdog::new("drop_during_raw_call", Duration::from_secs(30));
    let rt = build(Model::ManyToMany { workers: 2 });
    let (r, w) = pipe();
    let drops = Arc::new(AtomicUsize::new(0));
    let (in_call_tx, in_call_rx) = mpsc::channel();
    let g = DropCount(drops.clone());
    let blocked = rt.spawn(move || {
        let _g = g;
        in_call_tx.send(()).unwrap();
        assert!(raw_wait_readable(&r, Duration::from_secs(20)));
        loop {
            spindle::park();
        }
    });
    in_call_rx.recv().unwrap();
    let g = DropCount(drops.clone());
    let other = rt.spawn(move || {
        let _g = g;
        spindle::park();
    });
    wait_until_parked(other.thread().id(), WaitReason::Park);
    let dropping = std::thread::spawn(move || drop(rt));
    write_byte(&w);
    dropping.join().unwrap();
    assert_cancelled(other.join(), "the parked thread");
    assert_cancelled(blocked.join(), "the thread that was in a raw call");
    assert_eq!(drops.load(SeqCst), 2);
}

// ---------------------------------------------------------------------------------------
// Many-to-many: a worker stuck in a raw blocking call
// ---------------------------------------------------------------------------------------

/// A thread spawns 32 children (queued on its own worker, unstarted) and then blocks its
/// worker in a raw read; the other worker must take them all. The last child to finish
/// writes the byte the reader waits for, so a child left behind means a timeout.
#[test]
fn unstarted_children_escape_a_worker_stuck_in_a_raw_read() {
    let _dog = Watchdog::new("children_escape", Duration::from_secs(30));
    let rt = build(Model::ManyToMany { workers: 2 });
    rt.block_on(|| {
        let (r, w) = pipe();
        let w = Arc::new(w);
        let n = 32;
        let done = Arc::new(AtomicUsize::new(0));
        let me = spindle::runtime::worker_index().unwrap();
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let (done, w) = (done.clone(), w.clone());
                spindle::spawn(move || {
                    spindle::sleep(Duration::from_millis(1));
                    spindle::yield_now();
                    if done.fetch_add(1, SeqCst) + 1 == n {
                        write_byte(&w);
                    }
                    spindle::runtime::worker_index().unwrap()
                })
            })
            .collect();
        assert!(
            raw_wait_readable(&r, Duration::from_secs(20)),
            "only {} of {n} children ran while their worker was stuck",
            done.load(SeqCst)
        );
        for h in hs {
            assert_ne!(h.join().unwrap(), me, "a child ran on the stuck worker");
        }
    });
}

/// While one worker is stuck in a raw read, threads spawned from outside the runtime run
/// on the other, and a kernel thread can join them.
#[test]
fn outside_spawns_run_while_a_worker_is_stuck() {
    let _dog = Watchdog::new("outside_spawns", Duration::from_secs(30));
    let rt = build(Model::ManyToMany { workers: 2 });
    let (r, w) = pipe();
    let (stuck_tx, stuck_rx) = mpsc::channel();
    let stuck = rt.spawn(move || {
        stuck_tx
            .send(spindle::runtime::worker_index().unwrap())
            .unwrap();
        raw_wait_readable(&r, Duration::from_secs(20))
    });
    let stuck_worker = stuck_rx.recv().unwrap();
    for round in 0..20u64 {
        let hs: Vec<_> = (0..10u64)
            .map(|i| {
                rt.spawn(move || {
                    spindle::yield_now();
                    (spindle::runtime::worker_index().unwrap(), round * i)
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            let (worker, v) = h.join().unwrap();
            assert_ne!(worker, stuck_worker);
            assert_eq!(v, round * i as u64);
        }
    }
    write_byte(&w);
    assert!(stuck.join().unwrap());
}

// ---------------------------------------------------------------------------------------
// checkpoint()
// ---------------------------------------------------------------------------------------

/// A green thread that computes with `checkpoint()` in its loop lets a sleeper on the
/// same worker wake and finish. (Sleep gives no upper bound, and a busy worker looks at
/// its timers only every 64 switches, so with one spinner this takes up to 64 slices.)
#[test]
fn a_checkpointing_spinner_lets_a_sleeper_on_its_worker_finish() {
    let _dog = Watchdog::new("checkpoint_sleeper", Duration::from_secs(30));
    let rt = Runtime::builder()
        .model(Model::ManyToOne)
        .time_slice(Duration::from_millis(1))
        .build()
        .unwrap();
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let spinner = spindle::spawn(move || {
            let mut n = 0u64;
            while !s.load(SeqCst) {
                n = n.wrapping_add(1);
                spindle::checkpoint();
            }
            n
        });
        let s = stop.clone();
        let sleeper = spindle::spawn(move || {
            for _ in 0..3 {
                spindle::sleep(Duration::from_millis(1));
            }
            s.store(true, SeqCst);
        });
        sleeper.join().unwrap();
        assert!(spinner.join().unwrap() > 0);
    });
}

/// `checkpoint()`'s doc: calling it in a loop "lets the others run every time slice". A
/// thread whose sleep has ended is one of the others. A busy worker looks at its timers
/// every 64 switches (`sched/worker.rs`, `TIMER_CHECK_INTERVAL`), and behind a
/// checkpointing computation a switch comes once per slice: with the default 10 ms slice a
/// `sleep(1 ms)` used to last about a second (0.95 to 1.0 s), 64 slices. The worker now
/// also looks after a used-up slice. The bound asserted is 20 slices.
#[test]
fn a_sleeper_behind_a_checkpointing_computation_wakes_within_a_few_slices() {
    let _dog = Watchdog::new("sleeper_behind_checkpoint", Duration::from_secs(30));
    common::run(Model::ManyToOne, || {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let computation = spindle::spawn(move || {
            while !s.load(SeqCst) {
                spindle::checkpoint();
            }
        });
        let s = stop.clone();
        let sleeper = spindle::spawn(move || {
            let slept: Vec<_> = (0..3)
                .map(|_| {
                    let start = Instant::now();
                    spindle::sleep(Duration::from_millis(1));
                    start.elapsed()
                })
                .collect();
            s.store(true, SeqCst);
            slept
        });
        let slept = sleeper.join().unwrap();
        computation.join().unwrap();
        let bound = 20 * spindle::runtime::DEFAULT_TIME_SLICE;
        assert!(
            slept.iter().all(|d| *d < bound),
            "sleep(1 ms) lasted {slept:?} behind a checkpointing computation (bound {bound:?})"
        );
    });
}

/// `runtime::Builder::stall_threshold`'s doc: when a worker is held longer than the
/// threshold, "in many-to-many the other workers then take the stuck worker's unstarted
/// threads at once" (the README says the same). Asleep, they do (the monitor wakes one).
/// A busy one used to look at other workers' queues only when it had nothing of its own
/// (`Worker::idle`), so while it ran a computation that calls `checkpoint()` (always
/// runnable), the stuck worker's unstarted thread waited for the raw call to end; now
/// the monitor's `help_wanted` flag makes it steal at its next look at its timers.
///
/// Here the root (on worker A) starts a computation that B takes (the root holds A until
/// it runs), spawns a child onto A, and blocks A in a raw poll on a pipe for up to 3 s;
/// the child writes the pipe.
#[test]
fn unstarted_threads_of_a_stuck_worker_are_taken_by_a_busy_worker() {
    let _dog = Watchdog::new("busy_worker_steals", Duration::from_secs(30));
    let rt = build(Model::ManyToMany { workers: 2 });
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicBool::new(false));
        let (s, r) = (stop.clone(), running.clone());
        let computation = spindle::spawn(move || {
            r.store(true, SeqCst);
            let mut n = 0u64;
            while !s.load(SeqCst) {
                n = n.wrapping_add(1);
                spindle::checkpoint();
            }
            n
        });
        while !running.load(SeqCst) {
            std::hint::spin_loop();
        }
        let (r, w) = pipe();
        let child = spindle::spawn(move || write_byte(&w));
        let ran = raw_wait_readable(&r, Duration::from_secs(3));
        stop.store(true, SeqCst);
        child.join().unwrap();
        computation.join().unwrap();
        assert!(
            ran,
            "the stuck worker's unstarted child did not run in 3 s on the busy worker"
        );
    });
}

/// Extreme monitor settings (every duration `Duration::MAX`) build, and a runtime with
/// them runs, sleeps and checkpoints without an overflow.
#[test]
fn extreme_monitor_settings_do_not_overflow() {
    for model in GREEN_MODELS {
        let rt = Runtime::builder()
            .model(model)
            .time_slice(Duration::MAX)
            .stall_threshold(Duration::MAX)
            .report_all_asleep(Some(Duration::MAX))
            .build()
            .unwrap();
        let v = rt.block_on(|| {
            spindle::sleep(Duration::from_millis(2));
            let mut n = 0u64;
            for i in 0..10_000u64 {
                n = n.wrapping_add(i);
                spindle::checkpoint();
            }
            spindle::spawn(move || n).join().unwrap()
        });
        assert_eq!(v, (0..10_000u64).sum::<u64>());
    }
}
