//! Carrying a thread's result to its `JoinHandle`.
//!
//! The packet has three states in one atomic word:
//!
//! | state     | meaning                                        | who moves it on |
//! |-----------|------------------------------------------------|-----------------|
//! | `RUNNING` | no result yet, nobody waiting                   | joiner (-> `WAITING`), thread (-> `DONE`) |
//! | `WAITING` | no result yet; `joiner` holds the waiter        | thread (-> `DONE`) |
//! | `DONE`    | `result` is written                             | nobody          |
//!
//! The thread writes `result`, then swaps in `DONE` (release); if it saw `WAITING` it takes
//! the joiner's `Thread` and unparks it. The joiner writes `joiner` before its
//! `RUNNING -> WAITING` CAS (release), so the thread's acquiring swap sees it; it then parks
//! until it reads `DONE` (acquire), after which `result` is visible. The thread holds its
//! own reference to the packet and to the joiner's `Thread`, so a joiner that returns early
//! (a spurious wakeup that already sees `DONE`) frees nothing the thread still uses.
//!
//! A thread that never runs (cancelled while queued, or whose stack could not be made)
//! completes its packet from the `Completer`'s destructor with a [`Cancelled`] error, so a
//! joiner never waits forever.

use std::any::Any;
use std::cell::{RefCell, UnsafeCell};
use std::fmt;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{AcqRel, Acquire};
use std::sync::Arc;

use crate::park::{self, WaitReason};
use crate::sched::context;
use crate::task::local;
use crate::task::scope::ScopeData;
use crate::task::thread::Thread;

const RUNNING: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;

/// The error payload a `join` returns when the thread was cancelled instead of finishing:
/// its runtime was dropped first, or it could not be started.
///
/// It comes back inside `Err(Box<dyn Any + Send>)`, like a panic payload; downcast to
/// `Cancelled` to tell the two apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancelled {
    reason: String,
}

impl Cancelled {
    /// Why the thread was cancelled.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

thread_local! {
    static CANCEL_REASON: RefCell<String> = RefCell::new(String::from(
        "spindle: green thread cancelled before it ran",
    ));
}

/// Sets the reason given to threads cancelled on this kernel thread from now on.
pub(crate) fn set_cancel_reason(reason: String) {
    CANCEL_REASON.with(|r| *r.borrow_mut() = reason);
}

fn cancelled() -> Box<dyn Any + Send> {
    Box::new(Cancelled {
        reason: CANCEL_REASON.with(|r| r.borrow().clone()),
    })
}

/// The shared slot between a thread and its `JoinHandle`.
pub(crate) struct Packet<T> {
    state: AtomicU8,
    joiner: UnsafeCell<Option<Thread>>,
    result: UnsafeCell<Option<std::thread::Result<T>>>,
}

// SAFETY: `joiner` and `result` are each written by one side before a release operation on
// `state` and read by the other side only after acquiring it (module docs), so they are
// never accessed concurrently; the values moved across are `Send` (`T: Send`, `Thread`).
unsafe impl<T: Send> Sync for Packet<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Packet<T> {}

impl<T> Packet<T> {
    pub(crate) fn new() -> Packet<T> {
        Packet {
            state: AtomicU8::new(RUNNING),
            joiner: UnsafeCell::new(None),
            result: UnsafeCell::new(None),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Acquire) == DONE
    }

    /// Stores the result and wakes the joiner. Called once, by the thread's side.
    fn complete(&self, result: std::thread::Result<T>) {
        // SAFETY: only the completing side writes `result`, once, before publishing DONE.
        unsafe { *self.result.get() = Some(result) };
        if self.state.swap(DONE, AcqRel) == WAITING {
            // SAFETY: the joiner wrote `joiner` before its release CAS to WAITING, which our
            // acquiring swap observed; it never touches `joiner` again.
            let joiner = unsafe { (*self.joiner.get()).take() };
            if let Some(j) = joiner {
                j.unpark();
            }
        }
    }

