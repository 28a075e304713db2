//! The many-to-one model: one kernel thread runs every green thread.
//!
//! The runtime owns one worker ([`crate::sched::worker`]) on a kernel thread of its own,
//! named `spindle-m1`. `block_on` hands it the root green thread and waits; green threads
//! spawned from any of its green threads are made on the spot (their coroutine and stack
//! come from the worker's pool with no lock and no system call) and queued locally, while
//! spawns from other kernel threads go through the worker's inbox.
//!
//! Green threads keep running between `block_on` calls; dropping the runtime cancels the
//! ones left (see `Worker::cancel_all`).

use std::io;
use std::sync::Arc;

use crate::sched::context;
use crate::sched::worker::{Worker, WorkerShared};
use crate::task::green::{Body, GreenTask};
use crate::task::packet::ThreadMain;
use crate::task::scope::ScopeData;
use crate::task::thread::{Thread, ThreadId};
use crate::task::{ThreadInner, ThreadKind};
use crate::thread::JoinHandle;

/// The many-to-one runtime: its worker and the kernel thread driving it.
pub(crate) struct ManyToOne {
    pub(crate) shared: Arc<WorkerShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ManyToOne {
    pub(crate) fn start(stack_size: usize) -> io::Result<ManyToOne> {
        let shared = Arc::new(WorkerShared::new(stack_size));
        let for_worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("spindle-m1".into())
            .spawn(move || {
                let worker = Worker::new(for_worker);
                worker.run();
            })
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start the worker thread: {e}"))
            })?;
        shared.set_thread(thread.thread().clone());
        Ok(ManyToOne {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for ManyToOne {
    fn drop(&mut self) {
        self.shared.request_shutdown();
        let on_own_worker = context::current_worker().is_some_and(|w| w.drives(&self.shared));
        if let Some(t) = self.thread.take() {
            if on_own_worker {
                // Dropped from one of its own green threads: the worker cancels the rest
                // (this one included) once this thread next switches; joining here would
                // wait for ourselves.
                drop(t);
            } else if t.join().is_err() {
                eprintln!("spindle: the many-to-one worker thread panicked during shutdown");
            }
        }
    }
}

/// Spawns a green thread on the worker behind `shared`.
///
/// # Safety
///
/// If `F` or `T` borrow (`'a` shorter than `'static`), the caller waits for the thread to
/// finish before the borrowed data goes away (a scope or `block_on` does).
pub(crate) unsafe fn spawn<'a, F, T>(
    shared: &Arc<WorkerShared>,
    name: Option<String>,
    stack_size: Option<usize>,
    scope: Option<Arc<ScopeData>>,
    f: F,
) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
{
    if shared.is_shut_down() {
        return Err(shut_down());
    }
    let size = stack_size.unwrap_or(shared.default_stack_size);
    let (packet, entry) = ThreadMain::with_packet(f, scope);
    let main = move || entry.run();
    let inner = Arc::new(ThreadInner {
        id: ThreadId::next(),
        name: name.map(Into::into),
        kind: ThreadKind::Green(GreenTask::new(shared.clone(), Body::Finished, size)),
    });
    let g = inner.green();
    match context::current_worker().filter(|w| w.drives(shared)) {
        Some(worker) => {
            // SAFETY: the borrow contract is passed on from our caller.
            let co = unsafe { worker.make_coroutine(&inner, size, main)? };
            // SAFETY: the thread is not queued yet; we are on its worker's kernel thread.
            unsafe { (*g.local_ptr()).body = Body::Coroutine(co) };
            worker.push_back(inner.clone());
        }
        None => {
            let main: Box<dyn FnOnce() + Send + 'a> = Box::new(main);
            // SAFETY: only the lifetime changes; the caller waits for completion when `'a`
            // is not `'static` (this function's contract).
            let main: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(main) };
            // SAFETY: the record is not shared yet, so nothing else accesses it.
            unsafe { (*g.local_ptr()).body = Body::Unstarted(main) };
            shared.push_remote(inner.clone()).map_err(|_| shut_down())?;
        }
    }
    Ok(JoinHandle::new(packet, Thread::from_inner(inner)))
}

fn shut_down() -> io::Error {
    io::Error::other("cannot spawn a green thread: its runtime has been dropped")
}
