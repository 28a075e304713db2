//! The io_uring backend of the reactor: one ring, one eventfd and one epoll instance (for
//! streams) per worker.
//!
//! # The protocol
//!
//! Every request this backend makes carries, as its `user_data`, a pointer to a
//! [`Completion`]: a reference-counted record with the request's result, a done flag, the
//! thread to unpark, and whatever memory the kernel uses until the completion arrives (the
//! data buffer of a file read or write; the file itself). Two references exist while a
//! request is in flight:
//!
//! 1. **The ring's reference.** `Arc::into_raw` turns it into the `user_data` when the
//!    request is pushed. Only the completion gives it back: the worker's driver, reaping the
//!    completion queue, turns the `user_data` back into the `Arc` (`Arc::from_raw`), stores
//!    the result, sets `done` (Release), unparks the thread, and drops that reference. Since
//!    the kernel posts exactly one completion per request (this backend makes no multishot
//!    requests), each reference is given back exactly once.
//! 2. **The waiter's reference.** The green thread keeps its own `Arc` and parks until it
//!    reads `done` (Acquire); from then on the result and the buffer are its own.
//!
//! So the memory a request uses outlives the request whatever the waiter does. A waiter
//! that stops waiting early (its deadline passed, or it is cancelled and unwound because
//! the runtime is dropped) asks the kernel to cancel the request (`IORING_OP_ASYNC_CANCEL`
//! naming its `user_data`) and drops its reference; the request then completes, normally or
//! with `-ECANCELED`, and its memory goes with the ring's reference, never before. Nothing
//! here needs the cancel to succeed or to be synchronous: a request that runs on after its
//! waiter left only unparks that thread once more, a spurious wakeup, which every park
//! allows. The cancel cannot hit the wrong request. It names the address of the waiter's
//! `Completion`, which the waiter holds while it pushes the cancel, and the kernel consumes
//! the submission queue in order: a later request at the same address (the memory reused
//! once the completion is reaped) can only be queued after the cancel, so it is not in
//! flight yet when the cancel runs, even if the cancel's own `io_uring_enter` failed and
//! the driver submits it later.
//!
//! # Who touches the ring
//!
//! - The **submission queue** is written by several kernel threads: the worker's driver
//!   (its wake read) and the green threads it runs, but also, with migration on, a kernel
//!   thread that lost the worker while its green thread was in a system call and that runs
//!   that thread on until it switches (`sched/README.md`, "Migration"). Pushes therefore
//!   take `submit_lock`. `io_uring_enter` itself may run on several threads at once: the
//!   kernel serializes submission under the ring's own lock, and each call submits what is
//!   queued at that moment.
//! - The **completion queue** is read only by the worker's driver, in [`UringReactor::poll`],
//!   between two resumes, like the epoll backend's events.
//!
//! # Submitting
//!
//! A green thread only *queues* its request (under `submit_lock`) and parks (the one
//! exception: a waiter that gives up on its request, because its deadline passed or it is
//! unwound, submits its cancel at once, [`UringReactor::cancel`]); the worker's driver
//! hands everything queued to the kernel in one `io_uring_enter` at its next poll: when it
//! goes to sleep (the same call that waits), or, while busy, at the check it makes every
//! 64 switches when requests are in flight or a thread waits on a registration. A server
//! whose connections each wait for their next request thus makes one system call per
//! round of the worker, not one per wait: the epoll backend pays an `epoll_ctl` to
//! register and another to deregister each wait. (Measured with `spindle-lab bench http`:
//! submitting at once, many-to-one served 66,500 requests per second against tokio's
//! 126,000; queued, 90,000 to 121,000 against 113,000 to 116,000.)
//!
//! A queued request names its descriptor by number, and the kernel looks the number up
//! only when the request is submitted. In the normal course the waiter keeps the
//! descriptor open until the completion wakes it; but a waiter unwound because its runtime
//! is dropped closes its socket on the way out, and the number may be reused before the
//! queued poll reaches the kernel. That poll then watches some other file: harmless, since
//! a poll consumes nothing and its completion only unparks a thread that is gone. A request
//! that moves data would move it on the wrong socket: stream writes, the one such request
//! made this way, close that gap ("Stream writes" below).
//!
//! The rings are set up with `IORING_SETUP_COOP_TASKRUN` and `IORING_SETUP_TASKRUN_FLAG`:
//! io_uring finishes a request's completion on the task that submitted it, and by default
//! interrupts that task to do so; cooperatively, the kernel instead sets `IORING_SQ_TASKRUN`
//! and waits for the task's next entry into the kernel. The driver's busy check enters the
//! kernel when that flag (or queued entries, or a completion-queue overflow) says so; its
//! sleep always does. A request queued by a kernel thread that later exits is cancelled by
//! the kernel at the exit, which completes it with `-ECANCELED`: for a readiness wait, a
//! spurious wakeup and a retry.

