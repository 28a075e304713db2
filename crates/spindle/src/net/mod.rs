//! Networking that parks only the calling green thread: [`TcpListener`], [`TcpStream`],
//! [`UdpSocket`] and, in [`unix`], [`unix::UnixListener`] and [`unix::UnixStream`].
//!
//! The types mirror `std::net` and `std::os::unix::net` method for method, and implement
//! `std::io::{Read, Write}` (also on `&TcpStream` and `&UnixStream`), so `BufReader`,
//! `BufWriter`, `io::copy` and other crates' code work on them unchanged.
//!
//! ```
//! use std::io::{Read, Write};
//! use spindle::net::{TcpListener, TcpStream};
//!
//! let rt = spindle::Runtime::builder().build()?;
//! rt.block_on(|| -> std::io::Result<()> {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let addr = listener.local_addr()?;
//!     let server = spindle::spawn(move || -> std::io::Result<()> {
//!         let (mut stream, _) = listener.accept()?;
//!         let mut buf = [0; 5];
//!         stream.read_exact(&mut buf)?;
//!         stream.write_all(&buf)
//!     });
//!     let mut client = TcpStream::connect(addr)?;
//!     client.write_all(b"hello")?;
//!     let mut echo = String::new();
//!     client.read_to_string(&mut echo)?;
//!     assert_eq!(echo, "hello");
//!     server.join().unwrap()
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # How a call waits
//!
//! Every spindle socket is non-blocking underneath, always, in every model: it wraps the
//! std socket with `O_NONBLOCK` set (sockets spindle creates are made so at once,
//! `SOCK_NONBLOCK`). A call that can block is a loop:
//!
//! 1. try the system call;
//! 2. on `WouldBlock`, wait until the descriptor is ready ([`crate::io::wait_readable`]'s
//!    machinery: on a green thread, register with the worker's reactor and park, so the
//!    worker runs other green threads; on a kernel thread, `poll(2)`), then go to 1.
//!
//! So only the calling green thread ever waits, and a call that need not wait costs
//! exactly its system call. One exception: on the io_uring backend, a green thread's TCP
//! write of at most 16 KiB is a send request of its worker's ring, which the worker
//! submits with the round's other requests in one system call, and the thread parks until
//! it completes: a server's small answers then leave in batches (`io/reactor/uring.rs`,
//! "Stream writes", with the measurement). Such a write always switches, so it spends
//! nothing of the fairness budget below.
//!
//! There is no `set_nonblocking`: a spindle socket never blocks its kernel thread anyway,
//! and clearing `O_NONBLOCK` (on a clone, or through the raw descriptor) would make calls
//! block the whole worker. Code that wants a non-blocking attempt uses the std socket
//! (see the conversions below), or a zero-cost alternative such as `peek`.
//!
//! The one-to-one model could use blocking sockets, but the mode belongs to the open file,
//! which clones share with sockets that may be used from green threads of another runtime;
//! one mode everywhere is simpler, and costs a kernel thread one `poll` per wait.
//!
//! Listeners are made by spindle too, with the largest backlog the system allows rather
//! than std's 128: many green clients of one worker connect before their server gets to
//! `accept`, and a full backlog makes the kernel drop handshakes, which clients then retry
//! only a second later.
//!
//! # Fairness
//!
//! A call that need not wait does not switch, so a thread whose peer always has the next
//! request ready (a busy server's connection) could keep its worker for as long as that
//! lasts while the other connections' threads, ready too, wait: one connection's tail
//! latency grew to 48 ms under `spindle-lab bench http`. So every socket call that
//! completes spends one unit of a budget of its kernel thread, and the call that empties
//! it yields ([`crate::yield_now`]) after completing, which lets the others, and the
//! reactor's check, in: tokio's cooperative budget does the same for its tasks. See
//! `io_budget.rs`.
//!
//! # Timeouts
//!
//! `set_read_timeout` and `set_write_timeout` store the timeout where std does, in the
//! socket (`SO_RCVTIMEO`, `SO_SNDTIMEO`), which a non-blocking socket otherwise ignores.
//! A call reads it back only when it is about to wait (a small TCP write on io_uring, which
//! always waits, looks up its stream's cached value each time), so the fast path pays
//! nothing, and clones, sockets converted from std and to std, and sockets rebuilt from a
//! raw descriptor all see the same timeouts, as with std. One exception: a stream
//! ([`TcpStream`], [`unix::UnixStream`]) reads its socket's timeouts once and keeps them,
//! shared with its `try_clone` clones, because a keep-alive connection waits on every
//! request and the lookup was a system call each time (`stream_state.rs`); so set a
//! stream's timeouts through it or its `try_clone` clones, not through a std handle of the
//! same socket, another spindle stream made from a `dup` of it, or its raw descriptor,
//! which such a stream does not notice. The deadline is taken when the call
//! first finds it must wait, and covers that call (std's timeout, too, is per call). On
//! timeout the call fails as std's does on Linux, with the `EAGAIN` error, whose kind is
//! [`std::io::ErrorKind::WouldBlock`]; it returns no earlier than the timeout. The kernel
//! keeps a timeout in clock ticks, so the getters (std's too) may give it back rounded up
//! to the next tick (52 ms for 50 ms at 250 Hz), and that is the timeout that applies.
//! `TcpStream::connect_timeout` fails with [`std::io::ErrorKind::TimedOut`], as std's does.
//!
//! # Conversions
//!
//! `From<std::net::TcpStream>` (and the other std types, and `OwnedFd`) makes the socket
//! non-blocking. The other way, `From<TcpStream> for std::net::TcpStream` (and
//! `OwnedFd`, `into_raw_fd`) hands over the socket *still non-blocking*: a clone may still
//! be in spindle's hands. Call `set_nonblocking(false)` on the std socket if none is.
//!
//! # Addresses and name resolution
//!
//! Methods that take `impl std::net::ToSocketAddrs` resolve it as std does: a host name is
//! looked up with `getaddrinfo`, which blocks the kernel thread. Pass addresses (or strings
//! such as `"127.0.0.1:80"`, which parse without a lookup), or resolve names first with
//! [`crate::unblock`]: `spindle::unblock(move || (host, port).to_socket_addrs())`.
//!
//! # Unix-domain connect
//!
//! A non-blocking `connect` to a Unix-domain listener whose backlog is full fails with
//! `EAGAIN`, and no readiness event says when to retry. That case (only that one) runs a
//! blocking `connect` on the helper pool ([`crate::unblock`]), which the kernel wakes as
//! soon as the listener accepts.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::io::{wait_until, Interest};
use crate::park::WaitReason;

