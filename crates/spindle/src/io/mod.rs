//! I/O that does not block the kernel thread, and the way out for calls that must.
//!
//! So far: [`unblock`], which runs a blocking closure on a helper thread of the runtime
//! while only the calling green thread waits. The reactor (epoll, io_uring) comes next.

mod blocking_pool;
mod unblock;

pub(crate) use blocking_pool::{BlockingConfig, BlockingPool};
pub use blocking_pool::{DEFAULT_BLOCKING_IDLE_TIMEOUT, DEFAULT_MAX_BLOCKING_THREADS};
pub use unblock::unblock;
