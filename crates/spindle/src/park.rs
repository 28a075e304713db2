//! The one way to block.
//!
//! Every blocking primitive in spindle ends in [`park`] (or [`park_timeout`]) and is woken
//! by [`unpark`]. On a green thread, parking suspends the green thread and its worker runs
//! another; on any other kernel thread it is `std::thread::park`. Because the choice is made
//! here and nowhere else, every primitive works from green threads of every model and from
//! plain kernel threads, mixed on the same object, and a kernel thread can wake a green
//! thread and the other way round.
//!
//! The semantics are std's: each thread has one token. `unpark` makes it available;
//! `park` consumes it, or waits for it. Spurious wakeups are allowed, so callers re-check
//! their condition in a loop. The green-thread side of the protocol (the state word, the
//! commit after the switch, who owns a parked thread) is in `sched/README.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sched::context;
use crate::task::green::Suspend;
use crate::task::{ThreadInner, ThreadKind};

/// What a parked thread waits for, shown in dumps. One per place that parks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u8)]
pub enum WaitReason {
    /// Not waiting.
    None,
    /// `spindle::park` / `park_timeout` called directly.
    Park,
    /// `spindle::sleep`.
    Sleep,
    /// `JoinHandle::join`.
    Join,
    /// Waiting for the threads of a `spindle::scope`.
    Scope,
    /// `Mutex::lock`.
    MutexLock,
    /// `Condvar::wait`.
    CondvarWait,
    /// A channel send waiting for room or a receiver.
    ChannelSend,
    /// A channel receive waiting for a message.
    ChannelRecv,
    /// `select!` (or `Select`) waiting for one of several channel operations.
    ChannelSelect,
    /// `Runtime::block_on` waiting for its root green thread.
    BlockOn,
    /// `RwLock::read`.
    RwLockRead,
    /// `RwLock::write`.
    RwLockWrite,
    /// `Barrier::wait`.
    BarrierWait,
    /// `Semaphore::acquire` (and its `_many` and `_timeout` forms).
    SemaphoreAcquire,
    /// `WaitGroup::wait`.
    WaitGroupWait,
    /// `Once` or `OnceLock`: waiting for another thread's initializer.
    OnceWait,
    /// `spindle::unblock`: waiting for the helper thread that runs the call.
    Unblock,
    /// `spindle::io::wait_readable`.
    IoReadable,
    /// `spindle::io::wait_writable`.
    IoWritable,
    /// `net::TcpListener::accept`.
    TcpAccept,
    /// `net::TcpStream::connect` waiting for the handshake.
    TcpConnect,
    /// A `net::TcpStream` read or peek.
    TcpRead,
    /// A `net::TcpStream` write.
    TcpWrite,
    /// A `net::UdpSocket` receive or peek.
    UdpRecv,
    /// A `net::UdpSocket` send.
    UdpSend,
    /// `net::unix::UnixListener::accept`.
    UnixAccept,
    /// `net::unix::UnixStream::connect` waiting for the listener.
    UnixConnect,
    /// A `net::unix::UnixStream` read.
    UnixRead,
    /// A `net::unix::UnixStream` write.
    UnixWrite,
    /// A `fs::File` read as an io_uring request.
    FileRead,
    /// A `fs::File` write as an io_uring request.
    FileWrite,
    /// A `fs::File` sync as an io_uring request.
    FileSync,
    /// A `fs::File`'s metadata as an io_uring `statx` request (what kind of file it is,
    /// asked once per file before its first positioned read or write).
    FileStat,
    /// `process::Child::wait` (and `Command::status`, `output`): waiting for a child
    /// process to exit.
    ProcessWait,
    /// A read from a child process's piped stdout or stderr.
    PipeRead,
    /// A write to a child process's piped stdin.
    PipeWrite,
    /// `spindle::debug::threads` and the dumps: waiting for the workers' answers.
    DebugDump,
}

