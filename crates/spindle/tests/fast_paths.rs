//! The issue's requirement for every sync primitive and channel, checked for real: "an
//! uncontended fast path makes no system call and no allocation".
//!
//! ## What is checked
//!
//! Each module below names a primitive and lists uncontended operations on it (a free lock,
//! free permits, a completed `Once`, a warmed channel with room or a message ready, ...).
//! Each module has two tests: `green_thread` runs the operations on the root green thread
//! of a many-to-one runtime (on its worker's kernel thread), `kernel_thread` on a plain
//! kernel thread outside any runtime.
//!
//! ## How
//!
//! - **No allocation.** The global allocator counts allocations (`alloc`, `alloc_zeroed`,
//!   `realloc`) per kernel thread, in a `const`-initialized thread-local without destructor,
//!   so counting allocates nothing. Each operation runs [`RUNS`] times between two reads of
//!   the count, which must be equal. Frees are not counted: the last `WaitGroup` handle
//!   frees its group, as the last `Arc` does.
//! - **No system call.** The operations run in a child process (`common::rerun_in_child`)
//!   on a kernel thread that puts itself in seccomp strict mode, after which any system
//!   call but `read`, `write`, `exit` and `rt_sigreturn` kills it with SIGKILL. Before
//!   that, it sets everything up and runs each operation once (warming per-thread state
//!   made on first use, such as a kernel thread's spindle record). Then it only runs the
//!   measured loops, reports each one with a raw `write` to stdout ("ok ..." or "FAIL
//!   ..."), writes [`END`], and ends itself with the raw `exit` system call: std's thread
//!   exit, and in the green case the worker's scheduler loop, would make system calls.
//!   Linux kills only the offending thread (`do_exit(SIGKILL)`), not the process, so the
//!   child's test thread waits for the measuring kernel thread to end (`pthread_join`: the
//!   kernel wakes it when the thread is gone, killed or not) and then exits the process.
//!   The parent test requires no "FAIL" line, the [`END`] line (a killed thread never
//!   writes it: the culprit is the operation after the last "ok" line), and a child not
//!   killed by a signal (as it would be on a kernel that kills the whole process).
//! - **The green case's worker runs nothing else.** Its runtime is built with CPU
//!   accounting off, because the sampler's signal handler calls `timer_getoverrun` on the
//!   worker every millisecond of CPU (`sched/cpu_sampler.rs`), and with a stall threshold
//!   of an hour, so that the monitor does not signal the worker for a backtrace: both are
//!   the runtime's machinery, not a primitive's fast path. The measuring green thread is
//!   the only one, sleeps on no timer, waits for no I/O and never switches while measured.
//!
//! A child's own watchdog ends it after [`CHILD_LIMIT`], and `rerun_in_child` kills a
//! child that outlives its deadline, so a hang fails the test instead of stalling it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc;
use std::time::Duration;

use spindle::channel::{bounded, unbounded, Receiver, Select, Sender};
use spindle::sync::{Barrier, Condvar, Mutex, Once, OnceLock, RwLock, Semaphore, WaitGroup};

/// How many times each operation runs while measured.
const RUNS: usize = 1000;

/// How many times each operation runs before measuring (and before strict mode).
const WARM_UPS: usize = 1;

/// The last line of a measuring thread that got through every operation alive.
const END: &str = "end of checks";

/// Set in the child process: the test plays the measuring side.
const CHILD_ENV: &str = "SPINDLE_FAST_PATHS_CHILD";

/// How long a child may take before its watchdog ends it.
const CHILD_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Counting allocations.

