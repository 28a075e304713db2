//! Adversarial I/O tests: peers that reset or shut down under parked readers and writers,
//! spurious wakeups under timeouts, writes whose bytes must be accounted for exactly, UDP
//! truncation and empty datagrams against std, runtimes dropped under waits on sockets that
//! outlive them, positioned file I/O at extreme offsets against std, and the same behaviour
//! on both reactor backends.
//!
//! Each test runs its body on every model and, where the machine has it, on both backends
//! (whatever `SPINDLE_IO_BACKEND` says), under a watchdog: a hang fails the process.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Watchdog;
use spindle::io::IoBackend;
use spindle::net::unix::UnixStream;
use spindle::net::{TcpListener, TcpStream, UdpSocket};
use spindle::{Model, Runtime, WaitReason};

/// Far beyond what any test here takes, loaded or not.
const HANG: Duration = Duration::from_secs(120);

/// Every model on every backend this machine can run (one-to-one once: it has no reactor).
fn runtimes() -> Vec<(String, Runtime)> {
    let mut all = Vec::new();
    for backend in [IoBackend::Epoll, IoBackend::IoUring] {
        for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
            match Runtime::builder().model(model).io_backend(backend).build() {
                Ok(rt) => all.push((format!("{model} on {backend:?}"), rt)),
                Err(e) if backend == IoBackend::IoUring => {
                    eprintln!("io_uring unavailable: {e}");
                }
                Err(e) => panic!("cannot build {model} on {backend:?}: {e}"),
            }
        }
    }
    let one = Runtime::builder().model(Model::OneToOne).build().unwrap();
    all.push(("one-to-one".to_string(), one));
    all
}

/// Runs `test` as the first thread of every runtime of [`runtimes`], under a watchdog.
fn everywhere(name: &'static str, test: impl Fn(&str) + Sync) {
    let _watchdog = Watchdog::new(name, HANG);
    for (label, rt) in runtimes() {
        rt.block_on(|| test(&label));
    }
}

/// A connected TCP pair on loopback: (client, server).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// `len` bytes of a pattern that does not repeat at any short period.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Waits until green thread `id` is parked for `reason`; on a kernel thread (one-to-one)
/// there is nothing to observe and it returns at once (each test's outcome must not
/// depend on it, only how hard the test pushes).
fn parked(id: spindle::ThreadId, reason: WaitReason) {
    if spindle::current().is_green() {
        common::wait_until_parked(id, reason);
    }
}

/// Closes `stream` with a reset (`SO_LINGER` 0).
fn reset(stream: impl AsFd) {
    rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO)).unwrap();
    drop(stream);
}

/// Writes `chunk` in a loop until a write fails; returns the bytes the writes reported
/// and the error.
fn write_until_error(stream: &TcpStream, chunk: &[u8]) -> (usize, io::Error) {
    let mut sent = 0;
    loop {
        match (&*stream).write(chunk) {
            Ok(0) => panic!("a write of {} bytes wrote nothing", chunk.len()),
            Ok(n) => sent += n,
            Err(e) => return (sent, e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Peers that reset or shut down under parked threads
// ---------------------------------------------------------------------------------------

/// A writer parked because the peer does not read (small writes: the ring path on
/// io_uring; large ones: the stream's own `send`) gets an error when the peer resets the
/// connection, and does not hang.
#[test]
fn a_reset_under_a_parked_writer_is_an_error() {
    everywhere("a_reset_under_a_parked_writer_is_an_error", |label| {
        for chunk_len in [4 * 1024, 512 * 1024] {
            let (client, server) = tcp_pair();
            let client = Arc::new(client);
            let writer = {
                let client = client.clone();
                spindle::spawn(move || write_until_error(&client, &pattern(1, chunk_len)))
            };
            parked(writer.thread().id(), WaitReason::TcpWrite);
            reset(server);
            let (_sent, err) = writer.join().unwrap();
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                ),
                "{label}, {chunk_len}-byte writes: {err:?}"
            );
        }
    });
}

/// A reader parked on a socket that the *same* process shuts down for reading, from
/// another thread, returns 0 (as a std reader blocked in `recv` does on Linux).
#[test]
fn shutdown_read_from_another_thread_wakes_a_parked_reader() {
    everywhere("shutdown_read_wakes_a_parked_reader", |label| {
        let (_client, server) = tcp_pair();
        let server = Arc::new(server);
        let reader = {
            let server = server.clone();
            spindle::spawn(move || (&*server).read(&mut [0u8; 64]))
        };
        parked(reader.thread().id(), WaitReason::TcpRead);
        server.shutdown(Shutdown::Read).unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got.unwrap(), 0, "{label}");
        // And reads after it do not wait either.
        assert_eq!((&*server).read(&mut [0u8; 64]).unwrap(), 0, "{label}");
    });
}

/// A writer parked on a full socket that another thread shuts down for writing fails with
/// `BrokenPipe`; the bytes its writes reported are exactly what the peer receives (a
/// send the shutdown interrupted sent nothing it did not report, on the ring path too).
#[test]
fn shutdown_write_under_a_parked_writer_reports_exactly_what_was_sent() {
    everywhere("shutdown_write_under_a_parked_writer", |label| {
        for chunk_len in [3 * 1024, 16 * 1024, 300 * 1024] {
            let (mut client, server) = tcp_pair();
            let server = Arc::new(server);
            let chunk = pattern(7, chunk_len);
            let writer = {
                let server = server.clone();
                let chunk = chunk.clone();
                spindle::spawn(move || write_until_error(&server, &chunk))
            };
            parked(writer.thread().id(), WaitReason::TcpWrite);
            server.shutdown(Shutdown::Write).unwrap();
            let (sent, err) = writer.join().unwrap();
            assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{label}: {err:?}");
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), sent, "{label}, {chunk_len}-byte writes");
            for (i, piece) in got.chunks(chunk_len).enumerate() {
                assert!(piece == &chunk[..piece.len()], "{label}: chunk {i} differs");
            }
        }
    });
}

