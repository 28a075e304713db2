//! Stack overflow reporting: naming the green thread that ran into its guard page.
//!
//! # What happens on an overflow
//!
//! A green thread that uses up its stack touches the guard page at the low end of its slot.
//! The CPU faults, and the kernel sends the kernel thread `SIGSEGV` with `si_addr` set to the
//! faulting address. Left alone, the process dies with "Segmentation fault" and no hint of which
//! of perhaps a million green threads did it. std solves the same problem for kernel threads
//! with a `SIGSEGV`/`SIGBUS` handler that recognises the thread's guard page and prints
//! `thread 'main' (4242) has overflowed its stack`; this module does the same for green threads:
//!
//! 1. Each kernel thread that runs green threads calls [`prepare_thread_for_green_stacks`] once,
//!    before running any. The first call installs the handler process-wide (`SA_SIGINFO |
//!    SA_ONSTACK`), after saving whatever handler was installed before: std's, usually, since std
//!    installs its own at startup. Every call makes sure the calling thread has an *alternate
//!    signal stack*: the handler cannot run on the stack that just overflowed. std gives its own
//!    threads one; threads created otherwise (`pthread_create` from C, say) may lack it, and then
//!    get one here (`super::alt_stack`).
//! 2. The scheduler calls [`set_running`] at every resume with the [`OverflowInfo`] of the green
//!    thread it switches to, and with null after every suspend. That is one store to a
//!    thread-local, so it costs nothing next to the switch.
//! 3. On `SIGSEGV` or `SIGBUS`, the handler reads that thread-local. If a green thread is running
//!    and the signal comes from a fault (`si_code > 0`, not `kill(2)`) whose `si_addr` lies in
//!    its guard range, this is its overflow: the handler writes
//!
//!    ```text
//!    thread 'deep-recursion' (spindle green thread 7) has overflowed its stack of 16384 bytes
//!    fatal runtime error: stack overflow, aborting
//!    ```
//!
//!    (`<unnamed>` for a thread without a name) to standard error and aborts with `SIGABRT`, as
//!    std does for kernel threads.
//! 4. Any other fault is not ours: a wild pointer, or a kernel thread overflowing its own stack.
//!    It goes to the handler saved in step 1. If that was `SIG_DFL` or `SIG_IGN`, the handler
//!    restores `SIG_DFL` and returns: the faulting instruction runs again, faults again, and the
//!    kernel kills the process with the right signal, so a shell and a core dump see `SIGSEGV`
//!    as if no handler had ever been there. Otherwise it calls the saved handler as the kernel
//!    would have (with `siginfo` and context for an `SA_SIGINFO` handler). std's handler then
//!    reports its own thread's overflow, or restores `SIG_DFL` and returns, with the same effect.
//!
//! # Why the handler is async-signal-safe
//!
//! The fault can interrupt the thread anywhere, in the middle of `malloc` or with a lock held,
//! so the handler may only do what is safe there. It does:
//!
//! - one read of a thread-local `Cell`, declared `const`-initialised and without a destructor:
//!   std compiles that to a plain `#[thread_local]` access, with no lazy initialisation, no
//!   destructor registration and no lock. (In a shared library loaded with `dlopen`, the first
//!   access of a thread may allocate the thread's TLS block; [`prepare_thread_for_green_stacks`]
//!   makes that first access, so the handler never does.)
//! - reads of the [`OverflowInfo`] it points to: plain data with a C layout, kept valid by
//!   [`set_running`]'s contract. The pointer is written with a compiler fence before it, so the
//!   handler, which runs on the same thread, never sees it before the data it points to.
//! - formatting into a buffer on its own stack (the alternate stack), integers by hand, and
//!   `write(2)` to file descriptor 2: no allocation, no `std::io::Stderr` lock.
//! - `abort(3)`, which POSIX lists as async-signal-safe, and which std's handler also uses.
//! - on the chaining path: a load of the saved action (an atomic acquire in a `OnceLock` that
//!   was filled before the handler was installed), `sigaction(2)`, and a call of the saved
//!   handler, which the kernel would have called in this same context anyway.
//!
//! # Limits
//!
//! - A fault in the guard is claimed only while the scheduler says that green thread is
//!   running; the guard of a suspended thread cannot be touched by anyone else in correct code.
//! - Chaining calls the old handler directly: it does not apply that handler's `sa_mask` or
//!   emulate `SA_RESETHAND`/`SA_NODEFER`. std's handler, the usual one, needs neither.
//! - A library that installs its own `SIGSEGV` handler after ours and does not chain replaces
//!   this reporting (and std's); one that chains keeps it.
//! - A frame larger than the guard page that skips it (C code without stack-clash protection)
//!   lands in the neighbouring slot and is not caught (see the module essay).

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::OnceLock;