//! # Sleeping and waking
//!
//! The driver sleeps in `io_uring_enter` waiting for one completion, with the time to its
//! next timer as the timeout (`IORING_ENTER_EXT_ARG`). The wake eventfd is read by a
//! request of the ring (user data [`WAKE_KEY`]) that the driver re-arms before each sleep
//! once the previous one completed: a write by another kernel thread completes that read
//! and ends the sleep, and a write made before the read was armed leaves a count that
//! completes it at once. The eventfd is blocking, so that the read waits in the kernel
//! instead of failing with `EAGAIN`; a writer would block only with the count at 2^64 - 2.
//!
//! # Descriptors and files
//!
//! A readiness wait is a one-shot `IORING_OP_POLL_ADD` with the same mask as the epoll
//! backend's registration. Several threads may poll one descriptor at once: io_uring
//! takes any number of poll requests per file. File reads, writes and syncs are
//! `IORING_OP_READ`, `IORING_OP_WRITE` and `IORING_OP_FSYNC` on a buffer owned by the
//! `Completion` (see `fs/uring_backend.rs`).
//!
//! A stream registers its socket for good instead ([`super::Reactor::register`]), and not
//! with the ring: in an epoll instance the reactor keeps for that
//! ([`super::epoll::EpollReactor::for_registrations`]), edge-triggered, as the epoll
//! backend does (`registration.rs`). The reason is urgent data. A stream's read that comes
//! back short proves the socket's receive queue empty, so that the next read waits for the
//! next event instead of trying a `recv` that would fail, unless TCP urgent data stopped
//! it at the urgent mark; the registration must therefore tell urgent data apart. epoll
//! reports the socket's readiness as its `poll` computes it, `EPOLLPRI` only for urgent
//! data; an io_uring poll completion reports the *key* of the socket's wake-up, which for
//! any new data says `POLLPRI` too. A multishot poll of the ring (what this backend used
//! before) therefore cost a keep-alive server one `recv` failing with `EAGAIN` per request
//! that found the next one not there yet: `perf trace` of `spindle-lab bench http` counted
//! 8,718 such failures beside 26,393 answered requests in many-to-one, and none on epoll.
//!
//! The ring watches the epoll instance: before the driver sleeps, it queues a one-shot
//! `IORING_OP_POLL_ADD` for the instance's descriptor (user data [`STREAMS_KEY`]), unless
//! one is in flight; an instance with an event ready completes it at once. Whenever that
//! poll has completed, and at every busy check while a thread waits on a registration,
//! the driver collects the instance's events with a zero-timeout `epoll_wait`
//! ([`super::epoll::EpollReactor::poll`]), which also drops the references of
//! registrations deregistered since (`registration.rs`, "Lifetime", for epoll). A
//! completed poll whose events were not all collected (more than one `epoll_wait`'s
//! worth) is harmless: the next one completes at once.
//!
//! # Stream writes
//!
//! A TCP stream's write of at most [`STREAM_SEND_MAX`] bytes, on a green thread of this
//! backend, is an `IORING_OP_SEND` of the worker's ring ([`UringReactor::stream_send`]),
//! queued like every request and submitted with the others at the driver's next poll; a
//! larger write, and every write on the epoll backend, is the stream's own `send(2)`. The
//! reason is batching. A keep-alive server answers each request with one small write; made
//! one system call at a time, each answer also wakes the client on its own. Queued, the
//! answers of a whole round of the worker go out in one `io_uring_enter`, and the client
//! finds them together. Measured with `spindle-lab bench http` (many-to-one, alternating
//! binaries, four rounds each): 123,000 to 128,000 requests per second with `send(2)`,
//! 126,000 to 152,000 queued; a standalone experiment of the same shape (an epoll loop
//! queuing its sends to a ring) served 141,000 to 162,000 against 115,000 to 124,000 with
//! `send(2)`. The limit keeps the cost of the copy into the request's buffer (the
//! protocol above: the kernel reads a buffer the request owns) to writes where the system
//! call, not the bytes, is the price; a large write copies its bytes into the socket once
//! either way.
//!
//! - **Waiting for room.** The kernel makes a send that finds the socket's buffer full wait
//!   for room inside the ring (it polls the socket and sends when it can), on the
//!   non-blocking sockets spindle makes too; it completes with what it sent, perhaps less
//!   than asked, as `send(2)` would. Should a kernel answer `EAGAIN` instead, the write
//!   goes back to the stream's own wait-and-`send(2)` (whose timeout, if any, then starts
//!   afresh).
//! - **Latency.** A queued write leaves at its worker's next poll, not at once: when the
//!   worker runs out of threads to run, or at its busy check every 64 switches. A thread
//!   that computes for long without switching delays it, as it delays everything else on
//!   its worker. A thread that may not switch (one unwound at shutdown, writing from a
//!   destructor) sends with its own system call instead.
//! - **Timeouts.** At the stream's write timeout the waiter cancels the send and then waits
//!   for its completion all the same: a send the cancel came too late for has sent its
//!   bytes, and reporting a timeout then would make a caller send them twice. Only
//!   `-ECANCELED` becomes the timeout (`EAGAIN`, as std reports it).
//! - **The wrong socket.** A queued send names its socket by descriptor number, resolved
//!   when the kernel takes the request from the queue. A waiter that leaves before its
//!   completion (unwound because its runtime is dropped; a timed-out waiter does not leave
//!   early) may close the socket next, and the number may be reused at once: a send still
//!   queued would then write into another socket. So such a waiter cancels its send and,
//!   before it leaves, enters the kernel until the kernel has taken the send from the queue
//!   (an `io_uring_enter` may take only part of the queue, or fail for a transient reason),
//!   aborting the process with a message if it cannot ([`UringReactor::submit_before_close`]:
//!   each push is numbered under `submit_lock`, and what the kernel has taken is what was
//!   pushed less what is still queued). Once taken, a request holds its file, and closing
//!   the descriptor no longer reaches it.
//! - **Kernel-thread exit.** A send cancelled by the kernel because the kernel thread that
//!   submitted it exited (see [`UringReactor::file_request`]) sent nothing, and is made
//!   again.
//!
//! # Dropping the ring
//!
//! Closing a ring with requests in flight makes the kernel cancel them asynchronously, so
//! their buffers must live on. A request's `Completion` holds its waiter's `Thread`, whose
//! record holds its worker, which owns this reactor: as long as a request is in flight,
//! the reactor cannot be dropped at all. So the worker, as it exits after cancelling its
//! green threads, drains the ring ([`UringReactor::drain`]): it cancels everything still in
//! flight (requests of cancelled waiters, the wake read and the poll of the streams'
//! instance) and reaps the completions, for up to [`DRAIN_LIMIT`]. Whatever has not
//! completed by then is leaked (its `Completion`, and with it the ring, and the wake buffer
//! are never freed), which is safe, where freeing it would not be. Drop drains again, for a
//! reactor whose worker never ran.

