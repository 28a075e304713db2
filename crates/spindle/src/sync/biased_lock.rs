//! A spin lock biased to one kernel thread: its owner locks and unlocks with plain loads
//! and stores, every other thread with the [`SpinLock`]'s compare-and-swap, after revoking
//! the bias once.
//!
//! # Why
//!
//! Two green threads of a many-to-one runtime passing messages through a channel run on one
//! kernel thread. The channel's spin lock costs them one atomic read-modify-write per send
//! and per receive: about 8 ns each on this VM, most of a message's cost, and a price paid
//! only to exclude other kernel threads that, in this case, never come. A biased lock lets
//! the one kernel thread that uses the object skip the read-modify-write, and makes the
//! others pay instead, once, when the first of them arrives.
//!
//! # The protocol
//!
//! Three words: `owner` (the id of the kernel thread the lock is biased to, or
//! [`UNBIASED`]), `in_section` (set by the owner while it is inside a section it entered on
//! the bias) and `locked`, the flag of an inner test-and-test-and-set lock like the
//! [`SpinLock`]'s (written out here so that loom can model it).
//!
//! - **Owner, fast path.** A kernel thread whose id is in `owner` stores `in_section = true`,
//!   then (after a compiler fence only) loads `owner` again. If it still names this thread,
//!   the section is entered; leaving it is a release store of `in_section = false`. If not,
//!   the thread clears `in_section` and takes the slow path.
//! - **Everyone else, slow path.** Take the inner spin lock. Holding it, if `owner` is not
//!   `UNBIASED`, revoke: store `owner = UNBIASED`, run a *heavy barrier*, then wait until
//!   `in_section` is false (acquire). Then the section runs under the inner lock, and so do
//!   all later sections, the former owner's included: the bias is never given back.
//!
//! Why this excludes: the owner's "store `in_section`, load `owner`" and the revoker's
//! "store `owner`, load `in_section`" are Dekker's handshake, which needs a full fence
//! between the store and the load on both sides. The owner's side has only a compiler
//! fence, so that its path stays free of fences and read-modify-writes; the revoker's
//! heavy barrier is `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which makes every
//! thread of the process that runs at that moment execute a full memory barrier (by an
//! interrupt), and every thread that does not run has passed through a context switch,
//! which is one. Together they act as a fence on both sides (the pairing liburcu and
//! folly's asymmetric barriers rely on). So at least one side sees the other's store: the
//! owner sees `UNBIASED` and keeps out, or the revoker sees `in_section` and waits for the
//! owner's section to end (whose release store publishes it to the revoker's acquire). An
//! owner section that began after the barrier sees `UNBIASED`. Revocation happens under the
//! inner lock, so exactly one thread revokes and the rest find `UNBIASED`; they then take
//! the inner lock after the revoker released it, that is after its wait ended.
//!
//! Ids are handed out per kernel thread from a counter and never reused, so a thread that
//! exits leaves a bias no other thread can take by accident; the first other thread to
//! lock revokes it. A green thread cannot switch inside a section (sections never block or
//! yield: the [`SpinLock`] rule), so a section runs on the kernel thread that entered it.
//!
//! The bias is given only where it pays and a revocation is rare: [`BiasedSpinLock::new`]
//! biases to the calling kernel thread when it runs a green thread of a runtime with one
//! worker (many-to-one), whose green threads all run on that kernel thread. Anywhere else
//! the lock starts unbiased and costs the [`SpinLock`]'s CAS plus one load. A revocation
//! costs a `membarrier` system call (an interrupt to each CPU running this process,
//! microseconds). Without `membarrier` (old kernels, seccomp filters) nothing is biased.
//!
//! A section must not lock the same lock again (the [`SpinLock`] would spin forever); on
//! the fast path that mistake would enter twice, so it is caught and panics. (A panic hook
//! that sends on the channel whose section panicked would be such a mistake.)
//!
//! The runtime's opt-in migration (`Builder::migrate_started_threads`) lets a green thread
//! continue on another kernel thread after a system call, and code inlined into a loop may
//! keep the address of the first kernel thread's id across that (a shared library's
//! `__tls_get_addr` hoisted out of the loop): no lock is biased in such a runtime.
//!
//! The model in `loom_models` checks the handshake with the barrier and the compiler fence
//! both modelled as `SeqCst` fences, which is what the pairing above provides.

use std::cell::{Cell, UnsafeCell};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

#[cfg(doc)]
use super::spin_lock::SpinLock;
use crate::loom_shim::{AtomicBool, AtomicUsize};

/// `owner` when the lock is not biased (kernel thread ids count up from 1 and never get
/// here).
const UNBIASED: usize = usize::MAX;

thread_local! {
    /// This kernel thread's id for biasing, 0 until it first needs one.
    static KERNEL_THREAD_ID: Cell<usize> = const { Cell::new(0) };
}

/// This kernel thread's bias id (0 when it has none yet: it owns no bias then).
#[inline]
fn current_id_if_any() -> usize {
    KERNEL_THREAD_ID.with(Cell::get)
}

