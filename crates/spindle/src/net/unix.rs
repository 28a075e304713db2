//! Unix-domain stream sockets: [`UnixListener`] and [`UnixStream`], as
//! `std::os::unix::net`'s, with calls that park only the calling green thread.
//!
//! They work as the TCP types do (see the [parent module](crate::net)), with one addition:
//! a connect to a listener whose backlog is full gets no readiness event to wait for, so
//! that case waits in a blocking `connect` on the helper pool ([`crate::unblock`]).

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use rustix::net::sockopt::Timeout;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

pub use std::os::unix::net::SocketAddr;

use super::stream_state::{vectored_len, ReadKind, StreamState};
use super::{
    connect_nonblocking, no_timeout, retry, socket_conversions, stream_read_write, LISTEN_BACKLOG,
    SOCKET_FLAGS,
};
use crate::io::Interest;
use crate::park::WaitReason;

/// A Unix-domain socket server: `std::os::unix::net::UnixListener` whose
/// [`accept`](UnixListener::accept) parks only the calling green thread.
///
/// Always non-blocking underneath, so there is no `set_nonblocking`; see the
/// [module docs](crate::net).
pub struct UnixListener {
    inner: std::os::unix::net::UnixListener,
}

impl UnixListener {
    /// Creates a listener bound to the file system path `path`, which must not exist yet,
    /// as `std::os::unix::net::UnixListener::bind`, but with the largest backlog the
    /// system allows (module docs).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let addr = SocketAddrUnix::new(path.as_ref())?;
        let fd =
            rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SOCKET_FLAGS, None)?;
        rustix::net::bind(&fd, &addr)?;
        rustix::net::listen(&fd, LISTEN_BACKLOG)?;
        Ok(UnixListener {
            inner: std::os::unix::net::UnixListener::from(fd),
        })
    }

    /// Accepts a new connection, parking the calling green thread until one comes, and
    /// returns the stream (non-blocking too, with no timeouts) and the peer's address.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (inner, addr) = retry(
            self.inner.as_fd(),
            Interest::Read,
            WaitReason::UnixAccept,
            no_timeout,
            || self.inner.accept(),
        )?;
        Ok((UnixStream::from(inner), addr))
    }

    fn wrap(inner: std::os::unix::net::UnixListener) -> UnixListener {
        UnixListener { inner }
    }

    /// An endless iterator over the connections, each from [`accept`](UnixListener::accept).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// A second handle to the same socket (`dup`), non-blocking too.
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener {
            inner: self.inner.try_clone()?,
        })
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }
}

socket_conversions!(UnixListener, std::os::unix::net::UnixListener);

/// The iterator of [`UnixListener::incoming`]: never ends; each item is one `accept`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<UnixStream>;

    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(stream, _)| stream))
    }
}

impl std::iter::FusedIterator for Incoming<'_> {}

/// A Unix-domain stream connection: `std::os::unix::net::UnixStream` whose reads, writes
/// and connect park only the calling green thread.
///
/// Implements `Read` and `Write`, also on `&UnixStream`, so one thread may read while
/// another writes (or use [`try_clone`](UnixStream::try_clone)). Always non-blocking
/// underneath; timeouts and conversions are described in the [module docs](crate::net).
pub struct UnixStream {
    // Before the socket: fields drop in order, and the state's registration must be
    // deregistered while the descriptor is still open (`stream_state.rs`).
    state: StreamState,
    inner: std::os::unix::net::UnixStream,
}

impl UnixStream {
    /// Connects to the listener at `path`, parking the calling green thread if it must
    /// wait (module docs: a full backlog waits on the helper pool).
    pub fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let path = path.as_ref();
        let addr = SocketAddrUnix::new(path)?;
        let fd =
            rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SOCKET_FLAGS, None)?;
        match connect_nonblocking(fd.as_fd(), &addr, WaitReason::UnixConnect, None) {
            Ok(()) => Ok(UnixStream::wrap(std::os::unix::net::UnixStream::from(fd))),
            // The listener's backlog is full, and no event tells when it has room: a
            // blocking connect on a helper thread waits for exactly that.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                drop(fd);
                let path = path.to_owned();
                let inner = crate::unblock(move || std::os::unix::net::UnixStream::connect(path))?;
                Ok(UnixStream::from(inner))
            }
            Err(e) => Err(e),
        }
    }

    /// A pair of connected streams (`socketpair(2)`), both non-blocking.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SOCKET_FLAGS, None)?;
        Ok((
            UnixStream::wrap(std::os::unix::net::UnixStream::from(a)),
            UnixStream::wrap(std::os::unix::net::UnixStream::from(b)),
        ))
    }

    fn wrap(inner: std::os::unix::net::UnixStream) -> UnixStream {
        UnixStream {
            inner,
            state: StreamState::new(),
        }
    }

    /// A second handle to the same connection (`dup`), so that one thread can read while
    /// another writes. Clones share the socket, and so its options and timeouts.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        Ok(UnixStream {
            inner: self.inner.try_clone()?,
            state: self.state.for_clone(),
        })
    }

    /// The local address of this end.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// Sets the read timeout (`None`: wait forever): a read that waits longer fails with
    /// the `EAGAIN` error ([`io::ErrorKind::WouldBlock`]), as std's on Linux. A zero
    /// duration is an `InvalidInput` error.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.state
            .set_timeout(self.inner.as_fd(), Timeout::Recv, timeout)
    }

    /// Sets the write timeout; see [`set_read_timeout`](UnixStream::set_read_timeout).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.state
            .set_timeout(self.inner.as_fd(), Timeout::Send, timeout)
    }

    /// The read timeout; `None` if there is none.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        self.state.timeout(self.inner.as_fd(), Timeout::Recv)
    }

    /// The write timeout; `None` if there is none.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        self.state.timeout(self.inner.as_fd(), Timeout::Send)
    }

    /// Shuts down the read half, the write half or both (`shutdown(2)`); after the peer
    /// shuts down its write half, reads here return 0.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }

    fn read_impl(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.state
            .read(self.inner.as_fd(), ReadKind::Unix, len, || {
                (&self.inner).read(buf)
            })
    }

    fn read_vectored_impl(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = vectored_len(bufs);
        self.state
            .read(self.inner.as_fd(), ReadKind::Unix, len, || {
                (&self.inner).read_vectored(bufs)
            })
    }

    fn write_impl(&self, buf: &[u8]) -> io::Result<usize> {
        self.state.call(
            self.inner.as_fd(),
            Interest::Write,
            WaitReason::UnixWrite,
            || (&self.inner).write(buf),
        )
    }

    fn write_vectored_impl(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.state.call(
            self.inner.as_fd(),
            Interest::Write,
            WaitReason::UnixWrite,
            || (&self.inner).write_vectored(bufs),
        )
    }
}

socket_conversions!(UnixStream, std::os::unix::net::UnixStream);
stream_read_write!(UnixStream);
