//! [`Sender`]: the sending end.

use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chan::{Chan, SendFailure, Wait};
use super::error::{SendError, SendTimeoutError, TrySendError};

/// The sending end of a channel. Clone it for more producers; when the last clone is
/// dropped, the channel is disconnected for the receivers (they drain what is buffered,
/// then get `Disconnected`).
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    pub(super) fn new(chan: Arc<Chan<T>>) -> Sender<T> {
        Sender { chan }
    }

    /// The channel, for a select operation.
    pub(super) fn chan(&self) -> &Chan<T> {
        &self.chan
    }

    /// The channel's address: identifies it while this handle lives.
    pub(super) fn chan_ptr(&self) -> *const Chan<T> {
        Arc::as_ptr(&self.chan)
    }

    /// Sends `message`, parking while the channel is full (for a rendezvous channel:
    /// until a receiver takes it). Fails, giving the message back, if every receiver is
    /// gone.
    // Always, as `Chan`'s fast path it wraps (`chan.rs`).
    #[inline(always)]
    pub fn send(&self, message: T) -> Result<(), SendError<T>> {
        match self.chan.send(message, Wait::Until(None)) {
            Ok(()) => Ok(()),
            Err(SendFailure::Disconnected(m)) => Err(SendError(m)),
            Err(SendFailure::Full(_) | SendFailure::Timeout(_)) => unreachable!(),
        }
    }

    /// Sends `message` if that is possible without waiting.
    pub fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        match self.chan.send(message, Wait::No) {
            Ok(()) => Ok(()),
            Err(SendFailure::Full(m)) => Err(TrySendError::Full(m)),
            Err(SendFailure::Disconnected(m)) => Err(TrySendError::Disconnected(m)),
            Err(SendFailure::Timeout(_)) => unreachable!(),
        }
    }

    /// Like [`Sender::send`], but gives up (returning the message) after `timeout`.
    pub fn send_timeout(&self, message: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        // A timeout too large to represent is no timeout.
        self.send_until(message, Instant::now().checked_add(timeout))
    }

    /// Like [`Sender::send`], but gives up (returning the message) at `deadline`.
    pub fn send_deadline(&self, message: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_until(message, Some(deadline))
    }

    fn send_until(&self, message: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        match self.chan.send(message, Wait::Until(deadline)) {
            Ok(()) => Ok(()),
            Err(SendFailure::Timeout(m)) => Err(SendTimeoutError::Timeout(m)),
            Err(SendFailure::Disconnected(m)) => Err(SendTimeoutError::Disconnected(m)),
            Err(SendFailure::Full(_)) => unreachable!(),
        }
    }

    /// The number of buffered messages.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether no message is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the buffer is full (always true for a rendezvous channel, never for an
    /// unbounded one).
    pub fn is_full(&self) -> bool {
        self.chan.is_full()
    }

    /// The most messages the channel buffers: `None` if unbounded, `Some(0)` for rendezvous.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }

    /// Whether `self` and `other` send into the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        // Relaxed, as for `Arc`: a new handle is made from a live one, so the count cannot
        // reach zero meanwhile.
        self.chan.senders.fetch_add(1, Relaxed);
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // AcqRel: the last one to go sees every other sender's operations as done.
        if self.chan.senders.fetch_sub(1, AcqRel) == 1 {
            self.chan.disconnect_senders();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sender { .. }")
    }
}
