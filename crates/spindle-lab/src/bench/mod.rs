//! The experiments. Each one measures its subjects in the same process, one after the
//! other, so that their figures can be compared as ratios on a shared, drifting machine.

pub mod accounting;
mod blocking;
pub mod blocking_cure;
pub mod creation;
mod go_peer;
mod handshake_floor;
pub mod http;
pub mod latency;
mod memory;
mod parallel;
mod peers;
mod pingpong;
mod skynet;
mod spawn;
pub mod switch;
pub mod sync;

use std::io;
use std::time::Duration;

use crate::figures::{table, Figure};

/// An experiment the lab can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Experiment {
    /// Cost of one yield: two threads giving way to each other in turn.
    Switch,
    /// Cost of spawning and joining a thread that does nothing.
    Spawn,
    /// N threads created, all alive at once, then joined: time, memory, kernel threads.
    Creation,
    /// Round trip of a message between two threads over a pair of channels.
    Pingpong,
    /// Memory of many threads parked at once, and the time to spawn them.
    Memory,
    /// Skynet: a tree of threads, ten children each, down to N leaves summed through join.
    Skynet,
    /// A matrix product split by rows over 1 to 16 threads: parallel speedup per model.
    Parallel,
    /// A green thread blocks in a raw read(2) for N ms: how long a 1 ms ticker stalls.
    Blocking,
    /// Wake-to-run latency of a thread beside N CPU-bound threads that call checkpoint().
    Latency,
    /// spindle's Mutex and channel against std's, crossbeam-channel's and tokio's:
    /// uncontended lock + unlock, channel throughput, 1,000 threads on one Mutex.
    Sync,
    /// CPU time per green thread as sampled: shares of three threads doing 1, 2 and 3
    /// units, the sum against getrusage, and the cost on a yield.
    Accounting,
    /// examples/http_hello against tokio, loaded by wrk: requests per second, latency.
    Http,
}

impl crate::cli::Choice for Experiment {
    const ALL: &'static [Experiment] = &Experiment::ALL;

    fn cli_name(self) -> &'static str {
        self.name()
    }

    fn help(self) -> &'static str {
        match self {
            Experiment::Switch => "cost of one yield, two threads giving way in turn",
            Experiment::Spawn => "cost of spawning and joining a thread that does nothing",
            Experiment::Creation => "N threads alive at once: time, memory, kernel threads",
            Experiment::Pingpong => "round trip of a message between two threads",
            Experiment::Memory => "memory of many parked threads, and the time to spawn them",
            Experiment::Skynet => "a tree of threads, ten children each, down to N leaves",
            Experiment::Parallel => "a matrix product over 1 to 16 threads: speedup per model",
            Experiment::Blocking => "a raw blocking read: how long a 1 ms ticker stalls",
            Experiment::Latency => "wake-to-run latency beside N CPU-bound threads",
            Experiment::Sync => "Mutex and channel against std, crossbeam and tokio",
            Experiment::Accounting => "CPU time per green thread: accuracy and cost",
            Experiment::Http => "examples/http_hello against tokio, loaded by wrk",
        }
    }
}

