//! The reactor of a worker: where it sleeps, and how it learns that a descriptor is ready.
//!
//! Each worker of a green-thread runtime owns one reactor, of one of two backends
//! ([`crate::io::IoBackend`]): [`epoll`] or [`uring`] (io_uring). Both give the worker the
//! same four things, and each backend's module docs say how and why it is sound:
//!
//! - **Sleeping** ([`Reactor::poll`] with a timeout): a worker with nothing to run waits in
//!   the kernel (`epoll_wait` or `io_uring_enter`), with the time to its next timer as the
//!   timeout.
//! - **Waking** ([`Reactor::wake`]): another kernel thread ends that sleep by writing the
//!   worker's eventfd (the `sleeping` / hint handshakes of `sched/README.md` decide
//!   *whether* to; this is only *how*). An eventfd keeps its count until read, so a wake that
//!   lands before the sleep makes the sleep return at once: the same guarantee as a thread
//!   park token.
//! - **Waiting for a descriptor** ([`wait_readable`], [`wait_writable`], [`wait_until`]):
//!   the green thread registers its interest with its worker's reactor and parks; the
//!   worker, when it sleeps and every 64 switches while busy (only while something is
//!   registered), collects what is ready and unparks the waiting threads.
//! - **Registering for good**: a stream registers its socket once, at its first wait, and
//!   keeps the readiness the reactor reports in a `Registration` (`registration.rs`): an
//!   edge-triggered epoll registration (on the io_uring backend too, in an epoll instance
//!   the ring watches); its waits then register nothing.
//! - **Never starving I/O**: that busy check is [`Reactor::has_pending`] then a zero-timeout
//!   [`Reactor::poll`].
//!
//! A wait may have a deadline ([`wait_until`], used by socket timeouts): the thread then
//! parks with `park::park_until` and, woken by its timer instead of its event, sees its
//! wait not ready and withdraws it. An event that fires in the same round as the timer
//! unparks a thread that has already given up; that leaves a token, which is only a
//! spurious wakeup for a later park, and those are allowed. Each caller names its own wait
//! reason (`tcp read`, `udp recv`, ...) so that dumps say what a thread waits for.
//!
//! Kernel threads (the one-to-one model, or outside any runtime) have no reactor: they
//! wait with `poll(2)` (`ppoll` with the time left to the deadline).

pub(crate) mod epoll;
pub(crate) mod registration;
pub(crate) mod uring;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use registration::Registration;

use crate::io::IoBackend;
use crate::park::{self, WaitReason};
use crate::sched::context;

/// One worker's reactor.
// One per worker, inside its shared state: the size does not matter, and a box would put
// a pointer chase on every wake and poll.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Reactor {
    Epoll(epoll::EpollReactor),
    Uring(uring::UringReactor),
}

impl Reactor {
    /// A reactor of `backend`, which must be resolved (not `Auto`).
    pub(crate) fn new(backend: IoBackend) -> io::Result<Reactor> {
        match backend {
            IoBackend::Epoll => epoll::EpollReactor::new().map(Reactor::Epoll),
            IoBackend::IoUring => uring::UringReactor::new().map(Reactor::Uring),
            IoBackend::Auto => unreachable!("a reactor is built for a resolved backend"),
        }
    }

    /// Wakes the worker if it sleeps in [`Reactor::poll`], or makes its next sleep return
    /// at once. Any kernel thread may call this.
    pub(crate) fn wake(&self) {
        match self {
            Reactor::Epoll(r) => r.wake(),
            Reactor::Uring(r) => r.wake(),
        }
    }

    /// Whether a busy worker should poll: some wait or request is outstanding.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        match self {
            Reactor::Epoll(r) => r.has_registrations(),
            Reactor::Uring(r) => r.has_waiters(),
        }
    }

    /// Whether a green thread of this worker waits for I/O here (a registered socket
    /// nobody waits on does not count).
    pub(crate) fn has_waiters(&self) -> bool {
        match self {
            Reactor::Epoll(r) => r.has_registrations(),
            Reactor::Uring(r) => r.has_waiters(),
        }
    }

    /// Completes or cancels every request in flight, before the worker exits (io_uring
    /// only: an epoll wait leaves nothing in the kernel once its waiter is gone). Called
    /// only by the worker's driver, after its green threads are gone.
    pub(crate) fn drain(&self) {
        match self {
            Reactor::Epoll(_) => {}
            Reactor::Uring(r) => r.drain(),
        }
    }

    /// Waits up to `timeout` (`None`: until woken; zero: just looks) and unparks the thread
    /// of every wait that is ready. Called only by the worker's driver.
    pub(crate) fn poll(&self, timeout: Option<Duration>) {
        match self {
            Reactor::Epoll(r) => r.poll(timeout),
            Reactor::Uring(r) => r.poll(timeout),
        }
    }

    /// The epoll instance that holds this worker's persistent registrations, on either
    /// backend (`registration.rs`; `uring.rs` says why io_uring keeps one too).
    fn registrations(&self) -> &epoll::EpollReactor {
        match self {
            Reactor::Epoll(r) => r,
            Reactor::Uring(r) => r.streams(),
        }
    }

    /// Registers `fd` for good (`registration.rs`). Called on a green thread of this
    /// reactor's worker.
    pub(crate) fn register(&self, fd: BorrowedFd<'_>) -> io::Result<Arc<Registration>> {
        self.registrations().register(fd)
    }

    /// Ends the registration of `fd`, which must still be open (`registration.rs`,
    /// "Lifetime").
    pub(crate) fn deregister(&self, fd: BorrowedFd<'_>, registration: &Arc<Registration>) {
        self.registrations().deregister(fd, registration);
    }

    /// Counts a thread waiting on a registration, for [`Reactor::has_pending`] and
    /// [`Reactor::has_waiters`], while the guard lives.
    pub(crate) fn count_wait(&self) -> WaitCount<'_> {
        self.registrations().waits()
    }
}

