//! Child processes that park only the calling green thread, and what `fork()` does to a
//! runtime.
//!
//! [`Command`] mirrors `std::process::Command`: build a command, then [`Command::spawn`],
//! [`Command::status`] or [`Command::output`]. Waiting for the child ([`Child::wait`]) and
//! reading or writing its piped stdin, stdout and stderr ([`ChildStdin`], [`ChildStdout`],
//! [`ChildStderr`]) park only the calling green thread; from a kernel thread (one-to-one,
//! or outside any runtime) they block it, as std's do. [`Command::output`] reads stdout and
//! stderr at the same time: with two green threads on a green thread, and on a kernel
//! thread from that thread alone, polling both pipes as std does (no helper thread).
//!
//! ```
//! use spindle::process::Command;
//!
//! let rt = spindle::Runtime::builder().build()?;
//! let out = rt.block_on(|| Command::new("sh").arg("-c").arg("echo hello; exit 3").output())?;
//! assert_eq!(out.stdout, b"hello\n");
//! assert_eq!(out.status.code(), Some(3));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # How a child is started: posix_spawn, never fork
//!
//! A multi-threaded process that forks may run, in the child, only async-signal-safe code
//! until it calls `exec`: another thread may have held the allocator's lock (or a runtime's)
//! at the fork, and the child would deadlock on it. So spindle never forks to start a
//! program, and never runs Rust code in a child before its `exec`.
//!
//! It hands the command to std, and std on Linux with glibc 2.24 or later (and musl) starts
//! it with `posix_spawnp`, which glibc implements as `clone(CLONE_VM | CLONE_VFORK)` into
//! a small C routine that applies the file actions (the `dup2`s of the child's stdio, the
//! `chdir`) and calls `execve`: no fork handlers, no copy of the address space, no Rust code
//! in the child. std falls back to `fork` plus Rust code before `exec` only for settings
//! spindle's `Command` does not offer (a `pre_exec` closure, `uid`, `gid`, `groups`,
//! `chroot`), for a `current_dir` on a glibc without `posix_spawn_file_actions_addchdir_np`
//! (before 2.29), and when the command changes `PATH` and names its program without a `/`
//! (the lookup must then use the child's `PATH`, which `posix_spawnp` cannot). spindle
//! closes those last two doors itself: it looks the program up in the command's `PATH`
//! before handing the command over, and it refuses a `current_dir` with a clear error on a
//! glibc too old for it. The tests check it the direct way: a `pthread_atfork` handler
//! counts the forks while children are started, and sees none.
//!
//! `posix_spawnp` returns once the child has called `exec`; the calling kernel thread
//! waits for that (a fraction of a millisecond), the rest of the child's life it does not.
//!
//! # Waiting
//!
//! Each child gets a pidfd (`pidfd_open`, Linux 5.3), which becomes readable when the
//! child exits: [`Child::wait`] waits for it through the worker's reactor (epoll or
//! io_uring) and then reaps the child with std's `try_wait` (`waitpid` with `WNOHANG`).
//! Like std, a dropped [`Child`] is neither killed nor reaped, and a process that sets
//! `SIGCHLD` to `SIG_IGN` has its children reaped by the kernel, so waiting for them
//! fails with `ECHILD`.
//!
//! # fork()
//!
//! A spindle runtime belongs to the process that built it. After `fork()`, in the child:
//!
//! - every use of a runtime built before the fork fails at once with a message that says
//!   the runtime was inherited and what to do instead (exec a program, for which
//!   [`Command`] is the way that never forks, or build a new runtime): `Runtime::spawn`,
//!   `block_on`, `stall_events`, spawns onto it, and joining one of its threads (they do
//!   not exist in the child). Dropping it does nothing;
//! - if `fork()` was called from a green thread, that thread goes on in the child as its
//!   only thread, on its own stack, but without its worker: whatever would make it wait or
//!   queue work (a contended lock, an empty channel, `join`, `park`, `sleep`, `yield_now`,
//!   `unblock`, `spawn`) panics with that message, and an I/O wait returns it as an error.
//!   When its closure returns, the child exits with status 0 (101 if it panicked), as a
//!   process whose last thread ends: it never returns into the copy of its worker;
//! - the parent's threads that were waiting on a spindle primitive (a `Mutex`, `RwLock`,
//!   `Condvar`, `Semaphore`, a channel, a `select!`) are no longer among its waiters: an
//!   unlock, notify, permit or message in the child goes to the child's own waiters, or
//!   stays in the object when there are none, never to a thread that is not there;
//! - a new [`crate::Runtime`] built in the child works, with its own workers, reactor and
//!   stacks, and its `block_on` may be called from the thread that forked, green or not
//!   (from the green thread that forked, spawn onto it from inside that `block_on`).
//!
//! The fork handlers behind this, and why the runtimes' own locks need not be taken
//! around the fork, are described in the crate's `fork.rs`.

mod child;
mod command;
mod pipe;
mod stdio;

pub use child::Child;
pub use command::Command;
pub use pipe::{ChildStderr, ChildStdin, ChildStdout};
pub use std::process::{ExitStatus, Output};
pub use stdio::Stdio;
