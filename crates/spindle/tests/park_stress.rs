//! No lost wakeup under random park/unpark across workers and kernel threads (run in
//! release mode). Each round, every thread parks until its own counter has been raised by
//! its peers; a lost wakeup leaves a thread parked forever and the test hanging, so the
//! main thread watches progress and fails with a message instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::{Model, Runtime, Thread};

const THREADS: usize = 16;
const ROUNDS: u64 = 20_000;

struct Shared {
    /// Tokens given to each thread so far.
    given: Vec<AtomicU64>,
    threads: std::sync::Mutex<Vec<Option<Thread>>>,
    progress: AtomicU64,
    all_registered: AtomicBool,
}

/// Thread `me` does ROUNDS rounds: in each it raises a peer's counter and unparks it, then
/// parks until its own counter reaches `round + 1`. The peers of a round form a
/// permutation, so every thread receives one token per round, given before its giver
/// waits: each thread waits only for tokens that will come.
fn stress(model: Model) {
    let rt = Runtime::builder().model(model).build().unwrap();
    let shared = Arc::new(Shared {
        given: (0..THREADS).map(|_| AtomicU64::new(0)).collect(),
        threads: std::sync::Mutex::new(vec![None; THREADS]),
        progress: AtomicU64::new(0),
        all_registered: AtomicBool::new(false),
    });
    // The pairing is a fixed permutation per round, so every thread receives exactly one
    // token per round, and a thread needs `round + 1` tokens to leave round `round`.
    let perm = |round: u64, i: usize| -> usize {
        let k = (round as usize * 7 + 1) % (THREADS - 1) + 1;
        (i + k) % THREADS
    };
    let hs: Vec<_> = (0..THREADS)
        .map(|me| {
            let s = shared.clone();
            let body = move || {
                s.threads.lock().unwrap()[me] = Some(spindle::current());
                while !s.all_registered.load(SeqCst) {
                    spindle::yield_now();
                }
                for round in 0..ROUNDS {
                    let peer = perm(round, me);
                    s.given[peer].fetch_add(1, SeqCst);
                    let t = s.threads.lock().unwrap()[peer].clone().unwrap();
                    t.unpark();
                    while s.given[me].load(SeqCst) < round + 1 {
                        spindle::park();
                    }
                    s.progress.fetch_add(1, SeqCst);
                }
            };
            // Half the threads are plain kernel threads outside the runtime, to mix
            // green and kernel parkers.
            if me % 4 == 3 {
                Err(std::thread::spawn(body))
            } else {
                Ok(rt.spawn(body))
            }
        })
        .collect();
    while shared.threads.lock().unwrap().iter().any(Option::is_none) {
        std::thread::yield_now();
    }
    shared.all_registered.store(true, SeqCst);
    let mut last = 0;
    let mut last_change = Instant::now();
    let total = THREADS as u64 * ROUNDS;
    while shared.progress.load(SeqCst) < total {
        let p = shared.progress.load(SeqCst);
        if p != last {
            last = p;
            last_change = Instant::now();
        }
        assert!(
            last_change.elapsed() < Duration::from_secs(20),
            "{model}: no progress for 20 s at {p} of {total}: a wakeup was lost"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for h in hs {
        match h {
            Ok(h) => h.join().unwrap(),
            Err(h) => h.join().unwrap(),
        }
    }
}

#[test]
fn no_lost_wakeup_many_to_many() {
    stress(Model::ManyToMany { workers: 2 });
}

#[test]
fn no_lost_wakeup_many_to_many_4_workers() {
    stress(Model::ManyToMany { workers: 4 });
}

#[test]
fn no_lost_wakeup_many_to_one() {
    stress(Model::ManyToOne);
}
