//! The runtime: build one for a model, run green threads on it with `block_on`.
//!
//! ```
//! use spindle::{Model, Runtime};
//!
//! let rt = Runtime::builder().model(Model::ManyToOne).build()?;
//! let total: u64 = rt.block_on(|| {
//!     let hs: Vec<_> = (0..10u64).map(|i| spindle::spawn(move || i * 2)).collect();
//!     hs.into_iter().map(|h| h.join().unwrap()).sum()
//! });
//! assert_eq!(total, 90);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Lifetime
//!
//! A many-to-one or many-to-many runtime runs its green threads on kernel threads of its
//! own (its workers), so green threads spawned during one `block_on` keep running after it
//! returns, and a later `block_on` on the same runtime sees them. Dropping the runtime
//! cancels the green threads still alive: those that never ran are dropped; the others are
//! unwound on their own stacks, youngest first, so their destructors run. Their joiners
//! get an `Err` holding [`crate::thread::Cancelled`]. Drop returns once the worker has
//! exited, or at once when called from one of the runtime's own green threads (the worker
//! then cancels the rest as soon as that thread switches).
//!
//! Kernel threads of a one-to-one runtime are detached when the runtime is dropped, like
//! `std::thread`s whose handle is dropped: they cannot be cancelled.

mod model;

pub use crate::io::IoBackend;
pub use crate::sched::all_asleep::DEFAULT_GRACE as DEFAULT_ALL_ASLEEP_GRACE;
pub use crate::sched::cpu_sampler::SAMPLE_INTERVAL as CPU_SAMPLE_INTERVAL;
pub use crate::sched::monitor::{
    StallCause, StallEvent, DEFAULT_STALL_THRESHOLD, DEFAULT_TIME_SLICE, MAX_STALL_EVENTS,
};
pub use model::Model;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::debug::runtimes::RuntimeRef;
use crate::io::BlockingConfig;
use crate::sched::context;
use crate::sched::monitor::MonitorConfig;
use crate::sched::one_to_one::{self, OneToOneShared};
use crate::sched::pool::{self, GreenRuntime};
use crate::sched::{many_to_many, many_to_one};

/// The most workers a many-to-many runtime may have.
pub const MAX_WORKERS: usize = 1024;

/// Default usable stack size of a green thread: 256 KiB. Pages are committed only when
/// touched (or, for the top page of a stack carved in a batch, just before), so a thread
/// that uses 4 KiB costs 4 KiB of memory.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Configures and builds a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Builder {
    model: Model,
    stack_size: Option<usize>,
    monitor: MonitorConfig,
    blocking: BlockingConfig,
    migrates: bool,
    io_backend: Option<IoBackend>,
    cpu_accounting: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            model: Model::ManyToOne,
            stack_size: None,
            monitor: MonitorConfig::default(),
            blocking: BlockingConfig::default(),
            migrates: false,
            io_backend: None,
            cpu_accounting: true,
        }
    }
}

impl Builder {
    /// A builder for the many-to-one model with default settings.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The thread model (default: many-to-one).
    pub fn model(mut self, model: Model) -> Builder {
        self.model = model;
        self
    }

    /// The default stack size of green threads, in bytes (default [`DEFAULT_STACK_SIZE`]).
    /// In the one-to-one model it is the stack size of spawned kernel threads (default:
    /// std's).
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// The time slice after which [`crate::checkpoint`] yields (default
    /// [`DEFAULT_TIME_SLICE`], 10 ms). The runtime's monitor notices a slice used up to
    /// within half a slice. No effect in the one-to-one model, where the kernel slices.
    pub fn time_slice(mut self, slice: Duration) -> Builder {
        self.monitor.time_slice = slice;
        self
    }

    /// How long a worker may go without switching green threads before the monitor
    /// records a [`StallEvent`] (default [`DEFAULT_STALL_THRESHOLD`], 10 ms): a green
    /// thread in a raw blocking call, or computing without [`crate::checkpoint`]. In
    /// many-to-many the other workers then take the stuck worker's unstarted threads: a
    /// sleeping one at once, a busy one at its next look at its timers (within 64 switches
    /// or a used-up time slice). Not used in the one-to-one model.
    pub fn stall_threshold(mut self, threshold: Duration) -> Builder {
        self.monitor.stall_threshold = threshold;
        self
    }

