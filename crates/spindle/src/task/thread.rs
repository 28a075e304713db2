//! `Thread`, `ThreadId` and the record behind them.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::green::GreenTask;
use super::local::LocalMap;
use super::packet::ResultSlot;

/// A unique identifier for a spindle thread, green or kernel.
///
/// Ids are never reused within a process. Unlike `std::thread::ThreadId` the number is
/// available, so that dumps and debuggers can name a thread.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ThreadId(NonZeroU64);

/// How many ids a kernel thread reserves at a time.
const ID_BLOCK: u64 = 1024;

/// The start of the next block of ids. Relaxed is enough: it only has to hand out distinct
/// ranges.
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This kernel thread's block: the next id to hand out and the end of the block.
    static BLOCK: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

impl ThreadId {
    /// A fresh id.
    ///
    /// Each kernel thread takes ids from the global counter in blocks of [`ID_BLOCK`] and
    /// hands them out from a thread-local cursor, so a spawn costs no atomic operation: ids
    /// stay unique, and increase per kernel thread, but not globally in spawn order.
    pub(crate) fn next() -> ThreadId {
        let id = BLOCK.with(|b| {
            let (next, end) = b.get();
            if next == end {
                let start = NEXT_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed);
                b.set((start + 1, start + ID_BLOCK));
                start
            } else {
                b.set((next + 1, end));
                next
            }
        });
        ThreadId(NonZeroU64::new(id).expect("thread id counter overflowed"))
    }

    /// In a fork child, on its only thread: drops this thread's block, so that its next id
    /// comes from a new one, and returns the first id of that new block. Every id below it
    /// was handed out before the fork (`fork.rs`).
    pub(crate) fn start_fresh_block_after_fork() -> u64 {
        BLOCK.with(|b| b.set((0, 0)));
        NEXT_BLOCK.load(Ordering::Relaxed)
    }

    /// The id as a number.
    pub fn as_u64(self) -> NonZeroU64 {
        self.0
    }

    /// The id whose number is `n`, if `n` is not 0.
    pub(crate) fn from_u64(n: u64) -> Option<ThreadId> {
        NonZeroU64::new(n).map(ThreadId)
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What runs a thread: a green thread on a scheduler worker, or a kernel thread.
pub(crate) enum ThreadKind {
    /// A green thread; parking it switches its worker to another green thread.
    Green(GreenTask),
    /// A kernel thread (spawned by a one-to-one runtime, or any other thread); parking it
    /// parks the kernel thread with `std::thread::park`. The std handle is set by whichever
    /// of the spawner and the new thread gets there first, before the record can be reached
    /// by anyone else.
    Kernel(std::sync::OnceLock<std::thread::Thread>),
}

/// The shared record of one thread.
pub(crate) struct ThreadInner {
    pub(crate) id: ThreadId,
    pub(crate) name: Option<Box<str>>,
    pub(crate) kind: ThreadKind,
    /// A green thread's `spindle::local!` values (`task/local.rs`); touched only by the
    /// thread itself. Unused for kernel threads, whose values live in a std thread-local.
    pub(crate) locals: LocalMap,
    /// The thread's result, on its way to the `JoinHandle` (`task/packet.rs`); unused for
    /// kernel threads spindle did not spawn.
    pub(crate) result: ResultSlot,
    /// When it was spawned (a kernel thread spindle did not spawn: when spindle first saw
    /// it), as a stamp of `debug/clock.rs`.
    pub(crate) spawned: u64,
    /// A kernel thread's id (`gettid`), once it runs; 0 before, and for green threads.
    pub(crate) kernel_tid: std::sync::atomic::AtomicI32,
    /// What a kernel thread waits for in spindle, and until when, for dumps.
    pub(crate) kernel_wait: crate::task::kernel_wait::KernelWait,
}

/// The fields `ThreadInner::new` writes one by one: adding a field to the record without
/// writing it there fails to compile here (an exhaustive pattern, no `..`).
fn _every_field_written(record: ThreadInner) {
    let ThreadInner {
        spawned: _,
        kernel_tid: _,
        kernel_wait: _,
        id: _,
        name: _,
        kind: _,
        locals: _,
        result: _,
    } = record;
}

impl ThreadInner {
    /// A record with a fresh id and nothing in its local storage or result slot, in its
    /// `Arc`. `kind` is called once the `Arc`'s memory is allocated and its value written
    /// straight there, field by field: inlined, nothing of the record is built on the
    /// stack first. Built first and moved in, it was copied twice on its way (its
    /// `GreenTask`, 224 bytes, into the record, then the record, 368 bytes with the
    /// counts, into the `Arc`): two `memcpy` calls, about 90 of the 1,520 instructions of
    /// a many-to-one spawn + join.
    #[inline(always)]
    pub(crate) fn new(
        name: Option<Box<str>>,
        kind: impl FnOnce() -> ThreadKind,
    ) -> Arc<ThreadInner> {
        let record = Arc::<ThreadInner>::new_uninit();
        let p = Arc::as_ptr(&record).cast_mut().cast::<ThreadInner>();
        // SAFETY: `record` is the only pointer to its fresh allocation, and `as_ptr` gives
        // one with write permission (std derives it from the allocation's pointer without
        // a reference, `&raw mut (*ptr).data`, so that writes through it stay sound while
        // the `Arc` is unique, as here), valid for a `ThreadInner` (`MaybeUninit<T>` has
        // `T`'s layout). Each field is written once, through a raw field pointer (no
        // reference to the uninitialized record is made), and the kind is read back only
        // after its write; `_every_field_written` fails to compile if a field is added and
        // not written here. After the writes the record is initialized, which
        // `assume_init` then claims. (A panic in between, of `ThreadId::next`, would leak
        // what was written, never drop uninitialized fields: the `Arc` of `MaybeUninit`
        // drops nothing.)
        unsafe {
            std::ptr::addr_of_mut!((*p).kind).write(kind());
            let spawned = match &(*p).kind {
                ThreadKind::Green(_) => crate::debug::clock::coarse_stamp(),
                ThreadKind::Kernel(_) => crate::debug::clock::exact_stamp(),
            };
            std::ptr::addr_of_mut!((*p).spawned).write(spawned);
            std::ptr::addr_of_mut!((*p).kernel_tid).write(std::sync::atomic::AtomicI32::new(0));
            std::ptr::addr_of_mut!((*p).kernel_wait)
                .write(crate::task::kernel_wait::KernelWait::new());
            std::ptr::addr_of_mut!((*p).id).write(ThreadId::next());
            std::ptr::addr_of_mut!((*p).name).write(name);
            std::ptr::addr_of_mut!((*p).locals).write(LocalMap::new());
            std::ptr::addr_of_mut!((*p).result).write(ResultSlot::new());
            record.assume_init()
        }
    }

    /// The green part of a record known to be a green thread's (taken from a run queue,
    /// the running green thread, a timer). Panics on a kernel thread's record: that would
    /// be a scheduler bug.
    #[inline]
    pub(crate) fn green(&self) -> &GreenTask {
        match &self.kind {
            ThreadKind::Green(g) => g,
            ThreadKind::Kernel(_) => {
                unreachable!("a kernel thread's record where a green one belongs")
            }
        }
    }
}

/// A handle to a spindle thread, green or kernel: the counterpart of `std::thread::Thread`.
///
/// Obtained from [`crate::current`] or [`crate::JoinHandle::thread`]. Cheap to clone.
#[derive(Clone)]
pub struct Thread {
    pub(crate) inner: Arc<ThreadInner>,
}

impl Thread {
    pub(crate) fn from_inner(inner: Arc<ThreadInner>) -> Thread {
        Thread { inner }
    }

    /// The thread's unique id.
    pub fn id(&self) -> ThreadId {
        self.inner.id
    }

    /// The thread's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// Whether this is a green thread (as opposed to a kernel thread).
    pub fn is_green(&self) -> bool {
        matches!(self.inner.kind, ThreadKind::Green(_))
    }

    /// The CPU time (user plus system) this green thread has used so far, as sampled by
    /// its runtime: a multiple of [`crate::runtime::CPU_SAMPLE_INTERVAL`], accurate to a
    /// few intervals (see [`crate::runtime::Builder::cpu_accounting`]). Zero when the
    /// runtime's accounting is off; `None` for a kernel thread, whose CPU time the kernel
    /// keeps (`CLOCK_THREAD_CPUTIME_ID`, `getrusage`).
    pub fn cpu_time(&self) -> Option<std::time::Duration> {
        match &self.inner.kind {
            ThreadKind::Green(g) => Some(crate::sched::cpu_sampler::samples_to_time(
                g.cpu_samples.load(std::sync::atomic::Ordering::Relaxed),
            )),
            ThreadKind::Kernel(_) => None,
        }
    }

    /// Makes the thread's park token available, waking it if it is parked.
    ///
    /// The semantics are `std::thread::Thread::unpark`'s: a token, not a counter. If the
    /// thread is parked it returns from `park`; otherwise its next `park` returns at once.
    /// Works across models: a kernel thread may unpark a green thread and the other way round.
    pub fn unpark(&self) {
        crate::park::unpark(&self.inner);
    }
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("green", &self.is_green())
            .finish()
    }
}
