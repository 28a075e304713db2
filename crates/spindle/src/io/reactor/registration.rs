//! A descriptor registered with a worker's reactor for as long as its handle lives, so that
//! its waits register nothing: the readiness it last reported, and who waits for it.
//!
//! # Why
//!
//! A one-shot wait (`epoll.rs`) registers the descriptor before it parks and deregisters it
//! after: two `epoll_ctl` calls per wait. A keep-alive connection waits once per request, so
//! that was two system calls per request beside the `recv` and the `send` that do the work.
//! On io_uring, a one-shot wait is a poll request per wait, which the kernel arms (a look at
//! the socket, an entry on its wait queue) and tears down each time. A stream
//! (`net/stream_state.rs`) therefore registers its socket once, edge-triggered, for reading
//! and writing, the first time it must wait on a green thread, and keeps the registration
//! until the handle is dropped: an `EPOLLET` registration, in the worker's epoll instance,
//! or on the io_uring backend in an epoll instance the ring watches (`uring.rs` says why
//! not a multishot poll of the ring: its completions cannot tell urgent data apart).
//!
//! # The readiness word
//!
//! Edge-triggered, the kernel reports a descriptor when it *becomes* readable or writable
//! (new data, room freed, hang-up, error), not while it stays so. So the registration keeps
//! what was reported in a word: a *ready* bit per direction, and a *tick* that counts the
//! events delivered. The reactor, on an event, adds one tick and sets the bits the event
//! reports (one compare-and-swap loop), then wakes the waiter of each direction it set.
//!
//! A call on the stream first loads the word (`snapshot`). If the call then fails with
//! `EAGAIN`, the direction is not ready after all, and the bit must go; but an event may
//! have come in *between* the call and the clearing, reporting new data the call did not
//! see: clearing then would lose it, and the thread would wait for an edge that already
//! came. So `clear` removes the bit only if the tick is still the one of the snapshot taken
//! before the call: if an event came since, the bit stays and the caller tries again.
//!
//! The other way round, a call that succeeds although the word did not say ready (the last
//! try at a deadline, or a try after a one-shot wait) sets its bit as an event would, tick
//! and all (`mark_ready`), and wakes the direction's waiter. No edge may ever come for
//! it: a TCP socket takes a `send` while its `poll` does not yet call it writable (that
//! needs a third of the send buffer free), so without this every later write would wait
//! out its whole timeout before its last try. The added tick keeps a `clear` from a call
//! that failed before this success from removing the bit.
//!
//! A read that comes back short may clear its bit the same way, so that the next read
//! waits for the next edge instead of trying a `recv` that would fail; but only where a
//! short read proves the receive queue empty. Were data left, no edge would come for it,
//! and the reader would wait forever. So the caller says when it does: a TCP read into
//! less than 1 GiB (the kernel moves at most about 2 GiB per call), counting only the
//! first 1024 slices of a vectored read (std passes no more), with no urgent data seen:
//! a TCP read stops
//! short at the urgent mark too, so the registration asks for `EPOLLPRI` and keeps an
//! *urgent* bit, set for good by the first event reporting it, that turns the proof off.
//! Urgent data that came before the read reports `EPOLLPRI` in an event delivered either
//! before the snapshot (the bit is seen) or after it (the tick moved: no clear; or the
//! event comes after the clear and marks the data left after the mark ready). A Unix
//! stream's reads also stop at the boundaries of passed descriptors and credentials,
//! which the reader cannot see coming: a short read on one proves nothing.
//!
//! A hang-up (`EPOLLHUP`) and the peer's shutdown (`EPOLLRDHUP`) are kept in bits of their
//! own that nothing clears: they may come in the very event whose data a call took, and no
//! edge follows them, while every later call must see them (tokio keeps its "closed"
//! readiness the same way). An error (`EPOLLERR`) only marks both directions ready: the
//! next call reports a pending error, and an error that is not the socket's end (the error
//! queue of timestamps or `IP_RECVERR`) must not make calls that would block spin. Should a
//! call in a closed direction still fail with `EAGAIN`, the caller waits level-triggered
//! (a one-shot wait) rather than spin on the sticky bit.
//!
//! # Waiting
//!
//! A thread whose direction is not ready puts its `Thread` in that direction's slot (under
//! a spin lock), then loads the word again, and parks until the bit is set (or its deadline
//! passes). The reactor sets the bit first and looks at the slot after (taking the same
//! lock): either it finds the thread there and unparks it, or it took the lock before the
//! waiter did, and the waiter, taking the lock after, sees the bit. The reactor takes the
//! thread out of the slot as it unparks it, so a woken thread parks only once per entry:
//! it goes back to its call, and if it must wait again (another thread's call took the
//! readiness first) it enters the slot again; parking again outside the slot would miss
//! the next event. A guard empties the slot whenever the wait ends, however it ends. One
//! thread waits per direction: a second one (two threads reading through one `&TcpStream`)
//! finds the slot taken and makes a one-shot wait instead.
//!
//! # Lifetime
//!
//! The registration is an `Arc`. Besides the handle's reference, the epoll instance holds
//! one, as the event's data. The handle, when dropped, deregisters the descriptor while it
//! is still open (the handle drops its registration before its socket): `EPOLL_CTL_DEL`,
//! then it gives the epoll's reference to the reactor, which drops it at its next look at
//! the instance's events (on io_uring, at the end of its next poll when there is nothing
//! to look at). That is after
//! any event of this registration that an `epoll_wait` had already returned has been
//! handled: events are handled right after the `epoll_wait` that returned them, by the one
//! kernel thread driving the worker, and no `epoll_wait` returns a registration after
//! `EPOLL_CTL_DEL` returned.
//!
//! A registration serves waits on its own worker only: another worker (many-to-many), or a
//! green thread of another runtime, may wait on a reactor that nobody polls. Those waits,
//! and kernel threads, wait as before.
//!
//! The `loom_models` check the tick: an event between a failed call and its `clear` is
//! never lost.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::time::Instant;

