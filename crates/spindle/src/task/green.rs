//! The part of a thread record that only green threads have.
//!
//! A green thread's record is shared (`Arc<ThreadInner>`) between its worker, the run
//! queues, timers and every `Thread` handle. Two parts with different owners live in it:
//!
//! - `state`, the park word, is atomic: any thread may unpark a green thread. Its protocol
//!   is written down in `sched/README.md`.
//! - `local` holds the coroutine and the bookkeeping the scheduler needs. Only the worker
//!   kernel thread that owns the green thread touches it (started green threads never move
//!   between kernel threads: see DESIGN.md), which is what makes the `Sync` impl sound.

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Instant;

use corosensei::{Coroutine, Yielder};

use crate::park::WaitReason;
use crate::sched::worker::WorkerShared;
use crate::stack::{GreenStack, OverflowInfo};
use crate::task::park_word::ParkWord;

/// Why a green thread hands control back to its worker.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Suspend {
    /// Go to the back of the run queue.
    Yield,
    /// Park until unparked (commit protocol in `sched/README.md`).
    Park,
    /// Park until unparked or until the deadline passes.
    ParkUntil(Instant),
    /// Sleep until the deadline; park tokens are not involved.
    SleepUntil(Instant),
    /// Back from a backtrace capture (`debug/capture.rs`): the thread is suspended where it
    /// was before, and nothing about its state changed.
    Captured,
}

/// What a worker resumes a suspended green thread for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Resume {
    /// Go on running.
    Run,
    /// Record the backtrace of where the thread is suspended into the capture, then
    /// suspend again with [`Suspend::Captured`] (`debug/capture.rs`). Only ever sent by the
    /// thread's worker, from scheduler code, to a thread that has started.
    CaptureBacktrace(NonNull<crate::debug::capture::BacktraceCapture>),
}

/// The coroutine type every green thread runs in.
pub(crate) type GreenCoroutine = Coroutine<Resume, Suspend, (), GreenStack>;

/// The yielder the running green thread suspends through.
pub(crate) type GreenYielder = Yielder<Resume, Suspend>;

/// What a green thread's body is at a given moment.
pub(crate) enum Body {
    /// Spawned from another kernel thread: the coroutine is created by the worker that
    /// first runs it, since creating it needs that worker's stack pool.
    Unstarted(Box<dyn FnOnce() + Send>),
    /// A coroutine, not yet resumed or suspended.
    Coroutine(GreenCoroutine),
    /// Returned (or was cancelled); the stack went back to the pool.
    Finished,
}

/// The worker-owned part of a green thread record.
pub(crate) struct GreenLocal {
    pub(crate) body: Body,
    /// Set by the coroutine on its first resume; valid while `body` is a started coroutine.
    pub(crate) yielder: *const GreenYielder,
    /// Incremented at every park, so that a timer armed for an earlier park is recognised
    /// as stale.
    pub(crate) park_seq: u64,
    /// What the thread waits for while parked or sleeping (for dumps).
    pub(crate) wait_reason: WaitReason,
    /// The deadline of that wait, if it has one (for dumps).
    pub(crate) wait_deadline: Option<Instant>,
    /// The descriptor an I/O wait is for, or -1 (for dumps).
    pub(crate) wait_fd: i32,
    /// How many times the worker has resumed this thread (for dumps).
    pub(crate) switches: u64,
    /// Read by the stack-overflow handler while this thread runs.
    pub(crate) overflow: OverflowInfo,
    /// Position in the worker's registry of started threads, while it is in there.
    pub(crate) registry_index: usize,
    /// Order in which the worker made this thread's coroutine (shutdown: youngest first).
    pub(crate) start_seq: u64,
    /// Requested usable stack size in bytes.
    pub(crate) stack_size: usize,
}

