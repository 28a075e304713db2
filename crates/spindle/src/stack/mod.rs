//! Stacks for green threads: arenas, guard pages, pooling, overflow reporting.
//!
//! Every green thread runs on a stack of its own. This module hands those stacks out
//! ([`StackPool::take`]), takes them back when the green thread has finished
//! ([`StackPool::give_back`]), and turns a stack overflow into a message that names the green
//! thread instead of an anonymous `SIGSEGV` ([`overflow`]).
//!
//! # The layout of a slot
//!
//! Stacks are carved from large anonymous mappings, the *arena chunks*. One stack occupies one
//! *slot*: a guard page at the low end, then the usable stack above it. The stack grows down,
//! from `base` towards the guard.
//!
//! ```text
//!             one arena chunk: a single mmap (64 MiB, or one slot for a very large stack)
//!  ┌─────────────────────────────┬─────────────────────────────┬──────────────── ─ ─
//!  │ slot 0                      │ slot 1                      │ slot 2
//!  ├───────┬─────────────────────┼───────┬─────────────────────┼───────┬──────── ─ ─
//!  │ guard │ usable ◄── grows ── │ guard │ usable ◄── grows ── │ guard │ ...
//!  └───────┴─────────────────────┴───────┴─────────────────────┴───────┴──────── ─ ─
//!  ▲       ▲                     ▲
//!  limit   guard_end             base        (addresses increase to the right)
//! ```
//!
//! [`GreenStack`] records `limit` (the lowest address, start of the guard), `guard_end` and
//! `base` (the highest address, one past the stack). corosensei is told `base` and `limit`, as
//! its `Stack` trait asks: the limit includes the guard.
//!
//! Nothing is ever written to a slot by this module, and only one page of a slot is ever
//! populated ahead of use, the top one of a stack carved in a batch (see "Fresh slots in
//! batches"): a page of a stack becomes memory (is *committed*) when the green thread first
//! touches it, so a 64 KiB stack whose thread uses 6 KiB costs two pages of memory, not
//! sixteen.
//!
//! # Why arenas, not one mmap per stack
//!
//! The obvious implementation maps each stack on its own and `mprotect`s its lowest page. That
//! costs two system calls per spawn and, worse, two kernel memory mappings (VMAs) per stack,
//! because `mprotect` splits the mapping in two. Linux allows a process `vm.max_map_count`
//! mappings, 65,530 by default, so such a runtime dies at about 32,000 live green threads, and
//! the error it gets (`ENOMEM` from `mmap`) says nothing about why.
//!
//! Here one `mmap` reserves a 64 MiB chunk (`PROT_READ | PROT_WRITE`, `MAP_PRIVATE |
//! MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK`) and slots are carved from it bump-style, the next
//! slot at the next free address. `MAP_NORESERVE` keeps the kernel from charging the whole
//! chunk against the overcommit limit; only touched pages count. A million 16 KiB stacks need
//! 19 GiB of address space (out of 128 TiB) in 306 chunks, and the kernel merges adjacent chunks
//! with equal flags: measured, they cost one memory mapping, not two million. Each chunk is
//! also marked `MADV_NOHUGEPAGE` (one call per chunk; `MAP_STACK` implies it since Linux 6.7), so
//! a transparent huge page never turns the first touch of a small stack into 2 MiB of memory.
//!
//! # Guard pages: `MADV_GUARD_INSTALL`, else `mprotect`
//!
//! The guard page of a slot must fault on any access, or an overflowing thread would silently
//! write into the slot below, which is the top of another thread's stack. Two ways:
//!
//! 1. `madvise(MADV_GUARD_INSTALL)` (Linux 6.13 and later) writes *guard markers* into the page
//!    table entries of the range. An access raises `SIGSEGV` exactly as a `PROT_NONE` page would,
//!    but the mapping is not split: a chunk stays one VMA however many guards it holds. The cost
//!    is page-table memory, one 4 KiB page-table page per 2 MiB of chunk that holds a guard
//!    (about 40 MiB for a million stacks), which the stacks' own pages would need anyway.
//!    Guard markers survive `MADV_DONTNEED` (the tests check it on the running kernel) and go away
//!    only with `MADV_GUARD_REMOVE` or `munmap`.
//! 2. `mprotect(PROT_NONE)` otherwise. Correct everywhere, but every slot then costs two VMAs,
//!    so the arena still saves the system call per spawn but no longer the mapping budget:
//!    about 32,000 live stacks under the default `vm.max_map_count`. When that runs out the error
//!    says so and how to raise the limit (see [`out_of_memory`]).
//!
//! Which one is used is decided once per process ([`guard_install_supported`]: try
//! `MADV_GUARD_INSTALL` on a scratch page; `EINVAL` means the kernel does not know it). A slot's
//! guard is installed once, when the slot is first carved, and never again: a recycled stack
//! costs no system call.
//!
//! One guard page catches a thread that walks down its stack, which is what Rust code does:
//! rustc emits stack probes for any frame larger than a page, so a big frame touches the guard
//! before it can touch anything below it. C code compiled without `-fstack-clash-protection`
//! may allocate a frame of more than a page in one step and jump the guard, into the top of the
//! neighbouring stack; one guard page cannot stop that, as it cannot for kernel threads.
//!
//! # The pool, and when memory goes back to the OS
//!
//! A [`StackPool`] belongs to one scheduler worker (it is not `Sync`, and needs no lock). For
//! each *size class*, a page-rounded usable size, it keeps the idle stacks in two lists:
//!
//! - *warm* stacks, whose touched pages are still committed. Handing one out is a `pop_back`
//!   and costs no page faults either. The pool keeps `keep_bytes` of them (plus the slack
//!   below), counted by usable size (an upper bound of what they hold).
//! - *cold* stacks, whose pages went back to the OS with `MADV_DONTNEED` because the warm ones
//!   went over the `keep_bytes` budget. The address range stays reserved and guarded, so a
//!   cold stack is reused exactly like a warm one; its pages come back, zeroed, when touched.
//!
//! Stacks go cold in batches. The warm list may grow to `keep_bytes` plus a quarter; the
//! stack that takes it past that triggers a *trim*, which takes the oldest warm stacks
//! (least likely to be in the CPU's caches) until `keep_bytes` is left, sorts them by
//! address and gives each run of adjacent slots back with one `madvise(MADV_DONTNEED)`
//! over their usable parts and the guards between them (guard markers and `PROT_NONE` pages
//! survive it). One call per stack was the first design, and it was slow for a reason that
//! does not show in a single-threaded measurement: every `MADV_DONTNEED` flushes the TLBs of
//! every CPU that runs the process, by an inter-processor interrupt, which a virtual machine
//! turns into exits on both sides. With two workers, creating and joining 100,000 green
//! threads spent 60% of its time sending those interrupts (10 µs per thread; 2.3 µs with
//! batches, where threads finished in spawn order make one run per trim).
//!
//! [`StackPool::take`] prefers a warm stack, then a cold one, and carves a new slot only when
//! the class has no idle stack. Chunks are never unmapped while the pool lives (address space is
//! cheap, the mapping budget and the guard installations are not). Dropping the pool unmaps
//! them, with one rule: every stack taken from a pool must be given back to that same pool before
//! the pool is dropped, or it is deliberately leaked. A pool dropped with stacks still out leaks
//! the chunks those stacks live in instead of unmapping memory that may be in use (and
//! debug builds assert that this does not happen outside a panic).
//!
//! # Overflow reporting
//!
//! A process-wide `SIGSEGV`/`SIGBUS` handler, running on an alternate signal stack, compares
//! the faulting address with the guard range of the green thread that the scheduler declared
//! running on this kernel thread ([`set_running`]). On a match it prints
//!
//! ```text
//! thread 'deep-recursion' (spindle green thread 7) has overflowed its stack of 16384 bytes
//! fatal runtime error: stack overflow, aborting
//! ```
//!
//! and aborts, as std does for kernel threads; anything else goes to the handler that was
//! installed before (std's, usually). The details, and why the handler is async-signal-safe,
//! are in [`overflow`].
//!
//! # Costs
//!
//! Measured on the development machine (Linux 6.18, x86_64, 2 cores of an AMD EPYC in a
//! virtual machine; release build; thread CPU time, which includes the kernel's work), for
//! 16 KiB stacks:
//!
//! | operation | cost |
//! |---|---|
//! | `take` of an idle stack, then `give_back` within `keep_bytes` | ~11 ns the pair, no system call |
//! | `take` carving a fresh slot, guard by `MADV_GUARD_INSTALL` | ~0.65 µs: one `madvise` |
//! | `take` carving a batch of 1,024 slots: guards, and each top page populated | ~1.25 µs a slot, page included: two `process_madvise` calls |
//! | `take` carving a fresh slot, guard by `mprotect` | ~2.3 µs: one `mprotect` and a VMA split |
//! | a new 64 MiB chunk (every 3,276 stacks of 16 KiB) | one `mmap` and one `madvise`, a few µs |
//! | `give_back` that triggers a trim | one `madvise(MADV_DONTNEED)` per run of adjacent stacks: ~0.4 µs, ~2.1 µs per 16 KiB touched, plus a TLB shootdown when other CPUs run the process |
//! | 1,000,000 stacks held at once | 0.65 s to carve, +1 memory mapping, 20 GiB of address space, 40 MiB of page tables, no stack memory |
//! | first touch of each stack page (the kernel's cost, not this module's) | a page fault, 1.7-2.5 µs on this VM |
//!
//! The last line dominates a spawn on a fresh or cold stack: a coroutine writes its first
//! frame at the top of its stack, so every live green thread costs at least one page (4 KiB)
//! of memory, and a page fault when that page is first touched. A warm recycled stack costs
//! neither, which is what `keep_bytes` buys.
//!
//! # Fresh slots in batches
//!
//! When a pool has no idle stack of a class, it carves fresh slots: one the first time, then
//! twice as many as the class's last batch each time it runs out again, up to 1,024 (so a
//! class that stops growing holds fewer spare slots than twice the stacks it has used, and
//! at most 1,023). Where the guards
//! are markers and the kernel takes `process_madvise(PIDFD_SELF, ..)` (Linux 6.15), a batch
//! costs two system calls: one installs every guard, one populates every stack's top page
//! (`MADV_POPULATE_WRITE`), the page each coroutine writes its first frame to. Populating a
//! page from a system call skips the page-fault trap, which a virtual machine makes dear:
//! for a million slots on the development VM, a guard `madvise` each plus the first-touch
//! fault took 3.0 s, two batched calls per 1,024 slots 1.25 s, and spawning a million
//! parked green threads went from 2.2 s to 1.9 s (`spindle-lab bench memory`). The batch's
//! other stacks wait in the class's *spare* list, one committed page each (so a worker holds
//! at most 4 MiB of such pages per stack size), and are handed out after the warm ones and
//! before the cold ones, whose pages are gone. Elsewhere slots are carved one by one.
//!
//! # Alternatives considered
//!
//! - *One `mmap` per stack* (what `corosensei`'s `DefaultStack` does): the mapping limit above.
//! - *Installing the guards of a whole chunk up front*, one `madvise` per slot in a tight loop:
//!   measured, it costs the same per guard as installing each when its slot is carved (the
//!   page-table work inside the kernel dominates, not the loop around it), and it builds page
//!   tables for slots that may never be used. The same batch in *one* call,
//!   `process_madvise(PIDFD_SELF, iovec[1024], MADV_GUARD_INSTALL)`, costs about 460 ns per
//!   guard instead of 630 ns, which alone was not worth a code path that needs Linux 6.15.
//!   What made batches worth it was the other half: the first-touch page fault of each new
//!   stack, three times the guard's cost, which `MADV_POPULATE_WRITE` in the same kind of
//!   batch replaces (below).
//! - *Growable or segmented stacks*: need compiler support Rust does not have.
//! - *`MAP_GROWSDOWN`*: the kernel's growth rules (the stack gap, faults below the stack pointer)
//!   make it unreliable; Linux does not recommend it.
//! - *One pool shared by all workers*: a lock or a lock-free stack on every spawn, and stacks
//!   bouncing between caches; per-worker pools need neither.
#![cfg_attr(not(test), allow(dead_code, unused_imports))]

