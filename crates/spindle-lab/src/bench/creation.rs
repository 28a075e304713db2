//! creation: N threads created, all alive at once, then released and joined.
//!
//! Every thread counts itself as started and waits for a release: spindle's threads on a
//! spindle channel that never carries a message (dropping its only sender releases them
//! all), std's on a std `Mutex<bool>` and `Condvar`. Once all N have started, the lab reads
//! the process's resident memory (VmRSS from /proc/self/status, at that moment: not VmHWM,
//! which would keep the peak of earlier runs) and counts its kernel threads (entries of
//! /proc/self/task), then releases and joins them all. The time covers all of it, from the
//! first spawn to the last join, divided by N.
//!
//! Kernel threads meet the machine's limits long before green threads do: each takes a
//! pid (kernel.pid_max is system-wide) and four memory mappings (vm.max_map_count is per
//! process): its stack and guard page, and the signal stack and guard page std gives every
//! thread it starts. A spawn that fails ends the run with the error in the table. But the
//! lab does not run into these limits on purpose: past the mapping limit a new std thread
//! that cannot map its signal stack aborts the whole process, and taking the system's last
//! pids would make every other process's fork fail for a moment. So a run stops a margin
//! short of the nearer limit, and the table says where and which limit.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{build_runtime, Subject};
use crate::figures::Figure;

const EXPERIMENT: &str = "creation";

/// The time figure's metric.
pub const TIME_METRIC: &str = "µs per thread (create, all alive, release, join)";
/// The memory figure's metric.
pub const MEMORY_METRIC: &str = "resident memory with all alive (VmRSS)";
/// The per-thread memory figure's metric.
pub const GROWTH_METRIC: &str = "resident per thread (VmRSS growth / N)";
/// The kernel-thread figure's metric.
pub const TASKS_METRIC: &str = "kernel threads in use with all alive (/proc/self/task)";

/// Stack size of the green threads.
const GREEN_STACK: usize = 16 * 1024;

/// Thread counts for kernel threads.
const KERNEL_SIZES: [u64; 6] = [100, 1_000, 5_000, 10_000, 20_000, 50_000];

/// Runs of a size up to this many threads; the fastest counts (a small run is easily
/// disturbed by the kernel still reaping the threads of the one before).
const SMALL_RUN: u64 = 5_000;
const SMALL_RUNS: usize = 3;

/// Thread counts for green threads.
const GREEN_SIZES: [u64; 8] = [
    100, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000, 1_000_000,
];

/// Pids left free for the rest of the system when kernel threads run up to pid_max.
const PID_MARGIN: u64 = 2_000;

/// Memory mappings left free for the rest of the process (allocator, runtime, stacks),
/// and for the threads created but not yet started when the headroom is first measured: a
/// new std thread maps its signal stack only once it runs (later measurements wait for
/// every thread to start, see `Limit::check`). With 1,000 and no waiting, a standalone
/// `bench creation --model std` overshot the limit and a new thread aborted the process
/// (std cannot report that failure).
const MAP_MARGIN: u64 = 3_000;

/// Memory mappings a Rust kernel thread takes: its stack and guard page (glibc), and the
/// signal stack and its guard page that std sets up in every thread it starts.
const MAPS_PER_THREAD: u64 = 4;

/// Whether `subject` spawns kernel threads.
fn kernel(subject: Subject) -> bool {
    matches!(subject, Subject::OneToOne | Subject::Std)
}

