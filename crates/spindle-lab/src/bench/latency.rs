//! latency: how long a thread that becomes runnable waits before it runs, beside N
//! CPU-bound threads.
//!
//! 1. N *spinners* compute in a loop and call `spindle::checkpoint()` every few hundred
//!    nanoseconds of work, so a green spinner yields once its time slice is used up (1 ms
//!    here, set with `Builder::time_slice`; the default is 10 ms).
//! 2. A *probe* thread waits on a spindle channel. A plain kernel thread outside the
//!    runtime (the *waker*) sends it `Instant::now()`, the probe answers with the time
//!    elapsed since, over a std channel, and the waker pauses 1 to 3 ms before the next
//!    sample, so that the probe is idle and the spinners hold the workers at each wake.
//!
//! A woken green thread joins the back of its worker's run queue, so it waits for the
//! spinner that holds the worker to use up its slice and for every spinner queued before
//! it: up to N slices in many-to-one, about N / workers in many-to-many. In one-to-one
//! the spinners are kernel threads, `checkpoint` does nothing, and the kernel's scheduler
//! decides.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use spindle::{Model, Runtime};

use super::Subject;
use crate::figures::Figure;

const EXPERIMENT: &str = "latency";

/// The median figure's metric.
pub const MEDIAN_METRIC: &str = "wake-to-run latency, median";
/// The worst figure's metric.
pub const MAX_METRIC: &str = "wake-to-run latency, worst";

/// The green threads' time slice.
const SLICE: Duration = Duration::from_millis(1);

/// Spinner counts measured.
const COUNTS: [u64; 5] = [1, 2, 4, 8, 16];

/// Samples per model and spinner count (fewer under `--quick`).
const SAMPLES: usize = 40;
const QUICK_SAMPLES: usize = 15;

/// How long the waker waits for the threads to start, or for the probe to answer.
const DEADLINE: Duration = Duration::from_secs(10);

/// The model of `subject` (many-to-many: one worker per core).
fn model(subject: Subject) -> io::Result<Model> {
    Ok(match subject {
        Subject::ManyToOne => Model::ManyToOne,
        Subject::ManyToMany => Model::many_to_many_per_core(),
        Subject::OneToOne => Model::OneToOne,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the latency experiment does not measure {}", subject.name()),
            ))
        }
    })
}

/// How `subject` appears in the figures.
fn label(subject: Subject, model: Model) -> String {
    match model {
        Model::ManyToMany { workers } => format!("{} ({workers} workers)", subject.name()),
        _ => subject.name().to_string(),
    }
}

/// A spinner: computes until `stop`, calling `checkpoint` between small blocks of work.
fn spin(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..256 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
        std::hint::black_box(x);
        spindle::checkpoint();
    }
    x
}

/// The waker: once the probe and the spinners have all started, takes `samples` samples
/// and then stops everything (also when it fails).
fn waker(
    samples: usize,
    threads: u64,
    started: &AtomicU64,
    stop: &AtomicBool,
    wake: spindle::channel::Sender<Instant>,
    answers: mpsc::Receiver<Duration>,
) -> io::Result<Vec<Duration>> {
    let take = || -> io::Result<Vec<Duration>> {
        let deadline = Instant::now() + DEADLINE;
        while started.load(Ordering::Acquire) < threads {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "only {} of {threads} threads started within {DEADLINE:?}",
                    started.load(Ordering::Acquire)
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut out = Vec::with_capacity(samples);
        for i in 0..samples {
            // 1 to 3 ms, varied so that the wakes do not fall in step with the slices.
            std::thread::sleep(Duration::from_micros(1000 + (i as u64 * 7_919) % 2000));
            wake.send(Instant::now())
                .map_err(|_| io::Error::other("the probe thread exited early"))?;
            out.push(answers.recv_timeout(DEADLINE).map_err(|_| {
                io::Error::other(format!("the probe did not run within {DEADLINE:?}"))
            })?);
        }
        Ok(out)
    };
    let out = take();
    stop.store(true, Ordering::Relaxed);
    drop(wake);
    out
}

/// Takes `samples` wake-to-run samples of a probe beside `spinners` spinners on `model`.
fn measure(model: Model, spinners: u64, samples: usize) -> io::Result<Vec<Duration>> {
    let rt = Runtime::builder().model(model).time_slice(SLICE).build()?;
    let started = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (wake, woken) = spindle::channel::unbounded::<Instant>();
    let (answer, answers) = mpsc::channel::<Duration>();
    let waker = {
        let (started, stop) = (started.clone(), stop.clone());
        std::thread::Builder::new()
            .name("latency-waker".into())
            .spawn(move || waker(samples, spinners + 1, &started, &stop, wake, answers))?
    };
    let ran = rt.block_on(move || -> io::Result<()> {
        let probe = {
            let started = started.clone();
            spindle::thread::Builder::new()
                .name("probe".into())
                .spawn(move || {
                    started.fetch_add(1, Ordering::Release);
                    while let Ok(sent) = woken.recv() {
                        if answer.send(sent.elapsed()).is_err() {
                            break;
                        }
                    }
                })?
        };
        let spinners: Vec<_> = (0..spinners)
            .map(|_| {
                let (started, stop) = (started.clone(), stop.clone());
                spindle::thread::Builder::new().spawn(move || {
                    started.fetch_add(1, Ordering::Release);
                    spin(&stop)
                })
            })
            .collect::<io::Result<_>>()?;
        probe
            .join()
            .map_err(|_| io::Error::other("the probe panicked"))?;
        for s in spinners {
            s.join()
                .map_err(|_| io::Error::other("a spinner panicked"))?;
        }
        Ok(())
    });
    let samples = waker
        .join()
        .map_err(|_| io::Error::other("the waker panicked"))?;
    ran?;
    samples
}

/// Measures `subjects` with 1 to `n` spinners (1 and 4 at most under `--quick`).
pub fn run(subjects: &[Subject], n: u64, quick: bool) -> io::Result<Vec<Figure>> {
    let counts: Vec<u64> = if quick {
        vec![1, n.min(4)]
    } else {
        let mut c: Vec<u64> = COUNTS.into_iter().filter(|&c| c <= n).collect();
        if c.last() != Some(&n) {
            c.push(n);
        }
        c
    };
    let samples = if quick { QUICK_SAMPLES } else { SAMPLES };
    let mut figures = Vec::new();
    for &subject in subjects {
        let model = model(subject)?;
        let label = label(subject, model);
        for &spinners in counts.iter().collect::<std::collections::BTreeSet<_>>() {
            let mut lat = measure(model, spinners, samples).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("latency on {label}, {spinners} spinners: {e}"),
                )
            })?;
            lat.sort();
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            figures.push(Figure::new(
                EXPERIMENT,
                &label,
                MEDIAN_METRIC,
                us(lat[lat.len() / 2]),
                "µs",
                spinners,
            ));
            figures.push(Figure::new(
                EXPERIMENT,
                &label,
                MAX_METRIC,
                us(*lat.last().expect("samples")),
                "µs",
                spinners,
            ));
        }
    }
    Ok(figures)
}
