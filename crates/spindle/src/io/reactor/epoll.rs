//! The epoll backend of the reactor: one `epoll` instance and one `eventfd` per worker.
//!
//! - **Sleeping and waking.** The worker waits in `epoll_wait`; the eventfd is registered
//!   in its epoll, so a wake makes the wait return (and the worker then reads the eventfd to
//!   reset it).
//! - **Waiting for a descriptor.** The green thread registers the descriptor with its
//!   worker's epoll, `EPOLLONESHOT`, with a pointer to an [`IoWait`] on its own stack as the
//!   event's data, and parks until the `IoWait` says ready. The worker handles events in its
//!   own loop: it marks the `IoWait` ready and unparks the thread. The thread then
//!   deregisters (`EPOLL_CTL_DEL`) before its frame, and the `IoWait` in it, goes away; a
//!   guard does this on every path out, unwinding included.
//!
//! Why an event never reaches a dead `IoWait`: events of a worker's epoll are handled only
//! by the kernel thread driving that worker, between two resumes, right after the
//! `epoll_wait` that returned them; the registering thread belongs to that worker, so it
//! is not running then, and it deregisters only when it runs again. After `EPOLL_CTL_DEL`
//! returns, no later `epoll_wait` returns the registration. A wait with a deadline changes
//! nothing here: however the thread was woken, it deregisters when it runs again, on its
//! own worker, and only then does its frame go; an event handled in the same round as the
//! timer finds the `IoWait` still alive.
//!
//! One descriptor can be registered once per epoll instance; a second thread waiting on
//! the same descriptor at the same time (one reads, one writes) registers a `dup` of it,
//! which is a separate registration for the same open file.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};

use super::{park_until_ready, timespec, Interest};
use crate::park::WaitReason;
use crate::sched::context;
use crate::task::thread::Thread;

/// The event data of the wake eventfd; every other registration's data is an `IoWait`.
const WAKE_KEY: u64 = 0;

/// Events handled per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 64;

/// One worker's epoll instance and wake eventfd.
pub(crate) struct EpollReactor {
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

impl EpollReactor {
    pub(crate) fn new() -> io::Result<EpollReactor> {
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
        Ok(EpollReactor {
            epoll,
            wake,
            registered: AtomicUsize::new(0),
        })
    }

    /// See [`super::Reactor::wake`].
    pub(crate) fn wake(&self) {
        // EAGAIN (the counter is saturated) means a wake is pending anyway.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Whether a busy worker should poll: some descriptor wait is registered.
    #[inline]
    pub(crate) fn has_registrations(&self) -> bool {
        self.registered.load(Relaxed) != 0
    }

    /// See [`super::Reactor::poll`].
    pub(crate) fn poll(&self, timeout: Option<Duration>) {
        let timeout = timeout.map(timespec);
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

    /// Registers `fd` for `interest` and parks until it is ready or `deadline` passes
    /// (see [`super::wait_until`]). Called on a green thread of this reactor's worker.
    pub(crate) fn wait_until(
        &self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        reason: WaitReason,
        deadline: Option<Instant>,
    ) -> io::Result<bool> {
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
        let target = match epoll::add(&self.epoll, fd, data, flags) {
            Ok(()) => fd,
            Err(rustix::io::Errno::EXIST) => {
                dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
                epoll::add(&self.epoll, &dup, data, flags)?;
                dup.as_fd()
            }
            Err(e) => return Err(e.into()),
        };
        self.registered.fetch_add(1, Relaxed);
        let _registration = Registration {
            reactor: self,
            fd: target,
        };
        Ok(park_until_ready(
            || wait.ready.load(Acquire),
            reason,
            fd,
            deadline,
        ))
    }
}

/// Deregisters a descriptor wait when the waiting frame ends, however it ends.
struct Registration<'a> {
    reactor: &'a EpollReactor,
    fd: BorrowedFd<'a>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // Fails only if the descriptor was closed meanwhile, which removed it anyway.
        let _ = epoll::delete(&self.reactor.epoll, self.fd);
        self.reactor.registered.fetch_sub(1, Relaxed);
    }
}
