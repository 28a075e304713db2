//! A worker: one kernel thread that runs green threads.
//!
//! The driver ([`Worker`]) lives on the worker's kernel thread and owns the run queue, the
//! timers, the stack pool and the registry of started green threads; nothing else touches
//! them, so they need no locks. In many-to-many it also owns the push-and-pop end of its
//! `fresh` queue, whose other end thieves steal from. The handle ([`WorkerShared`]) is what
//! other kernel threads use: an inbox for green threads made runnable from elsewhere
//! (remote unparks and spawns), and the flags of the idle-sleep protocol. Both protocols,
//! and the order in which a worker picks its next thread, are in `sched/README.md`.

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corosensei::CoroutineResult;

use crate::debug::gdb_root::{self, GdbWorker};
use crate::debug::request::DumpRequest;
use crate::io::{IoBackend, Reactor};
use crate::ring::Ring;
use crate::sched::context;
use crate::sched::cpu_sampler::CpuSampler;
use crate::sched::hand_off::{self, DriverWord, Filing};
use crate::sched::monitor::WorkerWatch;
use crate::sched::pool::{retry, PoolShared};
use crate::sched::timers::{Timer, TimerAction, Timers};
use crate::stack::{self, StackPool};
use crate::task::green::{Body, GreenCoroutine, GreenYielder, Resume, Suspend};
use crate::task::packet::set_cancel_reason;
use crate::task::ThreadInner;

mod dump;

/// How often (in switches) a busy worker looks at its timers and its reactor; it also
/// looks after any switch that ends a used-up time slice.
const TIMER_CHECK_INTERVAL: u32 = 64;

/// How often (in picks) a worker reverses its queue priorities for one pick (injector,
/// then yielded threads first), so that no queue starves.
const FAIRNESS_INTERVAL: u32 = 61;

/// How often (in picks) a worker runs its *oldest* unstarted thread instead of the newest,
/// so that an old spawn cannot wait forever behind newer ones. Rarer than the other
/// fairness pick on purpose: each such pick starts a new subtree of a spawn tree, and
/// subtrees running side by side each hold their stacks (every 61 picks made skynet in
/// many-to-one three times slower, all of it in stacks given back to the system and
/// faulted in again; sched/README.md). An unstarted thread waits at most this many picks
/// per older unstarted thread of its worker.
const OLDEST_FRESH_INTERVAL: u32 = 4093;

/// The reason joiners of threads cancelled by a runtime drop are given.
const SHUTDOWN_CANCEL_REASON: &str = "spindle: green thread cancelled: its runtime was dropped";

/// The reason given when nothing more specific is known.
const DEFAULT_CANCEL_REASON: &str = "spindle: green thread cancelled before it ran";

/// Idle stack bytes a worker keeps committed before it returns memory to the system.
const POOL_KEEP_BYTES: usize = 64 << 20;

/// The part of a worker other kernel threads use.
pub(crate) struct WorkerShared {
    /// Green threads made runnable by other kernel threads, and the closed flag.
    inbox: Mutex<Inbox>,
    /// Hint that `inbox` may be non-empty (or that shutdown was asked): checked at every
    /// switch with a relaxed load, so the worker does not take the lock for nothing.
    inbox_hint: AtomicBool,
    /// True while the worker is, or is about to be, asleep in `idle_wait`.
    sleeping: AtomicBool,
    /// Set once by `Runtime` drop: cancel everything and exit.
    shutdown: AtomicBool,
    /// Where the worker sleeps and learns of ready descriptors; waking it writes its
    /// eventfd (`io/reactor/`).
    pub(crate) reactor: Reactor,
    /// What the monitor watches (`sched/monitor.rs`).
    pub(crate) watch: WorkerWatch,
    /// Who may touch the driver state, with migration on (`sched/hand_off.rs`).
    pub(crate) driver: DriverWord,
}

#[derive(Default)]
struct Inbox {
    tasks: Vec<Arc<ThreadInner>>,
    /// Threads an old driver gives back after a hand-off, with how they came back.
    handed: Vec<(Arc<ThreadInner>, Filing)>,
    /// Dump requests to answer (`debug/request.rs`), with this worker's slot in each.
    dumps: Vec<(Arc<DumpRequest>, usize)>,
    closed: bool,
}

impl WorkerShared {
    pub(crate) fn new(io_backend: IoBackend) -> io::Result<WorkerShared> {
        Ok(WorkerShared {
            inbox: Mutex::new(Inbox::default()),
            inbox_hint: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            reactor: Reactor::new(io_backend)?,
            watch: WorkerWatch::new(),
            driver: DriverWord::new(),
        })
    }

    /// Whether the worker is, or is about to be, asleep with nothing to run.
    pub(crate) fn is_sleeping(&self) -> bool {
        self.sleeping.load(Relaxed)
    }

    /// Makes `task` runnable on this worker: straight onto the run queue when called on
    /// the worker's own kernel thread, through the inbox otherwise.
    pub(crate) fn schedule(&self, task: Arc<ThreadInner>) {
        if let Some(w) = context::current_worker() {
            // With migration on, green code never touches the local queues: the worker
            // may have been handed to another kernel thread under it.
            if w.drives(self) && !w.migrates {
                w.push_back(task);
                return;
            }
        }
        if crate::fork::belongs_to_parent(task.id) {
            // A fork child waking a thread of the parent's: it does not exist here, and its
            // worker's inbox may have been locked at the fork. Nothing to wake; the record
            // is left as the parent had it (fork.rs).
            std::mem::forget(task);
            return;
        }
        if let Err(task) = self.push_remote(task) {
            // The worker has shut down and every started thread on it was cancelled, so
            // this record holds no coroutine any more; dropping it is all there is to do.
            drop(task);
        }
    }