    /// Whether the monitor prints each stall to stderr when it notices it and when it ends
    /// (default: no; [`Runtime::stall_events`] has them either way).
    pub fn report_stalls(mut self, yes: bool) -> Builder {
        self.monitor.report_stalls = yes;
        self
    }

    /// After how long the monitor says that every green thread of the runtime is asleep
    /// for good, or `None` never (default: [`DEFAULT_ALL_ASLEEP_GRACE`], 5 s). "Asleep for
    /// good": every thread parked, no timer, no I/O and no helper-pool work pending, so
    /// that only a thread outside the runtime could wake one (a deadlock, unless such a
    /// thread will). The monitor prints a warning with a dump of the runtime's threads to
    /// stderr, once until a thread runs again; see [`Builder::panic_when_all_asleep`].
    /// Not used in the one-to-one model.
    pub fn report_all_asleep(mut self, after: Option<Duration>) -> Builder {
        self.monitor.all_asleep_after = after;
        self
    }

    /// Instead of only warning when every green thread is asleep for good (see
    /// [`Builder::report_all_asleep`]), shut the runtime down: its threads are cancelled
    /// (their destructors run, as when a runtime is dropped) and [`Runtime::block_on`]
    /// panics with the report and the dump instead of hanging forever. The runtime refuses
    /// new work from then on. Default: no.
    pub fn panic_when_all_asleep(mut self, yes: bool) -> Builder {
        self.monitor.panic_when_all_asleep = yes;
        self
    }

    /// The most helper threads [`crate::unblock`] may use at once (default
    /// [`crate::io::DEFAULT_MAX_BLOCKING_THREADS`]); further calls queue for a helper. Not
    /// used in the one-to-one model, where `unblock` runs the call on the calling thread.
    pub fn max_blocking_threads(mut self, n: usize) -> Builder {
        self.blocking.max_threads = n;
        self
    }

    /// How long an idle helper thread of [`crate::unblock`] waits for work before it exits
    /// (default [`crate::io::DEFAULT_BLOCKING_IDLE_TIMEOUT`]).
    pub fn blocking_idle_timeout(mut self, timeout: Duration) -> Builder {
        self.blocking.idle_timeout = timeout;
        self
    }

    /// Lets the monitor move started green threads to another kernel thread when their
    /// worker is stuck (default: no).
    ///
    /// When one green thread holds its worker for longer than the stall threshold (a raw
    /// blocking system call, a long computation), the monitor hands the worker, with every
    /// ready thread queued on it, to a new kernel thread, as Go does for a processor whose
    /// thread sits in a system call; the stuck thread rejoins the worker when it switches.
    /// So no ready thread waits for the stuck one. Without this, only threads that never
    /// ran escape a stuck worker (other workers steal them). The cost is one atomic
    /// compare-and-swap per switch, and spawns and wakeups from green threads go through
    /// the shared queues instead of the worker's local ones.
    ///
    /// # Safety
    ///
    /// A green thread may continue on a different kernel thread after any switch (yield,
    /// park, sleep, a blocking spindle call, `checkpoint`). The caller guarantees that no
    /// green thread of this runtime holds a borrow of std thread-local storage (or anything
    /// else tied to the kernel thread, such as a std `MutexGuard` or a `!Send` value taken
    /// from a thread-local) across a switch, and that no green thread switches while it
    /// unwinds from a panic (a destructor that blocks on a spindle primitive during a
    /// panic): std counts panics per kernel thread. Green-thread-local storage
    /// ([`crate::local!`]) moves with its thread and is the sound alternative.
    pub unsafe fn migrate_started_threads(mut self, yes: bool) -> Builder {
        self.migrates = yes;
        self
    }

    /// Sets the kernel interface of the workers' reactors: [`IoBackend::Auto`] (io_uring
    /// where this process may use it, epoll otherwise), [`IoBackend::Epoll`] or
    /// [`IoBackend::IoUring`]. Without this call, the environment variable
    /// `SPINDLE_IO_BACKEND` (`auto`, `epoll`, `io_uring`; empty counts as unset) gives the
    /// backend, and `Auto` is the default. [`Runtime::io_backend`] says which one a
    /// runtime got. Ignored in the one-to-one model, whose kernel threads block in their
    /// system calls.
    pub fn io_backend(mut self, backend: IoBackend) -> Builder {
        self.io_backend = Some(backend);
        self
    }

