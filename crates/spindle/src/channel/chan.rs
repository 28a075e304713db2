//! The shared channel: its locked state and the send, receive and disconnect operations.
//!
//! The protocol these functions implement is written down in the module doc of
//! [`crate::channel`]; the step numbers in comments refer to it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Instant;

use super::entry::{Claim, SlotEntry, DISCONNECTED, READY, SERVED};
use super::selection::Selection;
use crate::park::WaitReason;
use crate::ring::Ring;
use crate::sched::context;
use crate::sync::biased_lock::{BiasedGuard, BiasedSpinLock};
use crate::sync::wait_list::WaitList;

/// Outcome of a blocked operation that unlinked itself at its deadline (never stored in a
/// waiter: it is what `Chan::block` reports instead of one).
const TIMED_OUT: u8 = 0;

/// A bounded channel allocates room for at most this many messages up front; beyond that
/// the buffer grows as it fills (and keeps its allocation).
pub(crate) const PREALLOCATE_MAX: usize = 1024;

/// How long a blocking operation may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all (`try_send`, `try_recv`).
    No,
    /// Until the deadline, or forever with `None`.
    Until(Option<Instant>),
}

/// Why a send failed; the public error types are made from it.
pub(crate) enum SendFailure<T> {
    Full(T),
    Disconnected(T),
    Timeout(T),
}

/// Why a receive failed.
pub(crate) enum RecvFailure {
    Empty,
    Disconnected,
    Timeout,
}

/// Which list a blocked operation waits in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Send,
    Recv,
}

impl Side {
    fn reason(self) -> WaitReason {
        match self {
            Side::Send => WaitReason::ChannelSend,
            Side::Recv => WaitReason::ChannelRecv,
        }
    }
}

/// Everything the channel lock protects.
struct ChanState<T> {
    buffer: Ring<T>,
    waiting_receivers: WaitList<SlotEntry<T>>,
    waiting_senders: WaitList<SlotEntry<T>>,
    senders_gone: bool,
    receivers_gone: bool,
    /// How many messages the buffer may hold for `send`'s inlined path to push one more:
    /// the capacity or the ring's slots, whichever is fewer, while receivers are there and
    /// none waits (an observer counts: the path that serves it runs out of line), and 0
    /// otherwise. One compare then stands for four: receivers there, none waiting, room
    /// under the capacity, and a free slot without growing the ring.
    fast_send_room: usize,
    /// How many messages the buffer must hold for `recv`'s inlined path to pop one: 0
    /// while no sender waits, `usize::MAX` while one does (an observer counts: the path
    /// that serves it runs out of line). One compare then stands for two: a message there
    /// and no sender to move into the buffer after it.
    ///
    /// Both bounds are derived, and every unlock through `ChanGuard::drop` derives them
    /// again; the inlined paths unlock without, as they change nothing the bounds depend
    /// on (no list, no end's departure, no growth of the ring).
    fast_recv_floor: usize,
}

impl<T> ChanState<T> {
    /// Sets `fast_send_room` and `fast_recv_floor` from what they are derived from, for a
    /// channel of capacity `cap`.
    fn derive_fast_bounds(&mut self, cap: usize) {
        self.fast_send_room = if self.receivers_gone || !self.waiting_receivers.is_empty() {
            0
        } else {
            cap.min(self.buffer.slots())
        };
        self.fast_recv_floor = if self.waiting_senders.is_empty() {
            0
        } else {
            usize::MAX
        };
    }

    fn list(&mut self, side: Side) -> &mut WaitList<SlotEntry<T>> {
        match side {
            Side::Send => &mut self.waiting_senders,
            Side::Recv => &mut self.waiting_receivers,
        }
    }
}

/// The channel both ends share.
pub(crate) struct Chan<T> {
    state: BiasedSpinLock<ChanState<T>>,
    /// Whether a receive would succeed right now, as of the last unlock: a hint, read
    /// without the lock by a green receiver deciding to yield before its first attempt
    /// (see `yield_first`). Stale values cost a useless yield or lock, never correctness.
    recv_ready_hint: AtomicBool,
    /// Most messages the buffer holds: `usize::MAX` when unbounded.
    cap: usize,
    bounded: bool,
    /// Live `Sender`s; the last one to go disconnects the receivers.
    pub(crate) senders: AtomicUsize,
    /// Live `Receiver`s; the last one to go disconnects the senders.
    pub(crate) receivers: AtomicUsize,
}

