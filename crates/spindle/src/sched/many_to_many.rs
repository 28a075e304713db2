//! The many-to-many model: green threads on a pool of kernel workers.
//!
//! A pool ([`crate::sched::pool`]) of N workers, kernel threads named `spindle-mn-I`. A
//! green thread spawned by a green thread goes into its worker's `fresh` queue; one spawned
//! from outside the runtime into the shared injector. Idle workers steal threads that have
//! never run; a thread that has run stays on its worker (DESIGN.md), so std thread-locals
//! stay sound. Workers with nothing to do sleep, and are woken when stealable work appears,
//! by the handshake of `sched/README.md` ("Many-to-many"), model-checked in
//! `sched/idle.rs`.

use std::io;

use crate::io::{BlockingConfig, IoBackend};
use crate::sched::monitor::MonitorConfig;
use crate::sched::pool::{GreenRuntime, PoolConfig};

/// Starts a many-to-many runtime of `workers` workers whose green threads get
/// `stack_size` by default.
pub(crate) fn start(
    workers: usize,
    stack_size: usize,
    monitor: MonitorConfig,
    blocking: BlockingConfig,
    migrates: bool,
    io_backend: IoBackend,
    cpu_accounting: bool,
) -> io::Result<GreenRuntime> {
    GreenRuntime::start(PoolConfig {
        workers,
        steals: true,
        stack_size,
        monitor,
        blocking,
        migrates,
        io_backend,
        cpu_accounting,
        thread_name: "spindle-mn",
    })
}
