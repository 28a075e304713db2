//! sync: spindle's Mutex and channel against std's, crossbeam-channel's and tokio's, all in
//! one run.
//!
//! 1. *Uncontended lock + unlock.* One thread locks a Mutex, adds 1 to the counter it
//!    guards and unlocks it, `n` times: spindle's Mutex from a green thread in many-to-one
//!    and from a plain kernel thread outside any runtime (the lab's own thread), std's
//!    Mutex, and tokio's (`lock().await` in a current-thread runtime). spindle's lock is a
//!    parking lock that must tell green threads from kernel threads only when it waits, so
//!    its fast path should cost about what std's does: the ratio spindle / std is held to
//!    at most 1.5.
//! 2. *Channel throughput.* A producer sends the numbers `0..n` through a channel of
//!    capacity 128 to a consumer that sums them (the sum is checked): spindle's
//!    `bounded(128)` between two green threads in many-to-one, crossbeam-channel's
//!    `bounded(128)` and std's `sync_channel(128)` between two kernel threads, tokio's
//!    `mpsc::channel(128)` between two tasks of a current-thread runtime. With both ends
//!    on one kernel thread the green producer fills the buffer before it parks and the
//!    consumer drains it before it parks in turn: no cache line crosses cores and no
//!    futex wakes anyone, and the channel, made on that kernel thread, is biased to it
//!    (`sync/biased_lock.rs`), so its lock costs no atomic read-modify-write. The ratio
//!    spindle / crossbeam-channel is held to at least 5. crossbeam's figure varies most
//!    from run to run (its two kernel threads share a core or not, as the kernel places
//!    them): 11 to 77 M msg/s on this VM. spindle's runs at one of two speeds, about 270
//!    or about 150 M msg/s, minutes at a time, whatever the VM does: that is the host, as
//!    a probe loop shaped like a send with no spindle code in it (`host_probe`), timed
//!    before every run on the thread that runs the case's consumer, slows about 2x in the
//!    same minutes (about 1.1 ns per iteration against 2.2 here). The notes give its
//!    readings. Beside the channels runs a floor (`bench/handshake_floor.rs`): the same
//!    messages through 128 slots under the biased lock's owner handshake and nothing
//!    else, on the kernel thread spindle's channel runs on. No channel that takes that
//!    lock per operation moves more, so floor / crossbeam-channel, also reported, says
//!    whether the target was within reach of any such design in that run.
//! 3. *Contention.* Many threads (1,000) each add 1 to one shared counter under a Mutex
//!    many times (10,000): green threads in many-to-many (one worker per core) with
//!    spindle's Mutex, kernel threads with std's Mutex, and kernel threads (one-to-one)
//!    with spindle's Mutex, all on 64 KiB stacks. The wall time runs from the first spawn
//!    to the last join; the count must come out exact or the experiment fails. The ratio
//!    spindle many-to-many / std kernel threads is held to below 1.
//!
//! Each part runs its cases in rounds, every case once per round, and keeps each case's
//! best time: the cases are compared as ratios, and a machine that drifts (another build,
//! a frequency change) then slows all of them alike instead of whichever ran at the time.
//! Under `--quick` the contention runs 100 threads x 1,000 increments and every part runs
//! fewer rounds.

use std::hint::black_box;
use std::io;
use std::ops::DerefMut;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handshake_floor::handshake_floor;
use super::{build_runtime, low_high, Subject};
use crate::figures::Figure;

const EXPERIMENT: &str = "sync";

/// The start of the uncontended lock + unlock figures' metrics; the Mutex measured follows
/// the last ", ".
pub const MUTEX_METRIC: &str = "lock + unlock";
/// The start of the channel throughput figures' metrics; the channel follows the last ", ".
pub const CHANNEL_METRIC: &str = "throughput";
/// The start of the contention figures' metrics: the size runs to the first ", ", the Mutex
/// and threads follow the last ", ".
pub const CONTENTION_METRIC: &str = "wall time";

/// The unit of the channel throughput figures.
pub const CHANNEL_UNIT: &str = "M msg/s";

/// The capacity of every channel measured ([`RATIOS`] names it too).
const CAPACITY: usize = 128;

/// What the floor of a channel that locks spindle's biased lock per operation is called
/// (`bench/handshake_floor.rs`; [`RATIOS`] names it too). No ", " in it: a figure's
/// metric ends with what follows its last ", ", and the plot labels the bar with that.
const FLOOR: &str = "handshake floor (no channel)";

