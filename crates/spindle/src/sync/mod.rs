//! Synchronization primitives that park green threads: [`Mutex`], [`RwLock`], [`Condvar`],
//! [`Barrier`], [`Semaphore`], [`WaitGroup`], [`Once`] and [`OnceLock`].
//!
//! They have the API and semantics of their std counterparts (poisoning included;
//! `Semaphore` follows tokio's, `WaitGroup` crossbeam's) and work from green threads of
//! every model and from plain kernel threads, mixed on the same object: a green thread
//! that blocks parks only itself, and its worker runs other green threads meanwhile.
//!
//! Waiters are served in FIFO order. `Mutex` lets arriving threads barge past a woken
//! waiter (with a bound, see below); `RwLock` and `Semaphore` hand over strictly in order,
//! so that neither readers nor writers, nor large permit requests, can starve. Uncontended,
//! locking and unlocking (`Mutex`, `RwLock` both ways) and acquiring and releasing permits
//! are one atomic read-modify-write each, with no system call and no allocation.
//!
//! ## How they are built
//!
//! (The files named below are crate-private; each opens with the essay on its protocol.)
//!
//! - `spin_lock`: the small lock that guards every wait queue. Its sections never block.
//! - `biased_lock`: a spin lock whose owner kernel thread needs no read-modify-write
//!   (revoked with `membarrier` when another thread comes); the channels' lock, biased in
//!   many-to-one.
//! - `wait_list`: an intrusive FIFO; a blocked thread's entry lives on its own stack, so
//!   blocking allocates nothing.
//! - `waiter`: the hand-shake between a blocked thread and its waker, which makes sure a
//!   wake-up is never lost and an entry is never touched after its thread moved on.
//! - `wait_entry`: the entry (waiter plus request) of the primitives below the condvar,
//!   and the batch that wakes a group of entries after the queue lock is released.
//! - `raw_mutex`: the mutex protocol (one CAS to lock, one to unlock when uncontended;
//!   FIFO wake-ups with barging; bounded starvation through hand-off).
//! - `condvar`: waiters queue on the condvar; a notify moves them onto the
//!   mutex's queue, so `notify_all` wakes them one at a time.
//! - `raw_rwlock`: the reader-writer protocol (reader count and flags in one word; one
//!   FIFO queue served by hand-off, consecutive readers admitted together).
//! - `barrier`: a count and a list under the spin lock; the last arrival wakes the group.
//! - `semaphore`: free permits and a flag in one word; releases serve the FIFO queue in
//!   order, never letting a small request overtake a large one at the head.
//! - `wait_group`: a count of live handles; the last one out wakes every waiter.
//! - `once`: a state word (incomplete, running, complete, poisoned) and a queue of threads
//!   waiting for the runner; `once_lock` puts a value beside it.
//!
//! Every blocking wait ends in `crate::park`, the one way to block in spindle, and records
//! its own [`crate::WaitReason`].

pub(crate) mod barrier;
pub(crate) mod biased_lock;
pub(crate) mod condvar;
pub(crate) mod mutex;
pub(crate) mod once;
pub(crate) mod once_lock;
pub(crate) mod poison;
pub(crate) mod raw_mutex;
pub(crate) mod raw_rwlock;
pub(crate) mod rwlock;
pub(crate) mod semaphore;
pub(crate) mod spin_lock;
pub(crate) mod wait_entry;
pub(crate) mod wait_group;
pub(crate) mod wait_list;
pub(crate) mod waiter;

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard};
pub use once::{Once, OnceState};
pub use once_lock::OnceLock;
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use wait_group::WaitGroup;