mod io_budget;
mod stream_state;
mod tcp;
mod udp;
pub mod unix;

pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;

/// Runs `op` on a non-blocking descriptor until it does not fail with `WouldBlock`,
/// waiting for `interest` between tries (module docs, "How a call waits"). `timeout` is
/// asked only before the first wait; when it has passed, the call fails with std's
/// timeout error (`EAGAIN`).
pub(crate) fn retry<T>(
    fd: BorrowedFd<'_>,
    interest: Interest,
    reason: WaitReason,
    timeout: impl FnOnce() -> io::Result<Option<Duration>>,
    op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    retry_from(fd, interest, reason, false, timeout, op)
}

/// [`retry`], but with `wait_first` the first step is the wait, not the call: for a call
/// that would fail with `WouldBlock` (`stream_state.rs`, the short-read hint).
///
/// A wait that times out is followed by one last try of the call, which reports the
/// timeout only if that too would block: the call may not have been tried yet (with
/// `wait_first`), and a worker fires a due timer before it looks at its reactor, so data
/// that came during the wait could otherwise be reported as a timeout. For the first
/// reason, a wait that fails (on the green thread that called fork(): fork.rs) is followed
/// by a try too, when the call was not tried yet.
pub(crate) fn retry_from<T>(
    fd: BorrowedFd<'_>,
    interest: Interest,
    reason: WaitReason,
    wait_first: bool,
    timeout: impl FnOnce() -> io::Result<Option<Duration>>,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    // One try of the call: `None` if it would block; a call that completed spends a unit
    // of the I/O budget.
    let mut attempt = || match op() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        done => {
            io_budget::spend();
            Some(done)
        }
    };
    let mut tried = !wait_first;
    if tried {
        if let Some(done) = attempt() {
            return done;
        }
    }
    let mut timeout = Some(timeout);
    let mut deadline = None;
    loop {
        if let Some(timeout) = timeout.take() {
            // A timeout too large to represent is no timeout.
            deadline = timeout()?.and_then(|t| Instant::now().checked_add(t));
        }
        match wait_until(fd, interest, reason, deadline) {
            Ok(true) => {
                if let Some(done) = attempt() {
                    return done;
                }
                tried = true;
            }
            Ok(false) => return attempt().unwrap_or_else(|| Err(timed_out())),
            Err(wait_failed) if !tried => return attempt().unwrap_or(Err(wait_failed)),
            Err(wait_failed) => return Err(wait_failed),
        }
    }
}

/// The error of a read or write whose timeout passed: `EAGAIN`, as std's on Linux.
fn timed_out() -> io::Error {
    io::Error::from_raw_os_error(libc::EAGAIN)
}

/// Flags of every socket spindle makes: non-blocking (module docs), closed on exec (as std).
const SOCKET_FLAGS: rustix::net::SocketFlags =
    rustix::net::SocketFlags::NONBLOCK.union(rustix::net::SocketFlags::CLOEXEC);

/// The backlog listeners ask for: as many as the system allows (`listen(2)` truncates it
/// to `net.core.somaxconn`, 4096 by default). std asks for 128, and a green server that
/// many clients connect to at once (all green threads of its worker, which run before it
/// accepts) would then see the kernel drop handshakes beyond 128 and the clients retry a
/// second later.
const LISTEN_BACKLOG: i32 = i32::MAX;

