//! Adversarial tests of `spindle::process`, of what `fork()` leaves defined in a child
//! process, and of the debug dumps (`spindle::debug`) taken while everything around them
//! changes.
//!
//! **Processes.** Megabytes on stdout and stderr at once (`output` must read both while the
//! child fills them), output read only after the child has exited, a child that never reads
//! its stdin nor writes its stdout (writer, reader and waiter parked at once, listed with
//! their wait reasons and descriptors, released by a kill), two writers parked on one
//! stdin, hundreds of children started and waited for from many green threads, more
//! process waits at once on one worker than the io_uring submission queue holds, children
//! that must inherit no descriptor but their three streams, a dropped `Child` (neither
//! killed nor reaped, as std), a runtime dropped under process and pipe waits,
//! `kill`/`try_wait`/`wait` after reaping against std, `PATH` lookups against std, `output`
//! from a kernel thread outside any runtime, and waits with `SIGCHLD` ignored (documented:
//! `ECHILD`).
//!
//! **fork().** Every fork happens in a child process of this test binary (the
//! `child_process_entry` test, run again through `common::rerun_in_child` with a scenario
//! named by an environment variable), and each fork child arms `alarm` so that a hang ends
//! it with `SIGALRM` instead of stalling the suite. Covered: a fork from a kernel thread
//! while a spindle `Mutex` is held and green threads wait on a pipe and a process, and one
//! from a green thread; in the child, the held lock (`try_lock`), dropping the inherited
//! runtime, new runtimes on both reactor backends doing pipe, process, file, helper-pool
//! and timer work, `Command` from the inherited green thread, and dumps that list only the
//! child's runtimes; in the parent afterwards, the parked threads still get their events.
//! Then what "waking a parent's thread does nothing" must mean for a mutex (also with a
//! parent's waiter woken and not yet back at the fork), a semaphore, an `RwLock`, a
//! condvar, a channel and a select; `Command::output` in the child of a one-to-one thread,
//! and the dump signal across a fork.
//!
//! **Dumps.** Threads parked at a dozen known places must be listed exactly once, with their
//! exact wait reason, descriptor and worker, in every dump taken while other threads are
//! spawned, finish, ping-pong and yield in many-to-many, from a kernel thread outside any
//! runtime and from green threads of two runtimes; the same while migration keeps moving
//! workers to new kernel threads, and a thread that migration left running; threads not
//! started yet; backtraces of threads parked right above their guard page; dumps while
//! runtimes are built and dropped; dumps from the destructor of a thread that its runtime's
//! drop unwinds; the deadlines of one-to-one threads; and one-to-one threads that have
//! finished.
//!
//! Tests marked `#[ignore = "BUG: ..."]` demonstrate a bug: run them with `--ignored`.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Watchdog;
use spindle::debug::{self, ThreadInfo, ThreadState};
use spindle::io::IoBackend;
use spindle::process::{Command, Stdio};
use spindle::{Model, Runtime, ThreadId, WaitReason};

/// Far beyond what any test here takes, loaded or not: past it the watchdog ends the
/// process.
const HANG: Duration = Duration::from_secs(120);

/// How long a test waits for threads to reach the states it set up.
const SETTLE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

/// The green models on every backend this machine can run.
fn green_runtimes() -> Vec<(String, Runtime)> {
    let mut all = Vec::new();
    for backend in [IoBackend::Epoll, IoBackend::IoUring] {
        for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
            match Runtime::builder().model(model).io_backend(backend).build() {
                Ok(rt) => all.push((format!("{model} on {backend:?}"), rt)),
                Err(e) if backend == IoBackend::IoUring => eprintln!("io_uring unavailable: {e}"),
                Err(e) => panic!("cannot build {model} on {backend:?}: {e}"),
            }
        }
    }
    all
}

/// A many-to-one runtime that does not report its threads all asleep (it would write a
/// dump of its own to stderr after 5 s).
fn quiet_runtime() -> Runtime {
    Runtime::builder()
        .model(Model::ManyToOne)
        .report_all_asleep(None)
        .build()
        .unwrap()
}

/// Runs `test` as the first thread of every green runtime of [`green_runtimes`], under a
/// watchdog.
fn on_green_runtimes(name: &'static str, test: impl Fn(&str) + Sync) {
    let _watchdog = Watchdog::new(name, HANG);
    for (label, rt) in green_runtimes() {
        rt.block_on(|| test(&label));
    }
}

/// The threads of `ids` in one listing (each at most once: asserted).
fn listing(ids: &[ThreadId]) -> HashMap<ThreadId, ThreadInfo> {
    let mut found = HashMap::new();
    for t in debug::threads().into_iter().filter(|t| ids.contains(&t.id)) {
        let id = t.id;
        assert!(found.insert(id, t).is_none(), "thread {id} listed twice");
    }
    found
}

