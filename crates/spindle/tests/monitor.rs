//! The monitor: time slices for `checkpoint()`, and stall events for workers held by one
//! green thread.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use spindle::runtime::StallCause;
use spindle::{Model, Runtime};

cross_model! {
    // As many spinners as there are workers, each spinning until a flag is set and
    // calling `checkpoint()`; the flag is set by a thread that can only run if the
    // spinners give way. Without time slices this never ends in the green models.
    fn checkpoint_lets_others_run_past_spinners(model) {
        let spinners = match model {
            Model::ManyToMany { workers } => workers,
            _ => 1,
        };
        let flag = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..spinners)
            .map(|_| {
                let flag = flag.clone();
                let started = started.clone();
                spindle::spawn(move || {
                    started.fetch_add(1, SeqCst);
                    while !flag.load(SeqCst) {
                        spindle::checkpoint();
                    }
                })
            })
            .collect();
        // Wait until every spinner spins: from here on, this thread (and the setter it
        // spawns) only runs if the spinners' checkpoints give way.
        while started.load(SeqCst) < spinners {
            spindle::yield_now();
        }
        let f = flag.clone();
        let setter = spindle::spawn(move || f.store(true, SeqCst));
        setter.join().unwrap();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(started.load(SeqCst), spinners);
    }

    fn checkpoint_without_a_used_up_slice_returns_at_once(model) {
        // Many calls in a row from a thread that just started: no panic, no block, and
        // the thread is still the same one afterwards.
        let me = spindle::current().id();
        for _ in 0..100_000 {
            spindle::checkpoint();
        }
        assert_eq!(spindle::current().id(), me, "{model}");
    }
}

/// Polls `f` until it returns `Some`, failing after a generous deadline.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A green thread held in a kernel wait is reported as a stall with its id, and, once it
/// switches, with its name and a duration at least as long as it was held.
fn stall_is_recorded(model: Model) {
    let rt = Runtime::builder()
        .model(model)
        .stall_threshold(Duration::from_millis(5))
        .build()
        .unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let h = spindle::thread::Builder::new().name("stuck".into());
    let stuck = rt.block_on(move || {
        let t = h
            .spawn(move || {
                blocked_in_a_raw_kernel_wait(release_rx);
                spindle::yield_now();
            })
            .unwrap();
        t.thread().id()
    });
    let held_from = Instant::now();
    let ongoing = wait_for("an ongoing stall event", || {
        rt.stall_events()
            .into_iter()
            .find(|e| e.ongoing && e.thread == Some(stuck))
    });
    assert_eq!(ongoing.cause, StallCause::SystemCall);
    assert!(ongoing.duration >= Duration::from_millis(5));
    // A thread in a system call is not signalled for a backtrace (its call could fail
    // with EINTR): the raw wait below returns only when released.
    assert!(ongoing.backtrace.is_none());
    release_tx.send(()).unwrap();
    let ended = wait_for("the stall to end", || {
        rt.stall_events()
            .into_iter()
            .find(|e| !e.ongoing && e.thread == Some(stuck))
    });
    assert_eq!(ended.thread_name.as_deref(), Some("stuck"));
    assert!(ended.duration >= ongoing.duration);
    assert!(ended.duration <= held_from.elapsed() + Duration::from_secs(1));
    let text = ended.to_string();
    assert!(
        text.contains("stuck") && text.contains("system call"),
        "{text}"
    );
}

/// A raw kernel wait: holds the worker until the test releases it.
#[inline(never)]
fn blocked_in_a_raw_kernel_wait(release: mpsc::Receiver<()>) {
    release.recv().unwrap();
    std::hint::black_box(());
}

/// The function names of a stall event's backtrace, innermost first.
fn frame_names(e: &spindle::runtime::StallEvent) -> Vec<String> {
    e.backtrace
        .as_ref()
        .map(|b| {
            b.frames()
                .iter()
                .flat_map(|f| f.symbols.iter())
                .filter_map(|s| s.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Spins until `stop`, never calling `checkpoint()`.
#[inline(never)]
fn computing_without_checkpoints(stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

/// A stall by a computation carries the backtrace of where it computes, taken while it runs.
#[test]
fn a_computing_stall_shows_where_it_computes() {
    let rt = Runtime::builder()
        .model(Model::ManyToOne)
        .stall_threshold(Duration::from_millis(5))
        .build()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    /// Stops the computation however this test ends: if `wait_for` fails, the runtime's
    /// drop would otherwise wait forever for a thread that never switches.
    struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let s2 = stop.clone();
    let h = rt.spawn(move || computing_without_checkpoints(&s2));
    let stopper = StopOnDrop(stop);
    let id = h.thread().id();
    let event = wait_for("a stall with a backtrace", || {
        rt.stall_events()
            .into_iter()
            .find(|e| e.thread == Some(id) && e.backtrace.is_some())
    });
    drop(stopper);
    h.join().unwrap();
    assert_eq!(event.cause, StallCause::Running);
    let names = frame_names(&event);
    assert!(
        names
            .iter()
            .any(|n| n.contains("computing_without_checkpoints")),
        "{names:#?}"
    );
}

#[test]
fn stall_is_recorded_many_to_one() {
    stall_is_recorded(Model::ManyToOne);
}

#[test]
fn stall_is_recorded_many_to_many() {
    stall_is_recorded(Model::ManyToMany { workers: 2 });
}

#[test]
fn one_to_one_has_no_stall_events() {
    let rt = Runtime::builder().model(Model::OneToOne).build().unwrap();
    rt.block_on(|| std::thread::sleep(Duration::from_millis(20)));
    assert!(rt.stall_events().is_empty());
}

#[test]
fn bad_monitor_settings_are_clear_errors() {
    let err = Runtime::builder()
        .time_slice(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("time_slice"), "{err}");
    let err = Runtime::builder()
        .stall_threshold(Duration::from_micros(10))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("stall_threshold"), "{err}");
}