/// The floor's subject in the figures (and its colour in the plot).
const FLOOR_SUBJECT: &str = "handshake floor";

/// Rounds of the uncontended Mutex and of the channels (fewer under `--quick`).
const ROUNDS: usize = 5;
const QUICK_ROUNDS: usize = 3;

/// Rounds of the contention (one under `--quick`).
const CONTENTION_ROUNDS: usize = 3;

/// Threads and increments per thread of the contention (and under `--quick`).
const THREADS: u64 = 1_000;
const INCREMENTS: u64 = 10_000;
const QUICK_THREADS: u64 = 100;
const QUICK_INCREMENTS: u64 = 1_000;

/// The stack of every contending thread, green or kernel.
const STACK: usize = 64 * 1024;

/// How `subject` appears in the figures: many-to-many says how many workers it has.
fn label(subject: Subject) -> String {
    match (subject, spindle::Model::many_to_many_per_core()) {
        (Subject::ManyToMany, spindle::Model::ManyToMany { workers }) => {
            format!("{} ({workers} workers)", subject.name())
        }
        _ => subject.name().to_string(),
    }
}

/// One thing a part measures: who runs it (the figure's subject), what it is (the end of
/// the figure's metric) and one timed run of it, which fails if its result is wrong.
struct Case<'a> {
    subject: String,
    what: String,
    run: Box<dyn FnMut() -> io::Result<Run> + 'a>,
}

impl<'a> Case<'a> {
    /// A case whose runs are timed alone.
    fn new(
        subject: Subject,
        what: impl Into<String>,
        mut run: impl FnMut() -> io::Result<Duration> + 'a,
    ) -> Self {
        Self::probed(subject, what, move || {
            Ok(Run {
                time: run()?,
                probe_ns: f64::NAN,
            })
        })
    }

    /// A case whose runs report the host probe's reading with their time
    /// ([`after_probe`]).
    fn probed(
        subject: Subject,
        what: impl Into<String>,
        run: impl FnMut() -> io::Result<Run> + 'a,
    ) -> Self {
        Case {
            subject: label(subject),
            what: what.into(),
            run: Box::new(run),
        }
    }
}

/// One timed run of a case, and what the host probe read just before it.
#[derive(Clone, Copy)]
struct Run {
    time: Duration,
    /// [`host_probe`]'s nanoseconds per iteration (NaN when the case does not probe).
    probe_ns: f64,
}

/// Times the host probe, then `run`, on the calling thread (the one that runs the case's
/// consumer: the probe should see the vCPU the case runs on).
fn after_probe(run: impl FnOnce() -> io::Result<Duration>) -> io::Result<Run> {
    let probe_ns = host_probe();
    Ok(Run {
        time: run()?,
        probe_ns,
    })
}

/// Runs `cases` in `rounds` rounds, every case once per round: every case's runs, in
/// round order.
fn runs_of(cases: &mut [Case<'_>], rounds: usize) -> io::Result<Vec<Vec<Run>>> {
    let mut runs: Vec<Vec<Run>> = (0..cases.len())
        .map(|_| Vec::with_capacity(rounds))
        .collect();
    for _ in 0..rounds {
        for (case, runs) in cases.iter_mut().zip(&mut runs) {
            runs.push((case.run)()?);
        }
    }
    Ok(runs)
}

/// The fastest of `runs` (not empty).
fn best_run(runs: &[Run]) -> Run {
    *runs
        .iter()
        .min_by_key(|r| r.time)
        .expect("every case runs at least once")
}

/// Runs `cases` in `rounds` rounds, every case once per round: each case with its best
/// time.
fn best_times<'c, 'a>(
    cases: &'c mut [Case<'a>],
    rounds: usize,
) -> io::Result<Vec<(&'c Case<'a>, Duration)>> {
    let runs = runs_of(cases, rounds)?;
    Ok(cases
        .iter()
        .zip(runs)
        .map(|(case, runs)| (case, best_run(&runs).time))
        .collect())
}

/// Iterations of [`host_probe`]'s loop (about 4 ms).
const PROBE_ITERATIONS: u64 = 4_000_000;

/// What [`host_probe`]'s loop works on: the fields a channel send touches.
struct ProbeState {
    in_section: AtomicU8,
    owner: AtomicU64,
    head: AtomicU64,
    tail: AtomicU64,
    room: AtomicU64,
    slots: [AtomicU64; CAPACITY],
}

