//! Streams' persistent registrations (`io/reactor/registration.rs`): the cases where an
//! edge-triggered readiness could be lost or could make a call spin. Each runs on both
//! backends (epoll, and io_uring where the machine has it) whatever `SPINDLE_IO_BACKEND`
//! says, in many-to-one, where one kernel thread runs every party and a lost wakeup cannot
//! be hidden by another worker's poll.
//!
//! A lost wakeup hangs a read, and a spin never lets the other threads run: a watchdog
//! kernel thread ends the process with a message naming the test if it does not finish in
//! a minute. (A read timeout would not show a lost wakeup: the read's last try at the
//! deadline finds the data.)

use std::io::{ErrorKind, IoSliceMut, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use spindle::io::IoBackend;
use spindle::net::unix::UnixStream;
use spindle::net::{TcpListener, TcpStream};
use spindle::{Model, Runtime, WaitReason};

mod common;
use common::Watchdog;

/// Far beyond what any test here takes, loaded or not.
const HANG: Duration = Duration::from_secs(60);

/// Runs `test` as the first thread of a many-to-one runtime on each backend this machine
/// can run, under a watchdog named `name`.
fn on_each_backend(name: &'static str, test: impl Fn() + Sync) {
    let _watchdog = Watchdog::new(name, HANG);
    for rt in runtimes() {
        rt.block_on(&test);
    }
}

/// A many-to-one runtime per backend this machine can run.
fn runtimes() -> Vec<Runtime> {
    let on = |backend| {
        Runtime::builder()
            .model(Model::ManyToOne)
            .io_backend(backend)
            .build()
    };
    let mut all = vec![on(IoBackend::Epoll).unwrap()];
    match on(IoBackend::IoUring) {
        Ok(rt) => all.push(rt),
        Err(e) => eprintln!("io_uring unavailable, epoll only: {e}"),
    }
    all
}

/// A connected TCP pair on loopback.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[test]
fn two_readers_of_one_handle_are_both_woken_whatever_order_they_read_in() {
    on_each_backend("two_readers", || {
        let (a, mut b) = UnixStream::pair().unwrap();
        let a = Arc::new(a);
        let (results, got) = spindle::channel::unbounded();
        let mut readers = Vec::new();
        for _ in 0..2 {
            let (a, results) = (a.clone(), results.clone());
            let reader = spindle::spawn(move || {
                let mut buf = [0u8; 64];
                let n = (&*a).read(&mut buf);
                let me = spindle::thread::current().id();
                results.send((me, n.map(|n| buf[..n].to_vec()))).unwrap();
            });
            // The first takes the registration's slot, the second waits another way.
            common::wait_until_parked(reader.thread().id(), WaitReason::UnixRead);
            readers.push(reader);
        }
        b.write_all(b"one").unwrap();
        let (first, read) = got.recv().unwrap();
        assert_eq!(read.unwrap(), b"one");
        // The other was woken too, found nothing, and must wait again where the next
        // event finds it.
        let other = readers.iter().find(|r| r.thread().id() != first).unwrap();
        common::wait_until_parked(other.thread().id(), WaitReason::UnixRead);
        b.write_all(b"two").unwrap();
        let (_, read) = got.recv().unwrap();
        assert_eq!(read.expect("the second reader missed its wakeup"), b"two");
        for r in readers {
            r.join().unwrap();
        }
    });
}

/// Makes the calling thread's first read on `reader` wait (which registers it), fed five
/// bytes by `writer`'s thread once it is parked for `reason`; returns `writer`.
fn first_read_waits<S>(reader: &S, writer: S, reason: WaitReason) -> S
where
    S: Send + 'static,
    for<'a> &'a S: Read + Write,
{
    let me = spindle::thread::current().id();
    let feeder = spindle::spawn(move || {
        common::wait_until_parked(me, reason);
        (&writer).write_all(b"hello").unwrap();
        writer
    });
    let mut buf = [0u8; 16];
    let mut reader = reader;
    assert_eq!(reader.read(&mut buf).unwrap(), 5);
    feeder.join().unwrap()
}

#[test]
fn a_vectored_read_capped_at_1024_slices_does_not_hide_the_rest() {
    on_each_backend("capped_readv", || {
        let (a, b) = tcp_pair();
        let b = first_read_waits(&a, b, WaitReason::TcpRead);
        (&b).write_all(&[7u8; 2000]).unwrap();
        // 1025 one-byte slices: std passes the first 1024, and the read comes back
        // "short" of 1025 with 976 bytes still queued; no edge will come for them.
        let mut bytes = [[0u8; 1]; 1025];
        let mut slices: Vec<IoSliceMut> = bytes.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let mut got = (&a).read_vectored(&mut slices).unwrap();
        let mut rest = [0u8; 4096];
        while got < 2000 {
            got += (&a).read(&mut rest).expect("the bytes left were not seen");
        }
        assert_eq!(got, 2000);
    });
}

#[test]
fn a_unix_read_cut_short_by_passed_descriptors_does_not_hide_the_rest() {
    on_each_backend("unix_scm_rights", || {
        let (a, b) = UnixStream::pair().unwrap();
        let b = first_read_waits(&a, b, WaitReason::UnixRead);
        let mut buf = [0u8; 16];
        // Three messages, the middle one carrying a descriptor: a read stops after it.
        (&b).write_all(b"ab").unwrap();
        send_with_descriptor(b.as_raw_fd(), b"cd");
        (&b).write_all(b"ef").unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            let n = (&a).read(&mut buf).expect("the bytes left were not seen");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"abcdef");
    });
}

