//! Backtraces of switched-out green threads: the capture step.
//!
//! A switched-out green thread's frames are on its own stack, below the point where it
//! called `context::suspend`. An unwinder can walk them only from a register state inside
//! them, which exists only while the thread runs. So the thread's worker resumes it for a
//! moment, into this step (the resume input [`Resume::CaptureBacktrace`]):
//!
//! 1. The worker, in scheduler code, resumes the thread with a pointer to a
//!    [`BacktraceCapture`] that holds the stack's bounds. It does not touch the park word,
//!    the queues, the timers or the switch counters: to all of them the thread stays
//!    where it was (parked, sleeping, queued).
//! 2. `context::suspend`, where every switched-out green thread waits, returns the input
//!    instead of going back to its caller, and calls [`record`].
//! 3. [`record`] walks the stack from there, on the *worker's* stack (corosensei's
//!    `on_parent_stack`, whose frames link back to the green stack, so the unwinder
//!    continues into the thread's frames): a thread parked a few bytes above its guard page
//!    has no room for an unwinder. It keeps the return addresses of the frames that lie on
//!    the green stack and are callers of `record`, so the backtrace starts in the function
//!    that suspended and ends at the thread's entry.
//! 4. `context::suspend` suspends again with `Suspend::Captured` and, at the next real
//!    resume, returns to its caller as if nothing had happened.
//!
//! Why this is sound: only a thread's worker ever resumes it, from its scheduler code, so
//! the capture resume cannot meet another resume; a waker that takes the thread's park
//! meanwhile (`PARKED -> EMPTY`, from another kernel thread) only queues it in the inbox,
//! which the worker drains after the capture; a timer fires on the worker, so not during
//! it. A park token is neither consumed nor left: the park word is never touched. The
//! capture runs no code of the thread's, takes no lock the thread may hold (the unwinder's
//! own locks are taken on the worker's stack, as by any kernel thread), and does not panic
//! (its callback only pushes into a vector with room reserved).
//!
//! Symbols are resolved later, by the requester, once per distinct address
//! (`debug/symbolize.rs`): a capture is only the walk, a few microseconds.

use std::ptr::NonNull;

use crate::park::WaitReason;
use crate::task::green::GreenYielder;
use crate::task::thread::ThreadId;

/// At most this many frames are kept per thread (the innermost ones).
pub(crate) const MAX_FRAMES: usize = 64;

/// What the worker asks a capture step for, and where the step puts the answer.
pub(crate) struct BacktraceCapture {
    /// The green stack's usable range, `[low, high)`.
    low: usize,
    high: usize,
    /// The return addresses, innermost first.
    pub(crate) frames: Vec<usize>,
}

impl BacktraceCapture {
    pub(crate) fn new(low: usize, high: usize) -> BacktraceCapture {
        BacktraceCapture {
            low,
            high,
            frames: Vec::with_capacity(MAX_FRAMES),
        }
    }
}

/// A pointer moved to the worker's stack for the walk (the closure of `on_parent_stack`
/// must be `Send`; it runs on the same kernel thread).
struct CapturePtr(NonNull<BacktraceCapture>);

// SAFETY: `on_parent_stack` runs the closure on the same kernel thread, synchronously; the
// pointer never reaches another thread.
unsafe impl Send for CapturePtr {}

/// Step 3: records the backtrace of the calling green thread into `capture`.
///
/// Never inlined: the walk recognises this function's frame by its address.
#[inline(never)]
#[cold]
pub(crate) fn record(yielder: &GreenYielder, capture: NonNull<BacktraceCapture>) {
    let ptr = CapturePtr(capture);
    let me = record as *const () as usize;
    yielder.on_parent_stack(move || {
        let ptr = ptr;
        // SAFETY: the worker passed a capture that lives in its frame across the resume
        // that runs this step, and touches it only after the resume returns.
        let capture = unsafe { &mut *ptr.0.as_ptr() };
        let mut seen_me = false;
        backtrace::trace(|frame| {
            let sp = frame.sp() as usize;
            if !seen_me {
                // Frames of the walk itself and of `on_parent_stack`, up to this function.
                seen_me = frame.symbol_address() as usize == me;
                return true;
            }
            if sp < capture.low || sp > capture.high {
                // Past the thread's entry, into the worker's frames.
                return false;
            }
            capture.frames.push(frame.ip() as usize);
            capture.frames.len() < MAX_FRAMES
        });
    });
}

/// A thread as a worker describes it: [`super::ThreadInfo`] before symbols and runtime.
pub(crate) struct RawThread {
    pub(crate) id: ThreadId,
    pub(crate) name: Option<String>,
    pub(crate) worker: Option<usize>,
    pub(crate) state: RawState,
    pub(crate) spawned: u64,
    pub(crate) cpu_samples: u64,
    pub(crate) switches: u64,
    pub(crate) stack_size: usize,
    pub(crate) stack_resident: usize,
    /// Return addresses, innermost first; empty without a capture.
    pub(crate) frames: Vec<usize>,
}

/// A thread's state as its worker saw it.
#[derive(Clone, Copy)]
pub(crate) enum RawState {
    Running,
    Runnable {
        started: bool,
    },
    Waiting {
        reason: WaitReason,
        fd: i32,
        until: Option<std::time::Instant>,
    },
}
