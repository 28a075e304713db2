//! The monitor (sysmon): a kernel thread per green-thread runtime that watches its workers.
//!
//! Scheduling is cooperative (DESIGN.md: no signal-based preemption), so a green thread
//! that computes for a long time, or makes a raw blocking system call, holds its worker:
//! nothing else queued there runs until it switches. The monitor is how the runtime notices
//! and answers:
//!
//! - **Time slices.** A worker whose switch counter has not moved for a time slice
//!   (default 10 ms) gets its `preempt_at` set to that count; `spindle::checkpoint()` on
//!   the running thread compares it with the worker's count and yields on a match. A
//!   checkpoint is a thread-local read and two loads, cheap enough for an inner loop.
//! - **Stalls.** A worker held for longer than the stall threshold (default 10 ms) is
//!   recorded as a [`StallEvent`]: the worker, the green thread's id, how long, and
//!   whether the kernel thread sleeps in a system call or runs (from
//!   `/proc/self/task/TID/stat`). The worker completes the event with the thread's name
//!   and the exact duration when the thread finally switches (the monitor never touches
//!   a thread record: it could be freed under it). In many-to-many, while a green thread
//!   holds the stuck worker and never-run threads wait in its `fresh` queue, the monitor
//!   marks the worker (`stuck_with_fresh`), wakes a sleeping worker and sets the pool's
//!   `help_wanted` flag at every tick: a sleeper woken steals, and a busy worker takes the
//!   flag at its next look at its timers (within 64 switches or a used-up slice) and takes
//!   a batch from each marked worker's `fresh` before it goes on.
//!
//! What a worker publishes, per resume, with relaxed stores to its own cache line: the
//! switch count and the running thread's id. The monitor reads them with relaxed loads;
//! no ordering is needed, since every decision is a heuristic that a late read only
//! delays by one tick (at most half the shorter of the two periods).
//!
//! An idle runtime costs no wakeups: when every worker sleeps, the monitor parks until a
//! worker wakes (the worker's `sleeping = false` and the monitor's `idle = true` are each
//! followed by a SeqCst fence and a load of the other, so one sees the other).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::sched::all_asleep::AllAsleep;
use crate::sched::hand_off::{self, HandOff};
use crate::sched::pool::PoolShared;
use crate::sched::stall_backtrace::{self, StallCapture};
use crate::sched::worker::WorkerShared;
use crate::task::thread::ThreadId;

/// Default time slice of `spindle::checkpoint()`.
pub const DEFAULT_TIME_SLICE: Duration = Duration::from_millis(10);

/// Default time after which a worker that has not switched counts as stalled.
pub const DEFAULT_STALL_THRESHOLD: Duration = Duration::from_millis(10);

/// How many stall events a runtime keeps (the oldest go first).
pub const MAX_STALL_EVENTS: usize = 1024;

/// The monitor's settings (from the runtime builder).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MonitorConfig {
    pub(crate) time_slice: Duration,
    pub(crate) stall_threshold: Duration,
    pub(crate) report_stalls: bool,
    /// When every green thread has slept this long with nothing pending, say so
    /// (`sched/all_asleep.rs`); `None`: never.
    pub(crate) all_asleep_after: Option<Duration>,
    /// Then shut the runtime down, so that `block_on` panics with the report.
    pub(crate) panic_when_all_asleep: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            time_slice: DEFAULT_TIME_SLICE,
            stall_threshold: DEFAULT_STALL_THRESHOLD,
            report_stalls: false,
            all_asleep_after: Some(crate::sched::all_asleep::DEFAULT_GRACE),
            panic_when_all_asleep: false,
        }
    }
}

/// What a worker publishes for the monitor, and what the monitor asks of it.
pub(crate) struct WorkerWatch {
    /// Resumes so far; written by the worker before each resume.
    pub(crate) switches: AtomicU64,
    /// Id of the green thread being resumed, 0 while the worker runs its own code.
    pub(crate) running: AtomicU64,
    /// The switch count during which the running thread's time slice ran out.
    pub(crate) preempt_at: AtomicU64,
    /// The switch count during which a stall was recorded, for the worker to complete.
    pub(crate) stall_at: AtomicU64,
    /// The worker's kernel thread id, for `/proc`.
    pub(crate) tid: AtomicI32,
    /// Where the backtrace of a stalled thread is asked for and answered.
    pub(crate) stall_capture: StallCapture,
    /// Started green threads of the worker (its registry's length).
    pub(crate) live: AtomicUsize,
    /// Whether the worker, asleep, has a timer to wake it.
    pub(crate) timer_armed: AtomicBool,
    /// Its threads still running on a kernel thread that lost the worker (migration).
    pub(crate) away: AtomicUsize,
    /// Its green threads waiting for something outside the runtime: a `block_on` of
    /// another runtime, a join of a thread of another runtime or a kernel thread.
    pub(crate) outside_waits: AtomicUsize,
    /// Set by the monitor while a green thread holds the worker past the stall threshold
    /// and never-run threads wait in its `fresh` queue: busy workers take those
    /// (`PoolShared::help_wanted`). Cleared by the monitor once the worker switches.
    pub(crate) stuck_with_fresh: AtomicBool,
}

