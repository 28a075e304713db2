//! Behaviour that only the many-to-many model has: parallel workers, stealing, and
//! independence of workers when one is stuck in a raw blocking call.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use spindle::{Model, Runtime};

fn runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .model(Model::ManyToMany { workers })
        .build()
        .expect("many-to-many runtime")
}

#[test]
fn model_parses_and_builds_with_its_workers() {
    let rt = Runtime::builder()
        .model("many-to-many:3".parse().unwrap())
        .build()
        .unwrap();
    assert_eq!(rt.model(), Model::ManyToMany { workers: 3 });
    let err = Runtime::builder()
        .model(Model::ManyToMany { workers: 0 })
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("at least 1 worker"), "{err}");
    let err = Runtime::builder()
        .model(Model::ManyToMany { workers: 1 << 20 })
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("workers"), "{err}");
}

/// Two green threads that each wait (with a kernel-blocking std barrier, which a green
/// thread may not normally use) for the other can only both get through if they run on
/// two workers at the same time: this proves parallelism, with no timing involved.
#[test]
fn two_workers_run_two_green_threads_at_once() {
    let rt = runtime(2);
    let workers = rt.block_on(|| {
        let barrier = Arc::new(Barrier::new(2));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let b = barrier.clone();
                spindle::spawn(move || {
                    b.wait();
                    spindle::runtime::worker_index().unwrap()
                })
            })
            .collect();
        let mut ws: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        ws.sort();
        ws
    });
    assert_eq!(workers, vec![0, 1]);
}

#[test]
fn started_threads_stay_on_their_worker() {
    let rt = runtime(2);
    let moved = rt.block_on(|| {
        let hs: Vec<_> = (0..200)
            .map(|i| {
                spindle::spawn(move || {
                    let first = spindle::runtime::worker_index().unwrap();
                    for k in 0..50 {
                        if (i + k) % 3 == 0 {
                            spindle::sleep(Duration::from_micros(50));
                        } else {
                            spindle::yield_now();
                        }
                        if spindle::runtime::worker_index().unwrap() != first {
                            return true;
                        }
                    }
                    false
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&m| m)
            .count()
    });
    assert_eq!(moved, 0, "started green threads changed worker");
}

/// Spawns from outside the runtime go through the injector and are all run.
#[test]
fn spawns_from_outside_all_run() {
    let rt = runtime(2);
    let count = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..1000)
        .map(|_| {
            let c = count.clone();
            rt.spawn(move || {
                c.fetch_add(1, SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(count.load(SeqCst), 1000);
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe()");
    // SAFETY: pipe(2) succeeded, so both are open descriptors we now own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A green thread stuck in a raw `read` on an empty pipe holds its worker, and only it:
/// a ticker on the other worker keeps ticking, and it is the ticker that finally writes
/// the byte the reader waits for. If the stuck worker stopped the other, this would
/// never finish; `poll` with a deadline turns that into a failure instead of a hang.
#[test]
fn a_raw_blocking_call_does_not_stop_the_other_worker() {
    let rt = runtime(2);
    rt.block_on(|| {
        let (r, w) = pipe();
        let (tx, rx) = mpsc::channel::<usize>();
        let ticker = spindle::spawn(move || {
            tx.send(spindle::runtime::worker_index().unwrap()).unwrap();
            for _ in 0..20 {
                spindle::sleep(Duration::from_millis(1));
            }
            // SAFETY: writing one byte from a valid buffer to an open pipe.
            let n = unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            assert_eq!(n, 1);
        });
        // Block this worker in the kernel until the ticker reports: it must then have
        // started on the other worker.
        let ticker_worker = rx.recv().unwrap();
        let me = spindle::runtime::worker_index().unwrap();
        assert_ne!(ticker_worker, me);
        let mut pfd = libc::pollfd {
            fd: r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 20_000) };
        assert_eq!(
            ready, 1,
            "the ticker on the other worker never wrote the pipe"
        );
        let mut byte = 0u8;
        // SAFETY: reading one byte into a valid buffer from an open pipe.
        let n = unsafe { libc::read(r.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
        assert_eq!((n, byte), (1, b'x'));
        ticker.join().unwrap();
    });
}

#[test]
fn dropping_a_busy_runtime_cancels_on_every_worker() {
    struct Count(Arc<AtomicUsize>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let rt = runtime(2);
    let d = dropped.clone();
    let parked = rt.block_on(move || {
        let (tx, rx) = spindle::channel::unbounded::<()>();
        let hs: Vec<_> = (0..100)
            .map(|_| {
                let guard = Count(d.clone());
                let tx = tx.clone();
                spindle::spawn(move || {
                    let _guard = guard;
                    tx.send(()).unwrap();
                    spindle::park();
                    spindle::park();
                })
            })
            .collect();
        for _ in 0..100 {
            rx.recv().unwrap();
        }
        hs
    });
    drop(rt);
    assert_eq!(dropped.load(SeqCst), 100);
    for h in parked {
        let err = h.join().unwrap_err();
        assert!(err.downcast_ref::<spindle::thread::Cancelled>().is_some());
    }
}
