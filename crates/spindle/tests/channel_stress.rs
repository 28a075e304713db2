//! Stress: 1,000 green threads x 1,000 operations on one channel, many-to-one.
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
    common::run(Model::ManyToOne, move || {
        let half = THREADS / 2;
        let producers: Vec<_> = (0..half)
            .map(|p| {
                let tx = tx.clone();
                spindle::spawn(move || (0..OPS).for_each(|i| tx.send(p * OPS + i).unwrap()))
            })
            .collect();
        let consumers: Vec<_> = (0..half)
            .map(|_| {
                let rx = rx.clone();
                spindle::spawn(move || (0..OPS).map(|_| rx.recv().unwrap()).sum::<u64>())
            })
            .collect();
        producers.into_iter().for_each(|h| h.join().unwrap());
        let sum: u64 = consumers.into_iter().map(|h| h.join().unwrap()).sum();
        let n = half * OPS;
        assert_eq!(sum, n * (n - 1) / 2);
        assert!(rx.is_empty());
    });
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
