//! blocking: the blocking-call catastrophe of user-level threads, and its cure.
//!
//! A green thread that makes a raw blocking system call holds its worker's kernel thread,
//! and with it every other green thread queued on that worker: the classic objection to
//! many-to-one threading. This experiment makes the call and watches a bystander:
//!
//! 1. A plain std kernel thread outside the runtime (the *writer*) waits for a go.
//! 2. A green thread (the *blocker*) spawns a *ticker*, which sleeps 1 ms
//!    (`spindle::sleep`) in a loop and records the `Instant` of every wakeup, and places
//!    it: on the blocker's own worker, on the other worker, or wherever the runtime puts
//!    it (one worker, or kernel threads). It waits until the ticker has ticked once.
//! 3. The blocker sends the go and calls libc `read` on an empty pipe. The writer sleeps
//!    for the block duration (`std::thread::sleep`: the experiment's load) and writes one
//!    byte, which ends the read.
//! 4. The blocker stops the ticker (an `AtomicBool`) and joins it; the runtime's stall
//!    events are read after `block_on` returns.
//!
//! The figures: the ticker's longest gap between consecutive wakeups, how many wakeups
//! fell inside the read, the time the read took, the gap as a fraction of that time, and
//! the stall events the runtime's monitor recorded (the first one's own words go in a note).
//!
//! Placing the ticker: started green threads never change workers (without migration);
//! only threads that never ran are stolen by idle workers. So, for the *same* worker, the
//! blocker spawns the ticker and yields until it reports where it started; a ticker that
//! an idle worker stole exits at once and the blocker tries again. For the *other* worker,
//! the blocker blocks its own kernel thread in a std `mpsc` receive until the ticker
//! reports: its own worker cannot start it meanwhile, so the idle one steals it.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use spindle::runtime::StallEvent;
use spindle::{JoinHandle, Model, Runtime};

use super::Subject;
use crate::figures::Figure;

const EXPERIMENT: &str = "blocking";

/// The ticker's sleep.
const TICK: Duration = Duration::from_millis(1);

/// Workers of the many-to-many cases: two, so "the other worker" is one worker.
const WORKERS: usize = 2;

/// Tickers the blocker may spawn before one starts on its worker.
const PLACEMENT_ATTEMPTS: usize = 1000;

/// How long the blocker waits for the ticker to report, or to tick, before it gives up.
const TICKER_DEADLINE: Duration = Duration::from_secs(10);

/// Where the ticker runs, relative to the blocker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Wherever the runtime starts it: the one worker of many-to-one, or a kernel thread
    /// of its own in one-to-one.
    Anywhere,
    /// On the blocker's own worker of a many-to-many runtime.
    SameWorker,
    /// On the other worker of a many-to-many runtime.
    OtherWorker,
}

/// One configuration the experiment measures.
#[derive(Clone, Copy, Debug)]
struct Case {
    subject: Subject,
    model: Model,
    /// Whether the runtime may move started threads off a stuck worker.
    migrate: bool,
    placement: Placement,
}

impl Case {
    /// The configurations of `subject`, in the order the report shows them.
    fn of(subject: Subject) -> io::Result<Vec<Case>> {
        let case = |model, migrate, placement| Case {
            subject,
            model,
            migrate,
            placement,
        };
        let pool = Model::ManyToMany { workers: WORKERS };
        Ok(match subject {
            Subject::ManyToOne => vec![
                case(Model::ManyToOne, false, Placement::Anywhere),
                case(Model::ManyToOne, true, Placement::Anywhere),
            ],
            Subject::ManyToMany => vec![
                case(pool, false, Placement::OtherWorker),
                case(pool, false, Placement::SameWorker),
                case(pool, true, Placement::SameWorker),
            ],
            Subject::OneToOne => vec![case(Model::OneToOne, false, Placement::Anywhere)],
            Subject::Std
            | Subject::Corosensei
            | Subject::TokioCurrentThread
            | Subject::TokioMultiThread
            | Subject::May
            | Subject::Go => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the blocking experiment does not measure {}",
                        subject.name()
                    ),
                ))
            }
        })
    }

    /// How the case appears in the figures.
    fn label(&self) -> String {
        let mut label = self.subject.name().to_string();
        if let Model::ManyToMany { workers } = self.model {
            label.push_str(&format!(" ({workers} workers)"));
        }
        match self.placement {
            Placement::Anywhere => {}
            Placement::SameWorker => label.push_str(", ticker on same worker"),
            Placement::OtherWorker => label.push_str(", ticker on other worker"),
        }
        if self.migrate {
            label.push_str(", migration on");
        }
        label
    }

    /// The case's runtime.
    fn runtime(&self) -> io::Result<Runtime> {
        let builder = Runtime::builder().model(self.model);
        let builder = if self.migrate {
            // SAFETY: no green thread of this experiment holds a borrow of std thread-local
            // storage (or a std `MutexGuard`, or a `!Send` value from a thread-local) across
            // a switch: the blocker and the ticker share only `Arc`ed atomics and std
            // channel ends, which are `Send` and tied to no kernel thread, and every std
            // call they make (`Instant::now`, channel operations, `read`) returns before
            // they switch.
            unsafe { builder.migrate_started_threads(true) }
        } else {
            builder
        };
        builder.build()
    }
}

