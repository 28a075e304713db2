//! [`unblock`]: a blocking call on a helper thread, with only the caller waiting.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::{Arc, Mutex};

use crate::park::{self, WaitReason};
use crate::sched::context;
use crate::task::thread::Thread;

/// Where a helper puts the result for the waiting caller.
struct Rendezvous<R> {
    done: AtomicBool,
    result: Mutex<Option<std::thread::Result<R>>>,
    caller: Thread,
}

/// Runs `f`, a call that blocks its kernel thread (a DNS lookup, a blocking library, a file
/// system call), on a helper thread of the runtime, and returns its result. Only the
/// calling green thread waits; its worker runs the other green threads meanwhile.
///
/// Helper threads are made on demand, up to the runtime's maximum
/// ([`crate::runtime::Builder::max_blocking_threads`], default
/// [`crate::io::DEFAULT_MAX_BLOCKING_THREADS`]); more calls than that queue for a helper.
/// A helper idle for the idle timeout exits. Called from a kernel thread (the one-to-one
/// model, or outside any runtime), `f` simply runs on the calling thread: blocking it
/// holds up nobody else. If `f` panics, the panic is resumed in the caller. If the runtime
/// is dropped while `f` runs, the caller is cancelled as usual and `f`'s result is dropped
/// when it comes.
///
/// ```
/// let rt = spindle::Runtime::builder().build()?;
/// let addrs = rt.block_on(|| {
///     spindle::unblock(|| {
///         use std::net::ToSocketAddrs;
///         ("localhost", 80).to_socket_addrs().map(|a| a.count())
///     })
/// })?;
/// assert!(addrs >= 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn unblock<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let pool = match (context::current_green(), context::current_worker()) {
        (Some(_), Some(w)) => w.pool().blocking.clone(),
        // The green thread that called fork(), in the child (fork.rs).
        (Some(_), None) => crate::fork::refuse("unblock on the green thread that called fork()"),
        (None, _) => return f(),
    };
    let rendezvous = Arc::new(Rendezvous {
        done: AtomicBool::new(false),
        result: Mutex::new(None),
        caller: context::current_thread(),
    });
    let r = rendezvous.clone();
    let job = Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        *r.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        // Release: the result is visible to a caller that sees `done`.
        r.done.store(true, Release);
        r.caller.unpark();
    });
    if let Err(jobs) = pool.submit(job) {
        // No helper can take it: run it (and any other job handed back) here.
        for job in jobs {
            job();
        }
    }
    while !rendezvous.done.load(Acquire) {
        park::park(WaitReason::Unblock);
    }
    let result = rendezvous
        .result
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .expect("unblock: the helper reported done without a result");
    match result {
        Ok(v) => v,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}
