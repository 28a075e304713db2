//! When every green thread of a runtime is asleep for good: the monitor's warning with a
//! dump, `panic_when_all_asleep`, and no report while a timer, I/O, a helper-pool call or
//! an unused runtime could explain the sleep.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use spindle::{Model, Runtime};

/// A grace period short enough for tests.
const GRACE: Duration = Duration::from_millis(100);

/// How long the "nothing to report" cases keep their threads waiting: several graces.
const WAIT: Duration = Duration::from_millis(400);

fn panicking_runtime(model: Model) -> Runtime {
    Runtime::builder()
        .model(model)
        .report_all_asleep(Some(GRACE))
        .panic_when_all_asleep(true)
        .build()
        .unwrap()
}

#[inline(never)]
fn waits_for_a_message_nobody_sends(rx: spindle::channel::Receiver<u32>) -> u32 {
    rx.recv().unwrap_or(0) + 1
}

/// The message of the all-asleep panic that `result` must be; `what` names the case.
fn all_asleep_panic<T>(result: std::thread::Result<T>, what: &dyn std::fmt::Display) -> String {
    let Err(payload) = result else {
        panic!("{what}: block_on must panic, not return");
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| "<not a string>".into());
    assert!(
        message.contains("all green threads are asleep"),
        "{what}: {message}"
    );
    message
}

#[test]
fn block_on_panics_with_the_dump_and_the_threads_are_unwound() {
    for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
        let rt = panicking_runtime(model);
        let unwound = Arc::new(AtomicBool::new(false));
        let u = unwound.clone();
        let result = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(move || {
                struct SetOnDrop(Arc<AtomicBool>);
                impl Drop for SetOnDrop {
                    fn drop(&mut self) {
                        self.0.store(true, SeqCst);
                    }
                }
                let _guard = SetOnDrop(u);
                let (tx, rx) = spindle::channel::unbounded::<u32>();
                let child = spindle::thread::Builder::new()
                    .name("forgotten".into())
                    .spawn(move || waits_for_a_message_nobody_sends(rx))
                    .unwrap();
                let v = child.join();
                drop(tx);
                v
            })
        }));
        let message = all_asleep_panic(result, &model);
        assert!(
            message.contains("\"forgotten\" [channel recv]"),
            "{model}: {message}"
        );
        assert!(message.contains("[join]"), "{model}: {message}");
        assert!(
            message.contains("waits_for_a_message_nobody_sends"),
            "{model}: the dump has backtraces: {message}"
        );
        assert!(unwound.load(SeqCst), "{model}: the root's destructors ran");
    }
}

#[test]
fn waits_that_something_will_end_are_not_reported() {
    for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
        let rt = panicking_runtime(model);
        // A sleep: its timer will end it.
        rt.block_on(|| spindle::sleep(WAIT));
        // A wait with a timeout.
        rt.block_on(|| {
            let (_tx, rx) = spindle::channel::bounded::<u32>(0);
            assert!(rx.recv_timeout(WAIT).is_err());
        });
        // I/O: a connection from outside will end the accept.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = std::thread::spawn(move || {
            std::thread::sleep(WAIT);
            loop {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return;
                }
                std::thread::yield_now();
            }
        });
        rt.block_on(|| {
            let l = spindle::net::TcpListener::bind(addr).unwrap();
            l.accept().unwrap();
        });
        client.join().unwrap();
        // A helper-pool call in progress.
        rt.block_on(|| spindle::unblock(|| std::thread::sleep(WAIT)));
        // The runtime still works: nothing shut it down.
        assert_eq!(rt.block_on(|| 7), 7);
    }
}

/// A park with a long timeout that an unpark ended early leaves its timer in the worker's
/// heap, where it would fire as a no-op. It must not count as a timer that will end the
/// sleep: the threads asleep for good afterwards are reported at once (that stale timer
/// used to keep the report away until its deadline, an hour here).
#[test]
fn a_park_timeout_ended_early_does_not_hide_threads_asleep_for_good() {
    for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // On a thread of its own, so that a runtime that never reports fails the test
        // instead of hanging it.
        std::thread::spawn(move || {
            let rt = panicking_runtime(model);
            let result = catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(|| {
                    let (tx, rx) = spindle::channel::unbounded::<u32>();
                    let child = spindle::spawn(move || {
                        spindle::park_timeout(Duration::from_secs(3600));
                        waits_for_a_message_nobody_sends(rx)
                    });
                    common::wait_until_parked(child.thread().id(), spindle::WaitReason::Park);
                    child.thread().unpark();
                    let v = child.join();
                    drop(tx);
                    v
                })
            }));
            let _ = done_tx.send(result.map(|_| ()));
        });
        let result = done_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{model}: the threads asleep for good were not reported"));
        let message = all_asleep_panic(result, &model);
        assert!(
            message.contains("waits_for_a_message_nobody_sends"),
            "{model}: {message}"
        );
    }
}

