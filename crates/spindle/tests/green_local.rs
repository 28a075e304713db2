//! Green-thread-local storage (`spindle::local!`) under every model, and on plain kernel
//! threads: isolation, persistence across switches, lazy initialisation, destruction on the
//! thread before `join` returns, and access during destruction.
//!
//! Destructors report through std channels (sending never blocks), so "the destructor has
//! run before `join` returned" is a `try_recv` right after the join, never a sleep.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spindle::{LocalKey, Model, ThreadId};

/// How many threads a test may spawn in this model (kernel threads are costlier).
fn many(model: Model, green: usize, kernel: usize) -> usize {
    match model {
        Model::OneToOne => kernel,
        _ => green,
    }
}

/// Runs its closure when dropped: a value to store in a local, whose destructor reports.
/// Not `Send` (it holds an `Rc`), which locals allow.
struct OnDrop {
    action: Option<Box<dyn FnOnce()>>,
    _not_send: Rc<()>,
}

impl OnDrop {
    fn new(action: impl FnOnce() + 'static) -> OnDrop {
        OnDrop {
            action: Some(Box::new(action)),
            _not_send: Rc::new(()),
        }
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(action) = self.action.take() {
            action();
        }
    }
}

/// A slot for an [`OnDrop`]; `set` fills it without running the initializer.
type DropSlot = RefCell<Option<OnDrop>>;

/// A simple barrier on spindle's primitives (parks only the calling green thread).
struct Barrier {
    arrived: spindle::sync::Mutex<usize>,
    all_here: spindle::sync::Condvar,
    parties: usize,
}

impl Barrier {
    fn new(parties: usize) -> Barrier {
        Barrier {
            arrived: spindle::sync::Mutex::new(0),
            all_here: spindle::sync::Condvar::new(),
            parties,
        }
    }

    fn wait(&self) {
        let mut n = self.arrived.lock().unwrap();
        *n += 1;
        if *n == self.parties {
            self.all_here.notify_all();
        }
        while *n < self.parties {
            n = self.all_here.wait(n).unwrap();
        }
    }
}

/// How often each thread ran the initializer of `COUNTED` (keyed by thread id, because
/// tests run in parallel).
static INIT_COUNTS: Mutex<Option<HashMap<ThreadId, usize>>> = Mutex::new(None);

fn inits_on(id: ThreadId) -> usize {
    let counts = INIT_COUNTS.lock().unwrap();
    counts
        .as_ref()
        .and_then(|c| c.get(&id))
        .copied()
        .unwrap_or(0)
}

fn counted_init() -> Cell<u64> {
    let id = spindle::current().id();
    let mut counts = INIT_COUNTS.lock().unwrap();
    *counts
        .get_or_insert_with(HashMap::new)
        .entry(id)
        .or_insert(0) += 1;
    Cell::new(100)
}

spindle::local! {
    /// Each thread's own number (isolation test).
    static MINE: Cell<usize> = Cell::new(usize::MAX);
    static TRAIL: RefCell<Vec<&'static str>> = RefCell::new(Vec::new());
    static COUNTED: Cell<u64> = counted_init();

    static PROBE: DropSlot = RefCell::new(None);
    static SECOND_PROBE: DropSlot = RefCell::new(None);
    /// Checkers of access during destruction (visibility is accepted as in std).
    pub(crate) static CHECK_A: DropSlot = RefCell::new(None);
    /// The other checker.
    pub static CHECK_B: DropSlot = RefCell::new(None);
    static LATE: DropSlot = RefCell::new(None);
    static PANICKY: DropSlot = RefCell::new(None)
}

/// What a destructor saw of the locals while the thread's values were being dropped.
#[derive(Debug, PartialEq)]
struct Seen {
    who: &'static str,
    own_accessible: bool,
    other_alive: bool,
    late_accessible: bool,
}

/// Puts a checker into `key`: when dropped, it reports whether its own key and `other` were
/// accessible; the first one to run also fills `LATE`, a key not used before.
fn arm_checker(
    who: &'static str,
    key: &'static LocalKey<DropSlot>,
    other: &'static LocalKey<DropSlot>,
    tx: mpsc::Sender<Seen>,
    late_tx: mpsc::Sender<&'static str>,
) {
    key.set(Some(OnDrop::new(move || {
        let own_accessible = key.try_with(|_| ()).is_ok();
        // Alive means accessible and still holding its checker.
        let other_alive = other
            .try_with(|o| o.try_borrow().is_ok_and(|o| o.is_some()))
            .unwrap_or(false);
        // The first checker finds `LATE` never used and initialises it.
        let late = LATE.try_with(|late| late.borrow().is_none());
        if late == Ok(true) {
            LATE.set(Some(OnDrop::new(move || late_tx.send("late").unwrap())));
        }
        tx.send(Seen {
            who,
            own_accessible,
            other_alive,
            late_accessible: late.is_ok(),
        })
        .unwrap();
    })));
}

