//! The one-to-one model: every spawned thread is a kernel thread.
//!
//! There is no scheduler here: the kernel schedules, `park` and `sleep` block the kernel
//! thread. What this module adds to `std::thread` is the common API: the same `Thread`
//! records and `JoinHandle`s as green threads, so joins, parks and unparks work across
//! models, and a runtime context (`context::with_entered`) so that a thread spawned from
//! a one-to-one thread is again a kernel thread of the same runtime.
//!
//! **When a kernel thread is finished.** std's `join` returns once the thread has exited,
//! after the destructors of its std thread-locals (a thread-local that flushes a buffer
//! has flushed); its scope, and the drop of a detached thread's result, do not wait for
//! those. spindle joins through the record, not the std handle (so that a green thread
//! can join a kernel thread without blocking its worker), so the record's result slot is
//! completed in two steps (`task/packet.rs`): as the closure ends, the result is stored
//! (or dropped if the handle is gone) and the scope told; the joiner is told by a
//! thread-local destructor of its own ([`ExitNotice`]), registered as the thread starts,
//! before the closure can register any. std registers destructors with the C library
//! (`__cxa_thread_atexit_impl`), which runs them last-registered first: the notice runs
//! after every thread-local the closure used. A thread-local first used by another one's
//! destructor is registered then and runs next, so it too comes before the notice.
//! (Destructors of `pthread_key_create` keys, which C libraries use, run after all these
//! and are not waited for.)

use std::cell::Cell;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use crate::fork::Provenance;
use crate::sched::context;
use crate::task::packet::{Completion, ThreadMain};
use crate::task::scope::ScopeData;
use crate::task::thread::Thread;
use crate::task::{ThreadInner, ThreadKind};
use crate::thread::JoinHandle;

/// A one-to-one runtime's shared settings.
pub(crate) struct OneToOneShared {
    /// Stack size for spawned kernel threads when the thread builder names none; `None`
    /// leaves std's default.
    pub(crate) stack_size: Option<usize>,
    /// The process the runtime was built in (`fork.rs`).
    pub(crate) provenance: Provenance,
    /// The kernel threads spawned on it and not finished, with their stack sizes, for
    /// dumps (`debug/`).
    pub(crate) threads: Mutex<Vec<(Arc<ThreadInner>, usize)>>,
}

impl OneToOneShared {
    pub(crate) fn new(stack_size: Option<usize>) -> OneToOneShared {
        OneToOneShared {
            stack_size,
            provenance: Provenance::here(),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// The threads listed now, with their stack sizes.
    pub(crate) fn listed(&self) -> Vec<(Arc<ThreadInner>, usize)> {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn list(&self, t: &Arc<ThreadInner>, stack_size: usize) {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((t.clone(), stack_size));
    }

    fn unlist(&self, t: &ThreadInner) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = threads.iter().position(|(x, _)| std::ptr::eq(&**x, t)) {
            threads.swap_remove(i);
        }
    }
}

/// Takes a thread off its runtime's list when dropped: when its closure has returned or
/// unwound.
struct Listed(Arc<OneToOneShared>, Arc<ThreadInner>);

impl Drop for Listed {
    fn drop(&mut self) {
        self.0.unlist(&self.1);
    }
}

/// What a kernel thread still has to do when its thread-locals are destroyed: tell its
/// joiner that the stored result is there (module docs). Holds the thread's record, from
/// the end of its closure on.
struct ExitNotice(Cell<Option<Thread>>);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        if let Some(me) = self.0.take() {
            me.inner.result.publish_stored();
        }
    }
}

thread_local! {
    static EXIT_NOTICE: ExitNotice = const { ExitNotice(Cell::new(None)) };
}

