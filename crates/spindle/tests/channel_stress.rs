//! Stress: 1,000 green threads x 1,000 operations on one channel, many-to-one, and
//! 1,000 x 10,000 in many-to-many.
//!
//! Full size in release builds (CI runs `cargo test --release`); scaled down by 10 in each
//! dimension in debug builds.

mod common;

use spindle::channel::{bounded, unbounded, Receiver, Sender};
use spindle::Model;

const THREADS: u64 = if cfg!(debug_assertions) { 100 } else { 1_000 };
const OPS: u64 = if cfg!(debug_assertions) { 100 } else { 1_000 };

/// Half the threads send `OPS` messages each, half receive `OPS` each; checks count and sum.
fn run_on(tx: Sender<u64>, rx: Receiver<u64>) {
    run_with(Model::ManyToOne, OPS, tx, rx)
}

/// As [`run_on`], in `model`, with `ops` operations per thread.
fn run_with(model: Model, ops: u64, tx: Sender<u64>, rx: Receiver<u64>) {
    common::run(model, move || {
        let half = THREADS / 2;
        let producers: Vec<_> = (0..half)
            .map(|p| {
                let tx = tx.clone();
                spindle::spawn(move || (0..ops).for_each(|i| tx.send(p * ops + i).unwrap()))
            })
            .collect();
        let consumers: Vec<_> = (0..half)
            .map(|_| {
                let rx = rx.clone();
                spindle::spawn(move || (0..ops).map(|_| rx.recv().unwrap()).sum::<u64>())
            })
            .collect();
        producers.into_iter().for_each(|h| h.join().unwrap());
        let sum: u64 = consumers.into_iter().map(|h| h.join().unwrap()).sum();
        let n = half * ops;
        assert_eq!(sum, n * (n - 1) / 2);
        assert!(rx.is_empty());
    });
}

/// 500 senders and 500 receivers x 10,000 messages each on two workers: sum exact.
#[test]
fn a_thousand_green_threads_times_ten_thousand_on_a_bounded_channel_in_many_to_many() {
    let (tx, rx) = bounded(128);
    run_with(Model::ManyToMany { workers: 2 }, OPS * 10, tx, rx);
}

#[test]
fn a_thousand_green_threads_on_a_bounded_channel() {
    let (tx, rx) = bounded(16);
    run_on(tx, rx);
}

#[test]
fn a_thousand_green_threads_on_a_rendezvous_channel() {
    let (tx, rx) = bounded(0);
    run_on(tx, rx);
}

#[test]
fn a_thousand_green_threads_on_an_unbounded_channel() {
    let (tx, rx) = unbounded();
    run_on(tx, rx);
}
