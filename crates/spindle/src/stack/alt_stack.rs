//! Alternate signal stacks for kernel threads that run green threads.
//!
//! The overflow handler must run on a stack other than the one that overflowed. std gives
//! the main thread and every thread it spawns an alternate signal stack (`sigaltstack`); a
//! thread created by other means (from C, or by a library calling `pthread_create`) has none.
//! std's is small (`SIGSTKSZ`, 8 KiB on x86_64): room for a signal frame and a short handler,
//! not for the stall backtrace's walk of the unwinder (`sched/stall_backtrace.rs`), which
//! crashed there. [`ensure_alt_stack`] leaves an existing one of at least
//! [`MIN_ALT_STACK_BYTES`] alone and otherwise maps one of its own, with a guard page below
//! it, for as long as the thread lives (a smaller one it replaces stays its owner's: std
//! frees its own at the thread's exit, after disabling whatever alternate stack is set), and
//! frees it when the thread exits.

use std::cell::Cell;
use std::ffi::c_void;
use std::io;
use std::ptr;

use rustix::mm::{MapFlags, ProtFlags};

use super::guard::GuardStrategy;
use super::{page_size, round_up_to_page};

/// The least usable size of an alternate stack we allocate: the kernel's signal frame (a few
/// KiB with AVX-512 state), our handler's small buffer, and the handler we chain to.
const MIN_ALT_STACK_BYTES: usize = 64 * 1024;

/// An alternate signal stack this module mapped for the current thread.
struct AltStack {
    /// Start of the mapping (the guard page).
    map_start: usize,
    map_len: usize,
    /// Lowest usable address, what `sigaltstack` is given.
    sp: usize,
}

thread_local! {
    /// The alternate stack mapped for this thread, if this module mapped one; dropped (and
    /// unmapped) when the thread exits.
    static OWNED_ALT_STACK: Cell<Option<AltStack>> = const { Cell::new(None) };
}

/// Makes sure the calling thread has an alternate signal stack of at least
/// [`MIN_ALT_STACK_BYTES`], mapping one if it has none or a smaller one.
pub(super) fn ensure_alt_stack() -> io::Result<()> {
    let current = current();
    if current.ss_flags & libc::SS_DISABLE == 0 && current.ss_size >= MIN_ALT_STACK_BYTES {
        return Ok(()); // Someone else's that is large enough, or ours from an earlier call.
    }
    if current.ss_flags & libc::SS_ONSTACK != 0 {
        return Ok(()); // Running on it (in a signal handler): it cannot be changed now.
    }
    let alt = AltStack::map()?;
    let stack = libc::stack_t {
        ss_sp: alt.sp as *mut c_void,
        ss_flags: 0,
        ss_size: alt.map_start + alt.map_len - alt.sp,
    };
    // SAFETY: `stack` describes a mapped, writable range that stays mapped until `alt` is
    // dropped, which disables it first.
    if unsafe { libc::sigaltstack(&stack, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error()); // `alt` is unmapped on drop.
    }
    // If the thread's TLS is already being torn down, `alt` is dropped here, which disables
    // and unmaps it: the thread is exiting and runs no more green threads.
    let _ = OWNED_ALT_STACK.try_with(move |owned| owned.set(Some(alt)));
    Ok(())
}

/// Whether the calling thread's alternate signal stack has at least
/// [`MIN_ALT_STACK_BYTES`], room for an unwinder on top of a signal frame.
/// Async-signal-safe (`sigaltstack` is).
pub(crate) fn alt_stack_is_roomy() -> bool {
    let current = current();
    current.ss_flags & libc::SS_DISABLE == 0 && current.ss_size >= MIN_ALT_STACK_BYTES
}

/// Whether the calling thread has an alternate signal stack.
pub(crate) fn has_alt_stack() -> bool {
    current().ss_flags & libc::SS_DISABLE == 0
}

/// The calling thread's alternate stack settings.
fn current() -> libc::stack_t {
    // SAFETY: an all-zero stack_t is a valid value to be overwritten.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: query only, into a valid struct.
    let rc = unsafe { libc::sigaltstack(ptr::null(), &mut current) };
    debug_assert_eq!(rc, 0, "sigaltstack query failed");
    current
}

impl AltStack {
    fn map() -> io::Result<AltStack> {
        let page = page_size();
        let usable = round_up_to_page(
            MIN_ALT_STACK_BYTES
                .max(libc::SIGSTKSZ)
                .max(rustix::param::linux_minsigstksz()),
        );
        let map_len = page + usable;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                ptr::null_mut(),
                map_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::STACK,
            )
        }?;
        let alt = AltStack {
            map_start: ptr as usize,
            map_len,
            sp: ptr as usize + page,
        };
        // SAFETY: the first page of our fresh mapping, holding nothing. On error `alt` is
        // dropped, which unmaps it.
        unsafe { GuardStrategy::detected().install(alt.map_start, page) }?;
        Ok(alt)
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let current = current();
        if current.ss_sp as usize == self.sp {
            if current.ss_flags & libc::SS_ONSTACK != 0 {
                return; // Running on it (cannot happen from a TLS destructor): leak it.
            }
            let disable = libc::stack_t {
                ss_sp: ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: disabling this thread's alternate stack, which is ours and not in use.
            unsafe { libc::sigaltstack(&disable, ptr::null_mut()) };
        }
        // SAFETY: our mapping, no longer registered as the alternate stack, and not in use.
        let _ = unsafe { rustix::mm::munmap(self.map_start as *mut c_void, self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn thread_main(_: *mut c_void) -> *mut c_void {
        let before = current();
        assert_ne!(
            before.ss_flags & libc::SS_DISABLE,
            0,
            "a raw pthread has no alt stack"
        );
        ensure_alt_stack().unwrap();
        let after = current();
        assert_eq!(after.ss_flags & libc::SS_DISABLE, 0);
        assert!(after.ss_size >= MIN_ALT_STACK_BYTES);
        // A second call keeps the same stack.
        ensure_alt_stack().unwrap();
        assert_eq!(current().ss_sp, after.ss_sp);
        ptr::null_mut()
    }

    #[test]
    fn threads_without_an_alt_stack_get_one_and_keep_it() {
        // SAFETY: an all-zero pthread_t is a valid value to be overwritten.
        let mut thread: libc::pthread_t = unsafe { std::mem::zeroed() };
        // SAFETY: default attributes; `thread_main` has the start-routine ABI. An assertion
        // failure in it aborts the test binary (it cannot unwind out of `extern "C"`).
        let rc =
            unsafe { libc::pthread_create(&mut thread, ptr::null(), thread_main, ptr::null_mut()) };
        assert_eq!(rc, 0);
        // SAFETY: joining the thread created above, once.
        assert_eq!(unsafe { libc::pthread_join(thread, ptr::null_mut()) }, 0);
    }

    #[test]
    fn std_threads_get_a_larger_alt_stack_than_std_gave_them() {
        std::thread::spawn(|| {
            let before = current();
            ensure_alt_stack().unwrap();
            let after = current();
            assert_eq!(after.ss_flags & libc::SS_DISABLE, 0);
            assert!(after.ss_size >= MIN_ALT_STACK_BYTES);
            if before.ss_flags & libc::SS_DISABLE == 0 && before.ss_size < MIN_ALT_STACK_BYTES {
                assert_ne!(before.ss_sp, after.ss_sp, "std's small one was replaced");
            }
            // A second call keeps ours.
            ensure_alt_stack().unwrap();
            assert_eq!(current().ss_sp, after.ss_sp);
        })
        .join()
        .unwrap();
    }
}
