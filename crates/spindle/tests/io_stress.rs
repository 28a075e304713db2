//! Stress of the reactor's wait paths, on both backends: readiness waits that race their
//! own deadlines (on io_uring each timeout cancels a request in flight while its completion
//! may be on the way), and runtimes dropped with waits in flight.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use spindle::io::IoBackend;
use spindle::net::unix::UnixStream;
use spindle::{Model, Runtime};

const PAIRS: u64 = if cfg!(debug_assertions) { 20 } else { 200 };
const MESSAGES: u64 = if cfg!(debug_assertions) { 20 } else { 200 };

/// The backends this machine can run.
fn backends() -> Vec<IoBackend> {
    let mut all = vec![IoBackend::Epoll];
    if Runtime::builder()
        .io_backend(IoBackend::IoUring)
        .build()
        .is_ok()
    {
        all.push(IoBackend::IoUring);
    } else {
        eprintln!("io_uring unavailable: only epoll is stressed");
    }
    all
}

/// Each reader reads with a read timeout shorter than the writer's pauses, so that most
/// reads time out (their wait is withdrawn) and some find data as the timer fires. Every
/// byte written must be read exactly once: a wait withdrawn wrongly loses no data, and a
/// completion reaped for a withdrawn wait corrupts nothing.
#[test]
fn reads_racing_their_timeouts_lose_nothing() {
    for backend in backends() {
        for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
            let rt = Runtime::builder()
                .model(model)
                .io_backend(backend)
                .build()
                .unwrap();
            let (timeouts, sum) = rt.block_on(|| {
                let readers: Vec<_> = (0..PAIRS)
                    .map(|p| {
                        let (mut w, mut r) = UnixStream::pair().unwrap();
                        r.set_read_timeout(Some(Duration::from_micros(200)))
                            .unwrap();
                        // The writer starts once its reader has timed out once, so every
                        // pair has at least one withdrawn wait; the rest race at random.
                        let (go_tx, go_rx) = spindle::channel::bounded::<()>(1);
                        spindle::spawn(move || {
                            go_rx.recv().unwrap();
                            for m in 0..MESSAGES {
                                if (p + m) % 3 == 0 {
                                    spindle::sleep(Duration::from_micros(300));
                                } else {
                                    spindle::yield_now();
                                }
                                w.write_all(&(p * MESSAGES + m).to_le_bytes()).unwrap();
                            }
                        });
                        spindle::spawn(move || {
                            let (mut timeouts, mut sum, mut got) = (0u64, 0u64, 0u64);
                            let mut buf = [0u8; 8];
                            let mut filled = 0;
                            while got < MESSAGES {
                                match r.read(&mut buf[filled..]) {
                                    Ok(0) => panic!("the writer closed early"),
                                    Ok(n) => {
                                        filled += n;
                                        if filled == 8 {
                                            sum += u64::from_le_bytes(buf);
                                            got += 1;
                                            filled = 0;
                                        }
                                    }
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            ErrorKind::WouldBlock | ErrorKind::TimedOut
                                        ) =>
                                    {
                                        if timeouts == 0 {
                                            go_tx.send(()).unwrap();
                                        }
                                        timeouts += 1
                                    }
                                    Err(e) => panic!("read failed: {e}"),
                                }
                            }
                            (timeouts, sum)
                        })
                    })
                    .collect();
                readers
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .fold((0, 0), |(t, s), (t1, s1)| (t + t1, s + s1))
            });
            let n = PAIRS * MESSAGES;
            assert_eq!(
                sum,
                n * (n - 1) / 2,
                "{backend} {model}: bytes lost or doubled"
            );
            assert!(
                timeouts >= PAIRS,
                "{backend} {model}: each reader times out first"
            );
        }
    }
}

/// Runtimes dropped while many threads wait on descriptors, again and again: every drop
/// returns, and the descriptors are closed by the unwound threads.
#[test]
fn runtimes_dropped_with_waits_in_flight() {
    for backend in backends() {
        for round in 0..if cfg!(debug_assertions) { 3 } else { 20 } {
            let model = if round % 2 == 0 {
                Model::ManyToOne
            } else {
                Model::ManyToMany { workers: 2 }
            };
            let rt = Runtime::builder()
                .model(model)
                .io_backend(backend)
                .build()
                .unwrap();
            let (started_tx, started_rx) = spindle::channel::unbounded::<()>();
            let mut peers = Vec::new();
            for _ in 0..50 {
                let (mine, mut theirs) = UnixStream::pair().unwrap();
                peers.push(mine);
                let started = started_tx.clone();
                rt.spawn(move || {
                    started.send(()).unwrap();
                    let mut buf = [0u8; 1];
                    let _ = theirs.read(&mut buf);
                });
            }
            rt.block_on(|| {
                for _ in 0..50 {
                    started_rx.recv().unwrap();
                }
            });
            drop(rt);
            // Each waiting end went with its thread: the peers see end of file.
            for mut p in peers {
                let mut buf = [0u8; 1];
                assert_eq!(
                    p.read(&mut buf).unwrap(),
                    0,
                    "{backend}: a waiter outlived its runtime"
                );
            }
        }
    }
}

const RING_CHILD_ENV: &str = "SPINDLE_TEST_RING_LEAK_CHILD";

/// The io_uring rings of this process: descriptors that name an io_uring instance.
fn open_rings() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("io_uring"))
        .count()
}

/// A runtime dropped while a green thread waits on io_uring closes its rings: the request
/// cancelled at shutdown must not keep its waiter's record, and through it the worker and
/// its ring, alive. Counted in a child process, where no other test opens rings meanwhile.
#[test]
fn runtimes_dropped_with_waits_in_flight_close_their_rings() {
    if !backends().contains(&IoBackend::IoUring) {
        eprintln!("io_uring unavailable: nothing to check");
        return;
    }
    if std::env::var_os(RING_CHILD_ENV).is_none() {
        let out = common::rerun_in_child(
            "runtimes_dropped_with_waits_in_flight_close_their_rings",
            RING_CHILD_ENV,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let before = open_rings();
    for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
        for _ in 0..5 {
            let rt = Runtime::builder()
                .model(model)
                .io_backend(IoBackend::IoUring)
                .build()
                .unwrap();
            let (_mine, mut theirs) = UnixStream::pair().unwrap();
            let (started_tx, started_rx) = spindle::channel::bounded::<()>(1);
            rt.spawn(move || {
                started_tx.send(()).unwrap();
                let mut buf = [0u8; 1];
                let _ = theirs.read(&mut buf);
            });
            started_rx.recv().unwrap();
            drop(rt);
        }
    }
    assert_eq!(
        open_rings(),
        before,
        "rings of dropped runtimes are still open"
    );
}
