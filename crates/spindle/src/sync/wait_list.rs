//! An intrusive, doubly linked FIFO of waiting threads.
//!
//! A blocked thread's queue entry lives in the thread's own stack frame: it cannot leave
//! that frame before it has been taken off the queue (by a waker, or by itself under the
//! lock on timeout or cancellation), so the queue can point at it without an allocation.
//! Links are `Cell`s and are touched only by whoever holds the lock that protects the list
//! the node is in; the list itself holds raw pointers and is never shared without that lock.
//! Removal is O(1), which a timed-out waiter in the middle of the queue needs.
//!
//! ## Entries linked before a fork
//!
//! In a fork child, the entries the parent's blocked threads linked are copied along with
//! the list, but their threads do not exist (fork.rs, "Objects the parent's threads wait
//! on"). So each node records the fork generation ([`crate::fork::generation`]) it was
//! linked in, and the list keeps one invariant: **all its nodes were linked in the same
//! generation.** A node of an earlier generation is *stale*, and then so is every node.
//!
//! Every method that takes or looks at nodes (`pop_front`, `take_all`, `append`, the
//! `push_*`, `is_empty`, `has_one`, `any`, `for_each`) first looks at the head: if it is
//! stale, the list is treated as empty; the `&mut` methods also forget the stale nodes
//! (one reset of `head` and `tail`). Nothing is written to a stale node, which belongs to a
//! thread that is not there, and nothing is read from it but its generation. The pushes
//! therefore never link a node next to a stale one, which keeps the invariant. `remove` has
//! no such look: its node is linked, and a linked node's owner is alive, so the node, and
//! with it the list, is of this generation.
//!
//! A primitive whose state word summarises its queue (a "someone is queued" bit) calls
//! [`WaitList::forget_inherited`] first in its critical section, which says whether
//! stale nodes were forgotten, so that it can forget the summary with them.
//!
//! The cost in a process that never forks: in the slow paths, one load of the head's
//! generation and one of the process's, compared, per operation on a non-empty list, and
//! per push a load of the process's generation, a store of it, and a load of whether the
//! fork handlers are registered (the first push registers them: `fork::register_handlers`).
//! The lists of the uncontended paths are empty, and an empty list reads no node's
//! generation.

use std::cell::Cell;
use std::ptr;

use crate::fork;

/// The links a node embeds to be put in a [`WaitList`].
pub(crate) struct Links<N> {
    prev: Cell<*const N>,
    next: Cell<*const N>,
    /// The fork generation the node was last linked in (module docs).
    generation: Cell<u32>,
}

impl<N> Links<N> {
    /// Unlinked links.
    pub(crate) const fn new() -> Links<N> {
        Links {
            prev: Cell::new(ptr::null()),
            next: Cell::new(ptr::null()),
            generation: Cell::new(0),
        }
    }
}

/// A node type that embeds [`Links`].
///
/// # Safety
///
/// `links` must return the same `Links` (a field of `self`) every time it is called on the
/// same node.
pub(crate) unsafe trait Linked: Sized {
    /// The node's links.
    fn links(&self) -> &Links<Self>;
}

/// A FIFO of nodes linked through their embedded [`Links`].
///
/// Every method that dereferences a node relies on the contract of the `push_*` methods:
/// a node stays valid, unmoved, and in no other list until it is popped or removed.
pub(crate) struct WaitList<N> {
    head: *const N,
    tail: *const N,
}

impl<N: Linked> WaitList<N> {
    /// An empty list.
    pub(crate) const fn new() -> WaitList<N> {
        WaitList {
            head: ptr::null(),
            tail: ptr::null(),
        }
    }

