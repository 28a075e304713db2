//! `spindle::net::unix::{UnixListener, UnixStream}` in every model.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use spindle::net::unix::{UnixListener, UnixStream};
use spindle::Model;

/// A socket path of its own for each test and model, removed when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(test: &str, model: Model) -> SocketPath {
        let model = model.to_string().replace(':', "-");
        let path = std::env::temp_dir().join(format!(
            "spindle-net-{}-{test}-{model}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(17).wrapping_add(seed * 5) % 253) as u8)
        .collect()
}

cross_model! {
    fn pair_round_trip(model) {
        let (a, mut b) = UnixStream::pair().unwrap();
        let reader = spindle::spawn(move || {
            let mut got = Vec::new();
            (&a).read_to_end(&mut got).unwrap();
            got
        });
        b.write_all(b"over the pair").unwrap();
        b.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.join().unwrap(), b"over the pair", "{model}");
    }

    // 4 MiB each way through clones: the reader and the writer wait at once.
    fn try_clone_reader_and_writer(model) {
        let (a, b) = UnixStream::pair().unwrap();
        let echo = spindle::spawn(move || {
            let (mut r, mut w) = (&b, &b);
            std::io::copy(&mut r, &mut w).unwrap();
        });
        let data = pattern(9, 4 << 20);
        let expected = data.clone();
        let mut writer_half = a.try_clone().unwrap();
        let writer = spindle::spawn(move || {
            writer_half.write_all(&data).unwrap();
            writer_half.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        (&a).read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        echo.join().unwrap();
        assert!(back == expected, "{model}: echoed bytes differ");
    }

    fn listener_accept_and_incoming(model) {
        let path = SocketPath::new("incoming", model);
        let listener = UnixListener::bind(&path.0).unwrap();
        assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(path.0.as_path()));
        let n = 20;
        let server = spindle::spawn(move || {
            let mut served = 0;
            for stream in listener.incoming().take(n) {
                let mut stream = stream.unwrap();
                let mut buf = [0; 1];
                stream.read_exact(&mut buf).unwrap();
                stream.write_all(&[buf[0] + 1]).unwrap();
                served += 1;
            }
            served
        });
        let clients: Vec<_> = (0..n as u8)
            .map(|i| {
                let path = path.0.clone();
                spindle::spawn(move || {
                    let mut s = UnixStream::connect(&path).unwrap();
                    assert_eq!(s.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
                    s.write_all(&[i]).unwrap();
                    let mut buf = [0; 1];
                    s.read_exact(&mut buf).unwrap();
                    buf[0]
                })
            })
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            assert_eq!(c.join().unwrap() as usize, i + 1, "{model}");
        }
        assert_eq!(server.join().unwrap(), n);
    }

    // A listener with a backlog of 0 holds one pending connection: the others find it
    // full (EAGAIN) and wait in the helper pool until the server accepts.
    fn connect_to_a_full_backlog_waits(model) {
        let path = SocketPath::new("backlog", model);
        let std_listener = std::os::unix::net::UnixListener::bind(&path.0).unwrap();
        // SAFETY: listen(2) on an open, bound socket; calling it again sets the backlog.
        assert_eq!(unsafe { libc::listen(std_listener.as_raw_fd(), 0) }, 0);
        let listener = UnixListener::from(std_listener);
        let n = 4;
        let clients: Vec<_> = (0..n)
            .map(|i| {
                let path = path.0.clone();
                spindle::spawn(move || {
                    let mut s = UnixStream::connect(&path).unwrap();
                    s.write_all(&[i]).unwrap();
                })
            })
            .collect();
        let mut seen = Vec::new();
        for _ in 0..n {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0; 1];
            s.read_exact(&mut buf).unwrap();
            seen.push(buf[0]);
        }
        for c in clients {
            c.join().unwrap();
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3], "{model}");
    }

    fn read_timeout(model) {
        let (a, _b) = UnixStream::pair().unwrap();
        let timeout = Duration::from_millis(50);
        a.set_read_timeout(Some(timeout)).unwrap();
        assert!(a.read_timeout().unwrap().unwrap() >= timeout);
        let start = Instant::now();
        let err = (&a).read(&mut [0; 8]).unwrap_err();
        let waited = start.elapsed();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{model}: {err}");
        assert!(waited >= timeout, "{model}: timed out after {waited:?}");
        a.set_write_timeout(Some(timeout)).unwrap();
        assert!(a.write_timeout().unwrap().unwrap() >= timeout);
    }

    fn shutdown_semantics(model) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let reader = spindle::spawn(move || {
            let mut buf = [0; 8];
            // Parks, then sees the data, then end of stream.
            let n = b.read(&mut buf).unwrap();
            let end = b.read(&mut buf).unwrap();
            (n, end)
        });
        a.write_all(b"last").unwrap();
        a.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.join().unwrap(), (4, 0), "{model}");
        assert_eq!(a.write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
    }

    fn connect_errors(model) {
        let path = SocketPath::new("errors", model);
        let err = UnixStream::connect(&path.0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{model}: {err}");
        let _listener = UnixListener::bind(&path.0).unwrap();
        let err = UnixListener::bind(&path.0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{model}: {err}");
    }
}
