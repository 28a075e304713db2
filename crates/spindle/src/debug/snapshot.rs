//! Taking a snapshot: ask every worker (`debug/request.rs`), list the one-to-one threads,
//! and put the answers together with resolved backtraces.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::debug::capture::{RawState, RawThread};
use crate::debug::clock;
use crate::debug::info::{RuntimeInfo, Snapshot, ThreadInfo, ThreadState, WorkerInfo};
use crate::debug::request::{DumpRequest, Slot};
use crate::debug::runtimes::{self, Live, RuntimeRef};
use crate::debug::symbolize::Symbolizer;
use crate::park::WaitReason;
use crate::sched::context::{self, SwitchBan};
use crate::sched::cpu_sampler::samples_to_time;
use crate::sched::one_to_one::OneToOneShared;
use crate::task::thread::ThreadId;

/// Takes a snapshot of every live runtime of this process.
pub(crate) fn take(backtraces: bool) -> Snapshot {
    take_of(backtraces, None)
}

/// Takes a snapshot of the runtime numbered `only`, or of every live runtime.
pub(crate) fn take_of(backtraces: bool, only: Option<u64>) -> Snapshot {
    let taken_at = SystemTime::now();
    // A fork child's inherited runtimes have no workers here (fork.rs): not listed.
    let live: Vec<Live> = runtimes::live()
        .into_iter()
        .filter(|rt| only.is_none_or(|id| id == rt.id))
        .filter(|rt| match &rt.runtime {
            RuntimeRef::Green(p) => !p.provenance.is_inherited(),
            RuntimeRef::OneToOne(o) => !o.provenance.is_inherited(),
        })
        .collect();
    let slots = ask_workers(&live, backtraces);
    // Symbolizing nests deeply: not on a small green stack.
    crate::sched::context::on_roomy_stack(move || assemble(taken_at, live, slots))
}

/// Puts the answers together, with symbolized backtraces.
fn assemble(taken_at: SystemTime, live: Vec<Live>, slots: Vec<Slot>) -> Snapshot {
    let mut symbolizer = Symbolizer::default();
    let mut runtimes = Vec::with_capacity(live.len());
    let mut threads = Vec::new();
    let mut slots = slots.into_iter();
    for rt in &live {
        let mut info = RuntimeInfo {
            id: rt.id,
            model: rt.model,
            io_backend: rt.io_backend,
            workers: Vec::new(),
            unlisted_unstarted: 0,
        };
        let first = threads.len();
        match &rt.runtime {
            RuntimeRef::Green(pool) => {
                info.unlisted_unstarted += pool.injected_len();
                for (index, w) in pool.workers.iter().enumerate() {
                    let slot = slots.next().expect("a slot per worker");
                    let mut worker = WorkerInfo {
                        index,
                        answered: false,
                        running: None,
                    };
                    match slot {
                        Slot::Answered(answer) => {
                            worker.answered = true;
                            info.unlisted_unstarted += answer.unlisted_unstarted;
                            threads.extend(
                                answer
                                    .threads
                                    .into_iter()
                                    .map(|raw| green_info(raw, rt.id, &mut symbolizer)),
                            );
                        }
                        Slot::GaveUp => {
                            worker.running = ThreadId::from_u64(w.watch.running.load(Relaxed));
                        }
                        _ => {}
                    }
                    info.workers.push(worker);
                }
            }
            RuntimeRef::OneToOne(o) => threads.extend(kernel_threads(o, rt.id)),
        }
        threads[first..].sort_by_key(|t: &ThreadInfo| t.id);
        runtimes.push(info);
    }
    Snapshot {
        taken_at,
        runtimes,
        threads,
    }
}

