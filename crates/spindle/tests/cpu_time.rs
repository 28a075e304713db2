//! CPU time per green thread (`Thread::cpu_time`), sampled by each worker's CPU clock.
//!
//! Accuracy (shares, the sum against getrusage) and overhead are measured by
//! `spindle-lab bench accounting`, not asserted here: these tests check that busy threads
//! are charged, idle ones are not, and the switch turns it off.

use std::time::Duration;

use spindle::{Model, Runtime};

/// CPU time of the calling kernel thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Burns CPU on the calling kernel thread until `done()` or until its CPU clock advanced
/// by `cap` (the bound that keeps a broken sampler from hanging the test).
fn burn_until(cap: Duration, done: impl Fn() -> bool) {
    let start = thread_cpu();
    let mut x = 0u64;
    while !done() && thread_cpu() - start < cap {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}

#[test]
fn a_busy_green_thread_is_charged_and_a_parked_one_is_not() {
    for model in [Model::ManyToOne, Model::ManyToMany { workers: 2 }] {
        let rt = Runtime::builder().model(model).build().unwrap();
        rt.block_on(|| {
            let idle = spindle::spawn(spindle::park);
            let busy = spindle::spawn(|| {
                let me = spindle::current();
                burn_until(Duration::from_secs(30), || {
                    me.cpu_time().unwrap() >= Duration::from_millis(20)
                });
                me.cpu_time().unwrap()
            });
            let charged = busy.join().unwrap();
            assert!(
                charged >= Duration::from_millis(20),
                "{model}: 30 s of CPU burnt and only {charged:?} charged"
            );
            let idle_time = idle.thread().cpu_time().unwrap();
            // It ran for microseconds: a sample may land in them, two would be odd.
            assert!(
                idle_time <= 2 * spindle::runtime::CPU_SAMPLE_INTERVAL,
                "{model}: a parked thread was charged {idle_time:?}"
            );
            idle.thread().unpark();
            idle.join().unwrap();
        });
    }
}

#[test]
fn accounting_off_charges_nothing() {
    let rt = Runtime::builder().cpu_accounting(false).build().unwrap();
    let charged = rt.block_on(|| {
        burn_until(Duration::from_millis(50), || false);
        spindle::current().cpu_time().unwrap()
    });
    assert_eq!(charged, Duration::ZERO);
}

#[test]
fn kernel_threads_have_no_sampled_time() {
    let rt = Runtime::builder().model(Model::OneToOne).build().unwrap();
    rt.block_on(|| assert_eq!(spindle::current().cpu_time(), None));
    assert_eq!(spindle::current().cpu_time(), None, "outside any runtime");
}
