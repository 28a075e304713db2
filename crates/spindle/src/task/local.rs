//! Green-thread-local storage: values that belong to the running spindle thread and follow
//! it, declared with [`crate::local!`] and reached through a [`LocalKey`].
//!
//! # Why not std's thread-locals
//!
//! A std `thread_local!` belongs to the *kernel* thread. Every green thread of a worker
//! shares its worker's kernel thread, so they would all see one value: a per-request
//! counter, a current-transaction slot or a `RefCell` borrowed across a `yield_now` would
//! leak from one green thread into the next. And if a green thread ever changed kernel
//! thread (the opt-in migration mode), it would find a different value after a switch. What
//! a green thread needs is storage that belongs to *it*: this module.
//!
//! # Where the values live
//!
//! Each key gets an index, assigned lazily on first use from a global counter (so a key that
//! is never used costs nothing, and the numbering needs no registration at startup). Each
//! thread has a [`LocalMap`]: a vector of slots indexed by those numbers, empty (and not
//! allocated) until the thread first initialises a value. A slot is:
//!
//! | slot           | meaning                                          | next            |
//! |----------------|--------------------------------------------------|-----------------|
//! | `Uninit`       | never used on this thread (also: past the end)   | `Initializing`  |
//! | `Initializing` | the key's initializer is running                  | `Alive`, or back to `Uninit` if it panics |
//! | `Alive(p)`     | `p` is the value, boxed (`Box::into_raw`)         | `Destroyed`     |
//! | `Destroyed`    | the value has been dropped or is being dropped    | none            |
//!
//! Where the map is depends on what runs:
//!
//! - **On a green thread** it is a field of the thread's record ([`ThreadInner::locals`]),
//!   found through `context::current_green()`. It moves with the record, so the values
//!   follow the green thread wherever it runs.
//! - **On a kernel thread** (a one-to-one thread, a worker's own scheduler stack, or any
//!   thread outside a runtime) it is in a std thread-local of that kernel thread,
//!   `KERNEL_LOCALS`, kept in a `ManuallyDrop` so that std never destroys it and it stays
//!   reachable during the thread's exit; a second thread-local, `KERNEL_GUARD`, registered
//!   when the first value is made, destroys the values when the kernel thread exits.
//!
//! # When the values are dropped
//!
//! A spindle thread (green, or a kernel thread spindle spawned) runs its closure through
//! `packet::Completer::run`. After the closure returns or panics, and
//! before the result is published to the joiner, it calls [`destroy_current`]: the values
//! are dropped *on the thread itself* (on its green stack, where a destructor may even
//! park), and a `join` that returns has seen every destructor's effects (the packet's
//! release/acquire pair orders them before the result). On a kernel thread spindle did not
//! spawn, the values are dropped by `KERNEL_GUARD` when the thread exits, like std's.
//!
//! A green thread cancelled at runtime shutdown is unwound through the same
//! `Completer::run`, so its values are dropped too; like its other
//! destructors, theirs must not block then (`context::suspend` aborts a cancelled thread
//! that tries to).
//!
//! [`LocalMap::destroy`] moves the map to `Destroying`, then takes the values out one at a
//! time, marking each slot `Destroyed` *before* dropping its value, and repeats until a pass
//! finds no value left; then the map is `Destroyed`. During destruction, as in std:
//!
//! - a key whose value is being dropped, or was dropped, gives [`AccessError`] from
//!   `try_with` (and `with` panics) — a destructor that touches its own key cannot bring it
//!   back, so destruction cannot loop forever;
//! - a key whose value is still there can be used normally;
//! - a key never used on this thread can still be initialised; the next pass drops it.
//!
//! This ends because a slot goes `Uninit -> Alive -> Destroyed` at most once and the number
//! of keys is finite (they are `static` items). Once the map is `Destroyed` every access
//! fails with [`AccessError`].
//!
//! A destructor that panics does not stop the others. On a spindle thread the first such
//! panic becomes the thread's outcome (its `join` returns `Err` with the payload) unless the
//! closure had already panicked; on a kernel thread at exit it aborts the process, as a
//! panicking std thread-local destructor does.
//!
//! # Why it is sound
//!
//! The map is not synchronised: `LocalMap` is `Send + Sync` only because **a map is touched
//! by no one but the thread it belongs to**. Every access goes through [`LocalKey`] or
//! [`destroy_current`], which take the map of the thread they run on: the running green
//! thread's record (the worker sets `current_green` only while that thread is switched in),
//! or the current kernel thread's thread-local. No code path reaches another thread's map.
//! A green record is shared (`Arc<ThreadInner>`) with wakers and join handles on other
//! kernel threads, but they never touch `locals`.
//!
//! Within the thread, the vector is borrowed only inside `LocalMap`'s methods and never
//! while user code (an initializer, a destructor, a `with` closure) runs; user code may
//! re-enter the map (use another key, which may grow the vector), so the `&T` handed to a
//! `with` closure points into the value's own box, which does not move when the vector
//! does, and stays valid because a value is freed only by `destroy`, which runs only when
//! no `with` of the thread is active: it is called after the thread's closure has returned
//! (or at kernel-thread exit, when no user frame is left), and the `with` calls made by the
//! destructors it runs return before it drops the next value. Values are stored as raw
//! pointers (not `Box`es) so that moving a slot does not assert uniqueness over a value
//! that a `&T` still points to.
//!
//! Each index belongs to exactly one key (the counter hands out each number once, and a key
//! keeps the first number stored in it), and a slot only ever holds values made by its key's
//! initializer or setter, so reading slot `i` as the key's `T` is correct.
//!
//! Values need not be `Send`. They never leave their thread: `with` lends a reference that
//! cannot escape the closure, and the destructor runs on the thread. When green threads may
//! migrate between kernel threads (`Builder::migrate_started_threads`), a green thread's
//! values move with it, exactly like the local variables on its stack, and for the same
//! reason it is sound: whoever runs the thread next sees everything it wrote (the hand-off
//! between workers synchronises), and only that thread uses them. What migration breaks is
//! sharing `!Send` data between a green thread and its kernel thread (say, an `Rc` cloned
//! into a std thread-local); that is the hazard the opt-in's safety contract covers, and a
//! `LocalKey` is the way to avoid it, not a new instance of it.
//!
//! # Compromises
//!
//! - A map is as long as the highest index the thread used: a thread that uses only the
//!   thousandth key of a program allocates a thousand small slots. Programs have few keys.
//! - A green thread cancelled before it ever ran drops its closure on its own stack without
//!   going through `Completer::run`. If a destructor of what the closure
//!   captured makes a local value there, that value is leaked with the record rather than
//!   dropped: the record may be freed on any kernel thread (the last `Arc` may be a
//!   `JoinHandle`'s), and a `!Send` value must not be dropped there. `LocalMap` has no
//!   destructor of its own for this reason; its slots hold raw pointers, so dropping it
//!   frees only the vector.
//!
//! [`ThreadInner::locals`]: crate::task::ThreadInner