// SAFETY: the channel moves `T`s between threads (hence `T: Send`) and never shares a `&T`.
// Its lists point at entries of parked threads, which are dereferenced only under the lock
// or by the waker that unlinked and claimed them (sync/waiter.rs, channel/select.rs); an
// entry holds a thread handle or a pointer to a select's shared word (an atomic and a
// thread handle), usable anywhere, and a slot with a `T`, moved only under the lock or by
// its owner.
unsafe impl<T: Send> Send for Chan<T> {}
// SAFETY: as above: every access to the state goes through the lock.
unsafe impl<T: Send> Sync for Chan<T> {}

impl<T> Chan<T> {
    /// A channel holding at most `cap` messages (no limit with `None`), with one sender and
    /// one receiver.
    pub(crate) fn new(cap: Option<usize>) -> Chan<T> {
        let buffer = match cap {
            Some(n) => Ring::with_capacity(n.min(PREALLOCATE_MAX)),
            None => Ring::default(),
        };
        let bounded = cap.is_some();
        let cap = cap.unwrap_or(usize::MAX);
        let mut state = ChanState {
            buffer,
            waiting_receivers: WaitList::new(),
            waiting_senders: WaitList::new(),
            senders_gone: false,
            receivers_gone: false,
            fast_send_room: 0,
            fast_recv_floor: 0,
        };
        state.derive_fast_bounds(cap);
        Chan {
            state: BiasedSpinLock::new(state),
            recv_ready_hint: AtomicBool::new(false),
            cap,
            bounded,
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
        }
    }

    /// Sends `message`, waiting as `wait` allows.
    // Always: the uncontended path is a few dozen instructions, and left to itself the
    // compiler kept it out of line in a spawned thread's loop, whose call then cost more
    // than the path (cachegrind: 15 instructions of frame set-up per message).
    #[inline(always)]
    pub(crate) fn send(&self, message: T, wait: Wait) -> Result<(), SendFailure<T>> {
        let mut state = self.lock();
        // Step 3 when the receivers are there, none waits (then step 2 has nothing to do)
        // and there is room: the uncontended path, inlined.
        if state.buffer.len() < state.fast_send_room {
            let was_empty = state.buffer.is_empty();
            // SAFETY: `fast_send_room` is at most the ring's slots.
            unsafe { state.buffer.push_back_into_free_slot(message) };
            if was_empty {
                // A message is buffered: a receive would succeed now.
                state.unlock_with_hint(true);
            } else {
                // The hint already says so (`ChanGuard`: every unlock leaves it saying
                // whether a receive would succeed, and one would have before this send).
                state.unlock_keeping_hint();
            }
            return Ok(());
        }
        self.send_contended(state, message, wait)
    }

    /// Steps 1 to 4 of `send`, when the receivers are gone, a receiver waits or the buffer
    /// is full.
    #[inline(never)]
    fn send_contended(
        &self,
        state: ChanGuard<'_, T>,
        message: T,
        wait: Wait,
    ) -> Result<(), SendFailure<T>> {
        let mut state = state;
        if self.cap > 0 && self.must_wait_to_send(&state) && yield_first(wait) {
            // Full: give the consumer a turn before parking (see `yield_first`).
            drop(state);
            crate::thread::yield_now();
            state = self.lock();
        }
        // Declared before the guard's binding below, so that on every return path the lock
        // is released before the wake-ups are finished.
        let mut wakeups = Wakeups::new(SERVED);
        let mut state = state;
        // Step 1.
        if state.receivers_gone {
            return Err(SendFailure::Disconnected(message));
        }
        if matches!(wait, Wait::No) && self.try_send_fails(&state) {
            // Before step 2, which would wake the receive side's observers on its way
            // through their list: a failing `try_send` makes no receive ready.
            return Err(SendFailure::Full(message));
        }
        // Step 2: hand the message to the first waiting receiver.
        if let Some(receiver) = pop_servable(&mut state.waiting_receivers, &mut wakeups) {
            // SAFETY: we claimed `receiver` under the lock (`pop_servable`), so we own its
            // slot, and it stays live until we finish it.
            unsafe {
                SlotEntry::put(receiver, message);
                wakeups.push(receiver);
            }
            return Ok(());
        }
        // Step 3 (the receivers' list held only stale entries or observers).
        if state.buffer.len() < self.cap {
            state.buffer.push_back(message);
            return Ok(());
        }
        // Step 4.
        let deadline = match wait {
            Wait::No => return Err(SendFailure::Full(message)),
            Wait::Until(deadline) => deadline,
        };
        let entry = SlotEntry::new(Some(message));
        // SAFETY: `entry` lives in this frame and stays put until unlinked: `block` returns
        // only once it is unlinked (by a waker, or by `block` itself), and unlinks it if we
        // are unwound.
        unsafe { state.waiting_senders.push_back(&entry) };
        drop(state);
        // Observers of the receive side learnt that a sender waits; wake them before we
        // park.
        drop(wakeups);
        let outcome = self.block(&entry, Side::Send, deadline);
        // SAFETY: `block` returned, so the entry is unlinked and no waker touches it: its
        // slot is ours.
        let unsent = unsafe { SlotEntry::take(&entry) };
        match (outcome, unsent) {
            (SERVED, None) => Ok(()),
            (DISCONNECTED, Some(m)) => Err(SendFailure::Disconnected(m)),
            (TIMED_OUT, Some(m)) => Err(SendFailure::Timeout(m)),
            _ => unreachable!("sender outcome {outcome} disagrees with its slot"),
        }
    }

