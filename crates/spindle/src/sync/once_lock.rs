//! [`OnceLock`]: a cell written once, on the protocol of `sync/once.rs`.
//!
//! The value lives in an `UnsafeCell<MaybeUninit<T>>` beside a `RawOnce`. Who may touch it:
//!
//! - the caller that won `INCOMPLETE -> RUNNING` writes it, once, while it owns the state;
//! - anybody reads it after seeing `COMPLETE` with acquire (the runner's release swap
//!   publishes the write); nobody writes it then, except through `&mut self`.
//!
//! A panicking initializer leaves the cell uninitialized: `OnceLock` calls into the
//! protocol ignoring poisoning, so the next caller runs its own initializer (std's
//! `OnceLock` behaves the same way). An initializer that returns an error
//! ([`OnceLock::get_or_try_init`]) leaves it `INCOMPLETE` directly.

use std::cell::UnsafeCell;
use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::panic::{RefUnwindSafe, UnwindSafe};

use super::once::RawOnce;

/// A cell that is written at most once, for green and kernel threads alike.
///
/// The API is `std::sync::OnceLock`'s: [`get`](OnceLock::get), [`set`](OnceLock::set),
/// [`get_or_init`](OnceLock::get_or_init), [`get_mut`](OnceLock::get_mut),
/// [`take`](OnceLock::take), [`into_inner`](OnceLock::into_inner),
/// [`wait`](OnceLock::wait), plus [`get_or_try_init`](OnceLock::get_or_try_init). While
/// one thread runs the initializer, others that need the value park until it is there (a
/// green thread parks only itself). If the initializer panics, the cell stays empty and
/// the next caller runs its own.
///
/// ```
/// use spindle::sync::OnceLock;
///
/// static CONFIG: OnceLock<String> = OnceLock::new();
/// let rt = spindle::Runtime::builder().build()?;
/// rt.block_on(|| {
///     let hs: Vec<_> = (0..4)
///         .map(|i| spindle::spawn(move || CONFIG.get_or_init(|| format!("set by {i}")).len()))
///         .collect();
///     hs.into_iter().for_each(|h| assert_eq!(h.join().unwrap(), 8));
///     assert!(CONFIG.get().unwrap().starts_with("set by "));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct OnceLock<T> {
    once: RawOnce,
    value: UnsafeCell<MaybeUninit<T>>,
    /// Tells the drop checker that a `T` may be dropped.
    _owns: PhantomData<T>,
}

// SAFETY: a shared `OnceLock` hands out `&T` on every thread (`T: Sync`) and the `T` may
// be written by one thread and dropped by another (`T: Send`); the write is published to
// readers by the protocol's release/acquire (module doc). The same bounds as std's.
unsafe impl<T: Sync + Send> Sync for OnceLock<T> {}
// SAFETY: moving the cell moves the `T`.
unsafe impl<T: Send> Send for OnceLock<T> {}

impl<T: RefUnwindSafe + UnwindSafe> RefUnwindSafe for OnceLock<T> {}
impl<T: UnwindSafe> UnwindSafe for OnceLock<T> {}

impl<T> OnceLock<T> {
    /// An empty cell.
    pub const fn new() -> OnceLock<T> {
        OnceLock {
            once: RawOnce::new(),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            _owns: PhantomData,
        }
    }

    /// The value, if the cell has been initialized (never waits).
    #[inline]
    pub fn get(&self) -> Option<&T> {
        if self.once.is_completed() {
            // SAFETY: `is_completed` saw COMPLETE with acquire, so the value was written
            // and published, and is never written again through `&self`.
            Some(unsafe { self.get_unchecked() })
        } else {
            None
        }
    }

