//! [`StackPool`]: a scheduler worker's cache of idle stacks, over its own arena.
//!
//! The pool keeps, per size class, the idle stacks in three lists: *warm* (pages still
//! committed, `keep_bytes` of them, plus up to a quarter more between trims), *spare* (fresh
//! from a batch, only the top page committed) and *cold* (pages given back to the OS with
//! `MADV_DONTNEED`, address range still reserved and guarded). The policy and its reasons
//! are in the module essay (`stack/mod.rs`, "The pool, and when memory goes back to the OS"
//! and "Fresh slots in batches").

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use super::arena::Arena;
use super::guard::GuardStrategy;
use super::{check_stack_size, GreenStack};
use crate::ring::Ring;

/// The largest batch of fresh slots carved at once: one `process_madvise` call's worth.
const MAX_BATCH: usize = 1024;

/// Source of pool ids, stamped into stacks so that a stack given back to the wrong pool is
/// caught. Relaxed: only uniqueness matters, no other data is published with the id.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// The idle stacks of one usable size.
#[derive(Debug)]
struct SizeClass {
    usable: usize,
    /// Idle stacks whose touched pages are still committed, oldest first, each with the
    /// pool's count of returns when it came back; counted in `warm_idle_bytes`. Handed out
    /// from the back (the most recently used, likeliest still in the CPU's caches), trimmed
    /// from the front.
    warm: Ring<(u64, GreenStack)>,
    /// Idle stacks whose pages were returned with `MADV_DONTNEED`.
    cold: Vec<GreenStack>,
    /// Fresh stacks carved in a batch with the one handed out, never used: guarded, with
    /// their top page populated (module essay). Not counted in `warm_idle_bytes`: a batch
    /// holds at most 1,023 of them, one page each.
    spare: Vec<GreenStack>,
    /// Slots the class's next fresh carving asks for: 1, then twice the last batch actually
    /// carved, up to 1,024. So a class that keeps growing carves in batches, and one that
    /// stops holds fewer spares than twice the stacks it has used, and at most 1,023.
    next_batch: usize,
}

/// Per-worker cache of stacks, over an arena of its own.
///
/// Not `Sync` and needs no lock: one per scheduler worker kernel thread. Every stack taken
/// must be given back to the same pool (checked: giving it to another panics) before the pool
/// is dropped, or it is leaked on purpose; see the module essay for what dropping does then.
#[derive(Debug)]
pub(crate) struct StackPool {
    arena: Arena,
    /// A short list: a runtime uses one or a few stack sizes, so a linear search wins.
    classes: Vec<SizeClass>,
    /// Budget for warm idle stacks, in usable bytes: what a trim leaves.
    keep_bytes: usize,
    /// How far the warm idle stacks may go over `keep_bytes` before a trim: a quarter of it,
    /// so that stacks go cold in batches (module essay).
    slack_bytes: usize,
    /// Usable bytes of the warm idle stacks, `<= keep_bytes + slack_bytes`.
    warm_idle_bytes: usize,
    /// Stacks given back over the pool's life: the age stamp of a warm stack.
    returns: u64,
    /// See [`StackPoolStats::discard_calls`].
    discard_calls: usize,
    /// Whether fresh slots may be carved in batches where they pay (tests of other policies
    /// turn it off, to know which stack comes next).
    batches: bool,
    /// Stacks taken and not yet given back.
    out: usize,
    _not_sync: PhantomData<Cell<()>>,
}

