//! `spindle::process`: children started without fork, waited for by parking only the green
//! thread, with piped streams as spindle I/O.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use spindle::process::{Command, Stdio};
use spindle::{Model, Runtime};

static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork() {
    FORKS.fetch_add(1, SeqCst);
}

/// Counts every fork() of this process from now on (the prepare handler runs in each).
fn count_forks() {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: the handler is an `extern "C"` function that only increments an atomic.
        let rc = unsafe { libc::pthread_atfork(Some(count_fork), None, None) };
        assert_eq!(rc, 0, "pthread_atfork failed");
    });
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

const CHILD_ENV: &str = "SPINDLE_TEST_PROCESS_CHILD";

/// 100 children at once in many-to-one, each with a green thread parked in
/// `wait_with_output` while a ticker green thread keeps ticking; none of it forks. Run in a
/// child process: a deadline turns a blocked worker into a failure, and no other test
/// forks there while the forks are counted.
#[test]
fn hundred_children_at_once_while_a_ticker_ticks() {
    if std::env::var_os(CHILD_ENV).is_none() {
        let out =
            common::rerun_in_child("hundred_children_at_once_while_a_ticker_ticks", CHILD_ENV);
        assert!(
            out.status.success(),
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    count_forks();
    let forks_before = FORKS.load(SeqCst);
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    rt.block_on(|| {
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (ticks, stop) = (ticks.clone(), stop.clone());
            spindle::spawn(move || {
                while !stop.load(SeqCst) {
                    spindle::sleep(std::time::Duration::from_millis(1));
                    ticks.fetch_add(1, SeqCst);
                }
            })
        };
        // Each child waits for a line on stdin, so all 100 are alive at once until released.
        let (stdins_tx, stdins_rx) = spindle::channel::unbounded();
        let waiters: Vec<_> = (0..100u32)
            .map(|i| {
                let stdins_tx = stdins_tx.clone();
                spindle::spawn(move || {
                    let mut child =
                        sh("read x; echo \"out $x\"; echo \"err $x\" >&2; exit $((x % 7))")
                            .stdin(Stdio::piped())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped())
                            .spawn()
                            .expect("spawn sh");
                    stdins_tx.send((i, child.stdin.take().unwrap())).unwrap();
                    drop(stdins_tx);
                    child.wait_with_output().expect("wait_with_output")
                })
            })
            .collect();
        drop(stdins_tx);
        let stdins: Vec<_> = stdins_rx.iter().collect();
        assert_eq!(stdins.len(), 100);
        // All 100 children are alive, waiting for their input, and every waiter has been
        // queued to run into its wait_with_output: the ticker must still get its worker.
        let seen = ticks.load(SeqCst);
        while ticks.load(SeqCst) < seen + 5 {
            spindle::yield_now();
        }
        for (i, mut stdin) in stdins {
            writeln!(stdin, "{i}").unwrap();
        }
        for (i, w) in waiters.into_iter().enumerate() {
            let out = w.join().unwrap();
            assert_eq!(out.status.code(), Some(i as i32 % 7), "child {i}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("out {i}\n"));
            assert_eq!(String::from_utf8_lossy(&out.stderr), format!("err {i}\n"));
        }
        stop.store(true, SeqCst);
        ticker.join().unwrap();
    });
    assert_eq!(
        FORKS.load(SeqCst),
        forks_before,
        "starting children forked the process (posix_spawn expected)"
    );
    // The counter does see a fork: std's Command with a pre_exec closure forks.
    use std::os::unix::process::CommandExt;
    let mut forking = std::process::Command::new("true");
    // SAFETY: the closure does nothing, which is async-signal-safe.
    unsafe { forking.pre_exec(|| Ok(())) };
    assert!(forking.status().unwrap().success());
    assert_eq!(
        FORKS.load(SeqCst),
        forks_before + 1,
        "the fork counter missed a fork"
    );
}

cross_model! {
    fn status_codes_and_captured_output(_model) {
        assert!(sh("exit 0").status().unwrap().success());
        assert_eq!(sh("exit 42").status().unwrap().code(), Some(42));
        let out = sh("printf 'a\\nb'; printf oops >&2").output().unwrap();
        assert_eq!(out.stdout, b"a\nb");
        assert_eq!(out.stderr, b"oops");
        // output() gives the child no stdin: a read sees end of file at once.
        let out = sh("cat; echo done").output().unwrap();
        assert_eq!(out.stdout, b"done\n");
    }

    fn environment_and_working_directory(_model) {
        let out = sh("echo \"$A-$B-${HOME:-unset}\"")
            .env("A", "1")
            .envs([("B", "2")])
            .env_remove("HOME")
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"1-2-unset\n");
        // A cleared environment: the program is still found (in execvp's default PATH), and
        // the child sees only what was set.
        let out = Command::new("env").env_clear().env("ONLY", "this").output().unwrap();
        assert_eq!(out.stdout, b"ONLY=this\n");
        let dir = std::env::temp_dir();
        let out = Command::new("pwd").current_dir(&dir).output().unwrap();
        assert_eq!(
            std::path::Path::new(String::from_utf8_lossy(&out.stdout).trim()).canonicalize().unwrap(),
            dir.canonicalize().unwrap()
        );
    }

    fn a_program_that_does_not_exist_is_an_error(_model) {
        let e = Command::new("spindle-no-such-program").status().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let e = Command::new("spindle-no-such-program").env("PATH", "/nonexistent").spawn().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("spindle-no-such-program"), "{e}");
    }

    fn a_megabyte_through_cat_both_ways_at_once(_model) {
        // More than a pipe holds in each direction: the writer and the reader must run at
        // the same time, each parking while its pipe is full or empty.
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let expected = data.clone();
        let got = spindle::scope(|s| {
            s.spawn(move || stdin.write_all(&data).unwrap());
            let mut got = Vec::new();
            stdout.read_to_end(&mut got).unwrap();
            got
        });
        assert!(got == expected, "cat gave back {} bytes, not the same", got.len());
        assert!(child.wait().unwrap().success());
        // A second wait gives the same status.
        assert!(child.wait().unwrap().success());
    }

    fn kill_then_wait_reports_the_signal(_model) {
        use std::os::unix::process::ExitStatusExt;
        let mut child = sh("exec sleep 30").spawn().unwrap();
        assert!(child.try_wait().unwrap().is_none());
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    fn one_child_piped_into_another(_model) {
        let mut first = sh("echo one; echo two").stdout(Stdio::piped()).spawn().unwrap();
        let pipe = Stdio::try_from(first.stdout.take().unwrap()).unwrap();
        let out = Command::new("wc").arg("-l").stdin(pipe).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
        assert!(first.wait().unwrap().success());
    }
}