mod alt_stack;
mod arena;
mod green_stack;
mod guard;
mod kernel_probe;
mod out_of_memory;
mod overflow;
mod pool;
mod self_madvise;
#[cfg(test)]
mod test_support;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

pub(crate) use alt_stack::{alt_stack_is_roomy, has_alt_stack};
pub(crate) use green_stack::{resident_bytes, GreenStack};
pub(crate) use guard::guard_install_supported;
pub(crate) use overflow::{
    prepare_thread_for_green_stacks, running_green_stack, set_running, OverflowInfo,
};
pub(crate) use pool::{StackPool, StackPoolStats};

/// The smallest usable stack a green thread may ask for, in bytes.
///
/// corosensei needs [`corosensei::stack::MIN_STACK_SIZE`] (one page); this leaves room for the
/// coroutine's entry frames and a little code on top.
pub(crate) const MIN_STACK_SIZE: usize = 8 * 1024;

/// The largest usable stack a green thread may ask for, in bytes.
///
/// Stacks are only address space until touched, so this bound is about catching nonsense
/// (a size in bits, a negative number cast to `usize`), not about memory.
pub(crate) const MAX_STACK_SIZE: usize = 1024 * 1024 * 1024;

const _: () = assert!(MIN_STACK_SIZE >= corosensei::stack::MIN_STACK_SIZE);