    /// Pushes `task` into the inbox and wakes the worker if it sleeps. Fails, giving the
    /// task back, once the worker has shut down.
    pub(crate) fn push_remote(&self, task: Arc<ThreadInner>) -> Result<(), Arc<ThreadInner>> {
        {
            let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
            if inbox.closed {
                return Err(task);
            }
            inbox.tasks.push(task);
        }
        self.notify();
        Ok(())
    }

    /// Gives back a thread after a hand-off (`sched/hand_off.rs`). Fails, giving the task
    /// back, once the worker has shut down.
    pub(crate) fn push_handed(
        &self,
        task: Arc<ThreadInner>,
        filing: Filing,
    ) -> Result<(), Arc<ThreadInner>> {
        {
            let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
            if inbox.closed {
                return Err(task);
            }
            inbox.handed.push((task, filing));
        }
        self.notify();
        Ok(())
    }

    /// The waker's half of the idle-sleep protocol (sched/README.md): publish the hint,
    /// then wake the worker if it may be asleep. Also how a worker waiting for its turn
    /// in the cancellation order learns of a change (`PoolShared::publish_cancel_turn`).
    pub(crate) fn notify(&self) {
        self.inbox_hint.store(true, SeqCst);
        if self.sleeping.load(SeqCst) {
            self.unpark();
        }
    }

    /// Asks the worker to describe its threads into `slot` of `request` at its next safe
    /// point (`debug/request.rs`). Fails once the worker has shut down.
    pub(crate) fn push_dump(&self, request: Arc<DumpRequest>, slot: usize) -> bool {
        {
            let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
            if inbox.closed {
                return false;
            }
            inbox.dumps.push((request, slot));
        }
        self.notify();
        true
    }

    /// Wakes the worker's kernel thread (a spurious wakeup if it is not asleep).
    pub(crate) fn unpark(&self) {
        self.reactor.wake();
    }

    /// Asks the worker to cancel its green threads and exit.
    pub(crate) fn request_shutdown(&self) {
        self.shutdown.store(true, SeqCst);
        self.notify();
    }
}

/// The driver of a worker; lives on the worker's kernel thread.
pub(crate) struct Worker {
    shared: Arc<WorkerShared>,
    pool: Arc<PoolShared>,
    /// This worker's position in `pool.workers`.
    index: usize,
    /// Spawned here and never run, stealable (many-to-many only).
    fresh: Option<crossbeam_deque::Worker<Arc<ThreadInner>>>,
    /// Spawned here and never run, with their coroutine made (many-to-one only): the
    /// same order as `fresh`, newest first, without a deque's fences.
    fresh_local: UnsafeCell<Ring<Arc<ThreadInner>>>,
    /// Started threads that were woken (by an unpark, a timer or the inbox).
    runq: UnsafeCell<Ring<Arc<ThreadInner>>>,
    /// Started threads that yielded: they run after every other queued thread.
    yielded: UnsafeCell<Ring<Arc<ThreadInner>>>,
    timers: UnsafeCell<Timers>,
    stacks: UnsafeCell<StackPool>,
    /// Started green threads (their coroutine exists), for shutdown and dumps. The entries
    /// hold no count: a started thread is kept alive by its queue reference (sched/README.md)
    /// until `retire` removes it from here.
    registry: UnsafeCell<Vec<*const ThreadInner>>,
    /// Start sequence for the next coroutine made here: shutdown unwinds youngest first.
    next_start: std::cell::Cell<u64>,
    /// Where the next steal starts looking, so that victims take turns.
    steal_rotor: std::cell::Cell<usize>,
    /// Resumes so far (mirrored into `shared.watch.switches` for the monitor).
    switches: std::cell::Cell<u64>,
    /// Whether started threads may move to another kernel thread (the opt-in).
    pub(crate) migrates: bool,
    /// The thread being resumed (migration: the one an old driver keeps at a hand-off).
    resuming: std::cell::Cell<*const ThreadInner>,
    /// Threads still running on a kernel thread that lost this worker at a hand-off; their
    /// coroutine is in use, so shutdown must not touch them.
    away: UnsafeCell<Vec<*const ThreadInner>>,
    /// What a debugger reads of this worker (`debug/gdb_root.rs`).
    gdb: &'static GdbWorker,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // However the worker ends (a panic included): its registry goes with it.
        self.gdb.release();
    }
}

