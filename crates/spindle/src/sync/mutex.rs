//! [`Mutex`]: std's `Mutex` API on the parking lock of `raw_mutex.rs`.
//!
//! The locking protocol (state word, queue, barging and hand-off, why no wake-up is lost)
//! is in [`super::raw_mutex`]; this file adds the data, the guard and poisoning
//! ([`super::poison`]), with std's types and semantics.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

use super::poison::{PoisonFlag, PoisonGuard};
use super::raw_mutex::RawMutex;

/// A mutual-exclusion lock protecting a `T`, for green and kernel threads alike.
///
/// The API is `std::sync::Mutex`'s, poisoning included. A green thread that waits for the
/// lock parks only itself; its worker runs other green threads meanwhile. Green threads
/// and kernel threads can wait on the same mutex.
///
/// Uncontended, `lock` and `unlock` are one compare-and-swap each, with no allocation and
/// no system call. Waiters are woken in FIFO order; a woken waiter competes with newcomers,
/// and one that keeps losing gets the lock handed to it directly (see the module
/// `raw_mutex` for the protocol).
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::Mutex;
///
/// let rt = spindle::Runtime::builder().build()?;
/// let total = rt.block_on(|| {
///     let counter = Arc::new(Mutex::new(0));
///     let hs: Vec<_> = (0..10)
///         .map(|_| {
///             let counter = counter.clone();
///             spindle::spawn(move || *counter.lock().unwrap() += 1)
///         })
///         .collect();
///     hs.into_iter().for_each(|h| h.join().unwrap());
///     let n = *counter.lock().unwrap();
///     n
/// });
/// assert_eq!(total, 10);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Mutex<T: ?Sized> {
    pub(crate) raw: RawMutex,
    poison: PoisonFlag,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `data` to one thread at a time (the raw lock's
// acquire/release order the accesses), which moves the `T` between threads: `T: Send`.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}
// SAFETY: moving the mutex moves the `T`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}

/// Holds a [`Mutex`] locked; the data is reached through `Deref`/`DerefMut`, and dropping
/// the guard unlocks. Like std's, it cannot be sent to another thread.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized + 'a> {
    mutex: &'a Mutex<T>,
    poison: PoisonGuard,
    /// `!Send`, as std's guard.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard only shares `&T` (through `Deref`), which `T: Sync` allows.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T> Mutex<T> {
    /// A new, unlocked mutex holding `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(),
            poison: PoisonFlag::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns the data; `Err` (holding the data) if it is poisoned.
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.poison.get();
        let data = self.data.into_inner();
        if poisoned {
            Err(PoisonError::new(data))
        } else {
            Ok(data)
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Acquires the lock, parking the calling thread (only the green thread, on a green
    /// thread) while another holds it.
    ///
    /// Returns `Err` holding the guard if a previous holder panicked (the lock is poisoned);
    /// the lock is held either way. Locking a mutex the calling thread already holds
    /// deadlocks.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.raw.lock();
        // SAFETY: we just acquired the lock.
        unsafe { MutexGuard::new(self) }
    }

    /// Acquires the lock if it is free right now, without waiting.
    ///
    /// `Err(TryLockError::WouldBlock)` if it is held, `Err(TryLockError::Poisoned(..))`
    /// (holding the guard) if it was free but is poisoned.
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        if self.raw.try_lock() {
            // SAFETY: we just acquired the lock.
            Ok(unsafe { MutexGuard::new(self) }?)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Whether a holder panicked while holding the lock.
    pub fn is_poisoned(&self) -> bool {
        self.poison.get()
    }

    /// Clears the poisoned state, for a caller that has repaired the data.
    pub fn clear_poison(&self) {
        self.poison.clear();
    }

    /// A mutable reference to the data, without locking (`&mut self` proves exclusivity);
    /// `Err` (holding the reference) if the mutex is poisoned.
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let poisoned = self.poison.get();
        let data = self.data.get_mut();
        if poisoned {
            Err(PoisonError::new(data))
        } else {
            Ok(data)
        }
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// Wraps a lock the caller holds; `Err` if the mutex is poisoned.
    ///
    /// # Safety
    ///
    /// The calling thread holds `mutex.raw` and hands that ownership to the guard.
    pub(crate) unsafe fn new(mutex: &'a Mutex<T>) -> LockResult<MutexGuard<'a, T>> {
        let guard = MutexGuard {
            mutex,
            poison: mutex.poison.guard(),
            _not_send: PhantomData,
        };
        if mutex.poison.get() {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// The mutex this guard holds.
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }

    /// Gives up the guard without unlocking: the caller (a condvar wait) takes over the
    /// held lock and will unlock it itself.
    pub(crate) fn into_locked_mutex(self) -> &'a Mutex<T> {
        ManuallyDrop::new(self).mutex
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other thread accesses the data; the
        // borrow lives no longer than the guard.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow through it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.mutex.poison.done(&self.poison);
        self.mutex.raw.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Ok(guard) => d.field("data", &&*guard),
            Err(TryLockError::Poisoned(err)) => d.field("data", &&**err.get_ref()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.poison.get());
        d.finish_non_exhaustive()
    }
}