    /// Turns CPU accounting per green thread on (the default) or off.
    ///
    /// With it on, each worker's kernel thread samples its own CPU clock every
    /// [`CPU_SAMPLE_INTERVAL`] of CPU time it uses (a POSIX CPU-time timer raising
    /// `SIGRTMIN + 6` on that thread) and charges the sample to the green thread running
    /// then; [`crate::Thread::cpu_time`] reports the total. A context switch costs nothing
    /// more. Turn it off if the program uses that signal itself, or to avoid the rare
    /// `EINTR` a sample can cause in a system call that Linux does not restart
    /// (`sched/cpu_sampler.rs` has the details). Ignored in the one-to-one model, whose
    /// threads' CPU time the kernel keeps.
    pub fn cpu_accounting(mut self, yes: bool) -> Builder {
        self.cpu_accounting = yes;
        self
    }

    /// Builds the runtime. Fails with `InvalidInput` and a message naming the setting if a
    /// setting is out of range, or with the system's error if a kernel thread cannot start.
    pub fn build(self) -> io::Result<Runtime> {
        let stack_size = self
            .stack_size
            .map(crate::stack::check_stack_size)
            .transpose()?;
        let green_stack = stack_size.unwrap_or(DEFAULT_STACK_SIZE);
        let monitor = self.monitor;
        if self.blocking.max_threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "runtime max_blocking_threads must be at least 1, got 0",
            ));
        }
        let blocking = self.blocking;
        let grace = monitor.all_asleep_after.unwrap_or(Duration::MAX);
        for (what, d) in [
            ("time_slice", monitor.time_slice),
            ("stall_threshold", monitor.stall_threshold),
            ("report_all_asleep", grace),
        ] {
            if d < Duration::from_millis(1) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("runtime {what} must be at least 1 ms, got {d:?}"),
                ));
            }
        }
        crate::fork::register_handlers();
        let io_backend = match self.model {
            Model::OneToOne => None,
            _ => Some(
                match self.io_backend {
                    Some(b) => b,
                    None => IoBackend::from_env()?,
                }
                .resolve()?,
            ),
        };
        let kind = match self.model {
            Model::ManyToOne => Kind::Green(many_to_one::start(
                green_stack,
                monitor,
                blocking,
                self.migrates,
                io_backend.expect("resolved for green models"),
                self.cpu_accounting,
            )?),
            Model::OneToOne => Kind::OneToOne(Arc::new(OneToOneShared::new(stack_size))),
            Model::ManyToMany { workers: 0 } => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "Model::ManyToMany needs at least 1 worker, got 0",
                ))
            }
            Model::ManyToMany { workers } if workers > MAX_WORKERS => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "Model::ManyToMany {{ workers: {workers} }}: at most {MAX_WORKERS} \
                         workers are supported"
                    ),
                ))
            }
            Model::ManyToMany { workers } => Kind::Green(many_to_many::start(
                workers,
                green_stack,
                monitor,
                blocking,
                self.migrates,
                io_backend.expect("resolved for green models"),
                self.cpu_accounting,
            )?),
        };
        let runtime = match &kind {
            Kind::Green(g) => RuntimeRef::Green(&g.pool),
            Kind::OneToOne(o) => RuntimeRef::OneToOne(o),
        };
        crate::debug::runtimes::register(self.model, io_backend, runtime);
        Ok(Runtime {
            model: self.model,
            io_backend,
            kind,
        })
    }
}

/// The index of the worker running the calling green thread (always 0 in many-to-one),
/// or `None` when called from a kernel thread that is not a worker.
///
/// A started green thread stays on its worker, so the answer does not change during its
/// life. Useful to see how work spreads, and in tests that need two threads on different
/// workers.
pub fn worker_index() -> Option<usize> {
    context::current_green()?;
    context::current_worker().map(|w| w.index())
}

enum Kind {
    Green(GreenRuntime),
    OneToOne(Arc<OneToOneShared>),
}

/// A spindle runtime: a model and the kernel threads that run its threads.
pub struct Runtime {
    model: Model,
    io_backend: Option<IoBackend>,
    kind: Kind,
}

impl Runtime {
    /// A [`Builder`] with default settings.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The runtime's model.
    pub fn model(&self) -> Model {
        self.model
    }

