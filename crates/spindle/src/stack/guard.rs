//! Guard pages: how a range of a stack slot is made to fault on every access.
//!
//! Two strategies, chosen once per process (see the module essay in `stack/mod.rs`):
//! [`GuardStrategy::GuardMarker`] (`madvise(MADV_GUARD_INSTALL)`, Linux 6.13+, no extra memory
//! mapping) when the kernel supports it, else [`GuardStrategy::ProtNone`] (`mprotect(PROT_NONE)`,
//! which splits the mapping).

use std::ffi::c_void;
use std::io;

use rustix::mm::MprotectFlags;

use super::kernel_probe::{on_scratch_page, KernelProbe};
use super::{page_size, self_madvise};

/// `MADV_GUARD_INSTALL` (in `self_madvise.rs`): not in the `libc` crate yet, and rustix's
/// `Advice` enum has no variant for it, so the call goes through `libc::madvise`.
use super::self_madvise::MADV_GUARD_INSTALL;

/// How the guard page of a slot is made inaccessible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GuardStrategy {
    /// `madvise(MADV_GUARD_INSTALL)`: guard markers in the page tables; the mapping stays whole.
    GuardMarker,
    /// `mprotect(PROT_NONE)`: the fallback; splits the mapping, two VMAs per slot.
    ProtNone,
}

impl GuardStrategy {
    /// The best strategy this kernel supports.
    pub(super) fn detected() -> GuardStrategy {
        if guard_install_supported() {
            GuardStrategy::GuardMarker
        } else {
            GuardStrategy::ProtNone
        }
    }

    /// The system call behind the strategy, for error messages.
    pub(super) fn system_call(self) -> &'static str {
        match self {
            GuardStrategy::GuardMarker => "madvise(MADV_GUARD_INSTALL)",
            GuardStrategy::ProtNone => "mprotect(PROT_NONE)",
        }
    }

    /// Makes `[start, start + len)` fault on every access.
    ///
    /// # Safety
    ///
    /// The range must be page aligned, lie inside an anonymous private mapping that the caller
    /// owns, and hold nothing anybody will read again: installing a guard marker discards the
    /// pages' contents, and any Rust reference into the range would dangle.
    pub(super) unsafe fn install(self, start: usize, len: usize) -> io::Result<()> {
        match self {
            GuardStrategy::GuardMarker => loop {
                // SAFETY: the caller owns the private anonymous range and needs none of its
                // contents (the function's contract); MADV_GUARD_INSTALL touches nothing else.
                let rc = unsafe { libc::madvise(start as *mut c_void, len, MADV_GUARD_INSTALL) };
                if rc == 0 {
                    return Ok(());
                }
                let err = io::Error::last_os_error();
                // The kernel retries races with concurrent faults itself (ERESTARTNOINTR);
                // EINTR and EAGAIN are handled here only to be safe against older patch levels.
                if !matches!(err.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) {
                    return Err(err);
                }
            },
            // SAFETY: as above; PROT_NONE only changes the protection of the caller's range.
            GuardStrategy::ProtNone => unsafe {
                rustix::mm::mprotect(start as *mut c_void, len, MprotectFlags::empty())
                    .map_err(io::Error::from)
            },
        }
    }
}

impl GuardStrategy {
    /// Makes `[start, start + len)` fault on every access for each of `starts`, in order:
    /// guard markers for up to 1,024 slots per `process_madvise` call where the kernel has
    /// it (`self_madvise.rs`), one call per guard otherwise. Returns how many guards, from
    /// the first, were installed; an error only if not even the first was.
    ///
    /// # Safety
    ///
    /// As for [`install`](GuardStrategy::install), for every range.
    pub(super) unsafe fn install_many(self, starts: &[usize], len: usize) -> io::Result<usize> {
        let mut done = 0;
        if self == GuardStrategy::GuardMarker && self_madvise::supported() {
            while done < starts.len() {
                let end = (done + self_madvise::MAX_RANGES).min(starts.len());
                let ranges: Vec<(usize, usize)> =
                    starts[done..end].iter().map(|&s| (s, len)).collect();
                // SAFETY: the caller's contract covers every range.
                match unsafe { self_madvise::advise(&ranges, MADV_GUARD_INSTALL) } {
                    Ok(n) if n > 0 => done += n,
                    // One at a time from here, which retries and names the error.
                    _ => break,
                }
            }
        }
        while done < starts.len() {
            // SAFETY: as above.
            match unsafe { self.install(starts[done], len) } {
                Ok(()) => done += 1,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(done)
    }
}

static GUARD_INSTALL: KernelProbe = KernelProbe::new(probe_guard_install);

fn probe_guard_install() -> bool {
    // SAFETY: the scratch page is ours, anonymous, private and holds nothing.
    on_scratch_page(|page, len| unsafe { GuardStrategy::GuardMarker.install(page, len) }.is_ok())
}

/// Whether `madvise(MADV_GUARD_INSTALL)` works on this kernel.
///
/// Probed once, on first call, by installing a guard on a scratch page (`EINVAL` means the
/// kernel does not know the advice; any other failure is also taken as "not supported", since
/// the fallback is always correct). The answer is cached.
pub(crate) fn guard_install_supported() -> bool {
    GUARD_INSTALL.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_support::{is_readable, ScratchMapping};

    #[test]
    fn guard_install_detection_is_stable() {
        let first = guard_install_supported();
        assert_eq!(first, guard_install_supported());
        assert_eq!(first, probe_guard_install());
        println!("MADV_GUARD_INSTALL supported on this kernel: {first}");
    }

    fn check_guard_faults_and_survive_dontneed(strategy: GuardStrategy) {
        let page = page_size();
        let map = ScratchMapping::new(4 * page);
        let guard = map.start() + page;
        // SAFETY: the second page of our own scratch mapping, holding nothing.
        unsafe { strategy.install(guard, page) }.unwrap();
        assert!(is_readable(map.start()));
        assert!(!is_readable(guard), "{strategy:?}: guard page is readable");
        assert!(
            !is_readable(guard + page - 1),
            "{strategy:?}: guard page is readable"
        );
        assert!(is_readable(guard + page));

        // The pool discards a run of adjacent stacks with one call over their usable parts
        // and the guards between them: the guard must survive that on this kernel.
        // SAFETY: our own scratch mapping, whose contents nobody needs.
        unsafe {
            rustix::mm::madvise(
                map.start() as *mut c_void,
                4 * page,
                rustix::mm::Advice::LinuxDontNeed,
            )
        }
        .unwrap();
        assert!(
            !is_readable(guard),
            "{strategy:?}: guard lost by MADV_DONTNEED"
        );
        assert!(is_readable(guard + page));
    }

    #[test]
    fn guard_markers_fault_and_survive_dontneed() {
        if !guard_install_supported() {
            println!("note: MADV_GUARD_INSTALL is not supported on this kernel; test skipped");
            return;
        }
        check_guard_faults_and_survive_dontneed(GuardStrategy::GuardMarker);
    }

    #[test]
    fn prot_none_guards_fault_and_survive_dontneed() {
        check_guard_faults_and_survive_dontneed(GuardStrategy::ProtNone);
    }
}