    /// Receives a message, waiting as `wait` allows.
    // Always: the uncontended path is a few dozen instructions, and left to itself the
    // compiler kept it out of line in a spawned thread's loop, whose call then cost more
    // than the path (cachegrind: 15 instructions of frame set-up per message).
    #[inline(always)]
    pub(crate) fn recv(&self, wait: Wait) -> Result<T, RecvFailure> {
        // Empty: give the producer a turn before parking (see `yield_first`). The hint lets
        // us skip the lock round trip when the channel looked empty at the last unlock.
        let mut yielded = false;
        if !self.recv_ready_hint.load(Relaxed) && yield_first(wait) {
            crate::thread::yield_now();
            yielded = true;
        }
        let mut state = self.lock();
        // Step 1 when no sender waits: the uncontended path, inlined.
        if state.buffer.len() > state.fast_recv_floor {
            // SAFETY: the buffer holds more than 0 messages.
            let message = unsafe { state.buffer.pop_front_held() };
            if state.buffer.is_empty() {
                // `ChanGuard::drop`'s look, knowing that no sender waits.
                let ready = state.senders_gone;
                state.unlock_with_hint(ready);
            } else {
                // A receive would still succeed, as it would have before this one.
                state.unlock_keeping_hint();
            }
            return Ok(message);
        }
        self.recv_contended(state, wait, yielded)
    }

    /// Steps 1 to 4 of `recv`, when a sender waits or the buffer is empty; `yielded`: the
    /// caller already gave way once.
    #[inline(never)]
    fn recv_contended(
        &self,
        state: ChanGuard<'_, T>,
        wait: Wait,
        yielded: bool,
    ) -> Result<T, RecvFailure> {
        let mut state = state;
        if !yielded && Self::must_wait_to_recv(&state) && yield_first(wait) {
            drop(state);
            crate::thread::yield_now();
            state = self.lock();
        }
        // Declared before the guard's binding below: see `send_contended`.
        let mut wakeups = Wakeups::new(SERVED);
        let mut state = state;
        if matches!(wait, Wait::No) && Self::try_recv_fails(&state) {
            // Before step 2, which would wake the send side's observers on its way through
            // their list: a failing `try_recv` makes no send ready.
            return Err(if state.senders_gone {
                RecvFailure::Disconnected
            } else {
                RecvFailure::Empty
            });
        }
        // Step 1.
        if let Some(message) = state.buffer.pop_front() {
            if let Some(sender) = pop_servable(&mut state.waiting_senders, &mut wakeups) {
                // SAFETY: as in `send` step 2, for a waiting sender: we own its slot and
                // finish it after unlocking.
                unsafe {
                    let moved = SlotEntry::take(sender);
                    state
                        .buffer
                        .push_back(moved.expect("a waiting sender holds its message"));
                    wakeups.push(sender);
                }
            }
            return Ok(message);
        }
        // Step 2: rendezvous with a waiting sender.
        if let Some(sender) = pop_servable(&mut state.waiting_senders, &mut wakeups) {
            // SAFETY: as in step 1.
            let message = unsafe {
                let m = SlotEntry::take(sender);
                wakeups.push(sender);
                m
            };
            return Ok(message.expect("a waiting sender holds its message"));
        }
        // Step 3.
        if state.senders_gone {
            return Err(RecvFailure::Disconnected);
        }
        // Step 4.
        let deadline = match wait {
            Wait::No => return Err(RecvFailure::Empty),
            Wait::Until(deadline) => deadline,
        };
        let entry = SlotEntry::new(None);
        // SAFETY: as in `send` step 4.
        unsafe { state.waiting_receivers.push_back(&entry) };
        drop(state);
        // Observers of the send side (rendezvous) learnt that a receiver waits.
        drop(wakeups);
        let outcome = self.block(&entry, Side::Recv, deadline);
        // SAFETY: as in `send`: the entry is unlinked and its slot is ours.
        let received = unsafe { SlotEntry::take(&entry) };
        match (outcome, received) {
            (SERVED, Some(m)) => Ok(m),
            (DISCONNECTED, None) => Err(RecvFailure::Disconnected),
            (TIMED_OUT, None) => Err(RecvFailure::Timeout),
            _ => unreachable!("receiver outcome {outcome} disagrees with its slot"),
        }
    }