thread_local! {
    /// Allocations made by this kernel thread so far.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting allocations per kernel thread.
struct CountingAllocator;

fn count_allocation() {
    // `try_with` never fails for a const-initialized local without destructor; ignoring
    // the error keeps the allocator from panicking regardless.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counting touches only a thread-local Cell, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

// ---------------------------------------------------------------------------------------
// The measuring side (in the child), using only `write` and `exit` once in strict mode.

/// One measured operation: what it is, and the operation (which must leave the primitive
/// as it found it, so that it can run again).
type Check<'a> = (&'a str, &'a mut dyn FnMut());

/// Runs each operation [`WARM_UPS`] times, enters seccomp strict mode, then runs each
/// [`RUNS`] times and reports it. Call it once per child, after all set-up: from strict
/// mode on, a system call kills the thread (an allocation may need one).
fn measure(checks: &mut [Check<'_>]) {
    for (_, op) in checks.iter_mut() {
        (0..WARM_UPS).for_each(|_| op());
    }
    // SAFETY: `prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)` takes no pointer; it only
    // restricts the system calls of the calling thread.
    if unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_STRICT) } != 0 {
        report(&[b"FAIL cannot enter seccomp strict mode"]);
        return;
    }
    for (what, op) in checks.iter_mut() {
        let before = allocations();
        (0..RUNS).for_each(|_| op());
        let allocated = allocations() - before;
        if allocated == 0 {
            report(&[b"ok   ", what.as_bytes()]);
        } else {
            let (mut digits, mut runs) = ([0u8; 20], [0u8; 20]);
            report(&[
                b"FAIL ",
                what.as_bytes(),
                b": ",
                decimal(allocated, &mut digits),
                b" allocations in ",
                decimal(RUNS as u64, &mut runs),
                b" runs",
            ]);
        }
    }
}

/// Writes `parts` and a newline to stdout in one `write` system call, allocating nothing
/// (a line longer than the buffer is cut).
fn report(parts: &[&[u8]]) {
    let mut line = [0u8; 256];
    let mut len = 0;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        if len < line.len() - 1 {
            line[len] = b;
            len += 1;
        }
    }
    line[len] = b'\n';
    len += 1;
    let mut done = 0;
    while done < len {
        // SAFETY: the pointer and length describe initialized bytes of `line`.
        let n = unsafe { libc::write(1, line[done..len].as_ptr().cast(), len - done) };
        if n <= 0 {
            return; // stdout is gone or failing: the parent sees the line missing
        }
        done += n as usize;
    }
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// Ends the calling kernel thread with the raw `exit` system call, which strict mode
/// allows: std's thread exit and a worker's scheduler loop would make other calls.
fn exit_this_thread() -> ! {
    // SAFETY: `exit` ends only this kernel thread, without unwinding or running its
    // destructors. Nothing waits for them: the checks are done and hold no lock, and the
    // child's test thread, woken by this thread's end, exits the process without touching
    // the runtime whose worker this may be.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    unreachable!("the exit system call returned");
}

/// Where the measuring code runs.
#[derive(Clone, Copy)]
enum On {
    /// The root green thread of a many-to-one runtime.
    GreenThread,
    /// A kernel thread outside any runtime.
    KernelThread,
}

/// The child's side: runs `checks` on a new measuring kernel thread (`on` a green thread
/// or not), waits for that thread to end, and exits the process.
fn child(on: On, checks: fn()) -> ! {
    let _watchdog = common::Watchdog::new("fast_paths child", CHILD_LIMIT);
    let (started, thread) = mpsc::channel();
    let measuring = move || {
        // SAFETY: `pthread_self` has no preconditions.
        started.send(unsafe { libc::pthread_self() }).unwrap();
        let ran = std::panic::catch_unwind(checks);
        if ran.is_err() {
            report(&[b"FAIL the checks panicked (see stderr)"]);
        }
        report(&[END.as_bytes()]);
        exit_this_thread()
    };
    match on {
        // Forgotten, not dropped: a dropped handle detaches the thread, which we join.
        On::KernelThread => std::mem::forget(std::thread::spawn(measuring)),
        On::GreenThread => {
            // This thread's `block_on` never returns: the green thread ends its worker.
            std::thread::spawn(move || {
                let rt = spindle::Runtime::builder()
                    .model(spindle::Model::ManyToOne)
                    .cpu_accounting(false)
                    .stall_threshold(Duration::from_secs(3600))
                    .build()
                    .expect("a many-to-one runtime");
                rt.block_on(measuring)
            });
        }
    }
    let thread = thread.recv().expect("the measuring thread never started");
    // SAFETY: `thread` is joinable and joined by nobody else: a std thread whose handle
    // was forgotten, or the runtime's worker, which only the runtime's drop would join, and
    // the runtime is never dropped (the process exits below).
    let joined = unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
    assert_eq!(joined, 0, "pthread_join of the measuring thread");
    println!("the measuring thread has ended");
    std::io::stdout().flush().unwrap();
    std::process::exit(0)
}

// ---------------------------------------------------------------------------------------
// The parent's side.

/// Runs test `test` in a child process that runs `checks` (see the module docs), and
/// checks the child's report.
fn check_in_child(test: &str, on: On, checks: fn()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        child(on, checks);
    }
    let out = common::rerun_in_child(test, CHILD_ENV);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let output = format!(
        "--- child stdout:\n{stdout}--- child stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.signal(),
        None,
        "{test}: the child was killed by a signal (9, SIGKILL: seccomp strict mode caught \
         a system call in the operation after the last `ok` line)\n{output}"
    );
    assert!(out.status.success(), "{test}: {}\n{output}", out.status);
    let lines: Vec<&str> = stdout.lines().collect();
    let failed: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert!(failed.is_empty(), "{test}: {failed:#?}\n{output}");
    assert!(
        lines.contains(&END),
        "{test}: the measuring thread did not get to the end: seccomp strict mode killed it \
         for a system call (other than read, write, exit, rt_sigreturn) in the operation \
         after the last `ok` line (or that operation panicked: reporting a panic makes \
         system calls)\n{output}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("ok")),
        "{test}: nothing was measured\n{output}"
    );
}

