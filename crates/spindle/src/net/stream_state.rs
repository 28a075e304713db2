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
//!   that came in meanwhile ends the wait at once, and a wait that times out or fails
//!   before the call was tried tries it once before it reports (`retry_from`). The right
//!   guess saves a system call; a wrong one (a stream whose data keeps coming, so that it
//!   is there again by the next read) costs a park and a trip through the reactor, which a
//!   busy worker looks at every 64 switches: tokio clears its readiness on a short read
//!   and pays the same. A read capped by the kernel (at about 2 GiB) or stopped at
//!   a boundary (TCP's urgent mark, a Unix socket's passed descriptors) also comes back
//!   short with data left: one wrong guess. With `SO_RCVLOWAT` set,
//!   a read after a short one waits for that many bytes, as std's blocking read does,
//!   where the first read of a call returns what is there. The hint is per handle (a
//!   clone starts without it) and is only a hint, so `Relaxed` is enough for it.
//! - **Cached timeouts.** The read and write timeouts are read from the socket once, when a
//!   wait (or a getter: `read_timeout` gives what waits apply) first needs them, and kept in
//!   a record that `try_clone` clones share. Setting a timeout through any of them sets the
//!   socket's and forgets the cached value, so the next wait reads it back, rounded to the
//!   kernel's clock ticks as it applies. A timeout changed on the same socket by other
//!   means (a std handle, a spindle stream built separately from a `dup` or from std, the
//!   raw descriptor) is not seen by a handle that has cached it: set a stream's timeouts
//!   through it or its `try_clone` clones.
//!
//! - **A registration for good.** The first time a handle must wait on a green thread of
//!   a worker, it registers its socket with that worker's reactor once, edge-triggered
//!   (`io/reactor/registration.rs`), instead of registering and deregistering it around
//!   every wait: on epoll two `epoll_ctl` calls per request fewer, on io_uring a poll
//!   request armed and torn down per request fewer. From
//!   then on, waits of that handle on that worker read the registration's readiness: a
//!   call is tried when its direction is marked ready, and a call that fails with `EAGAIN`
//!   clears the mark, as does a TCP read that comes back short where that proves the
//!   queue empty (which takes the short-read hint's place); the next call waits for the
//!   reactor to mark it again. Where a short read proves nothing (a Unix stream, urgent
//!   data, a read of a GiB or more) the next read tries its call first. The handle deregisters
//!   when dropped, before its socket closes (the stream types declare their state before
//!   their socket for that). Waits on other workers and on kernel threads wait as before.
//!
//! The cache of one direction is one `AtomicU64`: a timeout in nanoseconds (below
//! `UNKNOWN_BIT`), [`NONE`], or "unknown" (`UNKNOWN_BIT` set) with a generation in the
//! other bits. A setter stores a fresh generation after its `setsockopt`; a reader that
//! found "unknown" reads the socket and stores what it read only with a compare-exchange
//! from the word it found. So a value read before a concurrent set can never be stored
//! after that set's invalidation (the generation differs: no ABA), and a value read after
//! the set is the new one anyway. `Relaxed` is enough: each word is read and written
//! whole and publishes nothing else, and the socket itself orders the set against the
//! read.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustix::net::sockopt::{self, Timeout};

use super::{io_budget, retry_from, timed_out};
use crate::fork::Provenance;
use crate::io::reactor::registration::{Registration, Snapshot};
use crate::io::reactor::uring;
use crate::io::reactor::wait_until;
use crate::io::Interest;
use crate::park::WaitReason;
use crate::sched::context::{self, SwitchBan};
use crate::sched::worker::WorkerShared;

/// Set in a cached timeout not read from the socket yet; the other bits are a generation.
const UNKNOWN_BIT: u64 = 1 << 63;
/// A cached "no timeout" (a zero timeout cannot be set, so 0 is free for it).
const NONE: u64 = 0;

/// The most bytes a read may be given for its coming back short to prove the socket's
/// queue empty (the kernel moves at most about 2 GiB per call).
const MAX_PROOF: usize = 1 << 30;

/// The socket a stream reads: whether a read that comes back short proves its receive
/// queue empty (`io/reactor/registration.rs`), and what dumps say its reads wait for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadKind {
    /// Yes, below [`MAX_PROOF`] and before any urgent data.
    Tcp,
    /// No: reads stop at the boundaries of passed descriptors and credentials.
    Unix,
}

impl ReadKind {
    fn reason(self) -> WaitReason {
        match self {
            ReadKind::Tcp => WaitReason::TcpRead,
            ReadKind::Unix => WaitReason::UnixRead,
        }
    }
}