/// How `subject` appears in the figures.
fn label(subject: Subject) -> String {
    match subject {
        Subject::ManyToOne => format!("{}, 16 KiB stacks", subject.name()),
        Subject::ManyToMany => format!("{} ({} workers), 16 KiB stacks", subject.name(), cores()),
        _ => subject.name().to_string(),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The thread counts measured for `subject` up to `n`, and `n` itself.
fn sizes(subject: Subject, n: u64) -> Vec<u64> {
    let base: &[u64] = if kernel(subject) {
        &KERNEL_SIZES
    } else {
        &GREEN_SIZES
    };
    let mut sizes: Vec<u64> = base.iter().copied().filter(|&s| s <= n).collect();
    if sizes.last() != Some(&n) && (n < *base.last().expect("sizes") || !kernel(subject)) {
        sizes.push(n);
    }
    sizes
}

/// A number from a file under /proc.
fn proc_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The process's resident memory now (VmRSS), in KiB.
fn vm_rss_kib() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS line in /proc/self/status"))
}

/// The process's kernel threads now.
fn tasks() -> io::Result<u64> {
    Ok(std::fs::read_dir("/proc/self/task")?.count() as u64)
}

/// How many more kernel threads this process may start before it takes the system's last
/// pids (less a margin) or reaches its mapping limit, and which limit that is.
fn kernel_headroom() -> (u64, String) {
    let pid_max = proc_number("/proc/sys/kernel/pid_max").unwrap_or(u64::MAX);
    let threads_max = proc_number("/proc/sys/kernel/threads-max").unwrap_or(u64::MAX);
    // The fourth field of /proc/loadavg is "runnable/existing" kernel threads, system-wide.
    let in_use = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            l.split_whitespace()
                .nth(3)?
                .split('/')
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    let (limit, limit_name) = if threads_max < pid_max {
        (threads_max, "kernel.threads-max")
    } else {
        (pid_max, "kernel.pid_max")
    };
    let pid_room = limit.saturating_sub(in_use + PID_MARGIN);
    let max_maps = proc_number("/proc/sys/vm/max_map_count").unwrap_or(u64::MAX);
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count() as u64)
        .unwrap_or(0);
    let map_room = max_maps.saturating_sub(maps + MAP_MARGIN) / MAPS_PER_THREAD;
    if pid_room <= map_room {
        (
            pid_room,
            format!(
                "{limit_name} = {limit} with {in_use} kernel threads on the system; more \
                 would take its last pids (the lab leaves {PID_MARGIN} free), then spawn \
                 fails (EAGAIN)"
            ),
        )
    } else {
        (
            map_room,
            format!(
                "vm.max_map_count = {max_maps} with {maps} mappings in use, and a Rust \
                 kernel thread takes {MAPS_PER_THREAD} (stack, guard page, signal stack, \
                 guard page); past that, spawn fails (EAGAIN) or a new thread aborts the \
                 process"
            ),
        )
    }
}

/// Where a run of kernel threads stops: the headroom is measured at the start and again
/// whenever it is used up (memory freed meanwhile, such as stacks the allocator still
/// cached, makes more room).
struct Limit {
    /// Threads the run may have before it measures again; `u64::MAX` for green threads.
    room: u64,
}

impl Limit {
    fn new(kernel_threads: bool) -> Limit {
        Limit {
            room: if kernel_threads {
                kernel_headroom().0
            } else {
                u64::MAX
            },
        }
    }

    /// Whether a run that has `created` threads, of which `started` have begun to run,
    /// may start one more; if not, why.
    fn check(&mut self, created: u64, started: &AtomicU64) -> Result<(), String> {
        if created < self.room {
            return Ok(());
        }
        // A thread maps its signal stack once it runs: count the mappings only when every
        // thread created so far has, or the count is short by two per thread still
        // starting and the next threads overshoot the limit.
        while started.load(Ordering::Acquire) < created {
            std::thread::sleep(Duration::from_micros(50));
        }
        match kernel_headroom() {
            (0, why) => Err(why),
            (more, _) => {
                self.room = created + more;
                Ok(())
            }
        }
    }
}

/// What one run saw.
struct Run {
    elapsed: Duration,
    created: u64,
    rss_before_kib: u64,
    rss_kib: u64,
    tasks: u64,
    /// Why it stopped before N, if it did.
    stopped: Option<String>,
}

/// Runs `n` spindle threads of the calling runtime (call it on a green thread, or in a
/// one-to-one runtime), stopping at `limit` threads if given.
fn spindle_run(n: u64, kernel_threads: bool) -> io::Result<Run> {
    let started = Arc::new(AtomicU64::new(0));
    let (release, wait) = spindle::channel::unbounded::<()>();
    let mut handles = Vec::with_capacity(n as usize);
    let mut stopped = None;
    let rss_before_kib = vm_rss_kib()?;
    let start = Instant::now();
    let mut limit = Limit::new(kernel_threads);
    for i in 0..n {
        if let Err(why) = limit.check(i, &started) {
            stopped = Some(format!("stopped at {i} of {n} threads: {why}"));
            break;
        }
        let (s, w) = (started.clone(), wait.clone());
        let spawned = spindle::thread::Builder::new().spawn(move || {
            s.fetch_add(1, Ordering::Release);
            // Err once the sender is dropped: the release.
            let _ = w.recv();
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                stopped = Some(format!("ran out at thread {} of {n}: {e}", i + 1));
                break;
            }
        }
    }
    let created = handles.len() as u64;
    while started.load(Ordering::Acquire) < created {
        if kernel_threads {
            spindle::sleep(Duration::from_micros(50));
        } else {
            spindle::yield_now();
        }
    }
    let (rss_kib, tasks) = (vm_rss_kib()?, tasks()?);
    drop(release);
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("a waiting thread panicked"))?;
    }
    Ok(Run {
        elapsed: start.elapsed(),
        created,
        rss_before_kib,
        rss_kib,
        tasks,
        stopped,
    })
}

