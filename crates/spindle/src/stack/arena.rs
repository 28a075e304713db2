//! The arena: large anonymous mappings ("chunks") from which stack slots are carved.
//!
//! A chunk is one `mmap` of [`CHUNK_BYTES`]; slots (a guard page, then the usable stack) are
//! cut from it bump-style, the next at the next free address, and the slot's guard is installed
//! right then, once for the slot's lifetime. A stack too large to share a chunk sensibly (more
//! than a quarter of one) gets a chunk of its own, and the shared chunk stays current. Slots
//! are carved one at a time or in batches ([`Arena::carve_batch`]); a batch also populates the
//! top page of each stack, and that is all that is ever written here. Chunks are unmapped only
//! when the arena is dropped, and only those none of whose stacks is still out (see
//! [`Arena::keep_chunks_with_stacks_out`]).

use std::ffi::c_void;
use std::io;

use rustix::mm::{Advice, MapFlags, ProtFlags};

use super::guard::GuardStrategy;
use super::out_of_memory::{reservation_error, Step};
use super::{page_size, self_madvise, GreenStack};

/// How much address space one shared chunk reserves: 3,276 slots of 16 KiB + guard.
pub(super) const CHUNK_BYTES: usize = 64 * 1024 * 1024;

/// Slots larger than this get a chunk of their own.
const DEDICATED_SLOT_BYTES: usize = CHUNK_BYTES / 4;

/// One mapping of the arena.
#[derive(Debug)]
struct Chunk {
    start: usize,
    len: usize,
    /// How many slots have been carved from it.
    slots: usize,
}

/// Address space for stacks, owned by one [`StackPool`](super::StackPool).
#[derive(Debug)]
pub(super) struct Arena {
    guard: GuardStrategy,
    /// Stamped into every stack carved here, so a stack can be checked to come back home.
    owner: u64,
    chunks: Vec<Chunk>,
    /// Index in `chunks` of the shared chunk being carved, if any.
    current: Option<usize>,
    /// Next free address in the current chunk.
    next: usize,
    /// End of the current chunk.
    end: usize,
}

impl Arena {
    /// An empty arena; reserves nothing until the first [`carve`](Arena::carve).
    pub(super) fn new(guard: GuardStrategy, owner: u64) -> Arena {
        Arena {
            guard,
            owner,
            chunks: Vec::new(),
            current: None,
            next: 0,
            end: 0,
        }
    }

    /// The id stamped into the stacks of this arena: its pool's.
    pub(super) fn owner(&self) -> u64 {
        self.owner
    }

    /// The guard strategy of this arena.
    pub(super) fn guard_strategy(&self) -> GuardStrategy {
        self.guard
    }

