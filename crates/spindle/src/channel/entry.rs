//! A waiting sender's or receiver's queue entry: who waits, and a message slot.
//!
//! Who may touch the slot when is the table in the module doc of [`crate::channel`]. An
//! entry belongs either to a thread blocked in one `send` or `recv` (it carries that
//! thread's own [`Waiter`]), or to one operation of a `select` (it points at the
//! selection's shared [`Selection`], which every entry of that select shares; see
//! `channel/select.rs`). Wakers treat both alike through [`SlotEntry::claim`] and
//! [`SlotEntry::finish`].

use std::cell::{Cell, UnsafeCell};
use std::ptr;

use super::selection::Selection;
use crate::sync::wait_list::{Linked, Links};
use crate::sync::waiter::{Waiter, FIRST_OUTCOME};

/// Outcome: a receiver's slot now holds its message; a sender's message was taken.
pub(crate) const SERVED: u8 = FIRST_OUTCOME;
/// Outcome: the other side of the channel is gone.
pub(crate) const DISCONNECTED: u8 = FIRST_OUTCOME + 1;
/// Outcome for an observer (`Select::ready`): the operation may be ready now; nothing was
/// done to it.
pub(crate) const READY: u8 = FIRST_OUTCOME + 2;

/// The entry a waiting channel operation links into a wait list; lives on its owner's
/// stack (or, for `Select`, in the builder's box) and does not move while linked.
pub(crate) struct SlotEntry<T> {
    links: Links<SlotEntry<T>>,
    owner: Owner,
    slot: UnsafeCell<Option<T>>,
}

/// Who waits on an entry.
enum Owner {
    /// A thread blocked in one `send` or `recv`: the entry is its own hand-shake.
    Single(Waiter),
    /// One operation of a select.
    Select(SelectLink),
}

/// A select operation's link to its selection. The cells are written by the selecting
/// thread only while the entry is in no list (before it links it, under the channel lock
/// whose release publishes them), and read by wakers under that lock; `linked` is read and
/// written only under the lock of the channel the entry is registered with.
struct SelectLink {
    selection: Cell<*const Selection>,
    index: Cell<usize>,
    observe: Cell<bool>,
    linked: Cell<bool>,
}

/// What [`SlotEntry::claim`] found.
pub(crate) enum Claim {
    /// The entry is the claimer's to serve: fill or empty its slot, then finish it.
    Serve,
    /// An observer: finish it (it will be told `READY`), but do not serve it.
    Observer,
    /// A select entry whose selection is already decided (another operation won, or its
    /// thread withdrew): skip it. It has been marked unlinked.
    Stale,
}

// SAFETY: `links` is a field, returned every time.
unsafe impl<T> Linked for SlotEntry<T> {
    fn links(&self) -> &Links<SlotEntry<T>> {
        &self.links
    }
}

impl<T> SlotEntry<T> {
    /// An entry for the calling thread's own blocking operation, its slot holding
    /// `message` (a sender's) or nothing.
    pub(crate) fn new(message: Option<T>) -> SlotEntry<T> {
        SlotEntry {
            links: Links::new(),
            owner: Owner::Single(Waiter::for_current_thread()),
            slot: UnsafeCell::new(message),
        }
    }

    /// An entry for one operation of a select, not yet bound to a selection.
    pub(crate) fn for_select(message: Option<T>) -> SlotEntry<T> {
        SlotEntry {
            links: Links::new(),
            owner: Owner::Select(SelectLink {
                selection: Cell::new(ptr::null()),
                index: Cell::new(0),
                observe: Cell::new(false),
                linked: Cell::new(false),
            }),
            slot: UnsafeCell::new(message),
        }
    }

    /// The waiter of a `send`'s or `recv`'s own entry.
    pub(crate) fn waiter(&self) -> &Waiter {
        match &self.owner {
            Owner::Single(w) => w,
            Owner::Select(_) => unreachable!("a select entry has no waiter of its own"),
        }
    }

    fn select_link(&self) -> &SelectLink {
        match &self.owner {
            Owner::Select(l) => l,
            Owner::Single(_) => unreachable!("not a select entry"),
        }
    }

    /// Binds a select entry to `selection` as its operation `index` (an observer if
    /// `observe`). Call it while the entry is in no list, before linking it.
    pub(crate) fn bind(&self, selection: &Selection, index: usize, observe: bool) {
        let l = self.select_link();
        debug_assert!(!l.linked.get());
        l.selection.set(selection);
        l.index.set(index);
        l.observe.set(observe);
    }