use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{opcode, squeue, IoUring};
use rustix::event::{eventfd, EventfdFlags};

use super::epoll::EpollReactor;
use super::{park_until_ready, Interest, Reactor};
use crate::fork::Provenance;
use crate::park::WaitReason;
use crate::sched::context;
use crate::task::thread::Thread;

/// The `user_data` of the wake eventfd's read.
const WAKE_KEY: u64 = 0;

/// The `user_data` of cancel requests, whose completions say nothing the waiter needs.
const CANCEL_KEY: u64 = 1;

/// The `user_data` of the poll of the streams' epoll instance (module docs).
const STREAMS_KEY: u64 = 2;

// The fixed keys are told apart from the addresses of 8-byte aligned records.
const _: () = assert!(std::mem::align_of::<Completion>() >= 4);

/// Submission queue entries per ring: what one `io_uring_enter` can carry. A round queues
/// a request per thread that waits or sends; a push that finds the queue full submits it
/// there and then, so a larger round only takes more system calls.
const SQ_ENTRIES: u32 = 256;

/// Completion queue entries per ring: room for a burst of ready descriptors (many-to-one
/// with 10,000 connections). With `IORING_FEAT_NODROP` (required) a fuller burst is kept
/// by the kernel and delivered at the next `io_uring_enter`, not lost.
const CQ_ENTRIES: u32 = 4096;

/// How long dropping a ring waits for its cancelled requests to complete before leaking
/// them.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// One worker's io_uring, wake eventfd and streams' epoll instance.
pub(crate) struct UringReactor {
    ring: IoUring,
    /// The process the ring was set up in (`fork.rs`).
    provenance: Provenance,
    /// Serializes pushes to the submission queue (module docs, "Who touches the ring"), and
    /// counts the entries pushed so far: the count an entry's push returns is its position,
    /// which [`Self::is_submitted`] compares with what the kernel has taken.
    submit_lock: Mutex<u64>,
    /// One-shot requests whose ring reference has not come back: a busy worker reaps only
    /// while there are some (or threads waiting on a registration).
    in_flight: AtomicUsize,
    /// The epoll instance streams register with (module docs); it counts the threads
    /// waiting on a registration.
    streams: EpollReactor,
    /// The poll of `streams`' descriptor is in flight. Driver only (and drop).
    streams_armed: AtomicBool,
    /// The wake eventfd (blocking).
    wake: OwnedFd,
    /// Where the wake read puts the count: from `Box::into_raw`, freed by drop only once
    /// no read is in flight.
    wake_buf: *mut u64,
    /// A wake read is in flight. Driver only (and drop).
    wake_armed: AtomicBool,
}

// SAFETY: `wake_buf` is the only field that is not `Send`/`Sync` by itself: it is written
// by the kernel while a read is in flight and by no thread (its value is never read), and
// freed once by drop; the ring's queues are shared under the rules of the module docs.
unsafe impl Send for UringReactor {}
// SAFETY: as for `Send`.
unsafe impl Sync for UringReactor {}

/// A request's record, shared by the ring and the waiting thread (module docs).
pub(crate) struct Completion {
    result: AtomicI32,
    done: AtomicBool,
    thread: Thread,
    /// The data of a read or write: the kernel's while the request is in flight, the
    /// waiter's before the submission and after `done`.
    buffer: UnsafeCell<Vec<u8>>,
    /// Keeps the file of a file request open as long as the request may use it.
    _file: Option<Arc<std::fs::File>>,
}