/// Steps 1 and 3 of the protocol: one slot per worker of `live`'s green runtimes, in order.
fn ask_workers(live: &[Live], backtraces: bool) -> Vec<Slot> {
    let workers = live.iter().filter_map(|rt| match &rt.runtime {
        RuntimeRef::Green(pool) => Some(pool.workers.iter()),
        RuntimeRef::OneToOne(_) => None,
    });
    let count = workers.clone().map(|w| w.len()).sum();
    if count == 0 {
        return Vec::new();
    }
    // A green thread that may not switch (being cancelled, or the fork child's thread that
    // called fork) waits as a kernel thread; its own worker cannot answer then.
    let banned = context::current_green().is_some() && context::switch_ban() != SwitchBan::None;
    let own = context::current_worker().map(|w| Arc::as_ptr(w.shared()));
    let ask = || {
        let request = Arc::new(DumpRequest::new(backtraces, count));
        for (slot, w) in workers.flatten().enumerate() {
            let skip = banned && own == Some(Arc::as_ptr(w));
            if skip {
                request.give_up(slot);
            } else if !w.push_dump(request.clone(), slot) {
                request.shut_down(slot);
            }
        }
        request.wait()
    };
    if banned {
        crate::fork::as_kernel_thread(ask)
    } else {
        ask()
    }
}

/// A green thread as a worker described it, with its backtrace resolved.
fn green_info(raw: RawThread, runtime: u64, symbolizer: &mut Symbolizer) -> ThreadInfo {
    let state = match raw.state {
        RawState::Running => ThreadState::Running,
        RawState::Runnable { started } => ThreadState::Runnable { started },
        RawState::Waiting { reason, fd, until } => match reason {
            WaitReason::Sleep => ThreadState::Sleeping {
                until: until.unwrap_or_else(Instant::now),
            },
            WaitReason::Unblock => ThreadState::Unblock,
            _ if fd >= 0 => ThreadState::Io { reason, fd, until },
            _ => ThreadState::Parked { reason, until },
        },
    };
    ThreadInfo {
        id: raw.id,
        name: raw.name,
        green: true,
        runtime,
        worker: raw.worker,
        state,
        spawned_at: clock::instant_of(raw.spawned),
        cpu_time: samples_to_time(raw.cpu_samples),
        switches: raw.switches,
        stack_size: raw.stack_size,
        stack_resident: raw.stack_resident,
        backtrace: (!raw.frames.is_empty()).then(|| symbolizer.backtrace(raw.frames)),
    }
}

/// The kernel threads of a one-to-one runtime. Their stacks belong to the kernel and libc:
/// no backtrace (a debugger has them), no resident size.
fn kernel_threads(rt: &OneToOneShared, runtime: u64) -> Vec<ThreadInfo> {
    rt.listed()
        .iter()
        .map(|(t, stack_size)| {
            let tid = t.kernel_tid.load(Relaxed);
            let state = match t.kernel_wait.get() {
                (WaitReason::None, _) => ThreadState::Running,
                // park.rs shows every sleep with its deadline.
                (WaitReason::Sleep, until) => ThreadState::Sleeping {
                    until: until.unwrap_or_else(Instant::now),
                },
                (reason, until) => ThreadState::Parked { reason, until },
            };
            ThreadInfo {
                id: t.id,
                name: t.name.as_deref().map(Into::into),
                green: false,
                runtime,
                worker: None,
                state,
                spawned_at: clock::instant_of(t.spawned),
                cpu_time: kernel_cpu_time(tid),
                switches: kernel_switches(tid),
                stack_size: *stack_size,
                stack_resident: 0,
                backtrace: None,
            }
        })
        .collect()
}

/// The CPU clock of kernel thread `tid` of this process (0 if it is gone). Linux names a
/// thread's CPU clock by its id: `(~tid << 3) | 6` (per-thread, scheduler clock), the
/// encoding glibc's `pthread_getcpuclockid` uses.
fn kernel_cpu_time(tid: i32) -> Duration {
    if tid <= 0 {
        return Duration::ZERO;
    }
    let clock = (!tid << 3) | 6;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec; an invalid clock id only makes the call fail.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Voluntary plus involuntary context switches of kernel thread `tid`, from `/proc`.
fn kernel_switches(tid: i32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
        return 0;
    };
    status
        .lines()
        .filter(|l| l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}
