//! memory: many threads parked at once; resident and reserved memory per thread, and the
//! time it takes to spawn them.

use std::io;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Instant;

use super::Subject;
use crate::figures::Figure;

/// Stack size of the green threads in this experiment.
const GREEN_STACK: usize = 16 * 1024;

/// Kernel threads are capped: beyond a few thousand the machine's limits, not the model,
/// are measured.
const KERNEL_CAP: u64 = 5_000;

/// The process's memory as the kernel sees it.
#[derive(Clone, Copy)]
struct Usage {
    resident: u64,
    reserved: u64,
    mappings: u64,
}

fn usage() -> io::Result<Usage> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let mut fields = statm
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap_or(0));
    let page = rustix::param::page_size() as u64;
    let reserved = fields.next().unwrap_or(0) * page;
    let resident = fields.next().unwrap_or(0) * page;
    let mappings = std::fs::read_to_string("/proc/self/maps")?.lines().count() as u64;
    Ok(Usage {
        resident,
        reserved,
        mappings,
    })
}

struct Shared {
    parked: AtomicU64,
    release: AtomicBool,
}

/// What one run measured.
struct Outcome {
    spawn_secs: f64,
    all_parked_secs: f64,
    before: Usage,
    after: Usage,
}

/// Spawns `n` threads with `spawn`, each counting itself and parking until released.
fn park_many(n: u64) -> io::Result<Outcome> {
    let shared = Arc::new(Shared {
        parked: AtomicU64::new(0),
        release: AtomicBool::new(false),
    });
    let mut handles = Vec::with_capacity(n as usize);
    let before = usage()?;
    let start = Instant::now();
    for _ in 0..n {
        let s = shared.clone();
        let h = spindle::thread::Builder::new()
            .stack_size(GREEN_STACK)
            .spawn(move || {
                s.parked.fetch_add(1, Release);
                while !s.release.load(Acquire) {
                    spindle::park();
                }
            });
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.release.store(true, Release);
                for h in &handles {
                    h.thread().unpark();
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("spawning thread {} of {n} failed: {e}", handles.len() + 1),
                ));
            }
        }
    }
    let spawn_secs = start.elapsed().as_secs_f64();
    while shared.parked.load(Acquire) < n {
        spindle::yield_now();
    }
    let all_parked_secs = start.elapsed().as_secs_f64();
    let after = usage()?;
    shared.release.store(true, Release);
    for h in &handles {
        h.thread().unpark();
    }
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("a parked thread panicked"))?;
    }
    assert_eq!(shared.parked.load(Relaxed), n);
    Ok(Outcome {
        spawn_secs,
        all_parked_secs,
        before,
        after,
    })
}

pub fn run(subject: Subject, n: u64) -> io::Result<Vec<Figure>> {
    let (n, outcome) = match subject {
        Subject::Corosensei | Subject::Std => return Ok(Vec::new()),
        Subject::ManyToOne => {
            let rt = subject
                .runtime(Some(GREEN_STACK))?
                .expect("a spindle subject");
            (n, rt.block_on(|| park_many(n))?)
        }
        Subject::OneToOne => {
            let n = n.min(KERNEL_CAP);
            let rt = subject.runtime(None)?.expect("a spindle subject");
            (n, rt.block_on(|| park_many(n))?)
        }
    };
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / n as f64 / 1024.0;
    let name = subject.name();
    Ok(vec![
        Figure::new(
            "memory",
            name,
            "resident per parked thread",
            per(outcome.before.resident, outcome.after.resident),
            "KiB",
            n,
        ),
        Figure::new(
            "memory",
            name,
            "reserved per parked thread",
            per(outcome.before.reserved, outcome.after.reserved),
            "KiB",
            n,
        ),
        Figure::new(
            "memory",
            name,
            "mappings added",
            outcome
                .after
                .mappings
                .saturating_sub(outcome.before.mappings) as f64,
            "mappings",
            n,
        ),
        Figure::new(
            "memory",
            name,
            "time to spawn all",
            outcome.spawn_secs * 1000.0,
            "ms",
            n,
        ),
        Figure::new(
            "memory",
            name,
            "time until all parked",
            outcome.all_parked_secs * 1000.0,
            "ms",
            n,
        ),
    ])
}
