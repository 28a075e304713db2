//! What runs on this kernel thread: the thread-local pointers every other module asks.
//!
//! - `CURRENT_GREEN`: the green thread being run by this kernel thread's worker, or null.
//!   Set by the worker around every resume, so it is a single const-initialised cell.
//! - `CURRENT_WORKER`: the worker driven by this kernel thread, or null.
//! - `ENTERED`: the one-to-one runtime this kernel thread belongs to, if any.
//! - `KERNEL_SELF`: the `Thread` record of this kernel thread, made on first use.

use std::cell::{Cell, OnceCell, RefCell};
use std::ptr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::sched::one_to_one::OneToOneShared;
use crate::sched::pool::PoolShared;
use crate::sched::worker::Worker;
use crate::task::green::{Resume, Suspend};
use crate::task::thread::Thread;
use crate::task::{ThreadInner, ThreadKind};

thread_local! {
    static CURRENT_GREEN: Cell<*const ThreadInner> = const { Cell::new(ptr::null()) };
    static CURRENT_WORKER: Cell<*const Worker> = const { Cell::new(ptr::null()) };
    static ENTERED: RefCell<Option<Arc<OneToOneShared>>> = const { RefCell::new(None) };
    static KERNEL_SELF: OnceCell<Thread> = const { OnceCell::new() };
}

/// The green thread running on this kernel thread, if any.
///
/// The returned reference is only used by that green thread itself (or by its worker
/// while it is switched in), and the record outlives it: the worker holds a strong count
/// while the thread runs and until it has returned.
#[inline]
pub(crate) fn current_green<'a>() -> Option<&'a ThreadInner> {
    let p = CURRENT_GREEN.with(Cell::get);
    // SAFETY: a non-null pointer was set by this kernel thread's worker from an
    // `Arc<ThreadInner>` it keeps alive while the green thread runs (see above).
    unsafe { p.as_ref() }
}

/// Sets or clears the running green thread; the worker calls this around each resume.
#[inline]
pub(crate) fn set_current_green(p: *const ThreadInner) {
    CURRENT_GREEN.with(|c| c.set(p));
}

/// The worker driven by this kernel thread, if it is a worker thread.
pub(crate) fn current_worker<'a>() -> Option<&'a Worker> {
    let p = CURRENT_WORKER.with(Cell::get);
    // SAFETY: set by `Worker::drive` to a worker whose `Arc` this kernel thread's closure
    // holds for as long as the pointer is set (it is cleared before that `Arc` is dropped).
    // Only immutable fields and atomics may be read through it from green code (see the
    // accessors of `Worker`).
    unsafe { p.as_ref() }
}

/// Marks this kernel thread as driving `worker` (or nothing, with null).
pub(crate) fn set_current_worker(worker: *const Worker) {
    CURRENT_WORKER.with(|c| c.set(worker));
}

/// Where a `spawn` from this thread goes.
pub(crate) enum SpawnTarget<'a> {
    /// A green-thread runtime (many-to-one or many-to-many): a green thread on it. Borrowed
    /// from the current worker, which outlives the spawn: no reference count is touched on
    /// the spawn path.
    Green(&'a PoolShared),
    /// A one-to-one runtime, or no runtime at all: a kernel thread.
    Kernel(Option<Arc<OneToOneShared>>),
}

/// The runtime a `spawn` from here belongs to. Use the answer right away: it borrows the
/// worker that runs this green thread (see [`current_worker`]).
pub(crate) fn spawn_target<'a>() -> SpawnTarget<'a> {
    if let Some(w) = current_worker::<'a>() {
        if current_green().is_some() {
            return SpawnTarget::Green(w.pool());
        }
    }
    // No runtime once the note is destroyed (a spawn from a thread-local's destructor): a
    // kernel thread of none, as from a thread that never entered one.
    SpawnTarget::Kernel(ENTERED.try_with(|e| e.borrow().clone()).ok().flatten())
}

/// Runs `f` with this kernel thread entered into a one-to-one runtime.
pub(crate) fn with_entered<R>(rt: Arc<OneToOneShared>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<OneToOneShared>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            ENTERED.with(|e| *e.borrow_mut() = prev);
        }
    }
    let prev = ENTERED.with(|e| e.borrow_mut().replace(rt));
    let _restore = Restore(prev);
    f()
}