/// Unix streams: a parked reader sees the peer's close as 0, a parked writer as
/// `BrokenPipe` (never a hang, never a panic).
#[test]
fn unix_peer_close_under_parked_reader_and_writer() {
    everywhere("unix_peer_close_under_parked_reader_and_writer", |label| {
        let (a, b) = UnixStream::pair().unwrap();
        let a = Arc::new(a);
        let reader = {
            let a = a.clone();
            spindle::spawn(move || (&*a).read(&mut [0u8; 16]))
        };
        parked(reader.thread().id(), WaitReason::UnixRead);
        drop(b);
        assert_eq!(reader.join().unwrap().unwrap(), 0, "{label}");

        let (a, b) = UnixStream::pair().unwrap();
        let a = Arc::new(a);
        let writer = {
            let a = a.clone();
            spindle::spawn(move || {
                let chunk = vec![5u8; 64 * 1024];
                loop {
                    if let Err(e) = (&*a).write(&chunk) {
                        return e;
                    }
                }
            })
        };
        parked(writer.thread().id(), WaitReason::UnixWrite);
        drop(b);
        let err = writer.join().unwrap();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
            ),
            "{label}: {err:?}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// Large writes, duplex traffic, zero-length calls
// ---------------------------------------------------------------------------------------

/// Writes of mixed sizes (below, at and above the ring path's 16 KiB, and vectored) to a
/// reader that takes small bites and yields: every byte arrives, once, in order.
#[test]
fn mixed_size_writes_to_a_slow_reader_arrive_whole_and_in_order() {
    everywhere("mixed_size_writes_to_a_slow_reader", |label| {
        let (client, mut server) = tcp_pair();
        let total = 6 << 20;
        let data = Arc::new(pattern(11, total));
        let writer = {
            let data = data.clone();
            spindle::spawn(move || {
                let mut client = client;
                let sizes = [1usize, 700, 16 * 1024, 16 * 1024 + 1, 5000, 200 * 1024, 3];
                let mut at = 0;
                let mut i = 0;
                while at < data.len() {
                    let end = (at + sizes[i % sizes.len()]).min(data.len());
                    if i % 5 == 4 {
                        // Vectored, in two slices.
                        let mid = at + (end - at) / 2;
                        let bufs = [
                            io::IoSlice::new(&data[at..mid]),
                            io::IoSlice::new(&data[mid..end]),
                        ];
                        at += client.write_vectored(&bufs).unwrap();
                    } else {
                        at += client.write(&data[at..end]).unwrap();
                    }
                    i += 1;
                }
            })
        };
        let mut got = Vec::with_capacity(total);
        let mut buf = [0u8; 1500];
        let mut reads = 0u32;
        loop {
            let n = server.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            reads += 1;
            if reads % 64 == 0 {
                spindle::yield_now();
            }
        }
        writer.join().unwrap();
        assert_eq!(got.len(), total, "{label}");
        assert!(got[..] == data[..], "{label}: bytes differ");
    });
}

/// Both ends write 3 MiB at once while reading what the other sends, each end through
/// `try_clone` (one thread reads, another writes): nothing deadlocks, everything arrives.
/// In many-to-many the four threads are spread over both workers where they land so.
#[test]
fn full_duplex_through_clones_on_both_ends() {
    everywhere("full_duplex_through_clones_on_both_ends", |label| {
        let (client, server) = tcp_pair();
        let len = 3 << 20;
        let mut handles = Vec::new();
        for (seed, stream) in [(21u64, client), (22u64, server)] {
            let mut write_half = stream.try_clone().unwrap();
            let mut read_half = stream;
            handles.push(spindle::spawn(move || {
                write_half.write_all(&pattern(seed, len)).unwrap();
                write_half.shutdown(Shutdown::Write).unwrap();
                Vec::new()
            }));
            handles.push(spindle::spawn(move || {
                let mut got = Vec::new();
                read_half.read_to_end(&mut got).unwrap();
                got
            }));
        }
        let results: Vec<Vec<u8>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // The client's reader gets the server's bytes, and the other way round.
        assert!(
            results[1] == pattern(22, len),
            "{label}: client got wrong bytes"
        );
        assert!(
            results[3] == pattern(21, len),
            "{label}: server got wrong bytes"
        );
    });
}

/// Many-to-many: a reader and a writer of one `&TcpStream` that run on different workers
/// (picked from threads that report where they run): the reader's registration is on one
/// worker, the writer's waits on the other's reactor; both see every event.
#[test]
fn reader_and_writer_of_one_stream_on_different_workers() {
    let _watchdog = Watchdog::new("reader_and_writer_on_different_workers", HANG);
    for backend in [IoBackend::Epoll, IoBackend::IoUring] {
        let Ok(rt) = Runtime::builder()
            .model(Model::ManyToMany { workers: 2 })
            .io_backend(backend)
            .build()
        else {
            continue;
        };
        rt.block_on(|| {
            let (client, server) = tcp_pair();
            let client = Arc::new(client);
            let len = 4 << 20;
            // Threads that say where they run and wait for a role: 0 leaves, 1 reads, 2
            // writes.
            let (where_tx, where_rx) = spindle::channel::unbounded();
            let mut roles = Vec::new();
            let mut handles = Vec::new();
            for i in 0..16 {
                let (role_tx, role_rx) = spindle::channel::bounded::<u8>(1);
                roles.push(role_tx);
                let where_tx = where_tx.clone();
                let client = client.clone();
                handles.push(spindle::spawn(move || {
                    where_tx
                        .send((i, spindle::runtime::worker_index().unwrap()))
                        .unwrap();
                    match role_rx.recv().unwrap() {
                        1 => {
                            let mut got = Vec::new();
                            (&*client).read_to_end(&mut got).unwrap();
                            Some(got)
                        }
                        2 => {
                            (&*client).write_all(&pattern(31, len)).unwrap();
                            client.shutdown(Shutdown::Write).unwrap();
                            None
                        }
                        _ => None,
                    }
                }));
            }
            let mut at = std::collections::HashMap::new();
            for _ in 0..16 {
                let (i, w) = where_rx.recv().unwrap();
                at.entry(w).or_insert(i);
            }
            let mut workers: Vec<_> = at.into_iter().collect();
            workers.sort();
            let reader = workers[0].1;
            let writer = workers.get(1).map(|w| w.1).unwrap_or((reader + 1) % 16);
            if workers.len() < 2 {
                eprintln!("all threads landed on one worker; the test runs on one");
            }
            for (i, role) in roles.iter().enumerate() {
                let r = if i == reader {
                    1
                } else if i == writer {
                    2
                } else {
                    0
                };
                role.send(r).unwrap();
            }
            // The server echoes everything back.
            let echo = spindle::spawn(move || {
                let mut server = server;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = server.read(&mut buf).unwrap();
                    if n == 0 {
                        server.shutdown(Shutdown::Write).unwrap();
                        return;
                    }
                    server.write_all(&buf[..n]).unwrap();
                }
            });
            let mut got = None;
            for (i, h) in handles.into_iter().enumerate() {
                let r = h.join().unwrap();
                if i == reader {
                    got = r;
                }
            }
            echo.join().unwrap();
            assert!(
                got.unwrap() == pattern(31, len),
                "{backend:?}: echo differs"
            );
        });
    }
}

/// Zero-length calls, against std: an empty write sends nothing and returns 0; an empty
/// read with data queued returns 0 and leaves the data; an empty UDP datagram is a datagram.
#[test]
fn zero_length_reads_and_writes() {
    everywhere("zero_length_reads_and_writes", |label| {
        let (mut client, mut server) = tcp_pair();
        assert_eq!(client.write(&[]).unwrap(), 0, "{label}");
        client.write_all(b"abc").unwrap();
        // Wait until it is there, then an empty read must not take it.
        let mut peek = [0u8; 3];
        let mut have = 0;
        while have < 3 {
            have = server.peek(&mut peek).unwrap();
        }
        assert_eq!(server.read(&mut []).unwrap(), 0, "{label}");
        let mut buf = [0u8; 3];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abc", "{label}");
        // Vectored with only empty slices.
        assert_eq!(
            client.write_vectored(&[io::IoSlice::new(&[])]).unwrap(),
            0,
            "{label}"
        );

        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            a.send_to(&[], b.local_addr().unwrap()).unwrap(),
            0,
            "{label}"
        );
        a.send_to(b"x", b.local_addr().unwrap()).unwrap();
        let (n, from) = b.recv_from(&mut [0u8; 8]).unwrap();
        assert_eq!((n, from), (0, a.local_addr().unwrap()), "{label}");
        let mut one = [0u8; 8];
        let (n, _) = b.recv_from(&mut one).unwrap();
        assert_eq!(&one[..n], b"x", "{label}");
    });
}