/// Lists until `done` holds for the listing of `ids` (yielding or sleeping 1 ms in
/// between); fails with the last listing after [`SETTLE`].
fn wait_for_listing(
    ids: &[ThreadId],
    done: impl Fn(&HashMap<ThreadId, ThreadInfo>) -> bool,
) -> HashMap<ThreadId, ThreadInfo> {
    let start = Instant::now();
    loop {
        let listed = listing(ids);
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

/// Whether `t` waits for I/O on `fd` for `reason`.
fn io_wait_on(t: &ThreadInfo, reason: WaitReason, fd: i32) -> bool {
    matches!(t.state, ThreadState::Io { reason: r, fd: f, .. } if r == reason && f == fd)
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

/// Waits (yielding, or sleeping 1 ms on a kernel thread) until `h` has finished, for at
/// most `limit`; fails saying `what` if it has not.
fn join_within<T>(h: spindle::JoinHandle<T>, limit: Duration, what: &str) -> T {
    let start = Instant::now();
    while !h.is_finished() {
        assert!(
            start.elapsed() < limit,
            "{what}: not finished after {limit:?}"
        );
        if common::on_green_thread() {
            spindle::yield_now();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    h.join().unwrap()
}

/// The state letter of process `pid` in `/proc` (`Z` for a zombie), `None` once it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the comm may hold spaces and parentheses; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The descriptors open in process `pid`, with what each is.
fn open_fds(pid: u32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds
}

/// The descriptors of this process without close-on-exec (inherited from whoever started
/// it): a child may get those.
fn inheritable_fds_of_this_process() -> HashSet<i32> {
    std::fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let info = std::fs::read_to_string(e.path()).ok()?;
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?.trim();
            let flags = u32::from_str_radix(flags, 8).ok()?;
            (flags & libc::O_CLOEXEC as u32 == 0).then_some(fd)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Child processes of this test binary (for what forks or changes process-wide settings)
// ---------------------------------------------------------------------------------------

/// The scenarios that run in a child process of this test binary, each selected by its
/// own environment variable (see [`child_process_entry`]).
const SCENARIOS: &[(&str, fn())] = &[
    ("SPINDLE_ADV_PROC_SIGCHLD_IGNORED", sigchld_ignored_scenario),
    (
        "SPINDLE_ADV_PROC_FORK_KERNEL",
        fork_from_a_kernel_thread_scenario,
    ),
    (
        "SPINDLE_ADV_PROC_FORK_GREEN",
        fork_from_a_green_thread_scenario,
    ),
    ("SPINDLE_ADV_PROC_FORK_MUTEX", fork_mutex_release_scenario),
    ("SPINDLE_ADV_PROC_FORK_CHANNEL", fork_channel_send_scenario),
    (
        "SPINDLE_ADV_PROC_FORK_MUTEX_WOKEN",
        fork_mutex_woken_scenario,
    ),
    ("SPINDLE_ADV_PROC_FORK_SEMAPHORE", fork_semaphore_scenario),
    ("SPINDLE_ADV_PROC_FORK_NO_RUNTIME", fork_no_runtime_scenario),
    (
        "SPINDLE_ADV_PROC_FORK_SEMAPHORE_HEAD",
        fork_semaphore_head_scenario,
    ),
    ("SPINDLE_ADV_PROC_FORK_RWLOCK", fork_rwlock_scenario),
    ("SPINDLE_ADV_PROC_FORK_CONDVAR", fork_condvar_scenario),
    ("SPINDLE_ADV_PROC_FORK_SELECT", fork_select_scenario),
    (
        "SPINDLE_ADV_PROC_FORK_ONE_TO_ONE",
        fork_one_to_one_output_scenario,
    ),
    (
        "SPINDLE_ADV_PROC_FORK_DUMP_SIGNAL",
        fork_dump_signal_scenario,
    ),
    (
        "SPINDLE_ADV_PROC_DUMP_IN_DROP",
        dump_in_a_cancelled_destructor_scenario,
    ),
    (
        "SPINDLE_ADV_PROC_DUMPS_DURING_DROPS",
        dumps_while_runtimes_are_dropped_scenario,
    ),
    (
        "SPINDLE_ADV_PROC_DUMP_IN_DROP_MN",
        dump_in_a_cancelled_destructor_many_to_many_scenario,
    ),
    (
        "SPINDLE_ADV_PROC_CAPTURE_NEAR_GUARD",
        captures_near_the_guard_page_scenario,
    ),
];

/// Not a test of its own: in a child process started by [`run_in_child_process`] it runs
/// the scenario its environment names; in the ordinary run it does nothing.
#[test]
fn child_process_entry() {
    for (env, scenario) in SCENARIOS {
        if std::env::var_os(env).is_some() {
            return scenario();
        }
    }
}

/// Runs scenario `env` in a child process of this test binary and fails with its output
/// unless it succeeded.
fn run_in_child_process(env: &str) -> String {
    assert!(
        SCENARIOS.iter().any(|(e, _)| *e == env),
        "no scenario {env}"
    );
    let out = common::rerun_in_child("child_process_entry", env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "scenario {env} failed ({}):\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
        out.status
    );
    stdout
}

/// What a fork child prints when its body has run to the end.
const FORK_CHILD_DONE: &str = "fork child: body finished";

/// How long a fork child may run before `alarm` ends it (a hang is a failure).
const FORK_CHILD_LIMIT_SECS: u32 = 20;

/// Forks; the child runs `body` under an alarm and exits with 0, or 101 if it panicked
/// (the panic message is printed). Returns the child's pid in the parent.
fn fork_child(body: impl FnOnce()) -> libc::pid_t {
    // SAFETY: fork has no memory-safety preconditions; the child runs spindle (whose fork
    // handlers ran), std's printing and exit, which is what these tests are about.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: alarm only arms a timer; SIGALRM's default action ends the process.
        unsafe { libc::alarm(FORK_CHILD_LIMIT_SECS) };
        let ok = catch_unwind(AssertUnwindSafe(body)).is_ok();
        if ok {
            println!("{FORK_CHILD_DONE}");
        }
        std::process::exit(if ok { 0 } else { 101 });
    }
    pid
}

/// Reaps fork child `pid` and fails unless it exited with status 0.
fn assert_fork_child_ok(pid: libc::pid_t, what: &str) {
    let how = common::reap(pid);
    assert_eq!(how, "exited with status 0", "fork child ({what})");
}

// ---------------------------------------------------------------------------------------
// spindle::process
// ---------------------------------------------------------------------------------------

const TWO_MIB: usize = 2 << 20;

cross_model! {
    fn megabytes_on_stdout_and_stderr_at_once(_model) {
        // Both streams are written at the same time, each far past a pipe's capacity: a
        // parent that reads one before the other deadlocks with the child.
        let _watchdog = Watchdog::new("megabytes_on_stdout_and_stderr_at_once", HANG);
        let script = format!(
            "head -c {TWO_MIB} /dev/zero | tr '\\0' o & head -c {TWO_MIB} /dev/zero | tr '\\0' e >&2; wait"
        );
        let out = sh(&script).output().unwrap();
        assert!(out.status.success(), "{:?}", out.status);
        assert_eq!(out.stdout.len(), TWO_MIB);
        assert_eq!(out.stderr.len(), TWO_MIB);
        assert!(out.stdout.iter().all(|&b| b == b'o'));
        assert!(out.stderr.iter().all(|&b| b == b'e'));
    }

    fn output_is_read_after_the_child_has_exited(_model) {
        let _watchdog = Watchdog::new("output_is_read_after_the_child_has_exited", HANG);
        // 60,000 bytes fit in the pipe: the child exits without anyone reading, and what it
        // wrote must still be there, then end of file.
        let mut child = sh("head -c 60000 /dev/zero | tr '\\0' x; printf late >&2; exit 5")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(5));
        assert_eq!(child.try_wait().unwrap().map(|s| s.code()), Some(Some(5)));
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 60000);
        assert!(out.iter().all(|&b| b == b'x'));
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(err, "late");
        // And again: the same status, without waiting.
        assert_eq!(child.wait().unwrap().code(), Some(5));
    }

    fn dropping_a_child_neither_kills_nor_reaps_it(_model) {
        let _watchdog = Watchdog::new("dropping_a_child_neither_kills_nor_reaps_it", HANG);
        // As std: dropping the handle leaves the process running, and once it exits it stays
        // a zombie until someone reaps it.
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let pid = child.id();
        drop(child);
        let state = proc_state(pid).expect("the child is gone after its handle was dropped");
        assert_ne!(state, 'Z', "cat exited although its stdin is open");
        drop(stdin); // cat reads end of file and exits
        let start = Instant::now();
        while proc_state(pid) != Some('Z') {
            let state = proc_state(pid);
            assert!(start.elapsed() < SETTLE, "cat did not become a zombie: {state:?}");
            spindle::sleep(Duration::from_millis(1));
        }
        assert_eq!(common::reap(pid as i32), "exited with status 0");
    }

    fn kill_wait_and_try_wait_after_reaping_agree_with_std(_model) {
        let _watchdog = Watchdog::new("kill_wait_and_try_wait_after_reaping_agree_with_std", HANG);
        let mut ours = Command::new("true").spawn().unwrap();
        let mut std_child = std::process::Command::new("true").spawn().unwrap();
        assert!(ours.wait().unwrap().success());
        assert!(std_child.wait().unwrap().success());
        // After the reap: kill, try_wait and wait behave as std's.
        let (k1, k2) = (ours.kill(), std_child.kill());
        assert_eq!(k1.is_ok(), k2.is_ok(), "kill after reap: ours {k1:?}, std's {k2:?}");
        if let (Err(a), Err(b)) = (&k1, &k2) {
            assert_eq!(a.kind(), b.kind());
        }
        assert_eq!(ours.try_wait().unwrap().map(|s| s.code()), Some(Some(0)));
        assert!(ours.wait().unwrap().success());

        // A child killed twice before it is reaped (a zombie the second time): both work.
        let mut sleeper = sh("exec sleep 60").spawn().unwrap();
        sleeper.kill().unwrap();
        sleeper.kill().unwrap();
        assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
    }

    fn a_child_inherits_only_its_three_streams(_model) {
        let _watchdog = Watchdog::new("a_child_inherits_only_its_three_streams", HANG);
        // Everything spindle opened meanwhile (reactors, sockets, pidfds and pipes of other
        // children) must be close-on-exec.
        let listener = spindle::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = spindle::net::TcpStream::connect(addr).unwrap();
        let _pair = spindle::net::unix::UnixStream::pair().unwrap();
        let mut other = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // posix_spawn returns once the child has called exec, which may be before the
        // kernel has closed the close-on-exec descriptors: a line through each `cat` says
        // that it runs.
        for c in [&mut child, &mut other] {
            c.stdin.as_mut().unwrap().write_all(b"up\n").unwrap();
            let mut line = [0u8; 3];
            c.stdout.as_mut().unwrap().read_exact(&mut line).unwrap();
            assert_eq!(&line, b"up\n");
            let allowed = inheritable_fds_of_this_process();
            let fds = open_fds(c.id());
            assert!(
                fds.iter().all(|(fd, _)| *fd <= 2 || allowed.contains(fd)),
                "descriptors leaked into the child: {fds:?} (allowed: {allowed:?})"
            );
        }
        drop(child.stdin.take());
        drop(other.stdin.take());
        assert!(child.wait().unwrap().success());
        assert!(other.wait().unwrap().success());
    }

    fn wait_with_output_closes_a_piped_stdin(_model) {
        let _watchdog = Watchdog::new("wait_with_output_closes_a_piped_stdin", HANG);
        // As std: the parent's end of stdin is closed first, so `cat` sees end of input.
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.as_mut().unwrap().write_all(b"sent before the wait").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"sent before the wait");
        assert!(out.stderr.is_empty());
    }
}

/// A child that never reads its stdin and never writes its stdout: the writer, the reader
/// and the waiter all park, and the listing says where, on which descriptor; a kill from
/// another thread releases all three as std's calls would be released (`EPIPE`, end of
/// file, the signal).
#[test]
fn writer_reader_and_waiter_of_a_silent_child_park_and_a_kill_releases_them() {
    on_green_runtimes("silent child", |label| {
        let mut child = sh("exec sleep 600")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (in_fd, out_fd) = (stdin.as_raw_fd(), stdout.as_raw_fd());
        let writer = spawn_named("writer", move || stdin.write_all(&vec![7u8; 1 << 20]));
        let reader = spawn_named("reader", move || {
            let mut got = Vec::new();
            stdout.read_to_end(&mut got).map(|_| got.len())
        });
        let waiter = spawn_named("waiter", move || child.wait());
        let ids = [
            writer.thread().id(),
            reader.thread().id(),
            waiter.thread().id(),
        ];
        let listed = wait_for_listing(&ids, |l| {
            l.len() == 3
                && io_wait_on(&l[&ids[0]], WaitReason::PipeWrite, in_fd)
                && io_wait_on(&l[&ids[1]], WaitReason::PipeRead, out_fd)
                && l[&ids[2]].state.wait_reason() == Some(WaitReason::ProcessWait)
        });
        assert!(
            matches!(listed[&ids[2]].state, ThreadState::Io { fd, until: None, .. } if fd >= 0),
            "{label}: the waiter waits on its pidfd: {:?}",
            listed[&ids[2]].state
        );
        let text = debug::dump_text();
        for line in [
            format!("thread {} \"writer\" [pipe write, fd {in_fd}]", ids[0]),
            format!("thread {} \"reader\" [pipe read, fd {out_fd}]", ids[1]),
            format!("thread {} \"waiter\" [process wait, fd ", ids[2]),
        ] {
            assert!(text.contains(&line), "{label}: no {line:?} in\n{text}");
        }
        // SAFETY: sending a signal to our own child.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        let status = join_within(waiter, SETTLE, "waiter").unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{label}");
        let e = join_within(writer, SETTLE, "writer").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{label}: {e}");
        assert_eq!(join_within(reader, SETTLE, "reader").unwrap(), 0, "{label}");
    });
}

/// 64 green threads start three children each, feed each a line and collect its output
/// and status, beside a ticker that sleeps and ticks: every child's output must be its own,
/// and the ticker must have run meanwhile.
#[test]
fn hundreds_of_children_from_many_green_threads() {
    common::raise_nofile(4096);
    on_green_runtimes("hundreds of children", |label| {
        let ticks = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (ticks, stop) = (ticks.clone(), stop.clone());
            spindle::spawn(move || {
                while !stop.load(SeqCst) {
                    spindle::sleep(Duration::from_millis(1));
                    ticks.fetch_add(1, SeqCst);
                }
            })
        };
        let workers: Vec<_> = (0..64u32)
            .map(|t| {
                spindle::spawn(move || {
                    for k in 0..3u32 {
                        let n = t * 3 + k;
                        let mut child =
                            sh("read x; echo \"o$x\"; echo \"e$x\" >&2; exit $((x % 61))")
                                .stdin(Stdio::piped())
                                .stdout(Stdio::piped())
                                .stderr(Stdio::piped())
                                .spawn()
                                .expect("spawn sh");
                        writeln!(child.stdin.as_mut().unwrap(), "{n}").unwrap();
                        let out = child.wait_with_output().unwrap();
                        assert_eq!(out.status.code(), Some((n % 61) as i32), "child {n}");
                        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("o{n}\n"));
                        assert_eq!(String::from_utf8_lossy(&out.stderr), format!("e{n}\n"));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let seen = ticks.load(SeqCst);
        stop.store(true, SeqCst);
        ticker.join().unwrap();
        assert!(
            seen > 0,
            "{label}: the ticker never ran while children were waited for"
        );
    });
}

/// More children waited for at once on one worker than the io_uring submission queue has
/// entries (256): every wait must complete once the children exit.
#[test]
fn three_hundred_waits_at_once_on_one_worker() {
    common::raise_nofile(4096);
    const N: usize = 300;
    let _watchdog = Watchdog::new("three_hundred_waits_at_once_on_one_worker", HANG);
    for backend in [IoBackend::Epoll, IoBackend::IoUring] {
        let Ok(rt) = Runtime::builder()
            .model(Model::ManyToOne)
            .io_backend(backend)
            .build()
        else {
            continue;
        };
        rt.block_on(|| {
            let mut stdins = Vec::new();
            let waiters: Vec<_> = (0..N)
                .map(|_| {
                    let mut child = Command::new("cat")
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap();
                    stdins.push(child.stdin.take().unwrap());
                    spindle::spawn(move || child.wait().unwrap())
                })
                .collect();
            let ids: Vec<ThreadId> = waiters.iter().map(|w| w.thread().id()).collect();
            wait_for_listing(&ids, |l| {
                l.len() == N
                    && l.values()
                        .all(|t| t.state.wait_reason() == Some(WaitReason::ProcessWait))
            });
            drop(stdins);
            for w in waiters {
                assert!(join_within(w, SETTLE, "a waiter").success(), "{backend:?}");
            }
        });
    }
}

/// `output` from a plain kernel thread of no runtime: the pipes wait with poll(2).
#[test]
fn output_from_a_kernel_thread_outside_any_runtime() {
    let _watchdog = Watchdog::new("output_from_a_kernel_thread_outside_any_runtime", HANG);
    let out = std::thread::spawn(|| {
        sh("head -c 300000 /dev/zero & head -c 300000 /dev/zero >&2; wait; exit 9").output()
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(9));
    assert_eq!((out.stdout.len(), out.stderr.len()), (300000, 300000));
}

/// Two green threads write into one child's stdin at once (`Write for &ChildStdin`), both
/// parked on the full pipe before anyone reads: on one worker (many-to-one) the second
/// wait on the same descriptor takes the reactor's duplicate-descriptor path. Every byte of
/// both must come out of `cat`.
#[test]
fn two_writers_parked_on_one_stdin_both_finish() {
    const EACH: usize = 512 * 1024;
    on_green_runtimes("two writers on one stdin", |label| {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = Arc::new(child.stdin.take().unwrap());
        let in_fd = stdin.as_raw_fd();
        let mut stdout = child.stdout.take().unwrap();
        let writers: Vec<_> = [b'a', b'b']
            .into_iter()
            .map(|byte| {
                let stdin = stdin.clone();
                spindle::spawn(move || (&*stdin).write_all(&vec![byte; EACH]).unwrap())
            })
            .collect();
        let ids: Vec<ThreadId> = writers.iter().map(|w| w.thread().id()).collect();
        wait_for_listing(&ids, |l| {
            l.len() == 2
                && l.values()
                    .all(|t| io_wait_on(t, WaitReason::PipeWrite, in_fd))
        });
        let reader = spindle::spawn(move || {
            let mut counts = [0usize; 2];
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = stdout.read(&mut buf).unwrap();
                if n == 0 {
                    return counts;
                }
                for &b in &buf[..n] {
                    counts[usize::from(b == b'b')] += 1;
                }
            }
        });
        for w in writers {
            join_within(w, SETTLE, "a writer");
        }
        drop(Arc::into_inner(stdin).expect("the writers are done with stdin"));
        assert_eq!(
            join_within(reader, SETTLE, "the reader"),
            [EACH, EACH],
            "{label}"
        );
        assert!(child.wait().unwrap().success(), "{label}");
    });
}

/// A runtime dropped under threads parked in `Child::wait`, a pipe read and a pipe write
/// (io_uring requests in flight on that backend): the threads are cancelled, the child is
/// neither killed nor reaped (its `Child` is dropped, as std's would be), and it exits and
/// stays a zombie once its stdin closes.
#[test]
fn a_runtime_dropped_under_process_and_pipe_waits() {
    let _watchdog = Watchdog::new("a_runtime_dropped_under_process_and_pipe_waits", HANG);
    for backend in [IoBackend::Epoll, IoBackend::IoUring] {
        for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
            let Ok(rt) = Runtime::builder().model(model).io_backend(backend).build() else {
                continue;
            };
            let label = format!("{model} on {backend:?}");
            let mut child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let pid = child.id();
            let stdin = child.stdin.take().unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut silent = sh("exec sleep 600")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let mut silent_stdin = silent.stdin.take().unwrap();
            let waiter = rt.spawn(move || child.wait());
            let reader = rt.spawn(move || stdout.read(&mut [0u8; 16]));
            let writer = rt.spawn(move || silent_stdin.write_all(&vec![0u8; 1 << 20]));
            let ids = [
                waiter.thread().id(),
                reader.thread().id(),
                writer.thread().id(),
            ];
            wait_for_listing(&ids, |l| {
                l.len() == 3
                    && l[&ids[0]].state.wait_reason() == Some(WaitReason::ProcessWait)
                    && l[&ids[1]].state.wait_reason() == Some(WaitReason::PipeRead)
                    && l[&ids[2]].state.wait_reason() == Some(WaitReason::PipeWrite)
            });
            drop(rt);
            assert!(waiter.join().is_err(), "{label}: the waiter was cancelled");
            assert!(reader.join().is_err(), "{label}: the reader was cancelled");
            assert!(writer.join().is_err(), "{label}: the writer was cancelled");
            let state = proc_state(pid);
            assert!(
                state.is_some() && state != Some('Z'),
                "{label}: cat is {state:?}"
            );
            drop(stdin);
            let start = Instant::now();
            while proc_state(pid) != Some('Z') {
                assert!(start.elapsed() < SETTLE, "{label}: cat never exited");
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(common::reap(pid as i32), "exited with status 0", "{label}");
            silent.kill().unwrap();
            assert_eq!(
                silent.wait().unwrap().signal(),
                Some(libc::SIGKILL),
                "{label}"
            );
        }
    }
}

/// A program named without a `/` and a command `PATH` with a relative entry, plus a
/// working directory: std (which then execs with `execvp` in the child, after its `chdir`)
/// finds the program relative to the child's working directory, and so does spindle,
/// which looks the program up itself in the parent (it used to look from the parent's
/// working directory).
#[test]
fn a_relative_path_entry_is_searched_from_the_childs_directory_as_std() {
    let dir = std::env::temp_dir().join(format!("spindle-adv-proc-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let prog = dir.join("bin/spindle-adv-prog");
    std::fs::write(&prog, "#!/bin/sh\necho found-it\n").unwrap();
    std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let by_std = std::process::Command::new("spindle-adv-prog")
        .env("PATH", "bin")
        .current_dir(&dir)
        .output();
    let ours = common::run(Model::ManyToOne, || {
        Command::new("spindle-adv-prog")
            .env("PATH", "bin")
            .current_dir(&dir)
            .output()
    });
    let _ = std::fs::remove_dir_all(&dir);
    let by_std = by_std.expect("std finds the program");
    assert_eq!(by_std.stdout, b"found-it\n");
    let ours = ours.unwrap_or_else(|e| panic!("std found the program, spindle: {e}"));
    assert_eq!(ours.stdout, b"found-it\n");
}

/// With `SIGCHLD` ignored the kernel reaps children itself: waiting fails with `ECHILD`
/// (module docs, "Waiting"), for a child that is still running when waited for and for one
/// already gone; it must not hang nor spin.
#[test]
fn waits_with_sigchld_ignored_fail_with_echild() {
    run_in_child_process("SPINDLE_ADV_PROC_SIGCHLD_IGNORED");
}

fn sigchld_ignored_scenario() {
    // SAFETY: setting a signal's disposition to SIG_IGN; nothing else runs in this process.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    for (label, rt) in green_runtimes() {
        rt.block_on(|| {
            let mut running = Command::new("cat").stdin(Stdio::piped()).spawn().unwrap();
            let stdin = running.stdin.take().unwrap();
            let waiter = spindle::spawn(move || running.wait());
            common::wait_until_parked(waiter.thread().id(), WaitReason::ProcessWait);
            drop(stdin);
            let e = join_within(waiter, SETTLE, "waiter").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ECHILD), "{label}: {e}");

            let mut gone = Command::new("true").spawn().unwrap();
            let e = gone.wait().unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ECHILD), "{label}: {e}");
        });
    }
}

// ---------------------------------------------------------------------------------------
// fork()
// ---------------------------------------------------------------------------------------

/// Pipe and process I/O on new runtimes of every green model and backend, with a dump that
/// must list only the threads of runtimes built in this process (none inherited).
fn io_on_new_runtimes(inherited_ids: &[ThreadId]) {
    for (label, rt) in green_runtimes() {
        rt.block_on(|| {
            let data: Vec<u8> = (0..(1u32 << 20))
                .map(|i| (i * 31 + i / 257) as u8)
                .collect();
            let mut child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let expected = data.clone();
            let writer = spindle::spawn(move || stdin.write_all(&data).unwrap());
            let mut got = Vec::new();
            stdout.read_to_end(&mut got).unwrap();
            writer.join().unwrap();
            assert!(
                got == expected,
                "{label}: cat gave back {} bytes",
                got.len()
            );
            assert!(child.wait().unwrap().success(), "{label}");
            let out = sh("echo out; echo err >&2; exit 4").output().unwrap();
            assert_eq!(
                (out.stdout.as_slice(), out.stderr.as_slice()),
                (&b"out\n"[..], &b"err\n"[..])
            );
            assert_eq!(out.status.code(), Some(4));

            // Files (positioned calls: io_uring requests on that backend), the helper pool
            // and timers of the new runtime.
            let path = std::env::temp_dir().join(format!(
                "spindle-adv-proc-fork-{}-{}",
                std::process::id(),
                label.replace([' ', ':'], "-")
            ));
            let file = spindle::fs::File::create(&path).unwrap();
            file.write_all_at(b"written in the fork child", 0).unwrap();
            file.sync_all().unwrap();
            let mut back = [0u8; 25];
            spindle::fs::File::open(&path)
                .unwrap()
                .read_exact_at(&mut back, 0)
                .unwrap();
            assert_eq!(&back, b"written in the fork child", "{label}");
            spindle::fs::remove_file(&path).unwrap();
            assert_eq!(spindle::unblock(|| 6 * 7), 42);
            let before = Instant::now();
            spindle::sleep(Duration::from_millis(5));
            assert!(before.elapsed() >= Duration::from_millis(5));

            let (tx, rx) = spindle::channel::bounded::<u32>(0);
            let parked = spindle::spawn(move || rx.recv().unwrap());
            common::wait_until_parked(parked.thread().id(), WaitReason::ChannelRecv);
            let listed = debug::threads();
            assert!(
                listed.iter().any(|t| t.id == parked.thread().id()),
                "{label}"
            );
            for t in &listed {
                assert!(
                    !inherited_ids.contains(&t.id),
                    "{label}: inherited thread listed: {t:?}"
                );
            }
            tx.send(3).unwrap();
            assert_eq!(parked.join().unwrap(), 3);
        });
    }
}

/// Threads of a runtime parked on a pipe read and a process wait of a `cat` child, for a
/// fork to copy: [`ParkedOnPipe::release`] then checks that they still work in the parent.
struct ParkedOnPipe {
    ids: Vec<ThreadId>,
    stdin: spindle::process::ChildStdin,
    reader: spindle::JoinHandle<String>,
    waiter: spindle::JoinHandle<bool>,
}

impl ParkedOnPipe {
    fn new(rt: &Runtime) -> ParkedOnPipe {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = rt.spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).unwrap();
            s
        });
        let waiter = rt.spawn(move || child.wait().unwrap().success());
        let ids = vec![reader.thread().id(), waiter.thread().id()];
        common::wait_until_parked(ids[0], WaitReason::PipeRead);
        common::wait_until_parked(ids[1], WaitReason::ProcessWait);
        ParkedOnPipe {
            ids,
            stdin,
            reader,
            waiter,
        }
    }

    /// In the parent, after the fork child has ended: the reactor still delivers both
    /// events (the child touched none of it).
    fn release(mut self) {
        self.stdin.write_all(b"after the fork\n").unwrap();
        drop(self.stdin);
        assert_eq!(self.reader.join().unwrap(), "after the fork\n");
        assert!(self.waiter.join().unwrap());
    }
}

