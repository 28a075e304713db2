//! The peer runtimes' side of the switch and pingpong experiments: tokio's current-thread
//! runtime (async tasks) and may (stackful coroutines, configured with one worker so
//! that, like spindle many-to-one, all its coroutines share one kernel thread).
//!
//! Each function times `ops` operations once; the experiments take the median of a few
//! runs (`ns_per_op`). A yield is one task (coroutine) giving way to the other, two of
//! them yielding in turn; a round trip is a message sent to an echo task over a channel of
//! capacity 1 and received back over another.

use std::io;
use std::sync::Once;
use std::time::{Duration, Instant};

/// A current-thread tokio runtime.
pub fn tokio_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().build()
}

/// Two tokio tasks yielding `ops` times each.
pub fn tokio_yields(rt: &tokio::runtime::Runtime, ops: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let yielder = || async move {
            for _ in 0..ops {
                tokio::task::yield_now().await;
            }
        };
        let a = tokio::spawn(yielder());
        let b = tokio::spawn(yielder());
        a.await.expect("yielder panicked");
        b.await.expect("yielder panicked");
        start.elapsed()
    })
}

/// `ops` round trips to a tokio echo task over `tokio::sync::mpsc` channels of capacity 1.
pub fn tokio_round_trips(rt: &tokio::runtime::Runtime, ops: u64) -> Duration {
    rt.block_on(async {
        let (to_echo, mut echo_rx) = tokio::sync::mpsc::channel::<u64>(1);
        let (echo_tx, mut from_echo) = tokio::sync::mpsc::channel::<u64>(1);
        let start = Instant::now();
        let echo = tokio::spawn(async move {
            while let Some(v) = echo_rx.recv().await {
                if echo_tx.send(v).await.is_err() {
                    break;
                }
            }
        });
        for i in 0..ops {
            to_echo.send(i).await.expect("echo task gone");
            assert_eq!(from_echo.recv().await, Some(i));
        }
        drop(to_echo);
        echo.await.expect("echo task panicked");
        start.elapsed()
    })
}

/// Configures may once: one worker, so its coroutines share one kernel thread.
fn may_setup() {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        may::config().set_workers(1);
    });
}

/// Spawns a may coroutine running `f`.
fn may_spawn<F, T>(f: F) -> may::coroutine::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    may_setup();
    // SAFETY: may's contract for a coroutine is that it neither holds a borrow of
    // thread-local storage across a switch (it may resume on another worker) nor blocks
    // its kernel thread for long. The closures spawned here only count, yield and use
    // may's own channels; they touch no thread-local and make no blocking call.
    unsafe { may::coroutine::spawn(f) }
}

/// Two may coroutines yielding `ops` times each, timed from a third (the driver).
pub fn may_yields(ops: u64) -> Duration {
    may_spawn(move || {
        let start = Instant::now();
        let yielder = move || {
            for _ in 0..ops {
                may::coroutine::yield_now();
            }
        };
        let a = may_spawn(yielder);
        let b = may_spawn(yielder);
        a.join().expect("yielder panicked");
        b.join().expect("yielder panicked");
        start.elapsed()
    })
    .join()
    .expect("the may driver panicked")
}

/// `ops` round trips to a may echo coroutine over may's channels.
pub fn may_round_trips(ops: u64) -> Duration {
    may_spawn(move || {
        let (to_echo, echo_rx) = may::sync::mpsc::channel::<u64>();
        let (echo_tx, from_echo) = may::sync::mpsc::channel::<u64>();
        let start = Instant::now();
        let echo = may_spawn(move || {
            while let Ok(v) = echo_rx.recv() {
                if echo_tx.send(v).is_err() {
                    break;
                }
            }
        });
        for i in 0..ops {
            to_echo.send(i).expect("echo coroutine gone");
            assert_eq!(from_echo.recv().expect("echo coroutine gone"), i);
        }
        drop(to_echo);
        echo.join().expect("echo coroutine panicked");
        start.elapsed()
    })
    .join()
    .expect("the may driver panicked")
}