impl WaitReason {
    /// Every reason, each at the index of its discriminant.
    const ALL: [WaitReason; 38] = [
        WaitReason::None,
        WaitReason::Park,
        WaitReason::Sleep,
        WaitReason::Join,
        WaitReason::Scope,
        WaitReason::MutexLock,
        WaitReason::CondvarWait,
        WaitReason::ChannelSend,
        WaitReason::ChannelRecv,
        WaitReason::ChannelSelect,
        WaitReason::BlockOn,
        WaitReason::RwLockRead,
        WaitReason::RwLockWrite,
        WaitReason::BarrierWait,
        WaitReason::SemaphoreAcquire,
        WaitReason::WaitGroupWait,
        WaitReason::OnceWait,
        WaitReason::Unblock,
        WaitReason::IoReadable,
        WaitReason::IoWritable,
        WaitReason::TcpAccept,
        WaitReason::TcpConnect,
        WaitReason::TcpRead,
        WaitReason::TcpWrite,
        WaitReason::UdpRecv,
        WaitReason::UdpSend,
        WaitReason::UnixAccept,
        WaitReason::UnixConnect,
        WaitReason::UnixRead,
        WaitReason::UnixWrite,
        WaitReason::FileRead,
        WaitReason::FileWrite,
        WaitReason::FileSync,
        WaitReason::FileStat,
        WaitReason::ProcessWait,
        WaitReason::PipeRead,
        WaitReason::PipeWrite,
        WaitReason::DebugDump,
    ];

    /// Every reason, in discriminant order.
    pub(crate) fn all() -> &'static [WaitReason] {
        &WaitReason::ALL
    }

    /// The reason whose discriminant is `n` (`WaitReason::None` for an unknown one).
    pub(crate) fn from_u8(n: u8) -> WaitReason {
        WaitReason::ALL
            .get(usize::from(n))
            .copied()
            .unwrap_or(WaitReason::None)
    }

    /// A short description, as shown in dumps ("channel recv", "mutex lock", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::None => "none",
            WaitReason::Park => "park",
            WaitReason::Sleep => "sleep",
            WaitReason::Join => "join",
            WaitReason::Scope => "scope",
            WaitReason::MutexLock => "mutex lock",
            WaitReason::CondvarWait => "condvar wait",
            WaitReason::ChannelSend => "channel send",
            WaitReason::ChannelRecv => "channel recv",
            WaitReason::ChannelSelect => "channel select",
            WaitReason::BlockOn => "block_on",
            WaitReason::RwLockRead => "rwlock read",
            WaitReason::RwLockWrite => "rwlock write",
            WaitReason::BarrierWait => "barrier wait",
            WaitReason::SemaphoreAcquire => "semaphore acquire",
            WaitReason::WaitGroupWait => "waitgroup wait",
            WaitReason::OnceWait => "once wait",
            WaitReason::Unblock => "unblock (helper pool)",
            WaitReason::IoReadable => "io readable",
            WaitReason::IoWritable => "io writable",
            WaitReason::TcpAccept => "tcp accept",
            WaitReason::TcpConnect => "tcp connect",
            WaitReason::TcpRead => "tcp read",
            WaitReason::TcpWrite => "tcp write",
            WaitReason::UdpRecv => "udp recv",
            WaitReason::UdpSend => "udp send",
            WaitReason::UnixAccept => "unix accept",
            WaitReason::UnixConnect => "unix connect",
            WaitReason::UnixRead => "unix read",
            WaitReason::UnixWrite => "unix write",
            WaitReason::FileRead => "file read (io_uring)",
            WaitReason::FileWrite => "file write (io_uring)",
            WaitReason::FileSync => "file sync (io_uring)",
            WaitReason::FileStat => "file stat (io_uring)",
            WaitReason::ProcessWait => "process wait",
            WaitReason::PipeRead => "pipe read",
            WaitReason::PipeWrite => "pipe write",
            WaitReason::DebugDump => "debug dump",
        }
    }
}

/// Blocks the calling thread until its token is available, then consumes it.
///
/// May return spuriously. `reason` is recorded for dumps when the caller is a green thread.
///
/// Inlined (with `park_green`) so that no function return follows the switch back into
/// the green thread: such a return is mispredicted and costs as much as the switch.
#[inline]
pub(crate) fn park(reason: WaitReason) {
    match context::current_green() {
        Some(task) => park_green(task, reason, None),
        None => {
            context::show_kernel_wait(reason, None);
            std::thread::park();
            context::show_kernel_wait(WaitReason::None, None);
        }
    }
}

/// Like [`park`], but returns once `deadline` has passed even without a token.
pub(crate) fn park_until(reason: WaitReason, deadline: Instant) {
    match context::current_green() {
        Some(task) => park_green(task, reason, Some(deadline)),
        None => {
            let timeout = deadline.saturating_duration_since(Instant::now());
            if timeout.is_zero() {
                // Still through std: a deadline already past consumes a waiting token
                // without blocking, as std's `park_timeout(Duration::ZERO)` does (and a
                // green thread's park).
                std::thread::park_timeout(Duration::ZERO);
            } else {
                context::show_kernel_wait(reason, Some(deadline));
                std::thread::park_timeout(timeout);
                context::show_kernel_wait(WaitReason::None, None);
            }
        }
    }
}

