//! What happens around `fork()`.
//!
//! ## The problem
//!
//! `fork()` copies the whole memory of the process at one instant, but only the thread that
//! called it. A spindle runtime caught at that instant has worker kernel threads that do not
//! exist in the child, run queues another worker was half-way through changing, an io_uring
//! ring whose queues are *shared* memory (a child touching it would corrupt the parent's
//! ring), a monitor that is gone, and locks held by threads that will never release them.
//! Using any of it in the child deadlocks or corrupts.
//!
//! ## The rule: a runtime belongs to the process that built it
//!
//! Each runtime records the *fork generation* it was built in ([`Provenance`]). The child
//! handler below bumps the process's generation, so in the child every runtime built
//! before the fork is *inherited*, and every entry point checks that before it touches the
//! runtime's state:
//!
//! - `Runtime::spawn`, `block_on` and `stall_events`, and spawns onto an inherited runtime
//!   from anywhere, fail with [`inherited_error`]'s message (`spawn` and `block_on` panic
//!   with it; `thread::Builder::spawn` returns it as an `io::Error`);
//! - dropping an inherited runtime in the child does nothing: its kernel threads are not
//!   there to be stopped or joined, and its memory goes with the process;
//! - joining, in the child, a thread that was alive in the parent at the fork (green or
//!   kernel) panics instead of waiting forever: that thread does not exist here. Threads
//!   are told apart by id: the child handler moves the id counter to a fresh block, and
//!   every id below that mark is the parent's ([`belongs_to_parent`]);
//! - waking such a thread from the child (unparking it, or releasing a lock it waits
//!   for) does nothing: there is nothing to wake.
//!
//! ## The thread that called fork()
//!
//! It is the child's only thread. If it was a kernel thread (the main thread, or a thread
//! of a one-to-one runtime), it goes on as a kernel thread: a one-to-one runtime it had
//! entered is inherited like any other, so its `spawn`s fail with the message.
//!
//! If it was a green thread, it goes on running on its green stack, still that green
//! thread (same `current()`, same `spindle::local!` values), but its worker's scheduler
//! loop did not come along. A green thread waits by switching to that loop, so in the child
//! everything that would make it wait or queue work on its worker fails at once with a
//! panic that says why: parking (a contended lock, an empty channel, `join`, `park`),
//! `sleep`, `yield_now`, an I/O wait, `unblock`, and `spawn`. What completes without
//! waiting works: an uncontended lock, `try_` operations, a read that finds data, file I/O
//! (run in place), `current()`, `spindle::local!`. When its closure returns, the child
//! process exits with status 0, as a process does when its last thread ends; if it panics
//! (the message was printed), with status 101. It never returns into the copy of its
//! worker.
//!
//! The way to use green threads in the child is a new runtime: `Runtime::builder().build()`
//! works in the child, with its own reactor, stacks and workers, and its `block_on` may be
//! called from the thread that forked, green or not (it then waits as a kernel thread).
//! Better still, start programs with [`crate::process::Command`], which never forks.
//!
//! ## The handlers (`pthread_atfork`, registered when the first runtime is built)
//!
//! 1. *prepare* (in the parent, before the copy): take the process-wide lock that every
//!    one-time initialization of spindle holds while it runs ([`once_init`]: the io_uring
//!    probe and the installation of the signal handlers for stack overflows and CPU
//!    sampling). Taking it waits for an initialization in progress on another thread, so
//!    that none is copied half-done: a child that found one would wait forever for a thread
//!    it does not have.
//! 2. *parent* (after the copy): release it.
//! 3. *child* (after the copy, on the only thread): bump the generation; move the thread
//!    id counter to a fresh block and remember the mark; if this thread is a green thread,
//!    forget its worker (`CURRENT_WORKER`) and ban its switches (the ban `suspend` checks
//!    anyway, so the running green thread pays nothing for it); release the lock. All of
//!    it is plain loads and stores to memory this thread owns: nothing that is unsafe
//!    between `fork()` and `exec()`.
//!
//! The lock order is that single lock. The runtimes' own locks (inboxes, the helper pool,
//! the io_uring submission lock, the monitor's events) are deliberately *not* taken: the
//! child never touches an inherited runtime's state, so their state there cannot matter,
//! and taking them would make every `fork()` wait for every worker of every runtime,
//! including workers that hold the submission lock while they enter the kernel.
//!
//! ## What spindle cannot see
//!
//! - A fork made without `fork()`'s handlers (a raw `clone` or `syscall(SYS_fork)`) is not
//!   noticed: the child must exec or exit without touching spindle.
//! - A spindle primitive shared with the parent's threads (a `Mutex`, a channel) is copied
//!   as it was: waiting in the child for something only those threads would do waits
//!   forever from a kernel thread, as it would with std's primitives.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};

use crate::sched::context::{self, SwitchBan};
use crate::task::thread::ThreadId;

/// Bumped by the child handler: which copy of the process this is. Relaxed is enough: it is
/// written only in a child with one thread, before that thread can start any other.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The first thread id handed out in this process after its latest fork; lower ids belong
/// to threads of an ancestor (0: this process never forked).
static FIRST_CHILD_ID: AtomicU64 = AtomicU64::new(0);

/// Held by every one-time initialization while it runs, and by `fork()` from prepare to
/// parent or child.
static INIT_LOCK: Mutex<()> = Mutex::new(());