// ---------------------------------------------------------------------------------------
// UDP truncation
// ---------------------------------------------------------------------------------------

/// A datagram longer than the buffer is cut, as std: `recv_from` and `recv` return the
/// buffer's length, the rest is gone, the next call gets the next datagram; `peek_from`
/// cut short leaves the whole datagram queued. Checked against std's sockets doing the same.
#[test]
fn udp_truncation_matches_std() {
    /// `recv_from` or `peek_from` of one of the sockets compared.
    type Receive<'a> = &'a dyn Fn(&mut [u8]) -> io::Result<(usize, SocketAddr)>;
    fn sequence(
        send: &dyn Fn(&[u8]),
        recv_from: Receive<'_>,
        peek_from: Receive<'_>,
    ) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        let big = pattern(41, 1000);
        send(&big);
        send(b"second");
        send(&big[..300]);
        let mut small = [0u8; 10];
        let (n, _) = peek_from(&mut small).unwrap();
        out.push((n, small[..n].to_vec()));
        let (n, _) = recv_from(&mut small).unwrap();
        out.push((n, small[..n].to_vec()));
        let mut mid = [0u8; 64];
        let (n, _) = recv_from(&mut mid).unwrap();
        out.push((n, mid[..n].to_vec()));
        let mut exact = [0u8; 300];
        let (n, _) = recv_from(&mut exact).unwrap();
        out.push((n, exact[..n].to_vec()));
        out
    }
    let expected = {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        sequence(
            &|d| assert_eq!(a.send_to(d, to).unwrap(), d.len()),
            &|buf| b.recv_from(buf),
            &|buf| b.peek_from(buf),
        )
    };
    everywhere("udp_truncation_matches_std", |label| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        // The receiver waits first here: a datagram sent later, on another thread.
        let got = sequence(
            &|d| {
                let d = d.to_vec();
                let a = a.try_clone().unwrap();
                spindle::spawn(move || assert_eq!(a.send_to(&d, to).unwrap(), d.len()))
                    .join()
                    .unwrap()
            },
            &|buf| b.recv_from(buf),
            &|buf| b.peek_from(buf),
        );
        assert_eq!(got, expected, "{label}");
        // Connected `recv` into a short buffer, with the datagram arriving while parked.
        a.connect(to).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        let b = Arc::new(b);
        let receiver = {
            let b = b.clone();
            spindle::spawn(move || {
                let mut buf = [0u8; 4];
                let n = b.recv(&mut buf).unwrap();
                let mut next = [0u8; 16];
                let m = b.recv(&mut next).unwrap();
                (buf[..n].to_vec(), next[..m].to_vec())
            })
        };
        parked(receiver.thread().id(), WaitReason::UdpRecv);
        a.send(b"truncated!").unwrap();
        a.send(b"next").unwrap();
        let (first, second) = receiver.join().unwrap();
        assert_eq!(first, b"trun", "{label}");
        assert_eq!(second, b"next", "{label}");
    });
}

