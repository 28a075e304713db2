//! A parked sender's or receiver's queue entry: a waiter and a message slot.
//!
//! Who may touch the slot when is the table in the module doc of [`crate::channel`].

use std::cell::UnsafeCell;

use crate::sync::wait_list::{Linked, Links};
use crate::sync::waiter::{Waiter, FIRST_OUTCOME};

/// Outcome: a receiver's slot now holds its message; a sender's message was taken.
pub(crate) const SERVED: u8 = FIRST_OUTCOME;
/// Outcome: the other side of the channel is gone.
pub(crate) const DISCONNECTED: u8 = FIRST_OUTCOME + 1;

/// The entry a blocked channel operation links into a wait list; lives on its stack.
pub(crate) struct SlotEntry<T> {
    links: Links<SlotEntry<T>>,
    pub(crate) waiter: Waiter,
    slot: UnsafeCell<Option<T>>,
}

// SAFETY: `links` is a field, returned every time.
unsafe impl<T> Linked for SlotEntry<T> {
    fn links(&self) -> &Links<SlotEntry<T>> {
        &self.links
    }
}

impl<T> SlotEntry<T> {
    /// An entry for the calling thread, its slot holding `message` (a sender's) or nothing.
    pub(crate) fn new(message: Option<T>) -> SlotEntry<T> {
        SlotEntry {
            links: Links::new(),
            waiter: Waiter::for_current_thread(),
            slot: UnsafeCell::new(message),
        }
    }

    /// Puts a message in the slot of a waiting receiver.
    ///
    /// # Safety
    ///
    /// `this` is live and the caller owns its slot: it holds the channel lock and the entry
    /// is `WAITING` (or the caller is the entry's owner and no waker can reach it).
    pub(crate) unsafe fn put(this: *const SlotEntry<T>, message: T) {
        // SAFETY: the caller owns the slot (contract), so no other access overlaps.
        unsafe { *(*this).slot.get() = Some(message) };
    }

    /// Takes the message out of the slot, if any.
    ///
    /// # Safety
    ///
    /// As [`SlotEntry::put`].
    pub(crate) unsafe fn take(this: *const SlotEntry<T>) -> Option<T> {
        // SAFETY: the caller owns the slot (contract), so no other access overlaps.
        unsafe { (*(*this).slot.get()).take() }
    }
}
