//! The backtrace of a green thread that holds its worker by computing: where a stall is.
//!
//! A stalled thread runs (a long computation) or sits in a raw blocking call, on its
//! worker's kernel thread, so its worker cannot capture it the way a dump captures parked
//! threads (`debug/capture.rs`). For a running one (the monitor reads the kernel thread's
//! state from `/proc`; a thread asleep in a system call is left alone, since the signal
//! would make a call that Linux does not restart, such as `poll`, fail with `EINTR`, which
//! a test caught), the monitor, when it records the stall, asks the kernel thread itself:
//! it writes a request number into the worker's [`StallCapture`] and sends that thread
//! [`stall_signal`] (`tgkill`). The handler, on the thread's alternate signal stack, walks
//! the stack it interrupted with the unwinder and keeps the return addresses that lie on
//! the running green thread's stack (from the signal frame up to the thread's entry), then
//! publishes them with the request number (release). The monitor does not wait: the stall
//! event keeps the request number, and reading the events (`Runtime::stall_events`)
//! collects the answer and symbolizes it.
//!
//! # Why the walk is safe in a signal handler
//!
//! It reads const-initialized thread-locals, makes no allocation (a fixed array of
//! atomics), takes no lock of spindle's, and calls the unwinder (`_Unwind_Backtrace`
//! through `backtrace::trace_unsynchronized`). The unwinder of GCC 12 and later finds a
//! frame's unwind table with glibc's `_dl_find_object`, which glibc (2.35 and later)
//! documents as async-signal-safe: no loader lock. With an older glibc the unwinder falls
//! back to `dl_iterate_phdr`, which takes a lock the interrupted code may hold (inside
//! `dlopen`, or another unwind); so the backtrace is only asked for when glibc is 2.35 or
//! later, and a stall event on an older system simply has none. The signal interrupts a
//! system call only if the thread entered one between the monitor's look at `/proc` and
//! the signal: it is installed with `SA_RESTART`, and a call Linux never restarts returns
//! `EINTR` once then, as under the CPU sampler (`sched/cpu_sampler.rs`). The signal is
//! `SIGRTMIN + 7`, which glibc and std leave to applications.

use std::cell::Cell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::OnceLock;

/// At most this many frames are kept.
const MAX_FRAMES: usize = 48;

/// The real-time signal that asks a worker's kernel thread for its backtrace.
pub fn stall_signal() -> libc::c_int {
    libc::SIGRTMIN() + 7
}

/// A worker's mailbox for the request and the answer (in its `WorkerWatch`).
pub(crate) struct StallCapture {
    /// The number of the latest request (0: none yet).
    requested: AtomicU64,
    /// The id of the green thread the latest request is about: the handler answers only
    /// if that thread is the one it interrupted (the stall may have just ended).
    thread: AtomicU64,
    /// The number of the latest answer; the frames below belong to it.
    answered: AtomicU64,
    len: AtomicUsize,
    frames: [AtomicUsize; MAX_FRAMES],
}

impl StallCapture {
    pub(crate) fn new() -> StallCapture {
        StallCapture {
            requested: AtomicU64::new(0),
            thread: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            len: AtomicUsize::new(0),
            frames: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }
}

thread_local! {
    /// The capture of the worker this kernel thread drives, for the handler.
    static CAPTURE: Cell<*const StallCapture> = const { Cell::new(std::ptr::null()) };
}

/// Makes `capture` (or nothing, with null) the one the handler answers into on this kernel
/// thread. The worker sets it while it drives, from a `WorkerShared` it keeps alive.
pub(crate) fn set_capture(capture: *const StallCapture) {
    CAPTURE.with(|c| c.set(capture));
}

/// Whether backtraces of stalls can be had here (see the module docs).
fn supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *crate::fork::once_init(&SUPPORTED, || glibc_at_least(2, 35) && install_handler())
}

fn glibc_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let mut parts = v.to_str().unwrap_or("0.0").split('.');
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    (next(), next()) >= (major, minor)
}

fn install_handler() -> bool {
    // SAFETY: the handler does only what the module docs list, none of which unwinds.
    unsafe { crate::sched::worker_signals::install(stall_signal(), on_signal) }.is_ok()
}

