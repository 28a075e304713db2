//! The reactor of a worker: where it sleeps, and how it learns that a descriptor is ready.
//!
//! Each worker of a green-thread runtime owns one `epoll` instance and one `eventfd`:
//!
//! - **Sleeping.** A worker with nothing to run waits in `epoll_wait`, with the time to its
//!   next timer as the timeout. Another kernel thread wakes it by writing the eventfd (the
//!   `sleeping` / hint handshakes of `sched/README.md` decide *whether* to; this is only
//!   *how*). An eventfd keeps its count until read, so a wake that lands before the wait
//!   makes the wait return at once: the same guarantee as a thread park token.
//! - **Waiting for a descriptor** ([`wait_readable`], [`wait_writable`]). The green thread
//!   registers the descriptor with its worker's epoll, `EPOLLONESHOT`, with a pointer to an
//!   [`IoWait`] on its own stack as the event's data, and parks until the `IoWait` says
//!   ready. The worker handles events in its own loop, when it sleeps and every 64 switches
//!   while busy (only while some wait is registered): it marks the `IoWait` ready and
//!   unparks the thread. The thread then deregisters (`EPOLL_CTL_DEL`) before its frame,
//!   and the `IoWait` in it, goes away; a guard does this on every path out, unwinding
//!   included.
//!
//! Why an event never reaches a dead `IoWait`: events of a worker's epoll are handled only
//! by the kernel thread driving that worker, between two resumes, right after the
//! `epoll_wait` that returned them; the registering thread belongs to that worker, so it
//! is not running then, and it deregisters only when it runs again. After `EPOLL_CTL_DEL`
//! returns, no later `epoll_wait` returns the registration.
//!
//! One descriptor can be registered once per epoll instance; a second thread waiting on
//! the same descriptor at the same time (one reads, one writes) registers a `dup` of it,
//! which is a separate registration for the same open file.
//!
//! A wait may have a deadline ([`wait_until`], used by socket timeouts): the thread then
//! parks with `park::park_until` and, woken by its timer instead of its event, sees its
//! `IoWait` not ready and returns. Nothing above changes: however it was woken, the thread
//! deregisters when it runs again, on its own worker, and only then does its frame go. An
//! event that fired in the same round as the timer finds the `IoWait` still alive (the
//! thread has not run yet); its unpark leaves a token, which is only a spurious wakeup for
//! a later park, and those are allowed. Each caller names its own wait reason (`tcp read`,
//! `udp recv`, ...) so that dumps say what a thread waits for.
//!
//! Kernel threads (the one-to-one model, or outside any runtime) wait with `poll(2)`
//! (`ppoll` with the time left to the deadline). This is the epoll backend; the io_uring
//! one is to come.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};

use crate::park::{self, WaitReason};
use crate::sched::context;
use crate::task::thread::Thread;

/// The event data of the wake eventfd; every other registration's data is an `IoWait`.
const WAKE_KEY: u64 = 0;

/// Events handled per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 64;

/// One worker's epoll instance and wake eventfd.
pub(crate) struct Reactor {
    epoll: OwnedFd,
    wake: OwnedFd,
    /// Descriptor waits registered and not yet deregistered: a busy worker skips its poll
    /// while there are none.
    registered: AtomicUsize,
}

/// What a green thread waiting for a descriptor leaves for its worker.
pub(crate) struct IoWait {
    ready: AtomicBool,
    thread: Thread,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        let err = |what: &str, e: rustix::io::Errno| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot make a worker's reactor: {what}: {e}"),
            )
        };
        let epoll =
            epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| err("epoll_create1", e))?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| err("eventfd", e))?;
        epoll::add(&epoll, &wake, EventData::new_u64(WAKE_KEY), EventFlags::IN)
            .map_err(|e| err("epoll_ctl", e))?;
        Ok(Reactor {
            epoll,
            wake,
            registered: AtomicUsize::new(0),
        })
    }

    /// Wakes the worker if it sleeps in [`Reactor::poll`], or makes its next sleep return
    /// at once.
    pub(crate) fn wake(&self) {
        // EAGAIN (the counter is saturated) means a wake is pending anyway.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Whether a busy worker should poll: some descriptor wait is registered.
    #[inline]
    pub(crate) fn has_registrations(&self) -> bool {
        self.registered.load(Relaxed) != 0
    }

    /// Waits up to `timeout` (`None`: until woken; zero: just looks) and unparks the thread
    /// of every descriptor wait that fired. Called only by the worker's driver.
    pub(crate) fn poll(&self, timeout: Option<Duration>) {
        let timeout = timeout.map(|d| rustix::time::Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: d.subsec_nanos() as _,
        });
        let mut buf = [MaybeUninit::<epoll::Event>::uninit(); EVENTS_PER_WAIT];
        let events = match epoll::wait(&self.epoll, &mut buf[..], timeout.as_ref()) {
            Ok((events, _)) => events,
            Err(rustix::io::Errno::INTR) => return,
            Err(e) => panic!("spindle: epoll_wait on a worker's reactor failed: {e}"),
        };
        for event in events.iter() {
            let key = event.data.u64();
            if key == WAKE_KEY {
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(&self.wake, &mut buf);
                continue;
            }
            // SAFETY: the key is the address of an `IoWait` still registered: it lives in
            // the frame of a thread of this worker, which is not running now and
            // deregisters before that frame goes (module docs).
            let wait = unsafe { &*(key as usize as *const IoWait) };
            wait.ready.store(true, Release);
            wait.thread.unpark();
        }
    }
}

/// Interest in a descriptor.
#[derive(Clone, Copy, Debug)]
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
        _ => return poll_blocking(fd, interest, deadline),
    };
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Ok(false);
    }
    let reactor = &worker.shared().reactor;
    let wait = IoWait {
        ready: AtomicBool::new(false),
        thread: context::current_thread(),
    };
    let flags = match interest {
        Interest::Read => EventFlags::IN | EventFlags::RDHUP,
        Interest::Write => EventFlags::OUT,
    } | EventFlags::ONESHOT;
    let data = EventData::new_u64(&wait as *const IoWait as usize as u64);
    // A descriptor already registered (another thread waits on it) gets a duplicate.
    let dup;
    let target = match epoll::add(&reactor.epoll, fd, data, flags) {
        Ok(()) => fd,
        Err(rustix::io::Errno::EXIST) => {
            dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
            epoll::add(&reactor.epoll, &dup, data, flags)?;
            dup.as_fd()
        }
        Err(e) => return Err(e.into()),
    };
    reactor.registered.fetch_add(1, Relaxed);
    let _registration = Registration {
        reactor,
        fd: target,
    };
    loop {
        if wait.ready.load(Acquire) {
            return Ok(true);
        }
        match deadline {
            None => park::park(reason),
            Some(d) if Instant::now() >= d => return Ok(false),
            Some(d) => park::park_until(reason, d),
        }
    }
}

/// Deregisters a descriptor wait when the waiting frame ends, however it ends.
struct Registration<'a> {
    reactor: &'a Reactor,
    fd: BorrowedFd<'a>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // Fails only if the descriptor was closed meanwhile, which removed it anyway.
        let _ = epoll::delete(&self.reactor.epoll, self.fd);
        self.reactor.registered.fetch_sub(1, Relaxed);
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
                Some(rustix::time::Timespec {
                    tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
                    tv_nsec: left.subsec_nanos() as _,
                })
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
