//! What a dump says about each thread: the public types of `spindle::debug`.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::io::IoBackend;
use crate::park::WaitReason;
use crate::runtime::Model;
use crate::task::thread::ThreadId;

/// One thread of a spindle runtime, as a dump saw it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ThreadInfo {
    /// Its id, as `spindle::current().id()` reports it.
    pub id: ThreadId,
    /// Its name, if it was given one.
    pub name: Option<String>,
    /// Whether it is a green thread (false: a kernel thread of a one-to-one runtime).
    pub green: bool,
    /// The runtime it belongs to (see [`RuntimeInfo::id`]).
    pub runtime: u64,
    /// The worker that owns it (a green thread that has started; `None` for one that has
    /// not, and for kernel threads).
    pub worker: Option<usize>,
    /// What it is doing.
    pub state: ThreadState,
    /// When it was spawned, to within a few milliseconds for green threads (the stamp of
    /// the monitor's latest tick: reading a clock would cost a spawn a sixth of its time).
    pub spawned_at: Instant,
    /// The CPU time (user plus system) it has used, as sampled by its runtime (see
    /// [`crate::Thread::cpu_time`]); for a kernel thread, its kernel CPU clock.
    pub cpu_time: Duration,
    /// How many times it has been switched in (green threads); for a kernel thread, the
    /// kernel's count of its context switches.
    pub switches: u64,
    /// Its usable stack size in bytes (0 for a green thread that has not started).
    pub stack_size: usize,
    /// How many bytes of its stack are resident in memory (`mincore(2)`; 0 for kernel
    /// threads, whose stacks the kernel and libc manage).
    pub stack_resident: usize,
    /// Where it waits: the symbolized backtrace of a green thread that is switched out
    /// (parked, sleeping, or queued after it ran), taken by [`snapshot`](super::snapshot)
    /// and the dumps, never by [`threads`](super::threads).
    pub backtrace: Option<Backtrace>,
}

/// What a thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThreadState {
    /// On a CPU: a green thread its worker is running (a dump sees this only for a
    /// thread that holds a worker that did not answer, or one that migration moved), or a
    /// kernel thread not parked in spindle.
    Running,
    /// Ready to run, waiting for its worker; `started` is false for one that never ran.
    Runnable {
        /// Whether it has run before.
        started: bool,
    },
    /// Parked until a wakeup (and until `until`, if that is set).
    Parked {
        /// What it waits for.
        reason: WaitReason,
        /// When the wait times out, if it has a timeout.
        until: Option<Instant>,
    },
    /// In `spindle::sleep` until `until`.
    Sleeping {
        /// When it wakes up.
        until: Instant,
    },
    /// Waiting for I/O on a descriptor (through the reactor, or an io_uring request).
    Io {
        /// What it waits for.
        reason: WaitReason,
        /// The descriptor.
        fd: RawFd,
        /// When the wait times out, if it has a timeout.
        until: Option<Instant>,
    },
    /// In `spindle::unblock`, waiting for the helper pool to run its call.
    Unblock,
}

impl ThreadState {
    /// The wait reason, for a thread that waits.
    pub fn wait_reason(&self) -> Option<WaitReason> {
        match *self {
            ThreadState::Parked { reason, .. } | ThreadState::Io { reason, .. } => Some(reason),
            ThreadState::Sleeping { .. } => Some(WaitReason::Sleep),
            ThreadState::Unblock => Some(WaitReason::Unblock),
            ThreadState::Running | ThreadState::Runnable { .. } => None,
        }
    }
}

/// A symbolized backtrace. Threads waiting at the same place share one (`Clone` is cheap).
#[derive(Clone, Debug)]
pub struct Backtrace {
    pub(crate) frames: Arc<[Frame]>,
}

impl Backtrace {
    /// The frames, innermost first: the first is where the thread switched out (inside
    /// spindle's park), the last its entry point.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }
}

/// One frame of a [`Backtrace`]: a return address and what it resolves to (several
/// symbols where functions were inlined into each other, innermost first).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Frame {
    /// The instruction address.
    pub ip: usize,
    /// What it resolves to; empty if it resolves to nothing.
    pub symbols: Vec<Symbol>,
}

/// A function at a [`Frame`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Symbol {
    /// The demangled name, without the hash.
    pub name: Option<String>,
    /// The source file, if the binary has line tables.
    pub file: Option<PathBuf>,
    /// The line in it.
    pub line: Option<u32>,
}

/// A runtime, as a dump saw it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RuntimeInfo {
    /// A number for the runtime, unique in the process (in order of creation).
    pub id: u64,
    /// Its model.
    pub model: Model,
    /// Its I/O backend (`None` in one-to-one).
    pub io_backend: Option<IoBackend>,
    /// Its workers (none in one-to-one).
    pub workers: Vec<WorkerInfo>,
    /// Green threads that have not started and wait in a queue other workers may steal
    /// from: such a queue cannot be walked, so they are counted, not listed.
    pub unlisted_unstarted: usize,
}

/// A worker of a green-thread runtime, as a dump saw it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its index (0 in many-to-one).
    pub index: usize,
    /// Whether it described its threads. A worker held by one green thread (a long
    /// computation, a blocking call) cannot until that thread switches: the dump waits
    /// [`ANSWER_TIMEOUT`](super::ANSWER_TIMEOUT) for it, then goes on without its threads.
    pub answered: bool,
    /// The green thread holding it, for a worker that did not answer.
    pub running: Option<ThreadId>,
}

/// Every spindle thread of the process at one moment (each worker describes its threads
/// at its own next switch, so "one moment" is per worker).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Snapshot {
    /// When the dump was asked for.
    pub taken_at: SystemTime,
    /// The runtimes, in order of creation.
    pub runtimes: Vec<RuntimeInfo>,
    /// The threads, by runtime, then by id.
    pub threads: Vec<ThreadInfo>,
}
