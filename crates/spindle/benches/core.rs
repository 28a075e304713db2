//! Criterion microbenchmarks of the core operations in the many-to-one model, with std
//! threads as the baseline where the operation exists there. The lab (`spindle-lab bench
//! switch|spawn|pingpong`) measures the same with all models side by side.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use spindle::{Model, Runtime};

fn runtime() -> Runtime {
    Runtime::builder()
        .model(Model::ManyToOne)
        .build()
        .expect("a many-to-one runtime")
}

fn yield_ping_pong(c: &mut Criterion) {
    let rt = runtime();
    c.bench_function("many-to-one yield (two threads in turn)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(|| {
                let half = iters.div_ceil(2);
                let start = Instant::now();
                let a = spindle::spawn(move || (0..half).for_each(|_| spindle::yield_now()));
                let b = spindle::spawn(move || (0..half).for_each(|_| spindle::yield_now()));
                a.join().unwrap();
                b.join().unwrap();
                start.elapsed()
            })
        })
    });
}

fn spawn_join(c: &mut Criterion) {
    let rt = runtime();
    c.bench_function("many-to-one spawn + join", |b| {
        b.iter_custom(|iters| {
            rt.block_on(|| {
                let start = Instant::now();
                for i in 0..iters {
                    spindle::spawn(move || i).join().unwrap();
                }
                start.elapsed()
            })
        })
    });
    c.bench_function("std thread spawn + join", |b| {
        b.iter(|| std::thread::spawn(|| 1u64).join().unwrap())
    });
}

fn channel_ping_pong(c: &mut Criterion) {
    let rt = runtime();
    c.bench_function("many-to-one channel round trip", |b| {
        b.iter_custom(|iters| {
            rt.block_on(|| {
                let (to_echo, echo_rx) = spindle::channel::bounded::<u64>(1);
                let (echo_tx, from_echo) = spindle::channel::bounded::<u64>(1);
                let echo = spindle::spawn(move || {
                    for v in echo_rx {
                        echo_tx.send(v).unwrap();
                    }
                });
                let start = Instant::now();
                for i in 0..iters {
                    to_echo.send(i).unwrap();
                    from_echo.recv().unwrap();
                }
                let elapsed = start.elapsed();
                drop(to_echo);
                echo.join().unwrap();
                elapsed
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = yield_ping_pong, spawn_join, channel_ping_pong
}
criterion_main!(benches);
