//! spindle: green threads in three models behind one std-like API.
//!
//! A program picks how its threads map onto kernel threads with one line, and the rest of
//! the code is the same:
//!
//! - **many-to-one**: every green thread runs on one kernel thread, scheduled in user
//!   space: creating, switching and keeping threads is cheap, but there is no parallelism;
//! - **one-to-one**: every spawned thread is a kernel thread;
//! - **many-to-many**: green threads on a pool of kernel workers that steal work from each
//!   other: cheap threads and parallelism.
//!
//! ```
//! use spindle::{Model, Runtime};
//!
//! let rt = Runtime::builder().model(Model::ManyToOne).stack_size(64 * 1024).build()?;
//! let total: u64 = rt.block_on(|| {
//!     let hs: Vec<_> = (0..10u64).map(|i| spindle::spawn(move || i * 2)).collect();
//!     hs.into_iter().map(|h| h.join().unwrap()).sum()
//! });
//! assert_eq!(total, 90);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Blocking primitives ([`sync`], [`channel`], [`park`], [`sleep`], `join`) park only the
//! calling green thread; the same primitives work from plain kernel threads, mixed on the
//! same object.
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]

pub mod channel;
pub mod debug;
pub(crate) mod fork;
pub mod fs;
pub mod io;
pub(crate) mod loom_shim;
pub mod net;
pub(crate) mod park;
pub mod process;
pub(crate) mod ring;
pub mod runtime;
pub(crate) mod sched;
pub(crate) mod stack;
pub mod sync;
pub(crate) mod task;
pub mod thread;

pub use io::unblock;
pub use park::WaitReason;
pub use runtime::{Model, Runtime};
pub use task::local::{AccessError, LocalKey};
pub use thread::{
    checkpoint, current, park, park_timeout, scope, sleep, spawn, yield_now, JoinHandle, Scope,
    ScopedJoinHandle, Thread, ThreadId,
};
