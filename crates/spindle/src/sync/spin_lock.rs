//! A spin lock for the short critical sections inside spindle's primitives.
//!
//! Every blocking primitive keeps its wait queues behind one of these. The sections it
//! guards are a few pointer updates long and **never block, park or yield** while holding
//! it: that rule is what makes spinning the right choice. A thread that finds the lock taken
//! knows the holder is running on another kernel thread (a green thread cannot be switched
//! out while it holds the lock, because nothing in the section switches), so it will be done
//! in nanoseconds unless the kernel preempted it.
//!
//! Locking is test-and-test-and-set: one CAS (acquire) when free; when taken, wait with
//! relaxed loads (no cache-line ping-pong) under `crossbeam_utils::Backoff`, whose `snooze`
//! falls back to `std::thread::yield_now` so a preempted holder gets the CPU back.
//! Unlocking is a plain release store, not a read-modify-write: on this machine a CAS costs
//! ~10 ns and a store ~nothing, and the channel's ping-pong budget counts every one.
//!
//! Compromise, said openly: a kernel thread preempted inside the section makes the others
//! spin and yield until it runs again. The sections are short and never call user code, so
//! this is rare; a futex-backed lock would cost a second RMW on every unlock instead.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crossbeam_utils::Backoff;

/// A test-and-test-and-set spin lock around a `T`.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `data` to one thread at a time (acquire on lock,
// release on unlock order those accesses), so sharing the lock only ever moves the `T`
// between threads, which `T: Send` allows.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked lock.
    pub(crate) const fn new(data: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the lock, spinning (then yielding the kernel thread) while another thread
    /// holds it. The holder must not block, park or yield before dropping the guard.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        // Acquire pairs with the release store in `SpinGuard::drop` of the previous holder.
        if self
            .locked
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard { lock: self }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let backoff = Backoff::new();
        loop {
            // Wait with plain loads so waiters do not steal the line from the holder.
            while self.locked.load(Relaxed) {
                backoff.snooze();
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Acquire, Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// Holds a [`SpinLock`]; dropping it unlocks.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard exists only while the lock is held, so no other thread
        // accesses `data`; the shared borrow lives no longer than the guard.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Release publishes everything done under the lock to the next holder's acquire.
        self.lock.locked.store(false, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::SpinLock;
    use std::sync::Arc;

    #[test]
    fn excludes_kernel_threads() {
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 40_000);
    }
}