/// A thread that migration left in a raw blocking call on its old kernel thread is not
/// asleep, though its worker sleeps on the new one.
#[test]
fn a_thread_away_on_a_migrated_worker_is_not_asleep() {
    // SAFETY: the closures below hold no borrow of std thread-local storage across a switch.
    let rt = unsafe {
        Runtime::builder()
            .model(Model::ManyToOne)
            .report_all_asleep(Some(GRACE))
            .panic_when_all_asleep(true)
            .stall_threshold(Duration::from_millis(5))
            .migrate_started_threads(true)
            .build()
            .unwrap()
    };
    let v = rt.block_on(|| {
        std::thread::sleep(WAIT);
        5
    });
    assert_eq!(v, 5);
}

/// Waits for another runtime, or for a kernel thread, are not this runtime's sleep.
#[test]
fn waiting_for_another_runtime_or_a_kernel_thread_is_not_asleep() {
    let rt = panicking_runtime(Model::ManyToOne);
    let other = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    let kernel = Runtime::builder().model(Model::OneToOne).build().unwrap();
    // A block_on of another runtime whose root holds its worker in a raw call.
    let v = rt.block_on(|| {
        other.block_on(|| {
            std::thread::sleep(WAIT);
            6
        })
    });
    assert_eq!(v, 6);
    // A join of a kernel thread.
    let v = rt.block_on(|| {
        kernel
            .spawn(|| {
                std::thread::sleep(WAIT);
                7
            })
            .join()
            .unwrap()
    });
    assert_eq!(v, 7);
}

#[test]
fn an_unused_runtime_is_not_asleep() {
    let rt = panicking_runtime(Model::ManyToOne);
    assert_eq!(rt.block_on(|| 1), 1);
    // No green thread at all for many grace periods.
    std::thread::sleep(WAIT);
    assert_eq!(rt.block_on(|| 2), 2);
}

/// The warning (no panic): printed to stderr with the dump, and the program goes on once
/// a kernel thread outside the runtime wakes the thread. In a child process whose stderr
/// is a pipe the child reads itself: the thread outside is the one that reads the warning.
#[test]
fn the_warning_is_printed_and_the_runtime_goes_on() {
    const CHILD: &str = "SPINDLE_TEST_ALL_ASLEEP_WARNING_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return warning_child();
    }
    let out = common::rerun_in_child("the_warning_is_printed_and_the_runtime_goes_on", CHILD);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all green threads are asleep"), "{stdout}");
    assert!(stdout.contains("[channel recv]"), "{stdout}");
    assert!(stdout.contains("woken from outside: 42"), "{stdout}");
}

fn warning_child() {
    let mut stderr = common::StderrToPipe::new();
    let mut reader = stderr.reader.take().unwrap();
    let rt = Runtime::builder()
        .model(Model::ManyToOne)
        .report_all_asleep(Some(GRACE))
        .build()
        .unwrap();
    let (tx, rx) = spindle::channel::unbounded::<u32>();
    let waker = std::thread::spawn(move || {
        let warning = common::read_until_dump_end(&mut reader);
        tx.send(41).unwrap();
        warning
    });
    let v = rt.block_on(move || waits_for_a_message_nobody_sends(rx));
    let warning = waker.join().unwrap();
    drop(stderr);
    println!("{warning}");
    println!("woken from outside: {v}");
}

/// A socket registered with its worker's reactor (its first read waited) and then left
/// alone is no I/O anyone waits for: it must not hide the sleep, on either backend.
#[test]
fn a_registered_socket_nobody_waits_on_does_not_hide_the_sleep() {
    use spindle::io::IoBackend;
    use spindle::net::unix::UnixStream;
    use std::io::{Read, Write};
    // A missed report is a hang.
    let _watchdog = common::Watchdog::new("registered_socket_asleep", Duration::from_secs(60));
    for backend in [IoBackend::Epoll, IoBackend::IoUring] {
        for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
            let Ok(rt) = Runtime::builder()
                .model(model)
                .io_backend(backend)
                .report_all_asleep(Some(GRACE))
                .panic_when_all_asleep(true)
                .build()
            else {
                eprintln!("{backend:?} unavailable: skipped");
                continue;
            };
            let result = catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(|| {
                    let (a, b) = UnixStream::pair().unwrap();
                    let reader = spindle::spawn(move || {
                        let mut byte = [0u8; 1];
                        (&a).read_exact(&mut byte).unwrap();
                        a
                    });
                    // Its read waits (and registers the socket) before the byte comes.
                    let id = reader.thread().id();
                    while !spindle::debug::threads().iter().any(|t| {
                        t.id == id && t.state.wait_reason() == Some(spindle::WaitReason::UnixRead)
                    }) {
                        spindle::yield_now();
                    }
                    (&b).write_all(b"x").unwrap();
                    let _registered = reader.join().unwrap();
                    let (_tx, rx) = spindle::channel::unbounded::<u32>();
                    waits_for_a_message_nobody_sends(rx)
                })
            }));
            all_asleep_panic(result, &format!("{backend:?}, {model}"));
        }
    }
}