/// `fn name() { ... }` per primitive: the body sets up and calls [`measure`] once. Each
/// becomes a module with the tests `green_thread` and `kernel_thread`.
macro_rules! fast_path_tests {
    ($(fn $name:ident() $body:block)*) => {
        $(
            mod $name {
                use super::*;

                fn checks() $body

                #[test]
                fn green_thread() {
                    let test = concat!(stringify!($name), "::green_thread");
                    check_in_child(test, On::GreenThread, checks);
                }

                #[test]
                fn kernel_thread() {
                    let test = concat!(stringify!($name), "::kernel_thread");
                    check_in_child(test, On::KernelThread, checks);
                }
            }
        )*
    };
}

/// Sends and receives `n` messages, so that the channel's ring has its slots (an unbounded
/// ring grows by doubling as it fills: `ring.rs`).
fn warm(tx: &Sender<u64>, rx: &Receiver<u64>, n: u64) {
    (0..n).for_each(|i| tx.send(i).unwrap());
    (0..n).for_each(|i| assert_eq!(rx.recv(), Ok(i)));
}

/// The channel operations checked on both a bounded(16) and an unbounded channel, with
/// at most 16 messages in it (the unbounded ring was warmed to 16 slots).
fn channel_checks(tx: Sender<u64>, rx: Receiver<u64>) {
    warm(&tx, &rx, 16);
    measure(&mut [
        ("send + recv", &mut || {
            tx.send(1).unwrap();
            black_box(rx.recv().unwrap());
        }),
        ("try_send + try_recv", &mut || {
            tx.try_send(1).unwrap();
            black_box(rx.try_recv().unwrap());
        }),
        ("16 sends, then 16 recvs", &mut || {
            (0..16).for_each(|i| tx.send(i).unwrap());
            (0..16).for_each(|_| {
                black_box(rx.recv().unwrap());
            });
        }),
        ("16 try_sends, then 16 try_recvs", &mut || {
            (0..16).for_each(|i| tx.try_send(i).unwrap());
            (0..16).for_each(|_| {
                black_box(rx.try_recv().unwrap());
            });
        }),
    ]);
}

