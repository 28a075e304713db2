//! The queue entry of the primitives that need nothing but a waiter and a little data
//! (`RwLock`, `Barrier`, `Semaphore`, `WaitGroup`, `Once`), and the batch that wakes a
//! group of them.
//!
//! An entry lives on its blocked thread's stack, linked into a primitive's [`WaitList`]
//! under that primitive's spin lock; its [`Waiter`] carries the hand-shake of
//! `sync/waiter.rs`. `data` is what the waker needs to know about the request (read or
//! write, how many permits), written before the entry is queued and never changed while
//! it is, so a waker holding the queue lock may read it.
//!
//! ## Waking several threads without holding the lock while unparking
//!
//! A [`WakeBatch`] follows the hand-shake's steps 2 and 3 for a whole group: under the
//! queue lock the waker unlinks each entry and [`WakeBatch::push`]es it, which calls
//! `start_wake` (`WAITING -> NOTIFYING`) and links it into the batch; after unlocking,
//! [`WakeBatch::wake_all`] pops each entry and calls `finish_wake` on it. The batch reuses
//! the entries' own links, so it allocates nothing. Popping an entry touches that entry and
//! its successor's `prev` link, both still `NOTIFYING` (their owners cannot leave, and do
//! not touch links while `NOTIFYING`); an entry is finished only after it has been popped,
//! and never touched again.

use super::wait_list::{Linked, Links, WaitList};
use super::waiter::Waiter;

/// A blocked thread's queue entry: links, the waiter, and what it asks for.
pub(crate) struct WaitEntry<D> {
    links: Links<WaitEntry<D>>,
    /// The hand-shake with the waker.
    pub(crate) waiter: Waiter,
    /// What the request is (read or write, a number of permits, ...).
    pub(crate) data: D,
}

// SAFETY: `links` is a field, returned every time.
unsafe impl<D> Linked for WaitEntry<D> {
    fn links(&self) -> &Links<WaitEntry<D>> {
        &self.links
    }
}

impl<D> WaitEntry<D> {
    /// An entry for the calling thread, in no list, `WAITING`.
    pub(crate) fn for_current_thread(data: D) -> WaitEntry<D> {
        WaitEntry {
            links: Links::new(),
            waiter: Waiter::for_current_thread(),
            data,
        }
    }
}

/// Entries unlinked under a queue lock whose wake-ups are to be finished after it.
pub(crate) struct WakeBatch<D> {
    list: WaitList<WaitEntry<D>>,
}

impl<D> WakeBatch<D> {
    /// An empty batch.
    pub(crate) const fn new() -> WakeBatch<D> {
        WakeBatch {
            list: WaitList::new(),
        }
    }

    /// Starts the wake-up of `entry` and keeps it for [`WakeBatch::wake_all`].
    ///
    /// # Safety
    ///
    /// The caller holds the lock of the queue `entry` was in, has just unlinked it under
    /// that lock, and `entry` was `WAITING` (it was queued and nobody else unlinked it).
    pub(crate) unsafe fn push(&mut self, entry: *const WaitEntry<D>) {
        // SAFETY: `entry` was queued, so it is live (push contract of `WaitList`), and its
        // owner waits until it gets an outcome, which only `wake_all` gives it: it stays
        // valid and unmoved while it is in the batch. We unlinked it under the lock, so we
        // may start its wake-up (sync/waiter.rs, step 2).
        unsafe {
            (*entry).waiter.start_wake();
            self.list.push_back(entry);
        }
    }

    /// Takes every entry of `list` (unlinked from the queue by the caller, under its lock)
    /// into the batch, starting their wake-ups.
    ///
    /// # Safety
    ///
    /// As [`WakeBatch::push`], for every entry of `list`.
    pub(crate) unsafe fn push_all(&mut self, list: &mut WaitList<WaitEntry<D>>) {
        while let Some(entry) = list.pop_front() {
            // SAFETY: the caller's contract, entry by entry.
            unsafe { self.push(entry) };
        }
    }

    /// Finishes every wake-up with `outcome`. Call it after releasing the queue lock.
    pub(crate) fn wake_all(mut self, outcome: u8) {
        while let Some(entry) = self.list.pop_front() {
            // SAFETY: `push` started this wake-up; we finish it once, and do not touch the
            // entry afterwards (it was popped before, so the next pop does not reach it).
            unsafe { Waiter::finish_wake(&raw const (*entry).waiter, outcome) };
        }
    }
}
