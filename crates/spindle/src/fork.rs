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
//! - unparking such a thread from the child does nothing: there is nothing to wake. Nor is
//!   it among the waiters of any spindle primitive any more: see "Objects the parent's
//!   threads wait on" below.
//!
//! ## Objects the parent's threads wait on
//!
//! A spindle primitive (`Mutex`, `RwLock`, `Condvar`, `Semaphore`, `Barrier`, `WaitGroup`,
//! `Once`, `OnceLock`, a channel, and so a `select`) is copied into the child as it was,
//! its wait queues included: entries of the parent's blocked threads, which do not exist
//! here. The rule: **in the child, the parent's threads are gone from every wait queue**.
//! What the child does with the object is done as if they had never queued: an unlock, a
//! release, a notify, a permit or a message goes to the child's own waiters, or, with none,
//! stays in the object (the unlocked `Mutex` or `RwLock` is free, the permit stays in the
//! `Semaphore`, the message in the channel's buffer). It is never handed to a thread of the
//! parent, where it would be lost: a lock handed over would never be released, a message
//! would vanish, and a mutex whose woken waiter never comes back would wake no other.
//!
//! How, step by step:
//!
//! 1. Each wait-queue entry records the fork generation it was linked in, and a wait list
//!    never holds entries of two generations (`sync/wait_list.rs`).
//! 2. Every operation on a list in the child finds its entries stale (linked in an
//!    earlier generation) and treats the list as empty; the first that changes the list
//!    (a push or a pop) forgets them all at once.
//!    Nothing is written to the entries, which belong to threads that are not here, and
//!    nothing but their generation is read. Every waker pops through the list, so none
//!    can reach a parent's entry.
//! 3. A primitive whose state word summarises its queue forgets the summary with the
//!    entries, under the queue lock: the "someone is queued" bit of `Mutex`, `RwLock`,
//!    `Semaphore`; the `Mutex`'s "a woken waiter is on its way" bit (`WOKEN`) too, since
//!    the woken waiter was a parent thread. A `WOKEN` set for a parent thread that had
//!    already left the queue at the fork (woken, not yet back) is told apart by the
//!    generation the mutex stamps on it whenever it sets it (`sync/raw_mutex.rs`).
//!
//! All of it runs in slow paths, under a queue lock, at loads and compares of two
//! generations; the uncontended paths read no generation, and nothing is asked of the
//! kernel (no `getpid`). One consequence, said openly: `RwLock::try_read`, `try_write` and
//! `Semaphore::try_acquire`, which never take the queue lock, see the parent's "someone is
//! queued" bit until a slow path of the child has forgotten it (a blocking acquire, or a
//! release that finds the bit), and fail meanwhile as if a waiter were ahead of them.
//!
//! What stays as the parent left it is what its threads *hold* or *did*: a lock, read lock
//! or permits one of them holds (waiting for those in the child waits forever, as with
//! std's primitives copied by a fork), the arrivals at a `Barrier` of threads parked there
//! (they count towards the child's group), a `Once` or `OnceLock` one of them is running
//! (its waiters in the child wait forever), and a message a waker in the parent had
//! already put in a parked receiver's slot before the fork.
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
//! everything that would make it wait or queue work on its worker fails at once, with a
//! panic that says why: parking (a contended lock, an empty channel, `join`, `park`),
//! `sleep`, `yield_now`, `unblock` and `spawn`; an I/O wait returns that message as an
//! `io::Error` instead. What completes without waiting works: an uncontended lock, `try_`
//! operations, a read that finds data, file I/O (run in place), `current()`,
//! `spindle::local!`. When its closure returns, the child process exits with status 0, as
//! a process does when its last thread ends; if it panics (the message was printed), with
//! status 101. It never returns into the copy of its worker.
//!
//! If it was a helper thread of `unblock`, the job's closure runs to its end in the child
//! and the child then exits with status 0: the helper's loop would take the parent's queued
//! jobs. A fork from code the scheduler runs itself outside any green thread (the
//! destructor of a thread's closure or result that a worker drops) is not caught: such a
//! child must exec or `_exit` at once.
//!
//! The way to use green threads in the child is a new runtime: `Runtime::builder().build()`
//! works in the child, with its own reactor, stacks and workers, and its `block_on` may be
//! called from the thread that forked, green or not (it then waits as a kernel thread; from
//! the green thread that forked, spawn onto the new runtime from inside that `block_on`).
//! To start programs, [`crate::process::Command`] never forks at all.
//!
//! ## The handlers (`pthread_atfork`)
//!
//! Registered when the first runtime is built, the dump signal is first installed, or a
//! wait queue first links a waiter.
//!
//! 1. *prepare* (in the parent, before the copy): take the process-wide lock that every
//!    one-time initialization of spindle holds while it runs ([`once_init`]: the io_uring
//!    probe and the installation of the signal handlers for stack overflows and CPU
//!    sampling; [`under_init_lock`]: the dump signal's pipe and reader). Taking it waits for an initialization in progress on another thread, so
//!    that none is copied half-done: a child that found one would wait forever for a thread
//!    it does not have.
//! 2. *parent* (after the copy): release it.
//! 3. *child* (after the copy, on the only thread): bump the generation (which is all it
//!    takes to make the parent's runtimes inherited and its wait-queue entries stale);
//!    move the thread id counter to a fresh block and remember the mark; if this thread is
//!    a green thread, forget its worker (`CURRENT_WORKER`) and ban its switches (the ban
//!    `suspend` checks anyway, so the running green thread pays nothing for it); forget the
//!    dump signal's pipe, which is the parent's (`debug/signal.rs`); release the lock. All
//!    of it is loads and stores (thread-locals, two atomics) and a mutex unlock, which may
//!    call `futex(FUTEX_WAKE)`: all async-signal-safe, as code between `fork()` and
//!    `exec()` must be.
//!
//! The lock order is that single lock, taken last: `pthread_atfork` runs prepare handlers
//! registered after spindle's first. So an initialization under it must never fork, nor
//! wait for a thread that may be forking, and another library's prepare handler must not
//! wait for a spindle initialization. The runtimes' own locks (inboxes, the helper pool,
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
//!   as it was, less its waiters (above): waiting in the child for something only those
//!   threads would do waits forever from a kernel thread, as it would with std's
//!   primitives. That includes the short internal spin lock of a primitive's wait queue
//!   if a parent thread was inside one of its slow paths at the instant of the fork: the
//!   child's next slow-path operation on that object then spins forever.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::sched::context::{self, SwitchBan};
use crate::task::thread::ThreadId;

