//! The two signals spindle raises on its own worker kernel threads: the CPU sampler's
//! (`sched/cpu_sampler.rs`) and the stall backtrace's (`sched/stall_backtrace.rs`).
//!
//! Both handlers are installed the same way, here: with `SA_SIGINFO`, on the alternate
//! signal stack (`SA_ONSTACK`: a green thread deep in its small stack must not overflow
//! because a signal landed), with `SA_RESTART`, and each with *both* signals blocked while
//! it runs, so that the two never nest on the alternate stack (they did, and the unwinder of
//! the nested one ran out of room).

use std::io;

/// A handler with the `SA_SIGINFO` signature.
pub(crate) type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Installs `handler` for `signal`, one of the two worker signals (module docs).
///
/// # Safety
///
/// `handler` makes only async-signal-safe calls and cannot unwind.
pub(crate) unsafe fn install(signal: libc::c_int, handler: Handler) -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value of the C struct (SIG_DFL, empty
    // mask); the fields that matter are set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    // SAFETY: `action.sa_mask` is a valid sigset_t to initialise and add to.
    unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaddset(
            &mut action.sa_mask,
            crate::sched::cpu_sampler::sample_signal(),
        );
        libc::sigaddset(
            &mut action.sa_mask,
            crate::sched::stall_backtrace::stall_signal(),
        );
    }
    // SAFETY: a valid action with the SA_SIGINFO signature for a real-time signal; the
    // handler's safety is the caller's contract.
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
