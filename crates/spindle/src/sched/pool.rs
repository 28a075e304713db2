//! The workers of a green-thread runtime, and how a green thread is spawned onto them.
//!
//! Both green models are a pool of workers ([`crate::sched::worker`]): many-to-one is a
//! pool of one worker that never steals, many-to-many a pool of N workers that steal
//! threads that never ran from each other (`sched/README.md`, "Many-to-many"). The driver
//! ([`GreenRuntime`]) owns the worker kernel threads and shuts them down when dropped; the
//! handle ([`PoolShared`]) is what workers, spawners and wakers share.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, SeqCst};
use std::sync::{Arc, Mutex};

use crossbeam_deque::{Injector, Steal, Stealer};

use crate::fork::Provenance;
use crate::io::{BlockingConfig, BlockingPool, IoBackend};
use crate::sched::context;
use crate::sched::hand_off::{DriverSlot, WorkerRef};
use crate::sched::idle::IdleSet;
use crate::sched::monitor::{self, Monitor, MonitorConfig};
use crate::sched::worker::{Worker, WorkerShared};
use crate::task::green::{Body, GreenTask};
use crate::task::packet::{Completion, ThreadMain};
use crate::task::scope::ScopeData;
use crate::task::thread::Thread;
use crate::task::{ThreadInner, ThreadKind};
use crate::thread::JoinHandle;

/// How a green-thread runtime is laid out.
pub(crate) struct PoolConfig {
    /// Number of worker kernel threads.
    pub(crate) workers: usize,
    /// Whether workers steal never-run threads from each other (many-to-many).
    pub(crate) steals: bool,
    /// Default usable stack size of green threads.
    pub(crate) stack_size: usize,
    /// Name prefix of the worker kernel threads.
    pub(crate) thread_name: &'static str,
    /// Whether started threads may move between kernel threads (hand-off of a stuck
    /// worker; `sched/hand_off.rs`).
    pub(crate) migrates: bool,
    /// The reactors' backend, resolved (not `Auto`).
    pub(crate) io_backend: IoBackend,
    /// Whether each worker's kernel thread samples its CPU clock (`sched/cpu_sampler.rs`).
    pub(crate) cpu_accounting: bool,
    /// Time slice and stall reporting.
    pub(crate) monitor: MonitorConfig,
    /// The helper pool of `spindle::unblock`.
    pub(crate) blocking: BlockingConfig,
}

/// What the workers, spawners and wakers of a green-thread runtime share.
pub(crate) struct PoolShared {
    pub(crate) workers: Vec<Arc<WorkerShared>>,
    /// Thieves' ends of the workers' `fresh` queues (empty when the pool does not steal).
    pub(crate) stealers: Vec<Stealer<Arc<ThreadInner>>>,
    /// Threads spawned from outside the runtime (many-to-many).
    injector: Injector<Arc<ThreadInner>>,
    /// Set by the last worker to exit; checked under the lock by outside spawners, so
    /// nothing is pushed into the injector after its final drain.
    injector_closed: Mutex<bool>,
    /// The workers asleep, for waking one when stealable work appears.
    pub(crate) idle: IdleSet,
    /// Set by the monitor when a worker is stuck with never-run threads in its `fresh`
    /// queue (and marked `stuck_with_fresh`); a busy worker takes it (clearing it) at its
    /// next look at its timers, and steals from the marked workers
    /// (`Worker::help_stuck_workers`). Sleeping workers need no flag: the monitor wakes
    /// one, and a woken worker steals.
    pub(crate) help_wanted: AtomicBool,
    pub(crate) steals: bool,
    /// The opt-in of `Builder::migrate_started_threads`.
    pub(crate) migrates: bool,
    /// Whether workers sample their CPU clocks (`sched/cpu_sampler.rs`).
    pub(crate) cpu_accounting: bool,
    /// Per worker: its driver state and the kernel thread driving it now.
    pub(crate) drivers: Vec<DriverSlot>,
    pub(crate) default_stack_size: usize,
    /// Set once by the runtime's drop.
    shutdown: AtomicBool,
    /// The process the runtime was built in (`fork.rs`).
    pub(crate) provenance: Provenance,
    /// Workers still running; the last one out closes the injector.
    running: AtomicUsize,
    /// Time slices and stall events (`sched/monitor.rs`).
    pub(crate) monitor: Monitor,
    /// The runtime-wide order of cancellation at shutdown.
    pub(crate) cancel_order: CancelOrder,
    /// Helper threads for `spindle::unblock` (`io/blocking_pool.rs`).
    pub(crate) blocking: Arc<BlockingPool>,
    /// Why the runtime shut itself down, when it did (`sched/all_asleep.rs`): what the
    /// joiners of its cancelled threads are told.
    shutdown_reason: Mutex<Option<String>>,
    /// The runtime's number in dumps (`debug/runtimes.rs`).
    pub(crate) debug_id: u64,
}