/// What one run of a case saw.
struct Run {
    /// The ticker's wakeups, in order.
    wakeups: Vec<Instant>,
    /// When the blocking read began and ended.
    read_start: Instant,
    read_end: Instant,
}

impl Run {
    /// The longest time between two consecutive wakeups of the ticker.
    fn longest_gap(&self) -> Duration {
        self.wakeups
            .windows(2)
            .map(|w| w[1].saturating_duration_since(w[0]))
            .max()
            .unwrap_or_default()
    }

    /// The ticker's wakeups while the blocker was inside the read.
    fn ticks_during_block(&self) -> usize {
        self.wakeups
            .iter()
            .filter(|&&t| t > self.read_start && t < self.read_end)
            .count()
    }

    /// How long the read blocked.
    fn block(&self) -> Duration {
        self.read_end.saturating_duration_since(self.read_start)
    }
}

/// A pipe: its read end and its write end, both close-on-exec.
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2(2) to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot create a pipe: {e}"),
        ));
    }
    // SAFETY: pipe2(2) succeeded, so both are open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The raw blocking call: reads one byte from `fd` with libc `read`, which blocks the
/// calling kernel thread until the byte arrives.
fn raw_read(fd: &OwnedFd) -> io::Result<()> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into `byte`, a valid one-byte buffer, from a
        // descriptor that `fd` keeps open.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
        match n {
            1 => return Ok(()),
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the pipe was closed before the writer wrote to it",
                ))
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("read from the pipe failed: {e}"),
                    ));
                }
            }
        }
    }
}

/// The writer, on a std kernel thread outside the runtime: once told to go, sleeps for
/// `block` and writes one byte into `w`. Does nothing if the blocker gave up before.
fn write_after(go: mpsc::Receiver<()>, w: OwnedFd, block: Duration) -> io::Result<()> {
    if go.recv().is_err() {
        return Ok(());
    }
    std::thread::sleep(block);
    File::from(w).write_all(b"x").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("the writer could not write to the pipe: {e}"),
        )
    })
}

/// A ticking ticker.
struct Ticker {
    handle: JoinHandle<Vec<Instant>>,
    stop: Arc<AtomicBool>,
}

impl Ticker {
    /// Stops the ticker and returns its wakeups: at least one before the stop was seen
    /// and the one after which it saw it.
    fn finish(self) -> io::Result<Vec<Instant>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| io::Error::other("the ticker thread panicked"))
    }
}

