//! `spindle-lab demo fork`: the three behaviours of spindle around fork(), live.
//!
//! 1. A green thread forks while 10,000 green threads run on a many-to-many runtime; the
//!    child tries to use the runtime it inherited and is refused at once, with the message,
//!    and the parent's threads all finish.
//! 2. A second child builds a runtime of its own and runs 1,000 green threads on it.
//! 3. `spindle::process::Command` starts 100 children at once from green threads of a
//!    many-to-one runtime while a ticker green thread ticks, and no fork() happens.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::process::{Command, Stdio};
use spindle::{Model, Runtime};

const RUNNING: usize = 10_000;
const CHILDREN: u32 = 100;

pub fn run() -> io::Result<()> {
    println!("spindle and fork(): what a child may do with the runtimes it inherited\n");
    fork_from_a_green_thread()?;
    println!();
    hundred_children()
}

static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork() {
    FORKS.fetch_add(1, SeqCst);
}

/// Forks; the child's pid in the parent, 0 in the child.
fn fork() -> io::Result<libc::pid_t> {
    // Nothing is printed mid-line when the child starts.
    use std::io::Write;
    io::stdout().flush()?;
    // SAFETY: fork has no memory-safety preconditions; the child uses only spindle (whose
    // fork handlers ran), std's printing and exit.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        pid => Ok(pid),
    }
}

/// Waits for child `pid` and describes how it ended.
fn reap(pid: libc::pid_t) -> io::Result<String> {
    let mut status = 0;
    // SAFETY: a valid pointer to an int; `pid` is our child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(io::Error::last_os_error());
    }
    Ok(if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    })
}

/// In the child: runs `f`, which must be refused, and prints the refusal.
fn show_refusal<R>(what: &str, f: impl FnOnce() -> R) {
    let message = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => "NOT refused".to_string(),
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    };
    println!("     child: {what:<22} -> {message}");
}

fn fork_from_a_green_thread() -> io::Result<()> {
    println!("1. a green thread forks while {RUNNING} green threads run (many-to-many, 2 workers)");
    let rt = Runtime::builder()
        .model(Model::ManyToMany { workers: 2 })
        .build()?;
    rt.block_on(|| -> io::Result<()> {
        let started = Arc::new(AtomicUsize::new(0));
        let released = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..RUNNING)
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
        while started.load(SeqCst) < RUNNING {
            spindle::yield_now();
        }
        let (_tx, rx) = spindle::channel::unbounded::<u32>();
        let failing = spindle::spawn(move || -> io::Result<libc::pid_t> {
            let pid = fork()?;
            if pid != 0 {
                return Ok(pid);
            }
            // The child. Its panics are shown below, one line each, not by the hook.
            std::panic::set_hook(Box::new(|_| {}));
            show_refusal("spindle::spawn", || spindle::spawn(|| ()));
            show_refusal("channel recv", || rx.recv());
            show_refusal("spindle::sleep", || {
                spindle::sleep(Duration::from_millis(1))
            });
            // Uncaught: the thread that forked ends the child (status 101), never going
            // back into the copy of its worker.
            rx.recv().ok();
            unreachable!("the inherited green thread waited")
        });
        let pid = failing.join().expect("the forking thread")?;
        println!("   the child {}", spindle::unblock(move || reap(pid))?);

        println!("2. another child builds its own runtime (many-to-many, 2 workers)");
        let own = spindle::spawn(|| -> io::Result<libc::pid_t> {
            let pid = fork()?;
            if pid != 0 {
                return Ok(pid);
            }
            let start = Instant::now();
            let rt = Runtime::builder()
                .model(Model::ManyToMany { workers: 2 })
                .build()?;
            let sum: u64 = rt.block_on(|| {
                let hs: Vec<_> = (0..1000u64)
                    .map(|i| {
                        spindle::spawn(move || {
                            spindle::yield_now();
                            i
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum()
            });
            println!(
                "     child: 1000 green threads joined, sum {sum} (expected 499500), in {:.1?}",
                start.elapsed()
            );
            // Returning ends the child with status 0: it was the child's only thread.
            Ok(0)
        });
        let pid = own.join().expect("the forking thread")?;
        println!("   the child {}", spindle::unblock(move || reap(pid))?);

        released.store(true, SeqCst);
        let sum: usize = spinners.into_iter().map(|h| h.join().unwrap()).sum();
        println!(
            "   parent: all {RUNNING} threads finished, sum {sum} (expected {}): unaffected",
            (0..RUNNING).sum::<usize>()
        );
        Ok(())
    })
}

fn hundred_children() -> io::Result<()> {
    println!(
        "3. spindle::process::Command: {CHILDREN} children at once from green threads \
         (many-to-one) while a ticker sleeps 1 ms at a time"
    );
    // SAFETY: the handler only increments an atomic.
    if unsafe { libc::pthread_atfork(Some(count_fork), None, None) } != 0 {
        return Err(io::Error::other("pthread_atfork failed"));
    }
    let rt = Runtime::builder().model(Model::ManyToOne).build()?;
    let forks_before = FORKS.load(SeqCst);
    let (ticks, longest_gap, checked, took) = rt.block_on(|| -> io::Result<_> {
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let stop = stop.clone();
            spindle::spawn(move || {
                let (mut ticks, mut longest) = (0u64, Duration::ZERO);
                let mut last = Instant::now();
                while !stop.load(SeqCst) {
                    spindle::sleep(Duration::from_millis(1));
                    let now = Instant::now();
                    longest = longest.max(now - last);
                    last = now;
                    ticks += 1;
                }
                (ticks, longest)
            })
        };
        let start = Instant::now();
        let children: Vec<_> = (0..CHILDREN)
            .map(|i| {
                spindle::spawn(move || {
                    Command::new("sh")
                        .arg("-c")
                        .arg(format!("sleep 0.2; echo child {i}; exit {}", i % 7))
                        .stderr(Stdio::null())
                        .output()
                })
            })
            .collect();
        let mut checked = 0;
        for (i, c) in children.into_iter().enumerate() {
            let out = c.join().expect("a child's waiter")?;
            if out.status.code() == Some(i as i32 % 7)
                && out.stdout == format!("child {i}\n").as_bytes()
            {
                checked += 1;
            }
        }
        let took = start.elapsed();
        stop.store(true, SeqCst);
        let (ticks, longest_gap) = ticker.join().expect("the ticker");
        Ok((ticks, longest_gap, checked, took))
    })?;
    println!("   {checked} of {CHILDREN} exit statuses and outputs as expected, all in {took:.0?}");
    println!(
        "   the ticker ticked {ticks} times meanwhile, longest gap {longest_gap:.1?} \
         (the worker never blocked)"
    );
    println!(
        "   fork() calls while starting them: {} (posix_spawn, no Rust code in a child)",
        FORKS.load(SeqCst) - forks_before
    );
    Ok(())
}