use crate::io::Interest;
use crate::loom_shim::AtomicUsize;

/// The ready bit of reading.
const READ_READY: usize = 1;
/// The ready bit of writing.
const WRITE_READY: usize = 2;
/// Sticky: the peer shut its side down, or the socket hung up; reads never wait again.
const READ_CLOSED: usize = 4;
/// Sticky: the socket hung up; writes never wait again.
const WRITE_CLOSED: usize = 8;
/// Sticky: TCP urgent data came; a short read does not prove the queue empty.
const URGENT: usize = 16;
/// Every bit below the tick.
const BITS: usize = 31;
/// One event, in the tick above the bits.
const TICK: usize = 32;

/// The bit a call clears.
fn bit(interest: Interest) -> usize {
    match interest {
        Interest::Read => READ_READY,
        Interest::Write => WRITE_READY,
    }
}

/// The sticky bit of `interest`'s direction.
fn closed_bit(interest: Interest) -> usize {
    match interest {
        Interest::Read => READ_CLOSED,
        Interest::Write => WRITE_CLOSED,
    }
}

/// The bits that let a call go ahead.
fn ready_bits(interest: Interest) -> usize {
    bit(interest) | closed_bit(interest)
}

/// What a registration asks the kernel to report, as `POLL*` bits (the `EPOLL*` bits share
/// their values): either direction, the peer's shutdown, urgent data. Errors and hang-ups
/// are reported anyway.
pub(crate) const POLL_BITS: u32 =
    (libc::POLLIN | libc::POLLOUT | libc::POLLPRI | libc::POLLRDHUP) as u32;

/// What one event reported.
#[derive(Clone, Copy, Default)]
pub(crate) struct Event {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer shut its side down, or the socket hung up.
    pub(crate) read_closed: bool,
    /// The socket hung up.
    pub(crate) write_closed: bool,
    /// TCP urgent data is queued (`EPOLLPRI`).
    pub(crate) urgent: bool,
}

