//! TCP: [`TcpListener`] and [`TcpStream`], std's with calls that park only the green thread.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::net::sockopt::Timeout;
use rustix::net::{AddressFamily, SocketType};

use super::stream_state::{vectored_len, ReadKind, StreamState};
use super::{
    connect_nonblocking, each_addr, no_timeout, retry, socket_conversions, stream_read_write,
    LISTEN_BACKLOG, SOCKET_FLAGS,
};
use crate::io::Interest;
use crate::park::WaitReason;

fn family(addr: &SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    }
}

/// A TCP socket server, listening for connections: `std::net::TcpListener` whose
/// [`accept`](TcpListener::accept) parks only the calling green thread.
///
/// The socket is always non-blocking underneath, so there is no `set_nonblocking`; see the
/// [module docs](crate::net).
pub struct TcpListener {
    inner: std::net::TcpListener,
}

impl TcpListener {
    /// Creates a listener bound to `addr`, as `std::net::TcpListener::bind` (which see for
    /// several addresses and port 0; `SO_REUSEADDR` is set, as std does), but with the
    /// largest backlog the system allows (module docs). A host name is resolved in place,
    /// blocking the kernel thread (module docs).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        each_addr(addr, TcpListener::bind_addr)
    }

    fn bind_addr(addr: &SocketAddr) -> io::Result<TcpListener> {
        let fd = rustix::net::socket_with(family(addr), SocketType::STREAM, SOCKET_FLAGS, None)?;
        // As std: a restarted server can bind its port again at once.
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
        rustix::net::bind(&fd, addr)?;
        rustix::net::listen(&fd, LISTEN_BACKLOG)?;
        Ok(TcpListener {
            inner: std::net::TcpListener::from(fd),
        })
    }

    /// Accepts a new connection, parking the calling green thread until one comes, and
    /// returns the stream and the peer's address. The stream is non-blocking too, and
    /// starts with no timeouts.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = retry(
            self.inner.as_fd(),
            Interest::Read,
            WaitReason::TcpAccept,
            no_timeout,
            || Ok(rustix::net::acceptfrom_with(&self.inner, SOCKET_FLAGS)?),
        )?;
        let inner = std::net::TcpStream::from(fd);
        let addr = match addr.map(SocketAddr::try_from) {
            Some(Ok(addr)) => addr,
            // Not expected of a TCP listener; ask the socket instead.
            _ => inner.peer_addr()?,
        };
        Ok((TcpStream::wrap(inner), addr))
    }

    fn wrap(inner: std::net::TcpListener) -> TcpListener {
        TcpListener { inner }
    }

    /// An endless iterator over the connections, each from [`accept`](TcpListener::accept).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address this listener is bound to (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// A second handle to the same socket (`dup`), non-blocking too.
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            inner: self.inner.try_clone()?,
        })
    }

    /// Sets `IP_TTL` for the sockets this listener accepts.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.set_ttl(ttl)
    }

    /// `IP_TTL`; see [`set_ttl`](TcpListener::set_ttl).
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.ttl()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }
}

socket_conversions!(TcpListener, std::net::TcpListener);

/// The iterator of [`TcpListener::incoming`]: never ends; each item is one `accept`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(stream, _)| stream))
    }
}

impl std::iter::FusedIterator for Incoming<'_> {}

/// A TCP connection: `std::net::TcpStream` whose reads, writes and connect park only the
/// calling green thread.
///
/// Implements `Read` and `Write`, also on `&TcpStream`, so one thread may read while
/// another writes (or use [`try_clone`](TcpStream::try_clone)). Always non-blocking
/// underneath; timeouts and conversions are described in the [module docs](crate::net).
pub struct TcpStream {
    // Before the socket: fields drop in order, and the state's registration must be
    // deregistered while the descriptor is still open (`stream_state.rs`).
    state: StreamState,
    inner: std::net::TcpStream,
}

impl TcpStream {
    /// Connects to `addr`, trying each of its addresses in turn as std does, parking the
    /// calling green thread during each handshake. Fails with the last address's error
    /// (`ConnectionRefused` from a port nobody listens on). A host name is resolved in
    /// place, blocking the kernel thread (module docs).
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        each_addr(addr, |addr| TcpStream::connect_addr(addr, None))
    }

    /// Connects to `addr`, giving up after `timeout` with [`io::ErrorKind::TimedOut`], as
    /// `std::net::TcpStream::connect_timeout` (a zero timeout is an `InvalidInput` error).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_addr(addr, Instant::now().checked_add(timeout))
    }

    fn connect_addr(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        let fd = rustix::net::socket_with(family(addr), SocketType::STREAM, SOCKET_FLAGS, None)?;
        connect_nonblocking(fd.as_fd(), addr, WaitReason::TcpConnect, deadline)?;
        Ok(TcpStream::wrap(std::net::TcpStream::from(fd)))
    }

    fn wrap(inner: std::net::TcpStream) -> TcpStream {
        TcpStream {
            inner,
            state: StreamState::new(),
        }
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address of this end.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Shuts down the read half, the write half or both (`shutdown(2)`); after the peer
    /// shuts down its write half, reads here return 0.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// A second handle to the same connection (`dup`), so that one thread can read while
    /// another writes. Clones share the socket, and so its options and timeouts.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            inner: self.inner.try_clone()?,
            state: self.state.for_clone(),
        })
    }

    /// Sets the read timeout (`None`: wait forever): a read or peek that waits longer fails
    /// with the `EAGAIN` error ([`io::ErrorKind::WouldBlock`]), as std's on Linux. A zero
    /// duration is an `InvalidInput` error.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.state
            .set_timeout(self.inner.as_fd(), Timeout::Recv, timeout)
    }

    /// Sets the write timeout; see [`set_read_timeout`](TcpStream::set_read_timeout).
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

    /// Reads without removing the data from the queue, parking until some is there.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.state.call(
            self.inner.as_fd(),
            Interest::Read,
            WaitReason::TcpRead,
            || self.inner.peek(buf),
        )
    }

    /// Sets `TCP_NODELAY` (no Nagle delay for small writes).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }

    /// `TCP_NODELAY`; see [`set_nodelay`](TcpStream::set_nodelay).
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.nodelay()
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.set_ttl(ttl)
    }

    /// `IP_TTL`; see [`set_ttl`](TcpStream::set_ttl).
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.ttl()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }

    fn read_impl(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.state.read(self.inner.as_fd(), ReadKind::Tcp, len, || {
            (&self.inner).read(buf)
        })
    }

    fn read_vectored_impl(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = vectored_len(bufs);
        self.state.read(self.inner.as_fd(), ReadKind::Tcp, len, || {
            (&self.inner).read_vectored(bufs)
        })
    }

    fn write_impl(&self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.inner.as_fd();
        if let Some(sent) = self
            .state
            .ring_write(fd, &[IoSlice::new(buf)], WaitReason::TcpWrite)
        {
            return sent;
        }
        self.state.call(
            self.inner.as_fd(),
            Interest::Write,
            WaitReason::TcpWrite,
            || (&self.inner).write(buf),
        )
    }

    fn write_vectored_impl(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let fd = self.inner.as_fd();
        if let Some(sent) = self.state.ring_write(fd, bufs, WaitReason::TcpWrite) {
            return sent;
        }
        self.state.call(
            self.inner.as_fd(),
            Interest::Write,
            WaitReason::TcpWrite,
            || (&self.inner).write_vectored(bufs),
        )
    }
}

socket_conversions!(TcpStream, std::net::TcpStream);
stream_read_write!(TcpStream);
