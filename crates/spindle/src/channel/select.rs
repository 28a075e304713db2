//! Waiting on several channel operations at once: [`Select`], and the engine behind
//! [`select!`](crate::select).
//!
//! A selection is a set of operations (`recv` from a receiver, `send` of a message into a
//! sender) of which exactly one is carried out: one that is ready now, chosen uniformly at
//! random among the ready ones, or else the first that becomes ready while the thread waits.
//! An operation is *ready* when it would not block: a receive when a message is buffered,
//! a sender waits (rendezvous) or every sender is gone; a send when the buffer has room, a
//! receiver waits, or every receiver is gone. A disconnected operation completes with its
//! error (`Err(RecvError)`, or `Err(SendError(message))` giving the message back), as in
//! crossbeam-channel.
//!
//! ```
//! use std::time::Duration;
//! use spindle::channel::{bounded, unbounded, Select};
//!
//! let rt = spindle::Runtime::builder().build()?;
//! rt.block_on(|| {
//!     let (tx1, rx1) = unbounded::<&str>();
//!     let (tx2, rx2) = bounded::<i32>(0);
//!     let tx1_clone = tx1.clone();
//!     spindle::spawn(move || tx1_clone.send("hello").unwrap());
//!
//!     let mut sel = Select::new();
//!     let recv1 = sel.recv(&rx1);
//!     let recv2 = sel.recv(&rx2);
//!     // Parks this green thread until one of the two operations completes.
//!     let oper = sel.select();
//!     match oper.index() {
//!         i if i == recv1 => assert_eq!(oper.recv(&rx1), Ok("hello")),
//!         i if i == recv2 => unreachable!("nobody sends on tx2"),
//!         _ => unreachable!(),
//!     }
//!     drop(tx2);
//!     // Now every sender of rx2 is gone: its receive is ready, with an error.
//!     let oper = sel.select_timeout(Duration::from_secs(1)).unwrap();
//!     assert_eq!(oper.index(), recv2);
//!     assert!(oper.recv(&rx2).is_err());
//!     drop(tx1);
//! });
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Unlike crossbeam-channel's, a selection *completes* the operation it chooses, and a
//! send operation carries its message from the start (the doc of [`Select`] says why).
//!
//! # The protocol
//!
//! The channel's own protocol (one spin lock per channel, intrusive FIFOs of waiting
//! entries, a message handed directly to a waiting peer) is in the module doc of
//! [`crate::channel`]. A select adds one thing: entries that several channels' lists hold
//! at once on behalf of one thread, of which only one may be served. That is Go's
//! `selectgo` with crossbeam's per-channel registration: every entry of a blocked select
//! points at one shared word, the `Selection` (`channel/selection.rs`), and a waker must win
//! it with a CAS before it serves the entry.
//!
//! ## States of the selection word
//!
//! | state              | entries are                         | who acts                           |
//! |--------------------|-------------------------------------|------------------------------------|
//! | `WAITING`          | being linked, or linked and waited on | any waker may claim one (CAS); the selecting thread may abort (CAS) |
//! | `CLAIMED(i)`       | entry `i` unlinked by its waker     | that waker serves entry `i` (fills or empties its slot under its channel's lock), then unparks |
//! | `DONE(i, outcome)` | entry `i` served; others may still be linked | the selecting thread: unlinks the others, returns `i` |
//! | `ABORTED`          | stale: wakers skip them             | the selecting thread: unlinks them, then retries or times out |
//!
//! ## The steps
//!
//! 1. **First pass.** In a random order (a Fisher-Yates shuffle from a thread-local
//!    xorshift), try each operation as `try_recv`/`try_send` would, each under its own
//!    channel's lock. The first that completes is the result: this is where fairness
//!    comes from, since every ready operation is equally likely to come first. With
//!    `try_select` (the `default` arm), or a deadline already past, stop here.
//! 2. **Registration.** Set the word to `WAITING`. For each operation, under its channel's
//!    lock and in one critical section: if the operation is ready now, link nothing and go
//!    to step 3 with "abort"; otherwise link the entry into the channel's list of waiting
//!    receivers or senders (a send entry holds the message in its slot). Linking also
//!    wakes that channel's observers of the opposite side (below).
//! 3. **Wait.** If registration saw a ready operation, abort (CAS `WAITING -> ABORTED`);
//!    otherwise park (through `crate::park`: a green thread parks only itself, a kernel
//!    thread blocks) while the word is `WAITING`. At the deadline, abort. An abort that
//!    fails means a waker claimed the selection first: wait (spinning: the waker is between
//!    two non-blocking steps) for `DONE`.
//! 4. **Unregistration.** Lock each channel registered with in step 2 and unlink the entry
//!    unless a waker already did (each entry has a `linked` flag, kept under its
//!    channel's lock).
//! 5. `DONE(i, outcome)`: operation `i` completed: take its result from entry `i`'s slot
//!    (a received message, or a send's message handed back on disconnection). `ABORTED`
//!    after a timeout: report the timeout (every send message is still in its slot).
//!    `ABORTED` after seeing a ready operation: back to step 1.
//!
//! **A waker** (any `send`, `recv`, disconnection, or another select in its step 1) pops
//! entries off the front of a list under the channel lock. A thread's own `send`/`recv`
//! entry is served as before. A select entry is claimed with the CAS `WAITING ->
//! CLAIMED(i)`: if that succeeds the waker serves it exactly like an ordinary entry and,
//! after unlocking, unparks the selecting thread and stores `DONE(i, outcome)` (release;
//! its last access). If it fails, the entry is stale: the waker marks it unlinked and
//! moves on to the next entry, as if it had not been there.
//!
//! ## Why exactly one operation completes, and nothing is lost or duplicated
//!
//! An operation completes in one of two ways: by the selecting thread itself in step 1,
//! when it is registered nowhere (every entry of the previous round was unlinked in step
//! 4), or by a waker that won the CAS. Every transition out of `WAITING` is a CAS from
//! `WAITING`, and only the selecting thread resets the word, between rounds; so one round
//! has exactly one decision, and a waker that lost it never touches the entry's slot. A
//! message moves only under a channel lock, between one sender's hands or slot and one
//! receiver's, as in the channel protocol: a select send entry's message is taken only by
//! the waker that claimed it, and otherwise stays in its slot, where the selecting thread
//! finds it after step 4 (to retry, or to hand back).
//!
//! **Rendezvous (`bounded(0)`).** A send completes only when matched with a receiver,
//! and here both sides may be selects. A waker serves one entry of the opposite side and
//! is itself not registered anywhere at that moment (a plain operation, or a select in its
//! step 1), so a match needs only the one CAS on the other side's word: there is never a
//! need to decide two selections at once, which could not be done atomically. Two selects
//! on opposite ends that both register never both park unmatched: their two step-2
//! critical sections on the channel are ordered, the second sees the first's entry linked
//! and undecided, counts its own operation as ready, aborts and retries step 1, where it
//! claims that entry. (Both may abort if each saw the other undecided; each then retries,
//! as with crossbeam. The readiness test ignores the selection's own entries, since one
//! select with a send and a receive on the same channel must not match itself; a thread
//! can be in only one select at a time, so "own" is "same selection word".)
//!
//! ## Why no wake-up is lost
//!
//! Registration tests readiness and links the entry in the same critical section. Any later
//! change that could make the operation ready happens under that channel's lock, after the
//! link, and serves or claims the entry (a send into a channel with a waiting receiver
//! hands it the message; a receive that frees room moves a waiting sender's message into
//! the buffer; a disconnection claims every entry; a blocking peer on a rendezvous channel
//! first tries to serve a waiting entry). A change that came before the link is seen by the
//! test, and the select retries instead of parking. The claiming waker unparks after its
//! claim, and `park` keeps a token, so a wake-up that arrives before the thread parks makes
//! the park return at once; spurious returns find the word still `WAITING` and park again.
//!
//! ## Why entries are never touched after their thread has left
//!
//! Entries and the selection word live in the selecting thread's frame. Wakers reach them
//! only through a channel list, under that channel's lock, and the thread unlinks every
//! entry under that lock in step 4 before it returns; a waker that unlinked one itself
//! cleared its `linked` flag in the same critical section. The only access outside a
//! lock is the claiming waker's unpark and `DONE` store, and the thread does not get past
//! step 3 before it has loaded `DONE` (acquire). A thread unwound while parked (its runtime
//! was dropped) runs steps 3 and 4 from a drop guard, spinning instead of parking.
//!
//! ## `ready`: observers
//!
//! `Select::ready` reports an operation that is ready without carrying it out. It uses the
//! same registration with *observer* entries: a waker that meets an observer claims it and
//! finishes it with `READY`, and carries on with its own operation as if the observer had
//! not been there. Observers are met by every party that makes their operation ready: a
//! send that buffers a message or finds no real receiver waiting pops the receivers' list
//! (observers included) first, a receive that frees room pops the senders' list, a thread
//! that is about to wait on a rendezvous channel pops the opposite list before linking
//! itself, and a select linking an entry wakes the opposite side's observers. A `try_send`
//! or `try_recv` (or a select's first pass) that is going to fail returns before it pops
//! anything: it makes nothing ready, and two threads looping on `ready` and a `try_`
//! operation would otherwise keep waking each other. Like crossbeam's, `ready` can still
//! return spuriously (a select entry that went stale while the waker looked, a peer that
//! took the message first): callers use the `try_` operation and loop.
//!
//! ## Cost
//!
//! None on a plain `send` or `recv` that finds nobody waiting: the waiting lists are empty,
//! and the only additions are the empty wake-up batch on the stack and a null test when it
//! is dropped. Serving a waiting entry costs a match on its kind, and a CAS if it belongs to
//! a select. A select's first pass costs one lock round trip per operation until one
//! completes; blocking adds two more per operation (register, unregister), the selection
//! word on the stack and the park. Nothing is allocated by `select!`; the [`Select`]
//! builder allocates one box per operation when it is built.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::chan::Wait;
use super::error::{
    ReadyTimeoutError, RecvError, SelectTimeoutError, SendError, TryReadyError, TrySelectError,
};
use super::operation::{OpRef, Operation, RecvOp, SendOp};
use super::receiver::Receiver;
use super::selection::{Selection, WaitEnd};
use super::sender::Sender;
use crate::park::{self, WaitReason};

