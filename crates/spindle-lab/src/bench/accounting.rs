//! accounting: CPU time per green thread, as spindle samples it, against the truth.
//!
//! - Accuracy: three CPU-bound green threads of one many-to-one runtime do 1, 2 and 3
//!   units of work, interleaved by the time slice (each calls `checkpoint()` as it
//!   works), so each really gets 1/6, 2/6 and 3/6 of the worker's CPU. Their reported CPU times
//!   (`Thread::cpu_time`) give shares to compare with those; and the sum of the three is
//!   compared with the process's CPU time over the same run, from `getrusage` (the other
//!   kernel threads of the process are asleep meanwhile). Targets: each share within 5
//!   percentage points, the sum within 5%.
//! - Overhead: two green threads yielding to each other in turn, on a runtime with
//!   accounting on and on one with it off, alternately, in this process, both workers on
//!   one CPU; the best of 9 runs each. Target: on / off at most 1.3.

use std::io;
use std::time::{Duration, Instant};

use super::{build_runtime, pin_to_cpu, process_cpu, Subject};
use crate::figures::Figure;

const EXPERIMENT: &str = "accounting";

/// The start of the share figures' metrics.
pub const SHARE_METRIC: &str = "reported CPU share";
/// The start of the overhead figures' metrics.
pub const YIELD_METRIC: &str = "time per yield";

/// Yields per timed run of the overhead part, and runs per side.
const YIELDS: u64 = 1_000_000;
const QUICK_YIELDS: u64 = 300_000;
const YIELD_RUNS: usize = 9;

/// `units` units of work of `iterations` rounds each of a multiply-add the compiler
/// cannot drop, calling `checkpoint()` every 4,096 rounds: the thread gives way when its
/// time slice (10 ms) is used up, as a CPU-bound green thread should.
fn work(units: u64, iterations: u64) -> u64 {
    let mut x = units;
    for i in 0..units * iterations {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        if i % 4096 == 0 {
            spindle::checkpoint();
        }
    }
    std::hint::black_box(x)
}

/// The accuracy part: shares of three threads doing 1, 2 and 3 units, and their sum
/// against getrusage.
fn accuracy(iterations: u64) -> io::Result<Vec<Figure>> {
    let subject = Subject::ManyToOne.name();
    let rt = build_runtime(spindle::Model::ManyToOne, None)?;
    let before = process_cpu();
    let wall = Instant::now();
    let times: Vec<Duration> = rt.block_on(|| {
        let hs: Vec<_> = (1..=3u64)
            .map(|units| spindle::spawn(move || work(units, iterations)))
            .collect();
        let threads: Vec<_> = hs.iter().map(|h| h.thread().clone()).collect();
        for h in hs {
            h.join().expect("a worker thread panicked");
        }
        threads
            .iter()
            .map(|t| t.cpu_time().unwrap_or_default())
            .collect()
    });
    let process = process_cpu() - before;
    let wall = wall.elapsed();
    let total: Duration = times.iter().sum();
    if total.is_zero() {
        return Err(io::Error::other(
            "accounting: the three CPU-bound threads were charged no CPU time at all",
        ));
    }
    let n = (6 * iterations).div_ceil(1_000_000);
    let mut figures = Vec::new();
    for (units, time) in (1..=3u64).zip(&times) {
        let share = 100.0 * time.as_secs_f64() / total.as_secs_f64();
        let expected = 100.0 * units as f64 / 6.0;
        figures.push(Figure::new(
            EXPERIMENT,
            subject,
            &format!("{SHARE_METRIC}, thread doing {units} of 6 units (expected {expected:.1}%)"),
            share,
            "%",
            n,
        ));
        figures.push(Figure::new(
            EXPERIMENT,
            subject,
            &format!("share error, thread doing {units} of 6 units (target: within 5 points)"),
            (share - expected).abs(),
            "points",
            n,
        ));
    }
    figures.push(Figure::new(
        EXPERIMENT,
        subject,
        "CPU time charged to the three threads",
        total.as_secs_f64() * 1e3,
        "ms",
        n,
    ));
    figures.push(
        Figure::new(
            EXPERIMENT,
            subject,
            "process CPU time over the same run (getrusage)",
            process.as_secs_f64() * 1e3,
            "ms",
            n,
        )
        .with_note(format!(
            "accounting: the accuracy run took {:.0} ms of wall time; the CPU charged to \
             green threads is a multiple of the {:?} sampling interval",
            wall.as_secs_f64() * 1e3,
            spindle::runtime::CPU_SAMPLE_INTERVAL
        )),
    );
    figures.push(Figure::new(
        EXPERIMENT,
        subject,
        "sum over the green threads / process CPU time (target: within 5% of 1)",
        total.as_secs_f64() / process.as_secs_f64(),
        "x",
        n,
    ));
    Ok(figures)
}