/// The ticker's body. It reports the worker it started on (`None` on a kernel thread)
/// first thing, and exits at once if that is not `only_on`; otherwise it sleeps [`TICK`]
/// in a loop, recording each wakeup, until `stop` is set.
fn tick(
    only_on: Option<Option<usize>>,
    report: mpsc::Sender<Option<usize>>,
    ticked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Vec<Instant> {
    let mine = spindle::runtime::worker_index();
    // The blocker may have given up already; then nobody needs the answer.
    let _ = report.send(mine);
    if only_on.is_some_and(|w| w != mine) {
        return Vec::new();
    }
    let mut wakeups = Vec::with_capacity(1024);
    loop {
        spindle::sleep(TICK);
        wakeups.push(Instant::now());
        // Flags only, no data rides on them: relaxed suffices.
        ticked.store(true, Ordering::Relaxed);
        if stop.load(Ordering::Relaxed) {
            return wakeups;
        }
    }
}

/// Waits, yielding, for `what` to hold, at most [`TICKER_DEADLINE`].
fn yield_until(mut what: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TICKER_DEADLINE;
    while !what() {
        if Instant::now() > deadline {
            return false;
        }
        spindle::yield_now();
    }
    true
}

/// Starts the ticker where `placement` says, relative to the calling green thread, and
/// returns it once it has ticked.
fn start_ticker(placement: Placement) -> io::Result<Ticker> {
    let me = spindle::runtime::worker_index();
    for _ in 0..PLACEMENT_ATTEMPTS {
        let (report, landed) = mpsc::channel();
        let ticked = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let only_on = (placement == Placement::SameWorker).then_some(me);
        let handle = spindle::thread::Builder::new()
            .name("ticker".into())
            .spawn({
                let (ticked, stop) = (ticked.clone(), stop.clone());
                move || tick(only_on, report, ticked, stop)
            })?;
        let landed = match placement {
            // Block this worker's kernel thread until the ticker reports: its own worker
            // cannot start it meanwhile, so only the other (idle) worker can, by stealing.
            Placement::OtherWorker => landed.recv().ok(),
            // Yield, so that this worker can start the ticker too.
            Placement::SameWorker | Placement::Anywhere => {
                let mut got = None;
                yield_until(|| match landed.try_recv() {
                    Ok(w) => {
                        got = Some(w);
                        true
                    }
                    Err(mpsc::TryRecvError::Empty) => false,
                    Err(mpsc::TryRecvError::Disconnected) => true,
                });
                got
            }
        };
        let ticker = Ticker { handle, stop };
        let Some(landed) = landed else {
            ticker.finish()?;
            return Err(io::Error::other(
                "the ticker never reported which worker it started on",
            ));
        };
        if placement == Placement::SameWorker && landed != me {
            // Stolen by the other worker before this one started it: it has exited.
            ticker.finish()?;
            continue;
        }
        if placement == Placement::OtherWorker && landed == me {
            ticker.finish()?;
            return Err(io::Error::other(format!(
                "the ticker started on the blocker's worker {me:?} although that \
                 worker's kernel thread was blocked"
            )));
        }
        if !yield_until(|| ticked.load(Ordering::Relaxed)) {
            ticker.finish()?;
            return Err(io::Error::other(format!(
                "the ticker did not tick within {TICKER_DEADLINE:?}"
            )));
        }
        return Ok(ticker);
    }
    Err(io::Error::other(format!(
        "none of {PLACEMENT_ATTEMPTS} tickers started on the blocker's worker \
         {me:?}: the idle worker stole every one"
    )))
}

/// The blocker's body: places and starts the ticker, tells the writer to go, blocks in
/// the raw read until the writer writes, then stops the ticker.
fn blocker(placement: Placement, r: OwnedFd, go: mpsc::Sender<()>) -> io::Result<Run> {
    let ticker = start_ticker(placement)?;
    if go.send(()).is_err() {
        ticker.finish()?;
        return Err(io::Error::other(
            "the writer thread exited before it was told to go",
        ));
    }
    let read_start = Instant::now();
    let read = raw_read(&r);
    let read_end = Instant::now();
    let wakeups = ticker.finish()?;
    read?;
    Ok(Run {
        wakeups,
        read_start,
        read_end,
    })
}

/// Runs `case` once on `rt` with a block of `block`: what the ticker saw, and the stall
/// events the runtime recorded.
fn measure(rt: &Runtime, case: &Case, block: Duration) -> io::Result<(Run, Vec<StallEvent>)> {
    let (r, w) = pipe()?;
    let (go, wait_for_go) = mpsc::channel();
    let writer = std::thread::Builder::new()
        .name("blocking-writer".into())
        .spawn(move || write_after(wait_for_go, w, block))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start the writer thread: {e}")))?;
    let placement = case.placement;
    let run = rt.block_on(move || {
        let blocker = spindle::thread::Builder::new()
            .name("blocker".into())
            .spawn(move || blocker(placement, r, go))?;
        blocker
            .join()
            .map_err(|_| io::Error::other("the blocker thread panicked"))?
    });
    // The writer ends either way: it wrote, or its go sender was dropped with the blocker.
    let written = writer
        .join()
        .map_err(|_| io::Error::other("the writer thread panicked"))?;
    let run = run?;
    written?;
    Ok((run, rt.stall_events()))
}

/// The figures of `case`: measured, or one skipped figure if its runtime fails to build.
fn figures(case: &Case, block: Duration, n: u64) -> io::Result<Vec<Figure>> {
    let label = case.label();
    let gap_metric = "longest gap between ticks (1 ms sleeps)";
    let rt = match case.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            return Ok(vec![Figure::skipped(
                EXPERIMENT,
                &label,
                gap_metric,
                &format!("runtime failed to build: {e}"),
                n,
            )])
        }
    };
    let (run, stalls) = measure(&rt, case, block)
        .map_err(|e| io::Error::new(e.kind(), format!("blocking on {label}: {e}")))?;
    drop(rt);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let gap = run.longest_gap();
    let mut stall_figure = Figure::new(
        EXPERIMENT,
        &label,
        "stall events recorded",
        stalls.len() as f64,
        "events",
        n,
    );
    if let Some(first) = stalls.first() {
        stall_figure = stall_figure.with_note(format!("first stall event: {first}"));
    }
    Ok(vec![
        Figure::new(EXPERIMENT, &label, gap_metric, ms(gap), "ms", n),
        Figure::new(
            EXPERIMENT,
            &label,
            "ticks during the block",
            run.ticks_during_block() as f64,
            "ticks",
            n,
        ),
        Figure::new(
            EXPERIMENT,
            &label,
            "time blocked in read(2)",
            ms(run.block()),
            "ms",
            n,
        ),
        Figure::new(
            EXPERIMENT,
            &label,
            "longest gap / time blocked",
            100.0 * gap.as_secs_f64() / run.block().as_secs_f64(),
            "%",
            n,
        ),
        stall_figure,
    ])
}

/// Measures every case of `subjects`, one after the other, with a block of `n` ms.
pub fn run(subjects: &[Subject], n: u64) -> io::Result<Vec<Figure>> {
    let block = Duration::from_millis(n);
    let mut out = Vec::new();
    for &subject in subjects {
        for case in Case::of(subject)? {
            out.extend(figures(&case, block, n)?);
        }
    }
    // The cure: the same wait made through spindle (many-to-one, where a raw call hurts
    // most), against a kernel thread's timer noise.
    if subjects.contains(&Subject::ManyToOne) {
        out.extend(super::blocking_cure::figures(block, n)?);
    }
    Ok(out)
}