/// A set of channel operations to wait on; the builder behind [`select!`](crate::select)
/// for a set only known at run time.
///
/// Add operations with [`Select::recv`] and [`Select::send`] (each returns the
/// operation's index), then choose one with [`Select::select`] (blocking),
/// [`Select::try_select`] (only if one is ready now) or [`Select::select_timeout`]. The
/// chosen operation has been carried out when these return: take its result from the
/// [`SelectedOperation`] with [`SelectedOperation::recv`] or [`SelectedOperation::send`].
/// A `Select` can be used for many selections; a send operation leaves the set once it
/// has completed (it has no message left), receive operations stay.
///
/// **One difference from crossbeam-channel, on purpose.** A send operation carries its
/// message from the start (`Select::send(&tx, message)`; in the macro, the message
/// expressions of all `send` arms are evaluated once, in order, before selecting, as Go
/// does), and a selection *completes* the operation it chooses instead of reserving it for
/// the caller to complete afterwards. crossbeam's two-phase design makes a rendezvous peer
/// that was matched wait, spinning, until the selecting thread gets round to writing the
/// message; with green threads that peer may be on the same worker as the selecting thread
/// and would then spin forever. Here a matched peer is served in the same critical section
/// that matched it. The messages of send operations that were not selected stay in the
/// `Select` (the macro drops them).
///
/// ```
/// use spindle::channel::{unbounded, Select};
///
/// let rt = spindle::Runtime::builder().build()?;
/// rt.block_on(|| {
///     let (tx, rx) = unbounded();
///     let (out_tx, out_rx) = unbounded();
///     tx.send(1).unwrap();
///     let mut sel = Select::new();
///     let r = sel.recv(&rx);
///     let s = sel.send(&out_tx, "out");
///     let mut done = 0;
///     while done < 2 {
///         let oper = sel.select();
///         if oper.index() == r {
///             assert_eq!(oper.recv(&rx), Ok(1));
///         } else {
///             assert_eq!(oper.index(), s);
///             assert_eq!(oper.send(&out_tx), Ok(()));
///         }
///         done += 1;
///     }
///     assert_eq!(out_rx.try_recv(), Ok("out"));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Select<'a> {
    ops: Vec<Option<Box<dyn Operation + 'a>>>,
}