fast_path_tests! {
    fn mutex() {
        let mutex = Mutex::new(0u64);
        measure(&mut [
            ("Mutex::lock + unlock", &mut || *mutex.lock().unwrap() += 1),
            ("Mutex::try_lock + unlock", &mut || *mutex.try_lock().unwrap() += 1),
        ]);
    }

    fn rwlock() {
        let lock = RwLock::new(0u64);
        measure(&mut [
            ("RwLock::read + unlock", &mut || {
                black_box(*lock.read().unwrap());
            }),
            ("RwLock::try_read + unlock", &mut || {
                black_box(*lock.try_read().unwrap());
            }),
            ("RwLock::write + unlock", &mut || *lock.write().unwrap() += 1),
            ("RwLock::try_write + unlock", &mut || *lock.try_write().unwrap() += 1),
        ]);
    }

    fn semaphore() {
        let sem = Semaphore::new(4);
        measure(&mut [
            ("Semaphore::acquire + release", &mut || drop(sem.acquire())),
            ("Semaphore::try_acquire + release", &mut || drop(sem.try_acquire().unwrap())),
            ("Semaphore::acquire_many(2) + release", &mut || drop(sem.acquire_many(2))),
            ("Semaphore::try_acquire_many(2) + release", &mut || {
                drop(sem.try_acquire_many(2).unwrap());
            }),
        ]);
    }

    fn wait_group() {
        let group = WaitGroup::new();
        // A group per `wait` (it consumes the handle and, being the last, frees the group).
        let mut last_handles: Vec<WaitGroup> =
            (0..RUNS + WARM_UPS).map(|_| WaitGroup::new()).collect();
        measure(&mut [
            ("WaitGroup clone (add) + drop (done)", &mut || drop(group.clone())),
            ("WaitGroup::wait on the last handle (count reaches zero)", &mut || {
                last_handles.pop().unwrap().wait();
            }),
        ]);
    }

    fn once() {
        let once = Once::new();
        once.call_once(|| ());
        let cell = OnceLock::new();
        cell.set(7u64).unwrap();
        measure(&mut [
            ("Once::call_once when complete", &mut || once.call_once(|| unreachable!())),
            ("Once::call_once_force when complete", &mut || {
                once.call_once_force(|_| unreachable!());
            }),
            ("Once::wait when complete", &mut || once.wait()),
            ("OnceLock::get when initialized", &mut || {
                black_box(cell.get().unwrap());
            }),
            ("OnceLock::get_or_init when initialized", &mut || {
                black_box(cell.get_or_init(|| unreachable!()));
            }),
        ]);
    }

    fn condvar() {
        let cv = Condvar::new();
        measure(&mut [
            ("Condvar::notify_one, no waiter", &mut || cv.notify_one()),
            ("Condvar::notify_all, no waiter", &mut || cv.notify_all()),
        ]);
    }

    // A barrier of 1 is uncontended by design: every `wait` is the last arrival of its
    // generation, which resets the count and wakes an empty list, never parking.
    fn barrier() {
        let barrier = Barrier::new(1);
        measure(&mut [("Barrier::wait, barrier of 1", &mut || {
            assert!(barrier.wait().is_leader());
        })]);
    }

    fn bounded_channel() {
        let (tx, rx) = bounded(16);
        channel_checks(tx, rx);
    }

    fn unbounded_channel() {
        let (tx, rx) = unbounded();
        channel_checks(tx, rx);
    }

    // `select!` declares its operations on the stack: "Nothing is allocated by `select!`"
    // (`channel/select.rs`, "Cost"; `channel/select_macro.rs`).
    fn select_macro() {
        let (tx, rx) = bounded::<u64>(16);
        let (_idle_tx, idle_rx) = bounded::<u64>(16);
        warm(&tx, &rx, 16);
        measure(&mut [
            ("select! with a ready recv arm (after a send) and an idle one", &mut || {
                tx.send(1).unwrap();
                spindle::select! {
                    recv(rx) -> m => {
                        black_box(m.unwrap());
                    }
                    recv(idle_rx) -> _ => unreachable!(),
                }
            }),
            ("select! with a ready send arm and an idle one, then try_recv", &mut || {
                spindle::select! {
                    send(tx, 1) -> r => r.unwrap(),
                    recv(idle_rx) -> _ => unreachable!(),
                }
                black_box(rx.try_recv().unwrap());
            }),
            ("select! with a ready recv arm and a default arm", &mut || {
                tx.send(1).unwrap();
                spindle::select! {
                    recv(rx) -> m => {
                        black_box(m.unwrap());
                    }
                    default => unreachable!(),
                }
            }),
            ("select! with a default arm, nothing ready", &mut || {
                spindle::select! {
                    recv(idle_rx) -> _ => unreachable!(),
                    default => (),
                }
            }),
        ]);
    }

    // The `Select` builder "allocates one box per operation when it is built"
    // (`channel/select.rs`, "Cost"), by design: only selecting with a built one, which
    // reuses its boxes, is measured.
    fn select_builder() {
        let (tx, rx) = bounded::<u64>(16);
        let (_idle_tx, idle_rx) = bounded::<u64>(16);
        warm(&tx, &rx, 16);
        let mut select = Select::new();
        let ready = select.recv(&rx);
        select.recv(&idle_rx);
        measure(&mut [(
            "Select::try_select (built beforehand) with a ready recv (after a send)",
            &mut || {
                tx.send(1).unwrap();
                let op = select.try_select().unwrap();
                assert_eq!(op.index(), ready);
                black_box(op.recv(&rx).unwrap());
            },
        )]);
    }
}