impl Experiment {
    pub const ALL: [Experiment; 12] = [
        Experiment::Switch,
        Experiment::Spawn,
        Experiment::Creation,
        Experiment::Pingpong,
        Experiment::Memory,
        Experiment::Skynet,
        Experiment::Parallel,
        Experiment::Blocking,
        Experiment::Latency,
        Experiment::Sync,
        Experiment::Accounting,
        Experiment::Http,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Experiment::Switch => "switch",
            Experiment::Spawn => "spawn",
            Experiment::Pingpong => "pingpong",
            Experiment::Memory => "memory",
            Experiment::Skynet => "skynet",
            Experiment::Parallel => "parallel",
            Experiment::Blocking => "blocking",
            Experiment::Creation => "creation",
            Experiment::Latency => "latency",
            Experiment::Sync => "sync",
            Experiment::Accounting => "accounting",
            Experiment::Http => "http",
        }
    }

    /// What the experiment shows, for the report.
    pub fn summary(self) -> &'static str {
        match self {
            Experiment::Switch => {
                "A green-thread yield is a user-space stack switch; a kernel-thread yield goes \
                 through the kernel scheduler (both kernel threads pinned to one core so they \
                 really alternate). The bare corosensei round trip is the floor; a second \
                 floor resumes two coroutines in turn from one call site, as a scheduler \
                 does, which costs more than one coroutine resumed again and again."
            }
            Experiment::Spawn => {
                "Spawning a green thread takes a recycled stack and one allocation; a kernel \
                 thread costs clone(2), a stack mapping and the scheduler."
            }
            Experiment::Creation => {
                "N threads created and all alive at once (each waits for a release: a spindle \
                 channel for spindle's threads, a std Mutex and Condvar for std's), then \
                 released and joined: time per thread, resident memory with all alive (VmRSS \
                 read from /proc/self/status at that moment, not the VmHWM peak, and its \
                 growth per thread) and kernel \
                 threads in use (entries of /proc/self/task). Green threads run on 16 KiB \
                 stacks, up to a million on one or two kernel threads; kernel threads keep \
                 their default stacks and meet the machine's limits long before: each takes \
                 four memory mappings (vm.max_map_count) and a pid (kernel.pid_max). The lab \
                 stops a margin short of the nearer limit (past the mapping limit a new std \
                 thread aborts the process) and the table says where and why."
            }
            Experiment::Pingpong => {
                "A message round trip: two channel operations and two switches each way."
            }
            Experiment::Memory => {
                "Many threads parked at once: resident memory per thread and time to spawn \
                 them. Green stacks are reserved, not committed, so a parked thread costs \
                 about one touched page; spindle populates that page for a batch of new \
                 stacks in one system call, so its spawns can beat the cost of faulting the \
                 pages in one by one. Before spindle spawns, one pass of first touches warms \
                 the memory (on a VM the host backs a page the first time the guest touches \
                 it, at several times the guest's own cost) and is reported apart; the floor \
                 is measured again after spindle's run."
            }
            Experiment::Skynet => {
                "Skynet: every thread spawns ten children down to N leaves and sums their \
                 results through join (1,111,111 threads for a million leaves): spawn, join \
                 and scheduling of short-lived threads at scale, against tokio's tasks doing \
                 the same. spindle's green threads run on 16 KiB stacks here; one-to-one \
                 runs only when asked, on at most 10,000 leaves."
            }
            Experiment::Parallel => {
                "An N x N f64 matrix product split by rows over T threads: many-to-one runs \
                 every block on its one kernel thread and cannot speed up, while many-to-many, \
                 one-to-one and std threads spread the blocks over the cores."
            }
            Experiment::Blocking => {
                "A green thread blocks for N ms in a raw read(2) on a pipe while a ticker \
                 thread sleeps 1 ms in a loop: in many-to-one, or on the blocker's own \
                 many-to-many worker, the ticker stops for the whole call unless migration \
                 hands the stuck worker to a new kernel thread once the monitor notices the \
                 stall (threshold 10 ms), while a ticker on the other worker or in one-to-one \
                 keeps ticking. The notes quote the first stall event each runtime's monitor \
                 recorded. The cure, in many-to-one: the same N ms waited through spindle \
                 (spindle::sleep, a pipe read through wait_readable, unblock of a std sleep) \
                 leaves the ticker's gaps at the machine's timer noise, measured beside it on \
                 a kernel thread (target: at most 10 ms)."
            }
            Experiment::Latency => {
                "N CPU-bound threads compute and call spindle::checkpoint() in their loop (time \
                 slice 1 ms here, instead of the default 10 ms) while a kernel thread outside \
                 the runtime wakes a probe thread over a channel every 1 to 3 ms: the time from \
                 the wake until the probe runs. A woken green thread waits behind the spinners \
                 queued on its worker, so in many-to-one the wait grows with N slices and in \
                 many-to-many (one worker per core) with N / cores; in one-to-one the kernel \
                 preempts the spinners and the time slice does not apply."
            }
            Experiment::Sync => {
                "spindle's Mutex and bounded channel against std's, crossbeam-channel's and \
                 tokio's, in three parts. Uncontended lock + unlock of a Mutex guarding a \
                 counter, N times: spindle's from a many-to-one green thread and from a plain \
                 kernel thread, std's, and tokio's (lock().await on a current-thread \
                 runtime). Channel throughput, N messages through a channel of capacity 128 \
                 from a producer to a consumer that sums them: spindle's between two \
                 many-to-one green threads, crossbeam-channel's and std's sync_channel \
                 between two kernel threads, tokio's mpsc between two current-thread tasks; \
                 before each run, on the thread that runs it, a host probe (a loop shaped \
                 like a send, no spindle code) is timed, and the notes give its readings: \
                 a VM whose host sometimes slows such loops slows spindle's channel with \
                 them. Beside them a floor: the same messages through 128 slots under the \
                 biased lock's owner path alone, no channel, on spindle's kernel thread: \
                 an upper bound for any channel that takes that lock per operation. \
                 Contention, 1,000 threads (100 with --quick) each adding 1 to one counter \
                 under one Mutex 10,000 times (1,000): green threads in \
                 many-to-many (a worker per core) with spindle's Mutex, kernel threads with \
                 std's, kernel threads (one-to-one) with spindle's, all on 64 KiB stacks, \
                 timed from the first spawn to the last join, the count checked. The \
                 ratios carry the targets: spindle / std lock + unlock at most 1.5, spindle \
                 / crossbeam-channel throughput at least 5, many-to-many / kernel threads' \
                 contention time below 1."
            }
            Experiment::Accounting => {
                "CPU time per green thread as spindle samples it (a CPU-time timer per \
                 worker, one sample per millisecond of CPU, charged to the green thread \
                 running then). Accuracy: three CPU-bound many-to-one green threads do 1, 2 \
                 and 3 units of N iterations each, interleaved, and report their CPU times: \
                 each share should be within 5 points of 1/6, 2/6 and 3/6, and their sum \
                 within 5% of the process's CPU time from getrusage. Overhead: a yield \
                 ping-pong on a runtime with accounting on against one with it off, \
                 alternately in this process: at most 1.3x."
            }
            Experiment::Http => {
                "A minimal HTTP/1.1 keep-alive server answering every request with a fixed \
                 body, loaded by wrk (2 threads, 256 connections) for N seconds per server, \
                 in nine rounds (one under --quick), every other one in reverse order, so \
                 that each spindle server and its tokio baseline are loaded one right after \
                 the other; each figure is the median over the rounds, and each ratio the \
                 median of the rounds' ratios. spindle's is examples/http_hello (its \
                 server.rs compiled in), one green thread per connection, in many-to-one \
                 and in many-to-many with 2 workers; tokio's answers with the same request \
                 scanner and response, one task per connection, on a current-thread and a \
                 2-worker multi-thread runtime. wrk shares the machine's 2 cores with the \
                 server, so a server's requests per second also depend on how the kernel \
                 shares the cores out; the CPU time charged to the server's process per \
                 request (getrusage while wrk runs) is reported beside them. Targets: \
                 spindle many-to-one serves at least as many requests per second as tokio \
                 current-thread, and many-to-many at least as many as tokio multi-thread."
            }
        }
    }

    /// The subjects the experiment measures when none is named.
    pub fn subjects(self) -> &'static [Subject] {
        use Subject::*;
        match self {
            Experiment::Switch | Experiment::Pingpong => &[
                Corosensei,
                ManyToOne,
                TokioCurrentThread,
                May,
                Go,
                OneToOne,
                Std,
            ],
            Experiment::Spawn => &[ManyToOne, Go, OneToOne, Std],
            Experiment::Memory => &[ManyToOne, OneToOne],
            // Each subject runs in a child process of its own (skynet.rs), so the order no
            // longer shapes the figures; peers first all the same.
            Experiment::Skynet => &[TokioCurrentThread, TokioMultiThread, ManyToOne, ManyToMany],
            Experiment::Parallel => &[ManyToOne, ManyToMany, OneToOne, Std],
            // Each model runs each of its cases: with and without migration, and in
            // many-to-many with the ticker on the other worker or on the blocker's.
            Experiment::Blocking => &[ManyToOne, ManyToMany, OneToOne],
            // Kernel threads first: the green runs leave memory and mappings behind (the
            // allocator's, the stack arenas'), which would move the kernel threads' limit.
            Experiment::Creation => &[OneToOne, Std, ManyToOne, ManyToMany],
            Experiment::Latency => &[ManyToOne, ManyToMany, OneToOne],
            // Every part measures the subjects it concerns: the Mutex pairs and the channels
            // many-to-one, std threads (spindle's Mutex on a plain kernel thread among them)
            // and tokio current-thread; the contention many-to-many, std threads and
            // one-to-one.
            Experiment::Sync => &[ManyToOne, Std, TokioCurrentThread, ManyToMany, OneToOne],
            Experiment::Accounting => &[ManyToOne],
            // Each baseline right before its spindle counterpart.
            Experiment::Http => &[TokioCurrentThread, ManyToOne, TokioMultiThread, ManyToMany],
        }
    }

    /// The subjects the experiment measures only when one is named with `--model`.
    pub fn subjects_on_request(self) -> &'static [Subject] {
        match self {
            // Kernel threads cannot run a million-leaf tree; skynet runs them on a smaller
            // one, and only when asked.
            Experiment::Skynet => &[Subject::OneToOne],
            _ => &[],
        }
    }

    /// Whether the experiment can measure `subject` when it is named with `--model`.
    fn measures(self, subject: Subject) -> bool {
        self.subjects().contains(&subject) || self.subjects_on_request().contains(&subject)
    }

    /// Whether the report adds ratios against many-to-one to the figures; the experiments
    /// that make their own ratios (or have none that mean anything) say no.
    pub fn ratios_in_report(self) -> bool {
        matches!(
            self,
            Experiment::Switch | Experiment::Spawn | Experiment::Pingpong
        )
    }

    /// The default size: operations (or threads) per measurement; blocking: milliseconds
    /// the blocking call lasts; creation: the most green threads (kernel threads: at most
    /// 50,000); latency: the most CPU-bound threads; sync: lock + unlock pairs and messages
    /// (the contention's size is fixed).
    pub fn default_n(self, quick: bool) -> u64 {
        match (self, quick) {
            (Experiment::Switch, false) => 2_000_000,
            (Experiment::Switch, true) => 50_000,
            (Experiment::Spawn, false) => 200_000,
            (Experiment::Spawn, true) => 5_000,
            (Experiment::Pingpong, false) => 500_000,
            (Experiment::Pingpong, true) => 10_000,
            (Experiment::Memory, false) => 1_000_000,
            (Experiment::Memory, true) => 20_000,
            (Experiment::Skynet, false) => 1_000_000,
            (Experiment::Skynet, true) => 10_000,
            (Experiment::Parallel, false) => 1000,
            (Experiment::Parallel, true) => 200,
            (Experiment::Blocking, false) => 500,
            (Experiment::Blocking, true) => 100,
            (Experiment::Creation, false) => 1_000_000,
            (Experiment::Creation, true) => 1_000,
            (Experiment::Latency, false) => 16,
            (Experiment::Latency, true) => 4,
            (Experiment::Sync, false) => 2_000_000,
            (Experiment::Sync, true) => 100_000,
            // Iterations of one unit of work (about 0.1 s here; six units per run).
            (Experiment::Accounting, false) => 100_000_000,
            (Experiment::Accounting, true) => 40_000_000,
            // Seconds of load per server.
            (Experiment::Http, false) => 2,
            (Experiment::Http, true) => 1,
        }
    }

    /// Runs the experiment for `subject` (its usual subjects when `None`) at size `n`;
    /// `quick` also shortens what `n` does not set (runs, thread counts).
    pub fn run(self, subject: Option<Subject>, n: u64, quick: bool) -> io::Result<Vec<Figure>> {
        let subjects: Vec<Subject> = match subject {
            Some(s) if self.measures(s) => vec![s],
            Some(s) => {
                let known: Vec<&str> = self
                    .subjects()
                    .iter()
                    .chain(self.subjects_on_request())
                    .map(|s| s.name())
                    .collect();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the {} experiment does not measure {}; it measures: {}",
                        self.name(),
                        s.name(),
                        known.join(", ")
                    ),
                ));
            }
            None => self.subjects().to_vec(),
        };
        // The experiments that compare their subjects (ratios, speedups) take them all at
        // once; the others measure one subject at a time.
        let run_subject: fn(Subject, u64) -> io::Result<Vec<Figure>> = match self {
            Experiment::Switch => switch::run,
            Experiment::Spawn => spawn::run,
            Experiment::Pingpong => pingpong::run,
            Experiment::Memory => memory::run,
            Experiment::Skynet => return skynet::run(&subjects, n, quick),
            Experiment::Parallel => return parallel::run(&subjects, n, quick),
            Experiment::Blocking => return blocking::run(&subjects, n),
            Experiment::Creation => return creation::run(&subjects, n),
            Experiment::Latency => return latency::run(&subjects, n, quick),
            Experiment::Sync => return sync::run(&subjects, n, quick),
            Experiment::Accounting => return accounting::run(&subjects, n, quick),
            Experiment::Http => return http::run(&subjects, n, quick),
        };
        let mut figures = Vec::new();
        for s in subjects {
            figures.extend(run_subject(s, n)?);
        }
        Ok(figures)
    }
}

