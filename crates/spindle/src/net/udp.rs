//! UDP: [`UdpSocket`], std's with sends and receives that park only the green thread.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsFd;
use std::time::Duration;

use super::{retry, socket_conversions};
use crate::io::Interest;
use crate::park::WaitReason;

/// A UDP socket: `std::net::UdpSocket` whose sends and receives park only the calling
/// green thread.
///
/// Always non-blocking underneath; timeouts and conversions are described in the
/// [module docs](crate::net). `&UdpSocket` is all any method needs, so several threads
/// may send and receive on one socket (or on [`try_clone`](UdpSocket::try_clone)s).
pub struct UdpSocket {
    inner: std::net::UdpSocket,
}

impl UdpSocket {
    fn wrap(inner: std::net::UdpSocket) -> UdpSocket {
        UdpSocket { inner }
    }

    /// Creates a socket bound to `addr`, as `std::net::UdpSocket::bind`. A host name is
    /// resolved in place, blocking the kernel thread (module docs).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        Ok(UdpSocket::from(std::net::UdpSocket::bind(addr)?))
    }

    /// Sets the default destination of [`send`](UdpSocket::send) and the only source
    /// [`recv`](UdpSocket::recv) accepts, as `std::net::UdpSocket::connect` (it never
    /// waits).
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        self.inner.connect(addr)
    }

    /// Sends `buf` to the connected peer as one datagram, parking while the send buffer
    /// is full.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.wait_to_send(|| self.inner.send(buf))
    }

    /// Sends `buf` to `addr` (to its first address, as std) as one datagram, parking while
    /// the send buffer is full.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to")
        })?;
        self.wait_to_send(|| self.inner.send_to(buf, addr))
    }

    /// Receives one datagram from the connected peer, parking until one comes; a
    /// datagram longer than `buf` is cut.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait_to_recv(|| self.inner.recv(buf))
    }

    /// Receives one datagram and its source address, parking until one comes.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.wait_to_recv(|| self.inner.recv_from(buf))
    }

    /// Like [`recv`](UdpSocket::recv), but leaves the datagram in the queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait_to_recv(|| self.inner.peek(buf))
    }

    /// Like [`recv_from`](UdpSocket::recv_from), but leaves the datagram in the queue.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.wait_to_recv(|| self.inner.peek_from(buf))
    }

    /// The address this socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The connected peer's address (`NotConnected` if [`connect`](UdpSocket::connect)
    /// was not called).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// A second handle to the same socket (`dup`); clones share options and timeouts.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            inner: self.inner.try_clone()?,
        })
    }

    /// Sets the receive timeout (`None`: wait forever): a receive or peek that waits
    /// longer fails with the `EAGAIN` error ([`io::ErrorKind::WouldBlock`]), as std's on
    /// Linux. A zero duration is an `InvalidInput` error.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }

    /// Sets the send timeout; see [`set_read_timeout`](UdpSocket::set_read_timeout).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(timeout)
    }

    /// The receive timeout; `None` if there is none.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        self.inner.read_timeout()
    }

    /// The send timeout; `None` if there is none.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        self.inner.write_timeout()
    }

    /// Sets `SO_BROADCAST`.
    pub fn set_broadcast(&self, broadcast: bool) -> io::Result<()> {
        self.inner.set_broadcast(broadcast)
    }

    /// `SO_BROADCAST`; see [`set_broadcast`](UdpSocket::set_broadcast).
    pub fn broadcast(&self) -> io::Result<bool> {
        self.inner.broadcast()
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.set_ttl(ttl)
    }

    /// `IP_TTL`; see [`set_ttl`](UdpSocket::set_ttl).
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.ttl()
    }

    /// Joins an IPv4 multicast group on the interface with address `interface`.
    pub fn join_multicast_v4(&self, group: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.inner.join_multicast_v4(group, interface)
    }

    /// Leaves an IPv4 multicast group; see [`join_multicast_v4`](UdpSocket::join_multicast_v4).
    pub fn leave_multicast_v4(&self, group: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.inner.leave_multicast_v4(group, interface)
    }

    /// Joins an IPv6 multicast group on the interface with index `interface` (0: any).
    pub fn join_multicast_v6(&self, group: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.inner.join_multicast_v6(group, interface)
    }

    /// Leaves an IPv6 multicast group; see [`join_multicast_v6`](UdpSocket::join_multicast_v6).
    pub fn leave_multicast_v6(&self, group: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.inner.leave_multicast_v6(group, interface)
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }

    fn wait_to_recv<T>(&self, op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        retry(
            self.inner.as_fd(),
            Interest::Read,
            WaitReason::UdpRecv,
            || self.inner.read_timeout(),
            op,
        )
    }

    fn wait_to_send<T>(&self, op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        retry(
            self.inner.as_fd(),
            Interest::Write,
            WaitReason::UdpSend,
            || self.inner.write_timeout(),
            op,
        )
    }
}

socket_conversions!(UdpSocket, std::net::UdpSocket);
