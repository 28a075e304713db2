//! `process_madvise(2)` on this process's own address space: one system call gives the same
//! advice to up to 1,024 separate ranges, where `madvise(2)` takes one.
//!
//! The arena uses it when it carves a batch of fresh slots (`arena.rs`): their guard pages
//! in one call (`MADV_GUARD_INSTALL`), and the top page of each stack, where its first frame
//! goes, in another (`MADV_POPULATE_WRITE`, Linux 5.14). Measured on this VM for a million
//! slots of 16 KiB: one `madvise` for each guard plus the page fault of each stack's first
//! touch took 3.0 s; the two batched calls per 1,024 slots, 1.25 s. A page fault is a trap
//! that a virtual machine makes dear, and populating a page from a system call skips it.
//!
//! The process is named by `PIDFD_SELF` (the calling thread, whose memory is this
//! process's), which Linux 6.15 added; any advice to one's own process is allowed since
//! Linux 6.13. A pid file descriptor opened for our pid would also work, but after `fork()` the
//! child would inherit it and advise its *parent*: `PIDFD_SELF` cannot go stale. Support is
//! probed once (a guard marker on a scratch page: it needs no memory, so a moment of memory
//! pressure cannot turn batches off for good); without it the arena carves slots one by one
//! as before.

use std::io;

use super::kernel_probe::{on_scratch_page, KernelProbe};

/// `PIDFD_SELF` from `<linux/pidfd.h>` (Linux 6.15): the calling thread.
const PIDFD_SELF: libc::c_int = -10000;

/// `MADV_GUARD_INSTALL` from `<linux/mman.h>` (Linux 6.13).
pub(super) const MADV_GUARD_INSTALL: libc::c_int = 102;

/// `MADV_POPULATE_WRITE` from `<linux/mman.h>` (Linux 5.14).
pub(super) const MADV_POPULATE_WRITE: libc::c_int = 23;

/// Ranges per call: the kernel's `UIO_MAXIOV`.
pub(super) const MAX_RANGES: usize = 1024;

static SUPPORTED: KernelProbe = KernelProbe::new(|| {
    on_scratch_page(|page, len| {
        // SAFETY: the scratch page is ours and holds nothing anybody will read.
        let advised = unsafe { advise(&[(page, len)], MADV_GUARD_INSTALL) };
        matches!(advised, Ok(1))
    })
});

/// Whether `process_madvise(PIDFD_SELF, ..)` works on this kernel, guard markers included
/// (probed once, on a scratch page).
pub(super) fn supported() -> bool {
    SUPPORTED.get()
}

/// Gives `advice` to each `(start, len)` range, at most [`MAX_RANGES`] of them, in one
/// `process_madvise` call. Returns how many ranges, from the first, were advised whole (the
/// kernel stops at the first range it fails on and reports the bytes done before it); an
/// error only when not even the first range was.
///
/// # Safety
///
/// Each range is page aligned and lies in a private anonymous mapping of the caller's, and
/// `advice` does to it only what the caller may do: for `MADV_GUARD_INSTALL` the contents
/// are discarded (no one may need them), for `MADV_POPULATE_WRITE` they are kept.
pub(super) unsafe fn advise(ranges: &[(usize, usize)], advice: libc::c_int) -> io::Result<usize> {
    debug_assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
    let iov: Vec<libc::iovec> = ranges
        .iter()
        .map(|&(start, len)| libc::iovec {
            iov_base: start as *mut libc::c_void,
            iov_len: len,
        })
        .collect();
    let done = loop {
        // SAFETY: `iov` is a valid array of `iov.len()` entries for the call's duration; the
        // ranges it names are the caller's to advise (the function's contract).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                PIDFD_SELF,
                iov.as_ptr(),
                iov.len(),
                advice,
                0u32,
            )
        };
        if rc >= 0 {
            break rc as usize;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    };
    // Whole ranges covered by the byte count.
    let mut left = done;
    let mut whole = 0;
    for &(_, len) in ranges {
        if left < len {
            break;
        }
        left -= len;
        whole += 1;
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_support::ScratchMapping;
    use crate::stack::{page_size, resident_bytes};

    #[test]
    fn populate_commits_exactly_the_ranges_named() {
        if !supported() {
            println!("note: process_madvise(PIDFD_SELF) is not supported here; test skipped");
            return;
        }
        let page = page_size();
        let map = ScratchMapping::new(8 * page);
        let ranges = [
            (map.start() + page, page),
            (map.start() + 5 * page, 2 * page),
        ];
        // SAFETY: ranges of our own scratch mapping; populating keeps its contents.
        assert_eq!(unsafe { advise(&ranges, MADV_POPULATE_WRITE) }.unwrap(), 2);
        for (offset, resident) in [(0, 0), (1, 1), (2, 0), (5, 1), (6, 1), (7, 0)] {
            let start = map.start() + offset * page;
            // SAFETY: a page of our own mapping.
            let bytes = unsafe { resident_bytes(start, start + page) }.unwrap();
            assert_eq!(bytes, resident * page, "page {offset}");
        }
    }
}
