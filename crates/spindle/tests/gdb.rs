//! `tools/spindle-gdb.py` against a live process and its core file: `info spindle-threads`
//! lists the green threads, `spindle-bt ID` prints where a parked one waits.
//!
//! The target is this test binary run again as a child: it parks green threads in
//! functions with distinct names, says so on stdout, and waits on stdin. gdb attaches to
//! it; then the child aborts and the kernel writes its core file into the child's own
//! directory (the test asks for no core-size limit in the child). Not `gcore`: gdb reads a
//! process's memory for it in large chunks, and on Linux 6.13 and later a chunk that holds
//! a stack guard page (`MADV_GUARD_INSTALL`) fails and is written as zeros, which loses the
//! green stacks; the kernel's dumper goes page by page. The test needs gdb; `.ci/run`
//! installs it.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spindle::{debug, Model, Runtime, WaitReason};

const CHILD: &str = "SPINDLE_TEST_GDB_TARGET";

#[inline(never)]
fn parked_for_the_debugger(rx: spindle::channel::Receiver<u32>) -> u32 {
    rx.recv().unwrap_or(0) + 1
}

#[inline(never)]
fn sleeping_for_the_debugger() {
    spindle::sleep(Duration::from_secs(3600));
    std::hint::black_box(());
}

/// The child: parks two threads, prints `READY <pid> <parked id> <sleeper id>`, and waits
/// for stdin to close.
fn target() {
    let rt = Runtime::builder()
        .model(Model::ManyToMany { workers: 2 })
        .build()
        .unwrap();
    let (_tx, rx) = spindle::channel::bounded::<u32>(0);
    let parked = rt.spawn(move || {
        spindle::thread::Builder::new()
            .name("gdb-parked".into())
            .spawn(move || parked_for_the_debugger(rx))
            .unwrap()
    });
    let parked = rt.block_on(|| parked.join().unwrap());
    let sleeper = rt.spawn(sleeping_for_the_debugger);
    let ids = [parked.thread().id(), sleeper.thread().id()];
    let start = Instant::now();
    while !debug::threads().iter().all(|t| {
        !ids.contains(&t.id)
            || matches!(
                t.state.wait_reason(),
                Some(WaitReason::ChannelRecv | WaitReason::Sleep)
            )
    }) || debug::threads()
        .iter()
        .filter(|t| ids.contains(&t.id))
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "threads did not park"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("READY {} {} {}", std::process::id(), ids[0], ids[1]);
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    if line.trim() == "abort" {
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: a valid rlimit; raising the soft core limit up to the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &unlimited) } != 0 {
            let mut hard: libc::rlimit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: as above, reading then setting.
            unsafe {
                libc::getrlimit(libc::RLIMIT_CORE, &mut hard);
                hard.rlim_cur = hard.rlim_max;
                libc::setrlimit(libc::RLIMIT_CORE, &hard);
            }
        }
        std::process::abort();
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/spindle-gdb.py")
}

fn gdb(target: &[&str], commands: &[String]) -> String {
    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-q", "-batch"]);
    cmd.args(["-ex", "set pagination off"]);
    cmd.arg("-x").arg(script());
    for c in commands {
        cmd.args(["-ex", c]);
    }
    cmd.args(target);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run gdb (install it: apt-get install gdb): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "gdb failed:\n{text}");
    text
}

fn check(what: &str, out: &str, parked: u64, sleeper: u64) {
    let listed = out
        .lines()
        .find(|l| l.starts_with(&format!("{parked} ")))
        .unwrap_or_else(|| panic!("{what}: thread {parked} is not listed:\n{out}"));
    assert!(listed.contains("\"gdb-parked\""), "{what}: {listed}");
    assert!(listed.contains("channel recv"), "{what}: {listed}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{sleeper} ")) && l.contains("sleep")),
        "{what}: the sleeper:\n{out}"
    );
    let bt_parked = out
        .split("green thread ")
        .find(|s| s.starts_with(&format!("{parked} ")))
        .unwrap_or_else(|| panic!("{what}: no spindle-bt output for {parked}:\n{out}"));
    assert!(
        bt_parked.contains("parked_for_the_debugger"),
        "{what}: the parked thread's backtrace:\n{out}"
    );
    assert!(bt_parked.contains("recv"), "{what}:\n{out}");
    assert!(
        out.contains("sleeping_for_the_debugger"),
        "{what}: the sleeper's backtrace:\n{out}"
    );
}

#[test]
fn gdb_lists_green_threads_and_prints_their_backtraces_live_and_from_a_core() {
    if std::env::var_os(CHILD).is_some() {
        return target();
    }
    let exe = std::env::current_exe().unwrap();
    let dir = std::env::temp_dir().join(format!("spindle-gdb-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(&exe)
        .current_dir(&dir)
        .args([
            "--exact",
            "gdb_lists_green_threads_and_prints_their_backtraces_live_and_from_a_core",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = loop {
        let line = lines
            .next()
            .expect("the target exited before it was ready")
            .unwrap();
        if let Some(rest) = line.strip_prefix("READY ") {
            break rest.to_string();
        }
    };
    let fields: Vec<u64> = ready
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let (pid, parked, sleeper) = (fields[0], fields[1], fields[2]);
    let commands = [
        "info spindle-threads".to_string(),
        format!("spindle-bt {parked}"),
        format!("spindle-bt {sleeper}"),
    ];
    let live = gdb(&["-p", &pid.to_string()], &commands);
    check("live", &live, parked, sleeper);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"abort\n").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the target was to abort");
    let core_file = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("core"))
        })
        .unwrap_or_else(|| {
            panic!(
                "the aborted target left no core file in {}: /proc/sys/kernel/core_pattern is {:?} \
                 (this test needs a plain file name there, such as the default \"core\")",
                dir.display(),
                std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default()
            )
        });
    let from_core = gdb(
        &[exe.to_str().unwrap(), core_file.to_str().unwrap()],
        &commands,
    );
    let _ = std::fs::remove_dir_all(&dir);
    check("core file", &from_core, parked, sleeper);
}