impl<'a> Select<'a> {
    /// An empty set of operations.
    pub fn new() -> Select<'a> {
        Select { ops: Vec::new() }
    }

    /// Adds a receive from `r`; returns its index.
    pub fn recv<T>(&mut self, r: &'a Receiver<T>) -> usize {
        self.ops.push(Some(Box::new(RecvOp::new(r))));
        self.ops.len() - 1
    }

    /// Adds a send of `message` into `s`; returns its index. The message stays in the
    /// `Select` until this operation is selected (or the `Select` is dropped).
    pub fn send<T>(&mut self, s: &'a Sender<T>, message: T) -> usize {
        self.ops.push(Some(Box::new(SendOp::new(s, message))));
        self.ops.len() - 1
    }

    /// Removes the operation at `index` (dropping a send's message). Indices of the other
    /// operations do not change.
    ///
    /// # Panics
    ///
    /// If there is no operation at `index`, or it was already removed.
    pub fn remove(&mut self, index: usize) {
        let op = self
            .ops
            .get_mut(index)
            .and_then(Option::take)
            .unwrap_or_else(|| panic!("no operation with index {index}"));
        drop(op);
    }

    /// Carries out one operation that is ready now, or fails without waiting.
    pub fn try_select(&mut self) -> Result<SelectedOperation<'_>, TrySelectError> {
        match self.run(Wait::No, false) {
            Some(index) => Ok(self.selected(index)),
            None => Err(TrySelectError),
        }
    }

    /// Carries out one operation, parking until one is ready.
    ///
    /// # Panics
    ///
    /// If the set has no operations (it would wait forever).
    pub fn select(&mut self) -> SelectedOperation<'_> {
        assert!(self.has_operations(), "select over no operations");
        let index = self.run(Wait::Until(None), false).expect("no deadline");
        self.selected(index)
    }

    /// Carries out one operation, parking for at most `timeout` until one is ready.
    pub fn select_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<SelectedOperation<'_>, SelectTimeoutError> {
        // A timeout too large to represent is no timeout.
        match self.run(Wait::Until(Instant::now().checked_add(timeout)), false) {
            Some(index) => Ok(self.selected(index)),
            None => Err(SelectTimeoutError),
        }
    }

    /// Carries out one operation, parking until one is ready or `deadline` has passed.
    pub fn select_deadline(
        &mut self,
        deadline: Instant,
    ) -> Result<SelectedOperation<'_>, SelectTimeoutError> {
        match self.run(Wait::Until(Some(deadline)), false) {
            Some(index) => Ok(self.selected(index)),
            None => Err(SelectTimeoutError),
        }
    }

    /// The index of an operation that is ready now, without carrying it out.
    ///
    /// Another thread may change the channel before the caller acts, so follow up with a
    /// non-blocking operation (`try_recv`, `try_send`) and be ready to try again.
    pub fn try_ready(&mut self) -> Result<usize, TryReadyError> {
        self.run(Wait::No, true).ok_or(TryReadyError)
    }

    /// Parks until an operation is ready and returns its index, without carrying it out.
    ///
    /// May return spuriously (see [`Select::try_ready`]).
    ///
    /// # Panics
    ///
    /// If the set has no operations (it would wait forever).
    pub fn ready(&mut self) -> usize {
        assert!(self.has_operations(), "ready over no operations");
        self.run(Wait::Until(None), true).expect("no deadline")
    }

    /// Like [`Select::ready`], but gives up after `timeout`.
    pub fn ready_timeout(&mut self, timeout: Duration) -> Result<usize, ReadyTimeoutError> {
        self.run(Wait::Until(Instant::now().checked_add(timeout)), true)
            .ok_or(ReadyTimeoutError)
    }

    /// Like [`Select::ready`], but gives up at `deadline`.
    pub fn ready_deadline(&mut self, deadline: Instant) -> Result<usize, ReadyTimeoutError> {
        self.run(Wait::Until(Some(deadline)), true)
            .ok_or(ReadyTimeoutError)
    }

    fn has_operations(&self) -> bool {
        self.ops
            .iter()
            .flatten()
            .any(|op| !op.is_spent() || op.has_result())
    }

    fn run(&mut self, wait: Wait, observe: bool) -> Option<usize> {
        // A result that a caller did not take from an earlier `SelectedOperation` comes
        // first: it is a completed operation.
        if let Some(i) = self
            .ops
            .iter()
            .position(|op| op.as_ref().is_some_and(|op| op.has_result()))
        {
            return Some(i);
        }
        run(&mut self.ops, wait, observe)
    }

    fn selected(&mut self, index: usize) -> SelectedOperation<'_> {
        SelectedOperation {
            op: self.ops[index]
                .as_deref_mut()
                .expect("a selected operation"),
            index,
        }
    }
}