/// This kernel thread's bias id, given out on first use.
fn current_id() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    KERNEL_THREAD_ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT.fetch_add(1, Relaxed));
        }
        id.get()
    })
}

/// A [`SpinLock`] its owner kernel thread takes without a read-modify-write (module docs).
pub(crate) struct BiasedSpinLock<T> {
    owner: AtomicUsize,
    in_section: AtomicBool,
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands `data` to one thread at a time (module docs: the handshake orders
// the owner's sections with everyone else's, the inner lock orders the others'), so sharing
// it only moves the `T` between threads, which `T: Send` allows.
unsafe impl<T: Send> Sync for BiasedSpinLock<T> {}
// SAFETY: moving the lock moves the `T`.
unsafe impl<T: Send> Send for BiasedSpinLock<T> {}

impl<T> BiasedSpinLock<T> {
    /// A lock biased to the calling kernel thread if it runs a green thread of a
    /// single-worker runtime without migration and the kernel has `membarrier`, unbiased
    /// otherwise.
    pub(crate) fn new(data: T) -> BiasedSpinLock<T> {
        // Not with migration on (module docs).
        let single_worker = crate::sched::context::current_worker()
            .is_some_and(|worker| worker.pool().workers.len() == 1 && !worker.migrates);
        let owner = if single_worker && heavy_barrier::available() {
            current_id()
        } else {
            UNBIASED
        };
        Self::with_owner(data, owner)
    }

    fn with_owner(data: T, owner: usize) -> BiasedSpinLock<T> {
        BiasedSpinLock {
            owner: AtomicUsize::new(owner),
            in_section: AtomicBool::new(false),
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the lock. The holder must not block, park or yield before dropping the guard,
    /// nor lock this lock again.
    #[inline]
    pub(crate) fn lock(&self) -> BiasedGuard<'_, T> {
        self.lock_as(current_id_if_any())
    }

    /// Takes the lock as the kernel thread with bias id `me`.
    #[inline]
    fn lock_as(&self, me: usize) -> BiasedGuard<'_, T> {
        if self.owner.load(Relaxed) == me {
            if self.in_section.load(Relaxed) {
                reentered();
            }
            self.in_section.store(true, Relaxed);
            light_fence();
            if self.owner.load(Relaxed) == me {
                return BiasedGuard {
                    lock: self,
                    held: &self.in_section,
                };
            }
            self.in_section.store(false, Release);
        }
        self.lock_unbiased()
    }

    /// The slow path: the inner lock, revoking the bias first if it is still there.
    #[cold]
    #[inline(never)]
    fn lock_unbiased(&self) -> BiasedGuard<'_, T> {
        // The inner lock, test-and-test-and-set: waiters spin on plain loads. Acquire pairs
        // with the release in `BiasedGuard::drop` of the previous holder.
        let mut wait = SpinWait::new();
        while self
            .locked
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            while self.locked.load(Relaxed) {
                wait.spin();
            }
        }
        // Written only under the inner lock, so a relaxed load sees the last revocation.
        if self.owner.load(Relaxed) != UNBIASED {
            self.owner.store(UNBIASED, Relaxed);
            heavy_barrier::run();
            // Acquire pairs with the owner's release as it leaves its last biased section.
            while self.in_section.load(Acquire) {
                wait.spin();
            }
        }
        BiasedGuard {
            lock: self,
            held: &self.locked,
        }
    }

    /// Whether the lock is still biased (tests).
    #[cfg(all(test, not(loom)))]
    fn is_biased(&self) -> bool {
        self.owner.load(Relaxed) != UNBIASED
    }
}

#[cold]
#[inline(never)]
fn reentered() -> ! {
    panic!("spindle: a lock inside a primitive was taken again by the thread holding it");
}

/// The owner's half of the handshake: a compiler fence, which the heavy barrier makes act
/// as a full one (module docs). Under loom, the full fence it stands for.
#[inline(always)]
fn light_fence() {
    #[cfg(not(loom))]
    std::sync::atomic::compiler_fence(SeqCst);
    #[cfg(loom)]
    loom::sync::atomic::fence(SeqCst);
}

/// Holds a [`BiasedSpinLock`]; dropping it unlocks.
pub(crate) struct BiasedGuard<'a, T> {
    lock: &'a BiasedSpinLock<T>,
    /// The flag whose clearing leaves the section: `in_section` when it was entered on the
    /// owner's path, the inner lock's `locked` otherwise. A pointer rather than a "biased"
    /// bool, so that unlocking is one store with no choice left to make at run time.
    held: &'a AtomicBool,
}

impl<T> Deref for BiasedGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard exists only while the section is held, on the owner's path
        // (`in_section` set, bias seen after it) or under the inner lock with the bias
        // revoked and the owner's last section over: no other thread is in a section.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for BiasedGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for BiasedGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Release publishes the section to a revoker's acquire, or to the next holder of
        // the inner lock.
        self.held.store(false, Release);
    }
}