/// The overhead part: a yield ping-pong with accounting on and off, alternately.
fn overhead(yields: u64) -> io::Result<Vec<Figure>> {
    let subject = Subject::ManyToOne.name();
    let on = spindle::Runtime::builder().cpu_accounting(true).build()?;
    let off = spindle::Runtime::builder().cpu_accounting(false).build()?;
    let ping_pong = |rt: &spindle::Runtime| {
        rt.block_on(|| {
            // Both runtimes' workers on one CPU: otherwise where the kernel put each worker
            // thread (a CPU busier with the hypervisor's or other work) shows up as a
            // difference between the two sides that alternating does not cancel.
            pin_to_cpu(0);
            let start = Instant::now();
            let a = spindle::spawn(move || (0..yields).for_each(|_| spindle::yield_now()));
            let b = spindle::spawn(move || (0..yields).for_each(|_| spindle::yield_now()));
            a.join().expect("yielder panicked");
            b.join().expect("yielder panicked");
            start.elapsed()
        })
    };
    // Alternate the two sides, and which goes first, so that drift on this shared
    // machine hits both alike.
    let (mut t_on, mut t_off) = (Vec::new(), Vec::new());
    for round in 0..YIELD_RUNS {
        if round % 2 == 0 {
            t_on.push(ping_pong(&on));
            t_off.push(ping_pong(&off));
        } else {
            t_off.push(ping_pong(&off));
            t_on.push(ping_pong(&on));
        }
    }
    // The best run of each side: this VM has phases, lasting several runs, in which one
    // CPU runs everything about 1.6x slower, which skews even a median of alternate runs.
    let best = |ts: Vec<Duration>| {
        ts.into_iter().min().unwrap_or_default().as_nanos() as f64 / (2 * yields) as f64
    };
    let (ns_on, ns_off) = (best(t_on), best(t_off));
    Ok(vec![
        Figure::new(
            EXPERIMENT,
            subject,
            &format!("{YIELD_METRIC}, best of {YIELD_RUNS}, accounting on"),
            ns_on,
            "ns",
            2 * yields,
        ),
        Figure::new(
            EXPERIMENT,
            subject,
            &format!("{YIELD_METRIC}, best of {YIELD_RUNS}, accounting off"),
            ns_off,
            "ns",
            2 * yields,
        ),
        Figure::new(
            EXPERIMENT,
            subject,
            "yield with accounting on / off (target: at most 1.3)",
            ns_on / ns_off,
            "x",
            2 * yields,
        ),
    ])
}

/// Runs both parts: `n` is the iterations of one unit of work.
pub fn run(subjects: &[Subject], n: u64, quick: bool) -> io::Result<Vec<Figure>> {
    if !subjects.contains(&Subject::ManyToOne) {
        return Ok(Vec::new());
    }
    let mut figures = accuracy(n)?;
    figures.extend(overhead(if quick { QUICK_YIELDS } else { YIELDS })?);
    Ok(figures)
}