/// What an experiment measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// spindle, many-to-one model.
    ManyToOne,
    /// spindle, one-to-one model.
    OneToOne,
    /// Plain `std::thread`s (and std's channels).
    Std,
    /// A bare corosensei coroutine: the floor for a user-space switch.
    Corosensei,
    /// spindle, many-to-many model (the worker count is the experiment's choice).
    ManyToMany,
    /// tokio's current-thread runtime: async tasks on one kernel thread.
    TokioCurrentThread,
    /// tokio's multi-thread runtime: async tasks on a pool of workers.
    TokioMultiThread,
    /// may's stackful coroutines, on one worker (the switch and pingpong peers).
    May,
    /// Go's goroutines with GOMAXPROCS=1, when a `go` toolchain is on PATH.
    Go,
}

impl crate::cli::Choice for Subject {
    const ALL: &'static [Subject] = &[
        Subject::ManyToOne,
        Subject::OneToOne,
        Subject::Std,
        Subject::Corosensei,
        Subject::ManyToMany,
        Subject::TokioCurrentThread,
        Subject::TokioMultiThread,
        Subject::May,
        Subject::Go,
    ];

    fn cli_name(self) -> &'static str {
        match self {
            Subject::ManyToOne => "many-to-one",
            Subject::OneToOne => "one-to-one",
            Subject::Std => "std",
            Subject::Corosensei => "corosensei",
            Subject::ManyToMany => "many-to-many",
            Subject::TokioCurrentThread => "tokio-current-thread",
            Subject::TokioMultiThread => "tokio-multi-thread",
            Subject::May => "may",
            Subject::Go => "go",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Subject::ManyToOne => "spindle, many-to-one model",
            Subject::OneToOne => "spindle, one-to-one model",
            Subject::Std => "plain std threads (and std's channels)",
            Subject::Corosensei => "a bare corosensei coroutine: the floor for a switch",
            Subject::ManyToMany => "spindle, many-to-many model",
            Subject::TokioCurrentThread => "tokio's current-thread runtime",
            Subject::TokioMultiThread => "tokio's multi-thread runtime",
            Subject::May => "may's coroutines on one worker",
            Subject::Go => "Go's goroutines, GOMAXPROCS=1, when go is on PATH",
        }
    }
}