// ---------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------

/// A read with a timeout whose thread is unparked over and over by another thread (a
/// spurious wakeup each time) neither returns before its timeout nor loses data that
/// comes after; the same for a `UdpSocket` and for a read without timeout.
#[test]
fn spurious_unparks_neither_end_a_timed_read_early_nor_lose_data() {
    everywhere("spurious_unparks_do_not_end_a_timed_read_early", |label| {
        let timeout = Duration::from_millis(150);
        let (client, server) = tcp_pair();
        server.set_read_timeout(Some(timeout)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = spindle::spawn(move || {
            let start = Instant::now();
            let err = (&server).read(&mut [0u8; 8]).unwrap_err();
            let elapsed = start.elapsed();
            (server, err, elapsed)
        });
        let pester = |target: spindle::Thread, stop: Arc<AtomicBool>| {
            spindle::spawn(move || {
                while !stop.load(SeqCst) {
                    target.unpark();
                    spindle::sleep(Duration::from_micros(300));
                }
            })
        };
        let p = pester(reader.thread().clone(), stop.clone());
        let (server, err, elapsed) = reader.join().unwrap();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{label}: {err:?}");
        assert!(elapsed >= timeout, "{label}: timed out after {elapsed:?}");
        stop.store(true, SeqCst);
        p.join().unwrap();

        // No timeout now: spurious wakeups until the data comes.
        server.set_read_timeout(None).unwrap();
        stop.store(false, SeqCst);
        let reader = spindle::spawn(move || {
            let mut buf = [0u8; 5];
            (&server).read_exact(&mut buf).unwrap();
            buf
        });
        parked(reader.thread().id(), WaitReason::TcpRead);
        let p = pester(reader.thread().clone(), stop.clone());
        // Time for spurious wakeups before the data comes.
        spindle::sleep(Duration::from_millis(20));
        (&client).write_all(b"hello").unwrap();
        assert_eq!(&reader.join().unwrap(), b"hello", "{label}");
        stop.store(true, SeqCst);
        p.join().unwrap();

        // UDP, with its timeout kept in the socket.
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(timeout)).unwrap();
        stop.store(false, SeqCst);
        let reader = spindle::spawn(move || {
            let start = Instant::now();
            let err = udp.recv_from(&mut [0u8; 8]).unwrap_err();
            (err, start.elapsed())
        });
        let p = pester(reader.thread().clone(), stop.clone());
        let (err, elapsed) = reader.join().unwrap();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{label}: {err:?}");
        assert!(
            elapsed >= timeout,
            "{label}: UDP timed out after {elapsed:?}"
        );
        stop.store(true, SeqCst);
        p.join().unwrap();
    });
}

/// Writes with a write timeout to a peer that stops reading: the write that times out
/// fails with `WouldBlock` no earlier than the timeout, and what the peer finally reads is
/// exactly the bytes the writes reported, in order, for writes on and off the ring path.
#[test]
fn timed_out_writes_account_for_every_byte() {
    everywhere("timed_out_writes_account_for_every_byte", |label| {
        for chunk_len in [8 * 1024, 16 * 1024, 100 * 1024] {
            let (client, mut server) = tcp_pair();
            let timeout = Duration::from_millis(20);
            client.set_write_timeout(Some(timeout)).unwrap();
            let data = pattern(51, 1 << 16);
            let mut sent = 0usize;
            let mut stream_pos = 0usize;
            let mut expected = Vec::new();
            let (err, elapsed) = loop {
                let at = stream_pos % data.len();
                let end = (at + chunk_len).min(data.len());
                let start = Instant::now();
                match (&client).write(&data[at..end]) {
                    Ok(n) => {
                        expected.extend_from_slice(&data[at..at + n]);
                        sent += n;
                        stream_pos += n;
                    }
                    Err(e) => break (e, start.elapsed()),
                }
            };
            assert_eq!(err.kind(), ErrorKind::WouldBlock, "{label}: {err:?}");
            assert!(elapsed >= timeout, "{label}: timed out after {elapsed:?}");
            drop(client);
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), sent, "{label}, {chunk_len}-byte writes");
            assert!(got == expected, "{label}: bytes differ");
        }
    });
}