/// One count held in a counter while it lives.
pub(crate) struct WaitCount<'a>(&'a AtomicUsize);

impl<'a> WaitCount<'a> {
    fn new(counter: &'a AtomicUsize) -> WaitCount<'a> {
        counter.fetch_add(1, Relaxed);
        WaitCount(counter)
    }
}

impl Drop for WaitCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Interest in a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Readable, or an error or hang-up to report.
    Read,
    /// Writable, or an error or hang-up to report.
    Write,
}

/// Waits until `fd` is readable (or has an error or hang-up to report): only the calling
/// green thread waits; its worker runs others meanwhile. On a kernel thread, `poll(2)`.
///
/// For descriptors made by other libraries (pipes, eventfds, sockets): set them
/// non-blocking, try the operation, and on `WouldBlock` wait with this and try again.
pub fn wait_readable(fd: impl AsFd) -> io::Result<()> {
    wait_for(fd.as_fd(), Interest::Read, WaitReason::IoReadable)
}

/// Waits until `fd` is writable (or has an error or hang-up to report); see
/// [`wait_readable`].
pub fn wait_writable(fd: impl AsFd) -> io::Result<()> {
    wait_for(fd.as_fd(), Interest::Write, WaitReason::IoWritable)
}

/// Waits until `fd` is ready for `interest`, recording `reason` for dumps.
pub(crate) fn wait_for(
    fd: BorrowedFd<'_>,
    interest: Interest,
    reason: WaitReason,
) -> io::Result<()> {
    wait_until(fd, interest, reason, None).map(|_ready| ())
}

/// Waits until `fd` is ready for `interest` or `deadline` (if any) has passed: `Ok(true)`
/// when ready, `Ok(false)` on timeout, never before the deadline. Only the calling green
/// thread waits; on a kernel thread, `ppoll(2)`. `reason` is recorded for dumps.
pub(crate) fn wait_until(
    fd: BorrowedFd<'_>,
    interest: Interest,
    reason: WaitReason,
    deadline: Option<Instant>,
) -> io::Result<bool> {
    let worker = match (context::current_green(), context::current_worker()) {
        (Some(_), Some(w)) => w,
        // The green thread that called fork(), in the child (fork.rs).
        (Some(_), None) => {
            return Err(crate::fork::inherited_error(
                "wait for I/O on the green thread that called fork()",
            ))
        }
        (None, _) => return poll_blocking(fd, interest, deadline),
    };
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Ok(false);
    }
    match &worker.shared().reactor {
        Reactor::Epoll(r) => r.wait_until(fd, interest, reason, deadline),
        Reactor::Uring(r) => r.wait_until(fd, interest, reason, deadline),
    }
}

/// Parks the calling green thread until `ready()` or `deadline`: true when ready, false
/// when the deadline passed first (never before it). The wait a backend registered must
/// unpark the thread after making `ready()` true. `fd` is what dumps show it waits on.
fn park_until_ready(
    ready: impl Fn() -> bool,
    reason: WaitReason,
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> bool {
    let _shown = park::ShowWaitFd::new(fd.as_raw_fd());
    loop {
        if ready() {
            return true;
        }
        if !park_once(reason, deadline) {
            return false;
        }
    }
}

/// Parks the calling thread once, until unparked or `deadline`; false, without parking, if
/// the deadline has passed already.
fn park_once(reason: WaitReason, deadline: Option<Instant>) -> bool {
    match deadline {
        None => park::park(reason),
        Some(d) if Instant::now() >= d => return false,
        Some(d) => park::park_until(reason, d),
    }
    true
}

/// The `timespec` for a relative timeout.
fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// A kernel thread's wait: `ppoll(2)` with the time left, retried on `EINTR` and on an
/// early return.
fn poll_blocking(
    fd: BorrowedFd<'_>,
    interest: Interest,
    deadline: Option<Instant>,
) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags};
    let flags = match interest {
        Interest::Read => PollFlags::IN | PollFlags::RDHUP,
        Interest::Write => PollFlags::OUT,
    };
    let mut fds = [PollFd::new(&fd, flags)];
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                Some(timespec(left))
            }
        };
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