use std::any::Any;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::fmt;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use crate::sched::context;

/// Declares green-thread-local values: each belongs to the spindle thread that uses it.
///
/// The syntax is std's `thread_local!`: any number of
/// `[attributes] [visibility] static NAME: Type = initializer;`. Each declaration makes a
/// `static NAME: spindle::LocalKey<Type>`. The initializer runs lazily, the first time a
/// thread uses the key, on that thread.
///
/// A green thread gets its own value, separate from every other green thread on the same
/// kernel thread; it keeps it across `yield_now`, `park`, `sleep` and every other switch,
/// and its value is dropped, on the thread, when the thread finishes, before its `join`
/// returns. On a kernel thread (one-to-one model, or no runtime) the value belongs to the
/// kernel thread. See [`LocalKey`] for the details.
///
/// # Example
///
/// ```
/// use std::cell::{Cell, RefCell};
///
/// spindle::local! {
///     /// How many requests this thread has served.
///     static SERVED: Cell<u64> = Cell::new(0);
///     static LOG: RefCell<Vec<String>> = RefCell::new(Vec::new());
/// }
///
/// let rt = spindle::Runtime::builder().model(spindle::Model::ManyToOne).build()?;
/// rt.block_on(|| {
///     let handles: Vec<_> = (1..=3u64)
///         .map(|n| {
///             spindle::spawn(move || {
///                 for _ in 0..n {
///                     SERVED.set(SERVED.get() + 1);
///                     LOG.with_borrow_mut(|log| log.push(format!("request {}", SERVED.get())));
///                     spindle::yield_now(); // the other green threads run here
///                 }
///                 (SERVED.get(), LOG.take())
///             })
///         })
///         .collect();
///     let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
///     // All three ran on one kernel thread, interleaved, and each counted only its own.
///     assert_eq!(results[2].0, 3);
///     assert_eq!(results[2].1, ["request 1", "request 2", "request 3"]);
///     assert_eq!(results[0], (1, vec!["request 1".to_string()]));
///     // The root green thread has a value of its own, untouched.
///     assert_eq!(SERVED.get(), 0);
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
#[macro_export]
macro_rules! local {
    () => {};
    (
        $(#[$attr:meta])*
        $vis:vis static $name:ident : $t:ty = $init:expr;
        $($rest:tt)*
    ) => {
        $crate::local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::local!($($rest)*);
    };
    (
        $(#[$attr:meta])*
        $vis:vis static $name:ident : $t:ty = $init:expr
    ) => {
        $(#[$attr])*
        $vis static $name: $crate::LocalKey<$t> = {
            fn __spindle_local_init() -> $t {
                $init
            }
            $crate::LocalKey::__new(__spindle_local_init)
        };
    };
}

/// The error of [`LocalKey::try_with`]: the value is being dropped or has been dropped,
/// because the thread is finishing.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessError;

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot access a spindle local value during or after its destruction")
    }
}

impl std::error::Error for AccessError {}

/// A key to a green-thread-local value, declared with [`local!`](crate::local!).
///
/// Each spindle thread that uses the key has its own value of type `T`:
///
/// - **On a green thread** the value belongs to the green thread. Green threads that share
///   a kernel thread have separate values; a green thread keeps its value across every
///   switch (`yield_now`, `park`, `sleep`, blocking on a lock or channel), and if it moves
///   to another kernel thread (migration mode), the value moves with it.
/// - **On a kernel thread** — a thread of the one-to-one model, or any thread outside a
///   runtime — the value belongs to that kernel thread, like a std thread-local.
///
/// The value is made by the key's initializer the first time the thread uses it. It is
/// dropped, on the thread, when the thread finishes: for a spindle thread (green, or a
/// kernel thread spindle spawned) after its closure returns or panics and before its result
/// is published, so a `join` that returns has seen every destructor run; for other kernel
/// threads when the thread exits, as std does. Values are `'static` but need not be `Send`
/// or `Sync`: they never leave their thread.
///
/// Use a `LocalKey` instead of std's `thread_local!` for state that belongs to a green
/// thread: a std thread-local is shared by every green thread on the same worker.
///
/// # Destruction
///
/// While a thread's values are being dropped, a destructor may use the other keys: those
/// whose value is still there work as usual, a key not used before is initialised (and
/// dropped in turn), and a key whose value is being or has been dropped fails with
/// [`AccessError`] from [`try_with`](LocalKey::try_with) (and makes [`with`](LocalKey::with)
/// panic). The order in which values are dropped is unspecified. If a destructor panics,
/// the others still run; the thread then counts as panicked (its `join` returns the
/// payload) unless it had already panicked. On a kernel thread spindle did not spawn, a
/// panicking destructor aborts the process at thread exit, as with std.
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
    /// The key's index in every thread's map, plus one; zero until first use.
    index: AtomicUsize,
}

