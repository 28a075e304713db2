//! I/O that does not block the kernel thread, and the way out for calls that must.
//!
//! Each worker's reactor (epoll or io_uring, see [`IoBackend`]), with [`wait_readable`] and
//! [`wait_writable`] for any descriptor, and [`unblock`], which runs a blocking closure on a
//! helper thread of the runtime while only the calling green thread waits. Sockets are in
//! [`crate::net`], files in [`crate::fs`].

mod backend;
mod blocking_pool;
pub(crate) mod reactor;
mod unblock;

pub use backend::{IoBackend, IO_BACKEND_ENV};

pub(crate) use reactor::Reactor;
pub use reactor::{wait_readable, wait_writable};
pub(crate) use reactor::{wait_until, Interest};

pub(crate) use blocking_pool::{BlockingConfig, BlockingPool};
pub use blocking_pool::{DEFAULT_BLOCKING_IDLE_TIMEOUT, DEFAULT_MAX_BLOCKING_THREADS};
pub use unblock::unblock;
