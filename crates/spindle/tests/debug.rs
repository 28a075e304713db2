//! `spindle::debug`: thread listings, states and wait reasons, backtraces of parked threads,
//! the text and JSON dumps, workers that cannot answer, and the dump signal.
//!
//! Tests of one binary run in parallel and a dump lists every runtime of the process, so
//! each test looks only at the threads it spawned (by id).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::debug::{self, ThreadInfo, ThreadState};
use spindle::{Model, Runtime, ThreadId, WaitReason};

/// The green models (dumps with backtraces are about green threads).
const GREEN: [Model; 2] = [Model::ManyToOne, Model::ManyToMany { workers: 2 }];

/// How long a test waits for threads to reach the states it set up before it fails.
const SETTLE: Duration = Duration::from_secs(20);

/// Lists threads until `done` holds for the listing of `ids`, yielding in between (so that
/// on a green thread the others run); fails with the last listing after [`SETTLE`].
fn wait_for_listing(
    ids: &[ThreadId],
    done: impl Fn(&HashMap<ThreadId, ThreadInfo>) -> bool,
) -> HashMap<ThreadId, ThreadInfo> {
    let start = Instant::now();
    loop {
        let listed: HashMap<ThreadId, ThreadInfo> = debug::threads()
            .into_iter()
            .filter(|t| ids.contains(&t.id))
            .map(|t| (t.id, t))
            .collect();
        if done(&listed) {
            return listed;
        }
        assert!(
            start.elapsed() < SETTLE,
            "threads did not reach the expected states; last listing: {listed:#?}"
        );
        spindle::sleep(Duration::from_millis(1));
    }
}

fn reason_of(t: &ThreadInfo) -> Option<WaitReason> {
    t.state.wait_reason()
}

fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> spindle::JoinHandle<T> {
    spindle::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap()
}

#[test]
fn states_and_wait_reasons_are_reported_and_the_threads_go_on_unharmed() {
    for model in GREEN {
        common::run(model, move || {
            let lock = Arc::new(spindle::sync::Mutex::new(0u32));
            let held = lock.lock().unwrap();
            let (tx, rx) = spindle::channel::unbounded::<u32>();
            let listener = spindle::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
            let (helper_tx, helper_rx) = std::sync::mpsc::channel::<()>();
            let stop = Arc::new(AtomicBool::new(false));

            let l2 = lock.clone();
            let locker = spawn_named("locker", move || *l2.lock().unwrap());
            let receiver = spawn_named("receiver", move || rx.recv().unwrap());
            let sleeper = spawn_named("sleeper", || spindle::sleep(Duration::from_secs(3600)));
            let acceptor = spawn_named("acceptor", move || listener.accept().is_ok());
            let helped = spawn_named("helped", move || spindle::unblock(move || helper_rx.recv()));
            let s2 = stop.clone();
            let yielder = spawn_named("yielder", move || {
                while !s2.load(SeqCst) {
                    spindle::yield_now();
                }
            });
            let ids = [
                locker.thread().id(),
                receiver.thread().id(),
                sleeper.thread().id(),
                acceptor.thread().id(),
                helped.thread().id(),
                yielder.thread().id(),
            ];
            let listed = wait_for_listing(&ids, |l| {
                l.len() == ids.len()
                    && reason_of(&l[&ids[0]]) == Some(WaitReason::MutexLock)
                    && reason_of(&l[&ids[1]]) == Some(WaitReason::ChannelRecv)
                    && reason_of(&l[&ids[2]]) == Some(WaitReason::Sleep)
                    && reason_of(&l[&ids[3]]) == Some(WaitReason::TcpAccept)
                    && reason_of(&l[&ids[4]]) == Some(WaitReason::Unblock)
                    && matches!(l[&ids[5]].state, ThreadState::Runnable { started: true })
            });
            assert!(matches!(
                listed[&ids[0]].state,
                ThreadState::Parked { until: None, .. }
            ));
            match listed[&ids[2]].state {
                ThreadState::Sleeping { until } => {
                    assert!(until > Instant::now() + Duration::from_secs(3000))
                }
                other => panic!("the sleeper is {other:?}"),
            }
            match listed[&ids[3]].state {
                ThreadState::Io { fd, .. } => assert_eq!(fd, listener_fd),
                other => panic!("the acceptor is {other:?}"),
            }
            assert_eq!(listed[&ids[4]].state, ThreadState::Unblock);
            let now = Instant::now();
            for (id, t) in &listed {
                assert!(t.green, "{id}");
                assert!(t.worker.is_some(), "{t:?}");
                assert!(t.switches >= 1, "{t:?}");
                assert_eq!(t.stack_size, 256 * 1024, "{t:?}");
                assert!(
                    t.stack_resident >= 4096 && t.stack_resident <= t.stack_size,
                    "{t:?}"
                );
                assert!(t.spawned_at <= now, "{t:?}");
                assert!(t.backtrace.is_none(), "threads() takes no backtraces");
            }
            assert_eq!(listed[&ids[1]].name.as_deref(), Some("receiver"));

            // Everything the listing (and a dump with captures) looked at still works.
            let _ = debug::snapshot();
            drop(held);
            assert_eq!(locker.join().unwrap(), 0);
            tx.send(41).unwrap();
            assert_eq!(receiver.join().unwrap(), 41);
            let _client = spindle::net::TcpStream::connect(addr).unwrap();
            assert!(acceptor.join().unwrap());
            helper_tx.send(()).unwrap();
            assert!(helped.join().unwrap().is_ok());
            stop.store(true, SeqCst);
            yielder.join().unwrap();
            assert!(!sleeper.is_finished());
        });
    }
}