    /// Takes the channel lock; unlocking publishes `recv_ready_hint`.
    #[inline]
    fn lock(&self) -> ChanGuard<'_, T> {
        ChanGuard {
            chan: self,
            state: self.state.lock(),
        }
    }

    /// Whether a send would have to wait (step 4).
    fn must_wait_to_send(&self, state: &ChanState<T>) -> bool {
        !state.receivers_gone
            && state.waiting_receivers.is_empty()
            && state.buffer.len() >= self.cap
    }

    /// Whether a receive would have to wait (step 4).
    fn must_wait_to_recv(state: &ChanState<T>) -> bool {
        !state.senders_gone && state.buffer.is_empty() && state.waiting_senders.is_empty()
    }

    /// Whether a `try_send` on a channel whose receivers are there would fail with
    /// `Full`: the buffer is full and no waiting receiver can be served (the list may
    /// still hold observers and stale select entries, which step 2 would pop on its way).
    fn try_send_fails(&self, state: &ChanState<T>) -> bool {
        state.buffer.len() >= self.cap && !has_servable(&state.waiting_receivers, std::ptr::null())
    }

    /// Whether a `try_recv` would fail, with `Empty` or `Disconnected`: the buffer is
    /// empty and no waiting sender can be served (as in [`Chan::try_send_fails`]).
    fn try_recv_fails(state: &ChanState<T>) -> bool {
        state.buffer.is_empty() && !has_servable(&state.waiting_senders, std::ptr::null())
    }

    /// Parks until the linked `entry` is served or disconnected, or until `deadline`, when
    /// it unlinks itself unless served first. Returns the outcome, or `TIMED_OUT`. When it
    /// returns, the entry is in no list and no waker will touch it.
    fn block(&self, entry: &SlotEntry<T>, side: Side, deadline: Option<Instant>) -> u8 {
        let guard = LeaveOnUnwind {
            chan: self,
            entry,
            side,
        };
        let outcome = match entry.waiter().wait(side.reason(), deadline) {
            Some(outcome) => outcome,
            None => {
                let mut state = self.lock();
                if entry.waiter().is_waiting() {
                    // SAFETY: a `WAITING` entry is in the list it was linked into.
                    unsafe { state.list(side).remove(entry) };
                    drop(state);
                    std::mem::forget(guard);
                    return TIMED_OUT;
                }
                drop(state);
                // Served (or disconnected) before the deadline: take that outcome.
                entry
                    .waiter()
                    .wait(side.reason(), None)
                    .expect("no deadline")
            }
        };
        std::mem::forget(guard);
        outcome
    }

    /// The last sender is gone: wake every waiting receiver with `DISCONNECTED`.
    pub(crate) fn disconnect_senders(&self) {
        let mut wakeups = Wakeups::new(DISCONNECTED);
        let mut state = self.lock();
        state.senders_gone = true;
        claim_all(&mut state.waiting_receivers, &mut wakeups);
        drop(state);
        drop(wakeups);
    }

    /// The last receiver is gone: wake every waiting sender with `DISCONNECTED` (its
    /// message stays in its slot for it) and drop the buffered messages.
    pub(crate) fn disconnect_receivers(&self) {
        let mut wakeups = Wakeups::new(DISCONNECTED);
        let mut state = self.lock();
        state.receivers_gone = true;
        claim_all(&mut state.waiting_senders, &mut wakeups);
        let buffered = std::mem::take(&mut state.buffer);
        drop(state);
        drop(wakeups);
        drop(buffered);
    }

    /// Whether an operation on `side` could complete now without waiting, ignoring the
    /// entries of `own` (a selection never matches itself; null for none).
    fn is_ready(&self, state: &ChanState<T>, side: Side, own: *const Selection) -> bool {
        match side {
            Side::Recv => {
                !state.buffer.is_empty()
                    || state.senders_gone
                    || has_servable(&state.waiting_senders, own)
            }
            Side::Send => {
                state.receivers_gone
                    || state.buffer.len() < self.cap
                    || has_servable(&state.waiting_receivers, own)
            }
        }
    }

    /// `Select::ready`'s first look: whether an operation on `side` would complete now.
    pub(crate) fn ready_now(&self, side: Side) -> bool {
        let state = self.lock();
        self.is_ready(&state, side, std::ptr::null())
    }

    /// Select, registration (`channel/select.rs`, step 2): in one critical section, tests
    /// whether the operation on `side` is ready and, if it is not, links the bound select
    /// `entry` into that side's list. Returns `false` (and links nothing) if it is ready.
    /// Linking a real (non-observer) entry wakes the observers of the other side, for whom
    /// a waiting peer makes their operation ready.
    ///
    /// # Safety
    ///
    /// `entry` is a select entry bound to a live selection (`SlotEntry::bind`), in no list,
    /// and it stays live and unmoved until [`Chan::unregister`] has been called for it.
    pub(crate) unsafe fn register(&self, entry: &SlotEntry<T>, side: Side) -> bool {
        let mut wakeups = Wakeups::new(READY);
        let mut state = self.lock();
        let own = entry.selection();
        if self.is_ready(&state, side, own) {
            return false;
        }
        // SAFETY: the caller keeps the entry live and in place until `unregister`, which
        // unlinks it under this lock if no waker did.
        unsafe { state.list(side).push_back(entry) };
        entry.set_linked(true);
        if !entry.is_observer() {
            let other = match side {
                Side::Recv => Side::Send,
                Side::Send => Side::Recv,
            };
            wake_observers(state.list(other), &mut wakeups, own);
        }
        true
    }

    /// Select, unregistration: unlinks a select entry unless a waker already did.
    ///
    /// # Safety
    ///
    /// `entry` was passed to [`Chan::register`] on this channel with this `side` (whether
    /// or not it was linked), and its selection is no longer `WAITING`.
    pub(crate) unsafe fn unregister(&self, entry: &SlotEntry<T>, side: Side) {
        let mut state = self.lock();
        if entry.is_linked() {
            // SAFETY: `linked` says the entry is in this side's list (it is cleared by
            // whoever unlinks it, under this lock).
            unsafe { state.list(side).remove(entry) };
            entry.set_linked(false);
        }
    }

    /// Messages in the buffer (waiting senders' messages are not counted).
    pub(crate) fn len(&self) -> usize {
        self.lock().buffer.len()
    }

    /// The buffer's limit: `None` for an unbounded channel.
    pub(crate) fn capacity(&self) -> Option<usize> {
        self.bounded.then_some(self.cap)
    }

    /// Whether the buffer is full (always for a rendezvous channel, never when unbounded).
    pub(crate) fn is_full(&self) -> bool {
        self.capacity().is_some_and(|cap| self.len() == cap)
    }
}