/// Bumped by the child handler: which copy of the process this is (32 bits, so that the
/// stamp fits in padding of the structures that carry it; it wraps only after 2^32
/// generations of fork children). Relaxed is enough: it is written only in a child with
/// one thread, before that thread can start any other.
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// This process's fork generation: 0 in a process that is no fork child (of a process
/// running spindle's handlers), one more in each fork child than in its parent. A record
/// stamped with another value was made in an ancestor process. One relaxed load of a
/// static: no system call.
#[inline]
pub(crate) fn generation() -> u32 {
    GENERATION.load(Relaxed)
}

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
    or build a new Runtime and run green threads through its block_on";

/// Which process a runtime was built in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Provenance(u32);

impl Provenance {
    /// This process, now.
    pub(crate) fn here() -> Provenance {
        Provenance(generation())
    }

    /// Whether this process is a fork child of the one the runtime was built in.
    #[inline]
    pub(crate) fn is_inherited(self) -> bool {
        generation() != self.0
    }

    /// Panics with [`inherited_error`] if inherited: `what` was asked of the runtime.
    pub(crate) fn assert_here(self, what: &str) {
        if self.is_inherited() {
            refuse(what);
        }
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

/// Whether this process is a fork child (of a process that had spindle's fork handlers
/// registered): a thread of an ancestor may have held any lock at the fork.
pub(crate) fn is_fork_child() -> bool {
    GENERATION.load(Relaxed) != 0
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

/// Panics with [`inherited_error`]: `what` needs what stayed in the parent (a runtime's
/// threads, or, on the green thread that forked, its worker: to switch to it or hand it
/// work).
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
        write_stderr_unlocked(
            b"spindle: the green thread that called fork() panicked in the child process; it \
              was the child's only thread, so the child exits with status 101\n",
        );
        std::process::exit(101);
    }
    std::process::exit(0);
}

/// A job of the helper pool called fork() and returned in the child, where the helper is
/// the only thread: the child ends with status 0, as the green thread that forked does.
#[cold]
pub(crate) fn end_inherited_helper() -> ! {
    std::process::exit(0);
}

/// Writes `text` to stderr with `write(2)` on descriptor 2, not through std's stderr, whose
/// lock a thread of the parent may have held at the fork (and then holds for good in the
/// child). Retries short and interrupted writes; if stderr is closed or failing, the rest
/// is lost, as std's write would lose it.
pub(crate) fn write_stderr_unlocked(text: &[u8]) {
    let mut rest = text;
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid buffer of `rest.len()` bytes; descriptor 2 is only
        // written to (if it is closed, the call fails with EBADF).
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        match n {
            n if n > 0 => rest = &rest[n as usize..],
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
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

/// Runs `f` under the lock that `fork()` takes (see the module docs), so that no fork child
/// inherits what `f` does half-done. `f` must not fork, nor wait for a thread that may be
/// forking, nor register fork handlers.
pub(crate) fn under_init_lock<R>(f: impl FnOnce() -> R) -> R {
    let _held = lock_init();
    f()
}

/// Whether the fork handlers are registered (or being registered).
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Registers the fork handlers, once per process. Called when a runtime is built, when the
/// dump signal is installed (`debug/signal.rs`), and when a wait queue first links a
/// waiter (`sync/wait_list.rs`): the primitives work on plain kernel threads without any
/// runtime, and a fork child must know the parent's waiters for stale then too. After the
/// first call, one relaxed load.
///
/// Not a `Once`: a thread registering blocks in `pthread_atfork` while another thread
/// forks, and a child that inherited a `Once` in the middle of running would wait for it
/// forever. The first caller registers; the others go on without waiting (a fork in
/// between runs no handler of ours: runtimes built and waiters linked then are not marked
/// in that child).
#[inline]
pub(crate) fn register_handlers() {
    if !REGISTERED.load(Relaxed) {
        register_handlers_now();
    }
}

#[cold]
#[inline(never)]
fn register_handlers_now() {
    if REGISTERED.swap(true, Relaxed) {
        return;
    }
    // SAFETY: the three functions are `extern "C"`, cannot unwind (they only lock, unlock
    // and store, and reach their thread-local with `try_with`), and live as long as the
    // process.
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if rc != 0 {
        // Only ENOMEM is possible: carry on without, and say so.
        eprintln!(
            "spindle: pthread_atfork failed ({}): fork() children will not know that \
             runtimes were inherited",
            io::Error::from_raw_os_error(rc)
        );
    }
}

extern "C" fn prepare() {
    let held = lock_init();
    // A thread whose thread-locals are gone (forking from a TLS destructor) does not keep
    // the lock across the fork: it is released here, and the fork goes on without it.
    let _ = HELD_ACROSS_FORK.try_with(|h| *h.borrow_mut() = Some(held));
}

extern "C" fn parent() {
    let _ = HELD_ACROSS_FORK.try_with(|h| drop(h.borrow_mut().take()));
}

extern "C" fn child() {
    GENERATION.fetch_add(1, Relaxed);
    FIRST_CHILD_ID.store(ThreadId::start_fresh_block_after_fork(), Relaxed);
    if context::current_green().is_some() {
        context::set_current_worker(std::ptr::null());
        context::set_switch_ban(SwitchBan::InheritedAcrossFork);
    }
    crate::debug::forget_inherited_dump_pipe();
    let _ = HELD_ACROSS_FORK.try_with(|h| drop(h.borrow_mut().take()));
}
