//! An intrusive, doubly linked FIFO of waiting threads.
//!
//! A blocked thread's queue entry lives in the thread's own stack frame: it cannot leave
//! that frame before it has been taken off the queue (by a waker, or by itself under the
//! lock on timeout or cancellation), so the queue can point at it without an allocation.
//! Links are `Cell`s and are touched only by whoever holds the lock that protects the list
//! the node is in; the list itself holds raw pointers and is never shared without that lock.
//! Removal is O(1), which a timed-out waiter in the middle of the queue needs.

use std::cell::Cell;
use std::ptr;

/// The links a node embeds to be put in a [`WaitList`].
pub(crate) struct Links<N> {
    prev: Cell<*const N>,
    next: Cell<*const N>,
}

impl<N> Links<N> {
    /// Unlinked links.
    pub(crate) const fn new() -> Links<N> {
        Links {
            prev: Cell::new(ptr::null()),
            next: Cell::new(ptr::null()),
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

    /// Whether the list is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Whether the list holds exactly one node.
    pub(crate) fn has_one(&self) -> bool {
        !self.head.is_null() && self.head == self.tail
    }

    /// Appends `node`.
    ///
    /// # Safety
    ///
    /// `node` is valid, in no list, and stays valid and unmoved until it is popped or
    /// removed from this list (or a list it is moved to with [`WaitList::append`]).
    pub(crate) unsafe fn push_back(&mut self, node: *const N) {
        // SAFETY: the caller guarantees `node` is valid; `tail`, if any, is a node of this
        // list and so valid by the contract of the push that put it here.
        unsafe {
            let links = (*node).links();
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
        // SAFETY: as in `push_back`, with `head` in place of `tail`.
        unsafe {
            let links = (*node).links();
            links.prev.set(ptr::null());
            links.next.set(self.head);
            match self.head.as_ref() {
                Some(head) => head.links().prev.set(node),
                None => self.tail = node,
            }
        }
        self.head = node;
    }

    /// Takes the first node off the list.
    pub(crate) fn pop_front(&mut self) -> Option<*const N> {
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

    /// Moves every node of `other` to the back of this list, in order.
    pub(crate) fn append(&mut self, other: &mut WaitList<N>) {
        if other.is_empty() {
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

    /// Takes every node, leaving this list empty.
    pub(crate) fn take_all(&mut self) -> WaitList<N> {
        std::mem::replace(self, WaitList::new())
    }

    /// Calls `f` on every node, front to back.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&N)) {
        let mut p = self.head;
        // SAFETY: every node reached from `head` is in this list, valid by the push contract.
        while let Some(node) = unsafe { p.as_ref() } {
            f(node);
            p = node.links().next.get();
        }
    }

    /// Whether `pred` holds for some node, trying them from the front and stopping at the
    /// first that it holds for.
    pub(crate) fn any(&self, mut pred: impl FnMut(&N) -> bool) -> bool {
        let mut p = self.head;
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
}
