//! Synchronization primitives that park green threads: [`Mutex`] and [`Condvar`].
//!
//! They have std's API and semantics (poisoning included) and work from green threads of
//! every model and from plain kernel threads, mixed on the same object: a green thread that
//! blocks parks only itself, and its worker runs other green threads meanwhile.
//!
//! ## How they are built
//!
//! (The files named below are crate-private; each opens with the essay on its protocol.)
//!
//! - `spin_lock`: the small lock that guards every wait queue. Its sections never block.
//! - `wait_list`: an intrusive FIFO; a blocked thread's entry lives on its own stack, so
//!   blocking allocates nothing.
//! - `waiter`: the hand-shake between a blocked thread and its waker, which makes sure a
//!   wake-up is never lost and an entry is never touched after its thread moved on.
//! - `raw_mutex`: the mutex protocol (one CAS to lock, one to unlock when uncontended;
//!   FIFO wake-ups with barging; bounded starvation through hand-off).
//! - `condvar`: waiters queue on the condvar; a notify moves them onto the
//!   mutex's queue, so `notify_all` wakes them one at a time.
//!
//! Every blocking wait ends in `crate::park`, the one way to block in spindle.

pub(crate) mod condvar;
pub(crate) mod mutex;
pub(crate) mod poison;
pub(crate) mod raw_mutex;
pub(crate) mod spin_lock;
pub(crate) mod wait_list;
pub(crate) mod waiter;

pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard};
