//! Scoped threads: spawns that may borrow from the caller, as `std::thread::scope`.
//!
//! `ScopeData` counts the threads still running. Each scoped thread's `Completer` calls
//! [`ScopeData::thread_finished`] after it has published its result and dropped its own
//! reference to it; the last one unparks the scope's owner, which waits in `scope` until
//! the count is zero. So when `scope` returns, no scoped thread touches borrowed data
//! again. A panic of a thread nobody joined makes `scope` panic, as in std.

use std::marker::PhantomData;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::Arc;

use crate::fork::Provenance;
use crate::park::{self, WaitReason};
use crate::sched::context;
use crate::task::thread::Thread;
use crate::thread::{Builder, JoinHandle};

/// Shared state of one scope.
pub(crate) struct ScopeData {
    running: AtomicUsize,
    unjoined_panics: AtomicUsize,
    owner: Thread,
    /// The process the scope was opened in (`fork.rs`).
    provenance: Provenance,
}

impl ScopeData {
    /// Called when a scoped thread's completer is made, before the thread can run.
    pub(crate) fn thread_started(&self) {
        self.running.fetch_add(1, Relaxed);
    }

    /// Called once per scoped thread, after its result is published.
    pub(crate) fn thread_finished(&self, panicked: bool) {
        if panicked {
            self.unjoined_panics.fetch_add(1, Relaxed);
        }
        // Release: everything the thread did happens-before the owner's acquiring load.
        if self.running.fetch_sub(1, AcqRel) == 1 {
            self.owner.unpark();
        }
    }
}

/// A scope to spawn threads that may borrow, created by [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    data: Arc<ScopeData>,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// A handle to join a thread spawned in a [`Scope`].
pub struct ScopedJoinHandle<'scope, T> {
    handle: JoinHandle<T>,
    data: Arc<ScopeData>,
    scope: PhantomData<&'scope ()>,
}

/// Creates a scope in which threads may borrow non-`'static` data; every thread spawned in
/// it is joined before `scope` returns.
///
/// Threads are spawned in the caller's model: green threads from a green thread, kernel
/// threads in the one-to-one model or outside any runtime. If a thread panicked and was
/// not joined, `scope` panics after all threads have finished.
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope {
        data: Arc::new(ScopeData {
            running: AtomicUsize::new(0),
            unjoined_panics: AtomicUsize::new(0),
            owner: context::current_thread(),
            provenance: Provenance::here(),
        }),
        scope: PhantomData,
        env: PhantomData,
    };
    let result = {
        let _wait = WaitForAll(&scope.data);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&scope)))
    };
    match result {
        Err(payload) => std::panic::resume_unwind(payload),
        Ok(_) if scope.data.unjoined_panics.load(Relaxed) > 0 => {
            panic!("a scoped thread panicked")
        }
        Ok(value) => value,
    }
}

/// Waits for every scoped thread, also when unwinding.
struct WaitForAll<'a>(&'a ScopeData);

impl Drop for WaitForAll<'_> {
    fn drop(&mut self) {
        // Never returns early: a green thread being cancelled at shutdown cannot park, and
        // `context::suspend` aborts the process rather than let this wait unwind while the
        // scoped threads still borrow the stack.
        if self.0.running.load(Acquire) != 0 {
            // In a fork child, the scope's threads were the parent's and do not exist here:
            // they will neither finish nor touch the borrowed data again.
            self.0
                .provenance
                .assert_here("wait for the threads of a scope opened before the parent forked");
        }
        let guard = crate::sched::context::AbortIfUnwound {
            what: "a scope waiting for its threads",
            still_borrowed: || self.0.running.load(Acquire) != 0,
        };
        while self.0.running.load(Acquire) != 0 {
            park::park(WaitReason::Scope);
        }
        std::mem::forget(guard);
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a thread that may borrow from outside the scope. Panics if the thread cannot
    /// be created, like [`crate::spawn`].
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        Builder::new()
            .spawn_scoped(self, f)
            .unwrap_or_else(|e| panic!("failed to spawn thread: {e}"))
    }

    pub(crate) fn spawn_with<F, T>(
        &'scope self,
        builder: Builder,
        f: F,
    ) -> std::io::Result<ScopedJoinHandle<'scope, T>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        // SAFETY: `scope` does not return (nor unwind past `WaitForAll`) before `running`
        // drops back to zero, which each thread signals only after its last use of borrowed
        // data; so `'scope` borrows outlive the thread.
        let handle = unsafe { builder.spawn_unchecked(Some(self.data.clone()), f)? };
        Ok(ScopedJoinHandle {
            handle,
            data: self.data.clone(),
            scope: PhantomData,
        })
    }
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the thread to finish and returns its result (`Err` if it panicked).
    pub fn join(self) -> std::thread::Result<T> {
        let result = self.handle.join();
        if result
            .as_ref()
            .is_err_and(|e| !e.is::<crate::thread::Cancelled>())
        {
            self.data.unjoined_panics.fetch_sub(1, Relaxed);
        }
        result
    }

    /// The thread's handle.
    pub fn thread(&self) -> &Thread {
        self.handle.thread()
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}