    /// Waits for the result and takes it. Called once, by the `JoinHandle`.
    pub(crate) fn wait(&self) -> std::thread::Result<T> {
        if self.state.load(Acquire) != DONE {
            // SAFETY: before the CAS below only the joiner touches `joiner`.
            unsafe { *self.joiner.get() = Some(context::current_thread()) };
            match self
                .state
                .compare_exchange(RUNNING, WAITING, AcqRel, Acquire)
            {
                Ok(_) => {
                    while self.state.load(Acquire) != DONE {
                        park::park(WaitReason::Join);
                    }
                }
                Err(_) => {
                    // Finished meanwhile: the thread never looks at `joiner` then.
                    // SAFETY: DONE was published without reading `joiner`.
                    unsafe { *self.joiner.get() = None };
                }
            }
        }
        // SAFETY: DONE was observed with acquire, so the write of `result` is visible, and
        // the completing side no longer touches it.
        unsafe { (*self.result.get()).take() }.expect("join called twice on one packet")
    }
}

/// The thread side of a packet: completes it with the thread's result, or with
/// `Cancelled` if dropped without a result; for a scoped thread, then tells the scope.
pub(crate) struct Completer<T> {
    packet: Option<Arc<Packet<T>>>,
    scope: Option<Arc<ScopeData>>,
}

impl<T> Completer<T> {
    /// A completer for `packet`; a scoped thread counts as running in `scope` from here
    /// until the completer finishes.
    pub(crate) fn new(packet: Arc<Packet<T>>, scope: Option<Arc<ScopeData>>) -> Completer<T> {
        if let Some(s) = &scope {
            s.thread_started();
        }
        Completer {
            packet: Some(packet),
            scope,
        }
    }

    fn finish(&mut self, result: std::thread::Result<T>) {
        // A cancellation is not a panic of the thread's own.
        let panicked = result.as_ref().is_err_and(|e| !e.is::<Cancelled>());
        if let Some(p) = self.packet.take() {
            p.complete(result);
            // Our reference goes before the scope hears of it: the result may borrow from
            // the scope's environment, and the scope may end as soon as it is told.
            drop(p);
        }
        if let Some(scope) = self.scope.take() {
            scope.thread_finished(panicked);
        }
    }

    /// Runs `f`, catching a panic, drops the thread's local values, and completes the
    /// packet with the outcome.
    pub(crate) fn run(self, f: impl FnOnce() -> T) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        self.after_closure(result);
    }

    /// The part of [`Completer::run`] after the closure, never inlined into it: it reads
    /// thread-locals, and a green thread may have moved to another kernel thread during
    /// the closure (migration), so their addresses must be computed here, not reused from
    /// before the closure (`sched/README.md`, "Migration").
    #[inline(never)]
    fn after_closure(mut self, result: std::thread::Result<T>) {
        // The thread's `spindle::local!` values go now: on the thread itself, after its
        // closure, and before the result is published, so a joiner sees every destructor's
        // effects (task/local.rs). A destructor that panicked makes the outcome that panic,
        // unless the closure had already panicked; the result it replaces is dropped here,
        // on the thread, with a panic of its destructor caught as well.
        let result = match (result, local::destroy_current()) {
            (result, Ok(())) => result,
            (Ok(value), Err(dtor_panic)) => {
                drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                    move || drop(value),
                )));
                Err(dtor_panic)
            }
            (Err(panic), Err(_dtor_panic)) => Err(panic),
        };
        let result = match result {
            // A forced unwind at runtime shutdown surfaces here as an opaque payload.
            Err(_) if context::is_cancelling() => Err(cancelled()),
            other => other,
        };
        self.finish(result);
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if self.packet.is_some() {
            self.finish(Err(cancelled()));
        }
    }
}

/// A thread's closure and its completer, dropped in that order: a thread that never runs
/// drops what its closure captured before its joiner hears that it was cancelled, as a
/// thread that runs drops it before its result is published.
pub(crate) struct ThreadMain<F, T> {
    f: Option<F>,
    completer: Option<Completer<T>>,
}

impl<F: FnOnce() -> T, T> ThreadMain<F, T> {
    /// The entry of a new thread running `f`, and the packet its `JoinHandle` will read; a
    /// scoped thread counts as running in `scope` from here on.
    pub(crate) fn with_packet(
        f: F,
        scope: Option<Arc<ScopeData>>,
    ) -> (Arc<Packet<T>>, ThreadMain<F, T>) {
        let packet = Arc::new(Packet::new());
        let completer = Completer::new(packet.clone(), scope);
        let main = ThreadMain {
            f: Some(f),
            completer: Some(completer),
        };
        (packet, main)
    }

    /// Runs the closure and publishes its outcome.
    pub(crate) fn run(mut self) {
        if let (Some(f), Some(c)) = (self.f.take(), self.completer.take()) {
            c.run(f);
        }
    }
}

impl<F, T> Drop for ThreadMain<F, T> {
    fn drop(&mut self) {
        drop(self.f.take());
        drop(self.completer.take());
    }
}