/// Many short read timeouts racing data that a writer sends at about the same moment:
/// reads that time out never do so early, and the bytes of every read, timed out or not,
/// add up to all the bytes sent, in order.
#[test]
fn reads_racing_deadlines_on_a_registered_stream_lose_nothing() {
    everywhere("reads_racing_deadlines", |label| {
        let (client, server) = tcp_pair();
        let timeout = Duration::from_millis(2);
        server.set_read_timeout(Some(timeout)).unwrap();
        let rounds = 150;
        let writer = spindle::spawn(move || {
            for i in 0..rounds {
                spindle::sleep(Duration::from_millis(2));
                (&client).write_all(&[i as u8; 3]).unwrap();
            }
            client
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < rounds * 3 {
            let start = Instant::now();
            match (&server).read(&mut buf) {
                Ok(0) => panic!("{label}: end of stream"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{label}: {e:?}");
                    assert!(start.elapsed() >= timeout, "{label}: early timeout");
                }
            }
        }
        drop(writer.join().unwrap());
        let want: Vec<u8> = (0..rounds).flat_map(|i| [i as u8; 3]).collect();
        assert_eq!(got, want, "{label}");
    });
}

// ---------------------------------------------------------------------------------------
// Readiness waits on raw descriptors
// ---------------------------------------------------------------------------------------

fn nonblocking_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::NONBLOCK).unwrap();
    (r, w)
}

/// `wait_readable` returns when another thread closes the pipe's write end (a hang-up is
/// readiness), `wait_writable` when another thread closes the read end (an error is).
#[test]
fn waits_on_a_pipe_end_when_the_other_end_closes() {
    everywhere("waits_on_a_pipe_end_when_the_other_end_closes", |label| {
        let (r, w) = nonblocking_pipe();
        let waiter = spindle::spawn(move || {
            spindle::io::wait_readable(&r).unwrap();
            let mut buf = [0u8; 1];
            rustix::io::read(&r, &mut buf).unwrap()
        });
        parked(waiter.thread().id(), WaitReason::IoReadable);
        std::thread::spawn(move || drop(w)).join().unwrap();
        assert_eq!(waiter.join().unwrap(), 0, "{label}");

        let (r, w) = nonblocking_pipe();
        // Fill the pipe.
        let fill = vec![0u8; 4096];
        while rustix::io::write(&w, &fill).is_ok() {}
        let waiter = spindle::spawn(move || {
            spindle::io::wait_writable(&w).unwrap();
            rustix::io::write(&w, b"x").unwrap_err()
        });
        parked(waiter.thread().id(), WaitReason::IoWritable);
        std::thread::spawn(move || drop(r)).join().unwrap();
        assert_eq!(waiter.join().unwrap(), rustix::io::Errno::PIPE, "{label}");
    });
}

/// `wait_readable` on a stream's own descriptor while the stream itself has a persistent
/// registration and another thread reads through it: both wake for the same data.
#[test]
fn wait_readable_on_a_registered_stream() {
    everywhere("wait_readable_on_a_registered_stream", |label| {
        let (client, server) = tcp_pair();
        let server = Arc::new(server);
        // Registers the stream: a read that waits.
        let first = {
            let server = server.clone();
            spindle::spawn(move || {
                let mut b = [0u8; 1];
                (&*server).read_exact(&mut b).unwrap();
                b[0]
            })
        };
        parked(first.thread().id(), WaitReason::TcpRead);
        (&client).write_all(b"1").unwrap();
        assert_eq!(first.join().unwrap(), b'1', "{label}");
        let reader = {
            let server = server.clone();
            spindle::spawn(move || {
                let mut b = [0u8; 1];
                (&*server).read_exact(&mut b).unwrap();
                b[0]
            })
        };
        let waiter = {
            let server = server.clone();
            spindle::spawn(move || spindle::io::wait_readable(&*server).unwrap())
        };
        parked(reader.thread().id(), WaitReason::TcpRead);
        parked(waiter.thread().id(), WaitReason::IoReadable);
        // Two bytes, of which the reader takes one: on a kernel thread (one-to-one) the
        // waiter may look only after the reader's read, and must still find data.
        (&client).write_all(b"23").unwrap();
        waiter.join().unwrap();
        assert_eq!(reader.join().unwrap(), b'2', "{label}");
    });
}

// ---------------------------------------------------------------------------------------
// Runtimes dropped under waits on sockets that outlive them
// ---------------------------------------------------------------------------------------