use libc::{c_int, siginfo_t};

use super::{alt_stack, GreenStack};

/// What the `SIGSEGV`/`SIGBUS` handler needs to name the green thread running on this kernel
/// thread. Plain data, so the handler can read it without allocating or locking.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct OverflowInfo {
    /// Start of the running stack's guard range (inclusive).
    pub(crate) guard_start: usize,
    /// End of the running stack's guard range (exclusive).
    pub(crate) guard_end: usize,
    /// The green thread's id, as `spindle::current().id()` reports it.
    pub(crate) id: u64,
    /// The bytes of the thread's name (UTF-8, not NUL-terminated); null or dangling when
    /// `name_len` is 0.
    pub(crate) name_ptr: *const u8,
    /// Length of the name in bytes; 0 for an unnamed thread.
    pub(crate) name_len: usize,
    /// Usable size of the stack, in bytes, for the message.
    pub(crate) stack_size: usize,
}

impl OverflowInfo {
    /// Information that matches no fault (an empty guard range, no name), for a thread whose
    /// stack is not known yet; fill in the fields (or replace it with [`OverflowInfo::new`])
    /// before passing it to [`set_running`].
    pub(crate) const fn empty() -> OverflowInfo {
        OverflowInfo {
            guard_start: 0,
            guard_end: 0,
            id: 0,
            name_ptr: ptr::null(),
            name_len: 0,
            stack_size: 0,
        }
    }

    /// The overflow information for a green thread `id`, called `name`, running on `stack`.
    ///
    /// Keeps a raw pointer to `name`'s bytes: whoever passes the result to [`set_running`] must
    /// keep the name alive as that function says (typically both live in the thread's header).
    pub(crate) fn new(stack: &GreenStack, id: u64, name: Option<&str>) -> OverflowInfo {
        let (guard_start, guard_end) = stack.guard_range();
        let name = name.unwrap_or("");
        OverflowInfo {
            guard_start,
            guard_end,
            id,
            name_ptr: name.as_ptr(),
            name_len: name.len(),
            stack_size: stack.usable_size(),
        }
    }
}

thread_local! {
    /// The green thread running on this kernel thread, or null. Read by the signal handler:
    /// `const` and without a destructor, so that reading it is a plain TLS load.
    static RUNNING: Cell<*const OverflowInfo> = const { Cell::new(ptr::null()) };
}

/// Sets which green thread runs on this kernel thread (null when none).
///
/// Called by the scheduler at every resume and after every suspend: a single thread-local
/// store, plus a compiler fence that emits no instruction.
///
/// # Safety
///
/// Unless `info` is null, it must point to an `OverflowInfo` whose `name_ptr` points to
/// `name_len` readable bytes, and both must stay valid and unmodified until this kernel thread
/// calls `set_running` again: the signal handler may read them at any instant in between.
#[inline]
pub(crate) unsafe fn set_running(info: *const OverflowInfo) {
    // Orders the writes that filled in `*info` before the store of the pointer, as seen by
    // the signal handler, which runs on this same thread: a compiler fence is all that needs.
    compiler_fence(Ordering::Release);
    RUNNING.with(|running| running.set(info));
}

