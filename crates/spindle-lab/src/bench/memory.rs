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

/// What it costs to fault in one fresh page per thread (each new stack's top page) one
/// touch at a time, measured on a scratch mapping with the same 20 KiB stride as the
/// stacks: on a VM, most of a spawn's time if stacks were faulted in that way. spindle
/// populates the top pages of a batch of fresh stacks with one system call instead
/// (`stack/mod.rs`, "Fresh slots in batches"), which costs less.
///
/// On a VM the first pass over memory the host has not backed (or has taken back) costs
/// far more than the guest's own fault: the host backs each page as the guest clears it.
/// Measured on the 2-core VM of session 11: a million such touches took 9.2 s cold and
/// 2.9-4.7 s warm, and spawning a million green threads 16.4 s cold (63% of its samples in
/// `clear_page_erms`) against 6.1 s warm. So [`run`] makes one pass before spindle spawns,
/// reported as the cold figure, and measures the floor again after.
///
/// Where the guest reports free pages to its host (virtio-balloon free page reporting,
/// `machine::reports_free_pages`), that pass warms less than it seems: the host takes
/// back what a process unmaps within seconds. On the VM of session 12 a C loop of a
/// million touches took 7.5 s on a first pass, 2.2 s on a pass right after unmapping the
/// first, 4.6 s five seconds later and 6.1 s twenty seconds later. spindle's spawns, which
/// begin right after the cold pass, then pay part of the host's cost again (4.8 s against
/// 1.5 s for a pass of touches run just before them, 2.4-2.6 s when spindle's stacks were
/// reused in the same process), while the floor measured after spindle's run gets the
/// memory spindle has just freed. The cold figure carries a note saying so.
fn first_touch_floor(n: u64) -> io::Result<f64> {
    let stride = 20 * 1024;
    let len = n as usize * stride;
    // SAFETY: a fresh private anonymous mapping; nothing else refers to it, and it is
    // unmapped below before anything could keep a pointer into it.
    let base = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::NORESERVE,
        )?
    };
    let start = Instant::now();
    for i in 0..n as usize {
        // SAFETY: the address is inside the mapping made above (i < n, offset < len).
        unsafe { std::ptr::write_volatile((base as *mut u8).add(i * stride + stride - 64), 1) };
    }
    let elapsed = start.elapsed().as_secs_f64();
    // SAFETY: unmapping exactly the mapping made above; no reference into it remains.
    unsafe { rustix::mm::munmap(base, len)? };
    Ok(elapsed * 1000.0)
}

pub fn run(subject: Subject, n: u64) -> io::Result<Vec<Figure>> {
    let mut cold_floor = None;
    let (n, outcome) = match subject {
        Subject::Corosensei
        | Subject::Std
        | Subject::ManyToMany
        | Subject::TokioCurrentThread
        | Subject::TokioMultiThread
        | Subject::May
        | Subject::Go => return Ok(Vec::new()),
        Subject::ManyToOne => {
            let rt = subject
                .runtime(Some(GREEN_STACK))?
                .expect("a spindle subject");
            // The cold pass (see `first_touch_floor`): it leaves the memory backed for the
            // spawns that follow.
            cold_floor = Some(first_touch_floor(n)?);
            (n, rt.block_on(|| park_many(n))?)
        }
        Subject::OneToOne => {
            let n = n.min(KERNEL_CAP);
            let rt = subject.runtime(None)?.expect("a spindle subject");
            (n, rt.block_on(|| park_many(n))?)
        }
    };
    let floor = if subject == Subject::ManyToOne {
        Some(first_touch_floor(n)?)
    } else {
        None
    };
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / n as f64 / 1024.0;
    let name = subject.name();
    let mut figures = vec![
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
    ];
    if let Some(ms) = floor {
        figures.push(Figure::new(
            "memory",
            "page faults, one touch at a time",
            "first touch of one fresh page per thread",
            ms,
            "ms",
            n,
        ));
    }
    if let Some(ms) = cold_floor {
        let cold = Figure::new(
            "memory",
            "page faults, one touch at a time",
            "first touch of one fresh page per thread, first pass (memory the VM's host may \
             not have backed yet; it warms the memory for the figures above)",
            ms,
            "ms",
            n,
        );
        figures.push(if crate::machine::reports_free_pages() {
            cold.with_note(
                "this guest reports the memory it frees to its host (virtio-balloon free \
                 page reporting), which takes it back within seconds: the pass warms only \
                 part of the memory spindle's spawns then touch, while the floor measured \
                 after them gets the memory spindle has just freed"
                    .into(),
            )
        } else {
            cold
        });
    }
    Ok(figures)
}
