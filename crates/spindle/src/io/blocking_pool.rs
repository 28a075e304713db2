//! The helper pool behind [`crate::unblock`]: kernel threads for calls that have no
//! non-blocking form, so that a green thread waits for them alone.
//!
//! One pool per green-thread runtime, elastic: a job goes to an idle helper if there is one,
//! else to a new helper while there are fewer than the maximum, else it queues. A helper
//! with nothing to do for the idle timeout exits. Everything is under one mutex, taken only
//! to hand jobs over (a job runs outside it), with a condvar idle helpers wait on:
//!
//! - `submit`: push the job; if there are at least as many idle helpers as queued jobs,
//!   notify one; else if `threads < max`, count a new helper and start it (after
//!   unlocking). A helper that cannot be started is uncounted
//!   and, if no helper is left to take the queued jobs, they are all handed back to the
//!   caller to run on its own thread (each job reports to its own caller, so whoever runs
//!   it, its caller gets its result).
//! - helper: pop a job and run it; when the queue is empty, `idle += 1` and wait with the
//!   idle timeout; on waking, `idle -= 1`; if it timed out with the queue still empty, it
//!   uncounts itself and exits. A job queued while idle helpers outnumber the queue is
//!   followed by a notify, and `idle` counts exactly the helpers in (or entering) the wait
//!   under the lock, so a queued job is never left with only sleeping helpers, and never
//!   queued behind a busy helper while the pool could start another: no job is lost, none
//!   waits for a timeout or for another job.
//! - shutdown (the runtime's drop): queued jobs are dropped (their callers are green
//!   threads of the runtime, being cancelled), idle helpers are woken and exit, busy ones
//!   exit after their job. Helpers are not joined: a job may block for as long as it likes.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::fork::Provenance;
use std::time::Duration;

/// Default maximum number of helper threads of a runtime.
pub const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

/// Default time an idle helper thread waits for work before it exits.
pub const DEFAULT_BLOCKING_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A job: runs the caller's closure and reports to the caller.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The helper pool's settings (from the runtime builder).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockingConfig {
    pub(crate) max_threads: usize,
    pub(crate) idle_timeout: Duration,
}

impl Default for BlockingConfig {
    fn default() -> Self {
        BlockingConfig {
            max_threads: DEFAULT_MAX_BLOCKING_THREADS,
            idle_timeout: DEFAULT_BLOCKING_IDLE_TIMEOUT,
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Helpers alive (counted from the moment one is decided on).
    threads: usize,
    /// Helpers waiting for a job.
    idle: usize,
    shutdown: bool,
}

/// The helper pool of one runtime.
pub(crate) struct BlockingPool {
    state: Mutex<State>,
    work: Condvar,
    config: BlockingConfig,
    /// The process the pool's runtime was built in (`fork.rs`).
    provenance: Provenance,
}

impl BlockingPool {
    pub(crate) fn new(config: BlockingConfig) -> BlockingPool {
        BlockingPool {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            config,
            provenance: Provenance::here(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a helper runs a job, or a job waits for one.
    pub(crate) fn is_busy(&self) -> bool {
        let st = self.lock();
        st.threads > st.idle || !st.queue.is_empty()
    }

    /// Runs `job` on a helper thread. Gives jobs back, to run on the calling thread, if no
    /// helper can take them (the runtime has shut down, or no helper thread can be started
    /// and none is left).
    pub(crate) fn submit(self: &Arc<Self>, job: Job) -> Result<(), Vec<Job>> {
        let mut st = self.lock();
        if st.shutdown {
            return Err(vec![job]);
        }
        st.queue.push_back(job);
        // An idle helper takes at most one job before the next one is woken, and `idle`
        // drops only when a woken helper runs: so count queued jobs against idle helpers,
        // or two quick submits would both count on one helper (and the second wait behind
        // the first if it blocks, with the pool far below its maximum).
        if st.queue.len() <= st.idle {
            drop(st);
            self.work.notify_one();
            return Ok(());
        }
        if st.threads >= self.config.max_threads {
            return Ok(()); // A busy helper takes it when it is done.
        }
        st.threads += 1;
        drop(st);
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name("spindle-helper".into())
            .spawn(move || pool.helper());
        if started.is_err() {
            let mut st = self.lock();
            st.threads -= 1;
            if st.threads == 0 {
                // Nobody is left to take the queued jobs: the caller runs them.
                return Err(st.queue.drain(..).collect());
            }
        }
        Ok(())
    }

    /// A helper thread's loop (see the module docs).
    fn helper(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                job();
                if self.provenance.is_inherited() {
                    // The job called fork() and returned in the child, where this helper
                    // is the only thread: going on would take the parent's queued jobs.
                    crate::fork::end_inherited_helper();
                }
                st = self.lock();
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let (guard, timeout) = self
                .work
                .wait_timeout(st, self.config.idle_timeout)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.queue.is_empty() {
                break;
            }
        }
        st.threads -= 1;
    }

    /// The runtime is being dropped: drop queued jobs, let helpers exit.
    pub(crate) fn shut_down(&self) {
        let dropped = {
            let mut st = self.lock();
            st.shutdown = true;
            std::mem::take(&mut st.queue)
        };
        self.work.notify_all();
        drop(dropped);
    }
}