impl WorkerWatch {
    pub(crate) fn new() -> WorkerWatch {
        WorkerWatch {
            switches: AtomicU64::new(0),
            running: AtomicU64::new(0),
            preempt_at: AtomicU64::new(u64::MAX),
            stall_at: AtomicU64::new(u64::MAX),
            tid: AtomicI32::new(0),
            stall_capture: StallCapture::new(),
            live: AtomicUsize::new(0),
            timer_armed: AtomicBool::new(false),
            away: AtomicUsize::new(0),
            outside_waits: AtomicUsize::new(0),
            stuck_with_fresh: AtomicBool::new(false),
        }
    }
}

/// Where the kernel thread of a stalled worker was when the stall was noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StallCause {
    /// Sleeping in the kernel: a blocking system call (`read`, `std::thread::sleep`, a
    /// std lock, ...).
    SystemCall,
    /// Running: a long computation that does not call `spindle::checkpoint()`.
    Running,
    /// Could not be told (no `/proc`).
    Unknown,
}

impl fmt::Display for StallCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StallCause::SystemCall => "blocked in a system call",
            StallCause::Running => "running without a checkpoint",
            StallCause::Unknown => "state unknown",
        })
    }
}

/// A worker held by one green thread for longer than the runtime's stall threshold.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StallEvent {
    /// Index of the worker (0 in many-to-one).
    pub worker: usize,
    /// The green thread that held it.
    pub thread: Option<ThreadId>,
    /// Its name, once the stall has ended (the monitor cannot read it safely before).
    pub thread_name: Option<String>,
    /// How long the worker was held: up to now while `ongoing`, exact once it ended.
    pub duration: Duration,
    /// Whether the thread still holds the worker (as of the last look).
    pub ongoing: bool,
    /// What the worker's kernel thread was doing when the stall was noticed.
    pub cause: StallCause,
    /// With migration on: after how long the worker went on, without this thread, on a
    /// new kernel thread (then `duration` is how long the *thread* was stuck).
    pub handed_off_after: Option<Duration>,
    /// Where the thread was when the stall was noticed, for a thread that was running
    /// (a computation without checkpoints): taken by the worker's kernel thread itself on
    /// a signal from the monitor (`sched/stall_backtrace.rs`). `None` for a thread in a
    /// system call (the signal would make a call that Linux does not restart fail with
    /// `EINTR`), where it cannot be had safely (glibc older than 2.35), and until the
    /// answer has arrived (a moment after the event).
    pub backtrace: Option<crate::debug::Backtrace>,
    /// The number of the backtrace request sent for it (0: none), until answered.
    backtrace_request: u64,
    /// The answer's return addresses, until symbolized.
    ips: Vec<usize>,
    /// When the worker last switched before the stall (to within a monitor tick).
    started: Instant,
    /// The worker's switch count during the stall.
    switch: u64,
}

impl fmt::Display for StallEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.thread.map_or("?".to_string(), |t| t.to_string());
        let name = self.thread_name.as_deref().unwrap_or("<unnamed>");
        let verb = if self.ongoing {
            "has been held"
        } else {
            "was held"
        };
        write!(
            f,
            "worker {} {verb} for {:.1} ms by green thread {id} ('{name}'), {}",
            self.worker,
            self.duration.as_secs_f64() * 1e3,
            self.cause
        )?;
        if let Some(after) = self.handed_off_after {
            write!(
                f,
                "; after {:.1} ms the worker went on without it, on a new kernel thread",
                after.as_secs_f64() * 1e3
            )?;
        }
        Ok(())
    }
}