#[test]
fn fork_from_a_kernel_thread_while_a_mutex_is_held_and_threads_wait_on_pipes() {
    let stdout = run_in_child_process("SPINDLE_ADV_PROC_FORK_KERNEL");
    assert!(stdout.contains(FORK_CHILD_DONE), "{stdout}");
}

fn fork_from_a_kernel_thread_scenario() {
    let rt = Runtime::builder()
        .model(Model::ManyToMany { workers: 2 })
        .build()
        .unwrap();
    let parked = ParkedOnPipe::new(&rt);
    let ids = parked.ids.clone();
    // The inherited runtime, for the child to drop (documented to do nothing there).
    let inherited = std::cell::RefCell::new(Some(rt));
    let lock = Arc::new(spindle::sync::Mutex::new(5u32));
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            let _guard = lock.lock().unwrap();
            held_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        })
    };
    held_rx.recv().unwrap();
    let child = fork_child(|| {
        // Copied as it was: held by a thread this process does not have.
        assert!(matches!(
            lock.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        ));
        // A lock made here works.
        let fresh = spindle::sync::Mutex::new(1);
        *fresh.lock().unwrap() += 1;
        assert_eq!(*fresh.lock().unwrap(), 2);
        drop(inherited.borrow_mut().take());
        io_on_new_runtimes(&ids);
    });
    assert_fork_child_ok(child, "fork from a kernel thread");
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(*lock.lock().unwrap(), 5);
    // The parent's threads are unharmed: the ones the child inherited finish here.
    parked.release();
    drop(inherited);
}

