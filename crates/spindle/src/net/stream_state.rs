//! [`StreamState`]: what a spindle stream (TCP or Unix) keeps beside its socket, so that a
//! read that must wait costs the wait and nothing more.
//!
//! A keep-alive server's connection spends its life in one loop: read a request, write the
//! answer, read again. The second read almost always finds nothing yet, and before this
//! state existed it cost two system calls on top of the wait: the `recv` that failed with
//! `EAGAIN`, and a `getsockopt(SO_RCVTIMEO)` for the deadline of the wait (the timeout lives
//! in the socket, see the module docs of [`crate::net`]). `strace` of `spindle-lab bench
//! http` counted one of each per request, beside one `recv` and one `send` that did work.
//! tokio, the peer, makes neither. Two things remove them:
//!
//! - **The short-read hint.** A read that returned fewer bytes than it was given emptied the
//!   socket's receive queue. The next read on this handle then waits for readability
//!   *first*, without trying the `recv`. That is always sound: both backends (and `ppoll` on
//!   kernel threads) look at the descriptor's readiness when a wait is registered, so data
//!   that came in meanwhile ends the wait at once; the price of a wrong guess is one
//!   registration, where the right guess saves a system call. tokio clears its readiness
//!   on a short read for the same reason. The hint is per handle (a clone starts without
//!   it) and is only a hint, so `Relaxed` is enough for it.
//! - **Cached timeouts.** The read and write timeouts are read from the socket once, when a
//!   wait first needs them, and kept in a record that `try_clone` clones share. Setting a
//!   timeout through any of them sets the socket's and forgets the cached value, so the next
//!   wait reads it back, rounded to the kernel's clock ticks as it applies. A timeout changed
//!   on the same socket by other means (a std handle converted from a clone, or the raw
//!   descriptor) is not seen by a spindle handle that has cached it: set timeouts through
//!   spindle's handles. The cache is two `AtomicU64`s with `Relaxed` accesses: each value is
//!   read and written whole, and publishes nothing else.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::sockopt::{self, Timeout};

use super::retry_from;
use crate::io::Interest;
use crate::park::WaitReason;

/// A cached timeout not read from the socket yet.
const UNKNOWN: u64 = u64::MAX;
/// A cached "no timeout" (a zero timeout cannot be set, so 0 is free for it).
const NONE: u64 = 0;

/// The state of one stream handle; see the module docs.
#[derive(Debug)]
pub(crate) struct StreamState {
    timeouts: Arc<CachedTimeouts>,
    /// The last read on this handle returned less than it was given.
    read_drained: AtomicBool,
}

/// The socket's timeouts as last read from it, shared by a handle and its clones.
#[derive(Debug)]
struct CachedTimeouts {
    read: AtomicU64,
    write: AtomicU64,
}

impl StreamState {
    /// The state of a new handle to a socket: nothing known yet.
    pub(crate) fn new() -> StreamState {
        StreamState {
            timeouts: Arc::new(CachedTimeouts {
                read: AtomicU64::new(UNKNOWN),
                write: AtomicU64::new(UNKNOWN),
            }),
            read_drained: AtomicBool::new(false),
        }
    }

    /// The state of a `try_clone` of this handle: the same timeouts, no hint.
    pub(crate) fn for_clone(&self) -> StreamState {
        StreamState {
            timeouts: self.timeouts.clone(),
            read_drained: AtomicBool::new(false),
        }
    }

    /// Sets the socket's timeout of `which` (as std: `SO_RCVTIMEO` or `SO_SNDTIMEO`, where
    /// std's getters and other handles see it too) and forgets the cached one.
    pub(crate) fn set_timeout(
        &self,
        fd: BorrowedFd<'_>,
        which: Timeout,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            // std's error, word for word.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        sockopt::set_socket_timeout(fd, which, timeout)?;
        self.cached(which).store(UNKNOWN, Relaxed);
        Ok(())
    }

    /// The timeout of `which` a wait applies: cached, or read from the socket once.
    pub(crate) fn timeout(
        &self,
        fd: BorrowedFd<'_>,
        which: Timeout,
    ) -> io::Result<Option<Duration>> {
        let cached = self.cached(which);
        match cached.load(Relaxed) {
            UNKNOWN => {
                let timeout = sockopt::socket_timeout(fd, which)?;
                let encoded = match timeout {
                    None => NONE,
                    // Nanoseconds, short of the two reserved values (584 years and more
                    // wait as long as one can).
                    Some(t) => u64::try_from(t.as_nanos())
                        .unwrap_or(u64::MAX)
                        .clamp(1, UNKNOWN - 1),
                };
                cached.store(encoded, Relaxed);
                Ok(timeout)
            }
            NONE => Ok(None),
            nanos => Ok(Some(Duration::from_nanos(nanos))),
        }
    }

    fn cached(&self, which: Timeout) -> &AtomicU64 {
        match which {
            Timeout::Recv => &self.timeouts.read,
            Timeout::Send => &self.timeouts.write,
        }
    }

    /// A read into `len` bytes of buffer by `op`, waiting as [`super::retry`] does, first
    /// if the last read on this handle came back short (module docs).
    pub(crate) fn read(
        &self,
        fd: BorrowedFd<'_>,
        reason: WaitReason,
        len: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        let wait_first = len > 0 && self.read_drained.load(Relaxed);
        let n = retry_from(
            fd,
            Interest::Read,
            reason,
            wait_first,
            || self.timeout(fd, Timeout::Recv),
            op,
        )?;
        let drained = n < len;
        if drained != wait_first {
            self.read_drained.store(drained, Relaxed);
        }
        Ok(n)
    }

    /// Any other call that waits for `interest` (a write, a peek), as [`super::retry`] with
    /// the cached timeout of that direction.
    pub(crate) fn call<T>(
        &self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        reason: WaitReason,
        op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        let which = match interest {
            Interest::Read => Timeout::Recv,
            Interest::Write => Timeout::Send,
        };
        retry_from(fd, interest, reason, false, || self.timeout(fd, which), op)
    }
}