// SAFETY: `buffer` is the only field that is not `Sync`; it is touched by the waiter only
// before the request is pushed and after it has read `done` (Acquire), which the reaper
// sets (Release) after the kernel finished with the buffer; the reaper never touches it,
// and the last `Arc` drop (on whichever side) happens after both sides stopped using it.
unsafe impl Sync for Completion {}

impl Completion {
    fn new(buffer: Vec<u8>, file: Option<Arc<std::fs::File>>) -> Arc<Completion> {
        Arc::new(Completion {
            result: AtomicI32::new(0),
            done: AtomicBool::new(false),
            thread: context::current_thread(),
            buffer: UnsafeCell::new(buffer),
            _file: file,
        })
    }

    fn is_done(&self) -> bool {
        self.done.load(Acquire)
    }
}

/// Probes whether this process can run this backend; `Err` says why not (see
/// `io/backend.rs`).
pub(crate) fn probe() -> Result<(), String> {
    let ring = ring_builder()
        .build(8)
        .map_err(|e| format!("io_uring_setup with the flags spindle uses failed: {e}"))?;
    let params = ring.params();
    for (has, what) in [
        (
            params.is_feature_ext_arg(),
            "IORING_FEAT_EXT_ARG (Linux 5.11)",
        ),
        (params.is_feature_nodrop(), "IORING_FEAT_NODROP (Linux 5.5)"),
        (
            params.is_feature_rw_cur_pos(),
            "IORING_FEAT_RW_CUR_POS (Linux 5.6)",
        ),
    ] {
        if !has {
            return Err(format!("the kernel lacks {what}"));
        }
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("IORING_REGISTER_PROBE failed: {e}"))?;
    for (code, name) in [
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::Fsync::CODE, "FSYNC"),
        (opcode::Send::CODE, "SEND"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("the kernel lacks IORING_OP_{name}"));
        }
    }
    // A filter may allow the setup and refuse the rest: run one request end to end.
    let nop = opcode::Nop::new().build().user_data(7);
    // SAFETY: the ring was just made here and no other thread has it, so this is the only
    // handle on its submission queue; and a no-op request points to no memory of ours.
    unsafe { ring.submission_shared().push(&nop) }.map_err(|_| "cannot queue a NOP".to_string())?;
    ring.submit_and_wait(1)
        .map_err(|e| format!("io_uring_enter failed: {e}"))?;
    // SAFETY: this thread is the only user of this ring.
    let cqe = unsafe { ring.completion_shared() }.next();
    match cqe {
        Some(cqe) if cqe.user_data() == 7 && cqe.result() >= 0 => Ok(()),
        _ => Err("a NOP request did not complete".to_string()),
    }
}

/// The setup every ring of this backend uses (and the probe tries): cooperative task
/// running (Linux 5.19), so that completions do not interrupt a busy worker; the kernel
/// flags the submission queue instead (`IORING_SQ_TASKRUN`) and the worker's next poll
/// enters the kernel to run them (module docs, "Submitting").
fn ring_builder() -> io_uring::Builder {
    let mut builder = IoUring::builder();
    builder.setup_coop_taskrun().setup_taskrun_flag();
    builder
}