    /// Records that a select entry has been linked into (`true`) or unlinked from
    /// (`false`) its channel's list. Call it under that channel's lock.
    pub(crate) fn set_linked(&self, linked: bool) {
        self.select_link().linked.set(linked);
    }

    /// Whether a select entry is in its channel's list. Call it under that channel's lock.
    pub(crate) fn is_linked(&self) -> bool {
        self.select_link().linked.get()
    }

    /// The selection a select entry belongs to (null for a thread's own entry).
    pub(crate) fn selection(&self) -> *const Selection {
        match &self.owner {
            Owner::Select(l) => l.selection.get(),
            Owner::Single(_) => ptr::null(),
        }
    }

    /// Whether this is an observer's entry.
    pub(crate) fn is_observer(&self) -> bool {
        matches!(&self.owner, Owner::Select(l) if l.observe.get())
    }

    /// Whether a waker could serve this entry now: a thread's own entry always can (it is
    /// `WAITING` while linked); a select entry can if it is not an observer, does not
    /// belong to `own` (a selection never matches itself) and its selection is undecided.
    /// Call it under the lock of the list the entry is in. The selection's state is read
    /// relaxed: this is a readiness test, and a stale "undecided" only makes the caller
    /// retry (see `channel/select.rs`, "Registration").
    pub(crate) fn is_servable_by(&self, own: *const Selection) -> bool {
        match &self.owner {
            Owner::Single(_) => true,
            Owner::Select(l) => {
                let sel = l.selection.get();
                // SAFETY: the entry is linked (caller holds the lock of its list), so its
                // selection is live: the selecting thread unregisters every entry under
                // this lock before its selection goes away.
                !l.observe.get() && sel != own && unsafe { (*sel).is_waiting() }
            }
        }
    }

    /// A waker, under the channel lock, has just unlinked `this` from its list: claims it
    /// (starts its wake-up) if it can still be served.
    ///
    /// # Safety
    ///
    /// `this` was linked in a list of the channel whose lock the caller holds, and the
    /// caller just unlinked it in this critical section. After `Serve` or `Observer` the
    /// caller must call [`SlotEntry::finish`] exactly once (after unlocking); after `Stale`
    /// it must not touch the entry again.
    pub(crate) unsafe fn claim(this: *const SlotEntry<T>) -> Claim {
        // SAFETY: `this` was linked until now (contract), so it is live; its owner cannot
        // leave before it is unlinked under this lock and, if claimed, finished.
        let entry = unsafe { &*this };
        match &entry.owner {
            Owner::Single(w) => {
                w.start_wake();
                Claim::Serve
            }
            Owner::Select(l) => {
                l.linked.set(false);
                // SAFETY: the selection outlives its linked entries (see `is_servable_by`).
                let sel = unsafe { &*l.selection.get() };
                if !sel.try_claim(l.index.get()) {
                    Claim::Stale
                } else if l.observe.get() {
                    Claim::Observer
                } else {
                    Claim::Serve
                }
            }
        }
    }

    /// Finishes a wake-up that [`SlotEntry::claim`] started: unparks the owner and hands
    /// it `outcome` (an observer is always told `READY`).
    ///
    /// # Safety
    ///
    /// `this` was claimed (`Serve` or `Observer`) and not finished yet. After this call the
    /// caller must not touch it: its owner may have returned and popped its frame.
    pub(crate) unsafe fn finish(this: *const SlotEntry<T>, outcome: u8) {
        // SAFETY: a claimed entry stays live until it is finished (its owner waits for the
        // outcome); everything needed is read before the finishing store, which is the last
        // access.
        unsafe {
            match &(*this).owner {
                Owner::Single(w) => Waiter::finish_wake(w, outcome),
                Owner::Select(l) => {
                    let outcome = if l.observe.get() { READY } else { outcome };
                    Selection::finish(l.selection.get(), l.index.get(), outcome);
                }
            }
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

    /// Whether the slot holds a message.
    ///
    /// # Safety
    ///
    /// As [`SlotEntry::put`].
    pub(crate) unsafe fn holds_message(this: *const SlotEntry<T>) -> bool {
        // SAFETY: the caller owns the slot (contract), so no write overlaps this read.
        unsafe { (*(*this).slot.get()).is_some() }
    }
}
