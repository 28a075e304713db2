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
        Subject::Corosensei => return Ok(corosensei_floors(n)),
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
    Ok(vec![Figure::new(
        "switch",
        subject.name(),
        "yield",
        ns,
        "ns",
        ops,
    )])
}

/// The metric of the second floor: a scheduler's resume call site switches to a different
/// coroutine each time.
pub const TWO_IN_TURN_METRIC: &str =
    "resume + suspend, two coroutines resumed in turn from one call site";

/// The floors a yield is measured against: one resume plus one suspend of a single
/// coroutine (what a yield between two green threads does: into the scheduler and out),
/// and the same with two coroutines resumed in turn from one call site, as a scheduler
/// loop does. The second costs about twice the first on the Zen 4 VM of session 12, with
/// no more instructions (a standalone loop: 4.6 to 4.7 ns against 2.3 to 2.5; this one,
/// placed in the lab's binary: 5.0 to 6.4 against 2.2 to 3.1): the switch's loads and its
/// return come from a different stack each time, which the first never makes the
/// processor predict. Unrolled into two call sites, one per coroutine, it costs what the
/// first does.
fn corosensei_floors(n: u64) -> Vec<Figure> {
    let looping = || -> Coroutine<(), (), ()> {
        Coroutine::new(|y, ()| loop {
            y.suspend(());
        })
    };
    let mut co = looping();
    let one = ns_per_op(RUNS, n, || {
        let start = Instant::now();
        for _ in 0..n {
            let _ = co.resume(());
        }
        start.elapsed()
    });
    let mut pair = [looping(), looping()];
    let two = ns_per_op(RUNS, n, || {
        let start = Instant::now();
        // The index flips in a register: the cheapest way to pick the other coroutine
        // (through `black_box` it went through memory and cost about 1 ns more). Should
        // the compiler ever unroll this into one call site per coroutine, the figure
        // would drop to the first floor's, which the table would show.
        let mut which = 0;
        for _ in 0..n {
            which ^= 1;
            let _ = pair[which].resume(());
        }
        start.elapsed()
    });
    let name = Subject::Corosensei.name();
    vec![
        Figure::new("switch", name, "resume + suspend", one, "ns", n),
        Figure::new("switch", name, TWO_IN_TURN_METRIC, two, "ns", n),
    ]
}
