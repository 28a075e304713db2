//! Spawning, joining and controlling threads, green or kernel: the std-like entry points.
//!
//! Which kind of thread `spawn` makes depends on where it is called: from a green thread of
//! a many-to-one runtime it makes a green thread on the same runtime; from a thread of a
//! one-to-one runtime, or from a thread outside any runtime, it makes a kernel thread (so
//! spindle can stand in for `std::thread` anywhere).

use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::park::{self, WaitReason};
use crate::sched::context::{self, SpawnTarget};
use crate::sched::{one_to_one, pool};
use crate::task::scope::ScopeData;
use crate::task::ThreadKind;

pub use crate::task::packet::Cancelled;
pub use crate::task::scope::{scope, Scope, ScopedJoinHandle};
pub use crate::task::thread::{Thread, ThreadId};

/// Configuration for a new thread: name and stack size, as `std::thread::Builder`.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with no name and the runtime's default stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the thread (shown by `Thread::name`, panics messages and dumps).
    pub fn name(mut self, name: String) -> Builder {
        self.name = Some(name);
        self
    }

    /// Sets the stack size in bytes (rounded up to whole pages for green threads).
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Spawns the thread. Fails with a message naming the cause if its stack or kernel
    /// thread cannot be made, if the stack size is out of range, if the name contains a
    /// NUL byte (std's builder panics there; here every model fails alike), or if the
    /// runtime has been dropped.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // SAFETY: `F` and `T` are `'static`, so there is no borrow to outlive.
        unsafe { self.spawn_unchecked(None, f) }
    }

    /// Spawns a scoped thread, which may borrow from outside `scope`.
    pub fn spawn_scoped<'scope, 'env, F, T>(
        self,
        scope: &'scope Scope<'scope, 'env>,
        f: F,
    ) -> io::Result<ScopedJoinHandle<'scope, T>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        scope.spawn_with(self, f)
    }

    /// Spawns without a `'static` bound.
    ///
    /// # Safety
    ///
    /// If `F` or `T` borrow, the caller waits for the thread to finish before the borrowed
    /// data goes away.
    pub(crate) unsafe fn spawn_unchecked<'a, F, T>(
        self,
        scope: Option<Arc<ScopeData>>,
        f: F,
    ) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'a,
        T: Send + 'a,
    {
        if let Some(name) = &self.name {
            check_name(name)?;
        }
        match context::spawn_target() {
            SpawnTarget::Green(shared) => {
                let size = self
                    .stack_size
                    .map(crate::stack::check_stack_size)
                    .transpose()?;
                // SAFETY: the borrow contract is our caller's.
                unsafe { pool::spawn(shared, self.name, size, scope, f) }
            }
            SpawnTarget::Kernel(rt) => {
                // SAFETY: the borrow contract is our caller's.
                unsafe { one_to_one::spawn(rt, self.name, self.stack_size, scope, f) }
            }
        }
    }
}

/// A thread name must not contain a NUL byte: a kernel thread's name is handed to the
/// kernel as a C string.
fn check_name(name: &str) -> io::Result<()> {
    if name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("thread name {name:?} contains a NUL byte"),
        ));
    }
    Ok(())
}

/// Yields if the running green thread has used up its time slice (see
/// [`crate::runtime::Builder::time_slice`]); otherwise returns at once.
///
/// Scheduling of green threads is cooperative: a thread that computes for a long time
/// holds its worker until it switches. Calling `checkpoint` in its loops lets the others
/// run every time slice. It costs a thread-local read and two loads, so it can go in an
/// inner loop. On a kernel thread (one-to-one model, or outside any runtime) it does
/// nothing: the kernel preempts those.
///
/// ```
/// let rt = spindle::Runtime::builder().build()?;
/// let sum = rt.block_on(|| {
///     let mut sum = 0u64;
///     for i in 0..1_000_000u64 {
///         sum = sum.wrapping_add(i * i);
///         spindle::checkpoint();
///     }
///     sum
/// });
/// assert_eq!(sum, (0..1_000_000u64).map(|i| i * i).sum::<u64>());
/// # Ok::<(), std::io::Error>(())
/// ```
#[inline]
pub fn checkpoint() {
    if let Some(w) = context::current_worker() {
        if w.slice_used_up() && context::current_green().is_some() && !context::is_cancelling() {
            yield_now();
        }
    }
}

