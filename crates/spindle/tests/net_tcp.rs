//! `spindle::net::{TcpListener, TcpStream}` in every model: calls park only the green
//! thread, and behave as std's.

mod common;

use std::io::{self, BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use spindle::net::{TcpListener, TcpStream};
use spindle::Model;

fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Echoes everything read from `stream` back until the peer shuts its write half down.
fn echo(stream: TcpStream) {
    let (mut r, mut w) = (&stream, &stream);
    io::copy(&mut r, &mut w).unwrap();
}

/// A pattern of `len` bytes that differs per `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7) % 251) as u8)
        .collect()
}

/// Threads per side for tests of many connections: fewer kernel threads in one-to-one.
fn fan_out(model: Model) -> usize {
    if model == Model::OneToOne {
        50
    } else {
        200
    }
}

cross_model! {
    fn echo_round_trip(model) {
        let (listener, addr) = listener();
        let server = spindle::spawn(move || {
            let (stream, peer) = listener.accept().unwrap();
            assert_eq!(peer, stream.peer_addr().unwrap());
            echo(stream);
        });
        let mut client = TcpStream::connect(addr).unwrap();
        assert_eq!(client.peer_addr().unwrap(), addr);
        assert!(client.local_addr().unwrap().port() != 0);
        let data = pattern(1, 64 * 1024);
        client.write_all(&data).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        assert!(back == data, "{model}: echoed bytes differ");
        server.join().unwrap();
    }

    // In many-to-one every client and handler is a green thread of one kernel thread:
    // this finishes only if every wait (accept, connect, read, write) parks its green
    // thread alone.
    fn many_concurrent_connections(model) {
        let n = fan_out(model);
        let (listener, addr) = listener();
        let server = spindle::spawn(move || {
            let handlers: Vec<_> = (0..n)
                .map(|_| {
                    let (stream, _) = listener.accept().unwrap();
                    spindle::spawn(move || echo(stream))
                })
                .collect();
            for h in handlers {
                h.join().unwrap();
            }
        });
        let clients: Vec<_> = (0..n as u64)
            .map(|i| {
                spindle::spawn(move || {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    let data = pattern(i, 4096 + i as usize);
                    stream.write_all(&data).unwrap();
                    stream.shutdown(Shutdown::Write).unwrap();
                    let mut back = Vec::new();
                    stream.read_to_end(&mut back).unwrap();
                    back == data
                })
            })
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            assert!(c.join().unwrap(), "{model}: client {i} got other bytes back");
        }
        server.join().unwrap();
    }

    fn accept_loop_with_incoming(model) {
        let (listener, addr) = listener();
        let n = 20;
        let server = spindle::spawn(move || {
            let mut served = 0;
            for stream in listener.incoming().take(n) {
                let stream = stream.unwrap();
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line).unwrap();
                (&stream).write_all(format!("hello {line}").as_bytes()).unwrap();
                served += 1;
            }
            served
        });
        for i in 0..n {
            let mut stream = TcpStream::connect(addr).unwrap();
            writeln!(stream, "client {i}").unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).unwrap();
            assert_eq!(reply, format!("hello client {i}\n"), "{model}");
        }
        assert_eq!(server.join().unwrap(), n);
    }

    fn read_timeout_on_an_idle_socket(model) {
        let (listener, addr) = listener();
        let (done_tx, done_rx) = spindle::channel::bounded::<()>(0);
        // The server accepts and keeps the connection open, silent, until told.
        let server = spindle::spawn(move || {
            let (_stream, _) = listener.accept().unwrap();
            done_rx.recv().unwrap();
        });
        let mut client = TcpStream::connect(addr).unwrap();
        assert_eq!(client.read_timeout().unwrap(), None);
        let timeout = Duration::from_millis(50);
        client.set_read_timeout(Some(timeout)).unwrap();
        // The kernel keeps it in clock ticks: std's getter too may round it up a little.
        let kept = client.read_timeout().unwrap().unwrap();
        assert!(kept >= timeout && kept < timeout * 2, "{model}: {kept:?}");
        let start = Instant::now();
        let err = client.read(&mut [0; 16]).unwrap_err();
        let waited = start.elapsed();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{model}: {err}");
        assert!(waited >= timeout, "{model}: timed out after {waited:?}");
        // A peek waits the same way; a clone shares the timeout (it belongs to the socket).
        let clone = client.try_clone().unwrap();
        assert_eq!(clone.read_timeout().unwrap(), Some(kept));
        let start = Instant::now();
        assert_eq!(clone.peek(&mut [0; 16]).unwrap_err().kind(), ErrorKind::WouldBlock);
        assert!(start.elapsed() >= timeout, "{model}");
        assert_eq!(
            client.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        done_tx.send(()).unwrap();
        server.join().unwrap();
    }

    fn a_read_after_a_short_read_finds_data_from_before_and_after_its_wait(model) {
        // After a read that returned less than it was given, the next read on the handle
        // waits for readability before it tries (net/stream_state.rs). Data already queued
        // and data that comes during the wait must both end that wait, and a timeout still
        // applies to it.
        let (listener, addr) = listener();
        let (sent_tx, sent_rx) = spindle::channel::bounded::<()>(0);
        let (read_tx, read_rx) = spindle::channel::bounded::<()>(0);
        let server = spindle::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // A wait that missed queued data would last for ever: fail instead.
            stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut buf = [0u8; 64];
            let mut read = |stream: &mut TcpStream| {
                let n = stream.read(&mut buf).unwrap();
                buf[..n].to_vec()
            };
            sent_rx.recv().unwrap();
            assert_eq!(read(&mut stream), b"abc", "a short read");
            read_tx.send(()).unwrap();
            sent_rx.recv().unwrap(); // "fghij" is queued before this read starts
            assert_eq!(read(&mut stream), b"fghij");
            read_tx.send(()).unwrap(); // "klm" is sent while this read waits, or before
            assert_eq!(read(&mut stream), b"klm");
            let timeout = Duration::from_millis(50);
            stream.set_read_timeout(Some(timeout)).unwrap();
            let start = Instant::now();
            let err = stream.read(&mut [0u8; 64]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
            assert!(start.elapsed() >= timeout, "timed out after {:?}", start.elapsed());
            read_tx.send(()).unwrap();
            assert_eq!(read(&mut stream), b"", "end of stream");
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"abc").unwrap();
        sent_tx.send(()).unwrap();
        read_rx.recv().unwrap();
        client.write_all(b"fghij").unwrap();
        sent_tx.send(()).unwrap();
        read_rx.recv().unwrap();
        client.write_all(b"klm").unwrap();
        read_rx.recv().unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        server.join().unwrap();
    }

    fn a_timeout_set_through_a_clone_applies_to_a_wait_on_the_original(model) {
        // A stream caches its socket's timeouts (net/stream_state.rs); its clones share
        // that cache, so a timeout set on one applies to waits on the others.
        let (listener, addr) = listener();
        let (done_tx, done_rx) = spindle::channel::bounded::<()>(0);
        let server = spindle::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            (&stream).write_all(b"x").unwrap();
            done_rx.recv().unwrap();
        });
        let mut client = TcpStream::connect(addr).unwrap();
        // A read that waits caches "no timeout" (it may also find the byte at once).
        let mut byte = [0u8; 1];
        client.read_exact(&mut byte).unwrap();
        assert_eq!(client.read_timeout().unwrap(), None);
        let clone = client.try_clone().unwrap();
        let timeout = Duration::from_millis(50);
        clone.set_read_timeout(Some(timeout)).unwrap();
        assert_eq!(client.read_timeout().unwrap(), clone.read_timeout().unwrap());
        let start = Instant::now();
        let err = client.read(&mut byte).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{model}: {err}");
        assert!(start.elapsed() >= timeout, "{model}: {:?}", start.elapsed());
        // And a std handle converted from a clone sees it, in the socket.
        let std_handle = std::net::TcpStream::from(client.try_clone().unwrap());
        assert_eq!(std_handle.read_timeout().unwrap(), client.read_timeout().unwrap());
        done_tx.send(()).unwrap();
        server.join().unwrap();
    }

    fn write_timeout_when_the_peer_does_not_read(model) {
        let (listener, addr) = listener();
        let (done_tx, done_rx) = spindle::channel::bounded::<()>(0);
        let server = spindle::spawn(move || {
            let (_stream, _) = listener.accept().unwrap();
            done_rx.recv().unwrap();
        });
        let mut client = TcpStream::connect(addr).unwrap();
        let timeout = Duration::from_millis(50);
        client.set_write_timeout(Some(timeout)).unwrap();
        assert!(client.write_timeout().unwrap().unwrap() >= timeout);
        let chunk = vec![0u8; 256 * 1024];
        // Writes until the buffers are full and a write waits out its timeout.
        let err = loop {
            let start = Instant::now();
            match client.write(&chunk) {
                Ok(n) => assert!(n > 0),
                Err(e) => break (e, start.elapsed()),
            }
        };
        assert_eq!(err.0.kind(), ErrorKind::WouldBlock, "{model}: {}", err.0);
        assert!(err.1 >= timeout, "{model}: timed out after {:?}", err.1);
        done_tx.send(()).unwrap();
        server.join().unwrap();
    }

    // One thread reads while another writes, on clones: 4 MiB each way, more than the
    // socket buffers hold, so both wait on the same connection at once.
    fn try_clone_reader_and_writer(model) {
        let (listener, addr) = listener();
        let server = spindle::spawn(move || echo(listener.accept().unwrap().0));
        let stream = TcpStream::connect(addr).unwrap();
        let data = pattern(3, 4 << 20);
        let expected = data.clone();
        let mut writer_half = stream.try_clone().unwrap();
        let writer = spindle::spawn(move || {
            writer_half.write_all(&data).unwrap();
            writer_half.shutdown(Shutdown::Write).unwrap();
        });
        let reader = spindle::spawn(move || {
            let mut back = Vec::new();
            (&stream).read_to_end(&mut back).unwrap();
            back
        });
        writer.join().unwrap();
        assert!(reader.join().unwrap() == expected, "{model}: echoed bytes differ");
        server.join().unwrap();
    }

    // The same, through one `&TcpStream` shared by both threads: two waits on one
    // descriptor at once.
    fn shared_reference_reader_and_writer(model) {
        let (listener, addr) = listener();
        let server = spindle::spawn(move || echo(listener.accept().unwrap().0));
        let stream = TcpStream::connect(addr).unwrap();
        let data = pattern(4, 4 << 20);
        let back = spindle::scope(|s| {
            let reader = s.spawn(|| {
                let mut back = Vec::new();
                (&stream).read_to_end(&mut back).unwrap();
                back
            });
            s.spawn(|| {
                (&stream).write_all(&data).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
            });
            reader.join().unwrap()
        });
        assert!(back == data, "{model}: echoed bytes differ");
        server.join().unwrap();
    }

    fn shutdown_semantics(model) {
        let (listener, addr) = listener();
        let server = spindle::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            // Returns once the client shut its write half down: read gave 0.
            stream.read_to_end(&mut got).unwrap();
            assert_eq!(stream.read(&mut [0; 8]).unwrap(), 0);
            stream.write_all(b"bye").unwrap();
            got
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"hello").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(client.write(b"more").unwrap_err().kind(), ErrorKind::BrokenPipe);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"bye", "{model}");
        assert_eq!(server.join().unwrap(), b"hello");
    }

    fn connect_to_a_closed_port_is_refused(model) {
        let addr = {
            let (listener, addr) = listener();
            drop(listener);
            addr
        };
        let err = TcpStream::connect(addr).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{model}: {err}");
        let err = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{model}: {err}");
    }

    fn connect_timeout_connects(model) {
        let (listener, addr) = listener();
        let server = spindle::spawn(move || listener.accept().unwrap().1);
        let client = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        assert_eq!(server.join().unwrap(), client.local_addr().unwrap(), "{model}");
        let err = TcpStream::connect_timeout(&addr, Duration::ZERO).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    fn a_reset_by_the_peer_is_an_error(model) {
        let (listener, addr) = listener();
        let (go_tx, go_rx) = spindle::channel::bounded::<()>(0);
        let server = spindle::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            go_rx.recv().unwrap();
            // SO_LINGER with a zero timeout: close sends RST.
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: a valid descriptor and a valid `linger` of the size given.
            let rc = unsafe {
                libc::setsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0);
            drop(stream);
        });
        let mut client = TcpStream::connect(addr).unwrap();
        go_tx.send(()).unwrap();
        let err = client.read(&mut [0; 16]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{model}: {err}");
        server.join().unwrap();
    }

    fn buffered_reader_and_writer(model) {
        let (listener, addr) = listener();
        let server = spindle::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = BufWriter::new(&stream);
            let mut total = 0;
            for line in BufReader::new(&stream).lines() {
                let n: u64 = line.unwrap().parse().unwrap();
                total += n;
                writeln!(out, "{total}").unwrap();
            }
            out.flush().unwrap();
        });
        let stream = TcpStream::connect(addr).unwrap();
        let mut out = BufWriter::new(stream.try_clone().unwrap());
        for i in 1..=1000u64 {
            writeln!(out, "{i}").unwrap();
        }
        out.flush().unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let sums: Vec<u64> = BufReader::new(stream)
            .lines()
            .map(|l| l.unwrap().parse().unwrap())
            .collect();
        assert_eq!(sums.len(), 1000, "{model}");
        assert_eq!(sums[999], 500_500);
        server.join().unwrap();
    }

    fn peek_then_read(model) {
        let (listener, addr) = listener();
        let server = spindle::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut buf = [0; 5];
            // Parks until the data is there, and leaves it there.
            assert_eq!(stream.peek(&mut buf).unwrap(), 5);
            let mut again = [0; 5];
            (&stream).read_exact(&mut again).unwrap();
            assert_eq!(buf, again);
            buf
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"abcde").unwrap();
        assert_eq!(&server.join().unwrap(), b"abcde", "{model}");
    }

    fn options(model) {
        let (listener, addr) = listener();
        let client = TcpStream::connect(addr).unwrap();
        client.set_nodelay(true).unwrap();
        assert!(client.nodelay().unwrap(), "{model}");
        client.set_ttl(42).unwrap();
        assert_eq!(client.ttl().unwrap(), 42);
        listener.set_ttl(43).unwrap();
        assert_eq!(listener.ttl().unwrap(), 43);
        assert!(client.take_error().unwrap().is_none());
        let _ = listener.accept().unwrap();
    }

    // From std (made non-blocking, timeouts kept) and back; from an OwnedFd.
    fn conversions(model) {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = TcpListener::from(std_listener);
        let server = spindle::spawn(move || echo(listener.accept().unwrap().0));
        let std_stream = std::net::TcpStream::connect(addr).unwrap();
        std_stream.set_read_timeout(Some(Duration::from_secs(7))).unwrap();
        let stream = TcpStream::from(OwnedFd::from(std_stream));
        assert_eq!(stream.read_timeout().unwrap(), Some(Duration::from_secs(7)), "{model}");
        (&stream).write_all(b"ping").unwrap();
        let mut buf = [0; 4];
        (&stream).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        // Back to std: still non-blocking, as documented.
        let std_stream = std::net::TcpStream::from(stream);
        assert_eq!(
            (&std_stream).read(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        std_stream.shutdown(Shutdown::Write).unwrap();
        // The echo server ends at our shutdown; then a blocking read sees the end at once
        // (a blocking read before that would hold the worker the server needs).
        server.join().unwrap();
        std_stream.set_nonblocking(false).unwrap();
        assert_eq!((&std_stream).read(&mut buf).unwrap(), 0);
    }
}

// In many-to-one a green thread parked in accept leaves its kernel thread to the others:
// a second green thread runs to completion meanwhile, then connects.
#[test]
fn a_green_thread_parked_in_accept_leaves_the_worker_to_others() {
    common::run(Model::ManyToOne, || {
        let (listener, addr) = listener();
        let acceptor = spindle::spawn(move || listener.accept().map(|(_, peer)| peer));
        let ticker = spindle::spawn(|| {
            for _ in 0..100 {
                spindle::sleep(Duration::from_micros(100));
            }
        });
        ticker.join().unwrap();
        assert!(!acceptor.is_finished());
        let client = TcpStream::connect(addr).unwrap();
        assert_eq!(
            acceptor.join().unwrap().unwrap(),
            client.local_addr().unwrap()
        );
    });
}

// Outside any runtime the same types work on plain kernel threads (poll(2) waits).
#[test]
fn works_outside_a_runtime() {
    let (listener, addr) = listener();
    let server = std::thread::spawn(move || echo(listener.accept().unwrap().0));
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let start = Instant::now();
    assert_eq!(
        client.read(&mut [0; 4]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
    client.write_all(b"ping").unwrap();
    let mut buf = [0; 4];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    client.shutdown(Shutdown::Write).unwrap();
    server.join().unwrap();
}

/// A green thread whose socket calls never wait still gives way (the net module's
/// "Fairness"): in many-to-one, another ready thread runs before 1,000 such calls end.
#[test]
fn socket_calls_that_never_wait_still_let_others_run() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    common::run(Model::ManyToOne, || {
        let (listener, addr) = listener();
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        (&client).write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        // Make sure the byte has arrived, so that every peek below succeeds at once.
        assert_eq!(server.peek(&mut byte).unwrap(), 1);
        let other_ran = Arc::new(AtomicBool::new(false));
        let flag = other_ran.clone();
        let other = spindle::spawn(move || flag.store(true, Ordering::SeqCst));
        let seen_at = (0..1000).find(|_| {
            assert_eq!(server.peek(&mut byte).unwrap(), 1);
            other_ran.load(Ordering::SeqCst)
        });
        assert!(
            seen_at.is_some(),
            "1,000 socket calls and the other thread never ran"
        );
        other.join().unwrap();
    });
}