/// The size of a memory page, in bytes: asked once, then a load.
///
/// rustix asks libc for it (`use-libc-auxv`, so that valgrind can run spindle: HACKING.md),
/// and libc's answer is a `sysconf` call of some fifty instructions; spawns ask several times.
#[inline]
pub(crate) fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    #[cold]
    fn ask(cache: &AtomicUsize) -> usize {
        let size = rustix::param::page_size();
        cache.store(size, Relaxed);
        size
    }
    match PAGE_SIZE.load(Relaxed) {
        0 => ask(&PAGE_SIZE),
        size => size,
    }
}

/// Rounds `bytes` up to a multiple of the page size. `bytes` must be at most
/// [`MAX_STACK_SIZE`] plus a page, so that the sum cannot overflow.
#[inline]
fn round_up_to_page(bytes: usize) -> usize {
    let page = page_size();
    (bytes + page - 1) & !(page - 1)
}

/// Validates a requested green-thread stack size and rounds it up to whole pages.
///
/// Used by the runtime and thread builders and by [`StackPool::take`]. A size outside
/// [`MIN_STACK_SIZE`]`..=`[`MAX_STACK_SIZE`] gives an [`io::ErrorKind::InvalidInput`] error
/// whose message names the value and the allowed range.
#[inline]
pub(crate) fn check_stack_size(size: usize) -> io::Result<usize> {
    if (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&size) {
        Ok(round_up_to_page(size))
    } else {
        Err(stack_size_out_of_range(size))
    }
}

