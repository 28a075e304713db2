//! Seeing the threads the kernel cannot see.
//!
//! The kernel, `top` and a debugger know a green-thread runtime's workers, not the
//! thousands of green threads they run. This module lists them, with what each is doing
//! and, for those that wait, where:
//!
//! - [`threads`]: every thread of every live runtime of the process, with its state (the
//!   wait reason of a parked one, the deadline of a sleeper, the descriptor of an I/O
//!   wait), worker, spawn time, CPU time, switch count and stack use.
//! - [`snapshot`]: the same with the backtrace of every switched-out green thread, taken
//!   at the point where it parked, slept or yielded.
//! - [`dump_text`] and [`dump_json`]: a snapshot written out for people (like Go's
//!   goroutine dump) and for tools.
//! - [`install_dump_signal`]: write the text dump to stderr whenever the process gets a
//!   signal (`kill -QUIT`), and keep running.
//!
//! ```
//! use spindle::{Model, Runtime};
//!
//! let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
//! rt.block_on(|| {
//!     let (tx, rx) = spindle::channel::bounded::<u32>(0);
//!     let waiter = spindle::thread::Builder::new()
//!         .name("waiter".into())
//!         .spawn(move || rx.recv().unwrap())
//!         .unwrap();
//!     // Let the waiter run until it parks in `recv`.
//!     while !spindle::debug::threads()
//!         .iter()
//!         .any(|t| t.state.wait_reason() == Some(spindle::WaitReason::ChannelRecv))
//!     {
//!         spindle::yield_now();
//!     }
//!     let dump = spindle::debug::dump_text();
//!     assert!(dump.contains("thread") && dump.contains("\"waiter\" [channel recv]"));
//!     tx.send(7).unwrap();
//!     assert_eq!(waiter.join().unwrap(), 7);
//! });
//! ```
//!
//! # How a dump is taken
//!
//! Each worker owns its queues and its threads' stacks without locks, so a dump asks
//! every worker to describe its threads at its next switch and waits for the answers
//! (`debug/request.rs`). A worker held by one green thread (a long computation, a raw
//! blocking call) cannot answer until that thread switches: after [`ANSWER_TIMEOUT`] the
//! dump goes on without that worker's threads and names the thread holding it. The
//! backtrace of a switched-out thread is taken by its own worker, which resumes it for a
//! moment into a step that walks its stack and switches straight back, touching nothing
//! the thread's wakers look at (`debug/capture.rs`). A dump costs the program nothing
//! until it is taken: the spawn path stores one coarse time stamp, the switch path
//! counts switches.
//!
//! What is not listed: green threads that have not started and wait in a queue other
//! workers steal from (many-to-many), which cannot be walked: they are counted in
//! [`RuntimeInfo::unlisted_unstarted`]. Finished threads are not listed (their
//! `JoinHandle` holds the result). Kernel threads that no one-to-one runtime spawned are
//! not listed: the kernel and a debugger know them.

pub(crate) mod capture;
pub(crate) mod clock;
pub(crate) mod gdb_root;
mod info;
mod json;
pub(crate) mod request;
pub(crate) mod runtimes;
mod signal;
mod snapshot;
pub(crate) mod symbolize;
mod text;

pub use info::{
    Backtrace, Frame, RuntimeInfo, Snapshot, Symbol, ThreadInfo, ThreadState, WorkerInfo,
};
pub use request::ANSWER_TIMEOUT;
pub(crate) use signal::forget_inherited_pipe as forget_inherited_dump_pipe;
pub use signal::install_dump_signal;

/// Every thread of every live spindle runtime of the process, without backtraces.
///
/// Called from a green thread, only that thread waits while the workers answer.
pub fn threads() -> Vec<ThreadInfo> {
    snapshot::take(false).threads
}

/// Every thread of every live spindle runtime, with the backtraces of the green threads
/// that are switched out.
pub fn snapshot() -> Snapshot {
    snapshot::take(true)
}

/// A snapshot of one runtime only (its workers alone are asked).
pub(crate) fn snapshot_of_runtime(id: u64) -> Snapshot {
    snapshot::take_of(true, Some(id))
}

/// A [`snapshot`] as text: every thread with its state, and the backtrace of each
/// switched-out green thread, like Go's goroutine dump.
pub fn dump_text() -> String {
    text::render(&snapshot())
}

/// A [`snapshot`] as JSON, for tools: an object with `taken_at_unix_ms`, `runtimes` and
/// `threads` (the fields of [`ThreadInfo`], times in nanoseconds relative to the dump).
pub fn dump_json() -> String {
    json::render(&snapshot())
}

impl Snapshot {
    /// This snapshot as [`dump_text`] writes it.
    pub fn to_text(&self) -> String {
        text::render(self)
    }

    /// This snapshot as [`dump_json`] writes it.
    pub fn to_json(&self) -> String {
        json::render(self)
    }
}