impl UringReactor {
    pub(crate) fn new() -> io::Result<UringReactor> {
        let err = |what: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot make a worker's io_uring reactor: {what}: {e}"),
            )
        };
        let ring = ring_builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES)
            .map_err(|e| err("io_uring_setup", e))?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC).map_err(|e| err("eventfd", e.into()))?;
        Ok(UringReactor {
            ring,
            provenance: Provenance::here(),
            submit_lock: Mutex::new(0),
            in_flight: AtomicUsize::new(0),
            streams: EpollReactor::for_registrations()?,
            streams_armed: AtomicBool::new(false),
            wake,
            wake_buf: Box::into_raw(Box::new(0u64)),
            wake_armed: AtomicBool::new(false),
        })
    }

    /// See [`super::Reactor::wake`].
    pub(crate) fn wake(&self) {
        // Cannot block in practice: the count would have to reach 2^64 - 2.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Whether a thread waits for I/O here: a request's completion is still to be reaped,
    /// or a thread waits on a registration. A busy worker polls only then.
    #[inline]
    pub(crate) fn has_waiters(&self) -> bool {
        self.in_flight.load(Relaxed) != 0 || self.streams.has_registrations()
    }

    /// The epoll instance streams register with (module docs, "Descriptors and files").
    pub(crate) fn streams(&self) -> &EpollReactor {
        &self.streams
    }

    /// Pushes `entry` to the submission queue; returns its position (`submit_lock`).
    ///
    /// # Safety
    ///
    /// Every memory the entry points to stays valid until its completion is reaped.
    unsafe fn push(&self, entry: &squeue::Entry) -> io::Result<u64> {
        let mut pushed = self.submit_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: pushes happen only under `submit_lock`, so this is the only live handle
        // on the submission queue.
        let mut sq = unsafe { self.ring.submission_shared() };
        loop {
            // SAFETY: the caller keeps the entry's memory valid until its completion.
            if unsafe { sq.push(entry) }.is_ok() {
                *pushed += 1;
                return Ok(*pushed); // dropping `sq` publishes the new tail
            }
            // Full: hand what is queued to the kernel, then try again.
            sq.sync();
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if transient(&e) => std::thread::yield_now(),
                Err(e) => return Err(e),
            }
            sq.sync();
        }
    }

    /// Whether the kernel has taken the entry pushed at `position` from the queue.
    fn is_submitted(&self, position: u64) -> bool {
        let pushed = self.submit_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: under `submit_lock`, as every use of the submission queue. The queue's
        // length is what is pushed and not yet taken: the last `len` of the pushed entries.
        let queued = unsafe { self.ring.submission_shared() }.len() as u64;
        *pushed - queued >= position
    }

    /// Queues `entry` for `op`: the ring takes its reference (module docs). Returns the
    /// entry's position (`submit_lock`).
    fn submit(&self, entry: squeue::Entry, op: &Arc<Completion>) -> io::Result<u64> {
        let data = Arc::into_raw(op.clone());
        let entry = entry.user_data(data as u64);
        // Counted before the push: once queued, the request may complete and be reaped
        // (and uncounted) before this thread goes on, if it is not the driver's.
        self.in_flight.fetch_add(1, Relaxed);
        // SAFETY: the entry's memory is the file and buffer of `op`, which the ring's
        // reference keeps alive until the completion is reaped.
        let position = match unsafe { self.push(&entry) } {
            Ok(position) => position,
            Err(e) => {
                self.in_flight.fetch_sub(1, Relaxed);
                // SAFETY: the entry was not queued, so this reference is still ours to drop.
                drop(unsafe { Arc::from_raw(data) });
                return Err(e);
            }
        };
        // Not submitted here: the driver hands everything queued to the kernel in one
        // `io_uring_enter` at its next poll (module docs, "Submitting").
        Ok(position)
    }

    /// Hands what is queued to the kernel. A transient failure leaves the entries queued;
    /// the driver's next poll submits them.
    fn enter_now(&self) {
        match self.ring.submit() {
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => panic!("spindle: io_uring_enter on a worker's reactor failed: {e}"),
        }
    }

    /// Asks the kernel to cancel `op`'s request, if it is still in flight. Best effort
    /// (module docs): a request that is not cancelled completes on its own.
    fn cancel(&self, op: &Arc<Completion>) {
        if op.is_done() {
            return;
        }
        let entry = opcode::AsyncCancel::new(Arc::as_ptr(op) as u64)
            .build()
            .user_data(CANCEL_KEY);
        // SAFETY: a cancel request points to no memory of ours.
        if unsafe { self.push(&entry) }.is_ok() {
            // Not `enter_now`: this runs in destructors (a waiter unwound at shutdown), where
            // a panic would abort. A cancel that cannot be submitted now stays queued for
            // the driver's next poll, and the request completes on its own anyway.
            let _ = self.ring.submit();
        }
    }

    /// Returns once the kernel has taken the entry at `position` from the queue, entering
    /// the kernel as often as needed (an `io_uring_enter` may take only part of the queue,
    /// or fail for a transient reason): for a waiter whose queued request names a socket it
    /// may close next ("Stream writes" in the module docs). Runs in destructors, so it
    /// aborts (with a message) instead of panicking if the kernel keeps refusing.
    fn submit_before_close(&self, position: u64) {
        for _ in 0..10_000 {
            if self.is_submitted(position) {
                return;
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if transient(&e) => std::thread::yield_now(),
                Err(e) => submit_failed_abort(&e),
            }
        }
        if !self.is_submitted(position) {
            submit_failed_abort(&io::Error::other("io_uring_enter kept leaving it queued"));
        }
    }

    /// See [`super::Reactor::poll`]. Called only by the worker's driver.
    pub(crate) fn poll(&self, timeout: Option<Duration>) {
        if timeout == Some(Duration::ZERO) {
            if self.kernel_has_work() {
                self.enter_now();
            }
        } else {
            self.arm_wake();
            self.arm_streams();
            let ts;
            let result = match timeout {
                None => self.ring.submit_and_wait(1),
                Some(d) => {
                    ts = Timespec::from(d);
                    self.ring
                        .submitter()
                        .submit_with_args(1, &SubmitArgs::new().timespec(&ts))
                }
            };
            match result {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) || transient(&e) => {}
                Err(e) => panic!("spindle: io_uring_enter on a worker's reactor failed: {e}"),
            }
        }
        let streams_ready = self.reap();
        // The streams' events (module docs): after the poll of their instance completed, or
        // at a busy check while a thread waits on one.
        if streams_ready || self.streams.has_registrations() {
            self.streams.poll(Some(Duration::ZERO));
        } else {
            self.streams.drop_released();
        }
    }

    /// Whether a busy worker must enter the kernel: entries wait in the submission queue,
    /// or completions wait in the kernel's overflow list or its task work.
    fn kernel_has_work(&self) -> bool {
        let _locked = self.submit_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: under `submit_lock`, as every use of the submission queue.
        let sq = unsafe { self.ring.submission_shared() };
        !sq.is_empty() || sq.cq_overflow() || sq.taskrun()
    }

    /// Queues a read of the wake eventfd unless one is in flight.
    fn arm_wake(&self) {
        if self.wake_armed.load(Relaxed) {
            return;
        }
        let entry = opcode::Read::new(Fd(self.wake.as_raw_fd()), self.wake_buf.cast(), 8)
            .build()
            .user_data(WAKE_KEY);
        // SAFETY: `wake_buf` is freed only by drop, and only once no read is in flight.
        if unsafe { self.push(&entry) }.is_ok() {
            self.wake_armed.store(true, Relaxed);
        }
    }

    /// Queues a poll of the streams' epoll instance unless one is in flight.
    fn arm_streams(&self) {
        if self.streams_armed.load(Relaxed) {
            return;
        }
        let fd = self.streams.epoll_fd().as_raw_fd();
        let entry = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(STREAMS_KEY);
        // SAFETY: a poll points to no memory of ours; the instance's descriptor is closed
        // only with this reactor, after `drain`.
        if unsafe { self.push(&entry) }.is_ok() {
            self.streams_armed.store(true, Relaxed);
        }
    }

    /// Takes every completion: stores each request's result and unparks its thread.
    /// Returns whether the poll of the streams' instance completed.
    fn reap(&self) -> bool {
        let mut streams_ready = false;
        // SAFETY: only the driver reaps (and drop, when no driver is left).
        let cq = unsafe { self.ring.completion_shared() };
        for cqe in cq {
            match cqe.user_data() {
                WAKE_KEY => self.wake_armed.store(false, Relaxed),
                CANCEL_KEY => {}
                STREAMS_KEY => {
                    self.streams_armed.store(false, Relaxed);
                    streams_ready = true;
                }
                data => {
                    // SAFETY: every other `user_data` is a ring reference made by
                    // `Arc::into_raw` in `submit`, and each comes back exactly once.
                    let op = unsafe { Arc::from_raw(data as *const Completion) };
                    self.in_flight.fetch_sub(1, Relaxed);
                    op.result.store(cqe.result(), Relaxed);
                    op.done.store(true, Release);
                    op.thread.unpark();
                }
            }
        }
        streams_ready
    }

    /// Makes a request and parks the calling green thread until it completes or
    /// `deadline` passes; on the way out (also by unwinding) a request still in flight is
    /// cancelled. `Some(result)` on completion, `None` on timeout.
    fn run(
        &self,
        entry: squeue::Entry,
        op: &Arc<Completion>,
        reason: WaitReason,
        fd: BorrowedFd<'_>,
        deadline: Option<Instant>,
    ) -> io::Result<Option<i32>> {
        self.submit(entry, op)?;
        let _cancel_on_exit = CancelOnExit { reactor: self, op };
        let ready = park_until_ready(|| op.is_done(), reason, fd, deadline);
        Ok(ready.then(|| op.result.load(Relaxed)))
    }

    /// See [`super::wait_until`]. Called on a green thread of this reactor's worker.
    pub(crate) fn wait_until(
        &self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        reason: WaitReason,
        deadline: Option<Instant>,
    ) -> io::Result<bool> {
        let mask = match interest {
            Interest::Read => libc::POLLIN | libc::POLLRDHUP,
            Interest::Write => libc::POLLOUT,
        };
        let entry = opcode::PollAdd::new(Fd(fd.as_raw_fd()), mask as u32).build();
        let op = Completion::new(Vec::new(), None);
        // Any completion, an error included, means "try the operation again": the
        // operation itself then reports what is wrong with the descriptor.
        Ok(self.run(entry, &op, reason, fd, deadline)?.is_some())
    }
}