impl Subject {
    pub fn name(self) -> &'static str {
        match self {
            Subject::ManyToOne => "spindle many-to-one",
            Subject::OneToOne => "spindle one-to-one",
            Subject::Std => "std threads",
            Subject::Corosensei => "bare corosensei",
            Subject::ManyToMany => "spindle many-to-many",
            Subject::TokioCurrentThread => "tokio current-thread",
            Subject::TokioMultiThread => "tokio multi-thread",
            Subject::May => "may (1 worker)",
            Subject::Go => "Go (GOMAXPROCS=1)",
        }
    }

    /// The spindle runtime for this subject, if it is one (many-to-many: one worker per
    /// core).
    pub fn runtime(self, stack_size: Option<usize>) -> io::Result<Option<spindle::Runtime>> {
        let model = match self {
            Subject::ManyToOne => spindle::Model::ManyToOne,
            Subject::OneToOne => spindle::Model::OneToOne,
            Subject::ManyToMany => spindle::Model::many_to_many_per_core(),
            _ => return Ok(None),
        };
        build_runtime(model, stack_size).map(Some)
    }
}

/// The Go peer's figure for `experiment` (`operation` in the Go program), or a skipped
/// figure saying why Go cannot be measured here.
fn go_figure(experiment: &str, metric: &str, operation: &str, n: u64) -> io::Result<Vec<Figure>> {
    let subject = Subject::Go.name();
    if let Some(why) = go_peer::unavailable() {
        return Ok(vec![Figure::skipped(experiment, subject, metric, why, n)]);
    }
    let ns = go_peer::median_ns(operation, n, 3)?;
    Ok(vec![Figure::new(experiment, subject, metric, ns, "ns", n)])
}