impl Worker {
    pub(crate) fn new(
        pool: Arc<PoolShared>,
        index: usize,
        fresh: Option<crossbeam_deque::Worker<Arc<ThreadInner>>>,
    ) -> Worker {
        let gdb = GdbWorker::claim(pool.debug_id, index, &pool.workers[index].watch.running);
        Worker {
            gdb,
            shared: pool.workers[index].clone(),
            migrates: pool.migrates,
            pool,
            index,
            fresh,
            fresh_local: UnsafeCell::new(Ring::default()),
            runq: UnsafeCell::new(Ring::with_capacity(1024)),
            yielded: UnsafeCell::new(Ring::default()),
            timers: UnsafeCell::new(Timers::default()),
            stacks: UnsafeCell::new(StackPool::new(POOL_KEEP_BYTES)),
            registry: UnsafeCell::new(Vec::new()),
            next_start: std::cell::Cell::new(0),
            steal_rotor: std::cell::Cell::new(index),
            switches: std::cell::Cell::new(0),
            resuming: std::cell::Cell::new(std::ptr::null()),
            away: UnsafeCell::new(Vec::new()),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<WorkerShared> {
        &self.shared
    }

    /// The runtime this worker belongs to.
    pub(crate) fn pool(&self) -> &Arc<PoolShared> {
        &self.pool
    }

    /// Whether this worker belongs to `pool`.
    pub(crate) fn belongs_to(&self, pool: &PoolShared) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.pool), pool)
    }

    /// This worker's position in its pool.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Whether the running green thread has used up its time slice (the monitor says
    /// so by setting `preempt_at` to the current switch count).
    #[inline]
    pub(crate) fn slice_used_up(&self) -> bool {
        // The atomics, not `switches`: with migration on, the worker may be driven by
        // another kernel thread while this green thread still runs here.
        let watch = &self.shared.watch;
        watch.preempt_at.load(Relaxed) == watch.switches.load(Relaxed)
    }

    // The accessors below hand out short-lived `&mut` to worker-owned fields. All of them
    // are called only by the kernel thread that drives the worker, from scheduler code: the
    // `Worker` is reachable through `context::current_worker` on its driving thread (and,
    // after a hand-off, on the old one, whose green code only reads immutable fields and
    // atomics: spawns and wakeups take the shared paths when `migrates`), and ownership
    // moves between kernel threads only through the hand-off protocol of
    // `sched/hand_off.rs`. No caller keeps the borrow across a call that could reach
    // another accessor of the same field (in particular never across a coroutine resume).

    #[allow(clippy::mut_from_ref)]
    fn runq(&self) -> &mut Ring<Arc<ThreadInner>> {
        // SAFETY: see the comment above the accessors.
        unsafe { &mut *self.runq.get() }
    }

    #[allow(clippy::mut_from_ref)]
    fn away(&self) -> &mut Vec<*const ThreadInner> {
        // SAFETY: see the comment above the accessors.
        unsafe { &mut *self.away.get() }
    }

    #[allow(clippy::mut_from_ref)]
    fn yielded(&self) -> &mut Ring<Arc<ThreadInner>> {
        // SAFETY: see the comment above the accessors.
        unsafe { &mut *self.yielded.get() }
    }

    #[allow(clippy::mut_from_ref)]
    fn fresh_local(&self) -> &mut Ring<Arc<ThreadInner>> {
        // SAFETY: see the comment above the accessors.
        unsafe { &mut *self.fresh_local.get() }
    }

    #[allow(clippy::mut_from_ref)]
    fn timers(&self) -> &mut Timers {
        // SAFETY: see the comment above the accessors.
        unsafe { &mut *self.timers.get() }
    }

    #[allow(clippy::mut_from_ref)]
    fn stacks(&self) -> &mut StackPool {
        // SAFETY: see the comment above the accessors.
        unsafe { &mut *self.stacks.get() }
    }

    #[allow(clippy::mut_from_ref)]
    fn registry(&self) -> &mut Vec<*const ThreadInner> {
        // SAFETY: see the comment above the accessors.
        unsafe { &mut *self.registry.get() }
    }

    /// Whether this driver drives `shared`.
    pub(crate) fn drives(&self, shared: &WorkerShared) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.shared), shared)
    }

    /// Appends a runnable green thread to the local run queue.
    pub(crate) fn push_back(&self, task: Arc<ThreadInner>) {
        self.runq().push_back(task);
    }

    /// Queues a thread spawned here whose coroutine is made (many-to-one).
    pub(crate) fn push_spawned(&self, task: Arc<ThreadInner>) {
        self.fresh_local().push_back(task);
    }

    /// Queues a never-run thread spawned here where idle workers can steal it, and wakes
    /// one if any sleeps (many-to-many).
    pub(crate) fn push_fresh(&self, task: Arc<ThreadInner>) {
        let fresh = self
            .fresh
            .as_ref()
            .expect("push_fresh on a worker that does not steal");
        fresh.push(task);
        self.pool.wake_one();
    }

    /// Creates the coroutine of a green thread owned by this worker and registers the
    /// thread as started.
    ///
    /// # Safety
    ///
    /// Data borrowed by `main` must stay valid until the coroutine has returned or been
    /// dropped (spawn paths without `'static` bounds guarantee this by waiting).
    pub(crate) unsafe fn make_coroutine<F>(
        &self,
        task: &ThreadInner,
        stack_size: usize,
        main: F,
    ) -> io::Result<GreenCoroutine>
    where
        F: FnOnce() + Send,
    {
        let stack = self.stacks().take(stack_size)?;
        // SAFETY: passed on from our caller.
        Ok(unsafe { self.make_coroutine_on(task, stack, main) })
    }

    /// [`Worker::make_coroutine`] on a stack already taken from this worker's pool.
    ///
    /// # Safety
    ///
    /// As for `make_coroutine`.
    unsafe fn make_coroutine_on<F>(
        &self,
        task: &ThreadInner,
        stack: crate::stack::GreenStack,
        main: F,
    ) -> GreenCoroutine
    where
        F: FnOnce() + Send,
    {
        let g = task.green();
        let local = g.local_ptr();
        let (guard_start, guard_end) = stack.guard_range();
        // SAFETY: we are on the owning worker's thread and the green thread has not
        // started, so nothing else accesses its local part.
        unsafe {
            let o = &mut (*local).overflow;
            o.guard_start = guard_start;
            o.guard_end = guard_end;
            o.id = task.id.as_u64().get();
            o.stack_size = stack.usable_size();
            if let Some(name) = task.name.as_deref() {
                o.name_ptr = name.as_ptr();
                o.name_len = name.len();
            }
        }
        let body = move |yielder: &GreenYielder, _first: Resume| {
            /// Unsettles the thread (`GreenTask::settled`) as its body ends, before the
            /// switch out of it.
            struct Unsettle<'a>(Option<&'a AtomicBool>);
            impl Drop for Unsettle<'_> {
                fn drop(&mut self) {
                    if let Some(settled) = self.0 {
                        settled.store(false, Relaxed);
                    }
                }
            }
            let me = context::current_green();
            let _unsettle = Unsettle(me.map(|me| &me.green().settled));
            if let Some(me) = me {
                // SAFETY: `me` is this coroutine's own record, running on its worker.
                unsafe { (*me.green().local_ptr()).yielder = yielder };
                me.green().settled.store(true, Relaxed);
            }
            // Cancelled before it ever ran (shutdown resumes it once for this): drop the
            // closure here, on the thread's own stack and as the thread, so that what it
            // captured is dropped with a proper green context.
            if context::is_cancelling() {
                drop(main);
            } else {
                main();
            }
        };
        // SAFETY: the caller guarantees `main`'s borrows outlive the coroutine.
        let co = unsafe { GreenCoroutine::with_stack_unchecked(stack, body) };
        let reg = self.registry();
        // A Lamport clock along spawn edges: later than anything started here before, and
        // than the spawner (whose sequence plus one `pool::spawn` left in `start_seq`).
        // SAFETY: as above.
        let seq = self.next_start.get().max(unsafe { (*local).start_seq });
        self.next_start.set(seq + 1);
        // SAFETY: as above, exclusive access on the owning thread.
        unsafe {
            (*local).registry_index = reg.len();
            (*local).start_seq = seq;
        }
        reg.push(task);
        self.shared.watch.live.store(reg.len(), Relaxed);
        self.gdb.publish(reg.as_ptr(), reg.len());
        if gdb_root::layout_wanted() {
            self.publish_gdb_layout(task);
        }
        co
    }

    /// Publishes the layout a debugger needs (`debug/gdb_root.rs`), measured on `task` and
    /// on a probe coroutine suspended once.
    #[cold]
    fn publish_gdb_layout(&self, task: &ThreadInner) {
        // No stack for the probe now (memory is short): try again at the next start.
        let Ok(probe_stack) = self.stacks().take(stack::MIN_STACK_SIZE) else {
            return;
        };
        let measured = Some(probe_stack).and_then(|probe_stack| {
            let (low, high) = (probe_stack.guard_range().1, probe_stack.base());
            let probe = GreenCoroutine::with_stack(probe_stack, |y: &GreenYielder, _| {
                y.suspend(Suspend::Yield);
            });
            let mut body = Body::Coroutine(probe);
            if let Body::Coroutine(probe) = &mut body {
                let _ = probe.resume(Resume::Run);
            }
            let measured = gdb_root::measure_coroutine(&body, low, high);
            if let Body::Coroutine(mut probe) = body {
                let _ = probe.resume(Resume::Run); // to its end
                self.stacks().give_back(probe.into_stack());
            }
            measured
        });
        gdb_root::publish_layout(task, measured);
    }

    /// Drives green threads until shutdown, then cancels the remaining ones.
    pub(crate) fn run(&self) {
        self.drive();
    }

    /// Drives a worker just handed over from a kernel thread stuck in a resume
    /// (`sched/hand_off.rs`): the thread that one still runs is away until it comes back.
    pub(crate) fn drive_handed_off(&self) {
        let stuck = self.resuming.replace(std::ptr::null());
        if !stuck.is_null() {
            self.away().push(stuck);
            self.shared.watch.away.store(self.away().len(), Relaxed);
        }
        self.drive();
    }

    /// Makes this kernel thread the worker's driver and runs the scheduler loop until
    /// shutdown (then cancels what is left) or until the worker is handed to another
    /// kernel thread.
    fn drive(&self) {
        context::set_current_worker(self);
        stack::prepare_thread_for_green_stacks();
        // Samples this kernel thread's CPU clock for as long as it drives (a kernel thread
        // that takes the worker over after a hand-off starts its own).
        let _sampler = self.pool.cpu_accounting.then(|| match CpuSampler::start() {
            Ok(sampler) => Some(sampler),
            Err(e) => {
                eprintln!(
                    "spindle: worker {}: CPU accounting is off on this kernel thread: \
                     cannot arm its CPU-time timer: {e}",
                    self.index
                );
                None
            }
        });
        self.shared
            .watch
            .tid
            .store(rustix::thread::gettid().as_raw_nonzero().get(), Relaxed);
        crate::sched::stall_backtrace::set_capture(&self.shared.watch.stall_capture);
        if self.schedule_until_shutdown() {
            self.cancel_all();
            // Requests of cancelled waiters hold their records, and so this worker's
            // reactor: reap them (io/reactor/uring.rs, "Dropping the ring").
            self.shared.reactor.drain();
            // The last worker out closes the injector; threads left in it never started.
            for task in self.pool.worker_exited() {
                drop(self.drop_if_unstarted(task));
            }
            self.pool.drivers[self.index]
                .worker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
        }
        crate::sched::stall_backtrace::set_capture(std::ptr::null());
        context::set_current_worker(std::ptr::null());
    }

    /// The scheduler loop. Returns true at shutdown, false if the worker was handed to
    /// another kernel thread (migration), in which case this one must not touch it again.
    fn schedule_until_shutdown(&self) -> bool {
        let mut tick: u32 = 0;
        // The monitor's last "slice used up" mark this loop has acted on: a new mark means
        // a thread just held the worker for a whole slice, which is too long to leave the
        // timers and the reactor to the next 64th switch (behind a thread that computes
        // and calls `checkpoint`, each switch is a slice).
        let mut preempt_seen = self.shared.watch.preempt_at.load(Relaxed);
        loop {
            if self.shared.inbox_hint.load(Relaxed) {
                // Drain (which clears the hint) before looking at `shutdown`: a shutdown
                // requested after that look sets the hint again, so it is seen next time.
                self.drain_inbox();
                if self.shared.shutdown.load(SeqCst) {
                    break;
                }
            }
            tick = tick.wrapping_add(1);
            let preempt_at = self.shared.watch.preempt_at.load(Relaxed);
            if tick % TIMER_CHECK_INTERVAL == 0 || preempt_at != preempt_seen {
                preempt_seen = preempt_at;
                if !self.timers().is_empty() {
                    self.fire_timers(Instant::now());
                }
                if self.shared.reactor.has_pending() {
                    self.shared.reactor.poll(Some(Duration::ZERO));
                }
                if let Some(fresh) = &self.fresh {
                    if self.pool.help_wanted.load(Relaxed) {
                        self.help_stuck_workers(fresh);
                    }
                }
            }
            let next = match &self.fresh {
                None => self.next_local(tick),
                Some(fresh) => self.next_stealing(fresh, tick),
            };
            match next {
                Some(task) => {
                    if !self.run_task(task) {
                        return false;
                    }
                }
                None => self.idle(),
            }
        }
        true
    }

    /// The next thread of a many-to-one worker, in the order of `sched/README.md`.
    #[inline]
    fn next_local(&self, tick: u32) -> Option<Arc<ThreadInner>> {
        if tick % FAIRNESS_INTERVAL == 0 {
            if let Some(t) = self.yielded().pop_front() {
                return Some(t);
            }
        }
        if tick % OLDEST_FRESH_INTERVAL == 0 {
            if let Some(t) = self.fresh_local().pop_front() {
                return Some(t);
            }
        }
        self.runq()
            .pop_front()
            .or_else(|| self.fresh_local().pop_back())
            .or_else(|| self.yielded().pop_front())
    }

    /// The next thread of a many-to-many worker, in the order of `sched/README.md`.
    #[inline]
    fn next_stealing(
        &self,
        fresh: &crossbeam_deque::Worker<Arc<ThreadInner>>,
        tick: u32,
    ) -> Option<Arc<ThreadInner>> {
        if tick % FAIRNESS_INTERVAL == 0 {
            let found = self
                .pool
                .steal_one_injected()
                .or_else(|| self.yielded().pop_front());
            if found.is_some() {
                return found;
            }
        }
        if tick % OLDEST_FRESH_INTERVAL == 0 {
            if let Some(t) = retry(|| self.pool.stealers[self.index].steal()) {
                return Some(t);
            }
        }
        self.runq()
            .pop_front()
            .or_else(|| fresh.pop())
            .or_else(|| self.yielded().pop_front())
    }

    /// Steals never-run threads: a batch from the injector, else from another worker's
    /// `fresh` queue, visiting them in a rotating order. The batch goes into our own
    /// `fresh`; one thread is returned.
    fn steal(&self, fresh: &crossbeam_deque::Worker<Arc<ThreadInner>>) -> Option<Arc<ThreadInner>> {
        if let Some(t) = self.pool.steal_injected(fresh) {
            return Some(t);
        }
        let n = self.pool.stealers.len();
        let start = self.steal_rotor.get();
        self.steal_rotor.set(start.wrapping_add(1));
        (0..n)
            .map(|k| start.wrapping_add(k) % n)
            .filter(|&v| v != self.index)
            .find_map(|v| retry(|| self.pool.stealers[v].steal_batch_and_pop(fresh)))
    }

    /// The monitor saw a worker stuck with never-run threads (`PoolShared::help_wanted`):
    /// takes a batch from the `fresh` queue of each worker it marked into our own, where
    /// `next_stealing` finds them after the threads woken here, and wakes a sleeping
    /// worker for them, as a spawn would.
    #[cold]
    fn help_stuck_workers(&self, fresh: &crossbeam_deque::Worker<Arc<ThreadInner>>) {
        if !self.pool.help_wanted.swap(false, Relaxed) {
            return;
        }
        let mut took = false;
        for (v, worker) in self.pool.workers.iter().enumerate() {
            if v != self.index && worker.watch.stuck_with_fresh.load(Relaxed) {
                took |= retry(|| self.pool.stealers[v].steal_batch(fresh)).is_some();
            }
        }
        if took {
            self.pool.wake_one();
        }
    }

    fn drain_inbox(&self) {
        self.shared.inbox_hint.store(false, SeqCst);
        let (tasks, handed, dumps) = {
            let mut inbox = self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner());
            (
                std::mem::take(&mut inbox.tasks),
                std::mem::take(&mut inbox.handed),
                std::mem::take(&mut inbox.dumps),
            )
        };
        self.runq().extend(tasks);
        for (task, filing) in handed {
            // Back from a kernel thread that lost this worker: file it as that thread
            // would have (`sched/hand_off.rs`, step 2).
            let away = self.away();
            if let Some(pos) = away.iter().position(|&t| std::ptr::eq(t, &*task)) {
                away.swap_remove(pos);
                self.shared.watch.away.store(away.len(), Relaxed);
            }
            if let Some(again) = self.file(task, filing) {
                self.push_back(again);
            }
        }
        // Last, so that the queues the answer describes are up to date.
        for (request, slot) in dumps {
            self.answer_dump(&request, slot);
        }
    }

    /// Nothing is runnable: fire due timers, steal (many-to-many), or sleep until the
    /// next deadline or a wakeup.
    fn idle(&self) {
        let now = Instant::now();
        self.fire_timers(now);
        if !self.is_idle() {
            return;
        }
        if let Some(fresh) = &self.fresh {
            if let Some(task) = self.steal(fresh) {
                fresh.push(task);
                return;
            }
        }
        self.timers()
            .drop_stale_front(|timer| self.timer_is_stale(timer));
        let deadline = self.timers().next_deadline();
        self.shared
            .watch
            .timer_armed
            .store(deadline.is_some(), Relaxed);
        let sleep = || {
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            self.shared.reactor.poll(timeout);
        };
        // The sleeper's half of the inbox protocol in sched/README.md: announce, re-check,
        // sleep; in many-to-many, inside the idle-set handshake (whose fence also orders
        // this store before the re-check).
        self.shared.sleeping.store(true, SeqCst);
        if self.fresh.is_some() {
            self.pool.idle.sleep_unless(
                self.index,
                || self.shared.inbox_hint.load(SeqCst) || self.pool.has_stealable(),
                sleep,
            );
        } else if !self.shared.inbox_hint.load(SeqCst) {
            sleep();
        }
        self.shared.sleeping.store(false, Relaxed);
        self.pool.monitor.worker_woke();
    }

    fn fire_timers(&self, now: Instant) {
        while let Some(timer) = self.timers().pop_due(now) {
            match timer.action {
                TimerAction::WakeSleeper => self.push_back(timer.task),
                TimerAction::ExpirePark { seq } => {
                    let g = timer.task.green();
                    // SAFETY: the thread is not running (it is parked or queued, and we are
                    // its worker's scheduler), so reading its park sequence is exclusive.
                    let current_seq = unsafe { (*g.local_ptr()).park_seq };
                    if current_seq == seq && g.state.wake(false) {
                        // SAFETY: winning PARKED -> EMPTY transfers the strong count the
                        // worker leaked when it committed this park (sched/README.md).
                        let owned = unsafe { Arc::from_raw(Arc::as_ptr(&timer.task)) };
                        self.push_back(owned);
                    }
                }
            }
        }
    }

    /// Drops park timers whose park has already ended (see `Timers`).
    #[cold]
    fn compact_timers(&self) {
        self.timers().compact(|timer| self.timer_is_stale(timer));
    }

    /// Whether `timer` would fire as a no-op: a park timer whose park has ended.
    fn timer_is_stale(&self, timer: &Timer) -> bool {
        match timer.action {
            TimerAction::WakeSleeper => false,
            TimerAction::ExpirePark { seq } => {
                let g = timer.task.green();
                // SAFETY: the thread is switched out (its timers are looked at only by its
                // worker's scheduler, which is running) and we are its worker; one field
                // read.
                let current = unsafe { (*g.local_ptr()).park_seq };
                current != seq || !g.state.is_parked()
            }
        }
    }

    /// Runs `task` until it suspends or returns, and files it accordingly. Returns false if
    /// the worker was handed to another kernel thread meanwhile (migration).
    ///
    /// Inlined into the loop on purpose: a function return right after the switch back
    /// from a coroutine is mispredicted (the return-stack buffer holds the coroutine's
    /// frames), which costs as much as the switch itself on some CPUs.
    #[inline(always)]
    fn run_task(&self, task: Arc<ThreadInner>) -> bool {
        let g = task.green();
        let local = g.local_ptr();
        // All derefs of `local` in this function: we are the owning worker's scheduler;
        // the green thread only runs inside `resume`, and during it we hold only `co`, a
        // pointer into the `body` field, which the green thread never touches.
        // SAFETY: see above.
        if let Body::Unstarted(_) = unsafe { &(*local).body } {
            if !self.start_unstarted(&task) {
                return true;
            }
        }
        // SAFETY: see above.
        let co: *mut GreenCoroutine = match unsafe { &mut (*local).body } {
            Body::Coroutine(co) => co,
            // Cancelled while queued (shutdown): nothing left to run.
            Body::Finished => return true,
            Body::Unstarted(_) => unreachable!(),
        };
        let mut task = task;
        loop {
            // For the monitor (sched/monitor.rs): plain stores to our own cache line.
            let switch = self.switches.get() + 1;
            self.switches.set(switch);
            let watch = &self.shared.watch;
            watch.switches.store(switch, Relaxed);
            // SAFETY: see above; the thread is switched out.
            unsafe { (*local).switches += 1 };
            watch.running.store(task.id.as_u64().get(), Relaxed);
            if self.migrates {
                self.resuming.set(Arc::as_ptr(&task));
                self.shared.driver.entering(switch);
            }
            context::set_current_green(Arc::as_ptr(&task));
            // SAFETY: `overflow` and the name it points to live in the task record, which
            // `task` keeps alive and unmodified until the reset to null below.
            unsafe { stack::set_running(&(*local).overflow) };
            // SAFETY: `co` points into `body`, which nothing else touches while it runs.
            let result = unsafe { (*co).resume(Resume::Run) };
            // SAFETY: null is always allowed.
            unsafe { stack::set_running(std::ptr::null()) };
            context::set_current_green(std::ptr::null());
            if watch.stall_at.load(Relaxed) == switch {
                self.pool
                    .monitor
                    .end_stall(self.index, switch, task.name.as_deref());
            }
            if self.migrates {
                if !self.shared.driver.left(switch) {
                    // The monitor handed this worker to another kernel thread while the
                    // thread ran here: give the thread back to it and touch nothing more
                    // (not even `watch`, which the new driver now writes).
                    hand_off::give_back(self, task, result);
                    return false;
                }
                self.resuming.set(std::ptr::null());
            }
            // Back in scheduler code: a stall noticed now is not this thread's.
            watch.running.store(0, Relaxed);
            match self.file(task, result) {
                None => return true,
                // A token arrived before the park committed: run the thread again at once.
                Some(again) => task = again,
            }
        }
    }

    /// Files a green thread that came back from a resume according to how it came back:
    /// queue, park, timer, or retire. Returns it if it must run again at once (a token
    /// arrived before its park committed).
    #[inline(always)]
    fn file(&self, task: Arc<ThreadInner>, result: Filing) -> Option<Arc<ThreadInner>> {
        let g = task.green();
        let local = g.local_ptr();
        match result {
            CoroutineResult::Yield(Suspend::Yield) => {
                self.yielded().push_back(task);
                None
            }
            CoroutineResult::Yield(Suspend::Park) => {
                // SAFETY: we drive its worker and the thread is switched out.
                unsafe { (*local).park_seq += 1 };
                if g.state.commit_park() {
                    // The parked state owns this count now (sched/README.md, step 2).
                    let _ = Arc::into_raw(task);
                    return None;
                }
                Some(task)
            }
            CoroutineResult::Yield(Suspend::ParkUntil(deadline)) => {
                // SAFETY: as above.
                let seq = unsafe {
                    (*local).park_seq += 1;
                    (*local).park_seq
                };
                if g.state.commit_park() {
                    let action = TimerAction::ExpirePark { seq };
                    if self.timers().wants_compaction() {
                        self.compact_timers();
                    }
                    self.timers().arm(deadline, task.clone(), action);
                    let _ = Arc::into_raw(task);
                    return None;
                }
                Some(task)
            }
            CoroutineResult::Yield(Suspend::SleepUntil(deadline)) => {
                self.timers().arm(deadline, task, TimerAction::WakeSleeper);
                None
            }
            CoroutineResult::Return(()) => {
                self.retire(&task);
                None
            }
            CoroutineResult::Yield(Suspend::Captured) => {
                unreachable!("a backtrace capture returned to the scheduler loop")
            }
        }
    }

    /// Creates the coroutine of a green thread queued without one (spawned from another
    /// kernel thread, or any many-to-many spawn), and makes this worker its owner.
    /// Returns false if that failed (the thread was cancelled with the reason).
    fn start_unstarted(&self, task: &Arc<ThreadInner>) -> bool {
        // SAFETY: we are the worker about to start it and hold its queue reference.
        unsafe { task.green().set_owner(&self.shared) };
        let local = task.green().local_ptr();
        // SAFETY: the thread has not started; only its worker (us) touches its local part.
        let (main, size) = unsafe {
            let Body::Unstarted(main) = std::mem::replace(&mut (*local).body, Body::Finished)
            else {
                unreachable!()
            };
            (main, (*local).stack_size)
        };
        match self.stacks().take(size) {
            Ok(stack) => {
                // SAFETY: `main` is `'static` (remote spawns box only `'static` closures, or
                // lifetime-erased ones whose spawner waits for completion).
                let co = unsafe { self.make_coroutine_on(task, stack, main) };
                // SAFETY: as above.
                unsafe { (*local).body = Body::Coroutine(co) };
                true
            }
            Err(e) => {
                // The joiner learns why from the `Cancelled` the closure's drop publishes.
                set_cancel_reason(format!("spindle: could not start green thread: {e}"));
                drop(main);
                set_cancel_reason(DEFAULT_CANCEL_REASON.into());
                false
            }
        }
    }

    /// A green thread's coroutine returned (or was unwound): give its stack back and
    /// forget it.
    fn retire(&self, task: &ThreadInner) {
        let local = task.green().local_ptr();
        // SAFETY: the coroutine has finished; only its worker (us) touches its local part.
        let body = unsafe { std::mem::replace(&mut (*local).body, Body::Finished) };
        if let Body::Coroutine(co) = body {
            self.stacks().give_back(co.into_stack());
        }
        let reg = self.registry();
        // SAFETY: as above.
        let index = unsafe { (*local).registry_index };
        let last = reg.len() - 1;
        reg.swap(index, last);
        reg.pop();
        self.shared.watch.live.store(reg.len(), Relaxed);
        self.gdb.publish(reg.as_ptr(), reg.len());
        if index < reg.len() {
            let moved = reg[index];
            // SAFETY: registry entries are records of live started threads of this worker.
            unsafe { (*(*moved).green().local_ptr()).registry_index = index };
        }
    }

    /// Shutdown: cancel every green thread that has not finished.
    ///
    /// Threads that never started are dropped first (their joiners get `Cancelled`). Then
    /// started threads are cancelled youngest first across the whole runtime (start
    /// sequences are a Lamport clock along spawn edges, and `CancelOrder` makes workers
    /// take turns), so that threads spawned inside a `scope` are gone before the thread
    /// that waits for them is unwound, whichever worker they run on. A started thread that
    /// never ran is resumed once to drop its closure on its own stack; one that ran is
    /// unwound (corosensei's forced unwind), which runs its destructors. Destructors of
    /// cancelled threads must not block: a cancelled thread that tries to aborts the
    /// process with a message (`context::suspend`).
    fn cancel_all(&self) {
        self.wait_for_away_threads();
        set_cancel_reason(
            self.pool
                .shutdown_reason()
                .unwrap_or_else(|| SHUTDOWN_CANCEL_REASON.into()),
        );
        // Queue references of started threads, kept until the end: dropping one while the
        // thread still has its coroutine would free the record under the registry.
        let mut held: Vec<Arc<ThreadInner>> = Vec::new();
        // An upper bound of the other workers' youngest started thread (`CancelOrder`).
        let mut others_youngest = Some(u64::MAX);
        loop {
            self.drain_inbox();
            if let Some(fresh) = &self.fresh {
                while let Some(task) = fresh.pop() {
                    drop(self.drop_if_unstarted(task));
                }
            }
            let mut queued: Vec<_> = self.runq().drain().collect();
            queued.extend(self.fresh_local().drain());
            queued.extend(self.yielded().drain());
            for task in queued {
                held.extend(self.drop_if_unstarted(task));
            }
            // Every registry entry is alive: its queue reference is in `held`, leaked into
            // its park word, or in a timer. Take a count of each for the duration.
            // Threads away on a kernel thread that lost this worker are running: leave them
            // (sched/README.md, "Migration", step 4).
            let away = self.away().clone();
            let mut victims: Vec<Arc<ThreadInner>> = self
                .registry()
                .iter()
                .filter(|&&t| !away.contains(&t))
                .map(|&t| {
                    // SAFETY: registry entries are live records (see above); incrementing
                    // and rebuilding an `Arc` from the same pointer takes one more count.
                    unsafe {
                        Arc::increment_strong_count(t);
                        Arc::from_raw(t)
                    }
                })
                .collect();
            if victims.is_empty() && self.is_idle() {
                break;
            }
            // SAFETY: the threads are switched out and we are their worker; one field read.
            let seq_of = |t: &Arc<ThreadInner>| unsafe { (*t.green().local_ptr()).start_seq };
            victims.sort_by_key(|t| std::cmp::Reverse(seq_of(t)));
            for task in victims {
                // SAFETY: as above.
                if let Body::Coroutine(_) = unsafe { &(*task.green().local_ptr()).body } {
                    self.wait_cancel_turn(seq_of(&task), &mut others_youngest);
                    self.cancel_started(task);
                }
            }
        }
        self.pool.cancel_done(self.index);
        {
            let mut inbox = self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner());
            inbox.closed = true;
        }
        self.drain_inbox();
        let leftovers: Vec<_> = self.runq().drain().collect();
        for task in leftovers {
            held.extend(self.drop_if_unstarted(task));
        }
        drop(self.timers().clear());
        drop(held);
    }

    /// Waits, if need be, until no other worker of the runtime has a started thread younger
    /// than `seq` (`CancelOrder`); `others` caches what we last learnt of them. Sleeps in
    /// the reactor meanwhile, answering dump requests (sched/README.md, "Runtime
    /// shutdown", steps 1 and 2).
    fn wait_cancel_turn(&self, seq: u64, others: &mut Option<u64>) {
        if self.pool.workers.len() == 1 || others.is_none_or(|o| o <= seq) {
            return;
        }
        loop {
            // Step 1: the inbox first, which clears the hint before the order is read.
            self.drain_inbox();
            if let Some(turn) = self.pool.publish_cancel_turn(self.index, seq) {
                *others = turn;
                return;
            }
            // Step 2.
            self.sleep_until_inbox();
        }
    }

    /// Shutdown with migration on: waits until every thread still running on a kernel
    /// thread that lost this worker has come back through the inbox, so that it is
    /// cancelled like the others (README, "Migration", step 4). Like a runtime drop without
    /// migration, this waits for a raw blocking call to return.
    fn wait_for_away_threads(&self) {
        loop {
            self.drain_inbox();
            if self.away().is_empty() {
                return;
            }
            self.sleep_until_inbox();
        }
    }

    /// Sleeps in the reactor until something is put in the inbox (or any other wake-up),
    /// with the sleeper's half of the inbox handshake of `idle` (sched/README.md):
    /// announce, re-check the hint, sleep. For a worker that waits at shutdown for what
    /// only the inbox can bring; it has no timers left to wake for.
    fn sleep_until_inbox(&self) {
        self.shared.sleeping.store(true, SeqCst);
        if !self.shared.inbox_hint.load(SeqCst) {
            self.shared.reactor.poll(None);
        }
        self.shared.sleeping.store(false, Relaxed);
    }

    /// Whether nothing at all is queued on this worker.
    fn is_idle(&self) -> bool {
        self.runq().is_empty()
            && self.fresh_local().is_empty()
            && self.yielded().is_empty()
            && self.fresh.as_ref().is_none_or(|f| f.is_empty())
    }

    /// Drops the closure of a thread that never started and returns `None`; gives a
    /// started thread back.
    fn drop_if_unstarted(&self, task: Arc<ThreadInner>) -> Option<Arc<ThreadInner>> {
        let local = task.green().local_ptr();
        // SAFETY: the thread is not running; only its worker (us) touches its local part.
        match unsafe { &(*local).body } {
            Body::Unstarted(_) => {
                // SAFETY: as above.
                let body = unsafe { std::mem::replace(&mut (*local).body, Body::Finished) };
                drop(body);
                None
            }
            Body::Finished => None,
            Body::Coroutine(_) => Some(task),
        }
    }

    fn cancel_started(&self, task: Arc<ThreadInner>) {
        let g = task.green();
        // If it is parked, the parked state owns a leaked count: reclaim it. If a waker wins
        // the race instead, the waker queues it and the count comes back through the queue.
        if g.state.is_parked() && g.state.wake(false) {
            // SAFETY: winning PARKED -> EMPTY transfers the leaked count to us.
            drop(unsafe { Arc::from_raw(Arc::as_ptr(&task)) });
        }
        let local = g.local_ptr();
        // SAFETY: the thread is suspended; we are its worker. The pointer into `body`
        // stays valid while the coroutine unwinds, which never touches `body`.
        let co: *mut GreenCoroutine = match unsafe { &mut (*local).body } {
            Body::Coroutine(co) => co,
            _ => unreachable!("registry holds only started threads"),
        };
        context::set_current_green(Arc::as_ptr(&task));
        // SAFETY: `overflow` and the name it points to live in the task record, which
        // `task` keeps alive and unmodified until the reset to null below.
        unsafe { stack::set_running(&(*local).overflow) };
        context::set_cancelling(true);
        // SAFETY: `co` is valid (see above).
        if !unsafe { (*co).started() } {
            // Never ran: one resume drops its closure on its own stack (see
            // `make_coroutine_on`). If a destructor there blocks, the thread is suspended
            // and the forced unwind below deals with it.
            // SAFETY: as above.
            let _ = unsafe { (*co).resume(Resume::Run) };
        }
        // SAFETY: `co` is valid (see above); unwinding runs the thread's destructors on its
        // own stack, on its own kernel thread. A no-op if the resume above finished it.
        unsafe { (*co).force_unwind() };
        context::set_cancelling(false);
        // SAFETY: null is always allowed.
        unsafe { stack::set_running(std::ptr::null()) };
        context::set_current_green(std::ptr::null());
        self.retire(&task);
    }
}
