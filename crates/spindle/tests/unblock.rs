//! `spindle::unblock`: a blocking call runs on a helper thread and only its caller waits.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use spindle::{Model, Runtime};

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe()");
    // SAFETY: pipe(2) succeeded, so both are open descriptors we now own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

cross_model! {
    fn returns_the_value_and_resumes_a_panic(model) {
        assert_eq!(spindle::unblock(|| 6 * 7), 42, "{model}");
        let err = std::panic::catch_unwind(|| spindle::unblock(|| -> u8 { panic!("helper boom") }))
            .unwrap_err();
        assert_eq!(err.downcast_ref::<&str>(), Some(&"helper boom"));
    }

    // The caller blocks (through the helper) in a raw `read` of a pipe that only another
    // green thread of the same worker writes: that can only finish if the worker goes on
    // running while the caller waits.
    fn only_the_caller_waits(model) {
        let (r, w) = pipe();
        let writer = spindle::spawn(move || {
            // SAFETY: writing one byte from a valid buffer to an open pipe.
            let n = unsafe { libc::write(w.as_raw_fd(), b"u".as_ptr().cast(), 1) };
            assert_eq!(n, 1);
        });
        let byte = spindle::unblock(move || {
            let mut b = 0u8;
            // SAFETY: reading one byte into a valid buffer from an open pipe.
            let n = unsafe { libc::read(r.as_raw_fd(), (&mut b as *mut u8).cast(), 1) };
            assert_eq!(n, 1);
            b
        });
        assert_eq!(byte, b'u', "{model}");
        writer.join().unwrap();
    }
}

/// With at most two helpers, four calls that each wait for a partner get through two at
/// a time: never more than two run at once, and all finish.
#[test]
fn the_helper_count_is_bounded_and_calls_queue() {
    for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
        let rt = Runtime::builder()
            .model(model)
            .max_blocking_threads(2)
            .build()
            .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let pair = Arc::new(Barrier::new(2));
        let done = rt.block_on(|| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let (running, most, pair) = (running.clone(), most.clone(), pair.clone());
                    spindle::spawn(move || {
                        spindle::unblock(move || {
                            let now = running.fetch_add(1, SeqCst) + 1;
                            most.fetch_max(now, SeqCst);
                            pair.wait();
                            running.fetch_sub(1, SeqCst);
                        })
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).count()
        });
        assert_eq!(done, 4);
        assert_eq!(most.load(SeqCst), 2, "{model}");
    }
}

#[test]
fn outside_a_runtime_it_runs_on_the_calling_thread() {
    let me = std::thread::current().id();
    assert!(spindle::unblock(move || std::thread::current().id() == me));
}

#[test]
fn zero_helpers_is_a_clear_error() {
    let err = Runtime::builder()
        .max_blocking_threads(0)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("max_blocking_threads"), "{err}");
}

/// Two calls submitted back to back while one helper is idle: the second must not queue
/// behind the first (which waits for the second), but get a helper of its own.
#[test]
fn back_to_back_calls_do_not_share_one_idle_helper() {
    let rt = Runtime::builder().build().unwrap();
    rt.block_on(|| {
        // Warm up: one helper exists and is idle afterwards.
        spindle::unblock(|| ());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let waiter = spindle::spawn(move || spindle::unblock(move || rx.recv().unwrap()));
        let sender = spindle::spawn(move || spindle::unblock(move || tx.send(()).unwrap()));
        sender.join().unwrap();
        waiter.join().unwrap();
    });
}