/// Builds a spindle runtime for `model`, with green stacks of `stack_size` bytes if given.
pub fn build_runtime(
    model: spindle::Model,
    stack_size: Option<usize>,
) -> io::Result<spindle::Runtime> {
    let mut b = spindle::Runtime::builder().model(model);
    if let Some(s) = stack_size {
        b = b.stack_size(s);
    }
    b.build()
}

/// User plus system CPU time of the whole process.
pub fn process_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of the C struct, filled in by the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to write to.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(
        rc, 0,
        "getrusage(RUSAGE_SELF) cannot fail with valid arguments"
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The median of `values` (the upper one of an even count); `values` is not empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The lowest and the highest of `values` (`(f64::MAX, f64::MIN)` when there are none).
pub fn low_high(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::MAX, f64::MIN), |(low, high), v| {
            (low.min(v), high.max(v))
        })
}

/// Nanoseconds per operation: the median of `runs` timed runs of `ops` operations each.
pub fn ns_per_op(runs: usize, ops: u64, mut timed_run: impl FnMut() -> Duration) -> f64 {
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| timed_run().as_nanos() as f64 / ops as f64)
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Pins the calling kernel thread to one CPU (so two kernel threads really alternate).
pub fn pin_to_cpu(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    // Best effort: without pinning the figures are still valid, only less comparable.
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

/// `spindle-lab bench NAME`.
pub fn run_one(
    e: Experiment,
    subject: Option<Subject>,
    n: Option<u64>,
    json: bool,
) -> io::Result<()> {
    let n = n.unwrap_or(e.default_n(false));
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--n must be at least 1",
        ));
    }
    let figures = e.run(subject, n, false)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&figures).map_err(io::Error::other)?
        );
    } else {
        println!("{}: {}\n", e.name(), e.summary());
        print!("{}", table(&figures));
    }
    Ok(())
}