/// Like [`park`], but returns after at most `timeout`.
pub(crate) fn park_timeout(reason: WaitReason, timeout: Duration) {
    match Instant::now().checked_add(timeout) {
        Some(deadline) => park_until(reason, deadline),
        // A timeout too large to represent is "forever".
        None => park(reason),
    }
}

/// Sleeps until `deadline` without touching the park token.
pub(crate) fn sleep_until(deadline: Instant) {
    match context::current_green() {
        Some(task) => {
            let local = task.green().local_ptr();
            // SAFETY: `task` is the green thread running on this kernel thread, which is
            // its owning worker's; the borrows end before the switch.
            unsafe {
                (*local).wait_reason = WaitReason::Sleep;
                (*local).wait_deadline = Some(deadline);
            }
            while Instant::now() < deadline {
                context::suspend(task, Suspend::SleepUntil(deadline));
            }
            // SAFETY: as above.
            unsafe {
                (*local).wait_reason = WaitReason::None;
                (*local).wait_deadline = None;
            }
        }
        None => {
            context::show_kernel_wait(WaitReason::Sleep, Some(deadline));
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                std::thread::sleep(deadline - now);
            }
            context::show_kernel_wait(WaitReason::None, None);
        }
    }
}

#[inline]
fn park_green(task: &ThreadInner, reason: WaitReason, deadline: Option<Instant>) {
    let g = task.green();
    // Fast path: a token is waiting. Only this thread moves the word out of NOTIFIED, so a
    // relaxed load followed by a CAS that acquires the unparker's writes is enough.
    if g.state.try_consume_token() {
        return;
    }
    let local = g.local_ptr();
    // SAFETY: `task` runs on this kernel thread, its owning worker's; the borrows end here.
    unsafe {
        (*local).wait_reason = reason;
        (*local).wait_deadline = deadline;
    }
    let why = match deadline {
        Some(d) => Suspend::ParkUntil(d),
        None => Suspend::Park,
    };
    // The worker commits the park after the switch (sched/README.md, step 2).
    context::suspend(task, why);
    // SAFETY: as above, after the switch back.
    unsafe {
        (*local).wait_reason = WaitReason::None;
        (*local).wait_deadline = None;
    }
}

/// Shows, in dumps, the descriptor the running green thread waits on for as long as the
/// value lives (I/O waits park in a loop, possibly several times).
pub(crate) struct ShowWaitFd(Option<*mut crate::task::green::GreenLocal>);

impl ShowWaitFd {
    pub(crate) fn new(fd: i32) -> ShowWaitFd {
        ShowWaitFd(context::current_green().map(|task| {
            let local = task.green().local_ptr();
            // SAFETY: the running green thread's own record, on its worker's kernel thread;
            // one field written through the raw pointer.
            unsafe { (*local).wait_fd = fd };
            local
        }))
    }
}

impl Drop for ShowWaitFd {
    fn drop(&mut self) {
        if let Some(local) = self.0 {
            // SAFETY: as in `new`: the same thread (a green thread never changes record),
            // still running, writing its own field.
            unsafe { (*local).wait_fd = -1 };
        }
    }
}

/// Makes `thread`'s token available, waking it if it is parked.
pub(crate) fn unpark(thread: &Arc<ThreadInner>) {
    match &thread.kind {
        ThreadKind::Kernel(t) => {
            if let Some(t) = t.get() {
                t.unpark();
            }
        }
        ThreadKind::Green(g) => {
            if g.state.wake(true) {
                // SAFETY: `wake` returned true, so we won the PARKED -> EMPTY
                // transition and with it the strong count the worker leaked when it
                // committed the park (sched/README.md, step 3).
                let owned = unsafe { Arc::from_raw(Arc::as_ptr(thread)) };
                g.owner().schedule(owned);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WaitReason;

    #[test]
    fn every_reason_round_trips_through_its_discriminant() {
        for (i, r) in WaitReason::ALL.iter().enumerate() {
            assert_eq!(
                *r as u8 as usize, i,
                "{r:?} is out of place in WaitReason::ALL"
            );
            assert_eq!(WaitReason::from_u8(*r as u8), *r);
        }
        assert_eq!(WaitReason::from_u8(u8::MAX), WaitReason::None);
    }
}