/// Sends `data` on the Unix socket `fd` with its own descriptor attached (`SCM_RIGHTS`).
fn send_with_descriptor(fd: i32, data: &[u8]) {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: `control` holds CMSG_SPACE(4) bytes, aligned for cmsghdr, so the first
    // header and its data fit in it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut i32, fd);
    }
    // SAFETY: `msg` describes live buffers (above).
    let sent = unsafe { libc::sendmsg(fd, &msg, 0) };
    assert_eq!(
        sent,
        data.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn a_socket_error_that_is_no_end_neither_spins_nor_ends_reads() {
    on_each_backend("error_queue", || {
        let (a, b) = tcp_pair();
        let b = first_read_waits(&a, b, WaitReason::TcpRead);
        a.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 16];
        // Transmit timestamps go to the error queue, which reports EPOLLERR.
        let flags = (libc::SOF_TIMESTAMPING_TX_SCHED
            | libc::SOF_TIMESTAMPING_TX_SOFTWARE
            | libc::SOF_TIMESTAMPING_SOFTWARE) as libc::c_int;
        // SAFETY: a valid socket, and a c_int option of the size given.
        let set = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPING,
                &flags as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
        (&a).write_all(b"ping").unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let other = {
            let ran = ran.clone();
            spindle::spawn(move || ran.store(true, SeqCst))
        };
        // Nothing to read: the read times out (a spin would never return), and the other
        // thread runs meanwhile.
        let err = (&a).read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
        other.join().unwrap();
        assert!(ran.load(SeqCst));
        // The stream still works: data after the error event is read.
        (&b).write_all(b"pong").unwrap();
        a.set_read_timeout(None).unwrap();
        assert_eq!((&a).read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"pong");
    });
}

#[test]
fn a_tcp_read_cut_short_at_the_urgent_mark_does_not_hide_the_rest() {
    on_each_backend("urgent_mark", || {
        let (a, b) = tcp_pair();
        let b = first_read_waits(&a, b, WaitReason::TcpRead);
        (&b).write_all(b"ab").unwrap();
        // SAFETY: a valid socket and a one-byte buffer.
        let sent = unsafe { libc::send(b.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB) };
        assert_eq!(sent, 1, "{}", std::io::Error::last_os_error());
        (&b).write_all(b"cd").unwrap();
        // Let the reactor deliver the event before the read looks: a read then stops short
        // at the urgent mark with "cd" queued, and no edge will come for them.
        spindle::sleep(Duration::from_millis(1));
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        while got.len() < 4 {
            let n = (&a).read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        // The urgent byte is out of band (SO_OOBINLINE is off): the stream skips it.
        assert_eq!(got, b"abcd");
    });
}

#[test]
fn a_dropped_stream_closes_its_socket_while_its_worker_stays_busy() {
    on_each_backend("dropped_stream_closes", || {
        let (a, b) = UnixStream::pair().unwrap();
        let b = first_read_waits(&a, b, WaitReason::UnixRead);
        let peer = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            (&b).read(&mut buf).unwrap()
        });
        // The worker's kernel thread blocks in the join, so its reactor does not poll:
        // the socket must close now, not at the worker's next poll (nothing the reactor
        // keeps, such as a poll request of the ring, may hold the file open).
        drop(a);
        assert_eq!(peer.join().unwrap(), 0, "the peer read data, not the end");
    });
}

/// Registered streams of one worker: their events take many collections (64 events per
/// `epoll_wait`), more than an io_uring completion queue (4,096) holds.
const CROWD: usize = 5_000;

#[test]
fn a_burst_of_events_on_thousands_of_registrations_loses_none() {
    // Two descriptors per stream pair, and the test harness's own.
    common::raise_nofile(2 * CROWD as u64 + 256);
    on_each_backend("burst_of_events", || {
        let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (got, received) = spindle::channel::unbounded();
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..CROWD {
            let (a, b) = UnixStream::pair().unwrap();
            writers.push(b);
            let (waiting, got) = (waiting.clone(), got.clone());
            readers.push(spindle::spawn(move || {
                for round in 0..2u8 {
                    // Counted before the read: a reader counted and not running again
                    // has registered and parked (one kernel thread runs all of them).
                    waiting.fetch_add(1, SeqCst);
                    let mut byte = [0u8; 1];
                    (&a).read_exact(&mut byte).unwrap();
                    assert_eq!(byte[0], round);
                    got.send(()).unwrap();
                }
            }));
        }
        let writers = Arc::new(writers);
        for round in 0..2u8 {
            while waiting.load(SeqCst) < (usize::from(round) + 1) * CROWD {
                spindle::yield_now();
            }
            // A kernel thread writes to every stream while this thread blocks the
            // worker's kernel thread in the join, so that it does not poll: every event
            // is pending at once when the worker looks next.
            let writers = writers.clone();
            std::thread::spawn(move || {
                for w in writers.iter() {
                    (&*w).write_all(&[round]).unwrap();
                }
            })
            .join()
            .unwrap();
            // Every reader hears of its byte, in both rounds (the registrations go on
            // reporting after a burst).
            for _ in 0..CROWD {
                received.recv().unwrap();
            }
        }
        for r in readers {
            r.join().unwrap();
        }
    });
}