/// Shutdown cancels started threads youngest first across the whole runtime, not just per
/// worker: a thread waiting for threads that borrow its stack (a scope's owner) is older
/// than all of them, and must not be unwound while one of them, maybe on another worker,
/// is alive (sched/README.md, "Runtime shutdown").
///
/// Each worker publishes the start sequence of its youngest started thread left (`None`
/// once it has none; `u64::MAX` until it has looked) and cancels a thread only when no
/// other worker has published a younger one. Published values only go down, so a worker
/// may cache the others' maximum and skip the lock while its own threads are younger.
///
/// Waiting for a turn is the worker's (`Worker::wait_cancel_turn`): it sleeps in its
/// reactor, so that it still answers dump requests, and whoever changes a published value
/// wakes the other workers (`PoolShared::publish_cancel_turn`, `cancel_done`; the protocol
/// is in sched/README.md, "Runtime shutdown").
pub(crate) struct CancelOrder {
    youngest: Mutex<Vec<Option<u64>>>,
}

impl CancelOrder {
    fn new(workers: usize) -> CancelOrder {
        CancelOrder {
            youngest: Mutex::new(vec![Some(u64::MAX); workers]),
        }
    }

    /// Worker `me` wants to cancel its thread of start sequence `seq`: publishes it, and
    /// says whether the value changed and, if no other worker has published a younger one
    /// (its turn), the others' youngest: an upper bound the caller may cache.
    fn publish(&self, me: usize, seq: u64) -> (bool, Option<Option<u64>>) {
        let mut v = self.youngest.lock().unwrap_or_else(|e| e.into_inner());
        let changed = v[me] != Some(seq);
        v[me] = Some(seq);
        let others = v
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != me)
            .filter_map(|(_, s)| *s)
            .max();
        (changed, others.is_none_or(|o| o <= seq).then_some(others))
    }

    /// Worker `me` has no started thread left (or never started).
    fn done(&self, me: usize) {
        let mut v = self.youngest.lock().unwrap_or_else(|e| e.into_inner());
        v[me] = None;
    }
}

impl PoolShared {
    /// Worker `me` publishes its next victim's start sequence `seq` in the cancellation
    /// order (`CancelOrder`), waking the other workers if that changed it. Its turn:
    /// `Some` of the others' youngest; else `None`, and the caller waits (step 1 of the
    /// protocol in sched/README.md, "Runtime shutdown"; this is also step 3).
    pub(crate) fn publish_cancel_turn(&self, me: usize, seq: u64) -> Option<Option<u64>> {
        let (changed, turn) = self.cancel_order.publish(me, seq);
        if changed {
            self.notify_other_workers(me);
        }
        turn
    }

    /// Worker `me` has no started thread left, or never started: it is out of the
    /// cancellation order, and the other workers are woken (step 3).
    pub(crate) fn cancel_done(&self, me: usize) {
        self.cancel_order.done(me);
        self.notify_other_workers(me);
    }