/// A snapshot of a pool's bookkeeping, for debug dumps and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StackPoolStats {
    /// Stacks taken and not yet given back.
    pub(crate) out: usize,
    /// Idle stacks whose pages may still be committed.
    pub(crate) warm_idle: usize,
    /// Idle stacks whose pages were given back to the OS.
    pub(crate) cold_idle: usize,
    /// Fresh stacks carved in a batch and not used yet.
    pub(crate) spare_idle: usize,
    /// Usable bytes of the warm idle stacks (at most the pool's `keep_bytes` plus its slack,
    /// a quarter of `keep_bytes`).
    pub(crate) warm_idle_bytes: usize,
    /// `madvise(MADV_DONTNEED)` calls made to give idle stacks' pages back (one per run of
    /// adjacent stacks in a trim).
    pub(crate) discard_calls: usize,
    /// Slots carved from the arena over the pool's life (each cost a guard installation).
    pub(crate) slots_carved: usize,
    /// Address space reserved by the arena, in bytes.
    pub(crate) reserved_bytes: usize,
    /// How many arena chunks (mmaps) the pool holds.
    pub(crate) chunks: usize,
}

impl StackPool {
    /// An empty pool that keeps `keep_bytes` of idle stacks (counted by usable size)
    /// committed; once the idle stacks exceed that by a quarter, the oldest ones beyond it
    /// have their pages returned to the OS with `MADV_DONTNEED`, in one batch, while their
    /// address range stays reserved for reuse.
    ///
    /// Reserves nothing until the first [`take`](StackPool::take).
    pub(crate) fn new(keep_bytes: usize) -> StackPool {
        StackPool::with_guard_strategy(keep_bytes, GuardStrategy::detected())
    }

