//! The dump on a signal: `kill -QUIT <pid>` writes every thread to stderr, and the
//! process keeps running.
//!
//! A signal handler may only make async-signal-safe calls, and a dump allocates, takes
//! locks and waits for workers. So the handler only writes one byte into a pipe (`write`
//! is async-signal-safe; it saves and restores `errno` around it), and a kernel thread,
//! `spindle-dump`, started by the first [`install_dump_signal`], reads the pipe and writes
//! a dump to stderr for each byte. Signals that arrive while a dump is being written are
//! coalesced into at most one more dump by the pipe (its write end is non-blocking, so a
//! full pipe drops the byte instead of blocking the handler).
//!
//! ## Across fork()
//!
//! A fork child inherits the handler and the pipe, but not the reader thread, and the pipe
//! is shared with the parent, whose reader would answer the child's signals with a dump
//! of the parent. So the child must not write into it:
//!
//! 1. the fork handler for the child (`fork.rs`, step 3; [`install_dump_signal`] registers
//!    the handlers, so a process that installed the signal without building a runtime has
//!    them too) forgets the write end: it stores -1 into [`WRITE_END`], one atomic store,
//!    async-signal-safe. From then on the inherited handler does nothing in the child;
//! 2. [`install_dump_signal`] called again in the child finds that the pipe was made in
//!    another process (its [`Provenance`]) and makes a fresh pipe and reader of the
//!    child's own, publishing the new write end once the reader is started.
//!
//! The child's copies of the parent's two descriptors stay open (they are close-on-exec):
//! the read end belonged to the parent's reader, whose record is not reachable here, and
//! the write end is never closed, since a handler may have loaded its number.
//!
//! In a fork child the reader writes its dumps without std's stderr lock, which a thread
//! of the parent may have held at the fork ([`write_to_stderr`]).
//!
//! The pipe is made and the reader started under the lock `fork()` takes (`fork.rs`,
//! [`crate::fork::under_init_lock`]), so a fork child never inherits an installation
//! half-done, nor the lock of [`INSTALLED`] held by a thread it does not have.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::AtomicI32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use crate::fork::Provenance;

/// The pipe's write end, for the handler; -1 until installed, and in a fork child until
/// installed there (module docs).
static WRITE_END: AtomicI32 = AtomicI32::new(-1);

/// The process whose pipe and reader thread are in place (`None` before the first
/// installation). Locked only under [`crate::fork::under_init_lock`].
static INSTALLED: Mutex<Option<Provenance>> = Mutex::new(None);

/// On `signal` (SIGQUIT is the usual choice: `kill -QUIT`, or Ctrl-\ in a terminal), write
/// [`dump_text`](super::dump_text) to stderr and go on running. May be called again, for
/// more signals; each replaces the signal's previous handler.
///
/// Fails with `InvalidInput` for a signal spindle needs for itself (SIGSEGV and SIGBUS,
/// which report stack overflows, the CPU sampler's and the stall backtrace's), for
/// SIGKILL and SIGSTOP, and for
/// a number that is not a signal; with the system's error if the pipe or the thread cannot
/// be made.
pub fn install_dump_signal(signal: libc::c_int) -> io::Result<()> {
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("install_dump_signal: signal {signal} {why}"),
        ))
    };
    if signal == libc::SIGSEGV || signal == libc::SIGBUS {
        return refuse("reports stack overflows of green threads and cannot be used for dumps");
    }
    if signal == crate::sched::stall_backtrace::stall_signal() {
        return refuse("(SIGRTMIN + 7) asks a stalled worker for its backtrace");
    }
    if signal == crate::sched::cpu_sampler::sample_signal() {
        return refuse(
            "(SIGRTMIN + 6) samples CPU time of green threads (runtime::Builder::cpu_accounting)",
        );
    }
    if signal == libc::SIGKILL || signal == libc::SIGSTOP {
        return refuse("cannot be caught");
    }
    if signal <= 0 || signal > libc::SIGRTMAX() {
        return refuse("is not a signal number");
    }
    start_reader()?;
    // SAFETY: an all-zero `sigaction` is a valid value of the C struct; fields set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: `action.sa_mask` is a valid sigset_t to initialise.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: installs a plain handler (the one-argument signature, no SA_SIGINFO) that
    // only makes async-signal-safe calls, for a signal number checked above.
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the pipe and starts the reader thread, unless this process has them: once per
/// process, and again in a fork child (module docs).
fn start_reader() -> io::Result<()> {
    // Outside the lock: registering waits for a fork in progress, which waits for the lock.
    crate::fork::register_handlers();
    crate::fork::under_init_lock(|| {
        let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        if installed.is_some_and(|p| !p.is_inherited()) {
            return Ok(());
        }
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        rustix::fs::fcntl_setfl(&write, rustix::fs::OFlags::NONBLOCK)?;
        // The write end is published only once the reader is started: if it cannot be,
        // both ends are closed, and a handler writing into a pipe with no read end left
        // would raise SIGPIPE.
        std::thread::Builder::new()
            .name("spindle-dump".into())
            .spawn(move || read_and_dump(read))?;
        // The write end lives as long as the process: the handler may use it at any time.
        let write = std::mem::ManuallyDrop::new(write);
        WRITE_END.store(write.as_raw_fd(), Relaxed);
        *installed = Some(Provenance::here());
        Ok(())
    })
}

/// Step 1 of "Across fork()" (module docs), in the fork child's handler: the inherited
/// dump handler stops writing into the parent's pipe. Async-signal-safe: one atomic store.
pub(crate) fn forget_inherited_pipe() {
    WRITE_END.store(-1, Relaxed);
}

/// The reader thread: a dump per byte, until the pipe is closed (never, in practice).
fn read_and_dump(fd: OwnedFd) {
    let mut pipe = std::fs::File::from(fd);
    let mut byte = [0u8; 64];
    loop {
        match io::Read::read(&mut pipe, &mut byte) {
            Ok(0) => return,
            Ok(_) => write_to_stderr(super::dump_text().as_bytes()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Writes a dump to stderr: through std's stderr lock, so that it does not interleave
/// with other std output, except in a fork child. There a thread of the parent may have
/// held that lock at the fork (writing anything to stderr, this reader included), and the
/// child's copy then stays locked by a thread that does not exist: the dump goes through
/// `fork::write_stderr_unlocked`, as `fork.rs`'s own messages do.
fn write_to_stderr(text: &[u8]) {
    if crate::fork::is_fork_child() {
        crate::fork::write_stderr_unlocked(text);
    } else {
        let _ = io::stderr().lock().write_all(text);
    }
}

/// The handler: one byte into the pipe, `errno` as it was.
extern "C" fn on_signal(_signal: libc::c_int) {
    let fd = WRITE_END.load(Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: `__errno_location` returns this thread's errno slot; reading and restoring
    // it is what a handler must do around a call that may set it.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: `write` is async-signal-safe; `fd` is the pipe's write end, which is never
    // closed; the buffer is one valid byte.
    let _ = unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}