/// Spawns a thread and returns a handle to join it, as `std::thread::spawn`.
///
/// # Panics
///
/// If the thread cannot be created (for example no memory is left for its stack, or the
/// runtime has been dropped); [`Builder::spawn`] returns the error instead.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new()
        .spawn(f)
        .unwrap_or_else(|e| panic!("failed to spawn thread: {e}"))
}

/// An owned permission to join a thread, as `std::thread::JoinHandle`. Dropping it detaches
/// the thread.
pub struct JoinHandle<T> {
    thread: Thread,
    /// The thread's result travels in its record (`task/packet.rs`), typed by this `T`.
    result: PhantomData<T>,
}

impl<T> JoinHandle<T> {
    /// The handle of the thread whose entry (`ThreadMain<_, T>`) was made for `thread`'s
    /// record by the same spawn.
    pub(crate) fn new(thread: Thread) -> JoinHandle<T> {
        JoinHandle {
            thread,
            result: PhantomData,
        }
    }

    /// Waits for the thread to finish and returns its result: `Err` with the panic payload
    /// if it panicked, or with a [`Cancelled`] payload if its runtime was dropped first.
    /// From a green thread this parks only the green thread. As with std, a kernel thread
    /// (one-to-one, or spawned outside a runtime) has finished when the destructors of its
    /// std thread-locals have run too.
    pub fn join(self) -> std::thread::Result<T> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the `Thread` is moved out once.
        let thread = unsafe { std::ptr::read(&this.thread) };
        if crate::fork::belongs_to_parent(thread.inner.id) && !thread.inner.result.is_done() {
            crate::fork::refuse(&format!(
                "join thread {}, which was running when the parent forked",
                thread.inner.id
            ));
        }
        // A join of a kernel thread or of another runtime's thread waits for something
        // this runtime's all-asleep watch cannot see (`sched/all_asleep.rs`).
        let target = match &thread.inner.kind {
            ThreadKind::Green(g) => g.runtime,
            ThreadKind::Kernel(_) => 0,
        };
        context::waiting_outside(
            |mine| mine != target,
            // SAFETY: the slot's `T` is ours (`new`), and the handle's drop (`detach`) does
            // not run: the handle is in a `ManuallyDrop`.
            || unsafe { thread.inner.result.wait::<T>() },
        )
    }

    /// A check of whether the thread is still running, that outlives the handle.
    pub(crate) fn still_running_check(&self) -> impl Fn() -> bool {
        let thread = self.thread.clone();
        move || !thread.inner.result.is_done()
    }

    /// The thread's handle.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// Whether the thread has finished (its result is ready, `join` will not wait).
    pub fn is_finished(&self) -> bool {
        self.thread.inner.result.is_done()
    }
}

impl<T> Drop for JoinHandle<T> {
    /// Detaches the thread, as dropping a `std::thread::JoinHandle` does; its result is
    /// dropped unread, now or when the thread finishes.
    fn drop(&mut self) {
        // SAFETY: the slot's `T` is ours, and `join` (which skips this drop) was not called.
        unsafe { self.thread.inner.result.detach::<T>() };
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("thread", &self.thread)
            .finish()
    }
}

/// Gives way to other threads: a green thread goes to the back of its worker's run queue;
/// a kernel thread calls `std::thread::yield_now`.
#[inline]
pub fn yield_now() {
    match context::current_green() {
        Some(task) => context::suspend(task, crate::task::green::Suspend::Yield),
        None => std::thread::yield_now(),
    }
}

/// Sleeps for at least `duration`. A green thread sleeps on its worker's timers and costs
/// no CPU meanwhile; park tokens are not affected.
pub fn sleep(duration: Duration) {
    match Instant::now().checked_add(duration) {
        Some(deadline) => park::sleep_until(deadline),
        // Too long to represent: sleep a year at a time, forever.
        None => loop {
            park::sleep_until(Instant::now() + Duration::from_secs(365 * 86_400));
        },
    }
}

/// Blocks until this thread's token is available (see [`Thread::unpark`]); may return
/// spuriously, as `std::thread::park`.
#[inline]
pub fn park() {
    park::park(WaitReason::Park);
}

/// Like [`park`], but returns after at most `timeout`.
pub fn park_timeout(timeout: Duration) {
    park::park_timeout(WaitReason::Park, timeout);
}

/// The calling thread's handle: the running green thread, or this kernel thread.
pub fn current() -> Thread {
    context::current_thread()
}
