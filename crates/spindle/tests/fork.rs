//! fork(): what a child process may do with the runtimes it inherited (`spindle::process`,
//! "fork()"). Each test runs itself again in a child process, under a deadline, so the
//! fork happens in a process of known shape and a hang fails the test; that process forks
//! and reports on stdout what its own children saw.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use spindle::{Model, Runtime};

const CHILD_ENV: &str = "SPINDLE_TEST_FORK_CHILD";

fn playing_the_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Runs `f`, which must fail in a fork child, and prints how it failed: the panic message,
/// or the error `f` returned.
fn refused<T, E: std::fmt::Display>(what: &str, f: impl FnOnce() -> Result<T, E>) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(_)) => println!("child: {what}: NOT refused"),
        Ok(Err(e)) => println!("child: {what}: refused: {e}"),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            println!("child: {what}: refused: {msg}");
        }
    }
}

/// Forks; returns the child's pid in the parent and 0 in the child.
fn fork() -> libc::pid_t {
    // SAFETY: fork has no memory-safety preconditions; the child below only uses spindle
    // (whose fork handlers ran) and std's printing and exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    pid
}

/// 1,000 green threads on a runtime built here, joined and summed.
fn thousand_threads_on_a_new_runtime(model: Model) -> u64 {
    let rt = Runtime::builder()
        .model(model)
        .build()
        .expect("a new runtime");
    rt.block_on(|| {
        let hs: Vec<_> = (0..1000u64)
            .map(|i| {
                spindle::spawn(move || {
                    spindle::yield_now();
                    i
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// Lines of `out` that a child or the parent printed.
fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that `stdout` has the line for `what` refused with the inherited-runtime message,
/// naming what was refused (`names`).
fn assert_refused(stdout: &str, what: &str, names: &str) {
    let prefix = format!("child: {what}: refused: ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no refusal reported for {what}; stdout:\n{stdout}"));
    for words in [names, "inherited", "fork", "exec", "build a new Runtime"] {
        assert!(
            line.contains(words),
            "{what}: the message lacks {words:?}: {line}"
        );
    }
}

const SPINNERS: usize = 10_000;

#[test]
fn fork_from_a_green_thread_while_ten_thousand_run() {
    if playing_the_child() {
        return fork_from_a_green_thread();
    }
    let out = common::rerun_in_child("fork_from_a_green_thread_while_ten_thousand_run", CHILD_ENV);
    let stdout = stdout_of(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The first child: every use of the inherited runtime failed at once, with the message.
    for (what, names) in [
        (
            "spindle::spawn",
            "cannot spawn a thread from the green thread",
        ),
        ("yield_now", "cannot yield"),
        ("channel recv", "on the green thread that called fork()"),
        ("wait_readable", "cannot wait for I/O"),
        ("unblock", "cannot unblock"),
        (
            "Runtime::spawn",
            "cannot spawn a green thread on this runtime",
        ),
    ] {
        assert_refused(&stdout, what, names);
    }
    assert!(
        stdout.contains("child: 200 socket reads that found data all worked"),
        "{stdout}"
    );
    assert!(
        stdout.contains("child: a read after a short read found its data"),
        "{stdout}"
    );
    assert!(
        stdout.contains("child: try_recv, current() and local! work"),
        "{stdout}"
    );
    assert!(
        stdout.contains("parent: failing child exited with status 101"),
        "{stdout}"
    );
    assert!(
        stderr.contains("the green thread that called fork() panicked in the child process"),
        "{stderr}"
    );
    // The second child: a new runtime ran 1,000 green threads, and the green thread's return
    // ended the child with status 0.
    assert!(
        stdout.contains("child: a new runtime ran 1000 threads, sum 499500"),
        "{stdout}"
    );
    assert!(
        stdout.contains("parent: new-runtime child exited with status 0"),
        "{stdout}"
    );
    // The parent: unaffected.
    let sum = (0..SPINNERS).sum::<usize>();
    assert!(
        stdout.contains(&format!("parent: {SPINNERS} threads finished, sum {sum}")),
        "{stdout}"
    );
}

spindle::local! {
    static LOCAL_MARK: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// The child process of the test above: 10,000 green threads yield in a loop on a
/// many-to-many runtime while two green threads fork.
fn fork_from_a_green_thread() {
    let rt = Arc::new(
        Runtime::builder()
            .model(Model::ManyToMany { workers: 2 })
            .build()
            .unwrap(),
    );
    let for_children = rt.clone();
    let sum = rt.block_on(move || {
        let started = Arc::new(AtomicUsize::new(0));
        let released = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..SPINNERS)
            .map(|i| {
                let (started, released) = (started.clone(), released.clone());
                spindle::spawn(move || {
                    started.fetch_add(1, SeqCst);
                    while !released.load(SeqCst) {
                        spindle::yield_now();
                    }
                    i
                })
            })
            .collect();
        while started.load(SeqCst) < SPINNERS {
            spindle::yield_now();
        }

        // A channel nobody sends on, and a socket nobody writes: waits that can only fail.
        let (_tx, rx) = spindle::channel::unbounded::<u32>();
        let (quiet_end, _other_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut near, mut far) = spindle::net::unix::UnixStream::pair().unwrap();
        let rt = for_children.clone();
        let failing = spindle::spawn(move || {
            LOCAL_MARK.with(|m| m.set(7));
            let pid = fork();
            if pid != 0 {
                return pid;
            }
            refused("spindle::spawn", || Ok::<_, String>(spindle::spawn(|| ())));
            refused("yield_now", || {
                spindle::yield_now();
                Ok::<_, String>(())
            });
            refused("channel recv", || rx.recv());
            refused("wait_readable", || spindle::io::wait_readable(&quiet_end));
            refused("unblock", || Ok::<_, String>(spindle::unblock(|| 1)));
            refused("Runtime::spawn", || Ok::<_, String>(rt.spawn(|| ())));
            // Socket calls that need not wait work, past the 128 calls after which a green
            // thread would yield to its worker.
            use std::io::{Read, Write};
            let mut byte = [0u8; 1];
            let found = (0..200u8)
                .filter(|&i| {
                    near.write_all(&[i]).is_ok()
                        && far.read_exact(&mut byte).is_ok()
                        && byte[0] == i
                })
                .count();
            if found == 200 {
                println!("child: 200 socket reads that found data all worked");
            }
            // A read after a short read waits first (net/stream_state.rs); here that wait
            // fails, and the read must still find the queued data rather than report it.
            let mut buf = [0u8; 8];
            let short = near.write_all(b"abc").is_ok() && far.read(&mut buf).ok() == Some(3);
            let after = near.write_all(b"def").is_ok() && far.read(&mut buf).ok() == Some(3);
            if short && after && &buf[..3] == b"def" {
                println!("child: a read after a short read found its data");
            }
            if rx.try_recv().is_err()
                && spindle::current().is_green()
                && LOCAL_MARK.with(|m| m.get()) == 7
            {
                println!("child: try_recv, current() and local! work");
            }
            // Uncaught: the child ends with status 101, never back in the worker's copy.
            spindle::sleep(std::time::Duration::from_millis(1));
            unreachable!("sleep on the inherited green thread returned")
        });
        let new_runtime = spindle::spawn(|| {
            let pid = fork();
            if pid != 0 {
                return pid;
            }
            let sum = thousand_threads_on_a_new_runtime(Model::ManyToMany { workers: 2 });
            println!("child: a new runtime ran 1000 threads, sum {sum}");
            0 // The green thread returns: the child exits with status 0.
        });
        let failing = failing.join().unwrap();
        let new_runtime = new_runtime.join().unwrap();
        released.store(true, SeqCst);
        let sum: usize = spinners.into_iter().map(|h| h.join().unwrap()).sum();
        for (what, pid) in [("failing", failing), ("new-runtime", new_runtime)] {
            let how = spindle::unblock(move || common::reap(pid));
            println!("parent: {what} child {how}");
        }
        sum
    });
    println!("parent: {SPINNERS} threads finished, sum {sum}");
}

#[test]
fn fork_from_a_kernel_thread_while_a_runtime_runs() {
    if playing_the_child() {
        return fork_from_a_kernel_thread();
    }
    let out = common::rerun_in_child("fork_from_a_kernel_thread_while_a_runtime_runs", CHILD_ENV);
    let stdout = stdout_of(&out);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (what, names) in [
        (
            "Runtime::spawn",
            "cannot spawn a green thread on this runtime",
        ),
        (
            "Runtime::block_on",
            "cannot spawn a green thread on this runtime",
        ),
        ("Runtime::stall_events", "cannot read the stall events"),
        (
            "one-to-one Runtime::spawn",
            "cannot spawn a thread on this one-to-one runtime",
        ),
        ("join of a thread of the parent", "cannot join thread"),
        (
            "a scope of the parent",
            "cannot wait for the threads of a scope",
        ),
    ] {
        assert_refused(&stdout, what, names);
    }
    assert!(
        stdout.contains("parent: unblock's child exited with status 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("child: the job that forked ran to its end"),
        "{stdout}"
    );
    assert!(
        stdout.contains("child: dropped the inherited runtimes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("child: a new runtime ran 1000 threads, sum 499500"),
        "{stdout}"
    );
    assert!(
        stdout.contains("parent: child exited with status 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("parent: the parked thread finished with 5"),
        "{stdout}"
    );
}

/// The child process of the test above: a plain kernel thread forks while a green thread of
/// a many-to-many runtime is parked.
fn fork_from_a_kernel_thread() {
    let rt = Runtime::builder()
        .model(Model::ManyToMany { workers: 2 })
        .build()
        .unwrap();
    let one_to_one = Runtime::builder().model(Model::OneToOne).build().unwrap();
    let (go_tx, go_rx) = spindle::channel::bounded::<()>(0);
    let (ready_tx, ready_rx) = spindle::channel::bounded::<()>(1);
    let parked = rt.spawn(move || {
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        5
    });
    ready_rx.recv().unwrap();
    let pid = fork();
    if pid == 0 {
        refused("Runtime::spawn", || Ok::<_, String>(rt.spawn(|| ())));
        refused("Runtime::block_on", || Ok::<_, String>(rt.block_on(|| 1)));
        refused("Runtime::stall_events", || {
            Ok::<_, String>(rt.stall_events())
        });
        refused("one-to-one Runtime::spawn", || {
            Ok::<_, String>(one_to_one.spawn(|| ()))
        });
        refused("join of a thread of the parent", || {
            parked.join().map_err(|_| "it panicked".to_string())
        });
        drop(rt);
        drop(one_to_one);
        println!("child: dropped the inherited runtimes");
        let sum = thousand_threads_on_a_new_runtime(Model::ManyToOne);
        println!("child: a new runtime ran 1000 threads, sum {sum}");
        std::process::exit(0);
    }
    println!("parent: child {}", common::reap(pid));
    go_tx.send(()).unwrap();
    println!(
        "parent: the parked thread finished with {}",
        parked.join().unwrap()
    );

    // A scope whose thread runs in the parent: the child, leaving the scope, would wait
    // for a thread it does not have.
    let (scoped_go_tx, scoped_go_rx) = spindle::channel::bounded::<()>(0);
    let mut in_child = false;
    let left_scope = catch_unwind(AssertUnwindSafe(|| {
        spindle::scope(|s| {
            s.spawn(|| scoped_go_rx.recv().unwrap());
            let pid = fork();
            if pid == 0 {
                in_child = true;
            } else {
                scoped_go_tx.send(()).unwrap();
            }
            pid
        })
    }));
    if in_child {
        refused("a scope of the parent", || {
            std::panic::resume_unwind(left_scope.expect_err("the scope was refused"))
                as Result<(), String>
        });
        std::process::exit(0);
    }
    println!("parent: scope child {}", common::reap(left_scope.unwrap()));

    // A job of the helper pool that forks: its child ends when the job does.
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    let pid = rt.block_on(|| {
        spindle::unblock(|| {
            let pid = fork();
            if pid == 0 {
                println!("child: the job that forked ran to its end");
            }
            pid
        })
    });
    println!("parent: unblock's child {}", common::reap(pid));
}
