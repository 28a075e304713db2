//! The opt-in migration of started threads: a green thread stuck in a raw blocking call
//! no longer holds up the ready threads queued on its worker. The stuck thread reads a
//! pipe that only the ticker writes, after ticking, and the ticker was started on the
//! same worker: without the hand-off of the worker to a new kernel thread this never
//! finishes (a `poll` deadline turns that into a failure instead of a hang).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use spindle::{Model, Runtime};

fn migrating(model: Model) -> Runtime {
    let builder = Runtime::builder().model(model);
    // SAFETY: the threads of these tests hold no borrow of std thread-local storage
    // across a switch.
    unsafe { builder.migrate_started_threads(true) }
        .build()
        .unwrap()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe()");
    // SAFETY: pipe(2) succeeded, so both are open descriptors we now own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Blocks this kernel thread until `r` is readable (at most 20 s) and reads one byte.
fn raw_read(r: &OwnedFd) -> u8 {
    let mut pfd = libc::pollfd {
        fd: r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, 20_000) };
    assert_eq!(ready, 1, "nobody wrote the pipe: the ticker was held up");
    let mut byte = 0u8;
    // SAFETY: reading one byte into a valid buffer from an open pipe.
    let n = unsafe { libc::read(r.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
    assert_eq!(n, 1);
    byte
}

/// Starts a ticker on the calling thread's worker; returns its handle once it ticks there.
/// The ticker ticks `ticks` times (1 ms sleeps), then writes `w`.
fn ticker_on_my_worker(
    w: OwnedFd,
    ticks: usize,
    count: Arc<AtomicUsize>,
) -> spindle::JoinHandle<()> {
    let me = spindle::runtime::worker_index().unwrap();
    let w = Arc::new(w);
    loop {
        let (tx, rx) = mpsc::channel();
        let w = w.clone();
        let count = count.clone();
        let ticker = spindle::spawn(move || {
            let mine = spindle::runtime::worker_index().unwrap();
            tx.send(mine).unwrap();
            if mine != me {
                return;
            }
            spindle::sleep(Duration::from_millis(1)); // let the reader block first
            for _ in 0..ticks {
                spindle::sleep(Duration::from_millis(1));
                count.fetch_add(1, SeqCst);
            }
            // SAFETY: writing one byte from a valid buffer to an open pipe.
            let n = unsafe { libc::write(w.as_raw_fd(), b"t".as_ptr().cast(), 1) };
            assert_eq!(n, 1);
        });
        // Yield until the ticker has started (it reports first thing).
        let landed = loop {
            match rx.try_recv() {
                Ok(worker) => break worker,
                Err(_) => spindle::yield_now(),
            }
        };
        if landed == me {
            return ticker;
        }
        ticker.join().unwrap(); // stolen by another worker: try again
    }
}

fn stuck_thread_does_not_hold_up_its_worker(model: Model) {
    let rt = migrating(model);
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    rt.block_on(move || {
        let (r, w) = pipe();
        let ticker = ticker_on_my_worker(w, 30, t.clone());
        // Block this worker's kernel thread in the kernel until the ticker, queued on
        // the same worker, has ticked 30 times and written the pipe.
        let byte = raw_read(&r);
        assert_eq!(byte, b't');
        assert_eq!(t.load(SeqCst), 30);
        ticker.join().unwrap();
        // This thread now runs on the kernel thread that took over its worker, or on the
        // old one: either way it goes on as before.
        spindle::yield_now();
        spindle::sleep(Duration::from_millis(1));
    });
    assert_eq!(ticks.load(SeqCst), 30);
    assert!(!rt.stall_events().is_empty(), "the stall was not recorded");
}

#[test]
fn migration_many_to_one() {
    stuck_thread_does_not_hold_up_its_worker(Model::ManyToOne);
}

#[test]
fn migration_many_to_many_one_worker() {
    stuck_thread_does_not_hold_up_its_worker(Model::ManyToMany { workers: 1 });
}

#[test]
fn migration_many_to_many_two_workers() {
    stuck_thread_does_not_hold_up_its_worker(Model::ManyToMany { workers: 2 });
}

/// After a hand-off the runtime works as before: spawns, joins, channels and its drop.
#[test]
fn a_runtime_that_handed_off_keeps_working_and_drops_cleanly() {
    let rt = migrating(Model::ManyToMany { workers: 2 });
    for round in 0..3 {
        let sum = rt.block_on(move || {
            let (r, w) = pipe();
            let ticker = ticker_on_my_worker(w, 12, Arc::new(AtomicUsize::new(0)));
            raw_read(&r);
            ticker.join().unwrap();
            let (tx, rx) = spindle::channel::bounded::<u64>(4);
            let hs: Vec<_> = (0..100u64)
                .map(|i| {
                    let tx = tx.clone();
                    spindle::spawn(move || tx.send(i).unwrap())
                })
                .collect();
            drop(tx);
            let sum: u64 = rx.iter().sum();
            for h in hs {
                h.join().unwrap();
            }
            sum
        });
        assert_eq!(sum, 4950, "round {round}");
    }
    drop(rt);
}

/// Waits (polling, bounded) until the runtime has handed workers to new kernel threads
/// `n` times.
fn wait_for_hand_offs(rt: &Runtime, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rt
        .stall_events()
        .iter()
        .filter(|e| e.handed_off_after.is_some())
        .count()
        < n
    {
        assert!(std::time::Instant::now() < deadline, "no hand-off happened");
        std::thread::yield_now();
    }
}

/// Writes one byte to `w` from a kernel thread `ms` milliseconds from now.
fn write_after(w: OwnedFd, ms: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        // SAFETY: writing one byte from a valid buffer to an open pipe.
        let n = unsafe { libc::write(w.as_raw_fd(), b"w".as_ptr().cast(), 1) };
        assert_eq!(n, 1);
    })
}

/// Dropping the runtime while a thread is still away on the kernel thread that lost its
/// worker: the drop waits for the call to return, then the thread is cancelled in turn (or
/// finishes, if the call returned before the drop began), and its joiner hears either
/// way; a scope whose thread is away is not unwound before it. (The write comes 100 ms
/// after the hand-off: usually during the drop; either order is a correct run.)
#[test]
fn dropping_the_runtime_while_a_thread_is_away() {
    let rt = migrating(Model::ManyToOne);
    let (r, w) = pipe();
    let (r2, w2) = pipe();
    let plain = rt.spawn(move || {
        raw_read(&r);
        spindle::yield_now();
        42
    });
    let scoped = rt.spawn(move || {
        let data = [7u8; 16];
        spindle::scope(|s| {
            s.spawn(|| {
                raw_read(&r2);
                spindle::yield_now();
                data.len()
            });
        });
    });
    // Both readers are stuck, each on a kernel thread that lost the worker.
    wait_for_hand_offs(&rt, 2);
    let writers = [write_after(w, 100), write_after(w2, 150)];
    drop(rt);
    for w in writers {
        w.join().unwrap();
    }
    match plain.join() {
        Ok(v) => assert_eq!(v, 42),
        Err(e) => assert!(e.downcast_ref::<spindle::thread::Cancelled>().is_some()),
    }
    if let Err(e) = scoped.join() {
        assert!(e.downcast_ref::<spindle::thread::Cancelled>().is_some());
    }
}