    /// Bytes of address space reserved (not memory committed).
    pub(super) fn reserved_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.len).sum()
    }

    /// How many slots have been carved, over the arena's life.
    pub(super) fn slots_carved(&self) -> usize {
        self.chunks.iter().map(|c| c.slots).sum()
    }

    /// How many chunks are mapped.
    pub(super) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Carves a fresh slot with `usable` bytes above its guard page; `usable` is a multiple of
    /// the page size, as [`check_stack_size`](super::check_stack_size) returns it.
    ///
    /// Costs one `madvise` or `mprotect` for the guard, plus an `mmap` and an `madvise` when a
    /// new chunk is needed.
    pub(super) fn carve(&mut self, usable: usize) -> io::Result<GreenStack> {
        let page = page_size();
        debug_assert_eq!(usable % page, 0);
        let slot = page + usable;

        let (chunk, start) = match self.current {
            Some(index) if self.end - self.next >= slot => (index, self.next),
            _ if slot > DEDICATED_SLOT_BYTES => {
                let index = self.map_chunk(slot, usable)?;
                (index, self.chunks[index].start)
            }
            _ => (self.new_current_chunk(usable)?, self.next),
        };

        // SAFETY: `[start, start + page)` is the first page of a slot not carved before, inside
        // a private anonymous chunk this arena mapped and owns; nothing has been stored there.
        if let Err(err) = unsafe { self.guard.install(start, page) } {
            // The slot stays uncarved; a later attempt may reuse it.
            return Err(reservation_error(
                usable,
                Step::Guard(self.guard),
                err,
                self,
            ));
        }
        self.chunks[chunk].slots += 1;
        if Some(chunk) == self.current {
            self.next = start + slot;
        }
        // SAFETY: the slot `[start, start + slot)` lies in a chunk this arena owns and keeps
        // mapped while any of its stacks is out; its first page now faults on every access, the
        // rest is fresh read-write anonymous memory that was never handed out before; all three
        // addresses are page aligned; `usable >= MIN_STACK_SIZE` as the pool checks sizes.
        Ok(unsafe { GreenStack::from_slot(start, start + page, start + slot, self.owner) })
    }

    /// Maps a new shared chunk and makes it the one being carved; returns its index.
    fn new_current_chunk(&mut self, usable: usize) -> io::Result<usize> {
        let index = self.map_chunk(CHUNK_BYTES, usable)?;
        self.current = Some(index);
        self.next = self.chunks[index].start;
        self.end = self.next + CHUNK_BYTES;
        Ok(index)
    }

    /// Whether carving several slots at once is cheaper than one at a time here: the guards
    /// are markers and `process_madvise` can install them, and populate the stacks' top
    /// pages, in batches (`self_madvise.rs`).
    pub(super) fn batches_pay(&self) -> bool {
        self.guard == GuardStrategy::GuardMarker && self_madvise::supported()
    }

    /// Carves up to `want` fresh slots with `usable` bytes each, at least one, in one batch
    /// from the shared chunk (fewer when it has room for fewer; one through
    /// [`carve`](Arena::carve) for a slot that gets a chunk of its own): their guards in
    /// one call, and the top page of each stack, where its coroutine writes its first
    /// frame, populated in another, so that no page fault follows. A failed populate only
    /// leaves the pages to be faulted in later.
    pub(super) fn carve_batch(
        &mut self,
        usable: usize,
        want: usize,
    ) -> io::Result<Vec<GreenStack>> {
        let page = page_size();
        debug_assert_eq!(usable % page, 0);
        let slot = page + usable;
        if want <= 1 || slot > DEDICATED_SLOT_BYTES || !self.batches_pay() {
            return Ok(vec![self.carve(usable)?]);
        }
        let chunk = match self.current {
            Some(index) if self.end - self.next >= slot => index,
            _ => self.new_current_chunk(usable)?,
        };
        let count = want
            .min((self.end - self.next) / slot)
            .min(self_madvise::MAX_RANGES);
        let starts: Vec<usize> = (0..count).map(|i| self.next + i * slot).collect();
        // SAFETY: each start is the first page of a slot not carved before, inside a private
        // anonymous chunk this arena mapped and owns; nothing has been stored there.
        let guarded = match unsafe { self.guard.install_many(&starts, page) } {
            Ok(guarded) => guarded,
            Err(err) => {
                return Err(reservation_error(
                    usable,
                    Step::Guard(self.guard),
                    err,
                    self,
                ))
            }
        };
        let starts = &starts[..guarded];
        self.chunks[chunk].slots += guarded;
        self.next += guarded * slot;
        let tops: Vec<(usize, usize)> = starts.iter().map(|&s| (s + slot - page, page)).collect();
        // SAFETY: each range is the top page of one of the slots just carved, private
        // anonymous memory of ours; populating it keeps its (zero) contents.
        let _ = unsafe { self_madvise::advise(&tops, self_madvise::MADV_POPULATE_WRITE) };
        Ok(starts
            .iter()
            .map(|&start| {
                // SAFETY: as in `carve`: the slot lies in a chunk this arena owns and keeps
                // mapped while any of its stacks is out, its first page now faults on every
                // access, the rest is read-write memory never handed out before, the
                // addresses are page aligned, and `usable >= MIN_STACK_SIZE`.
                unsafe { GreenStack::from_slot(start, start + page, start + slot, self.owner) }
            })
            .collect())
    }

    /// Maps a new chunk of `len` bytes and returns its index; `usable` names the stack size
    /// being asked for, for the error message.
    fn map_chunk(&mut self, len: usize, usable: usize) -> io::Result<usize> {
        self.chunks.try_reserve(1).map_err(|_| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                "cannot reserve a green-thread stack: no memory for the arena's chunk list",
            )
        })?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing; it aliases
        // nothing. MAP_NORESERVE: pages are committed (and accounted) only when touched.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::STACK,
            )
        }
        .map_err(|err| reservation_error(usable, Step::MapChunk(len), err.into(), self))?;
        // Transparent huge pages would turn the first touch of a small stack into 2 MiB of
        // memory. MAP_STACK implies VM_NOHUGEPAGE since Linux 6.7; this covers older kernels.
        // A kernel without THP rejects the advice (EINVAL), which is fine.
        // SAFETY: advice on our own fresh mapping; NOHUGEPAGE changes no contents.
        let _ = unsafe { rustix::mm::madvise(ptr, len, Advice::LinuxNoHugepage) };
        self.chunks.push(Chunk {
            start: ptr as usize,
            len,
            slots: 0,
        });
        Ok(self.chunks.len() - 1)
    }

    /// Called before the arena is dropped while some of its stacks are still out: removes from
    /// the arena (so leaks) every chunk that has a stack not among `idle`, so that dropping the
    /// arena unmaps only chunks whose every stack came back. Returns how many chunks leak.
    pub(super) fn keep_chunks_with_stacks_out<'a>(
        &mut self,
        idle: impl Iterator<Item = &'a GreenStack>,
    ) -> usize {
        let mut by_address: Vec<(usize, usize)> = self
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (c.start, i))
            .collect();
        by_address.sort_unstable();
        let mut idle_per_chunk = vec![0usize; self.chunks.len()];
        for stack in idle {
            let pos = by_address.partition_point(|&(start, _)| start <= stack.limit());
            if let Some(&(_, i)) = pos.checked_sub(1).and_then(|p| by_address.get(p)) {
                idle_per_chunk[i] += 1;
            }
        }
        let before = self.chunks.len();
        let mut index = 0;
        self.chunks.retain(|chunk| {
            let all_back = idle_per_chunk[index] == chunk.slots;
            index += 1;
            all_back
        });
        self.current = None;
        before - self.chunks.len()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for chunk in &self.chunks {
            // SAFETY: the chunk was mapped by this arena, and every stack carved from it is back
            // in the pool being dropped (chunks with stacks out were removed by
            // `keep_chunks_with_stacks_out`), so nothing runs on it or refers into it.
            let unmapped = unsafe { rustix::mm::munmap(chunk.start as *mut c_void, chunk.len) };
            debug_assert!(
                unmapped.is_ok(),
                "munmap of an arena chunk failed: {unmapped:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_support::is_readable;

    const KIB: usize = 1024;

    #[test]
    fn slots_are_carved_back_to_back_with_the_guard_below() {
        let page = page_size();
        let mut arena = Arena::new(GuardStrategy::detected(), 1);
        let a = arena.carve(16 * KIB).unwrap();
        let b = arena.carve(16 * KIB).unwrap();
        let c = arena.carve(32 * KIB).unwrap();
        assert_eq!(arena.chunk_count(), 1);
        assert_eq!(arena.slots_carved(), 3);
        assert_eq!(b.limit(), a.base());
        assert_eq!(c.limit(), b.base());
        assert_eq!(c.usable_size(), 32 * KIB);
        for s in [&a, &b, &c] {
            assert_eq!(s.guard_range(), (s.limit(), s.limit() + page));
            assert!(!is_readable(s.limit()));
            assert!(!is_readable(s.guard_range().1 - 1));
            assert!(is_readable(s.guard_range().1));
            assert!(is_readable(s.base() - 1));
        }
        // Not given back anywhere: the arena alone owns them; forgetting them is fine here.
    }

    #[test]
    fn a_full_chunk_is_followed_by_a_new_one() {
        let page = page_size();
        let usable = 16 * KIB;
        let per_chunk = CHUNK_BYTES / (page + usable);
        let mut arena = Arena::new(GuardStrategy::detected(), 1);
        let stacks: Vec<_> = (0..per_chunk + 1)
            .map(|_| arena.carve(usable).unwrap())
            .collect();
        assert_eq!(arena.chunk_count(), 2);
        assert_eq!(arena.reserved_bytes(), 2 * CHUNK_BYTES);
        let last = stacks.last().unwrap();
        assert!(!is_readable(last.limit()));
        assert!(is_readable(last.base() - 1));
    }

    #[test]
    fn stacks_larger_than_the_room_left_get_their_own_chunk() {
        let mut arena = Arena::new(GuardStrategy::detected(), 1);
        let small = arena.carve(16 * KIB).unwrap();
        // Fits in what is left of the shared chunk: carved from it.
        let medium = arena.carve(20 * 1024 * KIB).unwrap();
        assert_eq!(medium.limit(), small.base());
        // Larger than a chunk: a chunk of its own, and the shared chunk stays current.
        let big = arena.carve(100 * 1024 * KIB).unwrap();
        let small2 = arena.carve(16 * KIB).unwrap();
        assert_eq!(arena.chunk_count(), 2);
        assert_eq!(big.usable_size(), 100 * 1024 * KIB);
        assert_eq!(small2.limit(), medium.base());
        assert!(!is_readable(big.limit()));
        assert!(is_readable(big.guard_range().1));
        assert!(is_readable(big.base() - 1));
    }

    #[test]
    fn chunks_with_stacks_out_are_kept_mapped() {
        let mut arena = Arena::new(GuardStrategy::detected(), 1);
        let a = arena.carve(16 * KIB).unwrap();
        let big = arena.carve(100 * 1024 * KIB).unwrap();
        // `a` is back (idle), `big` is still out: only big's chunk must stay.
        assert_eq!(arena.keep_chunks_with_stacks_out([&a].into_iter()), 1);
        assert_eq!(arena.chunk_count(), 1);
        assert_eq!(arena.chunks[0].start, a.limit());
        drop(arena);
        // (Whether a's chunk is gone cannot be checked reliably: another test may map the
        // freed range at once.)
        assert!(
            is_readable(big.base() - 1),
            "the chunk with a stack out stays mapped"
        );
        assert!(is_readable(big.guard_range().1));
    }
}