    /// [`new`](StackPool::new) with the guard strategy chosen by the caller: tests use it to
    /// exercise the `mprotect` fallback on a kernel that has `MADV_GUARD_INSTALL`.
    pub(super) fn with_guard_strategy(keep_bytes: usize, guard: GuardStrategy) -> StackPool {
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed);
        StackPool {
            arena: Arena::new(guard, id),
            classes: Vec::new(),
            keep_bytes,
            slack_bytes: keep_bytes / 4,
            warm_idle_bytes: 0,
            returns: 0,
            discard_calls: 0,
            batches: true,
            out: 0,
            _not_sync: PhantomData,
        }
    }

    /// A stack with at least `size` usable bytes (rounded up to the page size).
    ///
    /// The hot spawn path: an idle stack of that size class, warm first, then spare, then
    /// cold, is handed out with a pop and no system call. Only when the class has none are
    /// new slots carved from the arena: in a batch (two `process_madvise` calls) or alone
    /// (one `madvise` or `mprotect` for its guard), and now and then an `mmap` for a new
    /// chunk. Errors: [`check_stack_size`]'s for a bad size, and an
    /// [`io::ErrorKind::OutOfMemory`] error naming the cause when the reservation fails.
    #[inline]
    pub(crate) fn take(&mut self, size: usize) -> io::Result<GreenStack> {
        let usable = check_stack_size(size)?;
        if let Some(class) = self.classes.iter_mut().find(|c| c.usable == usable) {
            if let Some((_, stack)) = class.warm.pop_back() {
                self.warm_idle_bytes -= usable;
                self.out += 1;
                return Ok(stack);
            }
            // A spare before a cold one: its top page is there already.
            if let Some(stack) = class.spare.pop().or_else(|| class.cold.pop()) {
                self.out += 1;
                return Ok(stack);
            }
        }
        self.take_fresh(usable)
    }

    /// The slow path of [`take`](StackPool::take): no idle stack of the class, so carve one.
    #[cold]
    #[inline(never)]
    fn take_fresh(&mut self, usable: usize) -> io::Result<GreenStack> {
        // Create the class now, so that giving the stack back finds it on the fast path.
        let index = self.class_index(usable);
        let class = &mut self.classes[index];
        let want = if self.batches { class.next_batch } else { 1 };
        let mut batch = self.arena.carve_batch(usable, want)?;
        // Where batches do not pay, the arena carves one slot whatever is asked.
        class.next_batch = (batch.len() * 2).min(MAX_BATCH);
        // Handed out in address order: the lowest now, the spares popped from the end.
        batch.reverse();
        let stack = batch.pop().expect("a batch holds at least one stack");
        class.spare.extend(batch);
        self.out += 1;
        Ok(stack)
    }

    /// Takes back a stack whose coroutine has finished or been unwound.
    ///
    /// Kept warm; if that takes the warm idle stacks over `keep_bytes` plus the slack, the
    /// oldest go cold until `keep_bytes` is left ([`trim`](StackPool::trim)).
    ///
    /// # Panics
    ///
    /// If `stack` was taken from another pool: the other pool could unmap it while this one
    /// hands it out again.
    #[inline]
    pub(crate) fn give_back(&mut self, stack: GreenStack) {
        if stack.owner() != self.arena.owner() {
            wrong_pool();
        }
        self.out -= 1;
        self.returns += 1;
        let usable = stack.usable_size();
        let class = self.class_index(usable);
        self.classes[class].warm.push_back((self.returns, stack));
        self.warm_idle_bytes += usable;
        if self.warm_idle_bytes > self.keep_bytes.saturating_add(self.slack_bytes) {
            self.trim();
        }
    }

    /// Makes the oldest warm idle stacks cold until `keep_bytes` of warm ones are left, in
    /// one batch: sorted by address, each run of adjacent slots gets one
    /// `madvise(MADV_DONTNEED)` over its usable parts and the guards between them, which keep
    /// their protection (module essay: one call per stack cost a TLB shootdown per stack).
    #[cold]
    #[inline(never)]
    fn trim(&mut self) {
        let mut going: Vec<(usize, GreenStack)> = Vec::new();
        while self.warm_idle_bytes > self.keep_bytes {
            // The oldest warm stack of any class: the class whose front came back first.
            let Some((_, index)) = (0..self.classes.len())
                .filter_map(|i| Some((self.classes[i].warm.front()?.0, i)))
                .min()
            else {
                break;
            };
            let class = &mut self.classes[index];
            let (_, stack) = class.warm.pop_front().expect("the class has a warm stack");
            self.warm_idle_bytes -= class.usable;
            going.push((index, stack));
        }
        going.sort_unstable_by_key(|(_, stack)| stack.limit());
        let mut run_start = 0;
        for i in 1..=going.len() {
            let run_goes_on = i < going.len() && going[i - 1].1.base() == going[i].1.limit();
            if run_goes_on {
                continue;
            }
            let run = &going[run_start..i];
            // SAFETY: every stack of the run is back in this pool (give_back's contract: its
            // coroutine has finished or been unwound, and the owner was checked), so nothing
            // runs on it or refers into it; the run's slots are adjacent (possibly in two
            // chunks the kernel placed back to back), so the range is exactly their union.
            let discarded = unsafe { GreenStack::discard_run(&run[0].1, &run[run.len() - 1].1) };
            // A failure (it cannot happen on a mapped private range) only means the pages
            // stay committed; the stacks are still perfectly reusable.
            debug_assert!(discarded.is_ok(), "MADV_DONTNEED failed: {discarded:?}");
            self.discard_calls += 1;
            run_start = i;
        }
        for (index, stack) in going {
            self.classes[index].cold.push(stack);
        }
    }

    /// A snapshot of the pool's bookkeeping.
    pub(crate) fn stats(&self) -> StackPoolStats {
        StackPoolStats {
            out: self.out,
            warm_idle: self.classes.iter().map(|c| c.warm.len()).sum(),
            spare_idle: self.classes.iter().map(|c| c.spare.len()).sum(),
            cold_idle: self.classes.iter().map(|c| c.cold.len()).sum(),
            warm_idle_bytes: self.warm_idle_bytes,
            discard_calls: self.discard_calls,
            slots_carved: self.arena.slots_carved(),
            reserved_bytes: self.arena.reserved_bytes(),
            chunks: self.arena.chunk_count(),
        }
    }

    /// The index of the class for `usable` bytes, creating it on first use.
    #[inline]
    fn class_index(&mut self, usable: usize) -> usize {
        match self.classes.iter().position(|c| c.usable == usable) {
            Some(index) => index,
            None => {
                self.classes.push(SizeClass {
                    usable,
                    warm: Ring::default(),
                    cold: Vec::new(),
                    spare: Vec::new(),
                    next_batch: 1,
                });
                self.classes.len() - 1
            }
        }
    }
}