/// The bytes a vectored read into `bufs` is given: std passes the kernel the first
/// 1024 slices (`IOV_MAX`) only.
pub(crate) fn vectored_len(bufs: &[std::io::IoSliceMut<'_>]) -> usize {
    bufs.iter().take(1024).map(|b| b.len()).sum()
}

/// The state of one stream handle; see the module docs.
#[derive(Debug)]
pub(crate) struct StreamState {
    timeouts: Arc<CachedTimeouts>,
    /// The last read on this handle returned less than it was given.
    read_drained: AtomicBool,
    /// The handle's registration with a worker's reactor, once it has one.
    registered: OnceLock<Registered>,
}

/// A handle's socket registered with a worker's reactor (module docs).
struct Registered {
    worker: Arc<WorkerShared>,
    registration: Arc<Registration>,
    fd: RawFd,
    /// The process that registered: a fork child shares the epoll and must not touch it.
    provenance: Provenance,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered").field("fd", &self.fd).finish()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.provenance.is_inherited() {
            return;
        }
        // SAFETY: the stream types drop their state before their socket, so `fd` is open.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        self.worker.reactor.deregister(fd, &self.registration);
    }
}

/// The socket's timeouts as last read from it, shared by a handle and its clones.
#[derive(Debug)]
struct CachedTimeouts {
    read: AtomicU64,
    write: AtomicU64,
    /// Generations for "unknown" words, so each invalidation is a value never seen before.
    generation: AtomicU64,
}

impl StreamState {
    /// The state of a new handle to a socket: nothing known yet.
    pub(crate) fn new() -> StreamState {
        StreamState {
            timeouts: Arc::new(CachedTimeouts {
                read: AtomicU64::new(UNKNOWN_BIT),
                write: AtomicU64::new(UNKNOWN_BIT),
                generation: AtomicU64::new(1),
            }),
            read_drained: AtomicBool::new(false),
            registered: OnceLock::new(),
        }
    }