thread_local! {
    /// The lock taken by prepare, on the forking thread, until parent or child.
    static HELD_ACROSS_FORK: RefCell<Option<MutexGuard<'static, ()>>> = const { RefCell::new(None) };
}

/// The message every refused use of an inherited runtime carries.
const WHAT_TO_DO: &str = "this process is a fork() child, and the runtime was inherited \
    from the parent, whose kernel threads do not exist here; in the child, exec a program \
    (spindle::process::Command starts one without forking) or build a new Runtime";

/// Which process a runtime was built in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Provenance(u64);

impl Provenance {
    /// This process, now.
    pub(crate) fn here() -> Provenance {
        Provenance(GENERATION.load(Relaxed))
    }

    /// Whether this process is a fork child of the one the runtime was built in.
    #[inline]
    pub(crate) fn is_inherited(self) -> bool {
        GENERATION.load(Relaxed) != self.0
    }

    /// `Err` with [`inherited_error`] if inherited.
    pub(crate) fn check(self, what: &str) -> io::Result<()> {
        if self.is_inherited() {
            Err(inherited_error(what))
        } else {
            Ok(())
        }
    }
}

/// The error of a use of an inherited runtime: `what` was refused, why, and what to do.
pub(crate) fn inherited_error(what: &str) -> io::Error {
    io::Error::other(format!("spindle: cannot {what}: {WHAT_TO_DO}"))
}

/// Whether the thread with `id` was alive in an ancestor process and not made in this one:
/// it does not exist here.
pub(crate) fn belongs_to_parent(id: ThreadId) -> bool {
    id.as_u64().get() < FIRST_CHILD_ID.load(Relaxed)
}

/// Whether the caller is the thread that called `fork()` from a green thread, in the
/// child: a green thread without a worker (nowhere else is a green thread running without
/// the worker that resumed it).
pub(crate) fn on_inherited_green_thread() -> bool {
    context::current_green().is_some() && context::current_worker().is_none()
}

/// Runs `f` with the calling thread seen as a plain kernel thread, so that its waits block
/// the kernel thread: how the inherited green thread of a fork child runs the `block_on` of
/// a runtime built in the child.
pub(crate) fn as_kernel_thread<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(*const crate::task::ThreadInner, SwitchBan);
    impl Drop for Restore {
        fn drop(&mut self) {
            context::set_current_green(self.0);
            context::set_switch_ban(self.1);
        }
    }
    let green = context::current_green().map_or(std::ptr::null(), |g| g as *const _);
    let _restore = Restore(green, context::switch_ban());
    context::set_current_green(std::ptr::null());
    context::set_switch_ban(SwitchBan::None);
    f()
}

/// Panics with [`inherited_error`]: the inherited green thread of a fork child tried to do
/// `what`, which needs its worker (to switch to it: park, sleep, yield; or to hand it work).
#[cold]
pub(crate) fn refuse(what: &str) -> ! {
    panic!("{}", inherited_error(what));
}

/// The inherited green thread of a fork child finished its closure: it was the child's only
/// thread, so the child ends, as a process does when its last thread exits (status 0), or
/// with status 101 if the closure panicked (its message is already printed). Returning into
/// the copy of its worker would run the parent's other green threads in the child.
#[cold]
pub(crate) fn end_inherited_green_thread(panicked: bool) -> ! {
    if panicked {
        eprintln!(
            "spindle: the green thread that called fork() panicked in the child process; it \
             was the child's only thread, so the child exits with status 101"
        );
        std::process::exit(101);
    }
    std::process::exit(0);
}

/// `cell`'s value, initialized by `f` under the lock that `fork()` takes (see the module
/// docs), so that no fork child inherits an initialization half-done. Free once initialized.
pub(crate) fn once_init<T>(cell: &OnceLock<T>, f: impl FnOnce() -> T) -> &T {
    if let Some(v) = cell.get() {
        return v;
    }
    let _held = lock_init();
    cell.get_or_init(f)
}

fn lock_init() -> MutexGuard<'static, ()> {
    INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers the fork handlers, once per process. Called when a runtime is built.
pub(crate) fn register_handlers() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: the three functions are `extern "C"`, never unwind (they only lock,
        // unlock and store), and live as long as the process.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        if rc != 0 {
            // Only ENOMEM is possible: carry on without, and say so.
            eprintln!(
                "spindle: pthread_atfork failed ({}): fork() children will not know that \
                 runtimes were inherited",
                io::Error::from_raw_os_error(rc)
            );
        }
    });
}

extern "C" fn prepare() {
    let held = lock_init();
    HELD_ACROSS_FORK.with(|h| *h.borrow_mut() = Some(held));
}

extern "C" fn parent() {
    HELD_ACROSS_FORK.with(|h| drop(h.borrow_mut().take()));
}

extern "C" fn child() {
    GENERATION.fetch_add(1, Relaxed);
    FIRST_CHILD_ID.store(ThreadId::start_fresh_block_after_fork(), Relaxed);
    if context::current_green().is_some() {
        context::set_current_worker(std::ptr::null());
        context::set_switch_ban(SwitchBan::InheritedAcrossFork);
    }
    HELD_ACROSS_FORK.with(|h| drop(h.borrow_mut().take()));
}
