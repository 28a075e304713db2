//! pingpong: a message's round trip between two threads over two channels.

use std::io;
use std::time::Instant;

use super::{ns_per_op, Subject};
use crate::figures::Figure;

const RUNS: usize = 5;

/// Kernel threads make fewer round trips, in fewer runs: each one is two trips through the
/// kernel's scheduler (35-50 µs here), and 10,000 of them already settle the figure.
const KERNEL_RUNS: usize = 3;
const KERNEL_DIVISOR: u64 = 50;

/// `ops` round trips between the caller and a thread made by `spawn`, over spindle channels.
fn spindle_round_trips(ops: u64) -> std::time::Duration {
    let (to_echo, echo_rx) = spindle::channel::bounded::<u64>(1);
    let (echo_tx, from_echo) = spindle::channel::bounded::<u64>(1);
    let start = Instant::now();
    let echo = spindle::spawn(move || {
        for v in echo_rx {
            if echo_tx.send(v).is_err() {
                break;
            }
        }
    });
    for i in 0..ops {
        to_echo.send(i).expect("echo thread gone");
        assert_eq!(from_echo.recv().expect("echo thread gone"), i);
    }
    drop(to_echo);
    echo.join().expect("echo thread panicked");
    start.elapsed()
}

pub fn run(subject: Subject, n: u64) -> io::Result<Vec<Figure>> {
    let (ns, ops) = match subject {
        Subject::Go => {
            return super::go_figure(
                "pingpong",
                "round trip (Go channel, capacity 1)",
                "pingpong",
                n,
            )
        }
        Subject::Corosensei | Subject::ManyToMany | Subject::TokioMultiThread => {
            return Ok(Vec::new())
        }
        Subject::TokioCurrentThread => {
            let rt = super::peers::tokio_runtime()?;
            let ns = ns_per_op(RUNS, n, || super::peers::tokio_round_trips(&rt, n));
            (ns, n)
        }
        Subject::May => (ns_per_op(RUNS, n, || super::peers::may_round_trips(n)), n),
        Subject::ManyToOne | Subject::OneToOne => {
            let (runs, ops) = if subject == Subject::ManyToOne {
                (RUNS, n)
            } else {
                (KERNEL_RUNS, (n / KERNEL_DIVISOR).max(1))
            };
            let rt = subject.runtime(None)?.expect("a spindle subject");
            let ns = rt.block_on(|| ns_per_op(runs, ops, || spindle_round_trips(ops)));
            (ns, ops)
        }
        Subject::Std => {
            let ops = (n / KERNEL_DIVISOR).max(1);
            let ns = ns_per_op(KERNEL_RUNS, ops, || {
                let (to_echo, echo_rx) = std::sync::mpsc::sync_channel::<u64>(1);
                let (echo_tx, from_echo) = std::sync::mpsc::sync_channel::<u64>(1);
                let start = Instant::now();
                let echo = std::thread::spawn(move || {
                    for v in echo_rx {
                        if echo_tx.send(v).is_err() {
                            break;
                        }
                    }
                });
                for i in 0..ops {
                    to_echo.send(i).expect("echo thread gone");
                    assert_eq!(from_echo.recv().expect("echo thread gone"), i);
                }
                drop(to_echo);
                echo.join().expect("echo thread panicked");
                start.elapsed()
            });
            (ns, ops)
        }
    };
    let what = match subject {
        Subject::Std => "round trip (std mpsc)",
        Subject::TokioCurrentThread => "round trip (tokio mpsc, capacity 1)",
        Subject::May => "round trip (may mpsc)",
        _ => "round trip",
    };
    Ok(vec![Figure::new(
        "pingpong",
        subject.name(),
        what,
        ns,
        "ns",
        ops,
    )])
}