impl Default for Select<'_> {
    fn default() -> Self {
        Select::new()
    }
}

impl fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("operations", &self.ops.iter().flatten().count())
            .finish()
    }
}

/// The operation a [`Select`] carried out: its index, and its result.
///
/// Take the result with [`SelectedOperation::recv`] or [`SelectedOperation::send`],
/// passing the same receiver or sender the operation was added with. If it is dropped
/// without that, the result stays in the `Select` and its next selection returns this
/// operation again at once, so no message is lost.
pub struct SelectedOperation<'s> {
    op: &'s mut (dyn Operation + 's),
    index: usize,
}

impl SelectedOperation<'_> {
    /// The index the operation was given when it was added.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The result of the selected receive.
    ///
    /// # Panics
    ///
    /// If the selected operation is not a receive from `r`'s channel.
    pub fn recv<T>(self, r: &Receiver<T>) -> Result<T, RecvError> {
        let result = self
            .op
            .recv_result(r.chan_ptr().cast())
            .expect("`SelectedOperation::recv` was passed a receiver that was not selected");
        // SAFETY: `recv_result` returned the result slot of a `RecvOp` on the channel at
        // `r`'s channel's address. That channel is alive (`r` holds it), and so is the
        // op's (the op borrows its receiver), so they are the same `Chan<T>` and the slot
        // is an `Option<Result<T, RecvError>>`. We hold `&mut` to the op, so the access is
        // exclusive.
        let result = unsafe { &mut *result.cast::<Option<Result<T, RecvError>>>() };
        result.take().expect("a selected operation has a result")
    }

    /// The result of the selected send: `Ok(())`, or the message back if every receiver
    /// was gone.
    ///
    /// # Panics
    ///
    /// If the selected operation is not a send into `s`'s channel.
    pub fn send<T>(self, s: &Sender<T>) -> Result<(), SendError<T>> {
        let result = self
            .op
            .send_result(s.chan_ptr().cast())
            .expect("`SelectedOperation::send` was passed a sender that was not selected");
        // SAFETY: as in `recv`, for a `SendOp`, whose result slot is an
        // `Option<Result<(), SendError<T>>>`.
        let result = unsafe { &mut *result.cast::<Option<Result<(), SendError<T>>>>() };
        result.take().expect("a selected operation has a result")
    }
}