/// The monitor's side: asks kernel thread `tid` (driving the worker that owns `capture`)
/// for the backtrace of green thread `thread`, which runs there. Returns the request's
/// number, for [`collect`], or 0 if nothing was asked. Does not wait: the monitor has other
/// workers to watch.
pub(crate) fn ask(capture: &StallCapture, tid: i32, thread: u64) -> u64 {
    if tid <= 0 || !supported() {
        return 0;
    }
    let seq = capture.requested.load(Relaxed) + 1;
    capture.thread.store(thread, Relaxed);
    // Release: the handler that reads this number sees the thread id above.
    capture.requested.store(seq, Release);
    // SAFETY: tgkill with our own process id, a thread id of this process, and a signal
    // whose handler is installed (`supported`); a thread that exited makes it fail.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, stall_signal()) };
    if rc != 0 {
        return 0;
    }
    seq
}

/// The answer to request `seq`, once the handler has given it: return addresses,
/// innermost first (empty if the thread asked for no longer ran there, or the walk was not
/// safe). `None` while there is no answer, and for good once a later answer has begun.
///
/// A seqlock: the handler sets `answered` to [`WRITING`], fences (release), writes the
/// frames, and stores `answered = seq` (release). The reader loads `answered == seq`
/// (acquire), copies, fences (acquire) and loads `answered` again: if it is still `seq`, no
/// later answer wrote into the copy.
pub(crate) fn collect(capture: &StallCapture, seq: u64) -> Option<Vec<usize>> {
    if seq == 0 || capture.answered.load(Acquire) != seq {
        return None;
    }
    let len = capture.len.load(Relaxed).min(MAX_FRAMES);
    let frames: Vec<usize> = capture.frames[..len]
        .iter()
        .map(|f| f.load(Relaxed))
        .collect();
    std::sync::atomic::fence(Acquire);
    (capture.answered.load(Relaxed) == seq).then_some(frames)
}

/// `answered` while the handler writes an answer.
const WRITING: u64 = u64::MAX;

/// The handler (module docs).
extern "C" fn on_signal(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: this thread's errno slot, saved here and restored before returning.
    let errno = unsafe { *libc::__errno_location() };
    let capture = CAPTURE.with(Cell::get);
    // SAFETY: set by the driving worker from a `WorkerShared` it keeps alive while set.
    if let Some(capture) = unsafe { capture.as_ref() } {
        let seq = capture.requested.load(Acquire);
        let answered = capture.answered.load(Relaxed);
        if seq != answered && answered != WRITING {
            capture.answered.store(WRITING, Relaxed);
            std::sync::atomic::fence(Release);
            let n = walk(capture, context);
            capture.len.store(n, Relaxed);
            capture.answered.store(seq, Release);
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Walks the interrupted green thread's stack into `capture.frames`, if that is safe:
/// the thread is the one asked for, it is not in a switch (its `settled` flag: the unwind
/// tables do not describe a switch's instructions, whichever stack the stack pointer is on
/// at the time, and a walk from inside one crashed), the interrupted stack pointer lies on
/// its stack (not on the worker's), and this handler runs on an alternate stack with room
/// for the unwinder. Returns how many frames it kept.
fn walk(capture: &StallCapture, context: *mut libc::c_void) -> usize {
    let Some(running) = crate::sched::context::current_green() else {
        return 0;
    };
    if running.id.as_u64().get() != capture.thread.load(Relaxed)
        || !running.green().settled.load(Relaxed)
    {
        // Another thread, or this one in a switch (`GreenTask::settled`).
        return 0;
    }
    let Some((low, high)) = crate::stack::running_green_stack() else {
        return 0;
    };
    // SAFETY: with SA_SIGINFO the kernel passes the interrupted context as a ucontext_t.
    let interrupted_sp = unsafe {
        (*(context as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_RSP as usize]
    } as usize;
    if !(low..high).contains(&interrupted_sp) || !crate::stack::alt_stack_is_roomy() {
        return 0;
    }
    let mut n = 0;
    // SAFETY: `trace_unsynchronized` is unsafe because some platforms' unwinders are not
    // thread-safe; on Linux, libgcc's is, and it runs only on this thread here (module
    // docs: why it is also safe in a signal handler).
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let sp = frame.sp() as usize;
            if (low..=high).contains(&sp) {
                capture.frames[n].store(frame.ip() as usize, Relaxed);
                n += 1;
            } else if n > 0 {
                return false; // past the thread's entry
            }
            n < MAX_FRAMES
        });
    }
    n
}