/// The channel lock held; derefs to the state. Before unlocking it stores whether a
/// receive would succeed now into the hint (a relaxed store inside the critical section:
/// a few loads and a plain store, no read-modify-write). Every unlock of the channel goes
/// through a guard, so the hint always says what the last unlock saw: the fast paths use
/// that to skip the store when their change leaves the answer as it was (a send into a
/// buffer that held messages, a receive that leaves some). It also derives the inlined
/// paths' bounds again (`fast_send_room`, `fast_recv_floor`), which only the out-of-line
/// paths can change.
struct ChanGuard<'a, T> {
    /// The channel: its hint, and the capacity `fast_send_room` is derived from.
    chan: &'a Chan<T>,
    state: BiasedGuard<'a, ChanState<T>>,
}

impl<T> std::ops::Deref for ChanGuard<'_, T> {
    type Target = ChanState<T>;

    fn deref(&self) -> &ChanState<T> {
        &self.state
    }
}

impl<T> std::ops::DerefMut for ChanGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut ChanState<T> {
        &mut self.state
    }
}

impl<T> ChanGuard<'_, T> {
    /// Unlocks with `ready` as the hint: for a fast path that knows what [`Drop`] would
    /// find without looking at the whole state again.
    #[inline(always)]
    fn unlock_with_hint(self, ready: bool) {
        self.chan.recv_ready_hint.store(ready, Relaxed);
        self.unlock_keeping_hint();
    }

    /// Unlocks without storing the hint: for a fast path that knows the hint already holds
    /// what [`Drop`] would store.
    #[inline(always)]
    fn unlock_keeping_hint(self) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped or used again, so the lock guard is moved out of
        // it exactly once, and dropping that unlocks as `Drop` would, without its hint
        // store and bound updates (the caller vouches that all are current: it changed
        // neither wait list, nor an end, nor the ring's size); the guard's other field
        // is a shared reference, which needs no drop.
        drop(unsafe { std::ptr::read(&this.state) });
    }
}