cross_model! {
    fn threads_on_one_kernel_thread_have_their_own_values(model) {
        let n = many(model, 200, 16);
        MINE.set(n + 1);
        let barrier = Arc::new(Barrier::new(n));
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let barrier = barrier.clone();
                spindle::spawn(move || {
                    assert_eq!(MINE.get(), usize::MAX, "a new thread starts from the initializer");
                    MINE.set(i);
                    // Every thread has set its value before any checks it: in the green
                    // models they all interleave on the worker(s) here.
                    barrier.wait();
                    for _ in 0..5 {
                        assert_eq!(MINE.get(), i);
                        spindle::yield_now();
                    }
                    MINE.get()
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i);
        }
        assert_eq!(MINE.get(), n + 1, "the spawner's value is its own");
    }

    fn a_value_persists_across_yield_park_and_sleep(_model) {
        TRAIL.with_borrow_mut(|t| t.push("start"));
        spindle::yield_now();
        TRAIL.with_borrow_mut(|t| t.push("yielded"));

        // A helper uses the same key while this thread is parked, then wakes it.
        let me = spindle::current();
        let helped = Arc::new(AtomicBool::new(false));
        let helper = {
            let helped = helped.clone();
            spindle::spawn(move || {
                let fresh = TRAIL.with_borrow_mut(|t| {
                    t.push("helper");
                    t.len() == 1
                });
                helped.store(true, SeqCst);
                me.unpark();
                assert!(fresh, "the helper sees its own, fresh value");
                TRAIL.take()
            })
        };
        while !helped.load(SeqCst) {
            spindle::park();
        }
        TRAIL.with_borrow_mut(|t| t.push("parked"));

        // Not a synchronisation: the sleep is what is being tested.
        spindle::sleep(Duration::from_millis(2));
        TRAIL.with_borrow_mut(|t| t.push("slept"));

        assert_eq!(helper.join().unwrap(), ["helper"]);
        assert_eq!(TRAIL.take(), ["start", "yielded", "parked", "slept"]);
    }

    fn the_initializer_runs_lazily_once_per_thread(model) {
        let n = many(model, 50, 8);
        let hs: Vec<_> = (0..n)
            .map(|i| {
                spindle::spawn(move || {
                    let me = spindle::current().id();
                    assert_eq!(inits_on(me), 0, "nothing runs before the first use");
                    if i % 2 == 0 {
                        for round in 0..3 {
                            assert_eq!(COUNTED.get(), 100 + round);
                            COUNTED.set(COUNTED.get() + 1);
                            spindle::yield_now();
                        }
                    }
                    (i % 2 == 0, me)
                })
            })
            .collect();
        for h in hs {
            let (used, id) = h.join().unwrap();
            assert_eq!(inits_on(id), usize::from(used), "inits of thread {id} (used: {used})");
        }
    }

    fn values_are_dropped_on_the_thread_before_join_returns(_model) {
        let (tx, rx) = mpsc::channel();
        let h = spindle::spawn(move || {
            let me = spindle::current().id();
            let (tx1, tx2) = (tx.clone(), tx.clone());
            PROBE.set(Some(OnDrop::new(move || {
                // A destructor runs on the thread, and may switch.
                tx1.send(("probe", spindle::current().id() == me)).unwrap();
                spindle::yield_now();
            })));
            SECOND_PROBE.set(Some(OnDrop::new(move || {
                tx2.send(("second", spindle::current().id() == me)).unwrap();
            })));
            spindle::yield_now();
            assert!(PROBE.with_borrow(Option::is_some), "not dropped by a switch");
            tx.send(("closure returns", true)).unwrap();
        });
        h.join().unwrap();
        let mut got: Vec<_> = rx.try_iter().collect();
        assert_eq!(got.first(), Some(&("closure returns", true)));
        got[1..].sort();
        assert_eq!(got[1..], [("probe", true), ("second", true)]);
    }

    fn values_of_a_panicking_thread_are_dropped_before_join_returns(_model) {
        let (tx, rx) = mpsc::channel();
        let h = spindle::spawn(move || {
            PROBE.set(Some(OnDrop::new(move || tx.send("dropped").unwrap())));
            panic!("the thread's own panic");
        });
        let payload = h.join().expect_err("the thread panicked");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"the thread's own panic"));
        assert_eq!(rx.try_recv(), Ok("dropped"));
    }

    fn access_during_destruction_is_like_std(_model) {
        let (tx, rx) = mpsc::channel();
        let (late_tx, late_rx) = mpsc::channel();
        let h = spindle::spawn(move || {
            arm_checker("a", &CHECK_A, &CHECK_B, tx.clone(), late_tx.clone());
            arm_checker("b", &CHECK_B, &CHECK_A, tx, late_tx);
        });
        h.join().unwrap();
        let mut seen: Vec<Seen> = rx.try_iter().collect();
        seen.sort_by_key(|s| !s.other_alive);
        // Whichever went first saw the other still there; the second saw it gone. Neither
        // could use its own key (its value was being dropped), which also means a
        // destructor cannot bring its own value back and make destruction loop.
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen.iter().all(|s| !s.own_accessible), "{seen:?}");
        assert!(seen[0].other_alive && !seen[1].other_alive, "{seen:?}");
        assert!(seen[0].late_accessible, "a key not used before can be initialised: {seen:?}");
        assert_ne!(seen[0].who, seen[1].who);
        // The value made during destruction was dropped too, before the join returned.
        assert_eq!(late_rx.try_recv(), Ok("late"));
        assert_eq!(late_rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    fn a_panicking_destructor_is_the_threads_panic(_model) {
        let (tx, rx) = mpsc::channel();
        let h = spindle::spawn(move || {
            PANICKY.set(Some(OnDrop::new(|| panic!("destructor boom"))));
            PROBE.set(Some(OnDrop::new(move || tx.send("other dropped").unwrap())));
            5
        });
        let payload = h.join().expect_err("a destructor panicked");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"destructor boom"));
        assert_eq!(rx.try_recv(), Ok("other dropped"), "the other values are still dropped");
    }
}

