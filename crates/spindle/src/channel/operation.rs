//! The operations a selection is made of: a receive from or a send into one channel, each
//! with its select entry and, once carried out, its result. The engine
//! (`channel/select.rs`) sees them through the type-erased [`Operation`]; the
//! [`select!`](crate::select) macro keeps them typed on its stack and takes the result of
//! the one that was carried out.

use std::fmt;

use super::chan::{Chan, RecvFailure, SendFailure, Side, Wait};
use super::entry::{SlotEntry, DISCONNECTED, SERVED};
use super::error::{RecvError, SendError};
use super::receiver::Receiver;
use super::selection::Selection;
use super::sender::Sender;

/// One operation of a selection, as the engine sees it.
pub(crate) trait Operation {
    /// Step 1: carries the operation out if it can complete without waiting, keeping the
    /// result. The entry is in no list.
    fn try_now(&mut self) -> bool;

    /// For `ready`: whether the operation could complete now.
    fn is_ready(&self) -> bool;

    /// Step 2: binds the entry to `selection` as operation `index` (an observer if
    /// `observe`) and registers it with the channel. Returns `false` if the operation was
    /// ready, and then links nothing.
    ///
    /// # Safety
    ///
    /// The entry is in no list; `selection` and `self` stay live and in place until
    /// [`Operation::unregister`] has been called.
    unsafe fn register(&self, selection: &Selection, index: usize, observe: bool) -> bool;

    /// Step 4: unlinks the entry unless a waker did.
    ///
    /// # Safety
    ///
    /// `register` was called in this round, or the entry was never linked; the selection
    /// is no longer `WAITING`.
    unsafe fn unregister(&self);

    /// Step 5: a waker carried the operation out with `outcome`; the entry is unlinked and
    /// the selection settled. Moves the result out of the entry.
    fn complete(&mut self, outcome: u8);

    /// Whether a result is kept that nobody has taken yet.
    fn has_result(&self) -> bool;

    /// Whether the operation cannot be carried out any more (a send whose message is gone).
    fn is_spent(&self) -> bool;

    /// The address of the result slot (`Option<Result<T, RecvError>>`) if this is a
    /// receive from the channel at `chan`.
    fn recv_result(&mut self, chan: *const ()) -> Option<*mut ()>;

    /// The address of the result slot (`Option<Result<(), SendError<T>>>`) if this is a
    /// send into the channel at `chan`.
    fn send_result(&mut self, chan: *const ()) -> Option<*mut ()>;
}

/// A type-erased operation, as [`select!`](crate::select) hands it to the engine.
#[doc(hidden)]
pub struct OpRef<'a>(&'a mut (dyn Operation + 'a));

impl OpRef<'_> {
    pub(crate) fn get(&mut self) -> &mut dyn Operation {
        &mut *self.0
    }
}

impl fmt::Debug for OpRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpRef { .. }")
    }
}

/// A receive operation of a selection.
#[doc(hidden)]
pub struct RecvOp<'a, T> {
    chan: &'a Chan<T>,
    entry: SlotEntry<T>,
    result: Option<Result<T, RecvError>>,
}

impl<'a, T> RecvOp<'a, T> {
    /// A receive from `r`.
    pub fn new(r: &'a Receiver<T>) -> RecvOp<'a, T> {
        RecvOp {
            chan: r.chan(),
            entry: SlotEntry::for_select(None),
            result: None,
        }
    }

    /// The operation, type-erased for the engine.
    pub fn op(&mut self) -> OpRef<'_> {
        OpRef(self)
    }

    /// The result, if this operation was carried out.
    pub fn take_result(&mut self) -> Option<Result<T, RecvError>> {
        self.result.take()
    }
}

