//! `spindle::sync::Barrier` under every model, shared by green and kernel threads; reuse
//! across generations, leaders, cancellation, and a stress test.

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use common::join_kernel;
use spindle::sync::Barrier;
use spindle::Model;

/// Per-generation counters: arrivals, and leaders.
struct Generations {
    arrived: Vec<AtomicUsize>,
    leaders: Vec<AtomicUsize>,
}

impl Generations {
    fn new(n: usize) -> Arc<Generations> {
        Arc::new(Generations {
            arrived: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            leaders: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// One thread's part: `generations` waits, checking that nobody passes a generation
    /// before all `n` have arrived in it.
    fn run(&self, barrier: &Barrier, n: usize) {
        for g in 0..self.arrived.len() {
            self.arrived[g].fetch_add(1, SeqCst);
            let r = barrier.wait();
            assert_eq!(
                self.arrived[g].load(SeqCst),
                n,
                "generation {g} released early"
            );
            if r.is_leader() {
                self.leaders[g].fetch_add(1, SeqCst);
            }
        }
    }

    fn assert_one_leader_each(&self) {
        for (g, l) in self.leaders.iter().enumerate() {
            assert_eq!(l.load(SeqCst), 1, "generation {g}");
        }
    }
}

cross_model! {
    fn every_generation_waits_for_all_and_has_one_leader(_model) {
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let gens = Generations::new(20);
        let hs: Vec<_> = (0..n - 1)
            .map(|_| {
                let (barrier, gens) = (barrier.clone(), gens.clone());
                spindle::spawn(move || gens.run(&barrier, n))
            })
            .collect();
        gens.run(&barrier, n);
        for h in hs {
            h.join().unwrap();
        }
        gens.assert_one_leader_each();
    }

    fn a_barrier_of_one_or_zero_never_waits(_model) {
        for n in [0, 1] {
            let b = Barrier::new(n);
            for _ in 0..3 {
                assert!(b.wait().is_leader());
            }
        }
        assert_eq!(format!("{:?}", Barrier::new(3)), "Barrier { n: 3, .. }");
        assert_eq!(
            format!("{:?}", Barrier::new(1).wait()),
            "BarrierWaitResult { is_leader: true }"
        );
    }

    fn green_and_kernel_threads_meet_at_one_barrier(_model) {
        let n = 7;
        let barrier = Arc::new(Barrier::new(n));
        let gens = Generations::new(10);
        let kernel: Vec<_> = (0..3)
            .map(|_| {
                let (barrier, gens) = (barrier.clone(), gens.clone());
                std::thread::spawn(move || gens.run(&barrier, n))
            })
            .collect();
        let green: Vec<_> = (0..3)
            .map(|_| {
                let (barrier, gens) = (barrier.clone(), gens.clone());
                spindle::spawn(move || gens.run(&barrier, n))
            })
            .collect();
        gens.run(&barrier, n);
        for h in green {
            h.join().unwrap();
        }
        kernel.into_iter().for_each(join_kernel);
        gens.assert_one_leader_each();
    }
}

#[test]
fn a_kernel_thread_outside_any_runtime_can_use_it() {
    let barrier = Arc::new(Barrier::new(2));
    let b2 = barrier.clone();
    let k = std::thread::spawn(move || b2.wait().is_leader());
    let me = barrier.wait().is_leader();
    assert!(me ^ k.join().unwrap(), "exactly one leader");
}

#[test]
fn a_cancelled_waiter_takes_back_its_arrival() {
    let barrier = Arc::new(Barrier::new(2));
    let rt = spindle::Runtime::builder().build().unwrap();
    let b2 = barrier.clone();
    rt.block_on(move || {
        spindle::spawn(move || b2.wait());
        spindle::yield_now(); // it arrives and parks
    });
    drop(rt); // unwinds it: the barrier must not count it any more
              // Two new threads still need to meet: if the cancelled arrival still counted, this
              // thread would pass alone and the kernel thread would wait forever.
    let b3 = barrier.clone();
    let k = std::thread::spawn(move || b3.wait().is_leader());
    let me = barrier.wait().is_leader();
    assert!(me ^ k.join().unwrap(), "exactly one leader");
}

const THREADS: usize = if cfg!(debug_assertions) { 20 } else { 100 };
const GENERATIONS: usize = if cfg!(debug_assertions) { 100 } else { 1_000 };

fn stress(model: Model, threads: usize) {
    common::run(model, move || {
        let barrier = Arc::new(Barrier::new(threads + 1));
        let gens = Generations::new(GENERATIONS);
        let kernel = {
            let (barrier, gens) = (barrier.clone(), gens.clone());
            std::thread::spawn(move || gens.run(&barrier, threads + 1))
        };
        let green: Vec<_> = (0..threads - 1)
            .map(|_| {
                let (barrier, gens) = (barrier.clone(), gens.clone());
                spindle::spawn(move || gens.run(&barrier, threads + 1))
            })
            .collect();
        gens.run(&barrier, threads + 1);
        for h in green {
            h.join().unwrap();
        }
        join_kernel(kernel);
        gens.assert_one_leader_each();
    });
}

#[test]
fn stress_many_to_one() {
    stress(Model::ManyToOne, THREADS);
}

#[test]
fn stress_one_to_one() {
    stress(Model::OneToOne, 8);
}

#[test]
fn stress_many_to_many() {
    stress(Model::ManyToMany { workers: 4 }, THREADS);
}
