//! A worker's answer to a dump request (`debug/request.rs`): it describes its threads, from
//! its scheduler code, and captures the backtraces of the switched-out ones
//! (`debug/capture.rs`).

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use corosensei::CoroutineResult;

use super::Worker;
use crate::debug::capture::{BacktraceCapture, RawState, RawThread};
use crate::debug::gdb_root;
use crate::debug::request::{DumpRequest, WorkerAnswer};
use crate::park::WaitReason;
use crate::stack;
use crate::task::green::{Body, GreenCoroutine, Resume, Suspend};
use crate::task::ThreadInner;

/// Stack a capture step needs on the thread's own stack, with a margin.
const CAPTURE_HEADROOM: usize = 2048;

impl Worker {
    /// Answers `request` in `slot` (step 2 of the protocol), unless its requester gave up.
    pub(super) fn answer_dump(&self, request: &Arc<DumpRequest>, slot: usize) {
        if !request.begin(slot) {
            return;
        }
        let mut threads = Vec::with_capacity(self.registry().len() + self.runq().len());
        // Threads queued to run: their references are in the queues, so they are listed from
        // there (those that never started are not in the registry at all).
        let mut queued: HashSet<*const ThreadInner> = HashSet::new();
        let queues = [self.runq(), self.yielded(), self.fresh_local()];
        for task in queues.iter().flat_map(|q| q.iter()) {
            queued.insert(Arc::as_ptr(task));
            // SAFETY: a queued thread is switched out and we are its worker; field reads.
            if let Body::Unstarted(_) = unsafe { &(*task.green().local_ptr()).body } {
                threads.push(self.describe_unstarted(task));
            }
        }
        let away = self.away().clone();
        // Registry entries are live records (`Worker::registry`); we hold no count, and
        // resuming a thread for a capture cannot finish it, so none goes away meanwhile.
        for &task in self.registry().iter() {
            // SAFETY: see above.
            let task = unsafe { &*task };
            let raw = if away.contains(&(task as *const ThreadInner)) {
                self.describe_away(task)
            } else {
                self.describe_started(
                    task,
                    queued.contains(&(task as *const _)),
                    request.backtraces,
                )
            };
            threads.push(raw);
        }
        let unlisted_unstarted = self.fresh.as_ref().map_or(0, |f| f.len());
        request.finish(
            slot,
            WorkerAnswer {
                threads,
                unlisted_unstarted,
            },
        );
    }

    /// A queued thread whose coroutine is not made yet.
    fn describe_unstarted(&self, task: &ThreadInner) -> RawThread {
        bare(task, None, RawState::Runnable { started: false })
    }

    /// A started thread that migration left running on the kernel thread that lost this
    /// worker: nothing of it may be touched but its shared part.
    fn describe_away(&self, task: &ThreadInner) -> RawThread {
        bare(task, Some(self.index), RawState::Running)
    }

    /// A started thread of this worker, switched out: queued (`queued`), parked, sleeping,
    /// or on its way back from a waker on another kernel thread.
    fn describe_started(&self, task: &ThreadInner, queued: bool, backtrace: bool) -> RawThread {
        let g = task.green();
        let local = g.local_ptr();
        // SAFETY: the thread is switched out and we are its worker, in scheduler code: we
        // are the only one touching its local part (field reads, and `body` below).
        let (reason, until, fd, switches, overflow_guard_end, stack_size) = unsafe {
            (
                (*local).wait_reason,
                (*local).wait_deadline,
                (*local).wait_fd,
                (*local).switches,
                (*local).overflow.guard_end,
                (*local).overflow.stack_size,
            )
        };
        // SAFETY: as above.
        let co: *mut GreenCoroutine = match unsafe { &mut (*local).body } {
            Body::Coroutine(co) => co,
            _ => unreachable!("the registry holds started threads only"),
        };
        // SAFETY: `co` is valid while we hold no other reference into `body` (above).
        let started = unsafe { (*co).started() };
        let state = if queued || !started {
            RawState::Runnable { started }
        } else if reason == WaitReason::Sleep || g.state.is_parked() {
            RawState::Waiting { reason, fd, until }
        } else {
            // A waker took its park and is bringing it to the inbox.
            RawState::Runnable { started: true }
        };
        let (low, high) = (overflow_guard_end, overflow_guard_end + stack_size);
        // SAFETY: `[low, high)` is the usable part of the thread's stack, which the
        // coroutine owns and keeps mapped; both ends are page aligned.
        let stack_resident = unsafe { stack::resident_bytes(low, high) }.unwrap_or(0);
        // The capture step runs a few frames on the thread's own stack before it moves to
        // ours: a thread parked within that much of its guard page is not captured (an
        // overflow there would abort the process).
        // SAFETY: the thread is switched out and we are its worker.
        let room = unsafe { gdb_root::saved_stack_pointer(local) }.map(|sp| sp.saturating_sub(low));
        let roomy = room.is_none_or(|r| r >= CAPTURE_HEADROOM);
        let frames = if backtrace && started && roomy {
            // SAFETY: as above; the thread is switched out and only we resume it.
            unsafe { self.capture(task, co, low, high) }
        } else {
            Vec::new()
        };
        RawThread {
            id: task.id,
            name: task.name.as_deref().map(Into::into),
            worker: Some(self.index),
            state,
            spawned: task.spawned,
            cpu_samples: g.cpu_samples.load(Relaxed),
            switches,
            stack_size,
            stack_resident,
            frames,
        }
    }

    /// Resumes `task` into a backtrace capture (`debug/capture.rs`) and returns the
    /// return addresses it found.
    ///
    /// # Safety
    ///
    /// `co` is `task`'s started coroutine, switched out; we are its worker, in scheduler
    /// code; `[low, high)` is its stack.
    unsafe fn capture(
        &self,
        task: &ThreadInner,
        co: *mut GreenCoroutine,
        low: usize,
        high: usize,
    ) -> Vec<usize> {
        let mut capture = BacktraceCapture::new(low, high);
        let local = task.green().local_ptr();
        // SAFETY: `overflow` lives in the record, which outlives the resume (the registry's
        // entry is only removed by `retire`, which a capture never reaches); reset below.
        unsafe { stack::set_running(&(*local).overflow) };
        // SAFETY: the caller's contract; `capture` outlives the resume, and the step only
        // writes into it during the resume.
        let result = unsafe { (*co).resume(Resume::CaptureBacktrace(NonNull::from(&mut capture))) };
        // SAFETY: null is always allowed.
        unsafe { stack::set_running(std::ptr::null()) };
        match result {
            CoroutineResult::Yield(Suspend::Captured) => capture.frames,
            _ => {
                // The step cannot end any other way (it runs no code of the thread's): if
                // it did, the thread's state would now be wrong. Say so and stop.
                eprintln!(
                    "spindle: green thread {} did not come back from a backtrace capture as a \
                     capture; aborting rather than lose its state",
                    task.id
                );
                std::process::abort();
            }
        }
    }
}

/// What the shared part of `task` says, with `worker` and `state`: nothing of its
/// worker-owned part (no switches, no stack).
fn bare(task: &ThreadInner, worker: Option<usize>, state: RawState) -> RawThread {
    RawThread {
        id: task.id,
        name: task.name.as_deref().map(Into::into),
        worker,
        state,
        spawned: task.spawned,
        cpu_samples: task.green().cpu_samples.load(Relaxed),
        switches: 0,
        stack_size: 0,
        stack_resident: 0,
        frames: Vec::new(),
    }
}