/// This thread as a `Thread`: the running green thread, or this kernel thread.
pub(crate) fn current_thread() -> Thread {
    if let Some(g) = current_green() {
        // The worker owns a strong count while `g` runs; take another for the handle.
        // SAFETY: `g` points into a live `Arc<ThreadInner>` allocation (see
        // `current_green`), so incrementing its count and rebuilding an `Arc` from the
        // same pointer is the documented `Arc::increment_strong_count` pattern.
        let inner = unsafe {
            let p: *const ThreadInner = g;
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        return Thread::from_inner(inner);
    }
    let record = || {
        let std_thread = std::thread::current();
        let name = std_thread.name().map(Into::into);
        Thread::from_inner(ThreadInner::new(name, || {
            ThreadKind::Kernel(std::sync::OnceLock::from(std_thread))
        }))
    };
    // While the thread's locals are destroyed (a destructor that waits on a spindle
    // primitive) the cached record may be gone already: a fresh one wraps the same std
    // thread, which is all a waker needs to unpark it.
    KERNEL_SELF
        .try_with(|k| k.get_or_init(record).clone())
        .unwrap_or_else(|_| record())
}

/// Shows `reason` as what this kernel thread waits for in dumps, until `deadline` (if it
/// has one), if spindle has a record of it (a thread of a one-to-one runtime always has
/// one). `WaitReason::None` (with no deadline) once the wait is over.
pub(crate) fn show_kernel_wait(
    reason: crate::park::WaitReason,
    deadline: Option<std::time::Instant>,
) {
    // Nothing to show once the record is destroyed (see `current_thread`).
    let _ = KERNEL_SELF.try_with(|k| {
        if let Some(t) = k.get() {
            t.inner.kernel_wait.show(reason, deadline);
        }
    });
}

/// Installs `thread` as this kernel thread's record (for threads spindle spawns itself,
/// so that `current()` returns the same record the spawner's `JoinHandle` holds).
pub(crate) fn set_kernel_self(thread: Thread) {
    KERNEL_SELF.with(|k| {
        let _ = k.set(thread);
    });
}

/// Suspends the running green thread `task` with `why`, returning when its worker resumes it.
#[inline]
pub(crate) fn suspend(task: &ThreadInner, why: Suspend) {
    let g = task.green();
    let ban = switch_ban();
    if ban != SwitchBan::None {
        let attempt = match why {
            Suspend::Yield => SwitchAttempt::Yield,
            Suspend::Park | Suspend::ParkUntil(_) => SwitchAttempt::Wait,
            Suspend::SleepUntil(_) => SwitchAttempt::Sleep,
            Suspend::Captured => unreachable!("a capture is not a switch a thread asks for"),
        };
        switch_refused(task, ban, attempt);
    }
    // SAFETY: `task` is the green thread running on this kernel thread; reading one field
    // through the raw pointer creates no reference to the rest of the record.
    let yielder = unsafe { (*g.local_ptr()).yielder };
    debug_assert!(!yielder.is_null());
    // SAFETY: the yielder was stored by this coroutine on its first resume and lives in
    // the coroutine's root frame, which exists until the coroutine returns; we are running
    // inside that coroutine, so it has not returned.
    let yielder = unsafe { &*yielder };
    let mut why = why;
    loop {
        // Not settled across the switch (`GreenTask::settled`); relaxed stores, ordered
        // with the switch by its assembly, which the compiler treats as touching memory.
        g.settled.store(false, Relaxed);
        let resume = yielder.suspend(why);
        g.settled.store(true, Relaxed);
        match resume {
            Resume::Run => return,
            // The worker wants to know where this thread waits (a dump): say, and wait on.
            Resume::CaptureBacktrace(capture) => {
                crate::debug::capture::record(yielder, capture);
                why = Suspend::Captured;
            }
        }
    }
}

/// Runs `f`, a wait of the running green thread for something outside its runtime (see
/// `WorkerWatch::outside_waits`), counted as such while it lasts when `outside(runtime)`
/// holds for the number of the runtime the thread belongs to. Elsewhere, just runs `f`.
pub(crate) fn waiting_outside<R>(outside: impl FnOnce(u64) -> bool, f: impl FnOnce() -> R) -> R {
    struct Counted(Arc<crate::sched::worker::WorkerShared>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0
                .watch
                .outside_waits
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let counted = match (current_green(), current_worker()) {
        (Some(me), Some(w)) if outside(me.green().runtime) => {
            let shared = w.shared().clone();
            shared
                .watch
                .outside_waits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(Counted(shared))
        }
        _ => None,
    };
    let r = f();
    drop(counted);
    r
}

/// Runs `f` on a stack with room: on a green thread, on its worker's kernel-thread stack
/// (corosensei's `on_parent_stack`: the green thread stays the one running, and `f` must
/// not switch away); elsewhere, right here. For work whose stack use a small green stack
/// cannot bear, such as symbolizing backtraces (the DWARF readers nest deeply).
pub(crate) fn on_roomy_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let Some(task) = current_green() else {
        return f();
    };
    // SAFETY: `task` is the green thread running on this kernel thread; one field read.
    let yielder = unsafe { (*task.green().local_ptr()).yielder };
    if yielder.is_null() {
        return f();
    }
    let g = task.green();
    // Not settled on the worker's stack, nor in the switches to and from it.
    g.settled.store(false, Relaxed);
    // SAFETY: as in `suspend`: the yielder lives in the running coroutine's root frame.
    let r = unsafe { &*yielder }.on_parent_stack(f);
    g.settled.store(true, Relaxed);
    r
}

/// Why the green thread on this kernel thread may not switch away, if it may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SwitchBan {
    /// It may switch.
    None,
    /// Its runtime's shutdown is unwinding it: nothing would run it again.
    Cancelling,
    /// This process is a fork child and the thread is the one that called `fork()`: its
    /// worker's scheduler loop did not come along (`fork.rs`).
    InheritedAcrossFork,
}