    /// Wakes every worker but `me` as a remote waker does (the hint, then the wake).
    fn notify_other_workers(&self, me: usize) {
        for (i, w) in self.workers.iter().enumerate() {
            if i != me {
                w.notify();
            }
        }
    }

    /// Whether the runtime has been dropped (or has shut itself down).
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(SeqCst)
    }

    /// Asks the workers to cancel every green thread and exit, and the helper pool to
    /// wind down; returns without waiting. The runtime's drop joins them later.
    fn begin_shutdown(&self) {
        self.shutdown.store(true, SeqCst);
        self.blocking.shut_down();
        for w in &self.workers {
            w.request_shutdown();
        }
    }

    /// Shuts the runtime down from within (the monitor does, when every green thread is
    /// asleep for good and the builder asked for a panic): every thread is cancelled and
    /// its joiner gets `reason`.
    pub(crate) fn shut_down_because(&self, reason: String) {
        *self
            .shutdown_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(reason);
        self.begin_shutdown();
    }

    /// The reason given by [`PoolShared::shut_down_because`], if any.
    pub(crate) fn shutdown_reason(&self) -> Option<String> {
        self.shutdown_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether any worker could steal something now (step S3 of the idle handshake).
    pub(crate) fn has_stealable(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    /// Wakes one sleeping worker, if any, after stealable work was published (P2, P3).
    #[inline]
    pub(crate) fn wake_one(&self) {
        if let Some(w) = self.idle.pop_sleeper() {
            self.workers[w].unpark();
        }
    }

    /// Queues a green thread spawned from outside the runtime. Fails, giving the thread
    /// back, once the runtime has shut down.
    fn inject(&self, task: Arc<ThreadInner>) -> Result<(), Arc<ThreadInner>> {
        if !self.steals {
            return self.workers[0].push_remote(task);
        }
        {
            let closed = self
                .injector_closed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if *closed {
                return Err(task);
            }
            self.injector.push(task);
        }
        self.wake_one();
        Ok(())
    }

    /// How many threads wait in the injector (none of them has started).
    pub(crate) fn injected_len(&self) -> usize {
        self.injector.len()
    }

    /// Takes one thread from the injector, moving a batch more into `dest`.
    pub(crate) fn steal_injected(
        &self,
        dest: &crossbeam_deque::Worker<Arc<ThreadInner>>,
    ) -> Option<Arc<ThreadInner>> {
        retry(|| self.injector.steal_batch_and_pop(dest))
    }

    /// Takes the oldest thread of the injector.
    pub(crate) fn steal_one_injected(&self) -> Option<Arc<ThreadInner>> {
        retry(|| self.injector.steal())
    }

    /// A worker has finished its shutdown. The last one closes the injector and returns
    /// what is left in it (threads that never started) for the caller to drop.
    pub(crate) fn worker_exited(&self) -> Vec<Arc<ThreadInner>> {
        if self.running.fetch_sub(1, AcqRel) != 1 {
            return Vec::new();
        }
        *self
            .injector_closed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        std::iter::from_fn(|| self.steal_one_injected()).collect()
    }
}

/// Runs a steal operation until it gives a definite answer.
pub(crate) fn retry<T>(mut op: impl FnMut() -> Steal<T>) -> Option<T> {
    loop {
        match op() {
            Steal::Success(t) => return Some(t),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
}

/// A green-thread runtime: its pool and the worker kernel threads.
pub(crate) struct GreenRuntime {
    pub(crate) pool: Arc<PoolShared>,
    monitor: Option<std::thread::JoinHandle<()>>,
}

impl GreenRuntime {
    /// Starts the workers.
    pub(crate) fn start(config: PoolConfig) -> io::Result<GreenRuntime> {
        let n = config.workers;
        let workers = (0..n)
            .map(|_| WorkerShared::new(config.io_backend).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let mut fresh: Vec<Option<crossbeam_deque::Worker<Arc<ThreadInner>>>> = (0..n)
            .map(|_| config.steals.then(crossbeam_deque::Worker::new_lifo))
            .collect();
        let stealers = fresh.iter().flatten().map(|f| f.stealer()).collect();
        let pool = Arc::new(PoolShared {
            workers,
            stealers,
            injector: Injector::new(),
            injector_closed: Mutex::new(false),
            idle: IdleSet::new(),
            help_wanted: AtomicBool::new(false),
            steals: config.steals,
            migrates: config.migrates,
            cpu_accounting: config.cpu_accounting,
            drivers: (0..n).map(|_| DriverSlot::default()).collect(),
            default_stack_size: config.stack_size,
            shutdown: AtomicBool::new(false),
            provenance: Provenance::here(),
            running: AtomicUsize::new(n),
            monitor: Monitor::new(config.monitor),
            cancel_order: CancelOrder::new(n),
            blocking: Arc::new(BlockingPool::new(config.blocking)),
            shutdown_reason: Mutex::new(None),
            debug_id: crate::debug::runtimes::next_id(),
        });
        let mut runtime = GreenRuntime {
            pool: pool.clone(),
            monitor: None,
        };
        for (index, fresh) in fresh.iter_mut().enumerate() {
            let for_worker = pool.clone();
            let fresh = fresh.take();
            let name = if n == 1 {
                config.thread_name.to_string()
            } else {
                format!("{}-{index}", config.thread_name)
            };
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                // Crosses kernel threads only inside a `WorkerRef`, whose hand-off protocol
                // makes that sound (`sched/hand_off.rs`).
                #[allow(clippy::arc_with_non_send_sync)]
                let worker = Arc::new(Worker::new(for_worker.clone(), index, fresh));
                *for_worker.drivers[index]
                    .worker
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(WorkerRef(worker.clone()));
                worker.run();
            });
            match spawned {
                Ok(t) => {
                    *pool.drivers[index]
                        .thread
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(t);
                }
                Err(e) => {
                    // Workers already started are shut down by `runtime`'s drop; the ones
                    // that never started must not be waited for.
                    let missing = n - index;
                    for never_started in index..n {
                        pool.cancel_done(never_started);
                    }
                    pool.running.fetch_sub(missing - 1, AcqRel);
                    drop(pool.worker_exited());
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot start worker thread {index} of {n}: {e}"),
                    ));
                }
            }
        }
        let for_monitor = pool.clone();
        let monitor = std::thread::Builder::new()
            .name(format!("{}-monitor", config.thread_name))
            .spawn(move || monitor::run(for_monitor))
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start the monitor thread: {e}"))
            })?;
        pool.monitor.set_thread(monitor.thread().clone());
        runtime.monitor = Some(monitor);
        Ok(runtime)
    }
}