impl<T> Drop for ChanGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let s = &mut *self.state;
        s.derive_fast_bounds(self.chan.cap);
        let ready = !s.buffer.is_empty() || !s.waiting_senders.is_empty() || s.senders_gone;
        self.chan.recv_ready_hint.store(ready, Relaxed);
        // `state` (the spin lock guard) is dropped after this, unlocking.
    }
}

/// Whether an operation that would have to wait should first yield once and look again.
///
/// Only a green thread in an untimed blocking operation does, and a sender only on a
/// channel with a buffer (callers check). Not a kernel thread: its yield is a system call.
/// Not a timed operation: it registers at once, so that its deadline measures time spent
/// in the queue (a yield can take longer than a microsecond timeout, and two sides that
/// each give up before registering would never meet). Not a rendezvous sender: a yielding
/// thread is in no wait list, and a rendezvous needs one side registered. The point is the
/// many-to-one ping-pong: when the peer is runnable on the same worker, one yield lets it
/// run and produce, and the second look succeeds without a park and an unpark (two CASes
/// in the park protocol plus the scheduler's bookkeeping; a yield costs neither). If the
/// second look still cannot proceed, the thread registers and parks as usual, having spent
/// one yield. crossbeam-channel makes the same bet with its backoff before blocking.
#[inline]
fn yield_first(wait: Wait) -> bool {
    matches!(wait, Wait::Until(None)) && context::current_green().is_some()
}

/// Entries claimed under the channel lock whose wake-ups are finished after unlocking,
/// when this is dropped: the served entries with `outcome`, observers with `READY`.
///
/// The one entry a `send` or `recv` serves is kept in a field; any others (observers,
/// every entry at disconnection) are chained through their own links, so the batch
/// allocates nothing. Declare it *before* the lock guard, so that on every path the lock
/// is released first: unparking (a system call for a kernel thread) never happens under a
/// channel lock.
struct Wakeups<T> {
    served: *const SlotEntry<T>,
    others: WaitList<SlotEntry<T>>,
    outcome: u8,
}

impl<T> Wakeups<T> {
    #[inline]
    fn new(outcome: u8) -> Wakeups<T> {
        Wakeups {
            served: std::ptr::null(),
            others: WaitList::new(),
            outcome,
        }
    }

    /// Adds a claimed entry.
    ///
    /// # Safety
    ///
    /// `entry` was claimed ([`SlotEntry::claim`] said `Serve` or `Observer`) and is in no
    /// list; the caller leaves finishing it to this batch.
    #[inline]
    unsafe fn push(&mut self, entry: *const SlotEntry<T>) {
        if self.served.is_null() {
            self.served = entry;
        } else {
            // SAFETY: a claimed entry stays live and in place until it is finished, which
            // this batch does after popping it.
            unsafe { self.others.push_back(entry) };
        }
    }