/// Cancels a request whose waiter leaves before its completion.
struct CancelOnExit<'a> {
    reactor: &'a UringReactor,
    op: &'a Arc<Completion>,
}

impl Drop for CancelOnExit<'_> {
    fn drop(&mut self) {
        self.reactor.cancel(self.op);
    }
}

impl UringReactor {
    /// Cancels everything in flight (the wake read too) and reaps the completions, for up to
    /// [`DRAIN_LIMIT`]; what has not completed by then stays in flight. The worker calls it
    /// as it exits, once its green threads are gone: a request cancelled at shutdown holds
    /// its waiter's record, which holds the worker and so this reactor, until the request
    /// is reaped, so without this the ring would never be dropped. Called only by the
    /// driver (or by drop).
    pub(crate) fn drain(&self) {
        if self.provenance.is_inherited() {
            // A fork child: the queues are memory shared with the parent's ring, which is
            // the parent's to drain (fork.rs). Closing our copy of the descriptor and
            // mappings, all that drop does next, leaves the parent's ring alone.
            return;
        }
        let busy = || {
            self.in_flight.load(Relaxed) != 0
                || self.wake_armed.load(Relaxed)
                || self.streams_armed.load(Relaxed)
        };
        if busy() {
            let all = opcode::AsyncCancel2::new(CancelBuilder::any())
                .build()
                .user_data(CANCEL_KEY);
            // SAFETY: a cancel request points to no memory of ours.
            if unsafe { self.push(&all) }.is_ok() {
                self.enter_now();
            }
            let give_up = Instant::now() + DRAIN_LIMIT;
            while busy() && Instant::now() < give_up {
                let ts = Timespec::from(Duration::from_millis(50));
                let _ = self
                    .ring
                    .submitter()
                    .submit_with_args(1, &SubmitArgs::new().timespec(&ts));
                self.reap();
            }
        }
    }
}