/// Runs `n` std threads, stopping at `limit` threads.
fn std_run(n: u64) -> io::Result<Run> {
    let started = Arc::new(AtomicU64::new(0));
    let released = Arc::new((Mutex::new(false), Condvar::new()));
    let mut handles = Vec::with_capacity(n as usize);
    let mut stopped = None;
    let rss_before_kib = vm_rss_kib()?;
    let start = Instant::now();
    let mut limit = Limit::new(true);
    for i in 0..n {
        if let Err(why) = limit.check(i, &started) {
            stopped = Some(format!("stopped at {i} of {n} threads: {why}"));
            break;
        }
        let (s, r) = (started.clone(), released.clone());
        let spawned = std::thread::Builder::new().spawn(move || {
            s.fetch_add(1, Ordering::Release);
            let (lock, cv) = &*r;
            let mut go = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*go {
                go = cv.wait(go).unwrap_or_else(|e| e.into_inner());
            }
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                stopped = Some(format!("ran out at thread {} of {n}: {e}", i + 1));
                break;
            }
        }
    }
    let created = handles.len() as u64;
    while started.load(Ordering::Acquire) < created {
        std::thread::sleep(Duration::from_micros(50));
    }
    let (rss_kib, tasks) = (vm_rss_kib()?, tasks()?);
    {
        let (lock, cv) = &*released;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("a waiting thread panicked"))?;
    }
    Ok(Run {
        elapsed: start.elapsed(),
        created,
        rss_before_kib,
        rss_kib,
        tasks,
        stopped,
    })
}

/// One run of `subject` with `n` threads, in a runtime of its own.
fn run_once(subject: Subject, n: u64) -> io::Result<Run> {
    let model = match subject {
        Subject::Std => return std_run(n),
        Subject::ManyToOne => spindle::Model::ManyToOne,
        Subject::ManyToMany => spindle::Model::many_to_many_per_core(),
        Subject::OneToOne => spindle::Model::OneToOne,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the creation experiment does not measure {}",
                    subject.name()
                ),
            ))
        }
    };
    let stack = (!kernel(subject)).then_some(GREEN_STACK);
    let rt = build_runtime(model, stack)?;
    let kernel_threads = kernel(subject);
    rt.block_on(move || spindle_run(n, kernel_threads))
}

/// Measures each subject at each of its thread counts up to `n`; kernel threads stop at the
/// first count they cannot reach.
pub fn run(subjects: &[Subject], n: u64) -> io::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for &subject in subjects {
        let label = label(subject);
        let mut gave_out: Option<u64> = None;
        for size in sizes(subject, n) {
            if let Some(at) = gave_out {
                figures.push(Figure::skipped(
                    EXPERIMENT,
                    &label,
                    TIME_METRIC,
                    &format!("not tried: already stopped at {at} threads"),
                    size,
                ));
                continue;
            }
            let runs = if size <= SMALL_RUN { SMALL_RUNS } else { 1 };
            let mut run: Option<Run> = None;
            for _ in 0..runs {
                let next = run_once(subject, size).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("creation on {label}, {size} threads: {e}"),
                    )
                })?;
                if run.as_ref().is_none_or(|r| next.elapsed < r.elapsed) {
                    run = Some(next);
                }
            }
            let run = run.expect("at least one run");
            if let Some(why) = run.stopped {
                figures.push(Figure::skipped(EXPERIMENT, &label, TIME_METRIC, &why, size));
                figures.push(Figure::new(
                    EXPERIMENT,
                    &label,
                    "threads alive at once when it stopped",
                    run.created as f64,
                    "threads",
                    size,
                ));
                gave_out = Some(run.created);
                continue;
            }
            figures.push(Figure::new(
                EXPERIMENT,
                &label,
                TIME_METRIC,
                run.elapsed.as_secs_f64() * 1e6 / size as f64,
                "µs",
                size,
            ));
            figures.push(Figure::new(
                EXPERIMENT,
                &label,
                MEMORY_METRIC,
                run.rss_kib as f64 / 1024.0,
                "MiB",
                size,
            ));
            figures.push(Figure::new(
                EXPERIMENT,
                &label,
                GROWTH_METRIC,
                run.rss_kib.saturating_sub(run.rss_before_kib) as f64 / size as f64,
                "KiB",
                size,
            ));
            figures.push(Figure::new(
                EXPERIMENT,
                &label,
                TASKS_METRIC,
                run.tasks as f64,
                "threads",
                size,
            ));
        }
    }
    Ok(figures)
}