#[test]
fn kernel_threads_outside_a_runtime_have_their_own_values() {
    MINE.set(7);
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        assert_eq!(
            MINE.get(),
            usize::MAX,
            "a new kernel thread starts from the initializer"
        );
        MINE.set(8);
        PROBE.set(Some(OnDrop::new(move || {
            // At kernel-thread exit: the value's own key is being destroyed.
            let own = PROBE.try_with(|_| ()).is_err();
            tx.send(("dropped at exit", own)).unwrap();
        })));
        MINE.get()
    });
    assert_eq!(t.join().unwrap(), 8);
    // std's join returns after the thread's thread-local destructors have run.
    assert_eq!(rx.try_recv(), Ok(("dropped at exit", true)));
    assert_eq!(MINE.get(), 7, "this kernel thread's value is its own");
}

#[test]
fn set_does_not_run_the_initializer() {
    spindle::local! {
        static NEVER: Cell<u32> = panic!("the initializer must not run");
    }
    let t = std::thread::spawn(|| {
        NEVER.set(3);
        NEVER.replace(4) + NEVER.get()
    });
    assert_eq!(t.join().unwrap(), 7);
}

#[test]
fn a_failed_initializer_is_retried() {
    static FAIL: AtomicBool = AtomicBool::new(true);
    fn flaky() -> Cell<u32> {
        if FAIL.swap(false, SeqCst) {
            panic!("first init fails");
        }
        Cell::new(5)
    }
    spindle::local! {
        static FLAKY: Cell<u32> = flaky();
    }
    let t = std::thread::spawn(|| {
        let first = std::panic::catch_unwind(|| FLAKY.get());
        assert!(first.is_err());
        FLAKY.get()
    });
    assert_eq!(t.join().unwrap(), 5);
}

#[test]
fn an_initializer_that_uses_its_own_key_panics() {
    spindle::local! {
        static SELF_REF: u32 = SELF_REF.with(|v| *v + 1);
    }
    let t = std::thread::spawn(|| {
        for _ in 0..2 {
            let err = std::panic::catch_unwind(|| SELF_REF.with(|v| *v)).expect_err("recursion");
            let msg = err.downcast_ref::<&str>().copied().unwrap_or_default();
            assert!(msg.contains("recursively"), "{msg}");
        }
    });
    t.join().unwrap();
}

#[test]
fn values_of_threads_cancelled_at_shutdown_are_dropped() {
    for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
        let rt = spindle::Runtime::builder().model(model).build().unwrap();
        let (armed_tx, armed_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        let h = rt.spawn(move || {
            let me = spindle::current().id();
            PROBE.set(Some(OnDrop::new(move || {
                tx.send(spindle::current().id() == me).unwrap();
            })));
            armed_tx.send(()).unwrap();
            loop {
                spindle::park();
            }
        });
        armed_rx.recv().unwrap();
        assert_eq!(
            rx.try_recv(),
            Err(TryRecvError::Empty),
            "{model}: still alive"
        );
        // Dropping the runtime unwinds the parked thread, on its own stack.
        drop(rt);
        assert_eq!(rx.try_recv(), Ok(true), "{model}: dropped, on the thread");
        assert!(h.join().is_err(), "{model}: the thread was cancelled");
    }
}