impl<T: 'static> fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").finish_non_exhaustive()
    }
}

impl<T: 'static> LocalKey<T> {
    /// Used by [`local!`](crate::local!); not a public API.
    #[doc(hidden)]
    pub const fn __new(init: fn() -> T) -> LocalKey<T> {
        LocalKey {
            init,
            index: AtomicUsize::new(0),
        }
    }

    /// Runs `f` with a reference to this thread's value, initialising it first if this
    /// thread has not used the key yet.
    ///
    /// # Panics
    ///
    /// If the value is being or has been dropped (the thread is finishing; see
    /// [`try_with`](LocalKey::try_with) for a version that does not panic), if the key's
    /// initializer panics, or if the initializer uses this same key.
    pub fn with<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&T) -> R,
    {
        match self.try_with(f) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs `f` with a reference to this thread's value, initialising it first if this
    /// thread has not used the key yet; fails if the value is being or has been dropped.
    ///
    /// # Panics
    ///
    /// If the key's initializer panics, or if the initializer uses this same key.
    pub fn try_with<F, R>(&'static self, f: F) -> Result<R, AccessError>
    where
        F: FnOnce(&T) -> R,
    {
        self.access(self.init, |_, value| f(value))
    }

    /// Runs `f` with this thread's value, which is first initialised with `init()` (instead
    /// of the key's initializer) if the thread has not used the key yet; `f` gets `init`
    /// back if it was not needed.
    fn access<I, F, R>(&'static self, init: I, f: F) -> Result<R, AccessError>
    where
        I: FnOnce() -> T,
        F: FnOnce(Option<I>, &T) -> R,
    {
        let index = self.index();
        if let Some(me) = context::current_green() {
            // SAFETY: `me` is the green thread running on this kernel thread, and this code
            // runs as that green thread: its map is ours (module docs, "Why it is sound").
            return unsafe { me.locals.access(index, init, f, || Ok(())) };
        }
        KERNEL_LOCALS
            .try_with(|k| {
                // SAFETY: `KERNEL_LOCALS` is this kernel thread's own map, and no green
                // thread is running on it, so this code runs as the kernel thread itself.
                unsafe { k.map.access(index, init, f, || k.ensure_guard()) }
            })
            .unwrap_or(Err(AccessError))
    }

    /// The key's index, assigned on first use.
    #[inline]
    fn index(&self) -> usize {
        // Relaxed throughout: the index is a plain number that publishes no other data, and
        // the modification order of `self.index` alone makes every thread agree on it.
        match self.index.load(Relaxed) {
            0 => self.assign_index(),
            i => i - 1,
        }
    }

    #[cold]
    fn assign_index(&self) -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let fresh = NEXT.fetch_add(1, Relaxed);
        assert!(fresh != 0, "spindle::local!: too many keys");
        match self.index.compare_exchange(0, fresh, Relaxed, Relaxed) {
            Ok(_) => fresh - 1,
            // Another thread assigned one first; ours is never used.
            Err(winner) => winner - 1,
        }
    }
}

impl<T: 'static> LocalKey<Cell<T>> {
    /// Sets this thread's value to `value`, without running the initializer if the thread
    /// has not used the key yet.
    ///
    /// # Panics
    ///
    /// As [`with`](LocalKey::with).
    pub fn set(&'static self, value: T) {
        let init = move || Cell::new(value);
        let result = self.access(init, |unused, cell| {
            if let Some(init) = unused {
                cell.set(init().into_inner());
            }
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    /// A copy of this thread's value.
    ///
    /// # Panics
    ///
    /// As [`with`](LocalKey::with).
    pub fn get(&'static self) -> T
    where
        T: Copy,
    {
        self.with(Cell::get)
    }

    /// Takes this thread's value, leaving `T::default()` in its place.
    ///
    /// # Panics
    ///
    /// As [`with`](LocalKey::with).
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(Cell::take)
    }

    /// Replaces this thread's value with `value`, returning the old one.
    ///
    /// # Panics
    ///
    /// As [`with`](LocalKey::with).
    pub fn replace(&'static self, value: T) -> T {
        self.with(|cell| cell.replace(value))
    }
}

impl<T: 'static> LocalKey<RefCell<T>> {
    /// Runs `f` with a shared borrow of this thread's value.
    ///
    /// # Panics
    ///
    /// If the value is mutably borrowed, and as [`with`](LocalKey::with).
    pub fn with_borrow<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&T) -> R,
    {
        self.with(|cell| f(&cell.borrow()))
    }

    /// Runs `f` with a mutable borrow of this thread's value.
    ///
    /// # Panics
    ///
    /// If the value is borrowed, and as [`with`](LocalKey::with).
    pub fn with_borrow_mut<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&mut T) -> R,
    {
        self.with(|cell| f(&mut cell.borrow_mut()))
    }

    /// Sets this thread's value to `value`, without running the initializer if the thread
    /// has not used the key yet.
    ///
    /// # Panics
    ///
    /// If the value is borrowed, and as [`with`](LocalKey::with).
    pub fn set(&'static self, value: T) {
        let init = move || RefCell::new(value);
        let result = self.access(init, |unused, cell| {
            if let Some(init) = unused {
                *cell.borrow_mut() = init().into_inner();
            }
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    /// Takes this thread's value, leaving `T::default()` in its place.
    ///
    /// # Panics
    ///
    /// If the value is borrowed, and as [`with`](LocalKey::with).
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(RefCell::take)
    }

    /// Replaces this thread's value with `value`, returning the old one.
    ///
    /// # Panics
    ///
    /// If the value is borrowed, and as [`with`](LocalKey::with).
    pub fn replace(&'static self, value: T) -> T {
        self.with(|cell| cell.replace(value))
    }
}

/// One key's value in one thread's map (table in the module docs).
enum Slot {
    Uninit,
    Initializing,
    /// From `Box::into_raw(Box<T>)`, `T` being the type of the key that owns the index.
    Alive(*mut dyn Any),
    Destroyed,
}

/// Where a map is in its thread's life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MapState {
    /// The thread runs; values are made on demand.
    Live,
    /// `destroy` is dropping the values; keys not used before can still be initialised.
    Destroying,
    /// Every value is gone; every access fails.
    Destroyed,
}

/// The local values of one thread (module docs).
///
/// Every method is `unsafe` with the same contract: it is called by the thread the map
/// belongs to (the green thread whose record holds it, while that thread runs, or the kernel
/// thread whose thread-local holds it).
pub(crate) struct LocalMap {
    slots: UnsafeCell<Vec<Slot>>,
    state: Cell<MapState>,
}

// SAFETY: a map is only ever accessed by the thread it belongs to (the contract of every
// method; module docs, "Why it is sound"), so sharing the record that holds it between
// kernel threads shares no access to its contents. Its values may be `!Send`; they are
// never dropped or touched elsewhere (dropping the map leaks what is left, since `Slot`
// holds raw pointers).
unsafe impl Sync for LocalMap {}
// SAFETY: as above. A green thread's map moving to another kernel thread with its record
// is the thread moving, which takes its values along (module docs).
unsafe impl Send for LocalMap {}

impl LocalMap {
    /// An empty map; allocates nothing.
    pub(crate) const fn new() -> LocalMap {
        LocalMap {
            slots: UnsafeCell::new(Vec::new()),
            state: Cell::new(MapState::Live),
        }
    }

    /// Runs `f` with the value at `index`, made with `init` first if there is none yet
    /// (`f` then gets `None`, else it gets `init` back). `before_init` runs before a value
    /// is made and may refuse it.
    ///
    /// # Safety
    ///
    /// Called by the thread the map belongs to; `index` belongs to a key of type `T`.
    #[inline]
    unsafe fn access<T: 'static, I, F, R>(
        &self,
        index: usize,
        init: I,
        f: F,
        before_init: impl FnOnce() -> Result<(), AccessError>,
    ) -> Result<R, AccessError>
    where
        I: FnOnce() -> T,
        F: FnOnce(Option<I>, &T) -> R,
    {
        let found = {
            // SAFETY: we are the owning thread (contract), and this borrow ends before any
            // user code runs.
            let slots = unsafe { &*self.slots.get() };
            match slots.get(index) {
                Some(Slot::Alive(p)) => Some(p.cast::<T>().cast_const()),
                Some(Slot::Destroyed) => return Err(AccessError),
                Some(Slot::Initializing) => initializer_reentered(),
                Some(Slot::Uninit) | None => None,
            }
        };
        let (value, unused) = match found {
            Some(value) => (value, Some(init)),
            None => {
                if self.state.get() == MapState::Destroyed {
                    return Err(AccessError);
                }
                before_init()?;
                // SAFETY: passed on from our caller.
                (unsafe { self.initialize(index, init) }, None)
            }
        };
        // SAFETY: `value` came from `Box::into_raw(Box<T>)` (the slot's key has type `T`,
        // our contract) and is freed only by `destroy`, which never runs while a `with` of
        // this thread is active (module docs): the reference cannot outlive the value.
        // Moving the slot vector does not move the boxed value.
        Ok(f(unused, unsafe { &*value }))
    }

    /// Makes the value at `index` (which holds none) with `init` and returns it.
    ///
    /// # Safety
    ///
    /// As for `access`.
    #[cold]
    unsafe fn initialize<T: 'static>(&self, index: usize, init: impl FnOnce() -> T) -> *const T {
        // SAFETY: we are the owning thread (contract), so nothing else uses the vector, and
        // this borrow ends before user code (`init`) runs.
        let slots = unsafe { &mut *self.slots.get() };
        if slots.len() <= index {
            slots.resize_with(index + 1, || Slot::Uninit);
        }
        slots[index] = Slot::Initializing;

        /// Puts the slot back to `Uninit` if the initializer panics.
        struct Reset<'a>(&'a LocalMap, usize);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                // SAFETY: we are the owning thread, unwinding out of `init` (the contract of
                // `initialize`, where this guard lives), and no other borrow of the vector is
                // live: the ones `init` made have ended with its frames.
                let slots = unsafe { &mut *self.0.slots.get() };
                slots[self.1] = Slot::Uninit;
            }
        }
        let reset = Reset(self, index);
        let value: *mut T = Box::into_raw(Box::new(init()));
        std::mem::forget(reset);
        // SAFETY: we are the owning thread (contract) and `init` has returned, so no other
        // borrow of the vector is live. `init` may have grown the vector, never shrunk it,
        // and could not touch this slot: using the key from its own initializer panics, and
        // `destroy` does not run during an access.
        let slots = unsafe { &mut *self.slots.get() };
        debug_assert!(matches!(slots[index], Slot::Initializing));
        slots[index] = Slot::Alive(value as *mut dyn Any);
        value
    }

    /// Drops every value (module docs, "When the values are dropped"). Returns the payload
    /// of the first destructor that panicked, after running all of them.
    ///
    /// # Safety
    ///
    /// Called by the thread the map belongs to, when no `with` of that thread is active (no
    /// user frame that could hold a reference into the map is on its stack).
    unsafe fn destroy(&self) -> Result<(), Box<dyn Any + Send>> {
        if self.state.get() != MapState::Live {
            return Ok(());
        }
        self.state.set(MapState::Destroying);
        let mut first_panic = None;
        loop {
            let mut dropped_any = false;
            let mut i = 0;
            loop {
                let taken = {
                    // SAFETY: we are the owning thread (contract); the borrow ends before
                    // the value's destructor runs.
                    let slots = unsafe { &mut *self.slots.get() };
                    let Some(slot) = slots.get_mut(i) else { break };
                    match std::mem::replace(slot, Slot::Destroyed) {
                        Slot::Alive(p) => Some(p),
                        other => {
                            *slot = other;
                            None
                        }
                    }
                };
                i += 1;
                if let Some(p) = taken {
                    dropped_any = true;
                    // SAFETY: `p` came from `Box::into_raw` and the slot no longer holds it;
                    // no reference to the value is live (contract: no `with` is active, and
                    // the ones opened by earlier destructors have returned).
                    let value = unsafe { Box::from_raw(p) };
                    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| drop(value))) {
                        first_panic.get_or_insert(payload);
                    }
                }
            }
            if !dropped_any {
                break;
            }
        }
        self.state.set(MapState::Destroyed);
        // SAFETY: as above; every slot is now `Uninit` or `Destroyed`, so freeing the vector
        // drops no value.
        drop(unsafe { std::mem::take(&mut *self.slots.get()) });
        first_panic.map_or(Ok(()), Err)
    }
}

