//! Small TCP writes, which a green thread of an io_uring worker sends as a request of its
//! worker's ring (`io/reactor/uring.rs`, "Stream writes"; up to 16 KiB a write): they do
//! take that path; every byte arrives, in order, also when the writer must wait for the
//! reader; a write that times out has sent exactly what the writes before it reported; a
//! runtime drops cleanly under a writer parked in such a write; and a thread unwound at
//! shutdown can still write from a destructor. Each test runs in both green models on both
//! backends: on epoll the writes are plain system calls, and must behave the same. (The
//! unit tests of `uring.rs` check that a send whose waiter leaves cannot reach the socket
//! that takes its descriptor's number next.)

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
    runtimes_with_backends()
        .into_iter()
        .map(|(name, _, rt)| (name, rt))
        .collect()
}

/// [`runtimes`], with each one's backend.
fn runtimes_with_backends() -> Vec<(String, IoBackend, Runtime)> {
    let mut all = Vec::new();
    for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
        for backend in [IoBackend::Epoll, IoBackend::IoUring] {
            match Runtime::builder().model(model).io_backend(backend).build() {
                Ok(rt) => all.push((format!("{model} on {backend:?}"), backend, rt)),
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

/// The period of [`pattern`]: a multiple of its 251 and of 4096.
const LAP: usize = 4096 * 251;

/// A pattern of `len` bytes in which a lost, repeated or reordered run shows; it repeats
/// every [`LAP`] bytes, so a writer may go on from `at % LAP`.
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

/// How many times thread `id` has been switched in.
fn switches(id: spindle::ThreadId) -> u64 {
    let threads = debug::threads();
    let me = threads
        .iter()
        .find(|t| t.id == id)
        .expect("a live thread is listed");
    me.switches
}

#[test]
fn on_io_uring_a_small_write_waits_for_its_workers_round_and_on_epoll_it_does_not() {
    const WRITES: u64 = 100;
    for (name, backend, rt) in runtimes_with_backends() {
        rt.block_on(|| {
            let (client, server) = tcp_pair();
            let me = spindle::current().id();
            let before = switches(me);
            // 1,000 bytes: room in any socket buffer, so a plain `send(2)` never waits.
            for _ in 0..WRITES {
                (&client).write_all(&[7u8; 10]).unwrap();
            }
            let parks = switches(me) - before;
            let mut got = vec![0u8; 10 * WRITES as usize];
            (&server).read_exact(&mut got).unwrap();
            assert!(got.iter().all(|&b| b == 7), "{name}: bytes differ");
            if backend == IoBackend::IoUring {
                assert!(
                    parks >= WRITES,
                    "{name}: {parks} switches in {WRITES} writes"
                );
            } else {
                // The lookups of the count and the fairness budget's yields switch a few
                // times; a parking write would switch once each.
                assert!(
                    parks < WRITES / 2,
                    "{name}: {parks} switches in {WRITES} writes"
                );
            }
        });
    }
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
            // Writes go on until one times out, which must happen long before 1 GiB
            // (loopback's buffers hold a few MiB).
            let data = pattern(LAP + 4096);
            let mut sent = 0;
            let (err, waited) = loop {
                let at = sent % LAP;
                let start = Instant::now();
                match (&client).write(&data[at..at + 4096]) {
                    Ok(n) => {
                        assert!(n > 0, "{name}: a write of 4096 bytes wrote 0");
                        sent += n;
                    }
                    Err(e) => break (e, start.elapsed()),
                }
                assert!(sent < 1 << 30, "{name}: 1 GiB went out, no write timed out");
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
            for (i, lap) in back.chunks(LAP).enumerate() {
                assert!(lap == &data[..lap.len()], "{name}: lap {i} differs");
            }
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
            let data = pattern(LAP + 4096);
            let mut at = 0;
            loop {
                let n = (&client).write(&data[at..at + 4096]).unwrap();
                counter.fetch_add(n, Relaxed);
                at = (at + n) % LAP;
            }
        });
        let id = writer.thread().id();
        drop(writer);
        let (mut peer, _) = listener.accept().unwrap();
        // A socket the runtime failed to close must fail the test, not hang it.
        peer.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        // Parked in a write: on epoll once the buffers are full, on io_uring at every write
        // (waits for events, up to a minute).
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
        let data = pattern(LAP + 4096);
        for (i, chunk) in back.chunks(LAP).enumerate() {
            assert!(chunk == &data[..chunk.len()], "{name}: lap {i} differs");
        }
    }
}

#[test]
fn a_thread_unwound_at_shutdown_still_writes_from_a_destructor() {
    /// Says goodbye on its stream when dropped, as a `BufWriter` flushing on drop would.
    struct SaysBye(TcpStream);
    impl Drop for SaysBye {
        fn drop(&mut self) {
            (&self.0).write_all(b"bye").unwrap();
        }
    }
    for (name, rt) in runtimes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, is_connected) = std::sync::mpsc::channel();
        drop(rt.spawn(move || {
            let _guard = SaysBye(TcpStream::connect(addr).unwrap());
            connected.send(()).unwrap();
            // Parked until the runtime's drop unwinds it, dropping the guard on the way.
            loop {
                spindle::park();
            }
        }));
        let (mut peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        is_connected.recv().unwrap();
        drop(rt);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"bye", "{name}");
    }
}