thread_local! {
    static SWITCH_BAN: Cell<SwitchBan> = const { Cell::new(SwitchBan::None) };
}

/// Aborts the process with a message if dropped while `still_borrowed` says threads still
/// use the data of the wait it guards, that is, if that wait unwinds instead of finishing
/// (`std::mem::forget` the guard once the wait is done).
///
/// A green thread parked in a wait for threads that borrow its stack (a scope, a
/// `block_on` from a green thread) is unwound from that park when its runtime is dropped.
/// Shutdown cancels youngest first across the runtime, so the threads it waits for are
/// gone by then if they belong to the same runtime; a `block_on` root on *another* runtime
/// may still run, and letting the unwind free the data it borrows would be a use after
/// free. Aborting is the sound way out.
pub(crate) struct AbortIfUnwound<F: Fn() -> bool> {
    pub(crate) what: &'static str,
    pub(crate) still_borrowed: F,
}

impl<F: Fn() -> bool> Drop for AbortIfUnwound<F> {
    fn drop(&mut self) {
        if !(self.still_borrowed)() {
            return;
        }
        eprintln!(
            "spindle: {} was unwound (its runtime was dropped) while threads that borrow its \
             data still run; aborting rather than free that data under them.",
            self.what
        );
        std::process::abort();
    }
}

/// Marks that the worker on this kernel thread is unwinding a green thread at shutdown.
pub(crate) fn set_cancelling(on: bool) {
    set_switch_ban(if on {
        SwitchBan::Cancelling
    } else {
        SwitchBan::None
    });
}

/// Whether the running green thread is being unwound by its runtime's shutdown.
pub(crate) fn is_cancelling() -> bool {
    switch_ban() == SwitchBan::Cancelling
}

/// Why the green thread on this kernel thread may not switch, if it may not.
#[inline]
pub(crate) fn switch_ban() -> SwitchBan {
    SWITCH_BAN.with(Cell::get)
}

/// Sets the ban [`suspend`] checks.
pub(crate) fn set_switch_ban(ban: SwitchBan) {
    SWITCH_BAN.with(|c| c.set(ban));
}

/// What a green thread that may not switch tried to do.
#[derive(Clone, Copy)]
enum SwitchAttempt {
    Yield,
    Wait,
    Sleep,
}

/// The running green thread may not switch (`ban`), and tried to (`attempt`): abort or panic
/// with the reason. Out of line, so that `suspend` keeps one load and one branch for it.
#[cold]
#[inline(never)]
fn switch_refused(task: &ThreadInner, ban: SwitchBan, attempt: SwitchAttempt) -> ! {
    match ban {
        SwitchBan::Cancelling => blocked_while_cancelled(task),
        SwitchBan::None => unreachable!("switch_refused without a ban"),
        SwitchBan::InheritedAcrossFork => crate::fork::refuse(match attempt {
            SwitchAttempt::Yield => {
                "yield (or wait: waits may yield first) on the green thread that called fork()"
            }
            SwitchAttempt::Wait => {
                "wait (for a lock, a channel, a join, I/O) on the green thread that called fork()"
            }
            SwitchAttempt::Sleep => "sleep on the green thread that called fork()",
        }),
    }
}

/// A green thread being cancelled at runtime shutdown tried to switch away (to block, sleep
/// or yield), from a destructor or after catching the unwind. It cannot wait: nothing will
/// run it again, and corosensei would only unwind it again, forever if it catches the unwind.
/// Say so and abort rather than hang or die with a bare double panic.
#[cold]
fn blocked_while_cancelled(task: &ThreadInner) -> ! {
    eprintln!(
        "spindle: green thread {} ('{}') tried to block, sleep or yield while its runtime was \
         dropped and was unwinding it (in a destructor, or after catching the unwind); a \
         cancelled green thread cannot wait. Aborting.",
        task.id,
        task.name.as_deref().unwrap_or("<unnamed>")
    );
    std::process::abort();
}
