//! Carrying a thread's result to its `JoinHandle`, inside the thread's own record.
//!
//! The result travels through a [`ResultSlot`] in the thread record (`ThreadInner`), so a
//! spawn allocates one block, not a record and a separate shared packet. The slot is
//! type-erased: the value is stored in place when it fits four words (most results do)
//! and boxed otherwise; the `JoinHandle<T>` and the `Completer<T>` made by the same spawn
//! are the only ones that read and write it, with that `T`.
//!
//! The slot has four states in one atomic word (and two more for kernel threads, below):
//!
//! | state      | meaning                                            | who moves it on |
//! |------------|----------------------------------------------------|-----------------|
//! | `RUNNING`  | no result yet, nobody waiting, a handle exists      | joiner (-> `WAITING`), handle drop (-> `DETACHED`), thread (-> `DONE`; a kernel thread -> `STORED`) |
//! | `WAITING`  | no result yet; `joiner` holds the waiter            | thread (-> `DONE`; a kernel thread -> `STORED_WAITING`) |
//! | `DETACHED` | no result yet, the handle is gone                   | thread (-> `DONE`, then drops its result itself) |
//! | `DONE`     | the result was written                              | nobody          |
//! | `STORED`   | a kernel thread's result written, the thread still exiting | joiner (-> `STORED_WAITING`), handle drop (-> `DONE`, then drops the result), thread (-> `DONE`) |
//! | `STORED_WAITING` | as `STORED`, `joiner` holds the waiter       | thread (-> `DONE`)  |
//!
//! The thread writes the result, then swaps in `DONE` (release). If it saw `WAITING` it takes
//! the joiner's `Thread` and unparks it; if it saw `DETACHED`, nobody will ever read the
//! result, so it drops it at once. The joiner writes `joiner` before its
//! `RUNNING -> WAITING` CAS (release), so the thread's acquiring swap sees it; it then parks
//! until it reads `DONE` (acquire), after which the result is visible. A green joiner that
//! may switch first yields once and looks again: the thread often finishes in that turn,
//! and then the join is a load. A handle dropped
//! unjoined CASes `RUNNING -> DETACHED`, or, finding `DONE`, drops the result itself. So the
//! result is dropped by exactly one party, and never after the handle and the thread are
//! both done with it: a scoped thread's result, which may borrow from the scope, is gone
//! before the scope ends even though the record (shared with `Thread` handles) may outlive
//! it. The thread holds its own reference to the joiner's `Thread`, so a joiner that returns
//! early (a spurious wakeup that already sees `DONE`) frees nothing the thread still uses.
//!
//! A thread that never runs (cancelled while queued, or whose stack could not be made)
//! completes its slot from the `Completer`'s destructor with a [`Cancelled`] error, so a
//! joiner never waits forever.
//!
//! **Kernel threads complete in two steps** (`sched/one_to_one.rs`): std's `join` returns
//! once the thread has exited, after its std thread-locals' destructors, while its scope
//! and a detached result do not wait for those (the result is dropped, and the scope told,
//! as the closure ends). So at the end of the closure the thread writes the result and
//! moves `RUNNING -> STORED` or `WAITING -> STORED_WAITING` (release; if it finds
//! `DETACHED` it drops the result at once and stores `DONE`), and tells its scope; when its
//! thread-locals are gone it swaps in `DONE` and unparks a joiner it finds
//! (`STORED_WAITING`). A joiner that finds `STORED` registers as from `RUNNING`
//! (`STORED -> STORED_WAITING`); a handle dropped in `STORED` takes the result (acquire),
//! stores `DONE` and drops it on its own thread, as std's handle would; the exiting thread
//! then finds `DONE` and does nothing.