#[test]
fn fork_from_a_green_thread_then_processes_io_and_dumps_in_the_child() {
    let stdout = run_in_child_process("SPINDLE_ADV_PROC_FORK_GREEN");
    assert!(stdout.contains(FORK_CHILD_DONE), "{stdout}");
}

fn fork_from_a_green_thread_scenario() {
    let rt = Runtime::builder()
        .model(Model::ManyToMany { workers: 2 })
        .build()
        .unwrap();
    let parked = ParkedOnPipe::new(&rt);
    let forker_ids = parked.ids.clone();
    let pid = rt.block_on(move || {
        spindle::spawn(move || {
            fork_child(move || {
                // On the inherited green thread: posix_spawn works, and so do the calls
                // that need not wait.
                let mut child = Command::new("cat")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                let stdin = child.stdin.take().unwrap();
                assert!(child.try_wait().unwrap().is_none());
                // Waiting would park: documented to fail with the inherited-runtime message.
                let e = child.wait().unwrap_err();
                assert!(e.to_string().contains("fork"), "{e}");
                // So would reading a child's output: an error as well, not a panic.
                let e = sh("echo out").output().unwrap_err();
                assert!(e.to_string().contains("fork"), "{e}");
                child.kill().unwrap();
                let start = Instant::now();
                let status = loop {
                    if let Some(s) = child.try_wait().unwrap() {
                        break s;
                    }
                    assert!(start.elapsed() < SETTLE, "the killed child never exited");
                    std::thread::yield_now();
                };
                assert_eq!(status.signal(), Some(libc::SIGKILL));
                drop(stdin);
                // Nothing inherited is listed, and a dump from here does not wait for the
                // worker that did not come along.
                let listed = debug::threads();
                assert!(listed.is_empty(), "inherited threads listed: {listed:#?}");
                // New runtimes work, their block_on called from this green thread.
                io_on_new_runtimes(&forker_ids);
                // A dump from this thread while a new runtime's thread is parked lists it
                // (spawned from inside a block_on, as the docs say to).
                let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
                let (tx, rx) = spindle::channel::bounded::<u32>(0);
                let parked = rt.block_on(move || spindle::spawn(move || rx.recv().unwrap()));
                let id = parked.thread().id();
                let start = Instant::now();
                while !debug::threads()
                    .iter()
                    .any(|t| t.id == id && t.state.wait_reason() == Some(WaitReason::ChannelRecv))
                {
                    assert!(start.elapsed() < SETTLE, "never listed as parked");
                    std::thread::yield_now();
                }
                tx.send(1).unwrap();
                assert_eq!(rt.block_on(move || parked.join().unwrap()), 1);
            })
        })
        .join()
        .unwrap()
    });
    assert_fork_child_ok(pid, "fork from a green thread");
    parked.release();
}

/// fork.rs, "Objects the parent's threads wait on": in the child, the parent's threads are
/// gone from every wait queue. The forking thread holds a spindle `Mutex` a green thread of
/// the parent waits for; the child unlocks it, then two of its own threads contend for it.
/// The unlock used to make the parent's (absent) waiter the `WOKEN` one (raw_mutex.rs),
/// and an unlock never wakes another waiter while a woken one is "on its way": the child's
/// waiter was never woken. std's futex mutex, copied the same way, just works.
#[test]
fn fork_child_unlocking_a_mutex_a_parent_thread_waits_for() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_MUTEX");
}

fn fork_mutex_release_scenario() {
    let lock = Arc::new(spindle::sync::Mutex::new(0u32));
    let guard = lock.lock().unwrap();
    let rt = quiet_runtime();
    let parent_waiter = {
        let lock = lock.clone();
        rt.spawn(move || *lock.lock().unwrap() += 1)
    };
    common::wait_until_parked(parent_waiter.thread().id(), WaitReason::MutexLock);
    let child = fork_child(|| {
        drop(guard);
        child_waiter_gets_the_mutex(&lock, "the child's waiter for the unlocked mutex");
    });
    // The parent's copy of the guard went with the closure: the parent's waiter gets in.
    let how = common::reap(child);
    join_within(parent_waiter, SETTLE, "the parent's waiter");
    assert_eq!(
        how, "exited with status 0",
        "the child's second waiter was stranded"
    );
}

/// Reaps fork child `child`, then lets the parent's waiter through (`release`) and joins
/// it, and only then asserts that the child exited with status 0 (so a failed child does
/// not leave the parent's thread waiting).
fn reap_then_join_the_parent_waiter<T>(
    child: libc::pid_t,
    release: impl FnOnce(),
    parent_waiter: spindle::JoinHandle<T>,
) -> T {
    let how = common::reap(child);
    release();
    let value = join_within(parent_waiter, SETTLE, "the parent's waiter");
    assert_eq!(how, "exited with status 0");
    value
}

/// In a fork child: a green thread of a new runtime queues for `lock` (which holds 0 and
/// is free) behind the child's own holder, and must get it when the holder lets go (`what`
/// names the waiter in the failure); the lock then holds 10.
fn child_waiter_gets_the_mutex(lock: &Arc<spindle::sync::Mutex<u32>>, what: &str) {
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    rt.block_on(|| {
        let held = lock.lock().unwrap();
        let contender = {
            let lock = lock.clone();
            spindle::spawn(move || *lock.lock().unwrap() += 10)
        };
        common::wait_until_parked(contender.thread().id(), WaitReason::MutexLock);
        drop(held);
        join_within(contender, Duration::from_secs(5), what);
    });
    assert_eq!(*lock.lock().unwrap(), 10);
}

/// A message sent in a fork child on an unbounded channel whose receiver in the parent is
/// parked: the child's `send` succeeds, and the message must then be in the channel for
/// the child's own `try_recv`, as with std's channels (which push it into the buffer and
/// only notify the parked receiver). spindle used to hand it straight to the parked
/// receiver, which does not exist in the child: the message was gone.
#[test]
fn fork_child_sends_on_a_channel_a_parent_thread_receives_from() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_CHANNEL");
}

fn fork_channel_send_scenario() {
    let (tx, rx) = spindle::channel::unbounded::<u32>();
    let rt = quiet_runtime();
    let parent_receiver = {
        let rx = rx.clone();
        rt.spawn(move || rx.recv().unwrap())
    };
    common::wait_until_parked(parent_receiver.thread().id(), WaitReason::ChannelRecv);
    let child = fork_child(|| {
        tx.send(42).unwrap();
        assert_eq!(
            rx.try_recv().ok(),
            Some(42),
            "the message sent in the child is lost"
        );
    });
    let how = common::reap(child);
    tx.send(1).unwrap();
    assert_eq!(
        join_within(parent_receiver, SETTLE, "the parent's receiver"),
        1
    );
    assert_eq!(how, "exited with status 0");
}

/// As [`fork_child_unlocking_a_mutex_a_parent_thread_waits_for`], with the wake-up in
/// flight at the fork: an unlock in the parent made a parent thread the `WOKEN` waiter
/// (raw_mutex.rs), and the fork came before that thread ran (its worker is kept busy). The
/// woken waiter never comes back in the child; the child's own waiters must still be woken
/// by the child's unlocks.
#[test]
fn fork_child_of_a_mutex_whose_woken_waiter_is_a_parent_thread() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_MUTEX_WOKEN");
}

fn fork_mutex_woken_scenario() {
    let lock = Arc::new(spindle::sync::Mutex::new(0u32));
    let guard = lock.lock().unwrap();
    let rt = quiet_runtime();
    let parent_waiter = {
        let lock = lock.clone();
        rt.spawn(move || *lock.lock().unwrap() += 1)
    };
    common::wait_until_parked(parent_waiter.thread().id(), WaitReason::MutexLock);
    // A green thread that computes without yielding holds the waiter's only worker, so the
    // waiter, once woken, stays queued behind it until after the fork.
    let spinning = Arc::new(AtomicBool::new(false));
    let hold = Arc::new(AtomicBool::new(true));
    let spinner = {
        let (spinning, hold) = (spinning.clone(), hold.clone());
        rt.spawn(move || {
            spinning.store(true, SeqCst);
            while hold.load(SeqCst) {
                std::hint::spin_loop();
            }
        })
    };
    while !spinning.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Pops the parent's waiter and makes it the woken one: it cannot run yet.
    drop(guard);
    let child = fork_child(|| {
        child_waiter_gets_the_mutex(
            &lock,
            "the child's waiter for a mutex whose woken waiter stayed in the parent",
        );
    });
    let how = common::reap(child);
    hold.store(false, SeqCst);
    join_within(spinner, SETTLE, "the parent's spinning thread");
    join_within(parent_waiter, SETTLE, "the parent's woken waiter");
    assert_eq!(*lock.lock().unwrap(), 1);
    assert_eq!(
        how, "exited with status 0",
        "the child's waiter was stranded behind the parent's woken one"
    );
}

/// A permit added in a fork child to a `Semaphore` a parent thread waits on: the parent's
/// waiter does not exist in the child, so the permit must stay in the semaphore (the
/// child's `try_acquire` gets it), and a later one must go to the child's own waiter.
#[test]
fn fork_child_adds_a_permit_to_a_semaphore_a_parent_thread_waits_on() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_SEMAPHORE");
}

fn fork_semaphore_scenario() {
    let sem = Arc::new(spindle::sync::Semaphore::new(0));
    let rt = quiet_runtime();
    let parent_waiter = {
        let sem = sem.clone();
        rt.spawn(move || sem.acquire().forget())
    };
    common::wait_until_parked(parent_waiter.thread().id(), WaitReason::SemaphoreAcquire);
    let child = fork_child(|| {
        sem.add_permits(1);
        let permit = sem.try_acquire();
        assert!(
            permit.is_some(),
            "the permit added in the child went to the parent's waiter"
        );
        permit.unwrap().forget();
        let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
        rt.block_on(|| {
            let waiter = {
                let sem = sem.clone();
                spindle::spawn(move || sem.acquire().forget())
            };
            common::wait_until_parked(waiter.thread().id(), WaitReason::SemaphoreAcquire);
            sem.add_permits(1);
            join_within(
                waiter,
                Duration::from_secs(5),
                "the child's waiter for the semaphore",
            );
        });
    });
    reap_then_join_the_parent_waiter(child, || sem.add_permits(1), parent_waiter);
}

