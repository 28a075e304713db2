//! spawn: creating and joining a thread that does nothing.

use std::io;
use std::time::Instant;

use super::{ns_per_op, Subject};
use crate::figures::Figure;

const RUNS: usize = 5;

pub fn run(subject: Subject, n: u64) -> io::Result<Vec<Figure>> {
    let (ns, ops) = match subject {
        Subject::Go => return super::go_figure("spawn", "spawn + join", "spawn", n),
        Subject::Corosensei
        | Subject::ManyToMany
        | Subject::TokioCurrentThread
        | Subject::TokioMultiThread
        | Subject::May => return Ok(Vec::new()),
        Subject::ManyToOne | Subject::OneToOne => {
            let ops = if subject == Subject::ManyToOne {
                n
            } else {
                (n / 50).max(1)
            };
            let rt = subject.runtime(None)?.expect("a spindle subject");
            let ns = rt.block_on(|| {
                ns_per_op(RUNS, ops, || {
                    let start = Instant::now();
                    for i in 0..ops {
                        let h = spindle::spawn(move || i);
                        assert_eq!(h.join().expect("trivial thread panicked"), i);
                    }
                    start.elapsed()
                })
            });
            (ns, ops)
        }
        Subject::Std => {
            let ops = (n / 50).max(1);
            let ns = ns_per_op(RUNS, ops, || {
                let start = Instant::now();
                for i in 0..ops {
                    let h = std::thread::spawn(move || i);
                    assert_eq!(h.join().expect("trivial thread panicked"), i);
                }
                start.elapsed()
            });
            (ns, ops)
        }
    };
    Ok(vec![Figure::new(
        "spawn",
        subject.name(),
        "spawn + join",
        ns,
        "ns",
        ops,
    )])
}