/// The monitor's shared state: its settings, the events it recorded, its idle flag.
pub(crate) struct Monitor {
    pub(crate) config: MonitorConfig,
    events: Mutex<VecDeque<StallEvent>>,
    /// True while the monitor parks because every worker sleeps.
    idle: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl Monitor {
    pub(crate) fn new(config: MonitorConfig) -> Monitor {
        Monitor {
            config,
            events: Mutex::new(VecDeque::new()),
            idle: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    pub(crate) fn set_thread(&self, t: std::thread::Thread) {
        let _ = self.thread.set(t);
    }

    /// Wakes the monitor (for shutdown, or because a worker left its idle sleep).
    pub(crate) fn unpark(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// A worker has just left its idle sleep (and published `sleeping = false`).
    pub(crate) fn worker_woke(&self) {
        fence(SeqCst);
        if self.idle.load(Relaxed) {
            self.unpark();
        }
    }

    /// The events recorded so far (the last [`MAX_STALL_EVENTS`]), oldest first.
    /// `workers` are the runtime's, whose kernel threads answer backtrace requests.
    pub(crate) fn events(&self, workers: &[Arc<WorkerShared>]) -> Vec<StallEvent> {
        // Symbolizing nests deeply: not on a small green stack.
        crate::sched::context::on_roomy_stack(|| self.events_here(workers))
    }

    fn events_here(&self, workers: &[Arc<WorkerShared>]) -> Vec<StallEvent> {
        let mut events: Vec<StallEvent> = {
            let mut recorded = lock(&self.events);
            for e in recorded.iter_mut() {
                collect_backtrace(e, workers);
            }
            recorded.iter().cloned().collect()
        };
        // Symbolized outside the lock (the first time reads the debug info, which takes a
        // while, and the workers take the lock when a stall ends), then kept.
        let mut symbolizer = crate::debug::symbolize::Symbolizer::default();
        let mut resolved = Vec::new();
        for e in events
            .iter_mut()
            .filter(|e| e.backtrace.is_none() && !e.ips.is_empty())
        {
            let b = symbolizer.backtrace(e.ips.clone());
            e.backtrace = Some(b.clone());
            resolved.push((e.worker, e.switch, b));
        }
        if !resolved.is_empty() {
            let mut recorded = lock(&self.events);
            for (worker, switch, b) in resolved {
                if let Some(e) = recorded
                    .iter_mut()
                    .find(|e| e.worker == worker && e.switch == switch)
                {
                    e.ips.clear();
                    e.backtrace = Some(b);
                }
            }
        }
        let now = Instant::now();
        for e in events.iter_mut().filter(|e| e.ongoing) {
            e.duration = now.saturating_duration_since(e.started);
        }
        events
    }

    /// Called by a worker whose running thread was recorded as stalling it, once that
    /// thread switched: fills in the name and the exact duration.
    #[cold]
    /// The monitor handed worker `worker` to a new kernel thread during the stall of switch
    /// `switch`, `after` into it.
    fn note_hand_off(&self, worker: usize, switch: u64, after: Duration) {
        let mut events = lock(&self.events);
        if let Some(e) = events
            .iter_mut()
            .rev()
            .find(|e| e.worker == worker && e.switch == switch)
        {
            e.handed_off_after = Some(after);
        }
    }

    pub(crate) fn end_stall(&self, worker: usize, switch: u64, name: Option<&str>) {
        let ended = {
            let mut events = lock(&self.events);
            let Some(e) = events
                .iter_mut()
                .rev()
                .find(|e| e.worker == worker && e.switch == switch)
            else {
                return;
            };
            e.ongoing = false;
            e.thread_name = name.map(Into::into);
            e.duration = e.started.elapsed();
            e.clone()
        };
        if self.config.report_stalls {
            eprintln!("spindle: {ended}");
        }
    }
}

/// Moves the answer to `e`'s backtrace request, if it has arrived, into `e.ips`.
fn collect_backtrace(e: &mut StallEvent, workers: &[Arc<WorkerShared>]) {
    if e.backtrace_request == 0 {
        return;
    }
    let capture = &workers[e.worker].watch.stall_capture;
    if let Some(ips) = stall_backtrace::collect(capture, e.backtrace_request) {
        e.backtrace_request = 0;
        e.ips = ips;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the monitor remembers of one worker between ticks.
#[derive(Clone, Copy)]
struct Seen {
    switches: u64,
    since: Instant,
    preempted: u64,
    stalled: u64,
    handed: u64,
}

/// The monitor thread's body: watches `pool`'s workers until the runtime shuts down.
pub(crate) fn run(pool: Arc<PoolShared>) {
    let monitor = &pool.monitor;
    let cfg = monitor.config;
    let tick = (cfg.time_slice.min(cfg.stall_threshold) / 2)
        .clamp(Duration::from_micros(500), Duration::from_millis(50));
    let start = Instant::now();
    let mut asleep = AllAsleep::default();
    let mut seen = vec![
        Seen {
            switches: 0,
            since: start,
            preempted: u64::MAX,
            stalled: u64::MAX,
            handed: u64::MAX,
        };
        pool.workers.len()
    ];
    while !pool.is_shut_down() {
        std::thread::park_timeout(tick);
        let now = Instant::now();
        crate::debug::clock::publish(now);
        let mut all_idle = true;
        for (i, w) in pool.workers.iter().enumerate() {
            let s = w.watch.switches.load(Relaxed);
            let st = &mut seen[i];
            if s != st.switches || w.is_sleeping() {
                st.switches = s;
                st.since = now;
                all_idle &= w.is_sleeping();
                w.watch.stuck_with_fresh.store(false, Relaxed);
                continue;
            }
            all_idle = false;
            let held = now.saturating_duration_since(st.since);
            if held >= cfg.time_slice && st.preempted != s {
                st.preempted = s;
                w.watch.preempt_at.store(s, Relaxed);
            }
            if held >= cfg.stall_threshold && st.stalled != s {
                st.stalled = s;
                record_stall(&pool, i, s, st.since, held);
            }
            if held >= cfg.stall_threshold
                && pool.steals
                && w.watch.running.load(Relaxed) != 0
                && !pool.stealers[i].is_empty()
            {
                // Every tick while a green thread holds the worker: a busy worker takes
                // the flag at its next look at its timers, a woken sleeper steals at once.
                w.watch.stuck_with_fresh.store(true, Relaxed);
                pool.help_wanted.store(true, Relaxed);
                pool.wake_one();
            }
            if pool.migrates && held >= cfg.stall_threshold && st.handed != s {
                match hand_off::hand_off(&pool, i, s) {
                    HandOff::Taken => {
                        st.handed = s;
                        monitor.note_hand_off(i, s, held);
                    }
                    HandOff::DriverMovedOn => st.handed = s,
                    // Tried again at the next tick.
                    HandOff::CannotStartThread => {}
                }
            }
        }
        if all_idle {
            sleep_while_idle(&pool, &mut asleep);
            crate::debug::clock::publish(Instant::now());
        }
    }
}

fn record_stall(pool: &PoolShared, worker: usize, switch: u64, started: Instant, held: Duration) {
    let w = &pool.workers[worker];
    // Held in its own code (starting up, shutting down): not a green thread's doing.
    let Some(thread) = ThreadId::from_u64(w.watch.running.load(Relaxed)) else {
        return;
    };
    let tid = w.watch.tid.load(Relaxed);
    let cause = stall_cause(tid);
    // Answers to earlier requests of this worker first: a new request overwrites them.
    for e in lock(&pool.monitor.events).iter_mut() {
        collect_backtrace(e, &pool.workers);
    }
    // Only a running thread is asked for its backtrace: a signal would make a system call
    // that Linux does not restart (poll, epoll_wait, select, ...) fail with EINTR.
    let backtrace_request = match cause {
        StallCause::Running => {
            stall_backtrace::ask(&w.watch.stall_capture, tid, thread.as_u64().get())
        }
        StallCause::SystemCall | StallCause::Unknown => 0,
    };
    let event = StallEvent {
        worker,
        thread: Some(thread),
        thread_name: None,
        duration: held,
        ongoing: true,
        cause,
        handed_off_after: None,
        backtrace: None,
        backtrace_request,
        ips: Vec::new(),
        started,
        switch,
    };
    if pool.monitor.config.report_stalls {
        eprintln!("spindle: {event}");
    }
    {
        let mut events = lock(&pool.monitor.events);
        if events.len() == MAX_STALL_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
    }
    w.watch.stall_at.store(switch, Relaxed);
}

/// Parks the monitor while every worker sleeps (see the module docs for the handshake),
/// watching meanwhile whether the runtime is asleep for good (`sched/all_asleep.rs`).
fn sleep_while_idle(pool: &PoolShared, asleep: &mut AllAsleep) {
    let monitor = &pool.monitor;
    monitor.idle.store(true, Relaxed);
    fence(SeqCst);
    if pool.workers.iter().all(|w| w.is_sleeping()) && !pool.is_shut_down() {
        asleep.park(pool);
    }
    monitor.idle.store(false, Relaxed);
}

/// Reads the scheduling state of kernel thread `tid` of this process from `/proc`.
fn stall_cause(tid: i32) -> StallCause {
    if tid == 0 {
        return StallCause::Unknown;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return StallCause::Unknown;
    };
    // The state is the first field after the command name, which is in parentheses and
    // may itself contain spaces or parentheses.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    match state {
        Some("R") => StallCause::Running,
        Some("S" | "D") => StallCause::SystemCall,
        _ => StallCause::Unknown,
    }
}