/// Calls `f` with each address of `addr` until one succeeds, as std does: the last error,
/// or `InvalidInput` if there was no address.
fn each_addr<T>(
    addr: impl std::net::ToSocketAddrs,
    mut f: impl FnMut(&std::net::SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_error = None;
    for addr in addr.to_socket_addrs()? {
        match f(&addr) {
            Ok(done) => return Ok(done),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// The timeout of a call without one (accept, connect).
fn no_timeout() -> io::Result<Option<Duration>> {
    Ok(None)
}

/// Connects the non-blocking socket `fd` to `addr`: starts the connect, waits until the
/// socket is writable (parking the green thread), and reports the outcome (`SO_ERROR`).
/// Past `deadline`, fails with [`io::ErrorKind::TimedOut`], as std's `connect_timeout`.
/// Errors from `connect(2)` itself come back as they are: `EAGAIN` from a Unix-domain
/// listener with a full backlog is the caller's to handle.
fn connect_nonblocking(
    fd: BorrowedFd<'_>,
    addr: &impl rustix::net::addr::SocketAddrArg,
    reason: WaitReason,
    deadline: Option<Instant>,
) -> io::Result<()> {
    match rustix::net::connect(fd, addr) {
        Ok(()) => return Ok(()),
        // An interrupted connect goes on asynchronously, as one in progress does.
        Err(rustix::io::Errno::INPROGRESS | rustix::io::Errno::INTR) => {}
        Err(e) => return Err(e.into()),
    }
    if !wait_until(fd, Interest::Write, reason, deadline)? {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection timed out",
        ));
    }
    match rustix::net::sockopt::socket_error(fd)? {
        Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes a descriptor of a socket non-blocking, for a `From` conversion that cannot fail.
///
/// # Panics
///
/// If `ioctl(FIONBIO)` fails, which it does not on an open descriptor: a socket left
/// blocking would block its whole worker, which is worse than a panic.
fn set_nonblocking(fd: BorrowedFd<'_>) {
    rustix::io::ioctl_fionbio(fd, true)
        .unwrap_or_else(|e| panic!("spindle::net: cannot make a socket non-blocking: {e}"));
}

/// The descriptor traits and conversions std gives its socket types, for a spindle
/// socket `$ty` wrapping the std socket `$std` in a field `inner`.
macro_rules! socket_conversions {
    ($ty:ty, $std:ty) => {
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(&self.inner)
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.inner)
            }
        }

        /// Hands over the descriptor still non-blocking (module docs, "Conversions").
        impl std::os::fd::IntoRawFd for $ty {
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                std::os::fd::IntoRawFd::into_raw_fd(self.inner)
            }
        }

        /// Makes the descriptor non-blocking.
        impl std::os::fd::FromRawFd for $ty {
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> Self {
                // SAFETY: the caller promises that `fd` is an open socket of the right
                // type that it owns and hands over, which is `OwnedFd::from_raw_fd`'s
                // contract too.
                let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
                Self::from(owned)
            }
        }

        /// Makes the descriptor non-blocking.
        ///
        /// # Panics
        ///
        /// If it cannot be made non-blocking, which does not happen to an open socket.
        impl From<std::os::fd::OwnedFd> for $ty {
            fn from(fd: std::os::fd::OwnedFd) -> Self {
                Self::from(<$std>::from(fd))
            }
        }

        /// Hands over the descriptor still non-blocking (module docs, "Conversions").
        impl From<$ty> for std::os::fd::OwnedFd {
            fn from(socket: $ty) -> Self {
                socket.inner.into()
            }
        }

        /// Makes the socket non-blocking.
        ///
        /// # Panics
        ///
        /// If it cannot be made non-blocking, which does not happen to an open socket.
        impl From<$std> for $ty {
            fn from(inner: $std) -> Self {
                $crate::net::set_nonblocking(std::os::fd::AsFd::as_fd(&inner));
                Self::wrap(inner)
            }
        }

        /// Hands over the socket still non-blocking (module docs, "Conversions").
        impl From<$ty> for $std {
            fn from(socket: $ty) -> Self {
                socket.inner
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.inner, f)
            }
        }
    };
}

/// `Read` and `Write` for a stream `$ty` and for `&$ty`, through its `read_impl`,
/// `read_vectored_impl`, `write_impl` and `write_vectored_impl` (all `&self`).
macro_rules! stream_read_write {
    ($ty:ty) => {
        impl std::io::Read for $ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.read_impl(buf)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                self.read_vectored_impl(bufs)
            }
        }

        impl std::io::Read for &$ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.read_impl(buf)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                self.read_vectored_impl(bufs)
            }
        }

        impl std::io::Write for $ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.write_impl(buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.write_vectored_impl(bufs)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Write for &$ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.write_impl(buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.write_vectored_impl(bufs)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}

pub(crate) use {socket_conversions, stream_read_write};