    /// The I/O backend the runtime's reactors run on: [`IoBackend::Epoll`] or
    /// [`IoBackend::IoUring`], never `Auto` (this is how to learn what `Auto` picked).
    /// `None` in the one-to-one model, which has no reactor: its kernel threads block in
    /// their system calls.
    pub fn io_backend(&self) -> Option<IoBackend> {
        self.io_backend
    }

    /// The stalls the monitor has recorded so far, oldest first: workers held by one green
    /// thread for longer than the stall threshold (see [`Builder::stall_threshold`]).
    /// Always empty in the one-to-one model.
    ///
    /// # Panics
    ///
    /// In a fork child, if the runtime was built in the parent (see [`crate::process`]).
    pub fn stall_events(&self) -> Vec<StallEvent> {
        match &self.kind {
            Kind::Green(g) => {
                g.pool
                    .provenance
                    .assert_here("read the stall events of this runtime");
                g.pool.monitor.events(&g.pool.workers)
            }
            Kind::OneToOne(_) => Vec::new(),
        }
    }

    /// Spawns a thread on this runtime from anywhere (a green thread in the many-to-one
    /// model, a kernel thread in the one-to-one model) and returns its handle.
    ///
    /// # Panics
    ///
    /// If the thread cannot be created (see [`crate::spawn`]).
    pub fn spawn<F, T>(&self, f: F) -> crate::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // SAFETY: `F` and `T` are `'static`: nothing borrowed can go away.
        let spawned = unsafe {
            match &self.kind {
                Kind::Green(g) => pool::spawn(&g.pool, None, None, None, f),
                Kind::OneToOne(rt) => one_to_one::spawn(Some(rt.clone()), None, None, None, f),
            }
        };
        spawned.unwrap_or_else(|e| panic!("failed to spawn thread: {e}"))
    }

    /// Runs `f` as the runtime's first thread and returns its result, waiting for it.
    ///
    /// In the many-to-one model `f` runs as a green thread on the runtime's worker; in the
    /// one-to-one model it runs on the calling kernel thread (or, when called from a green
    /// thread, on a new kernel thread of this runtime). Threads `f` spawns belong to this
    /// runtime. If `f` panics, the panic is resumed here. Called from a green thread, only
    /// that green thread waits.
    ///
    /// In a fork child, `block_on` of a runtime built in the child works from any thread,
    /// the one that called `fork()` included (if that was a green thread, it waits here as
    /// a kernel thread: its own runtime stayed in the parent; see [`crate::process`]).
    ///
    /// # Panics
    ///
    /// If `f` panics, or if the root thread cannot be created (see [`crate::spawn`]), for
    /// example because the runtime was built in the parent of this fork child.
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        if crate::fork::on_inherited_green_thread() {
            return crate::fork::as_kernel_thread(|| self.block_on(f));
        }
        match &self.kind {
            Kind::OneToOne(rt) if context::current_green().is_none() => {
                rt.provenance
                    .assert_here("block_on this one-to-one runtime");
                context::with_entered(rt.clone(), f)
            }
            kind => {
                let name = Some("main".to_string());
                // SAFETY: we wait for the root thread below before returning, and the wait
                // cannot unwind early: a green caller unwound from its park by its own
                // runtime's drop aborts in the `AbortIfUnwound` guard instead.
                let spawned = unsafe {
                    match kind {
                        Kind::Green(g) => pool::spawn(&g.pool, name, None, None, f),
                        Kind::OneToOne(rt) => {
                            one_to_one::spawn(Some(rt.clone()), name, None, None, f)
                        }
                    }
                };
                let handle = spawned.unwrap_or_else(|e| panic!("block_on: {e}"));
                let guard = context::AbortIfUnwound {
                    what: "a block_on waiting for its root thread",
                    still_borrowed: handle.still_running_check(),
                };
                // From a green thread of another runtime, the join counts as a wait outside
                // that runtime (`JoinHandle::join`, `sched/all_asleep.rs`).
                let joined = handle.join();
                std::mem::forget(guard);
                match joined {
                    Ok(v) => v,
                    // Cancelled, not panicked (the runtime shut down under it: dropped from
                    // one of its threads, or all asleep with `panic_when_all_asleep`): no
                    // panic message was printed yet, so panic with the reason.
                    Err(payload) => match payload.downcast::<crate::thread::Cancelled>() {
                        Ok(cancelled) => panic!("block_on: {cancelled}"),
                        Err(payload) => std::panic::resume_unwind(payload),
                    },
                }
            }
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("model", &self.model)
            .finish()
    }
}