    /// Finishes every wake-up of the batch. Out of line, so that dropping an empty batch
    /// (every uncontended operation) is one inlined test.
    #[inline(never)]
    fn finish_all(&mut self) {
        // Each entry stays live until its own wake-up is finished, so popping the next one
        // (which reads and writes its links) is safe after finishing the previous one.
        while let Some(entry) = self.others.pop_front() {
            // SAFETY: the entry was claimed and handed to this batch (`push`); we finish it
            // once and let go of it.
            unsafe { SlotEntry::finish(entry, self.outcome) };
        }
        let served = std::mem::replace(&mut self.served, std::ptr::null());
        if !served.is_null() {
            // SAFETY: as above.
            unsafe { SlotEntry::finish(served, self.outcome) };
        }
    }
}

impl<T> Drop for Wakeups<T> {
    #[inline(always)]
    fn drop(&mut self) {
        // `others` is used only once `served` is set (`push`).
        if !self.served.is_null() {
            self.finish_all();
        }
    }
}

/// Under the channel lock: unlinks entries from the front of `list` until one can be
/// served, and returns it claimed. Stale select entries met on the way are dropped from
/// the list; observers are claimed into `wakeups` (what the caller is doing makes their
/// operation ready, or the caller is about to wait as their peer). When it returns
/// `None`, `list` is empty.
#[inline]
fn pop_servable<T>(
    list: &mut WaitList<SlotEntry<T>>,
    wakeups: &mut Wakeups<T>,
) -> Option<*const SlotEntry<T>> {
    while let Some(entry) = list.pop_front() {
        // SAFETY: `entry` was linked in `list`, whose lock the caller holds, and we just
        // unlinked it.
        match unsafe { SlotEntry::claim(entry) } {
            Claim::Serve => return Some(entry),
            // SAFETY: claimed and unlinked; the batch finishes it.
            Claim::Observer => unsafe { wakeups.push(entry) },
            Claim::Stale => {}
        }
    }
    None
}

/// Under the channel lock: claims every entry of `list` into `wakeups` (disconnection).
fn claim_all<T>(list: &mut WaitList<SlotEntry<T>>, wakeups: &mut Wakeups<T>) {
    while let Some(entry) = pop_servable(list, wakeups) {
        // SAFETY: claimed and unlinked by `pop_servable`; the batch finishes it.
        unsafe { wakeups.push(entry) };
    }
}

/// Whether `list` holds an entry that a waker could serve now, other than `own`'s.
///
/// It stops at the first such entry, which is the front one unless observers or stale
/// select entries come first; it runs when a select registers on a channel whose opposite
/// side has waiters, and when a `try_send` or `try_recv` is about to fail.
fn has_servable<T>(list: &WaitList<SlotEntry<T>>, own: *const Selection) -> bool {
    list.any(|entry| entry.is_servable_by(own))
}

/// Under the channel lock: claims every observer of `list` (other than `own`'s) into
/// `wakeups`, dropping observers that are stale; other entries keep their place and order.
fn wake_observers<T>(
    list: &mut WaitList<SlotEntry<T>>,
    wakeups: &mut Wakeups<T>,
    own: *const Selection,
) {
    if list.is_empty() {
        return;
    }
    let mut all = list.take_all();
    while let Some(entry) = all.pop_front() {
        // SAFETY: `entry` was in the list, under the lock the caller holds: live.
        let (is_observer, selection) = unsafe { ((*entry).is_observer(), (*entry).selection()) };
        if is_observer && selection != own {
            // SAFETY: just unlinked under the lock.
            if let Claim::Observer = unsafe { SlotEntry::claim(entry) } {
                // SAFETY: claimed and unlinked; the batch finishes it.
                unsafe { wakeups.push(entry) };
            }
        } else {
            // SAFETY: it was in `list` and keeps the same guarantees there.
            unsafe { list.push_back(entry) };
        }
    }
}

/// Unlinks a linked entry if its thread is unwound while parked; if a waker got to it
/// first, waits (without parking) for the waker to let go of it.
struct LeaveOnUnwind<'a, T> {
    chan: &'a Chan<T>,
    entry: &'a SlotEntry<T>,
    side: Side,
}

impl<T> Drop for LeaveOnUnwind<'_, T> {
    fn drop(&mut self) {
        let mut state = self.chan.lock();
        if self.entry.waiter().is_waiting() {
            // SAFETY: a `WAITING` entry is in the list it was linked into.
            unsafe { state.list(self.side).remove(self.entry) };
            return;
        }
        drop(state);
        self.entry.waiter().outcome_without_parking();
        // The slot's message, if any, is dropped with the entry, outside the lock.
    }
}