/// As above, in a process that never built a runtime: the primitives serve plain kernel
/// threads too, and the child must know their waiters for the parent's all the same (the
/// fork handlers are registered when a waiter is first queued, not only by a runtime).
#[test]
fn fork_child_of_a_process_that_built_no_runtime() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_NO_RUNTIME");
}

fn fork_no_runtime_scenario() {
    let sem = Arc::new(spindle::sync::Semaphore::new(0));
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let parent_waiter = {
        let sem = sem.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            sem.acquire().forget();
        })
    };
    common::wait_until_in_futex_wait(tid_rx.recv().unwrap());
    let child = fork_child(|| {
        sem.add_permits(1);
        assert!(
            sem.try_acquire().is_some(),
            "no runtime was built: the permit added in the child went to the parent's waiter"
        );
    });
    let how = common::reap(child);
    sem.add_permits(1);
    parent_waiter.join().unwrap();
    assert_eq!(how, "exited with status 0");
}

/// A parent thread's request for two permits waits at the head of a `Semaphore` with one
/// free (FIFO: nobody may take the free one past it). In the fork child that request is
/// gone, so the child's `acquire` of one permit must get the free one at once instead of
/// queuing behind a waiter that is not there (and waiting for a release that never comes).
#[test]
fn fork_child_takes_a_free_permit_a_parent_threads_request_held_back() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_SEMAPHORE_HEAD");
}

fn fork_semaphore_head_scenario() {
    let sem = Arc::new(spindle::sync::Semaphore::new(1));
    let rt = quiet_runtime();
    let parent_waiter = {
        let sem = sem.clone();
        rt.spawn(move || sem.acquire_many(2).forget())
    };
    common::wait_until_parked(parent_waiter.thread().id(), WaitReason::SemaphoreAcquire);
    let child = fork_child(|| {
        let permit = sem.acquire_timeout(Duration::from_secs(5));
        assert!(
            permit.is_some(),
            "the child's request queued behind the parent's waiter"
        );
    });
    reap_then_join_the_parent_waiter(child, || sem.add_permits(1), parent_waiter);
}

/// The forking thread holds a spindle `RwLock` for writing that a parent thread waits to
/// read; the child releases it. The lock must then be free in the child (not handed to
/// the parent's absent reader), and the child's own waiters served.
#[test]
fn fork_child_releasing_an_rwlock_a_parent_thread_waits_for() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_RWLOCK");
}

fn fork_rwlock_scenario() {
    let lock = Arc::new(spindle::sync::RwLock::new(0u32));
    let guard = lock.write().unwrap();
    let rt = quiet_runtime();
    let parent_reader = {
        let lock = lock.clone();
        rt.spawn(move || *lock.read().unwrap())
    };
    common::wait_until_parked(parent_reader.thread().id(), WaitReason::RwLockRead);
    let child = fork_child(|| {
        drop(guard);
        let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
        rt.block_on(|| {
            let mut held = lock
                .try_write()
                .expect("the lock released in the child went to the parent's reader");
            *held = 5;
            let reader = {
                let lock = lock.clone();
                spindle::spawn(move || *lock.read().unwrap())
            };
            common::wait_until_parked(reader.thread().id(), WaitReason::RwLockRead);
            drop(held);
            let seen = join_within(
                reader,
                Duration::from_secs(5),
                "the child's reader of the released lock",
            );
            assert_eq!(seen, 5);
        });
    });
    let how = common::reap(child);
    // The parent's copy of the guard went with the closure: the parent's reader gets in.
    assert_eq!(join_within(parent_reader, SETTLE, "the parent's reader"), 0);
    assert_eq!(how, "exited with status 0");
}

/// A parent thread waits on a spindle `Condvar`; in the fork child a thread of the child
/// waits on it too, and the child notifies one. The notify must reach the child's waiter,
/// not the parent's (absent) one, which would also leave the mutex with a woken waiter that
/// never comes.
#[test]
fn fork_child_notifying_a_condvar_a_parent_thread_waits_on() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_CONDVAR");
}

fn fork_condvar_scenario() {
    let pair = Arc::new((
        spindle::sync::Mutex::new(false),
        spindle::sync::Condvar::new(),
    ));
    let wait_for_flag = |pair: Arc<(spindle::sync::Mutex<bool>, spindle::sync::Condvar)>| {
        move || {
            let (flag, cv) = &*pair;
            drop(cv.wait_while(flag.lock().unwrap(), |set| !*set).unwrap());
        }
    };
    let rt = quiet_runtime();
    let parent_waiter = rt.spawn(wait_for_flag(pair.clone()));
    common::wait_until_parked(parent_waiter.thread().id(), WaitReason::CondvarWait);
    let child = fork_child(|| {
        let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
        rt.block_on(|| {
            let waiter = spindle::spawn(wait_for_flag(pair.clone()));
            common::wait_until_parked(waiter.thread().id(), WaitReason::CondvarWait);
            *pair.0.lock().unwrap() = true;
            pair.1.notify_one();
            join_within(
                waiter,
                Duration::from_secs(5),
                "the child's waiter on the condvar",
            );
        });
    });
    reap_then_join_the_parent_waiter(
        child,
        || {
            *pair.0.lock().unwrap() = true;
            pair.1.notify_one();
        },
        parent_waiter,
    );
}

/// As [`fork_child_sends_on_a_channel_a_parent_thread_receives_from`], with the parent's
/// receiver blocked in a `select!` over two channels: the message sent in the child must
/// stay in the channel for the child.
#[test]
fn fork_child_sends_on_a_channel_a_parent_select_waits_on() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_SELECT");
}

fn fork_select_scenario() {
    let (tx1, rx1) = spindle::channel::unbounded::<u32>();
    let (tx2, rx2) = spindle::channel::unbounded::<u32>();
    let rt = quiet_runtime();
    let parent_selector = {
        let (rx1, rx2) = (rx1.clone(), rx2.clone());
        rt.spawn(move || {
            spindle::select! {
                recv(rx1) -> m => m.unwrap(),
                recv(rx2) -> m => m.unwrap() + 100,
            }
        })
    };
    common::wait_until_parked(parent_selector.thread().id(), WaitReason::ChannelSelect);
    let child = fork_child(|| {
        tx1.send(7).unwrap();
        assert_eq!(
            rx1.try_recv().ok(),
            Some(7),
            "the message sent in the child went to the parent's select"
        );
    });
    let how = common::reap(child);
    tx2.send(1).unwrap();
    assert_eq!(
        join_within(parent_selector, SETTLE, "the parent's select"),
        101
    );
    assert_eq!(how, "exited with status 0");
}

/// The module docs send a fork child that wants to run a program to `Command` ("the way
/// that never forks"), and the thread that forked goes on as a kernel thread. From a
/// thread of a one-to-one runtime, `output()` used to spawn a helper thread to read stderr
/// (`Child::wait_with_output`), onto the inherited runtime, which refused: the child
/// panicked instead of getting the output. A kernel thread now reads both pipes itself,
/// polling them, as std does.
#[test]
fn command_output_in_the_fork_child_of_a_one_to_one_thread() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_ONE_TO_ONE");
}

fn fork_one_to_one_output_scenario() {
    let rt = Runtime::builder().model(Model::OneToOne).build().unwrap();
    let child = rt.block_on(|| {
        fork_child(|| {
            assert!(sh("exit 0").status().unwrap().success());
            let out = sh("echo out; echo err >&2").output().unwrap();
            assert_eq!(out.stdout, b"out\n");
            assert_eq!(out.stderr, b"err\n");
        })
    });
    assert_fork_child_ok(child, "Command::output in the child");
}

/// The dump signal across a fork: the child inherits the handler and the pipe but not the
/// reader thread, and calling `install_dump_signal` again in the child starts its own. It
/// used to start it on the *same* pipe, shared with the parent's reader, which was blocked
/// in `read` first: the child's signal woke the parent's reader (pipe readers wake in FIFO
/// order), so the parent dumped and the child never did. The child now gets a pipe of its
/// own (signal.rs, "Across fork()").
#[test]
fn the_dump_signal_of_a_fork_child_dumps_the_child() {
    run_in_child_process("SPINDLE_ADV_PROC_FORK_DUMP_SIGNAL");
}

fn fork_dump_signal_scenario() {
    debug::install_dump_signal(libc::SIGUSR2).unwrap();
    let rt = quiet_runtime();
    let (tx, rx) = spindle::channel::bounded::<u32>(0);
    let parked = rt.spawn(move || rx.recv().unwrap());
    common::wait_until_parked(parked.thread().id(), WaitReason::ChannelRecv);
    // One dump here first: the parent's reader thread is then blocked in its read.
    let mut parent_err = common::StderrToPipe::new();
    // SAFETY: raising a signal whose handler is installed above.
    unsafe { libc::raise(libc::SIGUSR2) };
    let first = common::read_until_dump_end(parent_err.reader.as_mut().unwrap());
    assert!(first.contains("[channel recv]"), "{first}");
    let child = fork_child(|| {
        let mut own_err = common::StderrToPipe::new();
        debug::install_dump_signal(libc::SIGUSR2).unwrap();
        let rt = quiet_runtime();
        let (tx, rx) = spindle::channel::bounded::<u32>(0);
        let h = rt.spawn(move || rx.recv().is_ok());
        common::wait_until_parked(h.thread().id(), WaitReason::ChannelRecv);
        let reader = own_err.reader.take().unwrap();
        // Read the dump on a thread of its own, so that a missing one is a bounded wait.
        let (got_tx, got_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = reader;
            let _ = got_tx.send(common::read_until_dump_end(&mut reader));
        });
        // SAFETY: raising a signal whose handler is installed above.
        unsafe { libc::raise(libc::SIGUSR2) };
        let dump = got_rx.recv_timeout(Duration::from_secs(5));
        drop(own_err); // stderr back, for the messages below
        let dump = dump.expect("the child's signal gave the child no dump");
        assert!(
            dump.contains(&format!("thread {}", h.thread().id())),
            "{dump}"
        );
        tx.send(1).unwrap();
        h.join().unwrap();
    });
    let how = common::reap(child);
    // What reached this process's stderr meanwhile: the child's messages (it inherited
    // the pipe), and a dump if this process answered the child's signal.
    let mut reader = parent_err.reader.take().unwrap();
    drop(parent_err);
    let mut meanwhile = String::new();
    reader.read_to_string(&mut meanwhile).unwrap();
    println!("this process's stderr while the child ran:\n{meanwhile}");
    tx.send(0).unwrap();
    parked.join().unwrap();
    assert!(
        !meanwhile.contains("end of spindle dump"),
        "the parent wrote a dump for the child's signal:\n{meanwhile}"
    );
    assert_eq!(how, "exited with status 0", "{meanwhile}");
}

