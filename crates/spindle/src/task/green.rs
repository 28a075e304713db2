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
}

/// The coroutine type every green thread runs in.
pub(crate) type GreenCoroutine = Coroutine<(), Suspend, (), GreenStack>;

/// The yielder the running green thread suspends through.
pub(crate) type GreenYielder = Yielder<(), Suspend>;

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
    /// The worker that owns (or will own) this thread; unpark sends it back there.
    pub(crate) worker: Arc<WorkerShared>,
    local: UnsafeCell<GreenLocal>,
}

// SAFETY: `state` is atomic and `worker` is Sync. `local` is only ever accessed through
// `GreenTask::local`, whose contract restricts it to the kernel thread of the owning
// worker; a `Body::Unstarted` closure is `Send`, and a started coroutine never leaves the
// worker that created it. So sharing the record between kernel threads never shares the
// cell's contents.
unsafe impl Sync for GreenTask {}
// SAFETY: as above; moving the record (in practice an `Arc` of it) to another kernel
// thread does not give that thread access to `local`.
unsafe impl Send for GreenTask {}

impl GreenTask {
    pub(crate) fn new(worker: Arc<WorkerShared>, body: Body, stack_size: usize) -> GreenTask {
        GreenTask {
            state: ParkWord::new(),
            worker,
            local: UnsafeCell::new(GreenLocal {
                body,
                yielder: std::ptr::null(),
                park_seq: 0,
                wait_reason: WaitReason::None,
                overflow: OverflowInfo::empty(),
                registry_index: usize::MAX,
                start_seq: 0,
                stack_size,
            }),
        }
    }

    /// The worker-owned part, as a raw pointer.
    ///
    /// Dereference it only on the kernel thread of the worker that owns this green thread
    /// (its scheduler loop, or the green thread itself), and access single fields through
    /// it (`(*p).field`) rather than making a reference to the whole struct: the worker
    /// holds `&mut` to `body` while the coroutine runs, and the coroutine writes other
    /// fields (`yielder`, `wait_reason`) meanwhile.
    pub(crate) fn local_ptr(&self) -> *mut GreenLocal {
        self.local.get()
    }
}
