//! The green thread and the handles others hold to it.
//!
//! - [`ThreadInner`] is the one record every spindle thread has, green or kernel: its id,
//!   its name and how to wake it. A [`crate::Thread`] is a shared handle to it.
//! - [`green::GreenTask`] is the part only green threads have: the park state word and the
//!   worker-owned cell that holds the coroutine.
//! - [`park_word`] is a green thread's park state machine (model-checked with loom).
//! - [`local`] is green-thread-local storage (`spindle::local!`): values that belong to the
//!   running thread and are dropped when it finishes.
//! - [`kernel_wait`] is what a kernel thread waits for, and until when, for dumps.
//! - [`packet`] carries a thread's result to its `JoinHandle`; [`scope`] waits for scoped
//!   threads.

pub(crate) mod green;
pub(crate) mod kernel_wait;
pub(crate) mod local;
pub(crate) mod packet;
pub(crate) mod park_word;
pub(crate) mod scope;
pub(crate) mod thread;

pub(crate) use thread::{ThreadInner, ThreadKind};
