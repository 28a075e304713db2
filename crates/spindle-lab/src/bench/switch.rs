//! switch: the cost of one yield, two threads giving way to each other in turn.

use std::io;
use std::time::Instant;

use corosensei::Coroutine;

use super::{ns_per_op, pin_to_cpu, Subject};
use crate::figures::Figure;

const RUNS: usize = 5;

pub fn run(subject: Subject, n: u64) -> io::Result<Vec<Figure>> {
    let (ns, ops) = match subject {
        Subject::Go => return super::go_figure("switch", "yield", "yield", n),
        Subject::ManyToMany | Subject::TokioMultiThread => return Ok(Vec::new()),
        Subject::TokioCurrentThread => {
            let rt = super::peers::tokio_runtime()?;
            let ns = ns_per_op(RUNS, 2 * n, || super::peers::tokio_yields(&rt, n));
            (ns, n)
        }
        Subject::May => (ns_per_op(RUNS, 2 * n, || super::peers::may_yields(n)), n),
        Subject::Corosensei => {
            // One resume plus one suspend: what a yield between two green threads does.
            let mut co: Coroutine<(), (), ()> = Coroutine::new(|y, ()| loop {
                y.suspend(());
            });
            let ns = ns_per_op(RUNS, n, || {
                let start = Instant::now();
                for _ in 0..n {
                    let _ = co.resume(());
                }
                start.elapsed()
            });
            (ns, n)
        }
        Subject::ManyToOne => {
            let rt = subject.runtime(None)?.expect("a spindle subject");
            let ns = rt.block_on(|| {
                ns_per_op(RUNS, 2 * n, || {
                    let start = Instant::now();
                    let a = spindle::spawn(move || (0..n).for_each(|_| spindle::yield_now()));
                    let b = spindle::spawn(move || (0..n).for_each(|_| spindle::yield_now()));
                    a.join().expect("yielder panicked");
                    b.join().expect("yielder panicked");
                    start.elapsed()
                })
            });
            (ns, n)
        }
        Subject::OneToOne | Subject::Std => {
            // Kernel threads: fewer operations (each is a trip through the kernel), and both
            // threads pinned to one CPU so each yield really switches to the other.
            let ops = (n / 20).max(1);
            let yielder = move || {
                pin_to_cpu(0);
                (0..ops).for_each(|_| std::thread::yield_now())
            };
            let ns = if subject == Subject::Std {
                ns_per_op(3, 2 * ops, || {
                    let start = Instant::now();
                    let a = std::thread::spawn(yielder);
                    let b = std::thread::spawn(yielder);
                    a.join().expect("yielder panicked");
                    b.join().expect("yielder panicked");
                    start.elapsed()
                })
            } else {
                let rt = subject.runtime(None)?.expect("a spindle subject");
                rt.block_on(|| {
                    ns_per_op(3, 2 * ops, || {
                        let start = Instant::now();
                        let a = spindle::spawn(move || {
                            pin_to_cpu(0);
                            (0..ops).for_each(|_| spindle::yield_now())
                        });
                        let b = spindle::spawn(move || {
                            pin_to_cpu(0);
                            (0..ops).for_each(|_| spindle::yield_now())
                        });
                        a.join().expect("yielder panicked");
                        b.join().expect("yielder panicked");
                        start.elapsed()
                    })
                })
            };
            (ns, ops)
        }
    };
    let metric = if subject == Subject::Corosensei {
        "resume + suspend"
    } else {
        "yield"
    };
    Ok(vec![Figure::new(
        "switch",
        subject.name(),
        metric,
        ns,
        "ns",
        ops,
    )])
}