impl fmt::Debug for SelectedOperation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedOperation")
            .field("index", &self.index)
            .finish()
    }
}

/// A set of operations the engine can index: the macro's array and the builder's vector.
pub(crate) trait OpSet {
    /// How many slots.
    fn len(&self) -> usize;
    /// The operation at `i`, unless it was removed. (Spent operations are returned: the
    /// engine skips them itself where their entry is known to be unlinked.)
    fn op(&mut self, i: usize) -> Option<&mut dyn Operation>;

    /// The operation at `i` if it can still be carried out. Call it only while no entry of
    /// the set is linked (steps 1 and 2).
    fn live_op(&mut self, i: usize) -> Option<&mut dyn Operation> {
        self.op(i).filter(|op| !op.is_spent())
    }
}

/// The macro's operations.
struct OpSlice<'o, 'a>(&'o mut [OpRef<'a>]);

impl OpSet for OpSlice<'_, '_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn op(&mut self, i: usize) -> Option<&mut dyn Operation> {
        Some(self.0[i].get())
    }
}

impl<'a> OpSet for Vec<Option<Box<dyn Operation + 'a>>> {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn op(&mut self, i: usize) -> Option<&mut dyn Operation> {
        self[i].as_deref_mut().map(|op| op as &mut dyn Operation)
    }
}