/// A stream owned outside a runtime, registered and waited on by a green thread of it;
/// the runtime is dropped under the wait. The stream then works on a kernel thread and in
/// a second runtime (whose reactor never saw it), new sockets that may take the numbers of
/// closed ones work, and dropping the stream last (after its first runtime) is clean.
#[test]
fn streams_outlive_the_runtime_that_waited_on_them() {
    let _watchdog = Watchdog::new("streams_outlive_the_runtime", HANG);
    // Green runtimes only: a one-to-one runtime's threads are kernel threads, which its
    // drop cannot unwind.
    for (label, rt) in runtimes()
        .into_iter()
        .filter(|(_, rt)| rt.model() != Model::OneToOne)
    {
        let (client, server) = rt.block_on(tcp_pair);
        let (client, server) = (Arc::new(client), Arc::new(server));
        // A second connection for the parked writer.
        let (wclient, wserver) = rt.block_on(tcp_pair);
        let wclient = Arc::new(wclient);
        let (uclient, userver) = UnixStream::pair().unwrap();
        let (uclient, userver) = (Arc::new(uclient), Arc::new(userver));
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let waiting = Arc::new(AtomicUsize::new(0));
        {
            let (server, userver, listener, udp, client) = (
                server.clone(),
                userver.clone(),
                listener.clone(),
                udp.clone(),
                wclient.clone(),
            );
            let waiting2 = waiting.clone();
            rt.block_on(move || {
                let mut ids = Vec::new();
                let w = waiting2.clone();
                ids.push((
                    spindle::spawn(move || {
                        let _ = (&*server).read(&mut [0u8; 8]);
                        w.fetch_add(1000, SeqCst);
                    })
                    .thread()
                    .id(),
                    WaitReason::TcpRead,
                ));
                ids.push((
                    spindle::spawn(move || {
                        let _ = (&*userver).read(&mut [0u8; 8]);
                    })
                    .thread()
                    .id(),
                    WaitReason::UnixRead,
                ));
                ids.push((
                    spindle::spawn(move || {
                        let _ = listener.accept();
                    })
                    .thread()
                    .id(),
                    WaitReason::TcpAccept,
                ));
                ids.push((
                    spindle::spawn(move || {
                        let _ = udp.recv_from(&mut [0u8; 8]);
                    })
                    .thread()
                    .id(),
                    WaitReason::UdpRecv,
                ));
                // A writer parked on a full socket, small writes (the ring path).
                ids.push((
                    spindle::spawn(move || {
                        let chunk = [9u8; 2048];
                        loop {
                            if (&*client).write(&chunk).is_err() {
                                return;
                            }
                        }
                    })
                    .thread()
                    .id(),
                    WaitReason::TcpWrite,
                ));
                for (id, reason) in ids {
                    parked(id, reason);
                }
                waiting2.store(1, SeqCst);
            });
        }
        assert_eq!(waiting.load(SeqCst), 1, "{label}");
        drop(rt);
        // The writer's clone went with its thread; ours goes now.
        assert_eq!(Arc::strong_count(&wclient), 1, "{label}");
        drop(wclient);
        // Sockets that may reuse the numbers of whatever the dropped runtime closed.
        let rt2 = Runtime::builder().model(Model::ManyToOne).build().unwrap();
        rt2.block_on(|| {
            for _ in 0..20 {
                let (mut a, mut b) = tcp_pair();
                a.write_all(b"ping").unwrap();
                let mut buf = [0u8; 4];
                b.read_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"ping", "{label}");
                b.write_all(b"pong").unwrap();
                a.read_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"pong", "{label}");
            }
            // The old streams work here: drain what the parked writer sent, then talk.
            // The parked writer was unwound with its runtime: once our handle goes, the
            // peer reads what it sent, then the end.
            let mut sent = Vec::new();
            (&wserver).read_to_end(&mut sent).unwrap();
            assert!(!sent.is_empty() && sent.iter().all(|&b| b == 9), "{label}");
            server.set_read_timeout(None).unwrap();
            let reader = {
                let server = server.clone();
                spindle::spawn(move || {
                    let mut buf = [0u8; 5];
                    (&*server).read_exact(&mut buf).unwrap();
                    buf
                })
            };
            parked(reader.thread().id(), WaitReason::TcpRead);
            // A different byte than the old writer's, for the check above.
            (&*client).write_all(b"after").unwrap();
            assert_eq!(&reader.join().unwrap(), b"after", "{label}");
            let ureader = {
                let userver = userver.clone();
                spindle::spawn(move || {
                    let mut buf = [0u8; 3];
                    (&*userver).read_exact(&mut buf).unwrap();
                    buf
                })
            };
            parked(ureader.thread().id(), WaitReason::UnixRead);
            (&*uclient).write_all(b"uds").unwrap();
            assert_eq!(&ureader.join().unwrap(), b"uds", "{label}");
            let acceptor = {
                let listener = listener.clone();
                spindle::spawn(move || listener.accept().map(|(s, _)| s).unwrap())
            };
            let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            drop(acceptor.join().unwrap());
            drop(c);
        });
        // And on a kernel thread.
        let t = std::thread::spawn({
            let (client, server) = (client.clone(), server.clone());
            move || {
                (&*client).write_all(b"kernel").unwrap();
                let mut buf = [0u8; 6];
                (&*server).read_exact(&mut buf).unwrap();
                buf
            }
        });
        assert_eq!(&t.join().unwrap(), b"kernel", "{label}");
        drop(rt2);
        drop((client, server, uclient, userver, listener, udp, wserver));
    }
}

/// Streams registered with one runtime's worker and dropped on a green thread of another
/// runtime and on kernel threads, many times over while new sockets take the numbers they
/// free: every new stream still gets its events (no stale deregistration hits it).
#[test]
fn streams_dropped_away_from_their_worker_leave_new_sockets_alone() {
    let _watchdog = Watchdog::new("streams_dropped_away_from_their_worker", HANG);
    for backend in [IoBackend::Epoll, IoBackend::IoUring] {
        let build = || {
            Runtime::builder()
                .model(Model::ManyToOne)
                .io_backend(backend)
                .build()
        };
        let (Ok(rt1), Ok(rt2)) = (build(), build()) else {
            continue;
        };
        for round in 0..30 {
            // Registered on rt1 (a read that waits).
            let (client, server) = rt1.block_on(|| {
                let (client, server) = tcp_pair();
                let server = Arc::new(server);
                let r = {
                    let server = server.clone();
                    spindle::spawn(move || {
                        let mut b = [0u8; 1];
                        (&*server).read_exact(&mut b).unwrap();
                    })
                };
                parked(r.thread().id(), WaitReason::TcpRead);
                (&client).write_all(b"x").unwrap();
                r.join().unwrap();
                (client, Arc::try_unwrap(server).unwrap())
            });
            // Dropped on rt2's green thread (or a kernel thread), then new sockets there.
            rt2.block_on(move || {
                if round % 2 == 0 {
                    drop(server);
                } else {
                    std::thread::spawn(move || drop(server)).join().unwrap();
                }
                drop(client);
                let (a, b) = tcp_pair();
                let b = Arc::new(b);
                let r = {
                    let b = b.clone();
                    spindle::spawn(move || {
                        let mut buf = [0u8; 2];
                        (&*b).read_exact(&mut buf).unwrap();
                        buf
                    })
                };
                parked(r.thread().id(), WaitReason::TcpRead);
                (&a).write_all(b"ok").unwrap();
                assert_eq!(&r.join().unwrap(), b"ok");
            });
            // And rt1's reactor still serves new streams after the remote drop.
            rt1.block_on(|| {
                let (a, b) = tcp_pair();
                let b = Arc::new(b);
                let r = {
                    let b = b.clone();
                    spindle::spawn(move || {
                        let mut buf = [0u8; 2];
                        (&*b).read_exact(&mut buf).unwrap();
                        buf
                    })
                };
                parked(r.thread().id(), WaitReason::TcpRead);
                (&a).write_all(b"ok").unwrap();
                assert_eq!(&r.join().unwrap(), b"ok", "{backend:?} round {round}");
            });
        }
    }
}

