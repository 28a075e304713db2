//! Shared helpers for the integration tests: the cross-model macro.

#![allow(dead_code)]

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use spindle::{Model, Runtime};

/// Every model a behaviour test runs under.
pub const MODELS: [Model; 3] = [
    Model::ManyToOne,
    Model::OneToOne,
    Model::ManyToMany { workers: 2 },
];

/// Builds a runtime for `model` and runs `f` as its first thread.
pub fn run<T: Send>(model: Model, f: impl FnOnce() -> T + Send) -> T {
    let rt = Runtime::builder()
        .model(model)
        .build()
        .unwrap_or_else(|e| panic!("cannot build a {model} runtime: {e}"));
    rt.block_on(f)
}

/// Whether the running test body is on a green thread (false in the one-to-one model).
pub fn on_green_thread() -> bool {
    spindle::current().is_green()
}

/// Defines one `#[test]` per model for each body: `cross_model! { fn name(model) { ... } }`.
/// The body runs as the runtime's first thread; `model` names the model it runs under.
#[macro_export]
macro_rules! cross_model {
    ($(fn $name:ident($model:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[test]
                fn many_to_one() {
                    let $model = spindle::Model::ManyToOne;
                    $crate::common::run($model, move || $body)
                }

                #[test]
                fn one_to_one() {
                    let $model = spindle::Model::OneToOne;
                    $crate::common::run($model, move || $body)
                }

                #[test]
                fn many_to_many() {
                    let $model = spindle::Model::ManyToMany { workers: 2 };
                    $crate::common::run($model, move || $body)
                }
            }
        )*
    };
}

/// How long a child test process may run before it counts as hung and is killed.
pub const CHILD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs the test `test_name` of the current test binary again in a child process, with the
/// environment variable `child_env` set so that the test knows to play the child, and
/// returns the child's status and output (for tests of what must crash or fork). A child
/// still running after [`CHILD_DEADLINE`] is killed, with every process it forked (it runs
/// in a process group of its own), and the test fails with its output, so a hang fails the
/// test instead of stalling the suite.
pub fn rerun_in_child(test_name: &str, child_env: &str) -> std::process::Output {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;

    let mut child =
        std::process::Command::new(std::env::current_exe().expect("the test binary's path"))
            .args(["--exact", test_name, "--nocapture"])
            .env(child_env, "1")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run the test binary as a child");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a positive pid");
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .expect("pidfd_open of the child test process");
    let deadline = std::time::Instant::now() + CHILD_DEADLINE;
    let exited = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break false;
        }
        let timeout = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => break true,
            Err(e) => panic!("poll on the child's pidfd: {e}"),
        }
    };
    if !exited {
        // The whole group: a forked grandchild that hangs holds the output pipes open.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let status = child.wait().expect("wait for the child test process");
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        exited,
        "child test {test_name} still ran after {CHILD_DEADLINE:?} (hung?) and was killed\n\
         --- its stdout:\n{}\n--- its stderr:\n{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// This process's stderr pointed at a pipe, for a child test that must read what spindle
/// writes there (a dump, a warning) before it goes on. Dropping it points stderr back.
pub struct StderrToPipe {
    saved: i32,
    /// The pipe's read end: what is written to stderr from now on.
    pub reader: Option<std::io::BufReader<std::fs::File>>,
}

impl StderrToPipe {
    pub fn new() -> StderrToPipe {
        use std::os::fd::AsRawFd;
        let (read, write) = rustix::pipe::pipe().expect("a pipe for stderr");
        // SAFETY: duplicating fd 2, which is open.
        let saved = unsafe { libc::dup(2) };
        assert!(saved >= 0, "dup(2) failed");
        // SAFETY: fd 2 becomes the pipe's write end until `drop` puts the saved one back.
        assert!(unsafe { libc::dup2(write.as_raw_fd(), 2) } >= 0);
        drop(write);
        StderrToPipe {
            saved,
            reader: Some(std::io::BufReader::new(std::fs::File::from(read))),
        }
    }
}

impl Drop for StderrToPipe {
    fn drop(&mut self) {
        // SAFETY: puts back the descriptor saved in `new`, then closes the copy.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
    }
}

/// Reads lines from `reader` up to and including the last line of a spindle dump
/// ("end of spindle dump"), or to the end of the stream.
pub fn read_until_dump_end(reader: &mut impl std::io::BufRead) -> String {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("reading a dump") == 0 {
            return text;
        }
        text.push_str(&line);
        if line.starts_with("end of spindle dump") {
            return text;
        }
    }
}