/// The macro's entry point: runs a selection over `ops`; returns the index of the
/// operation carried out, whose result is then in its op, or `None` if none was (the
/// `default` arm runs).
#[doc(hidden)]
pub fn __select(ops: &mut [OpRef<'_>], timeout: __Timeout) -> Option<usize> {
    let wait = match timeout {
        __Timeout::Never => Wait::Until(None),
        __Timeout::Now => Wait::No,
        // A timeout too large to represent is no timeout.
        __Timeout::After(d) => Wait::Until(Instant::now().checked_add(d)),
    };
    run(&mut OpSlice(ops), wait, false)
}

/// How long [`select!`](crate::select) may wait: its `default` arm, if any.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum __Timeout {
    /// No `default` arm: wait for an operation.
    Never,
    /// `default =>`: do not wait.
    Now,
    /// `default(timeout) =>`: wait at most this long.
    After(Duration),
}

/// Steps 1 to 5 of the protocol (module doc). Returns the index of the operation carried
/// out (with `observe`: found ready), or `None` if `wait` ran out first.
fn run(ops: &mut dyn OpSet, wait: Wait, observe: bool) -> Option<usize> {
    let n = ops.len();
    // Made at the first registration, and kept in place (entries point to it) until we
    // return.
    let mut selection_slot: Option<Selection> = None;
    loop {
        // Step 1.
        if let Some(i) = first_pass(ops, observe) {
            return Some(i);
        }
        let deadline = match wait {
            Wait::No => return None,
            Wait::Until(deadline) => deadline,
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        if (0..n).all(|i| ops.live_op(i).is_none()) {
            // Nothing can ever become ready: wait out the deadline.
            wait_for_nothing(deadline);
            return None;
        }
        let selection: &Selection =
            selection_slot.get_or_insert_with(Selection::for_current_thread);
        selection.reset();
        // Steps 2 to 4; the guard does step 4 on every path, unwinding included.
        let mut registration = Registration {
            ops: &mut *ops,
            selection,
            attempted: 0,
        };
        let mut saw_ready = false;
        for i in 0..n {
            registration.attempted = i + 1;
            let Some(op) = registration.ops.live_op(i) else {
                continue;
            };
            // SAFETY: the selection lives in this frame and does not move until we return;
            // the op stays in place (we hold `&mut` to the set) and `registration` calls
            // `unregister` for it before either goes away.
            if !unsafe { op.register(selection, i, observe) } {
                saw_ready = true;
                break;
            }
            if !selection.is_waiting() {
                // Already claimed through an earlier entry: no point linking more.
                break;
            }
        }
        // Step 3.
        let end = if saw_ready {
            selection
                .settle()
                .map(|(index, outcome)| WaitEnd::Done { index, outcome })
        } else {
            Some(selection.wait(WaitReason::ChannelSelect, deadline))
        };
        // Step 4 (the guard also settles, which is a no-op now).
        drop(registration);
        // Step 5.
        match end {
            Some(WaitEnd::Done { index, outcome }) => {
                let op = ops.op(index).expect("a completed operation is live");
                if !observe {
                    op.complete(outcome);
                }
                return Some(index);
            }
            Some(WaitEnd::TimedOut) => return None,
            // Aborted after seeing a ready operation: try again.
            None => {}
        }
    }
}

/// Step 1: tries each operation once, in a random order.
fn first_pass(ops: &mut dyn OpSet, observe: bool) -> Option<usize> {
    let n = ops.len();
    let mut small = [0u32; 32];
    let mut large = Vec::new();
    let order: &mut [u32] = if n <= small.len() {
        &mut small[..n]
    } else {
        large.extend(0..n as u32);
        &mut large
    };
    for (i, slot) in order.iter_mut().enumerate() {
        *slot = i as u32;
    }
    shuffle(order);
    for &i in order.iter() {
        let i = i as usize;
        let Some(op) = ops.live_op(i) else {
            continue;
        };
        let done = if observe { op.is_ready() } else { op.try_now() };
        if done {
            return Some(i);
        }
    }
    None
}

/// A selection with no live operation: parks until `deadline` (forever with `None`).
fn wait_for_nothing(deadline: Option<Instant>) {
    loop {
        match deadline {
            None => park::park(WaitReason::ChannelSelect),
            Some(d) => {
                if Instant::now() >= d {
                    return;
                }
                park::park_until(WaitReason::ChannelSelect, d);
            }
        }
    }
}

/// Registered operations: on drop (normal return or unwinding), makes sure no waker will
/// act on the selection any more, then unlinks every entry a waker did not (step 4).
struct Registration<'o, 's> {
    ops: &'o mut dyn OpSet,
    selection: &'s Selection,
    /// Operations `0..attempted` may have been linked.
    attempted: usize,
}

impl Drop for Registration<'_, '_> {
    fn drop(&mut self) {
        // No parking here: this also runs while the thread is unwound.
        self.selection.settle();
        for i in 0..self.attempted {
            if let Some(op) = self.ops.op(i) {
                // SAFETY: `register` was called for this op in this round (or the op was
                // skipped, and `unregister` finds it unlinked), and the selection has just
                // been settled out of `WAITING`.
                unsafe { op.unregister() };
            }
        }
    }
}

/// Shuffles `order` uniformly (Fisher-Yates).
fn shuffle(order: &mut [u32]) {
    for i in (1..order.len()).rev() {
        let j = random_below(i + 1);
        order.swap(i, j);
    }
}

/// A number in `0..n`, from a thread-local xorshift64* generator; `n > 0`.
///
/// Not for anything but spreading choices: it only has to make every ready operation
/// equally likely. Per kernel thread, which is fine for green threads: nothing switches
/// in the middle of a call.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            x = seed();
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // Lemire's multiply-shift maps `r` onto `0..n` without a division.
        ((u128::from(r) * n as u128) >> 64) as usize
    })
}

/// A distinct, non-zero seed per kernel thread.
fn seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    // Relaxed: the counter only has to hand out distinct values.
    let mut z = NEXT.fetch_add(0x9e37_79b9_7f4a_7c15, Relaxed);
    // splitmix64's finalizer spreads consecutive values.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z | 1
}

#[cfg(test)]
mod tests {
    use super::{random_below, shuffle};

    #[test]
    fn shuffle_is_a_permutation_and_spreads() {
        let mut firsts = [0u32; 4];
        for _ in 0..40_000 {
            let mut order = [0, 1, 2, 3];
            shuffle(&mut order);
            let mut sorted = order;
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3]);
            firsts[order[0] as usize] += 1;
        }
        for f in firsts {
            assert!((9_000..11_000).contains(&f), "{firsts:?}");
        }
        assert!((0..1000).all(|_| random_below(3) < 3));
    }
}