/// The usable stack range `[low, high)` of the green thread running on this kernel thread,
/// if one runs. Async-signal-safe (a thread-local read): for signal handlers that interrupt
/// that thread, such as the stall backtrace's (`sched/stall_backtrace.rs`).
pub(crate) fn running_green_stack() -> Option<(usize, usize)> {
    let running = RUNNING.with(Cell::get);
    compiler_fence(Ordering::Acquire);
    // SAFETY: as in `on_fault`: `set_running`'s contract keeps the info valid while set.
    let info = unsafe { running.as_ref() }?;
    Some((info.guard_end, info.guard_end + info.stack_size))
}

/// The actions for `SIGSEGV` and `SIGBUS` that were installed before ours; filled once,
/// before our handler is installed, so the handler always finds them.
static PREVIOUS_SIGSEGV: OnceLock<libc::sigaction> = OnceLock::new();
static PREVIOUS_SIGBUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Installs the process-wide `SIGSEGV` and `SIGBUS` handler once (idempotent, thread-safe)
/// and makes sure the calling kernel thread has an alternate signal stack, allocating one if
/// it has none (it is freed when the thread exits).
///
/// Called by every kernel thread that will run green threads, before it runs any. If the
/// alternate stack cannot be allocated (the process is out of memory), the thread still works,
/// but an overflow on it kills the process with a bare `SIGSEGV` instead of the report.
pub(crate) fn prepare_thread_for_green_stacks() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    crate::fork::once_init(&INSTALLED, install_handler);
    // The first access of the thread-local from ordinary code, not from the handler (see the
    // module docs); it only reads.
    let _ = RUNNING.with(Cell::get);
    let _ = alt_stack::ensure_alt_stack();
}