impl Drop for GreenRuntime {
    fn drop(&mut self) {
        if self.pool.provenance.is_inherited() {
            // A fork child: the workers and the monitor are not in this process, and their
            // state may be mid-change. Leave all of it as it is (fork.rs).
            std::mem::forget(self.monitor.take());
            return;
        }
        self.pool.begin_shutdown();
        // The monitor first: once it has exited, no hand-off can replace a driver.
        self.pool.monitor.unpark();
        if let Some(m) = self.monitor.take() {
            if m.join().is_err() {
                eprintln!("spindle: the monitor thread panicked");
            }
        }
        let from_own_green_thread =
            context::current_worker().is_some_and(|w| w.belongs_to(&self.pool));
        for (index, slot) in self.pool.drivers.iter().enumerate() {
            let t = slot.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some(t) = t else { continue };
            if from_own_green_thread {
                // Dropped from a green thread of this runtime: its worker cancels the rest
                // (this one included) once this thread next switches. Joining any worker
                // here would wait for ourselves: ours directly, and every other one
                // through the cancellation order (`CancelOrder`), which waits for our
                // worker to say which of its threads is youngest. So every worker is
                // detached and finishes on its own.
                drop(t);
            } else if t.join().is_err() {
                eprintln!("spindle: worker thread {index} panicked during shutdown");
            }
        }
    }
}

