//! [`RwLock`]: std's `RwLock` API on the fair parking lock of `raw_rwlock.rs`.
//!
//! The locking protocol (state word, one FIFO with reader batching, hand-off, why no
//! wake-up is lost and neither side starves) is in [`super::raw_rwlock`]; this file adds
//! the data, the guards and poisoning ([`super::poison`]), with std's types and semantics:
//! a writer that panics poisons the lock, a reader that panics does not.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

use super::poison::{PoisonFlag, PoisonGuard};
use super::raw_rwlock::RawRwLock;

/// A reader-writer lock protecting a `T`, for green and kernel threads alike.
///
/// The API is `std::sync::RwLock`'s, poisoning included. Any number of readers may hold
/// the lock at once, or one writer. A green thread that waits parks only itself; green
/// and kernel threads can wait on the same lock.
///
/// **Neither readers nor writers are preferred, and neither can starve.** Waiting threads
/// form one FIFO queue and the lock is handed to it in order; a reader at the head is
/// admitted together with the readers queued right behind it (up to the next writer).
/// While anyone is queued, an arriving reader queues too, even if readers hold the lock:
/// so a stream of readers cannot keep a queued writer out, and a stream of writers cannot
/// keep a queued reader out. Consequence, as with std's lock on some platforms: a thread
/// that already holds a read lock and asks for another one while a writer is queued
/// deadlocks.
///
/// Uncontended, taking and releasing the lock (shared or exclusive) is one atomic
/// read-modify-write each, with no allocation and no system call.
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::RwLock;
///
/// let rt = spindle::Runtime::builder().build()?;
/// rt.block_on(|| {
///     let config = Arc::new(RwLock::new(String::from("v1")));
///     let readers: Vec<_> = (0..4)
///         .map(|_| {
///             let config = config.clone();
///             spindle::spawn(move || config.read().unwrap().len())
///         })
///         .collect();
///     config.write().unwrap().push_str(".1");
///     for r in readers {
///         let len = r.join().unwrap();
///         assert!(len == 2 || len == 4);
///     }
///     assert_eq!(*config.read().unwrap(), "v1.1");
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RwLock<T: ?Sized> {
    raw: RawRwLock,
    poison: PoisonFlag,
    data: UnsafeCell<T>,
}

// SAFETY: moving the lock moves the `T`.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: readers on several threads share `&T` at once (`T: Sync`), and a writer gets
// `&mut T` on any thread, which moves the `T` between threads (`T: Send`); the raw lock's
// acquire/release order those accesses. The same bounds as std's.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

impl<T: ?Sized> UnwindSafe for RwLock<T> {}
impl<T: ?Sized> RefUnwindSafe for RwLock<T> {}

/// Holds an [`RwLock`] shared; the data is reached through `Deref`, and dropping the guard
/// releases it. Like std's, it cannot be sent to another thread.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized + 'a> {
    lock: &'a RwLock<T>,
    /// `!Send`, as std's guard.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard only shares `&T`, which `T: Sync` allows.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}

/// Holds an [`RwLock`] exclusively; the data is reached through `Deref`/`DerefMut`, and
/// dropping the guard releases it. Like std's, it cannot be sent to another thread.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized + 'a> {
    lock: &'a RwLock<T>,
    poison: PoisonGuard,
    /// `!Send`, as std's guard.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard only shares `&T` (through `Deref`), which `T: Sync` allows.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T> RwLock<T> {
    /// A new, unlocked lock holding `value`.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            raw: RawRwLock::new(),
            poison: PoisonFlag::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock and returns the data; `Err` (holding the data) if it is poisoned.
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

impl<T: ?Sized> RwLock<T> {
    /// Takes the lock shared, parking the calling thread (only the green thread, on a
    /// green thread) while a writer holds it or other threads are queued for it.
    ///
    /// Returns `Err` holding the guard if a writer panicked while holding the lock (it is
    /// poisoned); the lock is held either way. See the type's docs for why asking for a
    /// read lock the calling thread already holds may deadlock.
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.raw.read();
        // SAFETY: we just took the lock shared.
        unsafe { RwLockReadGuard::new(self) }
    }

    /// Takes the lock shared if that is possible right now: no writer holds it and nobody
    /// is queued for it (a queued writer goes first, as in `read`).
    ///
    /// `Err(TryLockError::WouldBlock)` otherwise, `Err(TryLockError::Poisoned(..))`
    /// (holding the guard) if it was taken but is poisoned.
    pub fn try_read(&self) -> TryLockResult<RwLockReadGuard<'_, T>> {
        if self.raw.try_read() {
            // SAFETY: we just took the lock shared.
            Ok(unsafe { RwLockReadGuard::new(self) }?)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Takes the lock exclusively, parking the calling thread while anyone holds it or
    /// other threads are queued for it.
    ///
    /// Returns `Err` holding the guard if a writer panicked while holding the lock; the
    /// lock is held either way. Asking for it while the calling thread holds it deadlocks.
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.raw.write();
        // SAFETY: we just took the lock exclusively.
        unsafe { RwLockWriteGuard::new(self) }
    }

    /// Takes the lock exclusively if nobody holds it or is queued for it right now.
    ///
    /// `Err(TryLockError::WouldBlock)` otherwise, `Err(TryLockError::Poisoned(..))`
    /// (holding the guard) if it was taken but is poisoned.
    pub fn try_write(&self) -> TryLockResult<RwLockWriteGuard<'_, T>> {
        if self.raw.try_write() {
            // SAFETY: we just took the lock exclusively.
            Ok(unsafe { RwLockWriteGuard::new(self) }?)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Whether a writer panicked while holding the lock.
    pub fn is_poisoned(&self) -> bool {
        self.poison.get()
    }

    /// Clears the poisoned state, for a caller that has repaired the data.
    pub fn clear_poison(&self) {
        self.poison.clear();
    }

    /// A mutable reference to the data, without locking (`&mut self` proves exclusivity);
    /// `Err` (holding the reference) if the lock is poisoned.
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

impl<'a, T: ?Sized> RwLockReadGuard<'a, T> {
    /// Wraps a shared hold the caller has; `Err` if the lock is poisoned.
    ///
    /// # Safety
    ///
    /// The calling thread holds `lock.raw` shared and hands that hold to the guard.
    unsafe fn new(lock: &'a RwLock<T>) -> LockResult<RwLockReadGuard<'a, T>> {
        let guard = RwLockReadGuard {
            lock,
            _not_send: PhantomData,
        };
        if lock.poison.get() {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }
}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    /// Wraps an exclusive hold the caller has; `Err` if the lock is poisoned.
    ///
    /// # Safety
    ///
    /// The calling thread holds `lock.raw` exclusively and hands that hold to the guard.
    unsafe fn new(lock: &'a RwLock<T>) -> LockResult<RwLockWriteGuard<'a, T>> {
        let guard = RwLockWriteGuard {
            lock,
            poison: lock.poison.guard(),
            _not_send: PhantomData,
        };
        if lock.poison.get() {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock shared, so no writer accesses the data while
        // the borrow (no longer than the guard) lives.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock exclusively, so no other thread accesses the
        // data; the borrow lives no longer than the guard.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow through it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.raw.read_unlock();
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.poison.done(&self.poison);
        self.lock.raw.write_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> RwLock<T> {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Ok(guard) => d.field("data", &&*guard),
            Err(TryLockError::Poisoned(err)) => d.field("data", &&**err.get_ref()),
            Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
        };
        d.field("poisoned", &self.poison.get());
        d.finish_non_exhaustive()
    }
}
