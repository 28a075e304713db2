//! skynet: every thread spawns ten children, down to N leaves; each leaf returns its number
//! (0 to N - 1) and every parent sums its children's results through join. It measures
//! spawn, join and scheduling of a great many short-lived threads; the total, which must be
//! N (N - 1) / 2, shows that no result was lost or counted twice.
//!
//! spindle's subjects run the tree as green threads (`spindle::spawn`, `JoinHandle::join`),
//! tokio's as async tasks (`tokio::spawn`, awaiting the `JoinHandle`). Each subject gets a
//! runtime of its own and runs the tree a few times in it; the best run counts, since the
//! others only add the machine's noise. Ratios are taken against tokio current-thread and
//! spindle many-to-one, measured in the same run at the same size.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::cli::Choice;

use super::{build_runtime, Subject};
use crate::figures::Figure;

const EXPERIMENT: &str = "skynet";

/// Children of every thread that is not a leaf.
const FAN_OUT: u64 = 10;

/// Stack size of the green threads: a skynet thread needs far less than a page of stack.
const GREEN_STACK: usize = 16 * 1024;

/// Workers of the many-to-many subjects, spindle's and tokio's alike.
const WORKERS: usize = 2;

/// Leaves of the tree on kernel threads (one-to-one): most of the tree is alive at once, so
/// a million leaves would be over a million kernel threads.
const KERNEL_LEAVES: u64 = 10_000;

/// Timed runs per subject (one under `--quick`); the best counts.
const RUNS: usize = 3;

/// The subjects the others are divided by, in this order.
const BASELINES: [Subject; 2] = [Subject::TokioCurrentThread, Subject::ManyToOne];

/// The children of the thread that covers leaves `lo..hi`: up to ten ranges of near-equal
/// size (exactly equal when the size is a power of ten).
fn children(lo: u64, hi: u64) -> impl Iterator<Item = (u64, u64)> {
    let size = hi - lo;
    let parts = size.min(FAN_OUT);
    (0..parts).map(move |k| (lo + size * k / parts, lo + size * (k + 1) / parts))
}

/// The thread for leaves `lo..hi` on spindle: a leaf returns its number, any other thread
/// spawns its children and sums what they return.
fn spindle_node(lo: u64, hi: u64) -> u64 {
    if hi - lo == 1 {
        return lo;
    }
    let handles: Vec<_> = children(lo, hi)
        .map(|(a, b)| spindle::spawn(move || spindle_node(a, b)))
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a skynet thread panicked"))
        .sum()
}

/// The task for leaves `lo..hi` on tokio, as [`spindle_node`]; boxed, since an async
/// function cannot hold its own future.
fn tokio_node(lo: u64, hi: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if hi - lo == 1 {
            return lo;
        }
        let handles: Vec<_> = children(lo, hi)
            .map(|(a, b)| tokio::spawn(tokio_node(a, b)))
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.expect("a skynet task panicked");
        }
        sum
    })
}

/// One timed run of the whole tree.
struct Sample {
    elapsed: Duration,
    sum: u64,
}

/// The answer for `leaves` leaves: 0 + 1 + ... + (leaves - 1).
fn expected_sum(leaves: u64) -> io::Result<u64> {
    let sum = u128::from(leaves) * u128::from(leaves.saturating_sub(1)) / 2;
    u64::try_from(sum).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("skynet with {leaves} leaves: the sum of the leaves does not fit in a u64"),
        )
    })
}

/// How `subject` appears in the figures: pools say how many workers they have.
fn label(subject: Subject) -> String {
    match subject {
        Subject::ManyToMany | Subject::TokioMultiThread | Subject::May | Subject::Go => {
            format!("{} ({WORKERS} workers)", subject.name())
        }
        _ => subject.name().to_string(),
    }
}

/// What the time figure of `subject` is, including what its threads run on.
fn metric(subject: Subject, runs: usize) -> String {
    let time = if runs == 1 {
        "time of 1 run".to_string()
    } else {
        format!("time per run, best of {runs}")
    };
    match subject {
        Subject::ManyToOne | Subject::ManyToMany => format!("{time}, 16 KiB green stacks"),
        Subject::OneToOne => format!("{time}, kernel threads, at most {KERNEL_LEAVES} leaves"),
        _ => time,
    }
}

/// Set in the environment of the child process that measures one subject: the number of
/// runs, and a sign that the measurement happens here, not in yet another child.
const CHILD_RUNS_ENV: &str = "SPINDLE_LAB_SKYNET_RUNS";

/// Measures `subject` in a child process of its own (`spindle-lab bench skynet --model
/// ...`), so that no subject runs on a heap shaped by another's million allocations: in one
/// process, whatever ran later was up to a third slower. In that child, measures in place.
fn measure(subject: Subject, leaves: u64, runs: usize) -> io::Result<Figure> {
    if std::env::var_os(CHILD_RUNS_ENV).is_some() {
        return measure_here(subject, leaves, runs);
    }
    let name = subject.cli_name();
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "bench",
            "skynet",
            "--model",
            name,
            "--n",
            &leaves.to_string(),
            "--json",
        ])
        .env(CHILD_RUNS_ENV, runs.to_string())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "skynet on {name} in a child process failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let figures: Vec<Figure> = serde_json::from_slice(&out.stdout)
        .map_err(|e| io::Error::other(format!("skynet on {name}: unreadable child output: {e}")))?;
    let (label, metric) = (label(subject), metric(subject, runs));
    figures
        .into_iter()
        .find(|f| f.subject == label && f.metric == metric && f.n == leaves)
        .ok_or_else(|| io::Error::other(format!("skynet on {name}: no time in child output")))
}

