//! [`Ring`]: a FIFO of slots whose number is a power of two, for the queues that are pushed
//! and popped once per message or per switch: a channel's buffer (`channel/chan.rs`), a
//! worker's run queues (`sched/worker.rs`) and its stack pool's warm stacks
//! (`stack/pool.rs`).
//!
//! std's `VecDeque` keeps a head index and a length, and wraps each physical index with a
//! compare against its capacity. Here the head and the tail are counters that run freely
//! (wrapping at `usize::MAX`), the length is their difference, and a slot's index is a
//! counter masked with the number of slots less one: a push or a pop is a compare, a mask,
//! a move and an increment. Counted with cachegrind (`HACKING.md`, "Counting
//! instructions"): on `spindle-lab bench sync`'s bounded(128) channel between two
//! many-to-one green threads, 8 instructions fewer per message than with `VecDeque`; on
//! `bench switch`, 9 fewer per yield (172 -> 163). The price is memory: a bounded channel's
//! ring rounds its capacity up to a power of two (at most `PREALLOCATE_MAX` slots up
//! front).
//!
//! The ring grows by doubling when a push finds it full, moving the items so that they
//! keep their order; it never shrinks.

use std::mem::MaybeUninit;

/// A growable FIFO ring (module docs).
pub(crate) struct Ring<T> {
    /// The slots; their number is zero or a power of two. Those of the counters from
    /// `head` (included) to `tail` (excluded), masked, hold items; the others are
    /// uninitialized.
    slots: Box<[MaybeUninit<T>]>,
    /// Pops so far (wrapping).
    head: usize,
    /// Pushes so far (wrapping).
    tail: usize,
    /// The number of slots less one, which masks a counter into a slot's index (wrapping:
    /// `usize::MAX` while there are no slots, when no index is ever taken). Kept beside
    /// the counters so that a push or a pop does not derive it from the slots' length.
    mask: usize,
}

impl<T> Ring<T> {
    /// An empty ring with room for `capacity` items (rounded up to a power of two)
    /// before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Ring<T> {
        let slots = if capacity == 0 {
            0
        } else {
            capacity.next_power_of_two()
        };
        Ring {
            slots: Box::new_uninit_slice(slots),
            head: 0,
            tail: 0,
            mask: slots.wrapping_sub(1),
        }
    }

    /// Items held.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.tail.wrapping_sub(self.head)
    }

    /// Whether it holds no item.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.tail == self.head
    }

    /// Items it can hold before it grows.
    #[inline]
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Adds `item` at the back.
    #[inline]
    pub(crate) fn push_back(&mut self, item: T) {
        if self.len() == self.slots.len() {
            self.grow();
        }
        // SAFETY: after `grow`, fewer items are held than there are slots.
        unsafe { self.push_back_into_free_slot(item) };
    }

    /// Adds `item` at the back, in a slot the caller knows is free: for a path that has
    /// already compared the length with a bound no larger than [`Ring::slots`].
    ///
    /// # Safety
    ///
    /// `self.len() < self.slots()`.
    #[inline]
    pub(crate) unsafe fn push_back_into_free_slot(&mut self, item: T) {
        debug_assert!(self.len() < self.slots.len());
        let index = self.tail & self.mask;
        // SAFETY: fewer items are held than there are slots (the caller's promise), so
        // there is at least one slot (a power of two) and the mask (`slots.len() - 1`, kept
        // so by `with_capacity` and `grow`) keeps `index` below `slots.len()`; the slot is
        // free, since the items take the slots before `tail`.
        unsafe { self.slots.get_unchecked_mut(index) }.write(item);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Takes the item at the front, if any.
    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        // SAFETY: it is not empty.
        Some(unsafe { self.pop_front_held() })
    }

    /// Takes the item at the front, which the caller knows is there: for a path that has
    /// already found the length above some bound (any bound is at least 0).
    ///
    /// # Safety
    ///
    /// `!self.is_empty()`.
    #[inline]
    pub(crate) unsafe fn pop_front_held(&mut self) -> T {
        debug_assert!(!self.is_empty());
        let index = self.head & self.mask;
        self.head = self.head.wrapping_add(1);
        // SAFETY: the ring is not empty (the caller's promise), so it has slots (a power of
        // two) and `index` is below their number; the slot at `head` holds the oldest item,
        // which this read moves out: advancing `head` above made the slot free again.
        unsafe { self.slots.get_unchecked(index).assume_init_read() }
    }

    /// The item at the front (the oldest), if any.
    #[inline]
    pub(crate) fn front(&self) -> Option<&T> {
        self.iter().next()
    }

    /// Takes the item at the back (the newest), if any.
    #[inline]
    pub(crate) fn pop_back(&mut self) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        self.tail = self.tail.wrapping_sub(1);
        let index = self.tail & self.mask;
        // SAFETY: the ring was not empty, so it has slots (a power of two) and `index` is
        // below their number; the slot before the old `tail` holds the newest item,
        // which this read moves out: moving `tail` back made the slot free again.
        Some(unsafe { self.slots.get_unchecked(index).assume_init_read() })
    }

    /// The items from front to back.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        (0..self.len()).map(move |i| {
            let index = self.head.wrapping_add(i) & self.mask;
            // SAFETY: the `len` slots from `head` hold items (`len > 0` implies slots,
            // so the mask keeps `index` in bounds), and `&self` keeps them there.
            unsafe { self.slots.get_unchecked(index).assume_init_ref() }
        })
    }

    /// Takes every item, front to back (those the iterator does not reach stay).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.pop_front())
    }

    /// Doubles the slots (or makes the first), moving the items to the front of the
    /// new ones in order.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let len = self.len();
        let slots = self
            .slots
            .len()
            .checked_mul(2)
            .expect("spindle: a ring cannot hold more items (its slots would pass 2^63)")
            .max(1);
        let mut grown = Box::new_uninit_slice(slots);
        let old = std::mem::replace(&mut self.slots, Box::new([]));
        let mask = old.len().wrapping_sub(1);
        for (i, slot) in grown.iter_mut().take(len).enumerate() {
            let from = self.head.wrapping_add(i) & mask;
            // SAFETY: the `len` slots from `head` hold items (`len > 0` implies `old`
            // has slots); each is read once, into the new ring, and the old slots are
            // then dropped as `MaybeUninit`, which drops nothing.
            slot.write(unsafe { old[from].assume_init_read() });
        }
        self.slots = grown;
        self.mask = slots - 1;
        self.head = 0;
        self.tail = len;
    }
}