impl<T> Operation for RecvOp<'_, T> {
    fn try_now(&mut self) -> bool {
        self.result = match self.chan.recv(Wait::No) {
            Ok(m) => Some(Ok(m)),
            Err(RecvFailure::Disconnected) => Some(Err(RecvError)),
            Err(RecvFailure::Empty) => None,
            Err(RecvFailure::Timeout) => unreachable!("no deadline"),
        };
        self.result.is_some()
    }

    fn is_ready(&self) -> bool {
        self.chan.ready_now(Side::Recv)
    }

    unsafe fn register(&self, selection: &Selection, index: usize, observe: bool) -> bool {
        self.entry.bind(selection, index, observe);
        // SAFETY: the entry is bound and in no list; the caller keeps it (with `self`) and
        // the selection in place until `unregister`.
        unsafe { self.chan.register(&self.entry, Side::Recv) }
    }

    unsafe fn unregister(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { self.chan.unregister(&self.entry, Side::Recv) }
    }

    fn complete(&mut self, outcome: u8) {
        // SAFETY: the entry is unlinked and its selection settled: no waker touches it, and
        // the waker's writes were acquired with `DONE`.
        let message = unsafe { SlotEntry::take(&self.entry) };
        self.result = Some(match (outcome, message) {
            (SERVED, Some(m)) => Ok(m),
            (DISCONNECTED, None) => Err(RecvError),
            _ => unreachable!("receive outcome {outcome} disagrees with its slot"),
        });
    }

    fn has_result(&self) -> bool {
        self.result.is_some()
    }

    fn is_spent(&self) -> bool {
        false
    }

    fn recv_result(&mut self, chan: *const ()) -> Option<*mut ()> {
        let mine: *const Chan<T> = self.chan;
        (mine.cast() == chan).then_some((&raw mut self.result).cast())
    }

    fn send_result(&mut self, _chan: *const ()) -> Option<*mut ()> {
        None
    }
}

impl<T> fmt::Debug for RecvOp<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecvOp { .. }")
    }
}

/// A send operation of a selection; it holds its message until it is carried out.
#[doc(hidden)]
pub struct SendOp<'a, T> {
    chan: &'a Chan<T>,
    /// The entry's slot holds the message while the operation is not carried out.
    entry: SlotEntry<T>,
    result: Option<Result<(), SendError<T>>>,
}

impl<'a, T> SendOp<'a, T> {
    /// A send of `message` into `s`.
    pub fn new(s: &'a Sender<T>, message: T) -> SendOp<'a, T> {
        SendOp {
            chan: s.chan(),
            entry: SlotEntry::for_select(Some(message)),
            result: None,
        }
    }

    /// The operation, type-erased for the engine.
    pub fn op(&mut self) -> OpRef<'_> {
        OpRef(self)
    }

    /// The result, if this operation was carried out.
    pub fn take_result(&mut self) -> Option<Result<(), SendError<T>>> {
        self.result.take()
    }
}

impl<T> Operation for SendOp<'_, T> {
    fn try_now(&mut self) -> bool {
        // SAFETY: the entry is in no list (step 1), so its slot is ours.
        let message = unsafe { SlotEntry::take(&self.entry) }.expect("a live send has its message");
        self.result = match self.chan.send(message, Wait::No) {
            Ok(()) => Some(Ok(())),
            Err(SendFailure::Disconnected(m)) => Some(Err(SendError(m))),
            Err(SendFailure::Full(m)) => {
                // SAFETY: as above.
                unsafe { SlotEntry::put(&self.entry, m) };
                None
            }
            Err(SendFailure::Timeout(_)) => unreachable!("no deadline"),
        };
        self.result.is_some()
    }

    fn is_ready(&self) -> bool {
        self.chan.ready_now(Side::Send)
    }

    unsafe fn register(&self, selection: &Selection, index: usize, observe: bool) -> bool {
        self.entry.bind(selection, index, observe);
        // SAFETY: as in `RecvOp::register`.
        unsafe { self.chan.register(&self.entry, Side::Send) }
    }

    unsafe fn unregister(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { self.chan.unregister(&self.entry, Side::Send) }
    }

    fn complete(&mut self, outcome: u8) {
        // SAFETY: as in `RecvOp::complete`.
        let unsent = unsafe { SlotEntry::take(&self.entry) };
        self.result = Some(match (outcome, unsent) {
            (SERVED, None) => Ok(()),
            (DISCONNECTED, Some(m)) => Err(SendError(m)),
            _ => unreachable!("send outcome {outcome} disagrees with its slot"),
        });
    }

    fn has_result(&self) -> bool {
        self.result.is_some()
    }

    fn is_spent(&self) -> bool {
        // SAFETY: called only while the entry is in no list (between selections, or in
        // steps 1 and 2 before registering it), so its slot is ours.
        !unsafe { SlotEntry::holds_message(&self.entry) }
    }

    fn recv_result(&mut self, _chan: *const ()) -> Option<*mut ()> {
        None
    }

    fn send_result(&mut self, chan: *const ()) -> Option<*mut ()> {
        let mine: *const Chan<T> = self.chan;
        (mine.cast() == chan).then_some((&raw mut self.result).cast())
    }
}

impl<T> fmt::Debug for SendOp<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendOp { .. }")
    }
}
