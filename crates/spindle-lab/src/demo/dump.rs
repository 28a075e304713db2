//! `spindle-lab demo dump`: the dump of a small program whose green threads wait in a
//! dozen different ways, then the cost of dumping 100,000 parked green threads.
//!
//! 1. A many-to-many runtime of two workers runs threads parked on a mutex, a channel, a
//!    condition variable, a rwlock, a barrier, a semaphore, a sleep, a join, a TCP accept
//!    and read, the helper pool and a bare park, and one that keeps yielding; a
//!    one-to-one runtime has a kernel thread parked on a channel. `debug::dump_text()`
//!    shows each with its state and where it waits; then every thread is released and
//!    joined, which shows that taking the backtraces disturbed nothing.
//! 2. 100,000 green threads parked on a many-to-one runtime, dumped with backtraces: the
//!    time of `dump_text()` beside the time it took to spawn and park them, in the same run.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::sync::{Barrier, Condvar, Mutex, RwLock, Semaphore};
use spindle::{debug, Model, Runtime, WaitReason};

/// Threads of the large dump.
const MANY: usize = 100_000;

pub fn run() -> io::Result<()> {
    small_program()?;
    println!();
    large_dump()
}

fn named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<spindle::JoinHandle<T>> {
    spindle::thread::Builder::new().name(name.into()).spawn(f)
}

/// Waits until `n` threads other than the caller are parked (or runnable, for the
/// yielder), as the listing says.
fn until_parked(ids: &[spindle::ThreadId], waiting: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parked = debug::threads()
            .iter()
            .filter(|t| ids.contains(&t.id) && t.state.wait_reason().is_some())
            .count();
        if parked >= waiting {
            return;
        }
        assert!(Instant::now() < deadline, "the demo's threads did not park");
        spindle::sleep(Duration::from_millis(1));
    }
}

fn small_program() -> io::Result<()> {
    println!("A program whose threads wait in many ways, as debug::dump_text() shows it:\n");
    let kernel_rt = Runtime::builder().model(Model::OneToOne).build()?;
    let (kernel_tx, kernel_rx) = spindle::channel::bounded::<u32>(0);
    let kernel = kernel_rt.block_on(|| named("kernel-waiter", move || kernel_rx.recv()))?;
    let rt = Runtime::builder()
        .model(Model::ManyToMany { workers: 2 })
        .build()?;
    let dump = rt.block_on(|| -> io::Result<String> {
        let mutex = Arc::new(Mutex::new(0u32));
        let held = mutex.lock().unwrap();
        let (tx, rx) = spindle::channel::bounded::<u32>(0);
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let rwlock = Arc::new(RwLock::new(()));
        let read_guard = rwlock.read().unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let semaphore = Arc::new(Semaphore::new(0));
        let listener = spindle::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let quiet = spindle::net::TcpListener::bind("127.0.0.1:0")?;
        let client = spindle::net::TcpStream::connect(quiet.local_addr()?)?;
        let (server_side, _) = quiet.accept()?;
        let (helper_tx, helper_rx) = std::sync::mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));

        let m = mutex.clone();
        let p = pair.clone();
        let w = rwlock.clone();
        let b = barrier.clone();
        let s = semaphore.clone();
        let y = stop.clone();
        let receiver = named("receiver", move || rx.recv().unwrap())?;
        let receiver_thread = receiver.thread().clone();
        let mut handles = vec![
            named("lock-waiter", move || drop(m.lock().unwrap()))?,
            named("condvar-waiter", move || {
                let (lock, cv) = &*p;
                drop(
                    cv.wait_while(lock.lock().unwrap(), |ready| !*ready)
                        .unwrap(),
                );
            })?,
            named("writer", move || drop(w.write().unwrap()))?,
            named("barrier-waiter", move || {
                b.wait();
            })?,
            named("permit-waiter", move || drop(s.acquire()))?,
            named("sleeper", || spindle::sleep(Duration::from_millis(1500)))?,
            named("joiner", move || assert_eq!(receiver.join().unwrap(), 7))?,
            named("acceptor", move || drop(listener.accept().unwrap()))?,
            named("reader", move || {
                let mut byte = [0u8; 1];
                (&server_side).read_exact(&mut byte).unwrap();
            })?,
            named("unblocked", move || {
                spindle::unblock(move || helper_rx.recv()).unwrap();
            })?,
            named("parker", spindle::park)?,
            named("yielder", move || {
                while !y.load(SeqCst) {
                    spindle::yield_now();
                }
            })?,
        ];
        let mut ids: Vec<_> = handles.iter().map(|h| h.thread().id()).collect();
        ids.push(receiver_thread.id());
        until_parked(&ids, ids.len() - 1);
        let dump = debug::dump_text();

        // Release every one of them.
        drop(held);
        tx.send(7).unwrap();
        *pair.0.lock().unwrap() = true;
        pair.1.notify_all();
        drop(read_guard);
        barrier.wait();
        semaphore.add_permits(1);
        let _conn = spindle::net::TcpStream::connect(addr)?;
        (&client).write_all(b"x")?;
        helper_tx.send(()).unwrap();
        handles[10].thread().unpark();
        stop.store(true, SeqCst);
        for h in handles.drain(..) {
            h.join().expect("a released thread finished");
        }
        Ok(dump)
    })?;
    kernel_tx.send(1).unwrap();
    assert_eq!(kernel.join().unwrap(), Ok(1));
    print!("{dump}");
    println!("\nEvery thread above was then released, and each finished as it should.");
    Ok(())
}

fn large_dump() -> io::Result<()> {
    println!("Dumping {MANY} parked green threads (many-to-one, 16 KiB stacks):");
    let rt = Runtime::builder()
        .model(Model::ManyToOne)
        .stack_size(16 * 1024)
        .build()?;
    let (spawned, dump_time, dump, listing, captured) = rt.block_on(|| {
        let release = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let handles: Vec<_> = (0..MANY)
            .map(|_| {
                let (release, started) = (release.clone(), started.clone());
                spindle::spawn(move || {
                    started.fetch_add(1, SeqCst);
                    while !release.load(SeqCst) {
                        spindle::park();
                    }
                })
            })
            .collect();
        // Each runs once and parks.
        while started.load(SeqCst) < MANY {
            spindle::yield_now();
        }
        let spawned = start.elapsed();
        let start = Instant::now();
        let listed = debug::threads().len();
        let listing = start.elapsed();
        let start = Instant::now();
        let snapshot = debug::snapshot();
        let captured = start.elapsed();
        let dump = snapshot.to_text();
        let dump_time = start.elapsed();
        assert!(listed >= MANY);
        release.store(true, SeqCst);
        for h in &handles {
            h.thread().unpark();
        }
        for h in handles {
            h.join().unwrap();
        }
        (spawned, dump_time, dump, listing, captured)
    });
    let parked = dump
        .matches(&format!("[{}]", WaitReason::Park.as_str()))
        .count();
    println!(
        "  spawning them and letting each park: {:>7.0} ms",
        ms(spawned)
    );
    println!(
        "  debug::threads(), no backtraces:      {:>7.0} ms",
        ms(listing)
    );
    println!(
        "  a dump with backtraces:               {:>7.0} ms ({:.2}x the spawning; {} threads parked in the dump, {:.1} MB of text)",
        ms(dump_time),
        dump_time.as_secs_f64() / spawned.as_secs_f64(),
        parked,
        dump.len() as f64 / 1e6
    );
    println!(
        "    of which debug::snapshot(), the capture: {:.0} ms; to_text(): {:.0} ms",
        ms(captured),
        ms(dump_time - captured)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
