//! CPU time per green thread, by sampling the CPU clock of each worker's kernel thread.
//!
//! The kernel knows only kernel threads: `CLOCK_THREAD_CPUTIME_ID` of a worker is the sum
//! over every green thread it ran. Reading that clock at every switch would split it
//! exactly, but costs about 650 ns here, a hundred times a switch (DESIGN.md). So each
//! kernel thread that drives a worker arms a POSIX timer on its *own CPU clock*
//! (`timer_create(CLOCK_THREAD_CPUTIME_ID)`, delivered to that very thread with
//! `SIGEV_THREAD_ID`) that expires every [`SAMPLE_INTERVAL`] of CPU time, user plus system.
//! The signal handler adds the samples to the green thread running at that instant (read
//! from the same thread-local the scheduler sets around each resume), or to nobody when the
//! worker is in its own loop. "The samples": the kernel checks CPU-time timers at its
//! scheduler tick (every 4 ms with `HZ=250`), so an interval shorter than a tick expires
//! several times per signal; the handler adds one plus the timer's overrun count
//! (`timer_getoverrun`, async-signal-safe), which makes the count exact whatever the tick.
//! A green thread's CPU time is then its samples times the interval: an unbiased estimate
//! whose error shrinks as the thread runs longer (a thread that ran for less than an
//! interval may show 0 or one interval). A switch costs nothing more than before; the cost
//! is one signal per interval of CPU actually used, and none while the worker sleeps, since
//! a CPU-time timer does not advance then.
//!
//! # Why this is safe to do in a signal handler
//!
//! The handler reads two thread-locals (const-initialized, no destructor: plain loads of
//! the thread's TLS block), makes one system call that POSIX lists as async-signal-safe
//! (`timer_getoverrun`), and does one relaxed atomic add on the record it points to. The
//! record outlives the pointer: the worker sets it from an `Arc` it holds across the
//! resume and clears it before letting that `Arc` go. It runs on the alternate signal
//! stack (`SA_ONSTACK`) that every kernel thread running green threads has for the
//! overflow handler, so a green thread deep in its small stack does not overflow into its
//! guard page because a sample landed.
//!
//! # What a program can notice
//!
//! The timer fires only while its thread uses the CPU, so a green thread blocked in a
//! system call is not interrupted by it; a call that starts just as an interval ends may
//! be, and the handler is installed with `SA_RESTART`, so most calls resume by themselves
//! (those Linux never restarts return `EINTR`, as they would under a profiler: `epoll_wait`,
//! `nanosleep`, and socket reads and writes on a socket with `SO_RCVTIMEO` or
//! `SO_SNDTIMEO` set, such as a raw std socket with a timeout used on a green thread).
//! The signal is `SIGRTMIN + 6` ([`sample_signal`]), which
//! glibc and std leave to applications; a program that uses it for itself can turn the
//! accounting off with [`crate::runtime::Builder::cpu_accounting`].

use std::cell::Cell;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;
use std::time::Duration;

use crate::sched::context;
use crate::task::ThreadKind;

/// CPU time between two samples of a worker's kernel thread.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(1);

/// The real-time signal the sampling timers raise.
pub fn sample_signal() -> libc::c_int {
    libc::SIGRTMIN() + 6
}

/// A running sampling timer on the calling kernel thread's CPU clock; deleted on drop.
pub(crate) struct CpuSampler {
    timer: libc::timer_t,
}

thread_local! {
    /// The sampling timer of this kernel thread, for the handler's overrun count.
    static TIMER: Cell<Option<libc::timer_t>> = const { Cell::new(None) };
}

impl CpuSampler {
    /// Installs the handler (once per process) and arms a timer on the calling thread's
    /// CPU clock, delivered to this thread. Call it on the kernel thread to sample.
    pub(crate) fn start() -> io::Result<CpuSampler> {
        static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
        if let Err(errno) = crate::fork::once_init(&INSTALLED, || {
            install_handler().map_err(|e| e.raw_os_error().unwrap_or(0))
        }) {
            return Err(io::Error::from_raw_os_error(*errno));
        }
        if !crate::stack::has_alt_stack() {
            // The handler would run on the green stack that is running: near its guard
            // page, a sample would overflow it.
            return Err(io::Error::other(
                "this kernel thread has no alternate signal stack (it could not be mapped)",
            ));
        }
        // SAFETY: an all-zero sigevent is a valid value of the C struct; the fields that
        // matter are set below.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = sample_signal();
        event.sigev_notify_thread_id = rustix::thread::gettid().as_raw_nonzero().get();
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to a filled sigevent and to the timer id to write.
        if unsafe { libc::timer_create(libc::CLOCK_THREAD_CPUTIME_ID, &mut event, &mut timer) } != 0
        {
            return Err(io::Error::last_os_error());
        }
        let sampler = CpuSampler { timer };
        TIMER.with(|t| t.set(Some(timer)));
        let interval = libc::timespec {
            tv_sec: 0,
            tv_nsec: SAMPLE_INTERVAL.as_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: interval,
            it_value: interval,
        };
        // SAFETY: `timer` was just created; `spec` is a valid itimerspec.
        if unsafe { libc::timer_settime(sampler.timer, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error()); // `sampler`'s drop deletes the timer
        }
        Ok(sampler)
    }
}

impl Drop for CpuSampler {
    fn drop(&mut self) {
        TIMER.with(|t| t.set(None));
        // SAFETY: a timer this value created and nobody else deletes. A signal already
        // pending is still delivered and handled harmlessly (the handler only counts).
        unsafe { libc::timer_delete(self.timer) };
    }
}

fn install_handler() -> io::Result<()> {
    // SAFETY: the handler is async-signal-safe and cannot unwind (module docs).
    unsafe { crate::sched::worker_signals::install(sample_signal(), on_sample) }
}

extern "C" fn on_sample(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let Some(thread) = context::current_green() else {
        return;
    };
    let ThreadKind::Green(green) = &thread.kind else {
        return;
    };
    // Expirations folded into this signal (module docs); -1 (an error) counts as none.
    let overrun = TIMER.with(Cell::get).map_or(0, |timer| {
        // SAFETY: the timer of this thread, deleted only after it is taken out of `TIMER`.
        unsafe { libc::timer_getoverrun(timer) }.max(0)
    });
    green.cpu_samples.fetch_add(1 + overrun as u64, Relaxed);
}

/// The CPU time `samples` samples stand for.
pub(crate) fn samples_to_time(samples: u64) -> Duration {
    SAMPLE_INTERVAL.saturating_mul(samples.min(u32::MAX as u64) as u32)
}