#[inline(never)]
fn parked_in_a_function_with_a_distinct_name(rx: spindle::channel::Receiver<u32>) -> u32 {
    rx.recv().unwrap() + 1
}

#[inline(never)]
fn sleeping_in_another_distinct_function(d: Duration) {
    spindle::sleep(d);
    // Not a tail call, so that this function keeps its frame.
    std::hint::black_box(());
}

#[test]
fn backtraces_show_where_each_thread_waits() {
    for model in GREEN {
        common::run(model, move || {
            let (tx, rx) = spindle::channel::bounded::<u32>(0);
            let parked = spawn_named("parked", move || {
                parked_in_a_function_with_a_distinct_name(rx)
            });
            let sleeper = spawn_named("sleeper", || {
                sleeping_in_another_distinct_function(Duration::from_secs(3600))
            });
            let ids = [parked.thread().id(), sleeper.thread().id()];
            wait_for_listing(&ids, |l| {
                l.len() == 2
                    && reason_of(&l[&ids[0]]) == Some(WaitReason::ChannelRecv)
                    && reason_of(&l[&ids[1]]) == Some(WaitReason::Sleep)
            });
            let snap = debug::snapshot();
            let names = |id: ThreadId| -> Vec<String> {
                let t = snap.threads.iter().find(|t| t.id == id).expect("listed");
                let b = t
                    .backtrace
                    .as_ref()
                    .expect("a parked thread has a backtrace");
                b.frames()
                    .iter()
                    .flat_map(|f| f.symbols.iter())
                    .filter_map(|s| s.name.clone())
                    .collect()
            };
            let p = names(ids[0]);
            assert!(
                p.iter()
                    .any(|n| n.contains("parked_in_a_function_with_a_distinct_name")),
                "{p:#?}"
            );
            assert!(p.iter().any(|n| n.contains("recv")), "{p:#?}");
            // The walk starts where the thread switched out, not in the capture step.
            assert!(!p.iter().any(|n| n.contains("record")), "{p:#?}");
            let s = names(ids[1]);
            assert!(
                s.iter()
                    .any(|n| n.contains("sleeping_in_another_distinct_function")),
                "{s:#?}"
            );
            assert!(
                !s.iter().any(|n| n.contains("parked_in_a_function")),
                "{s:#?}"
            );

            let text = snap.to_text();
            assert!(text.starts_with("spindle dump at "), "{text}");
            assert!(text.trim_end().ends_with("end of spindle dump"), "{text}");
            assert!(
                text.contains(&format!("thread {} \"parked\" [channel recv]", ids[0])),
                "{text}"
            );
            assert!(
                text.contains("parked_in_a_function_with_a_distinct_name"),
                "{text}"
            );
            assert!(text.contains("tests/debug.rs:"), "line tables: {text}");

            // Captured twice over, the thread still gets its message exactly once.
            let _ = debug::dump_text();
            tx.send(1).unwrap();
            assert_eq!(parked.join().unwrap(), 2);
            assert!(!sleeper.is_finished());
        });
    }
}