/// Spawns a green thread on `pool`.
///
/// From a green thread of the same runtime, the thread is queued on the spawner's worker:
/// in many-to-one its coroutine is made on the spot (stack from the worker's pool, no lock,
/// no system call) and it goes on the run queue; in many-to-many it goes into the worker's
/// `fresh` queue, where idle workers may steal it, and its coroutine is made by whichever
/// worker starts it. From anywhere else it goes through the injector (the only worker's
/// inbox in many-to-one).
///
/// # Safety
///
/// If `F` or `T` borrow (`'a` shorter than `'static`), the caller waits for the thread to
/// finish before the borrowed data goes away (a scope or `block_on` does).
pub(crate) unsafe fn spawn<'a, F, T>(
    pool: &PoolShared,
    name: Option<String>,
    stack_size: Option<usize>,
    scope: Option<Arc<ScopeData>>,
    f: F,
) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
{
    if pool.is_shut_down() {
        return Err(shut_down());
    }
    let size = stack_size.unwrap_or(pool.default_stack_size);
    // With migration on, green code never touches the local queues (`sched/hand_off.rs`):
    // its spawns take the path of spawns from outside.
    let local = context::current_worker().filter(|w| w.belongs_to(pool) && !w.migrates);
    if local.is_none() {
        // Only a spawn from outside can reach an inherited runtime in a fork child: there
        // no kernel thread is its worker.
        pool.provenance
            .check("spawn a green thread on this runtime")?;
    }
    let owner = match local {
        Some(w) => w.shared().clone(),
        None => pool.workers[0].clone(),
    };
    let inner = ThreadInner::new(name.map(Into::into), || {
        ThreadKind::Green(GreenTask::new(owner, Body::Finished, size, pool.debug_id))
    });
    // SAFETY: the entry goes into the record's body below (in the coroutine, or boxed),
    // so the record owns it; it is the record's only entry, for the handle made below.
    let entry = unsafe { ThreadMain::new(&inner, f, scope) };
    let main = move || entry.run(Completion::Now);
    let g = inner.green();
    if let Some(parent) = context::current_green() {
        // A child starts after its parent in the shutdown order (`CancelOrder`): its start
        // sequence is at least the parent's plus one, whichever worker starts it.
        // SAFETY: `parent` is the green thread running here, reading its own field; the new
        // record is not shared yet.
        unsafe {
            let parent_seq = (*parent.green().local_ptr()).start_seq;
            (*g.local_ptr()).start_seq = parent_seq + 1;
        }
    }
    match local {
        Some(worker) if !pool.steals => {
            // SAFETY: the borrow contract is passed on from our caller.
            let co = unsafe { worker.make_coroutine(&inner, size, main)? };
            // SAFETY: the thread is not queued yet; we are on its worker's kernel thread.
            unsafe { (*g.local_ptr()).body = Body::Coroutine(co) };
            worker.push_spawned(inner.clone());
        }
        _ => {
            let main: Box<dyn FnOnce() + Send + 'a> = Box::new(main);
            // SAFETY: only the lifetime changes; the caller waits for completion when `'a`
            // is not `'static` (this function's contract).
            let main: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(main) };
            // SAFETY: the record is not shared yet, so nothing else accesses it.
            unsafe { (*g.local_ptr()).body = Body::Unstarted(main) };
            match local {
                Some(worker) => worker.push_fresh(inner.clone()),
                None => {
                    if pool.inject(inner.clone()).is_err() {
                        // Drop the closure while the record is whole (its completer writes
                        // the record's result slot), not as part of the record's drop.
                        // SAFETY: the record was never queued; we hold the only reference.
                        drop(unsafe {
                            std::mem::replace(&mut (*g.local_ptr()).body, Body::Finished)
                        });
                        return Err(shut_down());
                    }
                }
            }
        }
    }
    Ok(JoinHandle::<T>::new(Thread::from_inner(inner)))
}

fn shut_down() -> io::Error {
    io::Error::other("cannot spawn a green thread: its runtime has been dropped")
}