impl<T> Extend<T> for Ring<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for item in items {
            self.push_back(item);
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T> Default for Ring<T> {
    fn default() -> Ring<T> {
        Ring::with_capacity(0)
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        /// Drops the items left if dropping one panics (as `VecDeque` does; a second
        /// panic aborts).
        struct Rest<'a, T>(&'a mut Ring<T>);
        impl<T> Drop for Rest<'_, T> {
            fn drop(&mut self) {
                while self.0.pop_front().is_some() {}
            }
        }
        while let Some(item) = self.pop_front() {
            let rest = Rest(self);
            drop(item);
            std::mem::forget(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;
    use std::collections::VecDeque;
    use std::rc::Rc;

    #[test]
    fn keeps_fifo_order_across_wraps_and_growth() {
        // Against VecDeque, with pushes and pops interleaved so that the counters wrap
        // the slots many times and the ring grows while wrapped.
        let mut ring = Ring::with_capacity(3);
        let mut model = VecDeque::new();
        let mut next = 0u64;
        for round in 0..2_000usize {
            for _ in 0..(round % 7) {
                ring.push_back(next);
                model.push_back(next);
                next += 1;
            }
            for _ in 0..(round % 5) {
                assert_eq!(ring.pop_front(), model.pop_front());
            }
            assert_eq!(ring.len(), model.len());
            assert_eq!(ring.is_empty(), model.is_empty());
        }
        while let Some(v) = model.pop_front() {
            assert_eq!(ring.pop_front(), Some(v));
        }
        assert_eq!(ring.pop_front(), None);
    }

    #[test]
    fn counters_wrapping_at_usize_max_keep_working() {
        let mut ring = Ring::with_capacity(4);
        ring.head = usize::MAX - 2;
        ring.tail = usize::MAX - 2;
        for v in 0..10u32 {
            ring.push_back(v);
        }
        assert_eq!(ring.len(), 10);
        assert_eq!((0..10).map(|_| ring.pop_front().unwrap()).sum::<u32>(), 45);
        assert!(ring.is_empty());
        // `tail` back across zero: pop_back at the wrap.
        ring.head = usize::MAX - 1;
        ring.tail = usize::MAX - 1;
        for v in 0..4u32 {
            ring.push_back(v);
        }
        assert_eq!(ring.tail, 2);
        assert_eq!(
            (0..4).map(|_| ring.pop_back().unwrap()).collect::<Vec<_>>(),
            [3, 2, 1, 0]
        );
        assert!(ring.is_empty());
    }

    #[test]
    fn drops_what_it_holds_exactly_once() {
        let token = Rc::new(());
        let mut ring = Ring::default();
        for _ in 0..100 {
            ring.push_back(token.clone());
        }
        for _ in 0..30 {
            drop(ring.pop_front());
        }
        assert_eq!(Rc::strong_count(&token), 71);
        drop(ring);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    #[test]
    fn a_message_whose_drop_panics_does_not_leak_the_rest() {
        struct Bomb {
            armed: bool,
            _token: Rc<()>,
        }
        impl Drop for Bomb {
            fn drop(&mut self) {
                if self.armed {
                    panic!("bomb");
                }
            }
        }
        let token = Rc::new(());
        let mut ring = Ring::with_capacity(4);
        for i in 0..10 {
            ring.push_back(Bomb {
                armed: i == 3,
                _token: token.clone(),
            });
        }
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(ring)));
        assert!(dropped.is_err(), "the bomb's panic comes through");
        assert_eq!(Rc::strong_count(&token), 1, "every message was dropped");
    }

    #[test]
    fn pops_from_both_ends_iterates_and_drains_in_order() {
        // Against VecDeque, across wraps: pop_back and iter as the scheduler uses them.
        let mut ring = Ring::with_capacity(4);
        let mut model = VecDeque::new();
        for round in 0..500u32 {
            for v in 0..(round % 6) {
                ring.push_back(round * 10 + v);
                model.push_back(round * 10 + v);
            }
            if round % 3 == 0 {
                assert_eq!(ring.pop_back(), model.pop_back());
            } else {
                assert_eq!(ring.pop_front(), model.pop_front());
            }
            assert!(ring.iter().eq(model.iter()));
        }
        let drained: Vec<u32> = ring.drain().collect();
        assert_eq!(drained, model.drain(..).collect::<Vec<_>>());
        assert!(ring.is_empty());
        assert_eq!(ring.pop_back(), None);
    }

    #[test]
    fn zero_sized_messages() {
        let mut ring = Ring::with_capacity(0);
        for _ in 0..1000 {
            ring.push_back(());
        }
        assert_eq!(ring.len(), 1000);
        assert_eq!(ring.pop_front(), Some(()));
        assert_eq!(ring.len(), 999);
    }
}