/// Runs the tree of `leaves` leaves `runs` times on `subject` in this process: the best
/// time, or a skipped figure when the subject's runtime cannot be built. Fails if a run's
/// total is wrong.
fn measure_here(subject: Subject, leaves: u64, runs: usize) -> io::Result<Figure> {
    let label = label(subject);
    let metric = metric(subject, runs);
    let skipped = |e: io::Error| {
        Figure::skipped(
            EXPERIMENT,
            &label,
            &metric,
            &format!("runtime failed to build: {e}"),
            leaves,
        )
    };
    let samples: Vec<Sample> = match subject {
        Subject::ManyToOne | Subject::ManyToMany | Subject::OneToOne => {
            let (model, stack_size) = match subject {
                Subject::ManyToOne => (spindle::Model::ManyToOne, Some(GREEN_STACK)),
                Subject::ManyToMany => (
                    spindle::Model::ManyToMany { workers: WORKERS },
                    Some(GREEN_STACK),
                ),
                // Kernel threads keep the system's default stack size.
                _ => (spindle::Model::OneToOne, None),
            };
            let rt = match build_runtime(model, stack_size) {
                Ok(rt) => rt,
                Err(e) => return Ok(skipped(e)),
            };
            rt.block_on(|| {
                (0..runs)
                    .map(|_| {
                        let start = Instant::now();
                        let sum = spindle_node(0, leaves);
                        Sample {
                            elapsed: start.elapsed(),
                            sum,
                        }
                    })
                    .collect()
            })
        }
        Subject::TokioCurrentThread | Subject::TokioMultiThread => {
            let built = if subject == Subject::TokioCurrentThread {
                tokio::runtime::Builder::new_current_thread().build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(WORKERS)
                    .build()
            };
            let rt = match built {
                Ok(rt) => rt,
                Err(e) => return Ok(skipped(e)),
            };
            rt.block_on(async {
                let mut samples = Vec::with_capacity(runs);
                for _ in 0..runs {
                    let start = Instant::now();
                    // The root is a task like every other node, not the block_on future.
                    let sum = tokio::spawn(tokio_node(0, leaves))
                        .await
                        .expect("a skynet task panicked");
                    samples.push(Sample {
                        elapsed: start.elapsed(),
                        sum,
                    });
                }
                samples
            })
        }
        Subject::Std | Subject::Corosensei | Subject::May | Subject::Go => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the skynet experiment does not measure {}", subject.name()),
            ))
        }
    };
    let expected = expected_sum(leaves)?;
    if let Some(wrong) = samples.iter().find(|s| s.sum != expected) {
        return Err(io::Error::other(format!(
            "skynet on {label} with {leaves} leaves summed to {}, expected {expected}: \
             results were lost or counted twice",
            wrong.sum
        )));
    }
    let best = samples
        .iter()
        .map(|s| s.elapsed)
        .min()
        .expect("at least one run");
    Ok(Figure::new(
        EXPERIMENT,
        &label,
        &metric,
        best.as_secs_f64() * 1000.0,
        "ms",
        leaves,
    ))
}

/// Measures `subjects` on a tree of `n` leaves (kernel threads: at most [`KERNEL_LEAVES`]),
/// then divides each time by the baselines' times at the same size.
pub fn run(subjects: &[Subject], n: u64, quick: bool) -> io::Result<Vec<Figure>> {
    expected_sum(n)?;
    let runs = match std::env::var(CHILD_RUNS_ENV) {
        Ok(r) => r.parse().map_err(io::Error::other)?,
        Err(_) if quick => 1,
        Err(_) => RUNS,
    };
    let mut times = Vec::new();
    for &subject in subjects {
        let leaves = if subject == Subject::OneToOne {
            n.min(KERNEL_LEAVES)
        } else {
            n
        };
        times.push(measure(subject, leaves, runs)?);
        if subject == Subject::OneToOne {
            // Kernel threads run a smaller tree: measure the baselines at its size too, so
            // that its ratios compare like with like.
            for base in BASELINES {
                if !(subjects.contains(&base) && leaves == n) {
                    times.push(measure(base, leaves, runs)?);
                }
            }
        }
    }
    let mut ratios = Vec::new();
    for f in times.iter().filter(|f| f.measured()) {
        for base in BASELINES.map(label) {
            let same_size_base = times
                .iter()
                .find(|b| b.subject == base && b.n == f.n && b.measured());
            if let Some(b) = same_size_base.filter(|b| b.subject != f.subject) {
                ratios.push(Figure::new(
                    EXPERIMENT,
                    &f.subject,
                    &format!("time / {base} time"),
                    f.value / b.value,
                    "x",
                    f.n,
                ));
            }
        }
    }
    times.extend(ratios);
    Ok(times)
}
