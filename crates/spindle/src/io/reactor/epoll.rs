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
//!
//! - **Registering for good.** Streams register their socket once instead, edge-triggered,
//!   with an `Arc<Registration>` as the data ([`EpollReactor::register`]); its protocol and
//!   lifetime are in `registration.rs`. The two kinds of event data are told apart by the
//!   low bit of the key, set for registrations (both are pointers to 8-byte aligned
//!   records). A one-shot wait on a descriptor registered so gets `EEXIST` and waits on a
//!   `dup`, as above.
//! - **Streams of the io_uring backend.** The io_uring reactor registers streams in an
//!   epoll instance of this kind too, one without a wake eventfd
//!   ([`EpollReactor::for_registrations`]), and polls it when the ring reports it readable
//!   (`uring.rs`, "Descriptors and files", says why).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};

use super::registration::{self, Event, Registration};
use super::{park_until_ready, timespec, Interest};
use crate::park::WaitReason;
use crate::sched::context;
use crate::task::thread::Thread;

/// The event data of the wake eventfd; every other registration's data is an `IoWait`.
const WAKE_KEY: u64 = 0;

/// Set in the key of a persistent registration (module docs).
const REGISTRATION_TAG: u64 = 1;

/// Events handled per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 64;

/// One worker's epoll instance and wake eventfd.
pub(crate) struct EpollReactor {
    epoll: OwnedFd,
    /// `None` in an instance that only holds registrations for the io_uring reactor.
    wake: Option<OwnedFd>,
    /// Descriptor waits registered and not yet deregistered, and threads waiting on a
    /// persistent registration: a busy worker skips its poll while there are none.
    registered: AtomicUsize,
    /// The epoll's references to deregistered registrations, dropped at the next poll
    /// (`registration.rs`, "Lifetime"), as `Arc::into_raw` pointers.
    released: Mutex<Vec<usize>>,
}

/// What a green thread waiting for a descriptor leaves for its worker.
pub(crate) struct IoWait {
    ready: AtomicBool,
    thread: Thread,
}

impl EpollReactor {
    pub(crate) fn new() -> io::Result<EpollReactor> {
        let mut reactor = Self::for_registrations()?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| creation_error("eventfd", e))?;
        epoll::add(
            &reactor.epoll,
            &wake,
            EventData::new_u64(WAKE_KEY),
            EventFlags::IN,
        )
        .map_err(|e| creation_error("epoll_ctl", e))?;
        reactor.wake = Some(wake);
        Ok(reactor)
    }

    /// An epoll instance without a wake eventfd, for the streams the io_uring reactor
    /// registers (module docs). Its owner sleeps elsewhere and polls it with a zero timeout.
    pub(crate) fn for_registrations() -> io::Result<EpollReactor> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| creation_error("epoll_create1", e))?;
        Ok(EpollReactor {
            epoll,
            wake: None,
            registered: AtomicUsize::new(0),
            released: Mutex::new(Vec::new()),
        })
    }

    /// See [`super::Reactor::wake`].
    pub(crate) fn wake(&self) {
        if let Some(wake) = &self.wake {
            // EAGAIN (the counter is saturated) means a wake is pending anyway.
            let _ = rustix::io::write(wake, &1u64.to_ne_bytes());
        }
    }

    /// The epoll instance, for its owner to wait on (it is readable while an event waits).
    pub(crate) fn epoll_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }

    /// Whether a busy worker should poll: some descriptor wait is registered.
    #[inline]
    pub(crate) fn has_registrations(&self) -> bool {
        self.registered.load(Relaxed) != 0
    }

    /// See [`super::Reactor::poll`].
    pub(crate) fn poll(&self, timeout: Option<Duration>) {
        self.drop_released();
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
                if let Some(wake) = &self.wake {
                    let mut buf = [0u8; 8];
                    let _ = rustix::io::read(wake, &mut buf);
                }
                continue;
            }
            if key & REGISTRATION_TAG != 0 {
                // SAFETY: the key is a registration's `Arc::into_raw` pointer, tagged; the
                // epoll's reference it stands for is dropped only at the start of a later
                // poll (`registration.rs`, "Lifetime").
                let registration =
                    unsafe { &*((key & !REGISTRATION_TAG) as usize as *const Registration) };
                let flags = event.flags; // a copy: the event is packed
                registration.deliver(Event::from_poll_bits(flags.bits()));
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
        let _registration = OneShot {
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

impl EpollReactor {
    /// Registers `fd` for good, edge-triggered, for reading and writing
    /// (`registration.rs`). Fails with `EEXIST` while a one-shot wait on `fd` is registered.
    pub(crate) fn register(&self, fd: BorrowedFd<'_>) -> io::Result<Arc<Registration>> {
        let registration = Arc::new(Registration::new());
        let raw = Arc::into_raw(registration.clone());
        let flags = EventFlags::from_bits_retain(registration::POLL_BITS) | EventFlags::ET;
        let data = EventData::new_u64(raw as usize as u64 | REGISTRATION_TAG);
        if let Err(e) = epoll::add(&self.epoll, fd, data, flags) {
            // SAFETY: the reference made for the epoll above, which never got it.
            drop(unsafe { Arc::from_raw(raw) });
            return Err(e.into());
        }
        Ok(registration)
    }

    /// Deregisters `fd`, registered with `registration`; `fd` must still be open. The
    /// epoll's reference goes at the next poll.
    pub(crate) fn deregister(&self, fd: BorrowedFd<'_>, registration: &Arc<Registration>) {
        // Fails only if the descriptor was closed, which is the caller's bug: then the
        // registration may still fire, so its reference is kept (leaked) rather than freed.
        if epoll::delete(&self.epoll, fd).is_err() {
            return;
        }
        self.released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::as_ptr(registration) as usize);
    }

    /// Counts a thread waiting on a persistent registration, for [`Self::has_registrations`].
    pub(crate) fn waits(&self) -> super::WaitCount<'_> {
        super::WaitCount::new(&self.registered)
    }

    /// Drops the epoll's references to registrations deregistered since the last poll.
    pub(crate) fn drop_released(&self) {
        let released = {
            let mut list = self.released.lock().unwrap_or_else(|e| e.into_inner());
            if list.is_empty() {
                return;
            }
            std::mem::take(&mut *list)
        };
        for raw in released {
            // SAFETY: each is the epoll's reference (`register`), given up by `deregister`
            // after `EPOLL_CTL_DEL`, once; every event that named it was handled in an
            // earlier poll.
            drop(unsafe { Arc::from_raw(raw as *const Registration) });
        }
    }
}

impl Drop for EpollReactor {
    fn drop(&mut self) {
        // Every registration holds its worker, so all are deregistered by now.
        self.drop_released();
    }
}

/// The error of a reactor that cannot be made: `what` failed with `e`.
fn creation_error(what: &str, e: rustix::io::Errno) -> io::Error {
    io::Error::new(
        io::Error::from(e).kind(),
        format!("cannot make a worker's reactor: {what}: {e}"),
    )
}

/// Deregisters a descriptor wait when the waiting frame ends, however it ends.
struct OneShot<'a> {
    reactor: &'a EpollReactor,
    fd: BorrowedFd<'a>,
}

impl Drop for OneShot<'_> {
    fn drop(&mut self) {
        // Fails only if the descriptor was closed meanwhile, which removed it anyway.
        let _ = epoll::delete(&self.reactor.epoll, self.fd);
        self.reactor.registered.fetch_sub(1, Relaxed);
    }
}