/// The green-thread part of a thread record.
pub(crate) struct GreenTask {
    /// The park word (`task/park_word.rs`).
    pub(crate) state: ParkWord,
    /// CPU-time samples taken while this thread ran (`sched/cpu_sampler.rs`).
    pub(crate) cpu_samples: AtomicU64,
    /// The number of the runtime it belongs to (`debug/runtimes.rs`); never changes.
    pub(crate) runtime: u64,
    /// Whether the thread runs its own code on its own stack: false from just before each
    /// switch (a suspend, a move to its worker's stack, its end) until the thread runs
    /// again after it. Written only by the thread itself, read only by a signal handler on
    /// the same kernel thread (`sched/stall_backtrace.rs`), which must not walk the stack
    /// in the middle of a switch: the unwind tables do not describe the switch's
    /// instructions, and a walk from there read wild memory (a crash seen in tests).
    pub(crate) settled: AtomicBool,
    /// The worker that owns this thread (see [`GreenTask::owner`]).
    owner: UnsafeCell<Arc<WorkerShared>>,
    local: UnsafeCell<GreenLocal>,
}

// SAFETY: `state` is atomic. `owner` is written only under the contract of `set_owner`
// (no reader can exist at that time) and read only through `owner`, which synchronizes with
// that write through the park word. `local` is only ever accessed through
// `GreenTask::local_ptr`, whose contract restricts it to the kernel thread of the owning
// worker (with migration on: the one driving it now, and the thread itself wherever it
// runs; the two touch distinct fields, the thread only `yielder` and the `wait_` fields, and
// the driver only the others while the thread runs, which is what `local_ptr`'s per-field
// rule is for). An unstarted thread has no owner yet: the spawner writes its `local` before
// publishing the record, and whichever worker takes it (from a fresh deque, the injector
// or an inbox, each a synchronizing hand-off) is the only one to touch it from then on; its
// `Body::Unstarted` closure is `Send`. A started coroutine never leaves the worker that
// created it. So sharing the record between kernel threads never shares the cell's
// contents.
unsafe impl Sync for GreenTask {}
// SAFETY: as above; moving the record (in practice an `Arc` of it) to another kernel
// thread does not give that thread access to `local`.
unsafe impl Send for GreenTask {}

impl GreenTask {
    #[inline(always)]
    pub(crate) fn new(
        owner: Arc<WorkerShared>,
        body: Body,
        stack_size: usize,
        runtime: u64,
    ) -> GreenTask {
        GreenTask {
            state: ParkWord::new(),
            cpu_samples: AtomicU64::new(0),
            runtime,
            settled: AtomicBool::new(false),
            owner: UnsafeCell::new(owner),
            local: UnsafeCell::new(GreenLocal {
                body,
                yielder: std::ptr::null(),
                park_seq: 0,
                wait_reason: WaitReason::None,
                wait_deadline: None,
                wait_fd: -1,
                switches: 0,
                overflow: OverflowInfo::empty(),
                registry_index: usize::MAX,
                start_seq: 0,
                stack_size,
            }),
        }
    }

    /// The worker that owns this thread: the one that started it (many-to-many steals
    /// threads that never ran, so until then it is only the worker it was queued on).
    /// Unpark sends the thread back there.
    ///
    /// Call it only on the thread's worker, or after winning the park word's
    /// `PARKED -> EMPTY`: that acquire synchronizes with the owner's commit of the park,
    /// which comes after any [`GreenTask::set_owner`].
    pub(crate) fn owner(&self) -> &Arc<WorkerShared> {
        // SAFETY: per the contract above, every write (`set_owner`) happens-before this
        // read, and no write can run concurrently with it: writes happen only while the
        // thread is runnable and held by the writer, never while it is parked.
        unsafe { &*self.owner.get() }
    }

    /// Makes `owner` the thread's worker.
    ///
    /// # Safety
    ///
    /// The caller is that worker, about to start the thread, and holds its queue
    /// reference: the thread is neither running nor parked, so nobody reads `owner` now.
    pub(crate) unsafe fn set_owner(&self, owner: &Arc<WorkerShared>) {
        // SAFETY: per the contract, no reference to the old value exists.
        let slot = unsafe { &mut *self.owner.get() };
        if !Arc::ptr_eq(slot, owner) {
            *slot = owner.clone();
        }
    }

    /// The worker-owned part, as a raw pointer.
    ///
    /// Dereference it only on the kernel thread of the worker that owns this green thread
    /// (its scheduler loop, or the green thread itself), and access single fields through
    /// it (`(*p).field`) rather than making a reference to the whole struct: the worker
    /// holds `&mut` to `body` while the coroutine runs, and the coroutine writes other
    /// fields (`yielder`, the `wait_` fields) meanwhile.
    pub(crate) fn local_ptr(&self) -> *mut GreenLocal {
        self.local.get()
    }
}