    /// The state of a `try_clone` of this handle: the same timeouts, no hint.
    pub(crate) fn for_clone(&self) -> StreamState {
        StreamState {
            timeouts: self.timeouts.clone(),
            read_drained: AtomicBool::new(false),
            registered: OnceLock::new(),
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
        let generation = self.timeouts.generation.fetch_add(1, Relaxed) & !UNKNOWN_BIT;
        self.cached(which).store(UNKNOWN_BIT | generation, Relaxed);
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
            unknown if unknown & UNKNOWN_BIT != 0 => {
                let timeout = sockopt::socket_timeout(fd, which)?;
                let encoded = match timeout {
                    None => NONE,
                    // Nanoseconds, below the "unknown" bit (292 years and more wait as long
                    // as one can).
                    Some(t) => u64::try_from(t.as_nanos())
                        .unwrap_or(u64::MAX)
                        .clamp(1, UNKNOWN_BIT - 1),
                };
                // Only if no set came in between (module docs); else the next call reads
                // the socket again.
                let _ = cached.compare_exchange(unknown, encoded, Relaxed, Relaxed);
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
        reads: ReadKind,
        len: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        let wait_first = len > 0 && self.read_drained.load(Relaxed);
        // Whether a short read proves the queue empty (`io/reactor/registration.rs`).
        let proves_empty = |&n: &usize| reads == ReadKind::Tcp && len < MAX_PROOF && n < len;
        let n = self.retry(
            fd,
            Interest::Read,
            reads.reason(),
            wait_first,
            proves_empty,
            op,
        )?;
        let drained = n < len;
        // For `len > 0`, `wait_first` is the hint as it was: store only a change (a store
        // dirties the line other handles' threads may read). An empty read leaves it alone.
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
        self.retry(fd, interest, reason, false, |_| false, op)
    }

    /// A write of `bufs` (the first 1024 slices, as std) as a send request of the calling
    /// green thread's io_uring worker, which the worker submits with its other requests in
    /// one system call (`io/reactor/uring.rs`, "Stream writes"). `None` where that path
    /// does not apply: not on such a worker, a thread that may not switch, nothing to
    /// write, more than [`uring::STREAM_SEND_MAX`] bytes, a ring that cannot take the
    /// request, or the kernel answered `EAGAIN`; the caller then writes with its own system
    /// call.
    pub(crate) fn ring_write(
        &self,
        fd: BorrowedFd<'_>,
        bufs: &[std::io::IoSlice<'_>],
        reason: WaitReason,
    ) -> Option<io::Result<usize>> {
        let bufs = &bufs[..bufs.len().min(1024)];
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        // A thread that may not park (one unwound at shutdown, say a `BufWriter` flushing
        // on drop) writes with its own system call, as it could before it had to wait.
        if len == 0 || len > uring::STREAM_SEND_MAX || context::switch_ban() != SwitchBan::None {
            return None;
        }
        let ring = uring::current()?;
        let deadline = match self.timeout(fd, Timeout::Send) {
            // A timeout too large to represent is no timeout.
            Ok(timeout) => timeout.and_then(|t| Instant::now().checked_add(t)),
            Err(e) => return Some(Err(e)),
        };
        ring.stream_send(fd, bufs, reason, deadline)
    }

    /// [`retry_from`] with the cached timeout of `interest`'s direction, or on this handle's
    /// registration when it has one with the calling thread's worker, or makes one. A
    /// result for which `short` holds emptied the socket (a short read).
    fn retry<T>(
        &self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        reason: WaitReason,
        wait_first: bool,
        short: impl Fn(&T) -> bool,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        let which = match interest {
            Interest::Read => Timeout::Recv,
            Interest::Write => Timeout::Send,
        };
        let timeout = || self.timeout(fd, which);
        // The worker of the calling green thread, borrowed for the look below (a handle
        // registered already touches no reference count on its way to the call).
        let here = context::current_green().and(context::current_worker());
        let Some(here) = here else {
            return retry_from(fd, interest, reason, wait_first, timeout, op);
        };
        let registered = match self.registered.get() {
            Some(r) if here.drives(&r.worker) => r,
            Some(_) => return retry_from(fd, interest, reason, wait_first, timeout, op),
            None => {
                // Taken before the call below: with migration on, the thread may go on
                // elsewhere after a system call, and `here` is only for right away.
                let worker = here.shared().clone();
                // Register at the first wait: a call that need not wait costs nothing more.
                if !wait_first {
                    match op() {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        done => {
                            io_budget::spend();
                            return done;
                        }
                    }
                }
                match self.register(fd, worker) {
                    Some(r) => r,
                    None => return retry_from(fd, interest, reason, true, timeout, op),
                }
            }
        };
        retry_registered(registered, fd, interest, reason, timeout, short, op)
    }

    /// Registers `fd` with `worker`'s reactor for this handle; `None` if that fails (the
    /// caller waits as before) or another thread registered it meanwhile elsewhere.
    fn register(&self, fd: BorrowedFd<'_>, worker: Arc<WorkerShared>) -> Option<&Registered> {
        let registration = worker.reactor.register(fd).ok()?;
        let mine = Registered {
            worker,
            registration,
            fd: fd.as_raw_fd(),
            provenance: Provenance::here(),
        };
        // Two threads of one handle registering at once: the loser's is dropped, which
        // deregisters it.
        let _ = self.registered.set(mine);
        let registered = self.registered.get()?;
        let here = context::current_worker()?;
        here.drives(&registered.worker).then_some(registered)
    }
}

/// [`retry_from`] on a persistent registration: calls are tried when the registration says
/// their direction is ready, and a failed call or a `short` result (one that proves the
/// socket's queue empty) clears that readiness (`io/reactor/registration.rs`).
fn retry_registered<T>(
    registered: &Registered,
    fd: BorrowedFd<'_>,
    interest: Interest,
    reason: WaitReason,
    timeout: impl FnOnce() -> io::Result<Option<Duration>>,
    short: impl Fn(&T) -> bool,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let registration = &registered.registration;
    let mut timeout = Some(timeout);
    let mut deadline: Option<Instant> = None;
    // Set after a one-shot wait said ready: try the call whatever the registration says.
    let mut force = false;
    loop {
        let seen = registration.snapshot();
        // Wait level-triggered (one-shot) rather than on the registration.
        let mut one_shot = false;
        if force || seen.is_ready(interest) {
            force = false;
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    registration.clear(seen, interest);
                    // A direction marked closed for good that still would block: the
                    // sticky bit would make every wait return at once (module docs of
                    // `registration.rs`), so wait another way, not spin.
                    one_shot = seen.is_closed(interest);
                    if !one_shot {
                        continue;
                    }
                }
                done => {
                    after_call(registration, seen, interest, &done, &short);
                    io_budget::spend();
                    return done;
                }
            }
        }
        if let Some(timeout) = timeout.take() {
            // A timeout too large to represent is no timeout.
            deadline = timeout()?.and_then(|t| Instant::now().checked_add(t));
        }
        let waited = if one_shot {
            None
        } else {
            let _counted = registered.worker.reactor.count_wait();
            registration.wait(interest, reason, fd, deadline)
        };
        let ready = match waited {
            Some(ready) => ready,
            // Another thread waits on this handle for the same direction, or see above.
            None => {
                force = true;
                wait_until(fd, interest, reason, deadline)?
            }
        };
        if !ready {
            // As `retry_from`: one last try before reporting the timeout.
            let seen = registration.snapshot();
            return match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(timed_out()),
                done => {
                    after_call(registration, seen, interest, &done, &short);
                    io_budget::spend();
                    done
                }
            };
        }
    }
}

/// The readiness a call for `interest` that did not block leaves, `seen` taken before it:
/// a result that proves the socket's queue empty clears it; a success the registration did
/// not expect marks it ready again ([`Registration::mark_ready`]), so that the next call
/// tries before it waits.
fn after_call<T>(
    registration: &Registration,
    seen: Snapshot,
    interest: Interest,
    done: &io::Result<T>,
    short: impl Fn(&T) -> bool,
) {
    let Ok(t) = done else { return };
    if short(t) && seen.short_read_proves_empty() {
        registration.clear(seen, interest);
    } else if !seen.is_ready(interest) {
        registration.mark_ready(interest);
    }
}
