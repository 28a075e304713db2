//! [`Receiver`]: the receiving end.

use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chan::{Chan, RecvFailure, Wait};
use super::error::{RecvError, RecvTimeoutError, TryRecvError};
use super::iter::{Iter, TryIter};

/// The receiving end of a channel. Clone it for more consumers (each message goes to one
/// of them); when the last clone is dropped, senders get their messages back in errors and
/// buffered messages are dropped.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Receiver<T> {
    pub(super) fn new(chan: Arc<Chan<T>>) -> Receiver<T> {
        Receiver { chan }
    }

    /// The channel, for a select operation.
    pub(super) fn chan(&self) -> &Chan<T> {
        &self.chan
    }

    /// The channel's address: identifies it while this handle lives.
    pub(super) fn chan_ptr(&self) -> *const Chan<T> {
        Arc::as_ptr(&self.chan)
    }

    /// Receives a message, parking while the channel is empty. Fails once the channel is
    /// empty and every sender is gone.
    // Always, as `Chan`'s fast path it wraps (`chan.rs`).
    #[inline(always)]
    pub fn recv(&self) -> Result<T, RecvError> {
        match self.chan.recv(Wait::Until(None)) {
            Ok(m) => Ok(m),
            Err(RecvFailure::Disconnected) => Err(RecvError),
            Err(RecvFailure::Empty | RecvFailure::Timeout) => unreachable!(),
        }
    }

    /// Receives a message if one is ready (for a rendezvous channel: if a sender waits).
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.chan.recv(Wait::No) {
            Ok(m) => Ok(m),
            Err(RecvFailure::Empty) => Err(TryRecvError::Empty),
            Err(RecvFailure::Disconnected) => Err(TryRecvError::Disconnected),
            Err(RecvFailure::Timeout) => unreachable!(),
        }
    }

    /// Like [`Receiver::recv`], but gives up after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        // A timeout too large to represent is no timeout.
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Like [`Receiver::recv`], but gives up at `deadline`.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(Some(deadline))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        match self.chan.recv(Wait::Until(deadline)) {
            Ok(m) => Ok(m),
            Err(RecvFailure::Timeout) => Err(RecvTimeoutError::Timeout),
            Err(RecvFailure::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(RecvFailure::Empty) => unreachable!(),
        }
    }

    /// A blocking iterator: yields messages until the channel is empty and disconnected.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter::new(self)
    }

    /// A non-blocking iterator: yields the messages that are ready, then stops.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter::new(self)
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

    /// Whether `self` and `other` receive from the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        // Relaxed, as for `Arc`: a new handle is made from a live one.
        self.chan.receivers.fetch_add(1, Relaxed);
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // AcqRel: the last one to go sees every other receiver's operations as done.
        if self.chan.receivers.fetch_sub(1, AcqRel) == 1 {
            self.chan.disconnect_receivers();
        }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Receiver { .. }")
    }
}
