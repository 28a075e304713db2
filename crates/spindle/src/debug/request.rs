//! Asking every worker to describe its threads: the dump request protocol.
//!
//! A worker's queues, timers and registry of started threads belong to its kernel thread
//! and take no locks (`sched/worker.rs`), and a switched-out green thread's stack may be
//! resumed only by its worker. So a dump does not read them: it asks. The protocol:
//!
//! 1. The requester makes one [`DumpRequest`] with a slot per worker of every live
//!    runtime, and pushes `(request, slot)` into each worker's inbox, which wakes a
//!    sleeping worker like any remote wakeup (`sched/README.md`, idle sleep). A worker
//!    whose inbox is closed has shut down: its slot is marked so at once.
//! 2. The worker takes the request at its next safe point: when it drains its inbox, in
//!    scheduler code, with no green thread of its own running. It marks its slot
//!    `Answering` (unless the requester gave up on it), describes every thread it has,
//!    resuming each switched-out one into a backtrace capture if asked
//!    (`debug/capture.rs`), stores the answer and unparks the requester.
//! 3. The requester parks (`WaitReason::DebugDump`; a green thread parks only itself, so
//!    its own worker is free to answer) until every slot is answered, or until
//!    [`ANSWER_TIMEOUT`] has passed and no worker is still answering: a worker that has
//!    not begun by then is held by one green thread (a computation without checkpoints,
//!    a raw blocking call) and cannot answer until it switches. Its slot is marked
//!    `GaveUp` under the lock, so that a late worker skips the work; the snapshot names
//!    the thread holding it (from what the worker publishes for the monitor).
//!
//! Why it cannot hang: a worker answers in bounded time once it has begun (it runs only
//! its own code and the capture steps, which do not block), and the requester waits for
//! slots that have not begun only until the timeout. Why it cannot deadlock on the
//! requester's own worker: the requester parks its green thread, never the kernel thread
//! (a green thread that may not switch, being cancelled or the fork child's inherited
//! thread, waits as a kernel thread and its own worker times out). Why nothing is lost or
//! resumed twice: the worker resumes its threads for captures from its own scheduler code,
//! where it is the only party that ever resumes them, and a capture changes nothing a
//! waker or timer looks at (`debug/capture.rs`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::debug::capture::RawThread;
use crate::park::{self, WaitReason};
use crate::task::thread::Thread;

/// How long a dump waits for a worker to begin its answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// What a worker says about its threads.
pub(crate) struct WorkerAnswer {
    pub(crate) threads: Vec<RawThread>,
    /// Unstarted threads in its stealable queue (counted, not listed).
    pub(crate) unlisted_unstarted: usize,
}

/// Where one worker's answer goes.
pub(crate) enum Slot {
    /// Pushed to the worker; not begun.
    Asked,
    /// The worker has begun.
    Answering,
    /// Done.
    Answered(WorkerAnswer),
    /// The worker's inbox was closed: it has shut down.
    ShutDown,
    /// The requester stopped waiting before the worker began.
    GaveUp,
}

/// One dump in flight (module docs).
pub(crate) struct DumpRequest {
    /// Whether workers capture backtraces.
    pub(crate) backtraces: bool,
    requester: Thread,
    slots: Mutex<Vec<Slot>>,
}

impl DumpRequest {
    /// A request with `slots` slots, all `Asked`, from the calling thread.
    pub(crate) fn new(backtraces: bool, slots: usize) -> DumpRequest {
        DumpRequest {
            backtraces,
            requester: crate::current(),
            slots: Mutex::new((0..slots).map(|_| Slot::Asked).collect()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Step 1: the worker of `slot` could not be asked.
    pub(crate) fn shut_down(&self, slot: usize) {
        self.lock()[slot] = Slot::ShutDown;
    }

    /// Step 1: the worker of `slot` is not asked (it is the requester's own, which cannot
    /// answer while the requester waits as a kernel thread).
    pub(crate) fn give_up(&self, slot: usize) {
        self.lock()[slot] = Slot::GaveUp;
    }

    /// Step 2, by the worker: begins the answer for `slot`. False if the requester has
    /// given up on it (or is gone).
    pub(crate) fn begin(&self, slot: usize) -> bool {
        let mut slots = self.lock();
        match slots.get_mut(slot) {
            Some(s @ Slot::Asked) => {
                *s = Slot::Answering;
                true
            }
            _ => false,
        }
    }

    /// Step 2, by the worker: stores the answer and wakes the requester.
    pub(crate) fn finish(&self, slot: usize, answer: WorkerAnswer) {
        if let Some(s) = self.lock().get_mut(slot) {
            *s = Slot::Answered(answer);
        }
        self.requester.unpark();
    }

    /// Step 3: waits for the answers (module docs) and returns the slots. Every slot is
    /// left marked `GaveUp`, so that a worker that comes to an old request late skips it.
    pub(crate) fn wait(&self) -> Vec<Slot> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let answering = {
                let mut slots = self.lock();
                let past = Instant::now() >= deadline;
                if past {
                    // Workers that have not begun by now are held: stop waiting for them.
                    for s in slots.iter_mut().filter(|s| matches!(s, Slot::Asked)) {
                        *s = Slot::GaveUp;
                    }
                }
                let asked = slots.iter().any(|s| matches!(s, Slot::Asked));
                let answering = slots.iter().any(|s| matches!(s, Slot::Answering));
                if !asked && !answering {
                    return slots
                        .iter_mut()
                        .map(|s| std::mem::replace(s, Slot::GaveUp))
                        .collect();
                }
                // Only slots being answered are left once the deadline has passed: their
                // workers finish in bounded time and unpark us.
                !asked && answering
            };
            if answering {
                park::park(WaitReason::DebugDump);
            } else {
                park::park_until(WaitReason::DebugDump, deadline);
            }
        }
    }
}