impl Drop for UringReactor {
    fn drop(&mut self) {
        self.drain();
        if !self.wake_armed.load(Relaxed) {
            // SAFETY: from `Box::into_raw` in `new`; no read is in flight that writes it.
            drop(unsafe { Box::from_raw(self.wake_buf) });
        }
        // Requests still in flight keep their `Completion`s: leaked, never freed.
    }
}

/// [`UringReactor::submit_before_close`]'s way out: a queued send that may outlive its
/// socket would write into whatever socket takes the descriptor's number next.
#[cold]
fn submit_failed_abort(e: &io::Error) -> ! {
    eprintln!(
        "spindle: cannot hand a queued socket send to the kernel before its socket may \
         close ({e}); aborting rather than risk writing into another socket"
    );
    std::process::abort()
}

/// Whether an `io_uring_enter` failure leaves the queued entries for a later call.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// The io_uring reactor of the calling green thread's worker, if it has one.
pub(crate) fn current<'a>() -> Option<&'a UringReactor> {
    context::current_green()?;
    match &context::current_worker()?.shared().reactor {
        Reactor::Uring(r) => Some(r),
        Reactor::Epoll(_) => None,
    }
}

/// A file request to make: the entry for a buffer (given as pointer and length).
pub(crate) type FileEntry<'a> = &'a dyn Fn(Fd, *mut u8, u32) -> squeue::Entry;

impl UringReactor {
    /// Runs a file request on `buffer` and parks until it completes: the result (bytes
    /// moved) and the buffer back. `make` builds the entry for the file's descriptor and
    /// the buffer's pointer and length (at most `u32::MAX` bytes are offered).
    pub(crate) fn file_request(
        &self,
        file: &Arc<std::fs::File>,
        mut buffer: Vec<u8>,
        reason: WaitReason,
        make: FileEntry<'_>,
    ) -> io::Result<(usize, Vec<u8>)> {
        let fd = Fd(file.as_raw_fd());
        let mut cancelled_by_kernel = 0;
        loop {
            let op = Completion::new(buffer, Some(file.clone()));
            // SAFETY: the request is not made yet, so the buffer is the waiter's alone.
            let (ptr, len) = unsafe {
                let buf = &mut *op.buffer.get();
                (buf.as_mut_ptr(), buf.len().min(u32::MAX as usize) as u32)
            };
            let result = self
                .run(make(fd, ptr, len), &op, reason, file.as_fd(), None)?
                .expect("a request without deadline completes");
            // SAFETY: `done` was read (Acquire) by `run`: the kernel is finished with it.
            buffer = std::mem::take(unsafe { &mut *op.buffer.get() });
            // A file request has no deadline, and a waiter unwound from it does not get
            // here, so it never cancels its own request: -ECANCELED comes from the kernel,
            // which cancels the pending async work of a kernel thread that exits. That is
            // the driver that submitted it, when migration handed the worker to a new
            // kernel thread and the old one ended. The request did not run: submit it
            // again, from the driver there is now (a few times at most).
            if result == -libc::ECANCELED && cancelled_by_kernel < 8 {
                cancelled_by_kernel += 1;
                continue;
            }
            if result < 0 {
                return Err(io::Error::from_raw_os_error(-result));
            }
            return Ok((result as usize, buffer));
        }
    }
}

/// Most bytes a stream write sends through the ring; a larger write makes its system call
/// itself (module docs, "Stream writes").
pub(crate) const STREAM_SEND_MAX: usize = 16 * 1024;