// ---------------------------------------------------------------------------------------
// unblock
// ---------------------------------------------------------------------------------------

/// A panic in an `unblock` closure comes back to the caller with its payload intact (not
/// a string), the runtime goes on, and an `unblock` nested in one runs in place.
#[test]
fn unblock_panics_keep_their_payload_and_nesting_runs_in_place() {
    #[derive(Debug, PartialEq)]
    struct Payload(u32);
    everywhere("unblock_panics_keep_their_payload", |label| {
        for i in 0..20u32 {
            let caught = std::panic::catch_unwind(|| {
                spindle::unblock(move || std::panic::panic_any(Payload(i)))
            })
            .unwrap_err();
            assert_eq!(
                caught.downcast_ref::<Payload>(),
                Some(&Payload(i)),
                "{label}"
            );
        }
        let nested = spindle::unblock(|| spindle::unblock(|| 41) + 1);
        assert_eq!(nested, 42, "{label}");
        // The pool still works with many at once.
        let hs: Vec<_> = (0..8)
            .map(|i| spindle::spawn(move || spindle::unblock(move || i * 2)))
            .collect();
        let sum: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 56, "{label}");
    });
}

// ---------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------

/// A fresh path under the temp dir, removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        TempPath(std::env::temp_dir().join(format!(
            "spindle-adv-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, SeqCst)
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An outcome comparable across implementations: bytes or the OS error.
fn outcome<T>(r: io::Result<T>) -> Result<T, Option<i32>> {
    r.map_err(|e| e.raw_os_error())
}

/// Positioned I/O past the end of a file and beyond 4 GiB (a sparse file): reads past the
/// end give 0, a write past it leaves zeros between, `read_exact_at` across the end is
/// `UnexpectedEof`, and the offsets are honoured exactly.
#[test]
fn positioned_io_beyond_eof_and_beyond_4_gib() {
    everywhere("positioned_io_beyond_eof_and_beyond_4_gib", |label| {
        let path = TempPath::new("sparse");
        let f = spindle::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path.0)
            .unwrap();
        f.write_all_at(b"head", 0).unwrap();
        assert_eq!(f.read_at(&mut [0u8; 8], 100).unwrap(), 0, "{label}");
        let far = (5u64 << 30) + 123;
        f.write_all_at(b"far away", far).unwrap();
        assert_eq!(f.metadata().unwrap().len(), far + 8, "{label}");
        let mut buf = [0u8; 8];
        f.read_exact_at(&mut buf, far).unwrap();
        assert_eq!(&buf, b"far away", "{label}");
        // Straddling the 4 GiB boundary: a hole, then data written across it.
        let boundary = 4u64 << 30;
        let across = pattern(61, 3 << 20);
        f.write_all_at(&across, boundary - (1 << 20)).unwrap();
        let mut back = vec![0u8; across.len()];
        f.read_exact_at(&mut back, boundary - (1 << 20)).unwrap();
        assert!(back == across, "{label}: data across 4 GiB differs");
        // A hole reads as zeros.
        let mut hole = [1u8; 16];
        f.read_exact_at(&mut hole, 1 << 30).unwrap();
        assert_eq!(hole, [0u8; 16], "{label}");
        // Across the end.
        let err = f.read_exact_at(&mut [0u8; 16], far).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{label}");
        let n = f.read_at(&mut [0u8; 16], far + 4).unwrap();
        assert_eq!(n, 4, "{label}");
        // The file offset never moved.
        use std::io::Seek;
        assert_eq!((&f).stream_position().unwrap(), 0, "{label}");
        // std sees the same file.
        let std_file = std::fs::File::open(&path.0).unwrap();
        let mut check = [0u8; 8];
        std_file.read_exact_at(&mut check, far).unwrap();
        assert_eq!(&check, b"far away", "{label}");
    });
}

/// Positioned reads and writes at extreme offsets give what std's give (the same bytes or
/// the same OS error), on every backend.
#[test]
fn positioned_io_at_extreme_offsets_matches_std() {
    let offsets = [
        0u64,
        (1 << 40) + 7,
        i64::MAX as u64 - 1,
        i64::MAX as u64,
        i64::MAX as u64 + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    let path = TempPath::new("extreme");
    std::fs::write(&path.0, b"0123456789").unwrap();
    let std_results: Vec<_> = {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path.0)
            .unwrap();
        offsets
            .iter()
            .map(|&o| {
                let r = outcome(f.read_at(&mut [0u8; 4], o));
                let w = outcome(f.write_at(b"", o));
                (r, w)
            })
            .collect()
    };
    everywhere("positioned_io_at_extreme_offsets_matches_std", |label| {
        let f = spindle::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path.0)
            .unwrap();
        for (i, &o) in offsets.iter().enumerate() {
            let r = outcome(f.read_at(&mut [0u8; 4], o));
            let w = outcome(f.write_at(b"", o));
            assert_eq!((r, w), std_results[i], "{label}: offset {o}");
        }
    });
}

