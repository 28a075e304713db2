//! [`GreenStack`]: one slot of an arena chunk, owned by one green thread at a time.

use std::ffi::c_void;
use std::io;
use std::num::NonZeroUsize;

use corosensei::stack::{Stack, StackPointer};

use super::page_size;

/// A green thread's stack: usable memory with a guard page below it.
///
/// Owned, not `Clone`: whoever holds the value may run code on the memory. It is only the
/// description of the memory (a few addresses), so it is `Send` and dropping it frees nothing:
/// stacks go back with [`StackPool::give_back`](super::StackPool::give_back), and one that is
/// dropped instead stays reserved until its pool is dropped, which then leaks its chunk (see the
/// module essay).
#[derive(Debug)]
pub(crate) struct GreenStack {
    /// Lowest address of the slot: the start of the guard.
    limit: usize,
    /// One past the guard: the lowest usable address.
    guard_end: usize,
    /// One past the highest usable address; the stack pointer starts here.
    base: usize,
    /// The id of the pool whose arena the slot belongs to.
    owner: u64,
}

impl GreenStack {
    /// Describes a freshly carved slot.
    ///
    /// # Safety
    ///
    /// All three addresses are page aligned, `limit < guard_end < base`, and
    /// `base - guard_end >= corosensei::stack::MIN_STACK_SIZE`. `[limit, guard_end)` faults on
    /// every access; `[guard_end, base)` is readable and writable memory. The whole range stays
    /// mapped, and is used by nothing but this value, for as long as this value exists and
    /// until it has been given back to the pool identified by `owner`.
    pub(super) unsafe fn from_slot(
        limit: usize,
        guard_end: usize,
        base: usize,
        owner: u64,
    ) -> Self {
        debug_assert!(limit < guard_end && guard_end < base);
        debug_assert!(base - guard_end >= corosensei::stack::MIN_STACK_SIZE);
        debug_assert_eq!((limit | guard_end | base) % page_size(), 0);
        GreenStack {
            limit,
            guard_end,
            base,
            owner,
        }
    }

    /// How many bytes the green thread may use: the slot without its guard.
    #[inline]
    pub(crate) fn usable_size(&self) -> usize {
        self.base - self.guard_end
    }

    /// The guard page(s), `[start, end)`: any access faults.
    #[inline]
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        (self.limit, self.guard_end)
    }

    /// The highest address of the stack (exclusive), where the stack pointer starts; page
    /// aligned.
    #[inline]
    pub(crate) fn base(&self) -> usize {
        self.base
    }

    /// The lowest address of the stack, including the guard.
    #[inline]
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The id of the pool this stack belongs to.
    #[inline]
    pub(super) fn owner(&self) -> u64 {
        self.owner
    }

    /// How many bytes of the usable part are resident in memory now (see [`resident_bytes`]).
    pub(crate) fn resident_bytes(&self) -> io::Result<usize> {
        // SAFETY: the usable part of a stack we own is mapped for as long as `self` lives.
        unsafe { resident_bytes(self.guard_end, self.base) }
    }

    /// Gives the pages of a run of adjacent stacks back to the OS with one
    /// `madvise(MADV_DONTNEED)`, from `first`'s lowest usable address to `last`'s base: the
    /// ranges stay reserved and guarded (the guards between the stacks are in the range, and
    /// guard markers and `PROT_NONE` pages survive `MADV_DONTNEED`: `guard.rs` tests both),
    /// and read as zeroes when touched again. `first` and `last` may be the same stack.
    ///
    /// # Safety
    ///
    /// `first` to `last` are adjacent slots of one pool (each slot's base is the next one's
    /// limit), in address order, and nothing may be running on any of them or hold references
    /// into them: their contents are lost.
    pub(super) unsafe fn discard_run(first: &GreenStack, last: &GreenStack) -> io::Result<()> {
        debug_assert!(first.guard_end < last.base && first.owner == last.owner);
        // SAFETY: the range is exactly the union of adjacent slots of one pool (possibly in
        // two of its chunks that the kernel placed back to back) without `first`'s guard:
        // private anonymous memory whose contents the caller guarantees nobody needs.
        unsafe {
            rustix::mm::madvise(
                first.guard_end as *mut c_void,
                last.base - first.guard_end,
                rustix::mm::Advice::LinuxDontNeed,
            )
        }
        .map_err(io::Error::from)
    }
}