/// A capture must neither consume nor leave a park token: a thread parked in
/// `spindle::park` stays parked through dumps and wakes for the one unpark.
#[test]
fn a_capture_neither_consumes_nor_leaves_a_park_token() {
    for model in GREEN {
        common::run(model, move || {
            let woken = Arc::new(AtomicUsize::new(0));
            let w = woken.clone();
            let parker = spawn_named("parker", move || {
                spindle::park();
                w.fetch_add(1, SeqCst);
                // A token left by a capture would make this return at once.
                spindle::park_timeout(Duration::from_millis(200));
                w.fetch_add(1, SeqCst);
            });
            let id = parker.thread().id();
            wait_for_listing(&[id], |l| {
                l.get(&id).and_then(reason_of) == Some(WaitReason::Park)
            });
            for _ in 0..5 {
                let snap = debug::snapshot();
                let t = snap.threads.iter().find(|t| t.id == id).unwrap();
                assert!(t.backtrace.is_some());
                assert_eq!(woken.load(SeqCst), 0, "a capture woke the parked thread");
            }
            let before = Instant::now();
            parker.thread().unpark();
            parker.join().unwrap();
            assert_eq!(woken.load(SeqCst), 2);
            assert!(
                before.elapsed() >= Duration::from_millis(200),
                "the second park returned early: a capture left a token"
            );
        });
    }
}

#[test]
fn a_dump_from_a_kernel_thread_outside_any_runtime_sees_green_threads() {
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    let (tx, rx) = spindle::channel::bounded::<u32>(0);
    let h = rt.spawn(move || parked_in_a_function_with_a_distinct_name(rx));
    let id = h.thread().id();
    let start = Instant::now();
    let text = loop {
        let text = std::thread::spawn(debug::dump_text).join().unwrap();
        if text.contains(&format!("thread {id} [channel recv]")) {
            break text;
        }
        assert!(start.elapsed() < SETTLE, "{text}");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(
        text.contains("parked_in_a_function_with_a_distinct_name"),
        "{text}"
    );
    tx.send(4).unwrap();
    assert_eq!(h.join().unwrap(), 5);
}

/// A worker held by a green thread in a raw blocking call cannot answer: the dump goes on
/// without it after the answer timeout and names the thread that holds it. In a child
/// process, since every dump of this process would wait for that worker.
#[test]
fn a_worker_held_by_a_blocking_call_is_named_not_waited_for() {
    const CHILD: &str = "SPINDLE_TEST_HELD_WORKER_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let out = common::rerun_in_child(
            "a_worker_held_by_a_blocking_call_is_named_not_waited_for",
            CHILD,
        );
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    let (about_to_block_tx, about_to_block) = std::sync::mpsc::channel::<ThreadId>();
    let (release, blocked_on) = std::sync::mpsc::channel::<()>();
    let h = rt.spawn(move || {
        about_to_block_tx.send(spindle::current().id()).unwrap();
        // A raw std call: the worker's kernel thread blocks with the thread.
        blocked_on.recv().unwrap();
    });
    let holder = about_to_block.recv().unwrap();
    let start = Instant::now();
    let snap = debug::snapshot();
    let waited = start.elapsed();
    release.send(()).unwrap();
    h.join().unwrap();
    // The worker comes to the request it was too busy for, late: it skips it and goes on.
    assert_eq!(rt.block_on(|| spindle::spawn(|| 7).join().unwrap()), 7);
    let rt_info = snap
        .runtimes
        .iter()
        .find(|r| r.workers.iter().any(|w| w.running == Some(holder)))
        .unwrap_or_else(|| panic!("no worker reported as held by {holder}: {snap:#?}"));
    assert!(!rt_info.workers[0].answered);
    assert!(waited >= debug::ANSWER_TIMEOUT, "{waited:?}");
    assert!(!snap.threads.iter().any(|t| t.id == holder));
    let text = snap.to_text();
    assert!(
        text.contains(&format!(
            "worker 0 did not answer: its threads are not listed (green thread {holder} holds it"
        )),
        "{text}"
    );
}

