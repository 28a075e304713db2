//! 10,000 concurrent TCP connections served on one kernel thread (many-to-one): every
//! client connects, waits until all 10,000 are connected, then sends checksummed data
//! through its own echo thread on the server and checks what comes back.
//!
//! The clients run in a child process (the test binary again, in a many-to-one runtime of
//! its own), so that each process holds 10,000 descriptors, not 20,000: above the usual
//! soft RLIMIT_NOFILE of 1,024, which each process raises, and within hard limits such as
//! this machine's 20,000. A process that cannot raise its limit fails saying so.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::net::{TcpListener, TcpStream};
use spindle::sync::Barrier;

mod common;
use common::raise_nofile;

const CONNECTIONS: usize = if cfg!(debug_assertions) {
    1_000
} else {
    10_000
};
const BYTES: usize = 2048;

/// The data client `id` sends: a pseudo-random pattern of its own.
fn pattern(id: usize) -> Vec<u8> {
    let mut x = (id as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(1);
    (0..BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A checksum of `data` (FNV-1a).
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A many-to-one runtime with stacks small enough for 10,000 threads each side.
fn runtime() -> spindle::Runtime {
    spindle::Runtime::builder()
        .stack_size(64 * 1024)
        .build()
        .unwrap()
}

/// Set in the child process: the server's address.
const CLIENTS_ENV: &str = "SPINDLE_TEST_TEN_THOUSAND_CLIENTS_OF";

/// How long the child may take before the parent kills it and fails.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn ten_thousand_concurrent_connections_in_many_to_one() {
    if let Ok(addr) = std::env::var(CLIENTS_ENV) {
        run_clients(addr.parse().expect("the server's address"));
        return;
    }
    raise_nofile(CONNECTIONS as u64 + 100);
    let rt = runtime();
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spindle::spawn(move || {
            for _ in 0..CONNECTIONS {
                let (mut stream, _) = listener.accept().unwrap();
                spindle::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match stream.read(&mut buf).unwrap() {
                            0 => return,
                            n => stream.write_all(&buf[..n]).unwrap(),
                        }
                    }
                });
            }
        });
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ten_thousand_concurrent_connections_in_many_to_one",
                "--nocapture",
            ])
            .env(CLIENTS_ENV, addr.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Waiting for the child blocks: a helper thread does it, with a deadline, while
        // this worker serves the connections.
        let (status, out, err) = spindle::unblock(move || {
            let give_up = Instant::now() + CHILD_DEADLINE;
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > give_up {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let output = child.wait_with_output().unwrap();
            (
                output.status,
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        });
        assert!(
            status.success(),
            "the clients' process failed ({status}):\n{out}\n{err}"
        );
        server.join().unwrap();
    });
}

/// The child: 10,000 clients of the server at `addr`.
fn run_clients(addr: SocketAddr) {
    raise_nofile(CONNECTIONS as u64 + 100);
    let rt = runtime();
    rt.block_on(|| {
        let all_connected = Arc::new(Barrier::new(CONNECTIONS));
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|id| {
                let all_connected = all_connected.clone();
                spindle::spawn(move || {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    all_connected.wait();
                    let sent = pattern(id);
                    stream.write_all(&sent).unwrap();
                    let mut back = vec![0u8; BYTES];
                    stream.read_exact(&mut back).unwrap();
                    checksum(&back) == checksum(&sent)
                })
            })
            .collect();
        let good = clients
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(good, CONNECTIONS, "connections whose echo came back intact");
    });
}