use std::any::Any;
use std::cell::{RefCell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
use std::sync::Arc;

use crate::park::{self, WaitReason};
use crate::sched::context::{self, SwitchBan};
use crate::task::local;
use crate::task::scope::ScopeData;
use crate::task::thread::{Thread, ThreadInner};

const RUNNING: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;
const DETACHED: u8 = 3;
/// A kernel thread's result written, its joiner not told yet (module docs).
const STORED: u8 = 4;
/// As `STORED`, with a joiner waiting.
const STORED_WAITING: u8 = 5;

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

/// In-place storage for a result: four words.
type Storage = MaybeUninit<[usize; 4]>;

/// Whether a `R` is stored in place (else boxed).
const fn fits<R>() -> bool {
    std::mem::size_of::<R>() <= std::mem::size_of::<Storage>()
        && std::mem::align_of::<R>() <= std::mem::align_of::<Storage>()
}

/// Writes `value` into empty `storage`.
///
/// # Safety
///
/// `storage` holds no value; it is later read back with [`take_stored`] of the same `R`.
unsafe fn store<R>(storage: *mut Storage, value: R) {
    if fits::<R>() {
        // SAFETY: `R` fits the storage in size and alignment (checked above).
        unsafe { storage.cast::<R>().write(value) };
    } else {
        // SAFETY: a pointer fits four words.
        unsafe {
            storage
                .cast::<*mut R>()
                .write(Box::into_raw(Box::new(value)))
        };
    }
}

/// Moves the value out of `storage`.
///
/// # Safety
///
/// `storage` holds a value written by [`store`] of the same `R`, not taken since.
unsafe fn take_stored<R>(storage: *mut Storage) -> R {
    if fits::<R>() {
        // SAFETY: per the contract, an `R` was written in place.
        unsafe { storage.cast::<R>().read() }
    } else {
        // SAFETY: per the contract, a `Box<R>` pointer was written.
        *unsafe { Box::from_raw(storage.cast::<*mut R>().read()) }
    }
}

/// Drops the value in `storage` (the type-erased destructor kept in the slot).
///
/// # Safety
///
/// As for [`take_stored`].
unsafe fn drop_stored<R>(storage: *mut Storage) {
    // SAFETY: passed on.
    drop(unsafe { take_stored::<R>(storage) });
}

/// A thread's result on its way to its `JoinHandle`; lives in the thread's record.
pub(crate) struct ResultSlot {
    state: AtomicU8,
    joiner: UnsafeCell<Option<Thread>>,
    value: UnsafeCell<Storage>,
    /// Drops the stored value, while there is one.
    dropper: UnsafeCell<Option<unsafe fn(*mut Storage)>>,
}

// SAFETY: `joiner`, `value` and `dropper` are each written by one side before a release
// operation on `state` and read by the other side only after acquiring it (module docs), so
// they are never accessed concurrently; the values moved across are `Send` (`T: Send` is
// required of every spawn, and `Thread` is `Send`).
unsafe impl Sync for ResultSlot {}
// SAFETY: as above.
unsafe impl Send for ResultSlot {}

impl ResultSlot {
    pub(crate) fn new() -> ResultSlot {
        ResultSlot {
            state: AtomicU8::new(RUNNING),
            joiner: UnsafeCell::new(None),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            dropper: UnsafeCell::new(None),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Acquire) == DONE
    }

    /// Writes `result` (the slot holds none); the caller then publishes it.
    ///
    /// # Safety
    ///
    /// Only the completing side calls this, once, with the spawn's `T`.
    unsafe fn put<T>(&self, result: std::thread::Result<T>) {
        // SAFETY: the slot is empty and only we touch it until `DONE` is published.
        unsafe {
            store(self.value.get(), result);
            *self.dropper.get() = Some(drop_stored::<std::thread::Result<T>>);
        }
    }

    /// Moves the result out.
    ///
    /// # Safety
    ///
    /// `DONE` was observed with acquire (or the caller wrote it), the result was not taken
    /// yet, and `T` is the spawn's.
    unsafe fn take<T>(&self) -> std::thread::Result<T> {
        // SAFETY: per the contract; the dropper goes with the value.
        unsafe {
            *self.dropper.get() = None;
            take_stored(self.value.get())
        }
    }

    /// Stores the result and wakes the joiner, or drops the result if the handle is gone.
    ///
    /// # Safety
    ///
    /// Called once, by the thread's side (its `Completer`), with the spawn's `T`.
    unsafe fn complete<T>(&self, result: std::thread::Result<T>) {
        // SAFETY: per the contract.
        unsafe { self.put(result) };
        match self.state.swap(DONE, AcqRel) {
            WAITING => {
                // SAFETY: the joiner wrote `joiner` before its release CAS to WAITING,
                // which our acquiring swap observed; it never touches `joiner` again.
                let joiner = unsafe { (*self.joiner.get()).take() };
                if let Some(j) = joiner {
                    j.unpark();
                }
            }
            DETACHED => {
                // Nobody will join: drop the result now, on this thread.
                // SAFETY: we just wrote it; the handle is gone and will not read it.
                drop(unsafe { self.take::<T>() });
            }
            _ => {}
        }
    }

    /// A kernel thread's first step (module docs): writes `result` for the joiner to take
    /// once [`ResultSlot::publish_stored`] has run, or drops it now if the handle is gone.
    ///
    /// # Safety
    ///
    /// As for [`ResultSlot::complete`], which is not called then.
    unsafe fn store_for_exit<T>(&self, result: std::thread::Result<T>) {
        // SAFETY: per the contract.
        unsafe { self.put(result) };
        let mut current = self.state.load(Acquire);
        loop {
            let next = match current {
                RUNNING => STORED,
                WAITING => STORED_WAITING,
                DETACHED => {
                    // Nobody will join: drop the result now, on this thread, while its
                    // thread-locals live.
                    // SAFETY: we just wrote it; the handle is gone and will not read it.
                    drop(unsafe { self.take::<T>() });
                    self.state.store(DONE, Release);
                    return;
                }
                other => unreachable!("result slot in state {other} before its thread ended"),
            };
            // Release publishes the result to a handle that takes it from `STORED`.
            match self.state.compare_exchange(current, next, AcqRel, Acquire) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// A kernel thread's second step, as it exits: the stored result becomes `DONE`, and a
    /// waiting joiner is woken. Touches no `T`.
    pub(crate) fn publish_stored(&self) {
        if self.state.swap(DONE, AcqRel) == STORED_WAITING {
            // SAFETY: as in `complete`: the joiner wrote `joiner` before its release CAS
            // to STORED_WAITING, which our acquiring swap observed.
            let joiner = unsafe { (*self.joiner.get()).take() };
            if let Some(j) = joiner {
                j.unpark();
            }
        }
        // STORED: nobody waits. DONE: the handle was dropped and took the result.
    }

    /// Waits for the result and takes it. Called once, by the `JoinHandle`.
    ///
    /// # Safety
    ///
    /// `T` is the spawn's, and the handle's drop (`detach`) does not run afterwards.
    pub(crate) unsafe fn wait<T>(&self) -> std::thread::Result<T> {
        if self.state.load(Acquire) != DONE && may_yield() {
            // Give way once before registering: a thread just spawned on this worker often
            // runs to its end in that turn, and the join then costs no handle clone, no
            // CAS, no park and no unpark (the atomics were most of a many-to-one spawn +
            // join). A thread that takes longer costs the joiner one yield more.
            crate::thread::yield_now();
        }
        let mut current = self.state.load(Acquire);
        if current != DONE {
            // SAFETY: before the CAS below only the joiner touches `joiner`.
            unsafe { *self.joiner.get() = Some(context::current_thread()) };
            loop {
                let next = match current {
                    RUNNING => WAITING,
                    STORED => STORED_WAITING,
                    DONE => {
                        // Finished meanwhile: the thread never looks at `joiner` then.
                        // SAFETY: DONE was published without reading `joiner`.
                        unsafe { *self.joiner.get() = None };
                        break;
                    }
                    other => unreachable!("result slot in state {other} at a join"),
                };
                match self.state.compare_exchange(current, next, AcqRel, Acquire) {
                    Ok(_) => {
                        while self.state.load(Acquire) != DONE {
                            park::park(WaitReason::Join);
                        }
                        break;
                    }
                    // RUNNING -> STORED (a kernel thread's first step), or DONE.
                    Err(now) => current = now,
                }
            }
        }
        // SAFETY: DONE was observed with acquire, so the write of the result is visible,
        // and the completing side no longer touches it.
        unsafe { self.take() }
    }

    /// The handle was dropped without joining: the result, now or when it comes, is
    /// dropped unread.
    ///
    /// # Safety
    ///
    /// Called once, by the `JoinHandle`'s drop, with the spawn's `T`, instead of `wait`.
    pub(crate) unsafe fn detach<T>(&self) {
        let mut current = self.state.load(Acquire);
        loop {
            match current {
                RUNNING => match self
                    .state
                    .compare_exchange(RUNNING, DETACHED, AcqRel, Acquire)
                {
                    Ok(_) => return,
                    Err(now) => current = now,
                },
                STORED => match self.state.compare_exchange(STORED, DONE, AcqRel, Acquire) {
                    Ok(_) => {
                        // The thread's closure is over and its result written (our acquire
                        // saw it); the thread's last step finds DONE and leaves the value.
                        // SAFETY: as below.
                        drop(unsafe { self.take::<T>() });
                        return;
                    }
                    Err(now) => current = now,
                },
                DONE => {
                    // Drop the result here.
                    // SAFETY: DONE observed with acquire; the thread no longer touches the
                    // value.
                    drop(unsafe { self.take::<T>() });
                    return;
                }
                other => unreachable!("result slot in state {other} at a detach"),
            }
        }
    }
}

/// Whether the caller is a green thread that may switch (so may yield before it waits).
fn may_yield() -> bool {
    context::current_green().is_some() && context::switch_ban() == SwitchBan::None
}

impl Drop for ResultSlot {
    fn drop(&mut self) {
        // A result nobody took or dropped: a spawn whose handle was never made (the spawn
        // failed after its completer ran).
        if let Some(dropper) = self.dropper.get_mut().take() {
            // SAFETY: the dropper is set exactly while a value of its type is stored.
            unsafe { dropper(self.value.get()) };
        }
    }
}

/// The thread side of a spawn: completes the result slot of the thread's record with the
/// thread's result, or with `Cancelled` if dropped without a result; for a scoped thread,
/// then tells the scope.
pub(crate) struct Completer<T> {
    /// The thread's record, which owns this completer (inside the thread's closure, which
    /// lives in the record's body or in a kernel thread's entry that holds the record), so
    /// it outlives the completer.
    record: *const ThreadInner,
    done: bool,
    scope: Option<Arc<ScopeData>>,
    result: PhantomData<fn() -> T>,
}

// SAFETY: the record is `Sync` and outlives the completer (see `record`); the completer
// moves with the thread's closure to the kernel thread that runs it, as a `Send` closure
// would.
unsafe impl<T: Send> Send for Completer<T> {}

impl<T> Completer<T> {
    /// A completer for the thread of `record`; a scoped thread counts as running in `scope`
    /// from here until the completer finishes.
    ///
    /// # Safety
    ///
    /// The completer is owned, directly or not, by the record (or by something that keeps
    /// the record alive longer), and it is the only completer of the record, with the `T`
    /// of the record's `JoinHandle`.
    pub(crate) unsafe fn new(record: &ThreadInner, scope: Option<Arc<ScopeData>>) -> Completer<T> {
        if let Some(s) = &scope {
            s.thread_started();
        }
        Completer {
            record,
            done: false,
            scope,
            result: PhantomData,
        }
    }

    /// Completes the slot as `how` says (at once, or the first of a kernel thread's two
    /// steps: module docs), then tells the scope.
    fn finish(&mut self, result: std::thread::Result<T>, how: Completion) {
        // A cancellation is not a panic of the thread's own.
        let panicked = result.as_ref().is_err_and(|e| !e.is::<Cancelled>());
        if !self.done {
            self.done = true;
            // SAFETY: the record outlives us (`Completer::new`'s contract), and we are its
            // only completer, with the handle's `T`.
            unsafe {
                if how == Completion::UntilExit {
                    (*self.record).result.store_for_exit(result);
                } else {
                    (*self.record).result.complete(result);
                }
            }
        }
        if let Some(scope) = self.scope.take() {
            scope.thread_finished(panicked);
        }
    }
    /// Runs `f`, catching a panic, drops the thread's local values, and completes the
    /// record's result slot with the outcome as `how` says.
    pub(crate) fn run(self, f: impl FnOnce() -> T, how: Completion) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        self.after_closure(result, how);
    }

    /// The part of [`Completer::run`] after the closure, never inlined into it: it reads
    /// thread-locals, and a green thread may have moved to another kernel thread during
    /// the closure (migration), so their addresses must be computed here, not reused from
    /// before the closure (`sched/README.md`, "Migration").
    #[inline(never)]
    fn after_closure(mut self, result: std::thread::Result<T>, how: Completion) {
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
        let result = match (result, context::switch_ban()) {
            // A forced unwind at runtime shutdown surfaces here as an opaque payload.
            (Err(_), SwitchBan::Cancelling) => Err(cancelled()),
            // The green thread that called fork(), in the child: it must not return into the
            // copy of its worker (fork.rs).
            (result, SwitchBan::InheritedAcrossFork) => {
                crate::fork::end_inherited_green_thread(result.is_err())
            }
            (other, _) => other,
        };
        self.finish(result, how);
    }
}

/// How a thread's end completes its record's result slot (module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    /// At once: the result is published and the joiner woken (green threads).
    Now,
    /// In two steps: the result is stored and the scope told now; the thread calls
    /// [`ResultSlot::publish_stored`] on its record as it exits (kernel threads).
    UntilExit,
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Err(cancelled()), Completion::Now);
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
    /// The entry of the new thread of `record`, running `f`; its result goes to the
    /// record's slot, for the `JoinHandle<T>` of the same spawn. A scoped thread counts as
    /// running in `scope` from here on.
    ///
    /// # Safety
    ///
    /// As for [`Completer::new`]: the entry is owned by the record (its body) or by
    /// something that keeps the record alive longer, and it is the record's only entry.
    pub(crate) unsafe fn new(record: &ThreadInner, f: F, scope: Option<Arc<ScopeData>>) -> Self {
        ThreadMain {
            f: Some(f),
            // SAFETY: passed on from our caller.
            completer: Some(unsafe { Completer::new(record, scope) }),
        }
    }

    /// Runs the closure and completes the result slot with its outcome as `how` says.
    pub(crate) fn run(mut self, how: Completion) {
        if let (Some(f), Some(c)) = (self.f.take(), self.completer.take()) {
            c.run(f, how);
        }
    }
}

impl<F, T> Drop for ThreadMain<F, T> {
    fn drop(&mut self) {
        drop(self.f.take());
        drop(self.completer.take());
    }
}