#[cold]
fn stack_size_out_of_range(size: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "green-thread stack size {size} bytes is out of range: \
             it must be between {MIN_STACK_SIZE} bytes ({}) and {MAX_STACK_SIZE} bytes ({})",
            Bytes(MIN_STACK_SIZE),
            Bytes(MAX_STACK_SIZE),
        ),
    )
}

/// A byte count written for people: `16 KiB`, `64 MiB`, `1 GiB` when the count is a whole
/// number of such units, else `12345 bytes`. Used in error messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bytes(pub(crate) usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        let n = self.0;
        for (unit, name) in UNITS {
            if n >= unit && n % unit == 0 {
                return write!(f, "{} {name}", n / unit);
            }
        }
        write!(f, "{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_sizes_are_checked_and_rounded_to_pages() {
        let page = page_size();
        assert_eq!(check_stack_size(MIN_STACK_SIZE).unwrap(), MIN_STACK_SIZE);
        assert_eq!(check_stack_size(16 * 1024).unwrap(), 16 * 1024);
        assert_eq!(
            check_stack_size(MIN_STACK_SIZE + 1).unwrap(),
            MIN_STACK_SIZE + page
        );
        assert_eq!(check_stack_size(MAX_STACK_SIZE).unwrap(), MAX_STACK_SIZE);
    }

    #[test]
    fn stack_size_errors_name_the_value_and_the_range() {
        for bad in [0, 4096, MIN_STACK_SIZE - 1, MAX_STACK_SIZE + 1, usize::MAX] {
            let err = check_stack_size(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad} bytes")), "{msg}");
            assert!(msg.contains("8192 bytes (8 KiB)"), "{msg}");
            assert!(msg.contains("1073741824 bytes (1 GiB)"), "{msg}");
        }
    }

    #[test]
    fn byte_counts_are_written_in_the_largest_exact_unit() {
        assert_eq!(Bytes(16 * 1024).to_string(), "16 KiB");
        assert_eq!(Bytes(64 << 20).to_string(), "64 MiB");
        assert_eq!(Bytes(1 << 30).to_string(), "1 GiB");
        assert_eq!(Bytes(1536 << 20).to_string(), "1536 MiB");
        assert_eq!(Bytes(12345).to_string(), "12345 bytes");
        assert_eq!(Bytes(0).to_string(), "0 bytes");
    }

    #[test]
    fn page_size_is_a_power_of_two() {
        assert!(page_size().is_power_of_two());
        assert!(page_size() >= 4096);
    }
}