// ---------------------------------------------------------------------------------------
// Dumps
// ---------------------------------------------------------------------------------------

/// Where each stable thread of [`dumps_under_a_storm_list_parked_threads_exactly`] waits.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Reason(WaitReason),
    Io(WaitReason, i32),
    Sleeping,
}

impl Expect {
    fn holds(self, t: &ThreadInfo) -> bool {
        match self {
            Expect::Reason(r) => {
                matches!(t.state, ThreadState::Parked { reason, .. } if reason == r)
                    || (r == WaitReason::Unblock && t.state == ThreadState::Unblock)
            }
            Expect::Io(r, fd) => io_wait_on(t, r, fd),
            Expect::Sleeping => matches!(t.state, ThreadState::Sleeping { until }
                if until > Instant::now() + Duration::from_secs(1800)),
        }
    }
}

/// Checks one listing against the stable threads: each exactly once, where expected, on
/// the worker first seen; no id twice; no green thread of a runtime without migration
/// shown running (a worker answers from its scheduler code, so none of its threads runs).
fn check_listing(
    listed: &[ThreadInfo],
    stable: &[(ThreadId, Expect)],
    workers: &mut HashMap<ThreadId, Option<usize>>,
    who: &str,
    migrating: bool,
) {
    let mut seen = HashSet::new();
    for t in listed {
        assert!(seen.insert(t.id), "{who}: thread {} listed twice", t.id);
    }
    let by_id: HashMap<ThreadId, &ThreadInfo> = listed.iter().map(|t| (t.id, t)).collect();
    if let Some(first) = stable
        .first()
        .and_then(|s| by_id.get(&s.0))
        .filter(|_| !migrating)
    {
        for t in listed.iter().filter(|t| t.runtime == first.runtime) {
            assert_ne!(
                t.state,
                ThreadState::Running,
                "{who}: a green thread listed running: {t:?}"
            );
        }
    }
    for &(id, expect) in stable {
        let t = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("{who}: stable thread {id} ({expect:?}) not listed"));
        assert!(
            expect.holds(t),
            "{who}: thread {id} expected {expect:?}, listed {t:?}"
        );
        let first = *workers.entry(id).or_insert(t.worker);
        assert!(t.worker.is_some(), "{who}: {t:?}");
        assert_eq!(t.worker, first, "{who}: thread {id} changed worker");
    }
}

/// A dozen threads parked at known places, listed again and again while threads are
/// spawned and finish, ping-pong, yield and join around them in many-to-many (with a
/// many-to-one runtime beside it), from a kernel thread outside any runtime and from green
/// threads of both runtimes, some of the dumps with backtraces.
#[test]
fn dumps_under_a_storm_list_parked_threads_exactly() {
    let _watchdog = Watchdog::new("dumps_under_a_storm_list_parked_threads_exactly", HANG);
    const DUMPS: usize = 60;
    let rt = Runtime::builder()
        .model(Model::ManyToMany { workers: 2 })
        .build()
        .unwrap();
    let side = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    rt.block_on(|| {
        let (recv_tx, recv_rx) = spindle::channel::bounded::<u32>(0);
        let lock = Arc::new(spindle::sync::Mutex::new(()));
        let held = lock.lock().unwrap();
        let pair = Arc::new((
            spindle::sync::Mutex::new(false),
            spindle::sync::Condvar::new(),
        ));
        let sem = Arc::new(spindle::sync::Semaphore::new(0));
        let barrier = Arc::new(spindle::sync::Barrier::new(2));
        let rw = Arc::new(spindle::sync::RwLock::new(()));
        let read_guard = rw.read().unwrap();
        let (unblock_tx, unblock_rx) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(AtomicBool::new(false));
        let mut cat = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let cat_stdin = cat.stdin.take().unwrap();
        let mut cat_out = cat.stdout.take().unwrap();
        let out_fd = cat_out.as_raw_fd();

        let receiver = spawn_named("recv", move || recv_rx.recv().unwrap());
        let receiver_id = receiver.thread().id();
        let locker = {
            let lock = lock.clone();
            spawn_named("lock", move || drop(lock.lock().unwrap()))
        };
        let waiter = {
            let pair = pair.clone();
            spawn_named("condvar", move || {
                let mut ready = pair.0.lock().unwrap();
                while !*ready {
                    ready = pair.1.wait(ready).unwrap();
                }
            })
        };
        let acquirer = {
            let sem = sem.clone();
            spawn_named("sem", move || drop(sem.acquire()))
        };
        let at_barrier = {
            let barrier = barrier.clone();
            spawn_named("barrier", move || {
                barrier.wait();
            })
        };
        let writer = {
            let rw = rw.clone();
            spawn_named("rwlock", move || drop(rw.write().unwrap()))
        };
        let helped = spawn_named("unblock", move || {
            spindle::unblock(move || unblock_rx.recv())
        });
        let parker = {
            let released = released.clone();
            spawn_named("park", move || {
                while !released.load(SeqCst) {
                    spindle::park();
                }
            })
        };
        let sleeper = spawn_named("sleep", || spindle::sleep(Duration::from_secs(3600)));
        let pipe_reader = spawn_named("pipe", move || {
            let mut s = String::new();
            cat_out.read_to_string(&mut s).unwrap();
            s
        });
        let process_waiter = spawn_named("process", move || cat.wait().unwrap().success());
        let joiner = spawn_named("join", move || receiver.join().unwrap());

        let stable: Vec<(ThreadId, Expect)> = vec![
            (receiver_id, Expect::Reason(WaitReason::ChannelRecv)),
            (locker.thread().id(), Expect::Reason(WaitReason::MutexLock)),
            (
                waiter.thread().id(),
                Expect::Reason(WaitReason::CondvarWait),
            ),
            (
                acquirer.thread().id(),
                Expect::Reason(WaitReason::SemaphoreAcquire),
            ),
            (
                at_barrier.thread().id(),
                Expect::Reason(WaitReason::BarrierWait),
            ),
            (
                writer.thread().id(),
                Expect::Reason(WaitReason::RwLockWrite),
            ),
            (helped.thread().id(), Expect::Reason(WaitReason::Unblock)),
            (parker.thread().id(), Expect::Reason(WaitReason::Park)),
            (sleeper.thread().id(), Expect::Sleeping),
            (
                pipe_reader.thread().id(),
                Expect::Io(WaitReason::PipeRead, out_fd),
            ),
            (
                process_waiter.thread().id(),
                Expect::Reason(WaitReason::ProcessWait),
            ),
            (joiner.thread().id(), Expect::Reason(WaitReason::Join)),
        ];
        let process_id = process_waiter.thread().id();
        let ids: Vec<ThreadId> = stable.iter().map(|s| s.0).collect();
        let check_one = |t: &ThreadInfo| -> bool {
            let e = stable.iter().find(|s| s.0 == t.id).unwrap().1;
            // The process wait is on a pidfd whose number is not known here.
            if t.id == process_id {
                return t.state.wait_reason() == Some(WaitReason::ProcessWait)
                    && matches!(t.state, ThreadState::Io { fd, .. } if fd >= 0);
            }
            e.holds(t)
        };
        wait_for_listing(&ids, |l| l.len() == ids.len() && l.values().all(check_one));
        let stable: Vec<(ThreadId, Expect)> = stable
            .into_iter()
            .map(|(id, e)| {
                if id == process_id {
                    let fd = match listing(&[id])[&id].state {
                        ThreadState::Io { fd, .. } => fd,
                        other => panic!("{other:?}"),
                    };
                    (id, Expect::Io(WaitReason::ProcessWait, fd))
                } else {
                    (id, e)
                }
            })
            .collect();
        let stable = Arc::new(stable);

        // The storm.
        let stop = Arc::new(AtomicBool::new(false));
        let mut storm = Vec::new();
        for s in 0..4 {
            let stop = stop.clone();
            storm.push(spindle::spawn(move || {
                // Spawners: batches of short threads, joined; after each join, the thread
                // must be gone from the listing now and then (checked below by one of them).
                let mut rounds = 0u64;
                while !stop.load(SeqCst) {
                    let batch: Vec<_> = (0..16)
                        .map(|i| {
                            spindle::spawn(move || {
                                if i % 2 == 0 {
                                    spindle::yield_now();
                                }
                                i
                            })
                        })
                        .collect();
                    let last = batch.last().unwrap().thread().id();
                    let sum: u64 = batch.into_iter().map(|h| h.join().unwrap()).sum();
                    assert_eq!(sum, 120);
                    rounds += 1;
                    if s == 0 && rounds % 8 == 0 {
                        assert!(
                            !debug::threads().iter().any(|t| t.id == last),
                            "a joined thread is still listed"
                        );
                    }
                }
                rounds
            }));
        }
        for _ in 0..2 {
            // Ping-pong pairs: every message exactly once, in order.
            let stop = stop.clone();
            storm.push(spindle::spawn(move || {
                let (a_tx, a_rx) = spindle::channel::bounded::<u64>(0);
                let (b_tx, b_rx) = spindle::channel::bounded::<u64>(0);
                let echo = spindle::spawn(move || {
                    let mut n = 0;
                    while let Ok(v) = a_rx.recv() {
                        assert_eq!(v, n);
                        n += 1;
                        b_tx.send(v).unwrap();
                    }
                    n
                });
                let mut n = 0;
                while !stop.load(SeqCst) {
                    a_tx.send(n).unwrap();
                    assert_eq!(b_rx.recv().unwrap(), n);
                    n += 1;
                }
                drop(a_tx);
                assert_eq!(echo.join().unwrap(), n);
                n
            }));
        }

        // The dumpers: a kernel thread outside any runtime, a green thread here, a green
        // thread of the many-to-one runtime.
        let kernel_dumper = {
            let stable = stable.clone();
            std::thread::spawn(move || {
                let mut workers = HashMap::new();
                for i in 0..DUMPS {
                    let listed = if i % 10 == 0 {
                        debug::snapshot().threads
                    } else {
                        debug::threads()
                    };
                    check_listing(&listed, &stable, &mut workers, "kernel-thread dump", false);
                }
            })
        };
        let green_dumper = {
            let stable = stable.clone();
            spindle::spawn(move || {
                let me = spindle::current().id();
                let mut workers = HashMap::new();
                for i in 0..DUMPS {
                    let listed = if i % 10 == 0 {
                        debug::snapshot().threads
                    } else {
                        debug::threads()
                    };
                    check_listing(&listed, &stable, &mut workers, "green dump", false);
                    // The requester itself: parked for the answers, or woken by one.
                    let own = listed
                        .iter()
                        .find(|t| t.id == me)
                        .expect("the requester is listed");
                    assert!(
                        own.state.wait_reason() == Some(WaitReason::DebugDump)
                            || matches!(own.state, ThreadState::Runnable { started: true }),
                        "the requester: {own:?}"
                    );
                }
            })
        };
        let side_dumper = {
            let stable = stable.clone();
            side.spawn(move || {
                let mut workers = HashMap::new();
                for _ in 0..DUMPS {
                    check_listing(
                        &debug::threads(),
                        &stable,
                        &mut workers,
                        "other runtime's dump",
                        false,
                    );
                    spindle::yield_now();
                }
            })
        };
        common::join_kernel(kernel_dumper);
        green_dumper.join().unwrap();
        while !side_dumper.is_finished() {
            spindle::yield_now();
        }
        side_dumper.join().unwrap();
        stop.store(true, SeqCst);
        for h in storm {
            assert!(h.join().unwrap() > 0);
        }

        // Release everyone, in an order that checks each was parked where it said.
        drop(held);
        locker.join().unwrap();
        *pair.0.lock().unwrap() = true;
        pair.1.notify_all();
        waiter.join().unwrap();
        sem.add_permits(1);
        acquirer.join().unwrap();
        barrier.wait();
        at_barrier.join().unwrap();
        drop(read_guard);
        writer.join().unwrap();
        unblock_tx.send(()).unwrap();
        assert!(helped.join().unwrap().is_ok());
        released.store(true, SeqCst);
        parker.thread().unpark();
        parker.join().unwrap();
        recv_tx.send(9).unwrap();
        assert_eq!(joiner.join().unwrap(), 9);
        drop(cat_stdin);
        assert_eq!(pipe_reader.join().unwrap(), "");
        assert!(process_waiter.join().unwrap());
        assert!(!sleeper.is_finished());
    });
}

