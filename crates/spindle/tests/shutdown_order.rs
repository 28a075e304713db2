//! Shutdown cancels youngest first across the whole runtime: no thread is unwound while a
//! thread that borrows its data is alive, on any worker; where that cannot be arranged (a
//! `block_on` root on another runtime) the process aborts with a message instead of
//! freeing the data under the root.

mod common;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Mutex};

use spindle::{Model, Runtime};

/// Set to false when dropped; the scoped threads check it in their own destructors.
struct Canary(AtomicBool);

impl Drop for Canary {
    fn drop(&mut self) {
        self.0.store(false, SeqCst);
    }
}

/// A scoped thread's guard: counts the times it finds its scope owner's data dropped.
struct Child<'a> {
    canary: &'a Canary,
    violations: &'a AtomicUsize,
}

impl Drop for Child<'_> {
    fn drop(&mut self) {
        spindle::checkpoint();
        if !self.canary.0.load(SeqCst) {
            self.violations.fetch_add(1, SeqCst);
        }
    }
}

/// A scope's owner is parked waiting for its threads, spread over several workers, when
/// the runtime is dropped: every scoped thread must be unwound before the owner.
fn scope_owner_outlives_its_threads(model: Model) {
    static VIOLATIONS: AtomicUsize = AtomicUsize::new(0);
    let spread = Mutex::new(HashSet::new());
    for _ in 0..20 {
        let rt = Runtime::builder().model(model).build().unwrap();
        let (tx, rx) = mpsc::channel();
        rt.spawn(move || {
            let canary = Canary(AtomicBool::new(true));
            spindle::scope(|s| {
                for _ in 0..8 {
                    let canary = &canary;
                    let tx = tx.clone();
                    s.spawn(move || {
                        let _guard = Child {
                            canary,
                            violations: &VIOLATIONS,
                        };
                        tx.send(spindle::runtime::worker_index()).unwrap();
                        spindle::park();
                        spindle::park();
                    });
                }
            });
        });
        for _ in 0..8 {
            spread.lock().unwrap().insert(rx.recv().unwrap());
        }
        drop(rt);
        assert_eq!(
            VIOLATIONS.load(SeqCst),
            0,
            "{model}: a scope owner was unwound first"
        );
    }
    // Whether the scoped threads ran on several workers depends on stealing, which the
    // machine's load decides; it makes the test sharper, but is not the property tested.
    if let Model::ManyToMany { .. } = model {
        if spread.lock().unwrap().len() < 2 {
            eprintln!("note: every scoped thread ran on one worker in every round");
        }
    }
}

#[test]
fn scope_owner_outlives_its_threads_many_to_many() {
    scope_owner_outlives_its_threads(Model::ManyToMany { workers: 4 });
}

#[test]
fn scope_owner_outlives_its_threads_many_to_one() {
    scope_owner_outlives_its_threads(Model::ManyToOne);
}

/// `checkpoint()` in a destructor of a cancelled thread does nothing, even if the slice
/// ran out just before the drop (a yield there would abort).
#[test]
fn checkpoint_in_a_cancelled_destructor_does_not_yield() {
    struct CallsCheckpoint(mpsc::Sender<()>);
    impl Drop for CallsCheckpoint {
        fn drop(&mut self) {
            for _ in 0..10 {
                spindle::checkpoint();
            }
            self.0.send(()).unwrap();
        }
    }
    let ms = std::time::Duration::from_millis(1);
    let rt = Runtime::builder()
        .time_slice(ms)
        .stall_threshold(ms)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    rt.spawn(move || {
        let _d = CallsCheckpoint(tx);
        started_tx.send(()).unwrap();
        spindle::park();
        spindle::park();
    });
    started_rx.recv().unwrap();
    // Hold the worker in a kernel wait until the monitor has seen it held past its slice
    // (it records the stall in the same look, the threshold being the slice).
    std::thread::scope(|s| {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let rt = &rt;
        s.spawn(move || {
            while rt.stall_events().is_empty() {
                std::thread::yield_now();
            }
            release_tx.send(()).unwrap();
        });
        rt.block_on(move || release_rx.recv().unwrap());
    });
    drop(rt);
    rx.try_recv().expect("the destructor ran to the end");
}

const CHILD_ENV: &str = "SPINDLE_TEST_BLOCK_ON_ACROSS_RUNTIMES_CHILD";

/// A green thread of runtime X waits in `y.block_on` for a root that borrows its stack;
/// dropping X while the root still runs on Y must abort with a message, not unwind.
fn block_on_across_runtimes_child() {
    let y: &'static Runtime = Box::leak(Box::new(Runtime::builder().build().unwrap()));
    let x = Runtime::builder().build().unwrap();
    let (tx, rx) = mpsc::channel();
    x.spawn(move || {
        let canary = Canary(AtomicBool::new(true));
        let c = &canary;
        y.block_on(move || {
            tx.send(()).unwrap();
            loop {
                assert!(c.0.load(SeqCst), "the root read dropped data");
                spindle::park();
            }
        });
    });
    rx.recv().unwrap();
    drop(x);
    unreachable!("dropping the runtime should have aborted");
}

#[test]
fn block_on_unwound_while_its_root_runs_aborts_with_a_message() {
    if std::env::var_os(CHILD_ENV).is_some() {
        block_on_across_runtimes_child();
        return;
    }
    let out = common::rerun_in_child(
        "block_on_unwound_while_its_root_runs_aborts_with_a_message",
        CHILD_ENV,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(
        stderr.contains("block_on waiting for its root thread was unwound"),
        "{stderr}"
    );
}
