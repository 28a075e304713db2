//! Helpers for the stack module's tests: probing memory without faulting, scratch mappings,
//! and re-running the test binary as a child process for tests that must crash.

use std::ffi::c_void;
use std::process::{Command, Output};

use rustix::mm::{MapFlags, ProtFlags};

/// Environment variable that selects a child mode when the test binary re-executes itself.
const CHILD_MODE_VAR: &str = "SPINDLE_STACK_TEST_CHILD";

/// Whether the byte at `addr` can be read, found without touching it from user space: the
/// kernel copies it into a pipe, and an inaccessible page makes `write(2)` fail with `EFAULT`
/// instead of raising `SIGSEGV`. (Reading commits the page if it was not yet.)
pub(crate) fn is_readable(addr: usize) -> bool {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: write(2) reads one byte at `addr` in the kernel, which checks the access and
    // reports EFAULT instead of faulting; `fds[1]` is the pipe's write end.
    let written = unsafe { libc::write(fds[1], addr as *const c_void, 1) };
    let err = std::io::Error::last_os_error();
    for fd in fds {
        // SAFETY: closing the two descriptors pipe2 gave us, once each.
        unsafe { libc::close(fd) };
    }
    match written {
        1 => true,
        _ if err.raw_os_error() == Some(libc::EFAULT) => false,
        _ => panic!("probing {addr:#x}: unexpected write(2) failure: {err}"),
    }
}

/// Writes one byte into every page of `[start, start + len)`, committing them.
///
/// # Safety
///
/// The range must be writable memory that nothing else is using.
pub(crate) unsafe fn touch_pages(start: usize, len: usize) {
    let page = super::page_size();
    let mut addr = start;
    while addr < start + len {
        // SAFETY: the caller guarantees the range is writable and unused.
        unsafe { std::ptr::write_volatile(addr as *mut u8, 0xA5) };
        addr += page;
    }
}

/// An anonymous read-write mapping, unmapped on drop.
pub(crate) struct ScratchMapping {
    start: usize,
    len: usize,
}

impl ScratchMapping {
    /// Maps `len` bytes (a multiple of the page size).
    pub(crate) fn new(len: usize) -> ScratchMapping {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .expect("mmap of a scratch mapping");
        ScratchMapping {
            start: ptr as usize,
            len,
        }
    }

    /// The lowest address of the mapping.
    pub(crate) fn start(&self) -> usize {
        self.start
    }
}

impl Drop for ScratchMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and no reference into it outlives the test using it.
        unsafe { rustix::mm::munmap(self.start as *mut c_void, self.len) }.unwrap();
    }
}

/// The child mode this process was started in, if it is a child of [`run_child`].
pub(crate) fn child_mode() -> Option<String> {
    std::env::var(CHILD_MODE_VAR).ok()
}

/// Runs the single test `test` (its path without the crate name, e.g.
/// `stack::overflow::tests::child_process`) in a fresh copy of this test binary, with the child
/// mode set to `mode`, and returns how it ended. The child test reads the mode with
/// [`child_mode`]; without it, the same test does nothing.
pub(crate) fn run_child(test: &str, mode: &str) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_MODE_VAR, mode)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("running the test binary as a child process")
}

/// Makes a child that is about to crash on purpose leave no core file behind.
pub(crate) fn disable_core_dumps() {
    let none = rustix::process::Rlimit {
        current: Some(0),
        maximum: None,
    };
    // Keep the hard limit as it is: lowering only the soft limit needs no privilege.
    let hard = rustix::process::getrlimit(rustix::process::Resource::Core).maximum;
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit {
            maximum: hard,
            ..none
        },
    );
}

/// The test path (`stack::...::tests`) of the calling test module, from its `module_path!()`.
pub(crate) fn test_path(module_path: &str, test: &str) -> String {
    let (_crate_name, path) = module_path.split_once("::").expect("a module path");
    format!("{path}::{test}")
}