/// Spawns a kernel thread running `f`.
///
/// # Safety
///
/// If `F` or `T` borrow (`'a` shorter than `'static`), the caller waits for the thread to
/// finish before the borrowed data goes away (a scope does).
pub(crate) unsafe fn spawn<'a, F, T>(
    rt: Option<Arc<OneToOneShared>>,
    name: Option<String>,
    stack_size: Option<usize>,
    scope: Option<Arc<ScopeData>>,
    f: F,
) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
{
    if let Some(rt) = &rt {
        rt.provenance
            .check("spawn a thread on this one-to-one runtime")?;
    }
    if crate::fork::on_inherited_green_thread() {
        return Err(crate::fork::inherited_error(
            "spawn a thread from the green thread that called fork()",
        ));
    }
    let inner = ThreadInner::new(name.as_deref().map(Into::into), || {
        ThreadKind::Kernel(OnceLock::new())
    });
    // Off the runtime's list as soon as the closure has returned or unwound, before the
    // result is published: a joiner must not find the thread still listed.
    let unlist_after = rt.clone().map(|rt| (rt, inner.clone()));
    let f = move || {
        let _listed = unlist_after.map(|(rt, t)| Listed(rt, t));
        f()
    };
    // Fields drop in order: if the kernel thread never starts, the entry (whose completer
    // writes the record's result slot) goes before `me`, the reference that keeps the
    // record alive for it.
    struct KernelMain<E> {
        entry: E,
        me: Thread,
    }
    let kernel_main = KernelMain {
        // SAFETY: the entry lives in `kernel_main`, next to `me`, which keeps the record
        // alive longer (field order, and `set_kernel_self` below keeps `me` until the
        // kernel thread exits); it is the record's only entry, for the handle made below.
        entry: unsafe { ThreadMain::new(&inner, f, scope) },
        me: Thread::from_inner(inner.clone()),
    };
    let child_rt = rt.clone();
    let main = move || {
        // First, so that its destructor is registered before any other of this thread's
        // thread-locals, and runs after them (module docs).
        EXIT_NOTICE.with(|_| {});
        let KernelMain { entry, me } = kernel_main;
        if let ThreadKind::Kernel(slot) = &me.inner.kind {
            let _ = slot.set(std::thread::current());
        }
        me.inner.kernel_tid.store(
            rustix::thread::gettid().as_raw_nonzero().get(),
            std::sync::atomic::Ordering::Relaxed,
        );
        // The notice's own reference to the record: `set_kernel_self`'s goes with its
        // thread-local, maybe before the notice runs.
        let record = me.clone();
        context::set_kernel_self(me);
        match child_rt {
            Some(rt) => context::with_entered(rt, || entry.run(Completion::UntilExit)),
            None => entry.run(Completion::UntilExit),
        }
        EXIT_NOTICE.with(|notice| notice.0.set(Some(record)));
    };
    let main: Box<dyn FnOnce() + Send + 'a> = Box::new(main);
    // SAFETY: only the lifetime changes. If `'a` is not `'static`, the caller waits for
    // this thread to finish (the function's contract), so nothing `main` borrows is freed
    // while it runs.
    let main: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(main) };
    let mut b = std::thread::Builder::new();
    if let Some(n) = name {
        b = b.name(n);
    }
    let size = stack_size.or(rt.as_ref().and_then(|r| r.stack_size));
    if let Some(size) = size {
        b = b.stack_size(size);
    }
    if let Some(rt) = &rt {
        /// std's default stack size for threads it spawns (without `RUST_MIN_STACK`).
        const STD_DEFAULT_STACK: usize = 2 << 20;
        rt.list(&inner, size.unwrap_or(STD_DEFAULT_STACK));
    }
    let handle = b.spawn(main).map_err(|e| {
        if let Some(rt) = &rt {
            rt.unlist(&inner);
        }
        io::Error::new(e.kind(), format!("cannot create a kernel thread: {e}"))
    })?;
    if let ThreadKind::Kernel(slot) = &inner.kind {
        let _ = slot.set(handle.thread().clone());
    }
    // The std handle is dropped, which detaches the kernel thread: joining goes through
    // the packet, so that a green thread can join a kernel thread without blocking its
    // worker.
    drop(handle);
    Ok(JoinHandle::<T>::new(Thread::from_inner(inner)))
}