/// Waiting in a spin loop: `crossbeam_utils::Backoff` (which ends up yielding the kernel
/// thread, so that a preempted holder runs), or a loom yield under loom.
struct SpinWait {
    #[cfg(not(loom))]
    backoff: crossbeam_utils::Backoff,
}

impl SpinWait {
    fn new() -> SpinWait {
        SpinWait {
            #[cfg(not(loom))]
            backoff: crossbeam_utils::Backoff::new(),
        }
    }

    fn spin(&mut self) {
        #[cfg(not(loom))]
        self.backoff.snooze();
        #[cfg(loom)]
        loom::thread::yield_now();
    }
}

/// The revoker's half of the handshake.
#[cfg(not(loom))]
mod heavy_barrier {
    use rustix::thread::{membarrier, MembarrierCommand};
    use std::sync::atomic::AtomicU8;
    use std::sync::atomic::Ordering::Relaxed;

    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;

    static AVAILABLE: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// Whether this process may use the expedited barrier; registers it on first call.
    pub(super) fn available() -> bool {
        match AVAILABLE.load(Relaxed) {
            YES => true,
            NO => false,
            _ => {
                let ok = membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok();
                AVAILABLE.store(if ok { YES } else { NO }, Relaxed);
                ok
            }
        }
    }

    /// A full memory barrier on every running thread of this process.
    pub(super) fn run() {
        let err = match membarrier(MembarrierCommand::PrivateExpedited) {
            Ok(()) => return,
            // A fork child may not inherit the registration: register and try again.
            Err(rustix::io::Errno::PERM) => {
                match membarrier(MembarrierCommand::RegisterPrivateExpedited)
                    .and_then(|()| membarrier(MembarrierCommand::PrivateExpedited))
                {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        // The slow but registration-free command; without it no bias is sound to revoke.
        if let Err(global) = membarrier(MembarrierCommand::Global) {
            eprintln!(
                "spindle: revoking a lock's bias needs membarrier(2), which failed \
                 (expedited: {err}, global: {global}); aborting rather than race"
            );
            std::process::abort();
        }
    }
}

/// Under loom: the full fence the barrier stands for.
#[cfg(loom)]
mod heavy_barrier {
    pub(super) fn available() -> bool {
        true
    }

    pub(super) fn run() {
        loom::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{BiasedSpinLock, UNBIASED};
    use std::sync::Arc;

    #[test]
    fn owner_and_other_threads_exclude_each_other() {
        let me = super::current_id();
        let lock = Arc::new(BiasedSpinLock::with_owner(0u64, me));
        let others: Vec<_> = (0..3)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for _ in 0..20_000 {
            *lock.lock() += 1;
        }
        for t in others {
            t.join().unwrap();
        }
        assert!(!lock.is_biased(), "another thread's lock revokes the bias");
        assert_eq!(*lock.lock(), 80_000);
    }

    #[test]
    fn owner_keeps_the_bias_alone() {
        let lock = BiasedSpinLock::with_owner(0u64, super::current_id());
        for _ in 0..1000 {
            *lock.lock() += 1;
        }
        assert!(lock.is_biased());
        assert_eq!(*lock.lock(), 1000);
    }

    #[test]
    fn unbiased_lock_stays_unbiased() {
        let lock = BiasedSpinLock::with_owner(1u8, UNBIASED);
        assert_eq!(*lock.lock(), 1);
        assert!(!lock.is_biased());
    }

    #[test]
    #[should_panic(expected = "taken again")]
    fn relocking_on_the_fast_path_panics() {
        let lock = BiasedSpinLock::with_owner((), super::current_id());
        let _first = lock.lock();
        let _second = lock.lock();
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Run with `RUSTFLAGS="--cfg loom" cargo test --release -p spindle --lib loom_models`.
    //!
    //! The owner (bias id 1) and another thread (id 2) each add to a counter in a loom
    //! `UnsafeCell` inside sections: loom reports any two sections that overlap, or a
    //! section that does not see the one before it, as a data race.

    use super::BiasedSpinLock;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    fn add(lock: &BiasedSpinLock<()>, cell: &UnsafeCell<u32>, me: usize) {
        let _guard = lock.lock_as(me);
        cell.with_mut(|p| {
            // SAFETY: inside a section of `lock`, which loom checks is exclusive.
            unsafe { *p += 1 }
        });
    }

    #[test]
    fn owner_and_revoker_exclude() {
        loom::model(|| {
            let shared = Arc::new((BiasedSpinLock::with_owner((), 1), UnsafeCell::new(0u32)));
            let other = {
                let shared = shared.clone();
                loom::thread::spawn(move || add(&shared.0, &shared.1, 2))
            };
            add(&shared.0, &shared.1, 1);
            add(&shared.0, &shared.1, 1);
            other.join().unwrap();
            add(&shared.0, &shared.1, 2);
            let total = shared.1.with(|p| {
                // SAFETY: every section is over (joined, or on this thread).
                unsafe { *p }
            });
            assert_eq!(total, 4);
        });
    }
}