/// Nanoseconds per iteration of a loop shaped like a many-to-one channel send, with no
/// spindle code in it: a flag stored and an owner checked around relaxed loads and stores
/// of a counter and a ring slot, each iteration's counter read back from memory where the
/// last one stored it.
///
/// It tells how the host treats this vCPU at the moment. On this VM such loops run at one
/// of two speeds, minutes at a time, about 2x apart, whatever the guest does; so does
/// spindle's channel, and its slow minutes are the probe's: in 2,400 rounds of one process
/// alternating this probe and 2 M messages through a `bounded(128)`, 1,829 channel rounds
/// ran at 102-196 M msg/s and 449 at 240-270 (the rest between); the probe read at least
/// 1.4 ns (about 2.2, against 1.09 otherwise) before 1,816 of the slow ones and before 13
/// of the fast ones. (That series ran the probe and `spindle_channel` alternately in a
/// test program outside the tree; `bench sync`'s notes show the same pairing run by run.)
fn host_probe() -> f64 {
    let state = ProbeState {
        in_section: AtomicU8::new(0),
        owner: AtomicU64::new(1),
        head: AtomicU64::new(0),
        tail: AtomicU64::new(0),
        room: AtomicU64::new(CAPACITY as u64),
        slots: std::array::from_fn(|_| AtomicU64::new(0)),
    };
    let p = black_box(&state);
    let start = Instant::now();
    for i in 0..PROBE_ITERATIONS {
        if p.owner.load(Relaxed) != 1 {
            break;
        }
        p.in_section.store(1, Relaxed);
        if p.owner.load(Relaxed) != 1 {
            break;
        }
        let tail = p.tail.load(Relaxed);
        if tail - p.head.load(Relaxed) >= p.room.load(Relaxed) {
            // Full: the consumer's turn, reduced to taking everything.
            p.head.store(tail, Relaxed);
        }
        p.slots[tail as usize % CAPACITY].store(i, Relaxed);
        p.tail.store(tail + 1, Relaxed);
        p.in_section.store(0, Relaxed);
    }
    start.elapsed().as_nanos() as f64 / PROBE_ITERATIONS as f64
}

/// `ops` uncontended lock + unlock pairs, each adding 1 to the guarded counter; `lock`
/// takes the lock.
fn lock_unlock<G: DerefMut<Target = u64>>(ops: u64, mut lock: impl FnMut() -> G) -> Duration {
    let start = Instant::now();
    for _ in 0..ops {
        let mut guard = lock();
        *guard += 1;
    }
    start.elapsed()
}

/// Nanoseconds per uncontended lock + unlock of the Mutexes of `subjects`, best of `rounds`
/// runs of `ops` pairs.
fn mutex_figures(subjects: &[Subject], ops: u64, rounds: usize) -> io::Result<Vec<Figure>> {
    let many_to_one = build_runtime(spindle::Model::ManyToOne, None)?;
    let tokio_rt = tokio::runtime::Builder::new_current_thread().build()?;
    let green_mutex = spindle::sync::Mutex::new(0u64);
    let kernel_mutex = spindle::sync::Mutex::new(0u64);
    let std_mutex = std::sync::Mutex::new(0u64);
    let tokio_mutex = tokio::sync::Mutex::new(0u64);
    let mut cases = Vec::new();
    for &subject in subjects {
        match subject {
            Subject::ManyToOne => cases.push(Case::new(
                subject,
                "spindle Mutex on a green thread",
                || {
                    Ok(many_to_one.block_on(|| {
                        lock_unlock(ops, || {
                            black_box(&green_mutex).lock().expect("mutex poisoned")
                        })
                    }))
                },
            )),
            Subject::Std => {
                // The lab's own thread, outside any runtime: a plain kernel thread.
                cases.push(Case::new(
                    subject,
                    "spindle Mutex on a kernel thread",
                    || {
                        Ok(lock_unlock(ops, || {
                            black_box(&kernel_mutex).lock().expect("mutex poisoned")
                        }))
                    },
                ));
                cases.push(Case::new(subject, "std Mutex", || {
                    Ok(lock_unlock(ops, || {
                        black_box(&std_mutex).lock().expect("mutex poisoned")
                    }))
                }));
            }
            Subject::TokioCurrentThread => {
                cases.push(Case::new(subject, "tokio Mutex (lock().await)", || {
                    Ok(tokio_rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..ops {
                            *black_box(&tokio_mutex).lock().await += 1;
                        }
                        start.elapsed()
                    }))
                }))
            }
            _ => {}
        }
    }
    Ok(best_times(&mut cases, rounds)?
        .into_iter()
        .map(|(case, best)| {
            Figure::new(
                EXPERIMENT,
                &case.subject,
                &format!("{MUTEX_METRIC}, {}", case.what),
                best.as_nanos() as f64 / ops as f64,
                "ns",
                ops,
            )
        })
        .collect())
}