/// How many bytes of `[start, end)` are resident in memory now, found with `mincore(2)`.
///
/// For debug dumps: it is a system call plus one byte of output per page. Pages that were
/// only read, never written, map the shared zero page and count as resident too.
///
/// # Safety
///
/// `start` and `end` are page aligned and the range is mapped (a green stack's usable part,
/// whose stack stays allocated during the call).
pub(crate) unsafe fn resident_bytes(start: usize, end: usize) -> io::Result<usize> {
    const BATCH_PAGES: usize = 256;
    let page = page_size();
    let mut flags = [0u8; BATCH_PAGES];
    let mut resident_pages = 0;
    let mut addr = start;
    while addr < end {
        let pages = ((end - addr) / page).min(BATCH_PAGES);
        // SAFETY: `addr` is page aligned and `[addr, addr + pages * page)` lies inside the
        // mapped range (the caller's contract); mincore writes one byte per page into
        // `flags`, which has room for `pages <= BATCH_PAGES` bytes. It only reads page-table
        // state.
        let rc = unsafe { libc::mincore(addr as *mut c_void, pages * page, flags.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        resident_pages += flags[..pages].iter().filter(|&&f| f & 1 != 0).count();
        addr += pages * page;
    }
    Ok(resident_pages * page)
}

// SAFETY: `from_slot`'s contract gives exactly what corosensei's `Stack` asks for: `limit` and
// `base` are page aligned (so aligned to STACK_ALIGNMENT, 16 bytes); `[limit, guard_end)` is a
// guard that faults on any access, and `limit()` includes it; the usable part between the guard
// and `base` is readable, writable and at least MIN_STACK_SIZE bytes (check_stack_size asks for
// 8 KiB); and the memory stays mapped and unused by anything else while the `GreenStack` (and
// so the coroutine owning it) exists, because the pool unmaps chunks only when no stack of
// theirs is out.
unsafe impl Stack for GreenStack {
    #[inline]
    fn base(&self) -> StackPointer {
        NonZeroUsize::new(self.base).expect("a stack's base address is never 0")
    }

    #[inline]
    fn limit(&self) -> StackPointer {
        NonZeroUsize::new(self.limit).expect("mmap never maps page 0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_support::touch_pages;
    use crate::stack::StackPool;

    #[test]
    fn green_stack_is_send_and_small() {
        fn assert_send<T: Send>() {}
        assert_send::<GreenStack>();
        assert!(std::mem::size_of::<GreenStack>() <= 32);
    }

    #[test]
    fn corosensei_sees_the_slot_with_its_guard() {
        let mut pool = StackPool::new(0);
        let stack = pool.take(16 * 1024).unwrap();
        assert_eq!(Stack::base(&stack).get(), stack.base());
        assert_eq!(Stack::limit(&stack).get(), stack.limit());
        let (guard_start, guard_end) = stack.guard_range();
        assert_eq!(guard_start, stack.limit());
        assert_eq!(guard_end - guard_start, page_size());
        assert_eq!(stack.base() - guard_end, stack.usable_size());
        assert_eq!(stack.base() % corosensei::stack::STACK_ALIGNMENT, 0);
        pool.give_back(stack);
    }

    #[test]
    fn resident_bytes_grow_when_a_stack_is_touched() {
        let page = page_size();
        let mut pool = StackPool::new(usize::MAX);
        let stack = pool.take(64 * 1024).unwrap();
        let before = stack.resident_bytes().unwrap();
        assert_eq!(before, 0, "a fresh stack must not be populated");
        // SAFETY: the top three pages of a stack we own and run nothing on.
        unsafe { touch_pages(stack.base() - 3 * page, 3 * page) };
        assert_eq!(stack.resident_bytes().unwrap(), 3 * page);
        // SAFETY: the whole usable part of the same idle stack.
        unsafe { touch_pages(stack.base() - stack.usable_size(), stack.usable_size()) };
        assert_eq!(stack.resident_bytes().unwrap(), stack.usable_size());
        pool.give_back(stack);
    }

    #[test]
    fn discarded_stacks_read_as_zero_and_are_not_resident() {
        let page = page_size();
        let mut pool = StackPool::new(0);
        let stack = pool.take(16 * 1024).unwrap();
        // SAFETY: the usable part of a stack we own and run nothing on.
        unsafe { touch_pages(stack.base() - stack.usable_size(), stack.usable_size()) };
        assert_eq!(stack.resident_bytes().unwrap(), 16 * 1024);
        // SAFETY: a run of one stack, on which nothing runs.
        unsafe { GreenStack::discard_run(&stack, &stack) }.unwrap();
        assert_eq!(stack.resident_bytes().unwrap(), 0);
        // SAFETY: reading the usable part, which is mapped; it reads as zeroes after DONTNEED.
        let byte = unsafe { std::ptr::read_volatile((stack.base() - page) as *const u8) };
        assert_eq!(byte, 0);
        pool.give_back(stack);
    }
}