/// With migration on, a green thread stuck in a raw blocking call keeps running on the old
/// kernel thread while its worker goes on elsewhere: the dump must not wait for it (the
/// worker answers from its new kernel thread) and lists the thread as running on it.
#[test]
fn a_dump_lists_a_thread_that_migration_left_running() {
    let _watchdog = Watchdog::new("a_dump_lists_a_thread_that_migration_left_running", HANG);
    // SAFETY: no green thread here holds a borrow of std thread-local storage across a
    // switch.
    let rt = unsafe {
        Runtime::builder()
            .model(Model::ManyToOne)
            .stall_threshold(Duration::from_millis(20))
            .migrate_started_threads(true)
    }
    .build()
    .unwrap();
    rt.block_on(|| {
        let (release, blocked_on) = std::sync::mpsc::channel::<()>();
        let started = Arc::new(AtomicBool::new(false));
        let stuck = {
            let started = started.clone();
            spawn_named("stuck", move || {
                started.store(true, SeqCst);
                // A raw std call: the kernel thread blocks with the green thread.
                blocked_on.recv().unwrap();
            })
        };
        let id = stuck.thread().id();
        // This thread runs again only once the stuck one ran and the worker moved on.
        common::wait_until(|| started.load(SeqCst));
        let start = Instant::now();
        let snap = debug::snapshot();
        let took = start.elapsed();
        let t = snap
            .threads
            .iter()
            .find(|t| t.id == id)
            .unwrap_or_else(|| panic!("the stuck thread is not listed: {snap:#?}"));
        assert_eq!(t.state, ThreadState::Running, "{t:?}");
        assert_eq!(t.worker, Some(0), "{t:?}");
        assert!(
            t.backtrace.is_none(),
            "a running thread cannot be walked: {t:?}"
        );
        let runtime = snap.runtimes.iter().find(|r| r.id == t.runtime).unwrap();
        assert!(runtime.workers.iter().all(|w| w.answered), "{runtime:?}");
        assert!(took < debug::ANSWER_TIMEOUT, "the dump waited {took:?}");
        release.send(()).unwrap();
        stuck.join().unwrap();
        // It comes back through the inbox and is retired.
        wait_for_listing(&[id], |l| l.is_empty());
    });
}

/// Green threads spawned onto a many-to-one runtime from another kernel thread while its
/// worker is held: a dump (which the worker answers after it has taken them from its inbox)
/// lists each once as runnable and not started, with no worker and no stack yet.
#[test]
fn threads_spawned_from_outside_and_not_started_are_listed_as_such() {
    let _watchdog = Watchdog::new("threads_not_started", HANG);
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    let spawned = std::sync::Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (rt, spawned, done) = (&rt, &spawned, &done);
        rt.block_on(|| {
            s.spawn(move || {
                let hs: Vec<_> = (0..50u32).map(|i| rt.spawn(move || i)).collect();
                *spawned.lock().unwrap() = hs;
                done.store(true, SeqCst);
            });
            // Hold the worker (no switch) until they are all queued.
            while !done.load(SeqCst) {
                std::hint::spin_loop();
            }
            let hs = std::mem::take(&mut *spawned.lock().unwrap());
            let ids: Vec<ThreadId> = hs.iter().map(|h| h.thread().id()).collect();
            let listed = listing(&ids);
            assert_eq!(listed.len(), ids.len(), "{listed:#?}");
            for t in listed.values() {
                assert_eq!(t.state, ThreadState::Runnable { started: false }, "{t:?}");
                assert_eq!((t.worker, t.stack_size, t.switches), (None, 0, 0), "{t:?}");
                assert!(t.green, "{t:?}");
            }
            let sum: u32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(sum, (0..50).sum());
        });
    });
}

/// Dumps from a kernel thread while a many-to-many runtime with migration keeps handing
/// its workers to new kernel threads (a green thread sleeps in raw `std::thread::sleep`
/// again and again): threads parked at known places are listed exactly, on the worker
/// they started on, and the migrating one as running or in its queue, never twice.
#[test]
fn dumps_while_workers_migrate_list_parked_threads_exactly() {
    let _watchdog = Watchdog::new("dumps_while_workers_migrate", HANG);
    // SAFETY: no green thread here holds a borrow of std thread-local storage across a
    // switch.
    let rt = unsafe {
        Runtime::builder()
            .model(Model::ManyToMany { workers: 2 })
            .stall_threshold(Duration::from_millis(5))
            .migrate_started_threads(true)
    }
    .build()
    .unwrap();
    rt.block_on(|| {
        let (tx, rx) = spindle::channel::bounded::<u32>(0);
        let lock = Arc::new(spindle::sync::Mutex::new(()));
        let held = lock.lock().unwrap();
        let receiver = spawn_named("recv", move || rx.recv().unwrap());
        let locker = {
            let lock = lock.clone();
            spawn_named("lock", move || drop(lock.lock().unwrap()))
        };
        let sleeper = spawn_named("sleep", || spindle::sleep(Duration::from_secs(3600)));
        let stable = vec![
            (
                receiver.thread().id(),
                Expect::Reason(WaitReason::ChannelRecv),
            ),
            (locker.thread().id(), Expect::Reason(WaitReason::MutexLock)),
            (sleeper.thread().id(), Expect::Sleeping),
        ];
        let ids: Vec<ThreadId> = stable.iter().map(|s| s.0).collect();
        wait_for_listing(&ids, |l| {
            l.len() == 3 && stable.iter().all(|&(id, e)| e.holds(&l[&id]))
        });
        let blocking = Arc::new(AtomicBool::new(true));
        let blocker = {
            let blocking = blocking.clone();
            spawn_named("blocker", move || {
                let mut rounds = 0;
                while blocking.load(SeqCst) || rounds < 5 {
                    std::thread::sleep(Duration::from_millis(20));
                    spindle::yield_now();
                    rounds += 1;
                }
                rounds
            })
        };
        let blocker_id = blocker.thread().id();
        let dumper = std::thread::spawn(move || {
            let mut workers = HashMap::new();
            let mut running_seen = 0;
            for i in 0..100 {
                let listed = if i % 10 == 0 {
                    debug::snapshot().threads
                } else {
                    debug::threads()
                };
                check_listing(&listed, &stable, &mut workers, "migrating", true);
                if let Some(b) = listed.iter().find(|t| t.id == blocker_id) {
                    running_seen += usize::from(b.state == ThreadState::Running);
                }
            }
            running_seen
        });
        let running_seen = common::join_kernel(dumper);
        blocking.store(false, SeqCst);
        assert!(blocker.join().unwrap() >= 5);
        println!("the blocker was listed running (away) in {running_seen} of 100 dumps");
        drop(held);
        locker.join().unwrap();
        tx.send(1).unwrap();
        assert_eq!(receiver.join().unwrap(), 1);
        assert!(!sleeper.is_finished());
    });
}

/// Dumps taken again and again from a kernel thread while runtimes of every model are
/// built, filled with parked and sleeping threads and dropped: no dump fails, lists a thread
/// twice or waits for a worker that is shutting down. In a child process, where no other
/// test's runtime can hold a worker.
#[test]
fn dumps_while_runtimes_are_dropped() {
    let stdout = run_in_child_process("SPINDLE_ADV_PROC_DUMPS_DURING_DROPS");
    assert!(stdout.contains("dumps taken:"), "{stdout}");
}

fn dumps_while_runtimes_are_dropped_scenario() {
    let stop = Arc::new(AtomicBool::new(false));
    let dumper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut count, mut slowest) = (0usize, Duration::ZERO);
            while !stop.load(SeqCst) {
                let start = Instant::now();
                let threads = if count % 4 == 0 {
                    debug::snapshot().threads
                } else {
                    debug::threads()
                };
                slowest = slowest.max(start.elapsed());
                let mut seen = HashSet::new();
                for t in &threads {
                    assert!(seen.insert(t.id), "thread {} listed twice", t.id);
                }
                count += 1;
            }
            (count, slowest)
        })
    };
    let models = [
        Model::ManyToOne,
        Model::ManyToMany { workers: 2 },
        Model::OneToOne,
    ];
    for round in 0..24 {
        let model = models[round % 3];
        let rt = Runtime::builder().model(model).build().unwrap();
        let (tx, rx) = spindle::channel::unbounded::<u32>();
        let green = model != Model::OneToOne;
        let parked: Vec<_> = (0..if green { 200 } else { 20 })
            .map(|i| {
                let rx = rx.clone();
                rt.spawn(move || {
                    if green && i % 4 == 0 {
                        spindle::sleep(Duration::from_secs(3600));
                    } else {
                        let _ = rx.recv();
                    }
                })
            })
            .collect();
        let ids: Vec<ThreadId> = parked.iter().map(|h| h.thread().id()).collect();
        let start = Instant::now();
        while listing(&ids)
            .values()
            .filter(|t| t.state.wait_reason().is_some())
            .count()
            < ids.len()
        {
            assert!(start.elapsed() < SETTLE, "threads never parked");
            std::thread::sleep(Duration::from_millis(1));
        }
        if green {
            drop(rt);
            for h in parked {
                assert!(h.join().is_err(), "cancelled threads report it");
            }
        } else {
            // Kernel threads are detached by the drop: they finish when the channel does.
            drop(rt);
            drop(tx);
            for h in parked {
                h.join().unwrap();
            }
        }
    }
    stop.store(true, SeqCst);
    let (count, slowest) = dumper.join().unwrap();
    println!("dumps taken: {count}, slowest {slowest:?}");
    assert!(count > 0);
    assert!(
        slowest < debug::ANSWER_TIMEOUT,
        "a dump waited {slowest:?} for a worker that was shutting down"
    );
}