    /// Whether the list holds no node of this generation (stale nodes, linked before a
    /// fork, do not count: module docs).
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null() || self.is_inherited()
    }

    /// Whether the list holds exactly one node of this generation.
    pub(crate) fn has_one(&self) -> bool {
        !self.is_empty() && self.head == self.tail
    }

    /// Whether the list's nodes were linked before a fork (false for an empty list).
    #[inline]
    fn is_inherited(&self) -> bool {
        // SAFETY: `head`, if not null, is a node of this list, valid by the push contract
        // (in a fork child, a stale node's memory is the parent's, copied: readable).
        match unsafe { self.head.as_ref() } {
            Some(head) => head.links().generation.get() != fork::generation(),
            None => false,
        }
    }

    /// In a fork child, forgets the nodes linked before the fork, which belong to threads
    /// of the parent (module docs): the list becomes empty and no node is touched. Returns
    /// whether there were any. Every `&mut` method below does this first; a primitive
    /// whose state summarises its queue calls it itself to learn that it must forget the
    /// summary too.
    #[inline]
    pub(crate) fn forget_inherited(&mut self) -> bool {
        if self.is_inherited() {
            *self = WaitList::new();
            true
        } else {
            false
        }
    }

    /// Appends `node`.
    ///
    /// # Safety
    ///
    /// `node` is valid, in no list, and stays valid and unmoved until it is popped or
    /// removed from this list (or a list it is moved to with [`WaitList::append`]).
    pub(crate) unsafe fn push_back(&mut self, node: *const N) {
        // The stamp below means something in a fork child only if the fork ran our handler
        // (once per process; a relaxed load after that).
        fork::register_handlers();
        self.forget_inherited();
        // SAFETY: the caller guarantees `node` is valid; `tail`, if any, is a node of this
        // list and so valid by the contract of the push that put it here.
        unsafe {
            let links = (*node).links();
            links.generation.set(fork::generation());
            links.prev.set(self.tail);
            links.next.set(ptr::null());
            match self.tail.as_ref() {
                Some(tail) => tail.links().next.set(node),
                None => self.head = node,
            }
        }
        self.tail = node;
    }

    /// Prepends `node`.
    ///
    /// # Safety
    ///
    /// As [`WaitList::push_back`].
    pub(crate) unsafe fn push_front(&mut self, node: *const N) {
        fork::register_handlers();
        self.forget_inherited();
        // SAFETY: as in `push_back`, with `head` in place of `tail`.
        unsafe {
            let links = (*node).links();
            links.generation.set(fork::generation());
            links.prev.set(ptr::null());
            links.next.set(self.head);
            match self.head.as_ref() {
                Some(head) => head.links().prev.set(node),
                None => self.tail = node,
            }
        }
        self.head = node;
    }

    /// Takes the first node off the list (`None` if it holds only stale nodes, which it
    /// forgets).
    pub(crate) fn pop_front(&mut self) -> Option<*const N> {
        self.forget_inherited();
        let node = self.head;
        // SAFETY: `head`, if not null, is a node of this list, valid by the push contract;
        // so is its successor.
        unsafe {
            let links = node.as_ref()?.links();
            self.head = links.next.get();
            match self.head.as_ref() {
                Some(next) => next.links().prev.set(ptr::null()),
                None => self.tail = ptr::null(),
            }
            links.next.set(ptr::null());
        }
        Some(node)
    }

    /// Unlinks `node` from the middle, front or back of the list.
    ///
    /// # Safety
    ///
    /// `node` is in this list.
    pub(crate) unsafe fn remove(&mut self, node: *const N) {
        // SAFETY: `node` is in this list (caller), and so are its neighbours: all valid by
        // the push contract.
        unsafe {
            let links = (*node).links();
            debug_assert_eq!(
                links.generation.get(),
                fork::generation(),
                "a node linked before a fork is being removed by a thread of the child"
            );
            let (prev, next) = (links.prev.get(), links.next.get());
            match prev.as_ref() {
                Some(p) => p.links().next.set(next),
                None => self.head = next,
            }
            match next.as_ref() {
                Some(n) => n.links().prev.set(prev),
                None => self.tail = prev,
            }
            links.prev.set(ptr::null());
            links.next.set(ptr::null());
        }
    }

    /// Moves every node of `other` to the back of this list, in order (stale nodes of
    /// either list are forgotten first).
    pub(crate) fn append(&mut self, other: &mut WaitList<N>) {
        self.forget_inherited();
        if other.forget_inherited() || other.head.is_null() {
            return;
        }
        // SAFETY: both lists' end nodes are valid by the push contract, which carries over
        // to this list for `other`'s nodes.
        unsafe {
            match self.tail.as_ref() {
                Some(tail) => {
                    tail.links().next.set(other.head);
                    (*other.head).links().prev.set(self.tail);
                }
                None => self.head = other.head,
            }
        }
        self.tail = other.tail;
        *other = WaitList::new();
    }

    /// Takes every node, leaving this list empty (stale nodes are forgotten, not taken).
    pub(crate) fn take_all(&mut self) -> WaitList<N> {
        self.forget_inherited();
        std::mem::replace(self, WaitList::new())
    }

    /// Calls `f` on every node, front to back.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&N)) {
        let mut p = if self.is_inherited() {
            ptr::null()
        } else {
            self.head
        };
        // SAFETY: every node reached from `head` is in this list, valid by the push contract.
        while let Some(node) = unsafe { p.as_ref() } {
            f(node);
            p = node.links().next.get();
        }
    }

    /// Whether `pred` holds for some node, trying them from the front and stopping at the
    /// first that it holds for.
    pub(crate) fn any(&self, mut pred: impl FnMut(&N) -> bool) -> bool {
        let mut p = if self.is_inherited() {
            ptr::null()
        } else {
            self.head
        };
        // SAFETY: as in `for_each`.
        while let Some(node) = unsafe { p.as_ref() } {
            if pred(node) {
                return true;
            }
            p = node.links().next.get();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::{Linked, Links, WaitList};

    struct Node {
        links: Links<Node>,
        id: u32,
    }

    // SAFETY: `links` is always the same field.
    unsafe impl Linked for Node {
        fn links(&self) -> &Links<Node> {
            &self.links
        }
    }

    fn ids(list: &WaitList<Node>) -> Vec<u32> {
        let mut v = Vec::new();
        list.for_each(|n| v.push(n.id));
        v
    }

    #[test]
    fn push_pop_remove_append() {
        let nodes: Vec<Node> = (0..6)
            .map(|id| Node {
                links: Links::new(),
                id,
            })
            .collect();
        let mut a = WaitList::new();
        let mut b = WaitList::new();
        // SAFETY: the nodes outlive both lists and do not move (the Vec is not touched).
        unsafe {
            a.push_back(&nodes[1]);
            a.push_back(&nodes[2]);
            a.push_front(&nodes[0]);
            b.push_back(&nodes[3]);
            b.push_back(&nodes[4]);
            b.push_back(&nodes[5]);
        }
        assert_eq!(ids(&a), [0, 1, 2]);
        // SAFETY: node 1 is in `a`.
        unsafe { a.remove(&nodes[1]) };
        assert_eq!(ids(&a), [0, 2]);
        a.append(&mut b);
        assert!(b.is_empty());
        assert_eq!(ids(&a), [0, 2, 3, 4, 5]);
        // SAFETY: node 5 (the tail) is in `a`.
        unsafe { a.remove(&nodes[5]) };
        // SAFETY: node 0 (the head) is in `a`.
        unsafe { a.remove(&nodes[0]) };
        assert_eq!(ids(&a), [2, 3, 4]);
        let mut tried = Vec::new();
        assert!(a.any(|n| {
            tried.push(n.id);
            n.id == 3
        }));
        assert_eq!(tried, [2, 3], "`any` stops at the first match");
        assert!(!a.any(|n| n.id == 0));
        let popped: Vec<u32> = std::iter::from_fn(|| a.pop_front())
            // SAFETY: popped nodes point into `nodes`, still alive.
            .map(|p| unsafe { (*p).id })
            .collect();
        assert_eq!(popped, [2, 3, 4]);
        assert!(a.is_empty() && !a.has_one());
    }

    /// Nodes linked in an earlier fork generation (here: stamped so by hand) are forgotten
    /// as a whole at the list's first use, and never handed out.
    #[test]
    fn nodes_linked_before_a_fork_are_forgotten() {
        let nodes: Vec<Node> = (0..4)
            .map(|id| Node {
                links: Links::new(),
                id,
            })
            .collect();
        let parent = crate::fork::generation().wrapping_sub(1);
        let mut a = WaitList::new();
        let mut b = WaitList::new();
        // SAFETY: the nodes outlive both lists and do not move (the Vec is not touched).
        unsafe {
            a.push_back(&nodes[0]);
            a.push_back(&nodes[1]);
            b.push_back(&nodes[2]);
        }
        // As a fork would leave them: every node of `a` and `b` was linked by the parent.
        for n in &nodes[..3] {
            n.links.generation.set(parent);
        }
        assert!(a.is_empty() && !b.has_one());
        assert!(!a.any(|_| true));
        assert_eq!(ids(&a), []);
        // A push forgets the stale nodes first: the list never mixes generations.
        // SAFETY: as above.
        unsafe { a.push_front(&nodes[3]) };
        assert_eq!(ids(&a), [3]);
        // Appending a stale list appends nothing.
        a.append(&mut b);
        assert_eq!(ids(&a), [3]);
        assert_eq!(a.pop_front(), Some(&raw const nodes[3]));
        assert_eq!(a.pop_front(), None);
        // A stale list: `pop_front` and `take_all` find nothing, `forget_inherited` says so.
        // SAFETY: as above; node 3 is in no list any more.
        unsafe { b.push_back(&nodes[3]) };
        nodes[3].links.generation.set(parent);
        let mut c = WaitList::new();
        // SAFETY: node 0 is in no list of this generation (`a` forgot it).
        unsafe { c.push_back(&nodes[0]) };
        nodes[0].links.generation.set(parent);
        assert_eq!(b.pop_front(), None);
        assert!(b.take_all().is_empty());
        assert!(c.forget_inherited());
        assert!(!c.forget_inherited());
    }
}