/// `read_at` with an empty buffer on a file opened for writing only: std asks the kernel,
/// which says `EBADF`; so must spindle, on every backend.
#[test]
fn an_empty_read_at_on_a_write_only_file_fails_as_std() {
    let path = TempPath::new("wronly");
    std::fs::write(&path.0, b"data").unwrap();
    let expected = outcome(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path.0)
            .unwrap()
            .read_at(&mut [], 0),
    );
    assert_eq!(expected, Err(Some(libc::EBADF)));
    everywhere("an_empty_read_at_on_a_write_only_file", |label| {
        let f = spindle::fs::OpenOptions::new()
            .write(true)
            .open(&path.0)
            .unwrap();
        assert_eq!(outcome(f.read_at(&mut [], 0)), expected, "{label}");
    });
}

/// Positioned I/O on a FIFO, which has no positions: std's `read_at` and `write_at` fail
/// with `ESPIPE`; spindle's must too, on every backend (io_uring ignores the offset of a
/// stream file and would read or write the pipe instead).
#[test]
fn positioned_io_on_a_fifo_fails_as_std() {
    let path = TempPath::new("fifo");
    let c = std::ffi::CString::new(path.0.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // O_RDWR: opening a FIFO so never waits for the other end (Linux).
    let std_fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path.0)
        .unwrap();
    let expected = (
        outcome(std_fifo.write_at(b"abc", 0)),
        outcome(std_fifo.read_at(&mut [0u8; 3], 0)),
    );
    assert_eq!(expected, (Err(Some(libc::ESPIPE)), Err(Some(libc::ESPIPE))));
    everywhere("positioned_io_on_a_fifo", |label| {
        let f = spindle::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path.0)
            .unwrap();
        let got = (
            outcome(f.write_at(b"abc", 0)),
            outcome(f.read_at(&mut [0u8; 3], 0)),
        );
        assert_eq!(got, expected, "{label}");
    });
    drop(std_fifo);
}

/// Metadata of a sparse file beyond 4 GiB, through `File::metadata`, `fs::metadata` and
/// `set_len`, as std reports it.
#[test]
fn metadata_of_a_sparse_file_beyond_4_gib() {
    everywhere("metadata_of_a_sparse_file_beyond_4_gib", |label| {
        let path = TempPath::new("meta");
        let f = spindle::fs::File::create(&path.0).unwrap();
        let size = (6u64 << 30) + 5;
        f.set_len(size).unwrap();
        let m = f.metadata().unwrap();
        let s = std::fs::metadata(&path.0).unwrap();
        assert_eq!(m.len(), size, "{label}");
        assert_eq!(
            spindle::fs::metadata(&path.0).unwrap().len(),
            s.len(),
            "{label}"
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(m.ino(), s.ino(), "{label}");
        assert!(m.blocks() < 1024, "{label}: the file is not sparse");
        f.set_len(3).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 3, "{label}");
    });
}

/// Many green threads writing disjoint ranges of one file with `write_all_at` at once (the
/// ring's requests interleave on io_uring), then reading them back with `read_exact_at`.
#[test]
fn concurrent_positioned_writes_land_where_asked() {
    everywhere("concurrent_positioned_writes_land_where_asked", |label| {
        let path = TempPath::new("concurrent");
        let f = Arc::new(spindle::fs::File::create(&path.0).unwrap());
        let piece = 300 * 1024 + 17;
        let hs: Vec<_> = (0..12u64)
            .map(|i| {
                let f = f.clone();
                spindle::spawn(move || {
                    let data = pattern(100 + i, piece);
                    f.write_all_at(&data, (3u64 << 30) + i * piece as u64)
                        .unwrap();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let f = spindle::fs::File::open(&path.0).unwrap();
        for i in 0..12u64 {
            let mut back = vec![0u8; piece];
            f.read_exact_at(&mut back, (3u64 << 30) + i * piece as u64)
                .unwrap();
            assert!(
                back == pattern(100 + i, piece),
                "{label}: piece {i} differs"
            );
        }
    });
}

/// A write that waited for room with a write timeout, whose wait timed out but whose last
/// try at the deadline then succeeded (TCP lets `send` add to a socket that `poll` does
/// not call writable yet, and no edge comes for that): the next write, which `send(2)`
/// could complete at once, must not skip its system call and wait out its whole timeout.
/// One-to-one tries `send` first, and does not wait.
#[test]
fn a_write_after_a_wait_whose_last_try_succeeded_does_not_wait_its_timeout() {
    let failures = std::sync::Mutex::new(Vec::new());
    everywhere("a_write_after_a_wait_whose_last_try_succeeded", |label| {
        let (client, _server) = tcp_pair();
        let short = Duration::from_millis(50);
        client.set_write_timeout(Some(short)).unwrap();
        // Larger than the ring path's 16 KiB: the stream's own `send` on both backends.
        let chunk = vec![7u8; 20 * 1024];
        let slow_success = loop {
            let start = Instant::now();
            let result = (&client).write(&chunk);
            if start.elapsed() >= short {
                break result.is_ok();
            }
            result.unwrap();
        };
        if !slow_success {
            eprintln!("{label}: the first write that waited timed out; nothing to check");
            return;
        }
        // Room is left, though no writability edge came: a long timeout now.
        let long = Duration::from_secs(5);
        client.set_write_timeout(Some(long)).unwrap();
        let start = Instant::now();
        // Above 16 KiB again: not the ring path.
        let result = (&client).write(&[1u8; 17 * 1024]);
        let took = start.elapsed();
        if took >= long / 2 {
            failures.lock().unwrap().push(format!(
                "{label}: a write with room waited {took:?} ({result:?})"
            ));
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
}