fn install_handler() {
    for (signal, previous) in [
        (libc::SIGSEGV, &PREVIOUS_SIGSEGV),
        (libc::SIGBUS, &PREVIOUS_SIGBUS),
    ] {
        // SAFETY: an all-zero `sigaction` is a valid value of the C struct (SIG_DFL, empty mask).
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying the current action of a valid signal into a valid struct.
        let rc = unsafe { libc::sigaction(signal, ptr::null(), &mut old) };
        assert_eq!(
            rc,
            0,
            "sigaction query failed: {}",
            std::io::Error::last_os_error()
        );
        // Only `INSTALLED`'s initializer runs this, once: the cell is empty.
        let _ = previous.set(old);

        // SAFETY: as above, an all-zero `sigaction` is valid; the fields are set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_fault as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `action.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: installing a handler with the SA_SIGINFO signature for a valid signal; the
        // previous action is saved above, before the handler can run.
        let rc = unsafe { libc::sigaction(signal, &action, ptr::null_mut()) };
        assert_eq!(
            rc,
            0,
            "sigaction failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The `SIGSEGV`/`SIGBUS` handler. See the module docs for what it may and may not do.
extern "C" fn on_fault(signal: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t; for SIGSEGV and SIGBUS
    // `si_addr` is the member of its union that is set.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let running = RUNNING.with(Cell::get);
    compiler_fence(Ordering::Acquire);
    // A positive si_code means the kernel raised the signal for a fault; kill(2) and friends
    // give codes <= 0 and no meaningful address.
    if code > 0 && !running.is_null() {
        // SAFETY: `set_running`'s contract keeps the OverflowInfo valid and unmodified while
        // it is set, and the fence above orders its contents before the pointer.
        let running = unsafe { &*running };
        if (running.guard_start..running.guard_end).contains(&addr) {
            report_overflow(running);
        }
    }
    // SAFETY: forwarding the kernel's own arguments for this signal, in the handler context.
    unsafe { chain_to_previous(signal, info, context) };
}

/// Writes the overflow report for `info` to standard error and aborts.
fn report_overflow(info: &OverflowInfo) -> ! {
    write_report(info, libc::STDERR_FILENO);
    // SAFETY: abort is async-signal-safe; it raises SIGABRT and does not return.
    unsafe { libc::abort() }
}

/// Writes the overflow report for `info` to `fd`, without allocating or locking.
fn write_report(info: &OverflowInfo, fd: c_int) {
    let name: &[u8] = if info.name_len == 0 {
        b"<unnamed>"
    } else {
        // SAFETY: `set_running`'s contract: `name_ptr` points to `name_len` readable bytes.
        unsafe { std::slice::from_raw_parts(info.name_ptr, info.name_len) }
    };
    let mut out = RawWriter::new(fd);
    out.push(b"\nthread '");
    out.push(name);
    out.push(b"' (spindle green thread ");
    out.push_decimal(info.id);
    out.push(b") has overflowed its stack of ");
    out.push_decimal(info.stack_size as u64);
    out.push(b" bytes\nfatal runtime error: stack overflow, aborting\n");
    out.flush();
}

/// Hands a fault that is not a green thread's overflow to the action installed before ours.
///
/// # Safety
///
/// Must be called from the signal handler, with the arguments the kernel passed it.
unsafe fn chain_to_previous(signal: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let previous = match signal {
        libc::SIGSEGV => PREVIOUS_SIGSEGV.get(),
        libc::SIGBUS => PREVIOUS_SIGBUS.get(),
        _ => None,
    };
    match previous {
        Some(previous)
            if previous.sa_sigaction != libc::SIG_DFL && previous.sa_sigaction != libc::SIG_IGN =>
        {
            if previous.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the kernel accepted this value as an SA_SIGINFO handler, so it is a
                // function with this signature; we call it as the kernel would have.
                let handler: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
                    unsafe { std::mem::transmute(previous.sa_sigaction) };
                handler(signal, info, context);
            } else {
                // SAFETY: as above, for a handler installed without SA_SIGINFO.
                let handler: extern "C" fn(c_int) =
                    unsafe { std::mem::transmute(previous.sa_sigaction) };
                handler(signal);
            }
        }
        _ => {
            // No handler before ours (or an ignored fault, which the kernel does not allow for
            // a real fault anyway): restore the default action and return, so that the faulting
            // instruction runs again and the kernel kills the process with this signal.
            // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask; sigaction(2) is
            // async-signal-safe.
            unsafe {
                let default: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, &default, ptr::null_mut());
            }
        }
    }
}

/// A small buffer on the handler's stack, written to a file descriptor with raw `write(2)`;
/// it flushes itself when full, so any length of name gets through.
struct RawWriter {
    fd: c_int,
    buf: [u8; 256],
    len: usize,
}

impl RawWriter {
    fn new(fd: c_int) -> RawWriter {
        RawWriter {
            fd,
            buf: [0; 256],
            len: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }

    fn push_decimal(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[start..]);
    }

    fn flush(&mut self) {
        let mut written = 0;
        while written < self.len {
            // SAFETY: writing initialised bytes of our own buffer; write(2) is
            // async-signal-safe.
            let n = unsafe {
                libc::write(
                    self.fd,
                    self.buf[written..self.len].as_ptr().cast(),
                    self.len - written,
                )
            };
            if n > 0 {
                written += n as usize;
            } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            } else {
                break; // Nowhere to report to; the abort that follows still says enough.
            }
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::guard::GuardStrategy;
    use crate::stack::test_support::{child_mode, disable_core_dumps, run_child, test_path};
    use crate::stack::StackPool;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Output;

    use corosensei::Coroutine;

    const KIB: usize = 1024;

    /// Recurses until the stack runs out: 512 bytes of frame per call, kept alive.
    #[inline(never)]
    fn recurse(depth: u64) -> u64 {
        let frame = std::hint::black_box([depth as u8; 512]);
        if depth == u64::MAX {
            return 0;
        }
        recurse(depth + 1).wrapping_add(u64::from(frame[(depth % 512) as usize]))
    }

    /// Runs `recurse` as a green thread on a 16 KiB stack guarded with `guard`, declared
    /// running with `id`/`name`.
    ///
    /// Goes through the crate-internal interface (`crate::stack::...`), as the scheduler does.
    fn overflow_a_green_thread(id: u64, name: Option<&str>, guard: GuardStrategy) {
        crate::stack::prepare_thread_for_green_stacks();
        let mut pool = StackPool::with_guard_strategy(0, guard);
        let stack = pool.take(16 * KIB).unwrap();
        let info = crate::stack::OverflowInfo::new(&stack, id, name);
        let mut coroutine: Coroutine<(), (), u64, _> =
            Coroutine::with_stack(stack, |_, ()| recurse(0));
        // SAFETY: `info` and the name it points to outlive the resume; cleared right after.
        unsafe { crate::stack::set_running(&info) };
        let _ = coroutine.resume(());
        // SAFETY: null is always allowed.
        unsafe { set_running(ptr::null()) };
        panic!("the green thread returned instead of overflowing");
    }

    fn alt_stack_enabled() -> bool {
        // SAFETY: an all-zero stack_t is a valid value to be overwritten.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: querying only, into a valid struct.
        let rc = unsafe { libc::sigaltstack(ptr::null(), &mut current) };
        assert_eq!(rc, 0);
        current.ss_flags & libc::SS_DISABLE == 0
    }

    extern "C" fn raw_thread_main(_: *mut c_void) -> *mut c_void {
        println!("alt stack before: {}", alt_stack_enabled());
        prepare_thread_for_green_stacks();
        println!("alt stack after: {}", alt_stack_enabled());
        overflow_a_green_thread(42, None, GuardStrategy::detected());
        ptr::null_mut()
    }

    /// Child modes; without one, this test does nothing.
    #[test]
    fn child_entry() {
        let Some(mode) = child_mode() else {
            return;
        };
        disable_core_dumps();
        match mode.as_str() {
            "green-overflow" => {
                overflow_a_green_thread(7, Some("deep-recursion"), GuardStrategy::detected())
            }
            "green-overflow-prot-none" => {
                overflow_a_green_thread(8, Some("fallback"), GuardStrategy::ProtNone)
            }
            "green-overflow-raw-thread" => {
                // A thread created without std: it has no alternate signal stack.
                // SAFETY: an all-zero pthread_t is a valid value to be overwritten.
                let mut thread: libc::pthread_t = unsafe { std::mem::zeroed() };
                // SAFETY: default attributes; `raw_thread_main` has the start-routine ABI and
                // ignores its argument.
                let rc = unsafe {
                    libc::pthread_create(&mut thread, ptr::null(), raw_thread_main, ptr::null_mut())
                };
                assert_eq!(rc, 0);
                // SAFETY: joining the thread created above, once.
                unsafe { libc::pthread_join(thread, ptr::null_mut()) };
            }
            "wild-fault" => {
                prepare_thread_for_green_stacks();
                let mut pool = StackPool::new(0);
                let stack = pool.take(16 * KIB).unwrap();
                let info = OverflowInfo::new(&stack, 9, Some("innocent"));
                // SAFETY: `info` outlives the fault below, which ends the process.
                unsafe { set_running(&info) };
                let forbidden = crate::stack::test_support::ScratchMapping::new(4096);
                // SAFETY: none: the read faults on purpose, in a page made PROT_NONE here.
                unsafe {
                    rustix::mm::mprotect(
                        forbidden.start() as *mut c_void,
                        4096,
                        rustix::mm::MprotectFlags::empty(),
                    )
                    .unwrap();
                    std::ptr::read_volatile(forbidden.start() as *const u8);
                }
                panic!("reading a PROT_NONE page did not fault");
            }
            "kernel-thread-overflow" => {
                prepare_thread_for_green_stacks();
                let thread = std::thread::Builder::new()
                    .name("kernel-recursion".into())
                    .stack_size(256 * KIB)
                    .spawn(|| recurse(0))
                    .unwrap();
                let _ = thread.join();
                panic!("the kernel thread returned instead of overflowing");
            }
            other => panic!("unknown child mode {other}"),
        }
    }

    fn run(mode: &str) -> (Output, String) {
        let out = run_child(&test_path(module_path!(), "child_entry"), mode);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, stderr)
    }

    #[test]
    fn a_green_thread_overflow_names_the_thread_and_aborts() {
        let (out, stderr) = run("green-overflow");
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
        assert!(
            stderr.contains(
                "\nthread 'deep-recursion' (spindle green thread 7) has overflowed its stack of \
                 16384 bytes\nfatal runtime error: stack overflow, aborting\n"
            ),
            "{stderr}"
        );
    }

    #[test]
    fn an_overflow_into_an_mprotect_guard_is_reported_too() {
        let (out, stderr) = run("green-overflow-prot-none");
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
        assert!(
            stderr.contains("thread 'fallback' (spindle green thread 8) has overflowed its stack"),
            "{stderr}"
        );
    }

    #[test]
    fn a_thread_without_an_alternate_stack_gets_one_and_reports_overflow() {
        let (out, stderr) = run("green-overflow-raw-thread");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("alt stack before: false"), "{stdout}");
        assert!(stdout.contains("alt stack after: true"), "{stdout}");
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
        assert!(
            stderr
                .contains("thread '<unnamed>' (spindle green thread 42) has overflowed its stack"),
            "{stderr}"
        );
    }

    #[test]
    fn other_faults_go_to_the_previous_handler_and_kill_with_sigsegv() {
        let (out, stderr) = run("wild-fault");
        assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{out:?}");
        assert!(!stderr.contains("overflowed"), "{stderr}");
    }

    #[test]
    fn kernel_thread_overflows_are_still_reported_by_std() {
        let (out, stderr) = run("kernel-thread-overflow");
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
        assert!(
            // std writes the kernel thread's id in parentheses after the name.
            stderr.contains("thread 'kernel-recursion' (")
                && stderr.contains("has overflowed its stack"),
            "{stderr}"
        );
        assert!(!stderr.contains("spindle green thread"), "{stderr}");
    }

    /// Runs `write_report` into a pipe and returns what it wrote.
    fn report_text(info: &OverflowInfo) -> String {
        let mut fds = [0 as c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        write_report(info, fds[1]);
        // SAFETY: closing our pipe's write end once, so that reading ends at the report's end.
        unsafe { libc::close(fds[1]) };
        let mut text = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            // SAFETY: reading into our own buffer from our pipe's read end.
            let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            text.extend_from_slice(&buf[..n as usize]);
        }
        // SAFETY: closing the read end once.
        unsafe { libc::close(fds[0]) };
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn the_report_is_formatted_without_allocating_and_any_name_gets_through() {
        let long_name = "x".repeat(300); // longer than the writer's buffer
        let mut info = OverflowInfo::empty();
        info.id = u64::MAX;
        info.stack_size = 16384;
        info.name_ptr = long_name.as_ptr();
        info.name_len = long_name.len();
        assert_eq!(
            report_text(&info),
            format!(
                "\nthread '{long_name}' (spindle green thread 18446744073709551615) has \
                 overflowed its stack of 16384 bytes\nfatal runtime error: stack overflow, aborting\n"
            )
        );
        let mut unnamed = OverflowInfo::empty();
        unnamed.stack_size = 8192;
        assert!(report_text(&unnamed)
            .starts_with("\nthread '<unnamed>' (spindle green thread 0) has overflowed its stack of 8192 bytes\n"));
    }
}
