//! [`KernelProbe`]: a yes-or-no question about the running kernel (does it know this
//! `madvise` advice?), asked once by trying it on a scratch page, the answer cached.

use std::sync::atomic::{AtomicU8, Ordering};

use rustix::mm::{MapFlags, ProtFlags};

use super::page_size;

/// A question about the kernel, answered by `probe` on first use and cached.
pub(super) struct KernelProbe {
    /// 0 not yet probed, 1 yes, 2 no.
    state: AtomicU8,
    probe: fn() -> bool,
}

impl KernelProbe {
    pub(super) const fn new(probe: fn() -> bool) -> KernelProbe {
        KernelProbe {
            state: AtomicU8::new(0),
            probe,
        }
    }

    /// The answer, probing on the first call.
    pub(super) fn get(&self) -> bool {
        // Relaxed is enough: the value is a pure function of the running kernel and
        // publishes no other data. Two threads racing here both probe, get the same answer
        // and store the same value.
        match self.state.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let yes = (self.probe)();
                self.state.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
                yes
            }
        }
    }
}

/// Runs `try_it` on the address and length of a fresh private anonymous page that holds
/// nothing and is unmapped afterwards; false if no page could be mapped. For probes: any
/// failure of the thing tried means "no", since every caller has a fallback.
pub(super) fn on_scratch_page(try_it: impl FnOnce(usize, usize) -> bool) -> bool {
    let page = page_size();
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing; it aliases
    // nothing.
    let Ok(scratch) = (unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            page,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }) else {
        return false;
    };
    let yes = try_it(scratch as usize, page);
    // SAFETY: unmapping the scratch page mapped above; no reference into it exists.
    let unmapped = unsafe { rustix::mm::munmap(scratch, page) };
    debug_assert!(
        unmapped.is_ok(),
        "munmap of the probe page failed: {unmapped:?}"
    );
    yes
}
