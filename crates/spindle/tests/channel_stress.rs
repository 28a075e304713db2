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

/// A channel made on a many-to-one green thread is biased to its kernel thread; kernel
/// threads that join while green threads send and receive on it revoke the bias. Many
/// rounds, each on a new channel, so that revocations land in the middle of the green
/// threads' sections: every message arrives exactly once.
#[test]
fn kernel_threads_join_a_busy_many_to_one_channel() {
    const ROUNDS: u64 = if cfg!(debug_assertions) { 20 } else { 1_000 };
    const PER_SENDER: u64 = 500;
    common::run(Model::ManyToOne, || {
        for round in 0..ROUNDS {
            let (tx, rx) = bounded::<u64>(if round % 2 == 0 { 8 } else { 0 });
            // Two green senders and one green receiver start on the biased channel.
            let green_senders: Vec<_> = (0..2u64)
                .map(|s| {
                    let tx = tx.clone();
                    spindle::spawn(move || {
                        (0..PER_SENDER).for_each(|i| tx.send(s * PER_SENDER + i).unwrap())
                    })
                })
                .collect();
            let green_rx = rx.clone();
            let green_receiver = spindle::spawn(move || {
                let mut sum = 0;
                while let Ok(v) = green_rx.recv() {
                    sum += v;
                }
                sum
            });
            // Once messages flow, a kernel sender and a kernel receiver join.
            let first = rx.recv().unwrap();
            let kernel_tx = tx.clone();
            let kernel_sender = std::thread::spawn(move || {
                (0..PER_SENDER).for_each(|i| kernel_tx.send(2 * PER_SENDER + i).unwrap())
            });
            let kernel_rx = rx.clone();
            let kernel_receiver = std::thread::spawn(move || {
                let mut sum = 0;
                while let Ok(v) = kernel_rx.recv() {
                    sum += v;
                }
                sum
            });
            drop((tx, rx));
            green_senders.into_iter().for_each(|h| h.join().unwrap());
            kernel_sender.join().unwrap();
            let sum = first + green_receiver.join().unwrap() + kernel_receiver.join().unwrap();
            let n = 3 * PER_SENDER;
            assert_eq!(sum, n * (n - 1) / 2, "round {round}");
        }
    });
}
