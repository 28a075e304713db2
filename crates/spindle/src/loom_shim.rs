//! The atomics and locks of protocols that are model-checked with `loom`.
//!
//! Built with `RUSTFLAGS="--cfg loom"`, these are loom's instrumented types, and the
//! `loom` tests explore every interleaving of the protocol (see `.ci/run`); otherwise they
//! are std's. Only code whose protocol has a loom model goes through here: under
//! `--cfg loom` nothing else in the crate can run (loom atomics only work inside a model).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;
