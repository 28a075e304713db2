//! `spindle::net::UdpSocket` in every model: receives park only the green thread.

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use spindle::net::UdpSocket;

fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

cross_model! {
    // The receiver parks before the datagram is sent (in many-to-one the sender can only
    // run once it has).
    fn send_to_and_recv_from(model) {
        let receiver = socket();
        let sender = socket();
        let to = receiver.local_addr().unwrap();
        let from = sender.local_addr().unwrap();
        let r = spindle::spawn(move || {
            let mut buf = [0; 64];
            let (n, src) = receiver.recv_from(&mut buf).unwrap();
            (buf[..n].to_vec(), src)
        });
        let s = spindle::spawn(move || sender.send_to(b"datagram", to).unwrap());
        assert_eq!(s.join().unwrap(), 8);
        let (data, src) = r.join().unwrap();
        assert_eq!(data, b"datagram", "{model}");
        assert_eq!(src, from);
    }

    fn connected_send_recv_and_peek(model) {
        let a = socket();
        let b = socket();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
        let reader = spindle::spawn(move || {
            let mut buf = [0; 16];
            let n = b.peek(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"one");
            let (n, src) = b.peek_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"one");
            assert_eq!(src, b.peer_addr().unwrap());
            let n = b.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"one");
            let n = b.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        a.send(b"one").unwrap();
        a.send(b"two").unwrap();
        assert_eq!(reader.join().unwrap(), b"two", "{model}");
    }

    // A thousand round trips between two threads: each receive parks and is woken.
    fn ping_pong(model) {
        let a = socket();
        let b = socket();
        let b_addr = b.local_addr().unwrap();
        let rounds = 1000u32;
        let echo = spindle::spawn(move || {
            let mut buf = [0; 4];
            for _ in 0..rounds {
                let (n, src) = b.recv_from(&mut buf).unwrap();
                b.send_to(&buf[..n], src).unwrap();
            }
        });
        let mut buf = [0; 4];
        for i in 0..rounds {
            a.send_to(&i.to_le_bytes(), b_addr).unwrap();
            let n = a.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &i.to_le_bytes(), "{model}");
        }
        echo.join().unwrap();
    }

    fn recv_timeout(model) {
        let s = socket();
        assert_eq!(s.read_timeout().unwrap(), None);
        let timeout = Duration::from_millis(50);
        s.set_read_timeout(Some(timeout)).unwrap();
        s.set_write_timeout(Some(timeout)).unwrap();
        assert!(s.read_timeout().unwrap().unwrap() >= timeout);
        assert!(s.write_timeout().unwrap().unwrap() >= timeout);
        let start = Instant::now();
        let err = s.recv_from(&mut [0; 16]).unwrap_err();
        let waited = start.elapsed();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{model}: {err}");
        assert!(waited >= timeout, "{model}: timed out after {waited:?}");
        // Clones share the socket's timeouts.
        let clone = s.try_clone().unwrap();
        let start = Instant::now();
        assert_eq!(clone.recv(&mut [0; 16]).unwrap_err().kind(), ErrorKind::WouldBlock);
        assert!(start.elapsed() >= timeout, "{model}");
    }

    fn options_and_conversions(model) {
        let s = UdpSocket::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        s.set_broadcast(true).unwrap();
        assert!(s.broadcast().unwrap(), "{model}");
        s.set_ttl(7).unwrap();
        assert_eq!(s.ttl().unwrap(), 7);
        assert_eq!(s.peer_addr().unwrap_err().kind(), ErrorKind::NotConnected);
        let std_socket = std::net::UdpSocket::from(s);
        // Still non-blocking, as documented.
        assert_eq!(
            std_socket.recv(&mut [0; 4]).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }
}