/// A destructor that takes a dump (`debug::snapshot`), on a thread whose runtime's drop
/// unwinds it, with the results sent out.
struct DumpOnDrop(std::sync::mpsc::Sender<(debug::Snapshot, Duration)>);

impl Drop for DumpOnDrop {
    fn drop(&mut self) {
        let start = Instant::now();
        let snap = debug::snapshot();
        let _ = self.0.send((snap, start.elapsed()));
    }
}

/// Builds a runtime of `model` with threads parked for good, then the youngest one, whose
/// destructor dumps; drops the runtime and returns that dump and its duration. With
/// `spread`, the older threads are added until both workers have one.
fn dump_from_a_cancelled_destructor(model: Model, spread: bool) -> (debug::Snapshot, Duration) {
    let rt = Runtime::builder().model(model).build().unwrap();
    let (_keep, never) = spindle::channel::bounded::<u32>(0);
    let on_worker: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut siblings = Vec::new();
    while siblings.len() < 20
        || (spread && on_worker.iter().any(|n| n.load(SeqCst) == 0) && siblings.len() < 2000)
    {
        let (never, on_worker) = (never.clone(), on_worker.clone());
        let s = rt.spawn(move || {
            on_worker[spindle::runtime::worker_index().unwrap()].fetch_add(1, SeqCst);
            never.recv().unwrap()
        });
        common::wait_until_parked(s.thread().id(), WaitReason::ChannelRecv);
        siblings.push(s);
    }
    assert!(
        !spread || on_worker.iter().all(|n| n.load(SeqCst) > 0),
        "{on_worker:?}"
    );
    // Started last: the youngest, which shutdown cancels first, while the others still wait.
    let (tx, rx) = std::sync::mpsc::channel();
    let h = rt.spawn(move || {
        let _dump = DumpOnDrop(tx);
        never.recv().unwrap()
    });
    common::wait_until_parked(h.thread().id(), WaitReason::ChannelRecv);
    drop(rt);
    assert!(h.join().is_err());
    rx.recv_timeout(SETTLE).expect("the destructor's dump")
}

/// A thread whose runtime is dropped is unwound; a destructor on its stack that takes a
/// dump must get one (snapshot.rs: a green thread that may not switch waits as a kernel
/// thread, and its own worker is not asked) instead of aborting the process or hanging.
/// In a child process: an abort would end the test binary.
#[test]
fn a_dump_from_the_destructor_of_a_cancelled_thread() {
    let stdout = run_in_child_process("SPINDLE_ADV_PROC_DUMP_IN_DROP");
    assert!(stdout.contains("dumps from destructors: 2"), "{stdout}");
}

fn dump_in_a_cancelled_destructor_scenario() {
    let mut dumps = 0;
    for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
        let (snap, took) = dump_from_a_cancelled_destructor(model, false);
        println!(
            "{model}: the destructor's dump took {took:?}: {:?}",
            snap.runtimes
        );
        // Its own worker is the one unwinding it: not asked, reported as not answering.
        assert!(
            snap.runtimes
                .iter()
                .any(|r| r.workers.iter().any(|w| !w.answered)),
            "{model}: {:?}",
            snap.runtimes
        );
        if model == Model::ManyToOne {
            assert!(took < debug::ANSWER_TIMEOUT, "{model}: {took:?}");
        }
        dumps += 1;
    }
    println!("dumps from destructors: {dumps}");
}

/// The same in many-to-many with older threads on the *other* worker: that worker is then
/// in `Worker::wait_cancel_turn` waiting for the unwinding worker, which waits for the
/// dump. It used to wait in a std condvar (`CancelOrder::wait_turn`) without draining its
/// inbox, so the dump waited out the whole `ANSWER_TIMEOUT` (1 s per such destructor, and
/// the runtime's drop with it) and listed none of that worker's threads, reporting the
/// live worker as "shutting down" (`running: None`). It now sleeps in its reactor and
/// answers (sched/README.md, "Runtime shutdown").
#[test]
fn a_dump_from_a_cancelled_destructor_does_not_wait_for_the_cancel_order() {
    run_in_child_process("SPINDLE_ADV_PROC_DUMP_IN_DROP_MN");
}

fn dump_in_a_cancelled_destructor_many_to_many_scenario() {
    let (snap, took) = dump_from_a_cancelled_destructor(Model::ManyToMany { workers: 2 }, true);
    println!("the destructor's dump took {took:?}: {:?}", snap.runtimes);
    assert!(
        took < debug::ANSWER_TIMEOUT,
        "the dump waited {took:?} for the other worker: {:?}",
        snap.runtimes
    );
    // The waiting worker answered: one of the two did (the unwinding one cannot).
    assert!(
        snap.runtimes
            .iter()
            .any(|r| r.workers.iter().any(|w| w.answered)),
        "{:?}",
        snap.runtimes
    );
}

/// The stack size of [`captures_near_the_guard_page_scenario`]'s threads.
const NEAR_GUARD_STACK: usize = 64 * 1024;

/// Recurses with 256-byte frames until the frame's address is at most `room` bytes above
/// `low` (give or take a frame), then calls `wait`.
#[inline(never)]
fn dig(low: usize, room: usize, wait: &dyn Fn()) {
    let pad = [0u8; 256];
    let here = std::hint::black_box(&pad) as *const _ as usize;
    if here - low > room + 256 {
        dig(low, room, wait);
        std::hint::black_box(());
    } else {
        wait();
    }
}

/// Threads parked at every depth from a little under to a little over the capture's
/// headroom above their guard page (sched/worker/dump.rs: a thread parked within
/// `CAPTURE_HEADROOM` of its guard is not resumed into a capture, since the capture runs a
/// few frames on the thread's own stack): a snapshot with backtraces must neither overflow
/// one of their stacks (which aborts the process) nor disturb them. In a child process.
#[test]
fn backtraces_of_threads_parked_next_to_their_guard_page() {
    let stdout = run_in_child_process("SPINDLE_ADV_PROC_CAPTURE_NEAR_GUARD");
    assert!(stdout.contains("captured:"), "{stdout}");
}

fn captures_near_the_guard_page_scenario() {
    let rt = Runtime::builder()
        .model(Model::ManyToOne)
        .stack_size(NEAR_GUARD_STACK)
        .build()
        .unwrap();
    rt.block_on(|| {
        let (tx, rx) = spindle::channel::unbounded::<()>();
        let rooms: Vec<usize> = (1024..5120).step_by(32).collect();
        let threads: Vec<_> = rooms
            .iter()
            .map(|&room| {
                let rx = rx.clone();
                spindle::spawn(move || {
                    // The stack's top is the page boundary above the entry's first frames,
                    // its bottom (the guard's end) the stack size below that.
                    let top_frame = std::hint::black_box(&room) as *const _ as usize;
                    let low = ((top_frame + 4095) & !4095) - NEAR_GUARD_STACK;
                    dig(low, room, &|| {
                        let _ = rx.recv();
                    });
                })
            })
            .collect();
        drop(rx);
        let ids: Vec<ThreadId> = threads.iter().map(|t| t.thread().id()).collect();
        wait_for_listing(&ids, |l| {
            l.len() == ids.len()
                && l.values()
                    .all(|t| t.state.wait_reason() == Some(WaitReason::ChannelRecv))
        });
        for t in listing(&ids).values() {
            assert_eq!(t.stack_size, NEAR_GUARD_STACK, "{t:?}");
        }
        let snap = debug::snapshot();
        let _ = debug::dump_text();
        let mine: Vec<&ThreadInfo> = snap
            .threads
            .iter()
            .filter(|t| ids.contains(&t.id))
            .collect();
        let captured = mine.iter().filter(|t| t.backtrace.is_some()).count();
        println!("captured: {captured} of {}", mine.len());
        assert_eq!(mine.len(), ids.len());
        assert!(captured > 0, "no thread was captured");
        assert!(
            captured < mine.len(),
            "every thread was captured: none was near its guard"
        );
        // Unharmed: every thread wakes once and returns.
        for _ in &threads {
            tx.send(()).unwrap();
        }
        for t in threads {
            t.join().unwrap();
        }
    });
}

/// `ThreadState::Sleeping { until }` is "when it wakes up" and `Parked { until }` "when the
/// wait times out": a one-to-one thread sleeping or parked with a timeout used to be
/// listed with the right reason but with `until` as the dump's own time (sleep) or `None`
/// (park): snapshot.rs built them from the reason alone. A kernel thread now publishes its
/// deadline with its reason (`task/kernel_wait.rs`). Green threads get both right
/// (checked alongside).
#[test]
fn one_to_one_deadlines_are_listed() {
    let _watchdog = Watchdog::new("one_to_one_deadlines_are_listed", HANG);
    for model in [Model::ManyToOne, Model::OneToOne] {
        common::run(model, move || {
            let sleeper = spindle::spawn(|| spindle::sleep(Duration::from_secs(2)));
            let parker = spindle::spawn(|| spindle::park_timeout(Duration::from_secs(3600)));
            let ids = [sleeper.thread().id(), parker.thread().id()];
            let listed = wait_for_listing(&ids, |l| {
                l.len() == 2
                    && l[&ids[0]].state.wait_reason() == Some(WaitReason::Sleep)
                    && l[&ids[1]].state.wait_reason() == Some(WaitReason::Park)
            });
            let now = Instant::now();
            let sleep_until = match listed[&ids[0]].state {
                ThreadState::Sleeping { until } => until,
                other => panic!("{other:?}"),
            };
            let park_until = match listed[&ids[1]].state {
                ThreadState::Parked { until, .. } => until,
                other => panic!("{other:?}"),
            };
            parker.thread().unpark();
            parker.join().unwrap();
            sleeper.join().unwrap();
            let mut wrong = Vec::new();
            if sleep_until <= now + Duration::from_millis(500) {
                wrong.push(format!(
                    "a 2 s sleep listed as ending {:?} after the dump",
                    sleep_until.saturating_duration_since(now)
                ));
            }
            if park_until.is_none_or(|u| u <= now + Duration::from_secs(1800)) {
                wrong.push(format!(
                    "a one-hour park_timeout listed with until {park_until:?}"
                ));
            }
            assert!(wrong.is_empty(), "{model}: {wrong:?}");
        });
    }
}

/// "Finished threads are not listed": a one-to-one thread whose `join` has returned must
/// not be in a listing taken after it. Its kernel thread used to publish the result
/// (waking the joiner) before it took itself off the runtime's list, so a joiner quick
/// enough saw it listed, as running; it now leaves the list when its closure ends.
#[test]
fn a_joined_one_to_one_thread_is_not_listed() {
    let _watchdog = Watchdog::new("a_joined_one_to_one_thread_is_not_listed", HANG);
    common::run(Model::OneToOne, || {
        for round in 0..3000 {
            let h = spindle::spawn(|| ());
            let id = h.thread().id();
            h.join().unwrap();
            let listed = listing(&[id]);
            assert!(
                listed.is_empty(),
                "round {round}: thread {id} listed after its join returned: {:?}",
                listed[&id]
            );
        }
    });
}