    /// The value, mutably, if the cell has been initialized.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        if self.once.is_completed() {
            // SAFETY: initialized (as in `get`), and `&mut self` makes this the only access.
            Some(unsafe { self.value.get_mut().assume_init_mut() })
        } else {
            None
        }
    }

    /// Initializes the cell with `value` if it is empty; `Err(value)` if it was already
    /// initialized. If another thread is initializing it, parks until that is done.
    pub fn set(&self, value: T) -> Result<(), T> {
        let mut value = Some(value);
        self.get_or_init(|| value.take().expect("taken only by the initializer"));
        match value {
            None => Ok(()),
            Some(value) => Err(value),
        }
    }

    /// The value, initializing the cell with `f` if it is empty. If another thread is
    /// running its initializer, parks until it is done; `f` runs only if that one panicked
    /// (or none ran). Calling this from inside `f` on the same cell deadlocks.
    ///
    /// # Panics
    ///
    /// If `f` panics; the cell then stays empty.
    pub fn get_or_init<F: FnOnce() -> T>(&self, f: F) -> &T {
        match self.get_or_try_init(|| Ok::<T, Infallible>(f())) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    /// Like [`get_or_init`](OnceLock::get_or_init), but `f` may fail: its error is
    /// returned and the cell stays empty (the next caller tries again).
    pub fn get_or_try_init<F, E>(&self, f: F) -> Result<&T, E>
    where
        F: FnOnce() -> Result<T, E>,
    {
        if let Some(value) = self.get() {
            return Ok(value);
        }
        let mut f = Some(f);
        let mut error = None;
        self.once.call(true, &mut |_| {
            match (f.take().expect("runs at most once"))() {
                Ok(value) => {
                    // SAFETY: we own the RUNNING state, so nobody else reads or writes the
                    // value (readers wait for COMPLETE, which our success will publish).
                    unsafe { (*self.value.get()).write(value) };
                    true
                }
                Err(e) => {
                    error = Some(e);
                    false
                }
            }
        });
        match error {
            Some(e) => Err(e),
            // SAFETY: `call` returned without our initializer failing, so the state is
            // COMPLETE (seen with acquire by `call`, or published by our own run).
            None => Ok(unsafe { self.get_unchecked() }),
        }
    }

    /// Parks until the cell is initialized (by another thread), then returns the value.
    pub fn wait(&self) -> &T {
        if let Some(value) = self.get() {
            return value;
        }
        self.once.wait(true);
        // SAFETY: `wait` returns only once it has seen COMPLETE with acquire.
        unsafe { self.get_unchecked() }
    }

    /// Takes the value out, leaving the cell empty.
    pub fn take(&mut self) -> Option<T> {
        if !self.once.is_completed() {
            return None;
        }
        self.once.reset();
        // SAFETY: the value was initialized, and the reset state makes sure it is not read
        // or dropped again: we move it out exactly once.
        Some(unsafe { self.value.get_mut().assume_init_read() })
    }

    /// Consumes the cell and returns the value, if it was initialized.
    pub fn into_inner(mut self) -> Option<T> {
        self.take()
    }

    /// # Safety
    ///
    /// The state is COMPLETE, and the caller has seen it with acquire.
    unsafe fn get_unchecked(&self) -> &T {
        debug_assert!(self.once.is_completed());
        // SAFETY: the caller's contract: initialized and published; never written again
        // while shared.
        unsafe { (*self.value.get()).assume_init_ref() }
    }
}

impl<T> Drop for OnceLock<T> {
    fn drop(&mut self) {
        if self.once.is_completed() {
            // SAFETY: initialized, and dropped once: the cell is going away.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

impl<T> Default for OnceLock<T> {
    fn default() -> OnceLock<T> {
        OnceLock::new()
    }
}

impl<T> From<T> for OnceLock<T> {
    fn from(value: T) -> OnceLock<T> {
        let cell = OnceLock::new();
        if cell.set(value).is_err() {
            unreachable!("a new cell is empty");
        }
        cell
    }
}

impl<T: Clone> Clone for OnceLock<T> {
    fn clone(&self) -> OnceLock<T> {
        match self.get() {
            Some(value) => OnceLock::from(value.clone()),
            None => OnceLock::new(),
        }
    }
}

impl<T: PartialEq> PartialEq for OnceLock<T> {
    fn eq(&self, other: &OnceLock<T>) -> bool {
        self.get() == other.get()
    }
}

impl<T: Eq> Eq for OnceLock<T> {}

impl<T: fmt::Debug> fmt::Debug for OnceLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_tuple("OnceLock");
        match self.get() {
            Some(value) => d.field(value),
            None => d.field(&format_args!("<uninit>")),
        };
        d.finish()
    }
}