/// Checks what the consumer of `channel` summed: the sum of `0..msgs`, or an error (a
/// message was lost or delivered twice).
fn check_sum(channel: &str, msgs: u64, sum: u64) -> io::Result<()> {
    let expected = msgs * msgs.saturating_sub(1) / 2;
    if sum == expected {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "sync: the consumer of {msgs} messages through {channel} summed to {sum}, expected \
         {expected}: messages were lost or delivered twice"
    )))
}

/// `msgs` messages through a spindle `bounded(CAPACITY)` from a new green thread to the
/// calling one (call it on a green thread).
fn spindle_channel(msgs: u64) -> io::Result<Duration> {
    let (tx, rx) = spindle::channel::bounded::<u64>(CAPACITY);
    let start = Instant::now();
    let producer = spindle::spawn(move || {
        for i in 0..msgs {
            tx.send(i).expect("the consumer is gone");
        }
    });
    let sum: u64 = rx.into_iter().sum();
    producer.join().expect("the producer panicked");
    let elapsed = start.elapsed();
    check_sum("spindle bounded", msgs, sum)?;
    Ok(elapsed)
}

/// `msgs` messages through a crossbeam-channel `bounded(CAPACITY)` from a new kernel thread
/// to the calling one.
fn crossbeam_channel(msgs: u64) -> io::Result<Duration> {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(CAPACITY);
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        for i in 0..msgs {
            tx.send(i).expect("the consumer is gone");
        }
    });
    let sum: u64 = rx.into_iter().sum();
    producer.join().expect("the producer panicked");
    let elapsed = start.elapsed();
    check_sum("crossbeam-channel bounded", msgs, sum)?;
    Ok(elapsed)
}

/// `msgs` messages through a std `sync_channel(CAPACITY)` from a new kernel thread to the
/// calling one.
fn std_channel(msgs: u64) -> io::Result<Duration> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(CAPACITY);
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        for i in 0..msgs {
            tx.send(i).expect("the consumer is gone");
        }
    });
    let sum: u64 = rx.into_iter().sum();
    producer.join().expect("the producer panicked");
    let elapsed = start.elapsed();
    check_sum("std sync_channel", msgs, sum)?;
    Ok(elapsed)
}

/// `msgs` messages through a tokio `mpsc::channel(CAPACITY)` between two tasks of `rt`.
fn tokio_channel(rt: &tokio::runtime::Runtime, msgs: u64) -> io::Result<Duration> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAPACITY);
    let (elapsed, sum) = rt.block_on(async move {
        let start = Instant::now();
        let producer = tokio::spawn(async move {
            for i in 0..msgs {
                tx.send(i).await.expect("the consumer is gone");
            }
        });
        let consumer = tokio::spawn(async move {
            let mut sum = 0u64;
            while let Some(v) = rx.recv().await {
                sum += v;
            }
            sum
        });
        producer.await.expect("the producer panicked");
        let sum = consumer.await.expect("the consumer panicked");
        (start.elapsed(), sum)
    });
    check_sum("tokio mpsc", msgs, sum)?;
    Ok(elapsed)
}