/// Ends the process with a message if dropped later than `limit` after it was made.
pub struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    pub fn new(test: &'static str, limit: Duration) -> Watchdog {
        let (done, finished) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
                // Not eprintln!: the test harness captures that, and exit loses it.
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: not finished after {limit:?}: a call spins or hangs"
                );
                std::process::exit(101);
            }
        });
        Watchdog(Some(done))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

/// Raises the limit on open descriptors to `needed`: the soft limit up to the hard one,
/// and the hard one too where the process may (root, or CAP_SYS_RESOURCE). Fails saying
/// what to do when neither is possible.
pub fn raise_nofile(needed: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|c| c >= needed) {
        return;
    }
    let maximum = limit.maximum.map(|m| m.max(needed));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(needed),
            maximum,
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "this test needs {needed} open descriptors; RLIMIT_NOFILE is {:?} (soft) and \
             {:?} (hard), and raising it failed: {e}. Raise the hard limit (ulimit -Hn) to \
             run it",
            limit.current, limit.maximum
        )
    });
}

/// Waits (sleeping 1 ms at a time) until thread `id` is parked for `reason`.
pub fn wait_until_parked(id: spindle::ThreadId, reason: spindle::WaitReason) {
    let start = std::time::Instant::now();
    loop {
        let parked = spindle::debug::threads()
            .iter()
            .any(|t| t.id == id && t.state.wait_reason() == Some(reason));
        if parked {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "thread {id:?} never parked for {reason:?}"
        );
        spindle::sleep(Duration::from_millis(1));
    }
}

/// Joins a kernel thread from a (possibly green) thread without blocking a many-to-one
/// worker: a std `join` there would stop every green thread, including ones the kernel
/// thread may be waiting for. Yields until the thread has finished, then joins.
pub fn join_kernel<T>(k: std::thread::JoinHandle<T>) -> T {
    while !k.is_finished() {
        spindle::yield_now();
    }
    k.join().unwrap()
}

/// Blocks until kernel thread `tid` of this process sleeps in a futex wait (its
/// `/proc/self/task/TID/wchan`), as a kernel thread parked on a spindle primitive does:
/// for waiters no runtime lists. Call it once the thread has said it is about to wait.
pub fn wait_until_in_futex_wait(tid: libc::pid_t) {
    let start = std::time::Instant::now();
    let path = format!("/proc/self/task/{tid}/wchan");
    loop {
        let wchan = std::fs::read_to_string(&path).unwrap_or_default();
        if wchan.contains("futex") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "kernel thread {tid} never waited in a futex (wchan {wchan:?})"
        );
        std::thread::yield_now();
    }
}

/// Yields until `cond` holds: synchronizes on an event, not on time.
pub fn wait_until(cond: impl Fn() -> bool) {
    while !cond() {
        spindle::yield_now();
    }
}

/// Waits for fork child `pid` (blocking the calling kernel thread) and describes how it
/// ended: "exited with status N", or the signal that killed it (SIGALRM: the child's own
/// alarm, which fork tests arm so that a hung child ends).
pub fn reap(pid: libc::pid_t) -> String {
    let mut status = 0;
    // SAFETY: a valid pointer to an int; `pid` is our child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WTERMSIG(status) == libc::SIGALRM {
        "hung: killed by SIGALRM, its alarm".to_string()
    } else {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    }
}
