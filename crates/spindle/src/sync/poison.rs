//! Poisoning, as std does it: a lock whose holder panicked is marked, and later lockers are
//! told (they still get the lock, inside a `PoisonError`).
//!
//! A guard records whether its thread was already panicking when it took the lock; when it
//! is dropped while the thread is panicking and was not before, the lock is poisoned. (A
//! green thread unwound because its runtime was dropped counts as panicking, so a lock it
//! held is poisoned too: the data may be half-updated either way.)

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

/// The poisoned flag of one lock.
pub(crate) struct PoisonFlag(AtomicBool);

/// What a guard remembers to update the flag when it is dropped.
pub(crate) struct PoisonGuard {
    panicking: bool,
}

impl PoisonFlag {
    /// A clean flag.
    pub(crate) const fn new() -> PoisonFlag {
        PoisonFlag(AtomicBool::new(false))
    }

    /// Whether the lock is poisoned. Relaxed: the flag is written while the lock is held and
    /// read by the next holder, so the lock orders it.
    #[inline]
    pub(crate) fn get(&self) -> bool {
        self.0.load(Relaxed)
    }

    /// Clears the flag.
    pub(crate) fn clear(&self) {
        self.0.store(false, Relaxed);
    }

    /// To be called when the lock is taken.
    #[inline]
    pub(crate) fn guard(&self) -> PoisonGuard {
        PoisonGuard {
            panicking: std::thread::panicking(),
        }
    }

    /// To be called when the lock is released, before unlocking.
    #[inline]
    pub(crate) fn done(&self, guard: &PoisonGuard) {
        if !guard.panicking && std::thread::panicking() {
            self.0.store(true, Relaxed);
        }
    }
}