/// Millions of messages per second through the channels of `subjects`, best of `rounds`
/// runs of `msgs` messages.
fn channel_figures(subjects: &[Subject], msgs: u64, rounds: usize) -> io::Result<Vec<Figure>> {
    let many_to_one = build_runtime(spindle::Model::ManyToOne, None)?;
    let tokio_rt = tokio::runtime::Builder::new_current_thread().build()?;
    let mut cases = Vec::new();
    for &subject in subjects {
        match subject {
            // The probe runs where each case's consumer does: spindle's on the runtime's
            // worker, the others' on this thread.
            Subject::ManyToOne => {
                cases.push(Case::probed(
                    subject,
                    format!("spindle bounded({CAPACITY})"),
                    || many_to_one.block_on(|| after_probe(|| spindle_channel(msgs))),
                ));
                // On the same kernel thread as spindle's channel, under a subject of its
                // own (it is no spindle result).
                cases.push(Case {
                    subject: FLOOR_SUBJECT.to_string(),
                    ..Case::probed(subject, FLOOR, || {
                        many_to_one.block_on(|| {
                            after_probe(|| handshake_floor(msgs).map_err(io::Error::other))
                        })
                    })
                });
            }
            Subject::Std => {
                cases.push(Case::probed(
                    subject,
                    format!("crossbeam-channel bounded({CAPACITY})"),
                    || after_probe(|| crossbeam_channel(msgs)),
                ));
                cases.push(Case::probed(
                    subject,
                    format!("std sync_channel({CAPACITY})"),
                    || after_probe(|| std_channel(msgs)),
                ));
            }
            Subject::TokioCurrentThread => cases.push(Case::probed(
                subject,
                format!("tokio mpsc channel({CAPACITY})"),
                || after_probe(|| tokio_channel(&tokio_rt, msgs)),
            )),
            _ => {}
        }
    }
    let runs = runs_of(&mut cases, rounds)?;
    Ok(cases
        .iter()
        .zip(runs)
        .map(|(case, runs)| {
            let best = best_run(&runs);
            let rate = |r: &Run| msgs as f64 / r.time.as_secs_f64() / 1e6;
            let (slowest, fastest) = low_high(runs.iter().map(rate));
            let (probe_low, probe_high) = low_high(runs.iter().map(|r| r.probe_ns));
            Figure::new(
                EXPERIMENT,
                &case.subject,
                &format!("{CHANNEL_METRIC}, {}", case.what),
                rate(&best),
                CHANNEL_UNIT,
                msgs,
            )
            .with_note(format!(
                "sync, {}: rounds at {slowest:.0} to {fastest:.0} {CHANNEL_UNIT}; the host \
                 probe read {probe_low:.2} to {probe_high:.2} ns before them, {:.2} before \
                 the best",
                case.what, best.probe_ns
            ))
        })
        .collect())
}

/// Checks the count of a contention run on `what`.
fn check_count(what: &str, threads: u64, increments: u64, count: u64) -> io::Result<()> {
    let expected = threads * increments;
    if count == expected {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "sync contention, {what}: {threads} threads x {increments} increments counted \
         {count}, expected {expected}: the Mutex let increments through unguarded"
    )))
}

/// One contention run on spindle threads of the calling runtime (call it on a green thread,
/// or in a one-to-one runtime): the wall time, once the count is checked.
fn spindle_contention(what: &str, threads: u64, increments: u64) -> io::Result<Duration> {
    let counter = Arc::new(spindle::sync::Mutex::new(0u64));
    let start = Instant::now();
    let handles = (0..threads)
        .map(|_| {
            let counter = counter.clone();
            spindle::thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || {
                    for _ in 0..increments {
                        *counter.lock().expect("mutex poisoned") += 1;
                    }
                })
        })
        .collect::<io::Result<Vec<_>>>()?;
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("a contending thread panicked"))?;
    }
    let elapsed = start.elapsed();
    let count = *counter.lock().expect("mutex poisoned");
    check_count(what, threads, increments, count)?;
    Ok(elapsed)
}

/// One contention run on std threads with std's Mutex: the wall time, once the count is
/// checked.
fn std_contention(what: &str, threads: u64, increments: u64) -> io::Result<Duration> {
    let counter = Arc::new(std::sync::Mutex::new(0u64));
    let start = Instant::now();
    let handles = (0..threads)
        .map(|_| {
            let counter = counter.clone();
            std::thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || {
                    for _ in 0..increments {
                        *counter.lock().expect("mutex poisoned") += 1;
                    }
                })
        })
        .collect::<io::Result<Vec<_>>>()?;
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("a contending thread panicked"))?;
    }
    let elapsed = start.elapsed();
    let count = *counter.lock().expect("mutex poisoned");
    check_count(what, threads, increments, count)?;
    Ok(elapsed)
}