#[test]
fn the_json_dump_parses_and_agrees_with_the_listing() {
    common::run(Model::ManyToMany { workers: 2 }, || {
        let (tx, rx) = spindle::channel::bounded::<u32>(0);
        let h = spawn_named("json \"quoted\"\nname", move || {
            parked_in_a_function_with_a_distinct_name(rx)
        });
        let id = h.thread().id();
        wait_for_listing(&[id], |l| {
            l.get(&id).and_then(reason_of) == Some(WaitReason::ChannelRecv)
        });
        let json: serde_json::Value = serde_json::from_str(&debug::dump_json()).unwrap();
        let threads = json["threads"].as_array().unwrap();
        let t = threads
            .iter()
            .find(|t| t["id"].as_u64() == Some(id.as_u64().get()))
            .unwrap_or_else(|| panic!("thread {id} missing: {json:#}"));
        assert_eq!(t["name"], "json \"quoted\"\nname");
        assert_eq!(t["state"], "parked");
        assert_eq!(t["wait_reason"], "channel recv");
        assert_eq!(t["green"], true);
        assert!(t["stack_size"].as_u64().unwrap() > 0);
        let frames = t["backtrace"].as_array().unwrap();
        assert!(frames.iter().any(
            |f| f["symbols"].as_array().unwrap().iter().any(|s| s["name"]
                .as_str()
                .is_some_and(|n| n.contains("parked_in_a_function_with_a_distinct_name")))
        ));
        let rt = json["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == t["runtime"])
            .unwrap();
        assert_eq!(rt["model"], "many-to-many:2");
        assert_eq!(rt["workers"].as_array().unwrap().len(), 2);
        tx.send(0).unwrap();
        assert_eq!(h.join().unwrap(), 1);
    });
}

#[test]
fn one_to_one_threads_are_listed_as_kernel_threads() {
    common::run(Model::OneToOne, || {
        let (tx, rx) = spindle::channel::bounded::<u32>(0);
        let h = spawn_named("kernel-waiter", move || rx.recv().unwrap());
        let id = h.thread().id();
        let listed = wait_for_listing(&[id], |l| {
            l.get(&id).and_then(reason_of) == Some(WaitReason::ChannelRecv)
        });
        let t = &listed[&id];
        assert!(!t.green);
        assert_eq!(t.worker, None);
        assert_eq!(t.name.as_deref(), Some("kernel-waiter"));
        assert!(t.stack_size > 0);
        assert!(
            t.switches > 0,
            "the kernel counts a parked thread's switches: {t:?}"
        );
        tx.send(3).unwrap();
        assert_eq!(h.join().unwrap(), 3);
    });
}

/// Threads passing a token around a ring while a kernel thread dumps them again and again
/// (each dump resuming every switched-out thread into a capture): no wakeup is lost, none
/// is doubled. The ring runs until the dumper has finished 20 dumps.
#[test]
fn dumps_during_heavy_parking_lose_no_wakeup() {
    const THREADS: usize = 50;
    const DUMPS: usize = 20;
    const STOP: u64 = u64::MAX;
    for model in GREEN {
        let rt = Runtime::builder().model(model).build().unwrap();
        let dumps = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicBool::new(false));
        let dumper = {
            let (dumps, finished) = (dumps.clone(), finished.clone());
            std::thread::spawn(move || {
                while !finished.load(SeqCst) {
                    let _ = debug::snapshot();
                    dumps.fetch_add(1, SeqCst);
                }
            })
        };
        let seen = rt.block_on(|| {
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
                .map(|_| spindle::channel::bounded::<u64>(0))
                .unzip();
            let handles: Vec<_> = rxs
                .into_iter()
                .enumerate()
                .map(|(i, rx)| {
                    let next = txs[(i + 1) % THREADS].clone();
                    let dumps = dumps.clone();
                    spindle::spawn(move || {
                        // The hop numbers this thread received, in order.
                        let mut hops = Vec::new();
                        while let Ok(hop) = rx.recv() {
                            if hop == STOP {
                                let _ = next.send(STOP);
                                break;
                            }
                            hops.push(hop);
                            let lap_done = i == THREADS - 1;
                            let out = if lap_done && dumps.load(SeqCst) >= DUMPS {
                                STOP
                            } else {
                                hop + 1
                            };
                            if next.send(out).is_err() {
                                break;
                            }
                        }
                        hops
                    })
                })
                .collect();
            txs[0].send(0).unwrap();
            drop(txs);
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        finished.store(true, SeqCst);
        dumper.join().unwrap();
        let laps = seen[0].len();
        assert!(laps >= 1);
        for (i, hops) in seen.iter().enumerate() {
            let expected: Vec<u64> = (0..laps as u64)
                .map(|l| l * THREADS as u64 + i as u64)
                .collect();
            assert_eq!(hops, &expected, "{model}: thread {i}");
        }
        assert!(dumps.load(SeqCst) >= DUMPS);
    }
}

/// The dump signal, in a child process: the child points its own stderr at a pipe,
/// raises the signal, reads the dump back from the pipe and prints it on stdout.
#[test]
fn the_dump_signal_writes_a_dump_and_the_process_goes_on() {
    const CHILD: &str = "SPINDLE_TEST_DUMP_SIGNAL_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return dump_signal_child();
    }
    let out = common::rerun_in_child(
        "the_dump_signal_writes_a_dump_and_the_process_goes_on",
        CHILD,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[channel recv]"), "{stdout}");
    assert!(
        stdout.contains("parked_in_a_function_with_a_distinct_name"),
        "{stdout}"
    );
    assert!(stdout.contains("child still runs"), "{stdout}");
}

fn dump_signal_child() {
    assert!(debug::install_dump_signal(libc::SIGSEGV).is_err());
    assert!(debug::install_dump_signal(0).is_err());
    debug::install_dump_signal(libc::SIGUSR1).unwrap();
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    let (tx, rx) = spindle::channel::bounded::<u32>(0);
    let h = rt.spawn(move || parked_in_a_function_with_a_distinct_name(rx));
    let id = h.thread().id();
    // Until the thread is parked.
    while !debug::threads()
        .iter()
        .any(|t| t.id == id && t.state.wait_reason() == Some(WaitReason::ChannelRecv))
    {
        std::thread::yield_now();
    }
    let mut stderr = common::StderrToPipe::new();
    // SAFETY: raising a signal whose handler is installed above.
    unsafe { libc::raise(libc::SIGUSR1) };
    let dump = common::read_until_dump_end(stderr.reader.as_mut().unwrap());
    drop(stderr);
    println!("{dump}");
    tx.send(1).unwrap();
    assert_eq!(h.join().unwrap(), 2);
    println!("child still runs");
}

/// A dump taken from a green thread with a small stack: symbolizing runs on the worker's
/// stack, not on the caller's 16 KiB (it overflowed there before).
#[test]
fn a_dump_from_a_green_thread_with_a_small_stack_does_not_overflow_it() {
    let rt = Runtime::builder()
        .model(Model::ManyToOne)
        .stack_size(16 * 1024)
        .build()
        .unwrap();
    rt.block_on(|| {
        let (tx, rx) = spindle::channel::bounded::<u32>(0);
        let h = spindle::spawn(move || parked_in_a_function_with_a_distinct_name(rx));
        let id = h.thread().id();
        wait_for_listing(&[id], |l| {
            l.get(&id).and_then(reason_of) == Some(WaitReason::ChannelRecv)
        });
        let text = debug::dump_text();
        assert!(
            text.contains("parked_in_a_function_with_a_distinct_name"),
            "{text}"
        );
        tx.send(1).unwrap();
        assert_eq!(h.join().unwrap(), 2);
    });
}