#[cold]
#[inline(never)]
fn initializer_reentered() -> ! {
    panic!("spindle::local!: a local's initializer used the same local, recursively")
}

/// A kernel thread's map and whether its destroying guard is registered.
struct KernelLocals {
    map: LocalMap,
    guarded: Cell<bool>,
}

impl KernelLocals {
    /// Registers `KERNEL_GUARD` before this kernel thread's first value is made.
    fn ensure_guard(&self) -> Result<(), AccessError> {
        // While the map is being destroyed (by the guard, or by `destroy_current`), the
        // destroying loop drops new values too.
        if self.guarded.get() || self.map.state.get() == MapState::Destroying {
            return Ok(());
        }
        // The first access registers the guard's destructor; it fails only if the thread
        // is exiting and cannot take new thread-local destructors any more.
        KERNEL_GUARD.try_with(|_| ()).map_err(|_| AccessError)?;
        self.guarded.set(true);
        Ok(())
    }
}

/// Destroys this kernel thread's values when it exits.
struct KernelGuard;

impl Drop for KernelGuard {
    fn drop(&mut self) {
        // SAFETY: this kernel thread's own map, at its exit: no user frame is on its stack.
        let result = KERNEL_LOCALS.try_with(|k| unsafe { k.map.destroy() });
        if let Ok(Err(payload)) = result {
            // Unwinding out of a thread-local destructor aborts, as a std one would.
            panic::resume_unwind(payload);
        }
    }
}

thread_local! {
    // `ManuallyDrop` makes it a thread-local without a destructor: std never destroys it,
    // so it stays reachable while the thread exits, until `KERNEL_GUARD` has run.
    static KERNEL_LOCALS: ManuallyDrop<KernelLocals> = const {
        ManuallyDrop::new(KernelLocals { map: LocalMap::new(), guarded: Cell::new(false) })
    };
    static KERNEL_GUARD: KernelGuard = const { KernelGuard };
}

/// Drops the local values of the thread this runs on, as it finishes: called once a
/// spindle thread's closure has returned or panicked, before its result is published.
/// Returns the payload of the first destructor that panicked.
///
/// Must run on the finishing thread itself, with none of its `with` calls active (its
/// closure has returned).
pub(crate) fn destroy_current() -> Result<(), Box<dyn Any + Send>> {
    match context::current_green() {
        // SAFETY: the running green thread's own map; its closure has returned, so none of
        // its `with` calls is active (this function's contract).
        Some(me) => unsafe { me.locals.destroy() },
        None => KERNEL_LOCALS
            // SAFETY: this kernel thread's own map, with no `with` active (as above).
            .try_with(|k| unsafe { k.map.destroy() })
            .unwrap_or(Ok(())),
    }
}