/// Wall time in ms of `threads` threads x `increments` increments on one Mutex for
/// `subjects`, best of `rounds` runs; fails if any run's count is not exact.
fn contention_figures(
    subjects: &[Subject],
    threads: u64,
    increments: u64,
    rounds: usize,
) -> io::Result<Vec<Figure>> {
    const GREEN: &str = "spindle Mutex on green threads";
    const ONE_TO_ONE: &str = "spindle Mutex on kernel threads";
    const STD: &str = "std Mutex on kernel threads";
    let many_to_many = build_runtime(spindle::Model::many_to_many_per_core(), None)?;
    let one_to_one = build_runtime(spindle::Model::OneToOne, None)?;
    let mut cases = Vec::new();
    for &subject in subjects {
        match subject {
            Subject::ManyToMany => cases.push(Case::new(subject, GREEN, || {
                many_to_many.block_on(|| spindle_contention(GREEN, threads, increments))
            })),
            Subject::Std => cases.push(Case::new(subject, STD, || {
                std_contention(STD, threads, increments)
            })),
            Subject::OneToOne => cases.push(Case::new(subject, ONE_TO_ONE, || {
                one_to_one.block_on(|| spindle_contention(ONE_TO_ONE, threads, increments))
            })),
            _ => {}
        }
    }
    let runs = if rounds == 1 {
        "1 run".to_string()
    } else {
        format!("best of {rounds}")
    };
    Ok(best_times(&mut cases, rounds)?
        .into_iter()
        .map(|(case, best)| {
            Figure::new(
                EXPERIMENT,
                &case.subject,
                &format!(
                    "{CONTENTION_METRIC} of {threads} threads x {increments} increments, \
                     {runs}, {}",
                    case.what
                ),
                best.as_secs_f64() * 1e3,
                "ms",
                threads,
            )
        })
        .collect())
}

/// The measured figure (not a ratio) whose metric ends with `what`.
fn measured<'a>(figures: &'a [Figure], what: &str) -> Option<&'a Figure> {
    figures
        .iter()
        .find(|f| f.measured() && f.unit != "x" && f.metric.ends_with(what))
}

/// The ratios the issue sets targets for (and the kernel threads' spindle Mutex against
/// std's), from the figures measured: (numerator, denominator, the ratio's metric), the
/// first two named as their metrics end. A ratio whose two sides were not both measured is
/// left out.
const RATIOS: [(&str, &str, &str); 7] = [
    (
        "spindle Mutex on a green thread",
        "std Mutex",
        "spindle Mutex on a green thread / std Mutex, lock + unlock (target: at most 1.5)",
    ),
    (
        "spindle Mutex on a kernel thread",
        "std Mutex",
        "spindle Mutex on a kernel thread / std Mutex, lock + unlock",
    ),
    (
        "spindle bounded(128)",
        "crossbeam-channel bounded(128)",
        "spindle bounded(128) / crossbeam-channel bounded(128), messages per second \
         (target: at least 5)",
    ),
    (
        FLOOR,
        "crossbeam-channel bounded(128)",
        "the handshake floor / crossbeam-channel bounded(128), messages per second: an \
         upper bound, in this run, for any channel that takes the biased lock per operation",
    ),
    (
        "spindle bounded(128)",
        FLOOR,
        "spindle bounded(128) / the handshake floor, messages per second",
    ),
    (
        "spindle Mutex on green threads",
        "std Mutex on kernel threads",
        "spindle Mutex on many-to-many green threads / std Mutex on kernel threads, wall \
         time (target: below 1)",
    ),
    (
        "spindle Mutex on kernel threads",
        "std Mutex on kernel threads",
        "spindle Mutex on one-to-one kernel threads / std Mutex on kernel threads, wall time",
    ),
];

/// The [`RATIOS`] whose two sides were measured, each under its numerator's subject.
fn ratios(figures: &[Figure]) -> Vec<Figure> {
    RATIOS
        .iter()
        .filter_map(|&(this, base, metric)| {
            let (a, b) = (measured(figures, this)?, measured(figures, base)?);
            Some(Figure::new(
                EXPERIMENT,
                &a.subject,
                metric,
                a.value / b.value,
                "x",
                a.n,
            ))
        })
        .collect()
}

/// Measures the three parts for `subjects` (the Mutex pairs and the messages: `n` each),
/// then the ratios between them.
pub fn run(subjects: &[Subject], n: u64, quick: bool) -> io::Result<Vec<Figure>> {
    let (rounds, threads, increments, contention_rounds) = if quick {
        (QUICK_ROUNDS, QUICK_THREADS, QUICK_INCREMENTS, 1)
    } else {
        (ROUNDS, THREADS, INCREMENTS, CONTENTION_ROUNDS)
    };
    let mut figures = mutex_figures(subjects, n, rounds)?;
    figures.extend(channel_figures(subjects, n, rounds)?);
    figures.extend(contention_figures(
        subjects,
        threads,
        increments,
        contention_rounds,
    )?);
    let r = ratios(&figures);
    figures.extend(r);
    Ok(figures)
}
