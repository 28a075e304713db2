//! The experiments. Each one measures its subjects in the same process, one after the
//! other, so that their figures can be compared as ratios on a shared, drifting machine.

mod memory;
mod pingpong;
mod spawn;
mod switch;

use std::io;
use std::time::Duration;

use clap::ValueEnum;

use crate::figures::{table, Figure};

/// An experiment the lab can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Experiment {
    /// Cost of one yield: two threads giving way to each other in turn.
    Switch,
    /// Cost of spawning and joining a thread that does nothing.
    Spawn,
    /// Round trip of a message between two threads over a pair of channels.
    Pingpong,
    /// Memory of many threads parked at once, and the time to spawn them.
    Memory,
}

impl Experiment {
    pub const ALL: [Experiment; 4] = [
        Experiment::Switch,
        Experiment::Spawn,
        Experiment::Pingpong,
        Experiment::Memory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Experiment::Switch => "switch",
            Experiment::Spawn => "spawn",
            Experiment::Pingpong => "pingpong",
            Experiment::Memory => "memory",
        }
    }

    /// What the experiment shows, for the report.
    pub fn summary(self) -> &'static str {
        match self {
            Experiment::Switch => {
                "A green-thread yield is a user-space stack switch; a kernel-thread yield goes \
                 through the kernel scheduler (both kernel threads pinned to one core so they \
                 really alternate). The bare corosensei round trip is the floor."
            }
            Experiment::Spawn => {
                "Spawning a green thread takes a recycled stack and one allocation; a kernel \
                 thread costs clone(2), a stack mapping and the scheduler."
            }
            Experiment::Pingpong => {
                "A message round trip: two channel operations and two switches each way."
            }
            Experiment::Memory => {
                "Many threads parked at once: resident memory per thread and time to spawn \
                 them. Green stacks are reserved, not committed, so a parked thread costs \
                 about one touched page."
            }
        }
    }

    /// The default size: operations (or threads) per measurement.
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
        }
    }

    /// Runs the experiment for `subjects` (all that apply when `None`).
    pub fn run(self, subject: Option<Subject>, n: u64) -> io::Result<Vec<Figure>> {
        let subjects: Vec<Subject> = match subject {
            Some(s) => vec![s],
            None => Subject::ALL.to_vec(),
        };
        let mut figures = Vec::new();
        for s in subjects {
            let found = match self {
                Experiment::Switch => switch::run(s, n)?,
                Experiment::Spawn => spawn::run(s, n)?,
                Experiment::Pingpong => pingpong::run(s, n)?,
                Experiment::Memory => memory::run(s, n)?,
            };
            figures.extend(found);
        }
        Ok(figures)
    }
}

/// What an experiment measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Subject {
    /// spindle, many-to-one model.
    ManyToOne,
    /// spindle, one-to-one model.
    OneToOne,
    /// Plain `std::thread`s (and std's channels).
    Std,
    /// A bare corosensei coroutine: the floor for a user-space switch.
    Corosensei,
}

impl Subject {
    pub const ALL: [Subject; 4] = [
        Subject::Corosensei,
        Subject::ManyToOne,
        Subject::OneToOne,
        Subject::Std,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Subject::ManyToOne => "spindle many-to-one",
            Subject::OneToOne => "spindle one-to-one",
            Subject::Std => "std threads",
            Subject::Corosensei => "bare corosensei",
        }
    }

    /// The spindle runtime for this subject, if it is one.
    pub fn runtime(self, stack_size: Option<usize>) -> io::Result<Option<spindle::Runtime>> {
        let model = match self {
            Subject::ManyToOne => spindle::Model::ManyToOne,
            Subject::OneToOne => spindle::Model::OneToOne,
            _ => return Ok(None),
        };
        let mut b = spindle::Runtime::builder().model(model);
        if let Some(s) = stack_size {
            b = b.stack_size(s);
        }
        b.build().map(Some)
    }
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
    let figures = e.run(subject, n)?;
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