impl Event {
    /// The event an epoll event or a poll completion reports with these `EPOLL*` / `POLL*`
    /// bits (the two share their values). An error is not an end (module docs): it makes
    /// both calls try, and they report it.
    pub(crate) fn from_poll_bits(bits: u32) -> Event {
        let has = |flag: libc::c_short| bits & flag as u32 != 0;
        let hung_up = has(libc::POLLHUP);
        let failed = has(libc::POLLERR);
        let urgent = has(libc::POLLPRI);
        Event {
            readable: failed || urgent || has(libc::POLLIN),
            writable: failed || has(libc::POLLOUT),
            read_closed: hung_up || has(libc::POLLRDHUP),
            write_closed: hung_up,
            urgent,
        }
    }

    fn bits(self) -> usize {
        let mut bits = 0;
        for (on, bit) in [
            (self.readable, READ_READY),
            (self.writable, WRITE_READY),
            (self.read_closed, READ_CLOSED),
            (self.write_closed, WRITE_CLOSED),
            (self.urgent, URGENT),
        ] {
            if on {
                bits |= bit;
            }
        }
        bits
    }
}

/// The readiness a registered descriptor last reported, and its waiters (module docs).
pub(crate) struct Registration {
    state: AtomicUsize,
    reader: crate::sync::spin_lock::SpinLock<Option<crate::Thread>>,
    writer: crate::sync::spin_lock::SpinLock<Option<crate::Thread>>,
}

/// The readiness word as loaded before a call; see [`Registration::clear`].
#[derive(Clone, Copy)]
pub(crate) struct Snapshot(usize);

impl Snapshot {
    /// Whether `interest` was ready.
    pub(crate) fn is_ready(self, interest: Interest) -> bool {
        self.0 & ready_bits(interest) != 0
    }

    /// Whether `interest`'s direction was marked closed for good.
    pub(crate) fn is_closed(self, interest: Interest) -> bool {
        self.0 & closed_bit(interest) != 0
    }

    /// Whether a read that comes back short, on a socket whose reads stop short only when
    /// the queue is empty, proves the queue empty (no urgent mark may stop it first).
    pub(crate) fn short_read_proves_empty(self) -> bool {
        self.0 & URGENT == 0
    }
}

impl Registration {
    /// A registration nothing was reported for yet.
    pub(crate) fn new() -> Registration {
        Registration {
            state: AtomicUsize::new(0),
            reader: crate::sync::spin_lock::SpinLock::new(None),
            writer: crate::sync::spin_lock::SpinLock::new(None),
        }
    }

