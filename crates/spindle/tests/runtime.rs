//! Runtime lifetime: building, reuse across block_on calls, and what drop does to the
//! green threads still alive.

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spindle::thread::Cancelled;
use spindle::{Model, Runtime};

#[test]
fn model_parses_and_displays() {
    for (text, model) in [
        ("many-to-one", Model::ManyToOne),
        ("one-to-one", Model::OneToOne),
        ("many-to-many:3", Model::ManyToMany { workers: 3 }),
    ] {
        assert_eq!(text.parse::<Model>().unwrap(), model);
        assert_eq!(model.to_string(), text);
    }
    assert!(
        matches!("many-to-many".parse::<Model>().unwrap(), Model::ManyToMany { workers } if workers >= 1)
    );
    let err = "two-to-one".parse::<Model>().unwrap_err();
    assert!(err.to_string().contains("two-to-one"), "{err}");
    let err = "many-to-many:0".parse::<Model>().unwrap_err();
    assert!(err.to_string().contains("worker count"), "{err}");
}

#[test]
fn bad_stack_size_is_a_clear_error() {
    let err = Runtime::builder().stack_size(10).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("stack"), "{err}");
    let err = common::run(Model::ManyToOne, || {
        spindle::thread::Builder::new()
            .stack_size(1)
            .spawn(|| ())
            .unwrap_err()
    });
    assert!(err.to_string().contains("stack"), "{err}");
}

#[test]
fn green_threads_outlive_block_on_and_a_later_block_on_joins_them() {
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    let (handle, tx) = rt.block_on(|| {
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let h = spindle::spawn(move || {
            // Wait for a value sent after the first block_on has returned.
            loop {
                match rx.try_recv() {
                    Ok(v) => return v * 2,
                    Err(_) => spindle::sleep(std::time::Duration::from_millis(1)),
                }
            }
        });
        (h, tx)
    });
    tx.send(21).unwrap();
    // Joined from a plain kernel thread, outside block_on.
    assert_eq!(handle.join().unwrap(), 42);
    assert_eq!(rt.block_on(|| 1 + 1), 2);
}

/// Counts its drops: the destructors of cancelled threads must run.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn dropping_the_runtime_unwinds_parked_and_sleeping_threads() {
    let drops = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    let handles = rt.block_on(|| {
        let mut hs = Vec::new();
        for i in 0..100 {
            let guard = DropCounter(drops.clone());
            let started = started.clone();
            hs.push(spindle::spawn(move || {
                let _guard = guard;
                started.fetch_add(1, SeqCst);
                if i % 2 == 0 {
                    loop {
                        spindle::park();
                    }
                } else {
                    spindle::sleep(std::time::Duration::from_secs(3600));
                }
            }));
        }
        while started.load(SeqCst) < 100 {
            spindle::yield_now();
        }
        hs
    });
    drop(rt);
    assert_eq!(
        drops.load(SeqCst),
        100,
        "every cancelled thread's destructors ran"
    );
    for h in handles {
        let payload = h.join().expect_err("a cancelled thread has no result");
        let cancelled = payload
            .downcast_ref::<Cancelled>()
            .expect("a Cancelled payload");
        assert!(
            cancelled.reason().contains("runtime was dropped"),
            "{cancelled}"
        );
    }
}

#[test]
fn threads_that_never_ran_are_cancelled_when_the_runtime_is_dropped_from_inside() {
    let drops = Arc::new(AtomicUsize::new(0));
    let slot: Arc<Mutex<Option<Runtime>>> = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel();
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    {
        let slot = slot.clone();
        let drops = drops.clone();
        rt.spawn(move || {
            // Wait until the runtime is handed to us.
            let rt = loop {
                if let Some(rt) = slot.lock().unwrap().take() {
                    break rt;
                }
                spindle::sleep(Duration::from_millis(1));
            };
            let children: Vec<_> = (0..10)
                .map(|_| {
                    let guard = DropCounter(drops.clone());
                    spindle::spawn(move || {
                        let _guard = guard;
                        unreachable!("queued behind a runtime drop, never run");
                    })
                })
                .collect();
            // Dropped from one of its own green threads: the worker cancels everything once
            // this thread returns, before running the queued children.
            drop(rt);
            tx.send(children).unwrap();
        });
    }
    *slot.lock().unwrap() = Some(rt);
    let children = rx.recv().unwrap();
    for h in children {
        let payload = h.join().expect_err("never ran");
        assert!(payload.downcast_ref::<Cancelled>().is_some());
    }
    assert_eq!(
        drops.load(SeqCst),
        10,
        "each closure was dropped once, unrun"
    );
}

#[test]
fn runtime_spawn_from_outside() {
    for model in common::MODELS {
        let rt = Runtime::builder().model(model).build().unwrap();
        let h = rt.spawn(|| spindle::current().is_green());
        assert_eq!(h.join().unwrap(), model != Model::OneToOne);
    }
}