impl UringReactor {
    /// Sends the bytes of `bufs` (together at most [`STREAM_SEND_MAX`], which the caller
    /// checks) on the socket `fd` with one `IORING_OP_SEND` of this ring, parking until it
    /// completes; at `deadline`, cancels it and still waits for its completion, which says
    /// whether bytes went out (module docs, "Stream writes"). `None` if the kernel answers
    /// `EAGAIN`: the caller then waits for writability and sends itself.
    pub(crate) fn stream_send(
        &self,
        fd: BorrowedFd<'_>,
        bufs: &[io::IoSlice<'_>],
        reason: WaitReason,
        deadline: Option<Instant>,
    ) -> Option<io::Result<usize>> {
        let mut data = Vec::with_capacity(STREAM_SEND_MAX.min(bufs.iter().map(|b| b.len()).sum()));
        for buf in bufs {
            data.extend_from_slice(buf);
        }
        let mut cancelled_by_kernel = 0;
        loop {
            let op = Completion::new(data, None);
            // SAFETY: the request is not made yet, so the buffer is the waiter's alone.
            let (ptr, len) = unsafe {
                let buf = &*op.buffer.get();
                (buf.as_ptr(), buf.len().min(u32::MAX as usize) as u32)
            };
            let entry = opcode::Send::new(Fd(fd.as_raw_fd()), ptr, len)
                .flags(libc::MSG_NOSIGNAL)
                .build();
            // A ring that cannot take the request leaves the write to the caller.
            let position = self.submit(entry, &op).ok()?;
            let _submitted_on_exit = SubmitOnExit {
                reactor: self,
                op: &op,
                position,
            };
            let in_time = park_until_ready(|| op.is_done(), reason, fd, deadline);
            if !in_time {
                // Bytes may be on their way: learn from the completion whether they went.
                self.cancel(&op);
                park_until_ready(|| op.is_done(), reason, fd, None);
            }
            match op.result.load(Relaxed) {
                n if n >= 0 => return Some(Ok(n as usize)),
                e if e == -libc::EAGAIN => return None,
                // Cancelled by us: nothing was sent, and std reports a timeout as EAGAIN.
                e if e == -libc::ECANCELED && !in_time => {
                    return Some(Err(io::Error::from_raw_os_error(libc::EAGAIN)))
                }
                // Cancelled by the kernel, as `file_request` explains: not sent, send again.
                e if e == -libc::ECANCELED && cancelled_by_kernel < 8 => {
                    cancelled_by_kernel += 1;
                    // SAFETY: the request completed (`done` read with Acquire above).
                    data = std::mem::take(unsafe { &mut *op.buffer.get() });
                }
                e => return Some(Err(io::Error::from_raw_os_error(-e))),
            }
        }
    }
}

/// Makes sure that a send whose waiter leaves before its completion (unwinding) has been
/// handed to the kernel before the waiter can close its socket (module docs, "Stream
/// writes"), and cancels it.
struct SubmitOnExit<'a> {
    reactor: &'a UringReactor,
    op: &'a Arc<Completion>,
    /// The send's position in the submission queue.
    position: u64,
}

impl Drop for SubmitOnExit<'_> {
    fn drop(&mut self) {
        if !self.op.is_done() {
            self.reactor.cancel(self.op);
            self.reactor.submit_before_close(self.position);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::io::{ErrorKind, Read};
    use std::os::fd::{FromRawFd, IntoRawFd};
    use std::os::unix::net::UnixStream;

    use super::*;

    /// A send queued and never submitted, whose waiter then leaves (as an unwound one does)
    /// and whose descriptor's number then names another socket: the send must have gone to
    /// its own socket (or nowhere), never to the other.
    #[test]
    fn a_send_whose_waiter_leaves_is_submitted_before_its_socket_can_close() {
        let ring = match UringReactor::new() {
            Ok(ring) => ring,
            Err(e) => return eprintln!("io_uring unavailable, nothing to test: {e}"),
        };
        let (own, own_peer) = UnixStream::pair().unwrap();
        let (other, other_peer) = UnixStream::pair().unwrap();
        own_peer.set_nonblocking(true).unwrap();
        other_peer.set_nonblocking(true).unwrap();
        let op = Completion::new(b"queued".to_vec(), None);
        // SAFETY: the request is not made yet, so the buffer is ours alone.
        let (ptr, len) = unsafe {
            let buf = &*op.buffer.get();
            (buf.as_ptr(), buf.len() as u32)
        };
        let entry = opcode::Send::new(Fd(own.as_raw_fd()), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        // Queued only: no driver runs here to submit it.
        let position = ring.submit(entry, &op).unwrap();
        drop(SubmitOnExit {
            reactor: &ring,
            op: &op,
            position,
        });
        // The waiter's socket closes and its number goes to the other socket at once.
        let number = own.into_raw_fd();
        // SAFETY: `number` is ours (just released by `own`), and `dup2` closes it and
        // reopens it on the other socket; `reused` then owns it.
        let reused = unsafe {
            assert_eq!(libc::dup2(other.as_raw_fd(), number), number);
            OwnedFd::from_raw_fd(number)
        };
        // Whatever is still queued goes to the kernel now, and everything completes.
        let give_up = Instant::now() + Duration::from_secs(10);
        while !op.is_done() {
            assert!(Instant::now() < give_up, "the send never completed");
            ring.poll(Some(Duration::from_millis(10)));
        }
        let mut buf = [0u8; 16];
        match (&other_peer).read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            got => panic!("the send reached the socket that took its number: {got:?}"),
        }
        match (&own_peer).read(&mut buf) {
            Ok(n) => assert_eq!(&buf[..n], b"queued"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}"),
        }
        drop(reused);
    }
}
