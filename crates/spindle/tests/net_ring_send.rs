//! Small TCP writes, which a green thread of an io_uring worker sends as a request of its
//! worker's ring (`io/reactor/uring.rs`, "Stream writes"; up to 16 KiB a write): every byte
//! arrives, in order, also when the writer must wait for the reader; a write that times
//! out has sent exactly what the writes before it reported; and a runtime drops cleanly
//! under a writer parked in such a write. Each test runs in both green models on both
//! backends: on epoll the writes are plain system calls, and must behave the same.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::debug;
use spindle::io::IoBackend;
use spindle::net::{TcpListener, TcpStream};
use spindle::{Model, Runtime, WaitReason};

/// Largest write that goes through the ring.
const RING_SEND_MAX: usize = 16 * 1024;

/// A runtime of each green model on each backend the kernel allows, with a label.
fn runtimes() -> Vec<(String, Runtime)> {
    let mut all = Vec::new();
    for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
        for backend in [IoBackend::Epoll, IoBackend::IoUring] {
            match Runtime::builder().model(model).io_backend(backend).build() {
                Ok(rt) => all.push((format!("{model} on {backend:?}"), rt)),
                Err(e) if backend == IoBackend::IoUring => {
                    eprintln!("io_uring unavailable, {model} on epoll only: {e}")
                }
                Err(e) => panic!("cannot build a {model} runtime on epoll: {e}"),
            }
        }
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

/// A pattern of `len` bytes in which a lost, repeated or reordered run shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect()
}

/// `write_all` for vectored writes (std's is not stable).
fn write_all_vectored(stream: &TcpStream, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match (&*stream).write_vectored(bufs)? {
            0 => return Err(ErrorKind::WriteZero.into()),
            n => IoSlice::advance_slices(&mut bufs, n),
        }
    }
    Ok(())
}

#[test]
fn small_writes_reach_a_slow_reader_whole_and_in_order() {
    for (name, rt) in runtimes() {
        rt.block_on(|| {
            let (client, server) = tcp_pair();
            let data = pattern(8 << 20);
            let expected = data.clone();
            // Reads in small steps with pauses, so that the socket buffers fill up and
            // writes wait for room (the content check holds however the steps fall).
            let reader = spindle::spawn(move || {
                let mut back = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match (&server).read(&mut buf).unwrap() {
                        0 => return back,
                        n => back.extend_from_slice(&buf[..n]),
                    }
                    if back.len() % 8 == 0 {
                        spindle::sleep(Duration::from_micros(200));
                    }
                }
            });
            // Sizes around the ring's limit, and vectored writes, in turn.
            let mut rest = &data[..];
            let mut turn = 0usize;
            while !rest.is_empty() {
                let size = [1, 3000, RING_SEND_MAX, RING_SEND_MAX + 1][turn % 4].min(rest.len());
                let (now, later) = rest.split_at(size);
                if turn % 3 == 0 && now.len() > 1 {
                    let (a, b) = now.split_at(now.len() / 2);
                    let mut bufs = [IoSlice::new(a), IoSlice::new(b)];
                    write_all_vectored(&client, &mut bufs)
                        .unwrap_or_else(|e| panic!("{name}: vectored write failed: {e}"));
                } else {
                    (&client).write_all(now).unwrap();
                }
                rest = later;
                turn += 1;
            }
            client.shutdown(Shutdown::Write).unwrap();
            assert!(reader.join().unwrap() == expected, "{name}: bytes differ");
        });
    }
}

#[test]
fn a_small_write_that_times_out_sent_nothing_more_than_reported() {
    for (name, rt) in runtimes() {
        rt.block_on(|| {
            let (client, server) = tcp_pair();
            let timeout = Duration::from_millis(50);
            client.set_write_timeout(Some(timeout)).unwrap();
            // More than loopback's buffers can hold: the writes must time out.
            let data = pattern(256 << 20);
            let mut sent = 0;
            let (err, waited) = loop {
                let end = (sent + 4096).min(data.len());
                let start = Instant::now();
                match (&client).write(&data[sent..end]) {
                    Ok(n) => {
                        assert!(n > 0, "{name}: a write of {} bytes wrote 0", end - sent);
                        sent += n;
                    }
                    Err(e) => break (e, start.elapsed()),
                }
                assert!(
                    sent < data.len(),
                    "{name}: 256 MiB went out, no write timed out"
                );
            };
            assert_eq!(err.kind(), ErrorKind::WouldBlock, "{name}: {err}");
            assert!(waited >= timeout, "{name}: timed out after {waited:?}");
            client.shutdown(Shutdown::Write).unwrap();
            let mut back = Vec::new();
            (&server).read_to_end(&mut back).unwrap();
            assert_eq!(
                back.len(),
                sent,
                "{name}: the reader got a different byte count"
            );
            assert!(back == data[..sent], "{name}: bytes differ");
        });
    }
}

#[test]
fn a_runtime_drops_under_a_writer_parked_in_a_small_write() {
    for (name, rt) in runtimes() {
        // The peer is a plain std socket, outside the runtime, that reads only after the
        // runtime is gone.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let counter = written.clone();
        let writer = rt.spawn(move || {
            let client = TcpStream::connect(addr).unwrap();
            let data = pattern(4096 * 251);
            let mut at = 0;
            loop {
                let n = (&client).write(&data[at..at + 4096]).unwrap();
                counter.fetch_add(n, Relaxed);
                at = (at + n) % (4096 * 250);
            }
        });
        let id = writer.thread().id();
        drop(writer);
        let (mut peer, _) = listener.accept().unwrap();
        // Parked in a write once the buffers are full (waits for events, up to a minute).
        let start = Instant::now();
        loop {
            let parked_writing = debug::threads()
                .iter()
                .any(|t| t.id == id && t.state.wait_reason() == Some(WaitReason::TcpWrite));
            if parked_writing && written.load(Relaxed) > 0 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{name}: never parked"
            );
            std::thread::yield_now();
        }
        drop(rt);
        let mut back = Vec::new();
        peer.read_to_end(&mut back).unwrap();
        let sent = written.load(Relaxed);
        // A write in flight at the drop may or may not have gone out, but nothing else.
        assert!(
            back.len() >= sent && back.len() <= sent + 4096,
            "{name}: {} bytes arrived, {sent} reported written",
            back.len()
        );
        let data = pattern(4096 * 251);
        for (i, chunk) in back.chunks(4096 * 250).enumerate() {
            assert!(chunk == &data[..chunk.len()], "{name}: lap {i} differs");
        }
    }
}
