//! Migration: handing a stuck worker to a new kernel thread (opt-in).
//!
//! The protocol, its states and why exactly one kernel thread drives a worker at a time
//! are in `sched/README.md` ("Migration"); the steps named here are its steps.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, Release};
use std::sync::{mpsc, Arc, Mutex};

use corosensei::CoroutineResult;

use crate::sched::pool::PoolShared;
use crate::sched::worker::Worker;
use crate::task::green::Suspend;
use crate::task::ThreadInner;

/// How a green thread came back from a resume: what its driver must do with it.
pub(crate) type Filing = CoroutineResult<Suspend, ()>;

/// `WorkerShared::driver`: who may touch a worker's driver state (README, "Migration").
pub(crate) struct DriverWord(AtomicU64);

/// The monitor took the worker while its driver was inside a resume.
const HANDED_OFF: u64 = u64::MAX;

impl DriverWord {
    pub(crate) fn new() -> DriverWord {
        DriverWord(AtomicU64::new(0))
    }

    /// Step 1: the driver is about to make resume number `switch`. Release: every write to
    /// the driver state so far is visible to a monitor whose CAS reads this value.
    #[inline]
    pub(crate) fn entering(&self, switch: u64) {
        self.0.store(switch << 1 | 1, Release);
    }

    /// Step 2: the resume returned. Whether this kernel thread still drives the worker.
    #[inline]
    pub(crate) fn left(&self, switch: u64) -> bool {
        self.0
            .compare_exchange(switch << 1 | 1, switch << 1, AcqRel, Relaxed)
            .is_ok()
    }

    /// Step 3, the monitor: takes the worker if its driver is still inside resume number
    /// `switch`. Acquire: sees every driver-state write the old driver made.
    fn take(&self, switch: u64) -> bool {
        self.0
            .compare_exchange(switch << 1 | 1, HANDED_OFF, AcqRel, Relaxed)
            .is_ok()
    }
}

/// A driver that can be handed to another kernel thread.
///
/// `Worker` is neither `Send` nor `Sync`: its queues are touched without locks by the
/// kernel thread that drives it. A `WorkerRef` is sent only by the hand-off, which
/// transfers the right to drive along with it (README, "Migration": ownership passes
/// only through the monitor's CAS, and the old driver touches nothing but immutable fields
/// and atomics afterwards).
pub(crate) struct WorkerRef(pub(crate) Arc<Worker>);

// SAFETY: see the type's docs: at any moment exactly one kernel thread drives the worker
// and touches its unsynchronized state; other holders of the `Arc` (the pool's slot, an
// old driver that lost the worker, a new thread told not to drive) read only its immutable
// fields and atomics. Whichever of them drops the last `Arc` drops the state, after the
// `Arc`'s own release/acquire on the count, when no driver is left.
unsafe impl Send for WorkerRef {}

/// Per worker: the `Arc` of its driver state (for the monitor to hand over) and the
/// handle of the kernel thread that drives it now (for the runtime's drop to join).
#[derive(Default)]
pub(crate) struct DriverSlot {
    pub(crate) worker: Mutex<Option<WorkerRef>>,
    pub(crate) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What came of an attempt to hand a worker over.
pub(crate) enum HandOff {
    /// A new kernel thread drives the worker now.
    Taken,
    /// The driver had already left that resume (or the worker exited): nothing to do.
    DriverMovedOn,
    /// No kernel thread could be started; the worker stays where it is for now.
    CannotStartThread,
}

/// Step 3: gives worker `index` of `pool` to a new kernel thread if its driver is still
/// inside resume number `switch`. Called by the monitor only.
pub(crate) fn hand_off(pool: &Arc<PoolShared>, index: usize, switch: u64) -> HandOff {
    let Some(worker) = pool.drivers[index]
        .worker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|w| WorkerRef(w.0.clone()))
    else {
        return HandOff::DriverMovedOn; // The worker has exited.
    };
    // Start the new driver first, so that once the worker is taken there is one for it.
    let (go_tx, go_rx) = mpsc::channel::<bool>();
    let name = format!("spindle-w{index}");
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let worker = worker;
        if go_rx.recv() == Ok(true) {
            worker.0.drive_handed_off();
        }
    });
    let thread = match spawned {
        Ok(t) => t,
        Err(e) => {
            eprintln!("spindle: cannot hand worker {index} to a new kernel thread: {e}");
            return HandOff::CannotStartThread;
        }
    };
    let taken = !pool.is_shut_down() && pool.workers[index].driver.take(switch);
    // The receiver lives until the thread has read this, so the send cannot fail.
    let _ = go_tx.send(taken);
    if !taken {
        return HandOff::DriverMovedOn;
    }
    // The old driver's handle is dropped: its kernel thread is left to finish its call and
    // exit on its own (step 2).
    *pool.drivers[index]
        .thread
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(thread);
    HandOff::Taken
}

/// What an old driver does with the green thread it holds after losing the worker
/// (step 2): hands it, with how it came back, to the worker's new driver through the
/// inbox. A shutting-down driver waits for every away thread before it closes the inbox
/// (README, step 4), so the forget below is only a safeguard.
pub(crate) fn give_back(worker: &Worker, task: Arc<ThreadInner>, filing: Filing) {
    if let Err(task) = worker.shared().push_handed(task, filing) {
        std::mem::forget(task);
    }
}
