//! The many-to-one model: one kernel thread runs every green thread.
//!
//! A pool ([`crate::sched::pool`]) of one worker, on a kernel thread of its own named
//! `spindle-m1`, that never steals. `block_on` hands it the root green thread and waits;
//! green threads spawned from any of its green threads are made on the spot (their
//! coroutine and stack come from the worker's pool with no lock and no system call) and
//! queued locally, while spawns from other kernel threads go through the worker's inbox.
//!
//! Green threads keep running between `block_on` calls; dropping the runtime cancels the
//! ones left (see `Worker::cancel_all`).

use std::io;

use crate::io::{BlockingConfig, IoBackend};
use crate::sched::monitor::MonitorConfig;
use crate::sched::pool::{GreenRuntime, PoolConfig};

/// Starts a many-to-one runtime whose green threads get `stack_size` by default.
pub(crate) fn start(
    stack_size: usize,
    monitor: MonitorConfig,
    blocking: BlockingConfig,
    migrates: bool,
    io_backend: IoBackend,
    cpu_accounting: bool,
) -> io::Result<GreenRuntime> {
    GreenRuntime::start(PoolConfig {
        workers: 1,
        steals: false,
        stack_size,
        monitor,
        blocking,
        migrates,
        io_backend,
        cpu_accounting,
        thread_name: "spindle-m1",
    })
}