    /// The readiness now; take it before the call it is for.
    #[inline]
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot(self.state.load(Acquire))
    }

    /// A call for `interest` found the descriptor not ready (or emptied it): forget its
    /// readiness, unless an event came since `seen` was taken.
    pub(crate) fn clear(&self, seen: Snapshot, interest: Interest) {
        let tick = seen.0 & !BITS;
        let mut current = self.state.load(Relaxed);
        while current & !BITS == tick && current & bit(interest) != 0 {
            match self.state.compare_exchange_weak(
                current,
                current & !bit(interest),
                AcqRel,
                Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// The reactor: `event` came. Returns the bits it set.
    fn mark(&self, event: Event) -> usize {
        let bits = event.bits();
        let mut current = self.state.load(Relaxed);
        loop {
            let next = current.wrapping_add(TICK) | bits;
            match self
                .state
                .compare_exchange_weak(current, next, AcqRel, Relaxed)
            {
                Ok(_) => return bits,
                Err(now) => current = now,
            }
        }
    }
}

mod waiting {
    use super::*;
    use crate::park::{self, WaitReason};
    use crate::sched::context;
    use crate::sync::spin_lock::SpinLock;
    use crate::Thread;
    use std::os::fd::{AsRawFd, BorrowedFd};

    impl Registration {
        fn slot(&self, interest: Interest) -> &SpinLock<Option<Thread>> {
            match interest {
                Interest::Read => &self.reader,
                Interest::Write => &self.writer,
            }
        }

        /// The reactor (only the kernel thread driving the worker): an event reported
        /// this readiness; wakes the waiters of what became ready.
        pub(crate) fn deliver(&self, event: Event) {
            let bits = self.mark(event);
            for interest in [Interest::Read, Interest::Write] {
                if bits & ready_bits(interest) != 0 {
                    // After the bit is set (module docs, "Waiting").
                    let waiter = self.slot(interest).lock().take();
                    if let Some(thread) = waiter {
                        thread.unpark();
                    }
                }
            }
        }

        /// A call for `interest` succeeded although the registration did not say ready:
        /// mark it ready as an event would, and wake its waiter (module docs, "The
        /// readiness word"). From a thread holding the handle, on any kernel thread: the
        /// bit is set before the slot is looked at, as [`Registration::deliver`] does.
        pub(crate) fn mark_ready(&self, interest: Interest) {
            self.deliver(Event {
                readable: interest == Interest::Read,
                writable: interest == Interest::Write,
                read_closed: false,
                write_closed: false,
                urgent: false,
            });
        }

        /// Parks the calling green thread (of the registration's worker) once, in
        /// `interest`'s slot, unless `interest` is ready: `Some(false)` if `deadline` passed
        /// (never before it) with `interest` not ready, `Some(true)` otherwise (ready, or
        /// woken: the caller looks again, and waits again through this call, back in the
        /// slot, if another thread took the readiness meanwhile); `None` without waiting if
        /// another thread waits for `interest` here (the caller then waits another way).
        pub(crate) fn wait(
            &self,
            interest: Interest,
            reason: WaitReason,
            fd: BorrowedFd<'_>,
            deadline: Option<Instant>,
        ) -> Option<bool> {
            let ready = || self.snapshot().is_ready(interest);
            if ready() {
                return Some(true);
            }
            let me = context::current_thread();
            let id = me.id();
            {
                let mut slot = self.slot(interest).lock();
                if slot.is_some() {
                    return None;
                }
                *slot = Some(me);
            }
            let _leave = LeaveSlot {
                registration: self,
                interest,
                id,
            };
            // After entering the slot (module docs, "Waiting").
            if ready() {
                return Some(true);
            }
            let _shown = park::ShowWaitFd::new(fd.as_raw_fd());
            if !super::super::park_once(reason, deadline) {
                return Some(false);
            }
            Some(ready() || deadline.is_none_or(|d| Instant::now() < d))
        }
    }

    /// Empties a waiter's slot when its wait ends (if the reactor did not already).
    struct LeaveSlot<'a> {
        registration: &'a Registration,
        interest: Interest,
        id: crate::ThreadId,
    }

    impl Drop for LeaveSlot<'_> {
        fn drop(&mut self) {
            let mut slot = self.registration.slot(self.interest).lock();
            if slot.as_ref().is_some_and(|t| t.id() == self.id) {
                // Dropped after unlocking: the last reference to a thread is never freed
                // under the spin lock.
                let mine = slot.take();
                drop(slot);
                drop(mine);
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Run with `RUSTFLAGS="--cfg loom" cargo test --release -p spindle --lib loom_models`.
    //!
    //! A reader tries a call (here: reads a flag standing for the socket's receive queue),
    //! which fails, and clears its readiness with the snapshot it took before; meanwhile
    //! the "kernel" puts data in the queue and the reactor marks the registration ready.
    //! The reader then waits (spinning on loom yields) for the ready bit: if a clear could
    //! erase that event, it would spin forever, which loom reports.

    use super::{Interest, Registration};
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use std::sync::atomic::Ordering::{Acquire, Release};

    #[test]
    fn an_event_between_a_failed_call_and_its_clear_is_kept() {
        loom::model(|| {
            let shared = Arc::new((Registration::new(), AtomicBool::new(false)));
            let kernel = {
                let shared = shared.clone();
                loom::thread::spawn(move || {
                    shared.1.store(true, Release);
                    shared.0.mark(super::Event {
                        readable: true,
                        ..Default::default()
                    });
                })
            };
            let (registration, data) = (&shared.0, &shared.1);
            loop {
                let seen = registration.snapshot();
                if data.load(Acquire) {
                    break;
                }
                registration.clear(seen, Interest::Read);
                while !registration.snapshot().is_ready(Interest::Read) {
                    loom::thread::yield_now();
                }
            }
            kernel.join().unwrap();
        });
    }
}
