//! Scheduling: workers, their run queues and timers, and one file per model.
//!
//! The park protocol, the ownership of a parked thread, the idle-sleep handshakes, the
//! queue order of many-to-many, the monitor, migration and shutdown are written down in
//! `README.md` beside this file.

pub(crate) mod all_asleep;
pub(crate) mod context;
pub(crate) mod cpu_sampler;
pub(crate) mod hand_off;
pub(crate) mod idle;
pub(crate) mod many_to_many;
pub(crate) mod many_to_one;
pub(crate) mod monitor;
pub(crate) mod one_to_one;
pub(crate) mod pool;
pub(crate) mod stall_backtrace;
pub(crate) mod timers;
pub(crate) mod worker;
pub(crate) mod worker_signals;