#[cold]
#[inline(never)]
fn wrong_pool() -> ! {
    panic!("a green-thread stack was given back to a pool that did not hand it out");
}

impl Drop for StackPool {
    fn drop(&mut self) {
        if self.out == 0 {
            return; // The arena's drop unmaps every chunk.
        }
        // Some stacks were never given back: they may still be in use (or were dropped, which
        // we cannot tell apart). Leak their chunks rather than unmap memory in use; done before
        // the assertion below so that it holds in debug builds too.
        let idle = self.classes.iter().flat_map(|c| {
            c.warm
                .iter()
                .map(|(_, stack)| stack)
                .chain(c.cold.iter())
                .chain(c.spare.iter())
        });
        let leaked = self.arena.keep_chunks_with_stacks_out(idle);
        debug_assert!(
            std::thread::panicking(),
            "StackPool dropped with {} stack(s) not given back; leaking {leaked} arena chunk(s)",
            self.out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::page_size;
    use crate::stack::test_support::{is_readable, touch_pages};
    use crate::stack::{guard_install_supported, MIN_STACK_SIZE};

    const KIB: usize = 1024;

    /// Touches every usable page of `stack`, as a thread that used it all would.
    fn use_all_of(stack: &GreenStack) {
        // SAFETY: the usable part of a stack we hold and run nothing on.
        unsafe { touch_pages(stack.base() - stack.usable_size(), stack.usable_size()) };
    }

    #[test]
    fn a_returned_stack_is_handed_out_again_without_arena_growth() {
        let mut pool = StackPool::new(usize::MAX);
        let a = pool.take(16 * KIB).unwrap();
        let a_base = a.base();
        pool.give_back(a);
        let carved = pool.stats().slots_carved;
        let b = pool.take(16 * KIB).unwrap();
        assert_eq!(
            b.base(),
            a_base,
            "the idle stack of the same class is reused"
        );
        assert_eq!(pool.stats().slots_carved, carved, "no new slot was carved");
        pool.give_back(b);
    }

    #[test]
    fn sizes_round_to_pages_and_classes_do_not_mix() {
        let mut pool = StackPool::new(usize::MAX);
        let odd = pool.take(MIN_STACK_SIZE + 1).unwrap();
        assert_eq!(odd.usable_size(), MIN_STACK_SIZE + page_size());
        let small = pool.take(16 * KIB).unwrap();
        let (odd_base, small_base) = (odd.base(), small.base());
        pool.give_back(odd);
        pool.give_back(small);
        let big = pool.take(64 * KIB).unwrap();
        assert_ne!(big.base(), odd_base);
        assert_ne!(big.base(), small_base);
        assert_eq!(big.usable_size(), 64 * KIB);
        let small_again = pool.take(16 * KIB).unwrap();
        assert_eq!(small_again.base(), small_base);
        pool.give_back(big);
        pool.give_back(small_again);
        assert_eq!(pool.stats().out, 0);
    }

    #[test]
    fn bad_sizes_are_refused() {
        let mut pool = StackPool::new(0);
        assert_eq!(
            pool.take(100).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(pool.stats().slots_carved, 0);
    }

    #[test]
    fn returning_over_keep_bytes_gives_the_oldest_pages_back() {
        // keep_bytes 16 KiB, so the slack is 4 KiB: a second idle stack of 16 KiB is over.
        let mut pool = StackPool::new(16 * KIB);
        pool.batches = false;
        let first = pool.take(16 * KIB).unwrap();
        let second = pool.take(16 * KIB).unwrap();
        use_all_of(&first);
        use_all_of(&second);
        let (first_base, second_base) = (first.base(), second.base());

        pool.give_back(first); // within keep_bytes: stays warm
        pool.give_back(second); // over it: the oldest idle stack, `first`, goes cold
        let stats: crate::stack::StackPoolStats = pool.stats();
        assert_eq!((stats.warm_idle, stats.cold_idle), (1, 1));
        assert_eq!(stats.warm_idle_bytes, 16 * KIB);
        assert_eq!(stats.discard_calls, 1);

        // Warm stacks are preferred, and still hold their pages.
        let warm = pool.take(16 * KIB).unwrap();
        assert_eq!(warm.base(), second_base);
        assert_eq!(warm.resident_bytes().unwrap(), 16 * KIB);
        // The cold one comes next, with nothing resident, and still guarded.
        let cold = pool.take(16 * KIB).unwrap();
        assert_eq!(cold.base(), first_base);
        assert_eq!(cold.resident_bytes().unwrap(), 0);
        assert!(!is_readable(cold.guard_range().0));
        assert!(!is_readable(cold.guard_range().1 - 1));
        assert_eq!(pool.stats().warm_idle_bytes, 0);

        // A cold stack used again and returned within the budget becomes warm.
        use_all_of(&cold);
        pool.give_back(cold);
        assert_eq!(pool.stats().warm_idle, 1);
        pool.give_back(warm); // over the budget again: the older one is discarded
        let stats = pool.stats();
        assert_eq!((stats.warm_idle, stats.cold_idle), (1, 1));
        let again = pool.take(16 * KIB).unwrap();
        assert_eq!(
            again.base(),
            second_base,
            "the newest idle stack stayed warm"
        );
        pool.give_back(again);
    }

    /// Stacks returned over the budget go cold in one batch, one `madvise` per run of
    /// adjacent slots, and every guard in a run still faults afterwards.
    fn check_trim_discards_runs(guard: GuardStrategy) {
        // keep_bytes 64 KiB, slack 16 KiB: the sixth idle stack of 16 KiB goes over, and a
        // trim makes the two oldest cold.
        let mut pool = StackPool::with_guard_strategy(64 * KIB, guard);
        pool.batches = false;
        let stacks: Vec<_> = (0..6).map(|_| pool.take(16 * KIB).unwrap()).collect();
        for stack in &stacks {
            use_all_of(stack);
        }
        let (oldest, second) = (stacks[0].base(), stacks[1].base());
        assert_eq!(
            stacks[0].base(),
            stacks[1].limit(),
            "slots are carved adjacent"
        );
        for stack in stacks {
            pool.give_back(stack);
        }
        let stats = pool.stats();
        assert_eq!((stats.warm_idle, stats.cold_idle), (4, 2));
        assert_eq!(stats.discard_calls, 1, "two adjacent stacks, one call");
        // Drain the warm ones, then the two cold ones come out: empty and guarded.
        let warm: Vec<_> = (0..4).map(|_| pool.take(16 * KIB).unwrap()).collect();
        let cold: Vec<_> = (0..2).map(|_| pool.take(16 * KIB).unwrap()).collect();
        let mut cold_bases: Vec<_> = cold.iter().map(|s| s.base()).collect();
        cold_bases.sort_unstable();
        assert_eq!(cold_bases, [oldest, second]);
        for stack in &cold {
            assert_eq!(stack.resident_bytes().unwrap(), 0, "{guard:?}");
            assert!(!is_readable(stack.guard_range().0), "{guard:?}: guard lost");
            assert!(
                !is_readable(stack.guard_range().1 - 1),
                "{guard:?}: guard lost"
            );
        }
        for stack in warm.into_iter().chain(cold) {
            pool.give_back(stack);
        }
    }

    #[test]
    fn fresh_stacks_come_in_doubling_batches_guarded_with_their_top_page_populated() {
        let mut pool = StackPool::new(0);
        let batches = pool.arena.batches_pay();
        let stacks: Vec<_> = (0..100).map(|_| pool.take(16 * KIB).unwrap()).collect();
        let stats = pool.stats();
        if batches {
            // 1 + 2 + 4 + ... + 64 slots carved for 100 stacks.
            assert_eq!((stats.slots_carved, stats.spare_idle), (127, 27));
        } else {
            println!("note: no process_madvise(PIDFD_SELF) here: slots are carved one by one");
            assert_eq!((stats.slots_carved, stats.spare_idle), (100, 0));
        }
        for pair in stacks.windows(2) {
            assert_eq!(
                pair[0].base(),
                pair[1].limit(),
                "handed out in address order"
            );
        }
        let page = page_size();
        for stack in &stacks {
            assert!(!is_readable(stack.guard_range().0), "a guard is missing");
            assert!(
                !is_readable(stack.guard_range().1 - 1),
                "a guard is missing"
            );
            let top = stack.resident_bytes().unwrap();
            // The first stack of all is carved alone; batched ones have their top page.
            let expected = if batches && stack.base() != stacks[0].base() {
                page
            } else {
                0
            };
            assert_eq!(top, expected, "resident bytes of an unused stack");
        }
        // Batches grow per size class: another class starts again at one slot.
        let carved = pool.stats().slots_carved;
        let other = pool.take(64 * KIB).unwrap();
        assert_eq!(pool.stats().slots_carved, carved + 1);
        pool.give_back(other);
        for stack in stacks {
            pool.give_back(stack);
        }
    }

    #[test]
    fn the_mprotect_fallback_carves_one_slot_at_a_time() {
        let mut pool = StackPool::with_guard_strategy(0, GuardStrategy::ProtNone);
        let stacks: Vec<_> = (0..10).map(|_| pool.take(16 * KIB).unwrap()).collect();
        assert_eq!(pool.stats().slots_carved, 10);
        assert_eq!(pool.stats().spare_idle, 0);
        for stack in stacks {
            pool.give_back(stack);
        }
    }

    #[test]
    fn a_trim_takes_the_oldest_stacks_across_size_classes() {
        // keep_bytes 64 KiB, slack 16 KiB.
        let mut pool = StackPool::new(64 * KIB);
        pool.batches = false;
        let a = pool.take(16 * KIB).unwrap();
        let b = pool.take(32 * KIB).unwrap();
        let c = pool.take(32 * KIB).unwrap();
        let d = pool.take(16 * KIB).unwrap();
        let (a_base, b_base) = (a.base(), b.base());
        pool.give_back(a);
        pool.give_back(b);
        pool.give_back(c); // 80 KiB idle: at the limit, not over
        assert_eq!(pool.stats().cold_idle, 0);
        pool.give_back(d); // 96 KiB: the oldest, a (16 KiB) then b (32 KiB), go cold
        let stats = pool.stats();
        assert_eq!((stats.warm_idle, stats.cold_idle), (2, 2));
        assert_eq!(stats.warm_idle_bytes, 48 * KIB);
        // Warm first: c and d come back; then the cold ones are a and b.
        let warm = [pool.take(16 * KIB).unwrap(), pool.take(32 * KIB).unwrap()];
        let cold = [pool.take(16 * KIB).unwrap(), pool.take(32 * KIB).unwrap()];
        assert_eq!([cold[0].base(), cold[1].base()], [a_base, b_base]);
        for stack in warm.into_iter().chain(cold) {
            pool.give_back(stack);
        }
    }

    #[test]
    fn a_trim_discards_adjacent_stacks_in_one_call_and_keeps_guards() {
        if guard_install_supported() {
            check_trim_discards_runs(GuardStrategy::GuardMarker);
        }
        check_trim_discards_runs(GuardStrategy::ProtNone);
    }

    #[test]
    fn keep_bytes_zero_discards_every_returned_stack() {
        let mut pool = StackPool::new(0);
        let stack = pool.take(32 * KIB).unwrap();
        use_all_of(&stack);
        assert_eq!(stack.resident_bytes().unwrap(), 32 * KIB);
        pool.give_back(stack);
        let stack = pool.take(32 * KIB).unwrap();
        assert_eq!(stack.resident_bytes().unwrap(), 0);
        pool.give_back(stack);
    }

    #[test]
    #[should_panic(expected = "given back to a pool that did not hand it out")]
    fn a_stack_given_to_the_wrong_pool_is_refused() {
        let mut home = StackPool::new(0);
        let mut other = StackPool::new(0);
        let stack = home.take(16 * KIB).unwrap();
        // `home` is dropped during the unwinding with a stack out: it leaks, without asserting.
        other.give_back(stack);
    }

    #[test]
    fn dropping_a_pool_with_stacks_out_keeps_their_memory_mapped() {
        let mut pool = StackPool::new(0);
        let kept = pool.take(16 * KIB).unwrap();
        let returned = pool.take(16 * KIB).unwrap();
        pool.give_back(returned);
        let drop_pool = std::panic::AssertUnwindSafe(move || drop(pool));
        // Debug builds assert in drop (after leaking the chunk): catch that.
        let dropped = std::panic::catch_unwind(drop_pool);
        assert_eq!(dropped.is_err(), cfg!(debug_assertions));
        assert!(
            is_readable(kept.base() - 1),
            "memory of a stack still out was unmapped"
        );
        // SAFETY: `kept` was never given back, so its chunk leaked and is still ours to use.
        unsafe { touch_pages(kept.base() - kept.usable_size(), kept.usable_size()) };
    }

    #[test]
    fn the_mprotect_fallback_works() {
        let mut pool = StackPool::with_guard_strategy(0, GuardStrategy::ProtNone);
        let stacks: Vec<_> = (0..8).map(|_| pool.take(16 * KIB).unwrap()).collect();
        for stack in &stacks {
            let (start, end) = stack.guard_range();
            assert!(!is_readable(start));
            assert!(!is_readable(end - 1));
            assert!(is_readable(end));
            use_all_of(stack);
        }
        for stack in stacks {
            pool.give_back(stack);
        }
        // Reused cold (keep_bytes = 0): guards intact after MADV_DONTNEED.
        let stack = pool.take(16 * KIB).unwrap();
        assert!(!is_readable(stack.guard_range().0));
        assert_eq!(pool.stats().slots_carved, 8);
        pool.give_back(stack);
    }

    #[test]
    fn two_hundred_thousand_stacks_fit_under_the_mapping_limit() {
        const COUNT: usize = 200_000;
        if !guard_install_supported() {
            println!(
                "note: MADV_GUARD_INSTALL is not supported on this kernel; with mprotect guards \
                 every stack costs two mappings, so {COUNT} stacks cannot fit under the default \
                 vm.max_map_count. Test skipped."
            );
            return;
        }
        let maps_before = count_mappings();
        let mut pool = StackPool::new(0);
        let mut held = Vec::with_capacity(COUNT);
        for _ in 0..COUNT {
            held.push(pool.take(16 * KIB).unwrap());
        }
        let maps_held = count_mappings();
        let stats = pool.stats();
        assert_eq!(stats.out, COUNT);
        // Carved in batches: the last one's spares are idle.
        assert_eq!(stats.slots_carved, COUNT + stats.spare_idle);
        assert!(stats.spare_idle < MAX_BATCH);
        // 200,000 stacks of 16 KiB + guard: 62 chunks of 64 MiB. Other tests running at the
        // same time add mappings too, hence the margin; mprotect guards would add 400,000.
        assert!(
            maps_held < maps_before + 2_000,
            "mappings grew from {maps_before} to {maps_held}"
        );
        // The last and first stacks are guarded and usable.
        for stack in [&held[0], &held[COUNT - 1]] {
            assert!(!is_readable(stack.guard_range().0));
            assert!(is_readable(stack.base() - 1));
        }
        let carved = stats.slots_carved;
        for stack in held.drain(..) {
            pool.give_back(stack);
        }
        for _ in 0..COUNT {
            held.push(pool.take(16 * KIB).unwrap());
        }
        assert_eq!(pool.stats().slots_carved, carved, "all reused, none carved");
        for stack in held {
            pool.give_back(stack);
        }
    }

    fn count_mappings() -> usize {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count()
    }
}
