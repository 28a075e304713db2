//! Several producers and consumers on one channel, green and kernel threads mixed; every
//! message must arrive exactly once (checked by count and sum).

mod common;

use std::time::Duration;

use common::join_kernel;
use spindle::channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use spindle::Model;

/// A channel's two ends.
type Pair = (Sender<u64>, Receiver<u64>);

/// The channel shapes every test runs on.
fn flavours() -> Vec<(&'static str, Pair)> {
    vec![
        ("rendezvous", bounded(0)),
        ("bounded(1)", bounded(1)),
        ("bounded(16)", bounded(16)),
        ("unbounded", unbounded()),
    ]
}

/// Producer `p` of `producers` sends `per` distinct numbers; returns the expected totals.
fn produce(tx: &Sender<u64>, p: u64, per: u64) {
    for i in 0..per {
        tx.send(p * per + i).unwrap();
    }
}

fn expected(producers: u64, per: u64) -> (u64, u64) {
    let n = producers * per;
    (n, n * (n - 1) / 2)
}

/// Receives until disconnected; returns (count, sum).
fn consume(rx: &Receiver<u64>) -> (u64, u64) {
    rx.iter().fold((0, 0), |(c, s), v| (c + 1, s + v))
}

cross_model! {
    fn mpmc_every_message_once(model) {
        let per = if model == Model::OneToOne { 2_000 } else { 10_000 };
        for (name, (tx, rx)) in flavours() {
            let producers: Vec<_> = (0..4)
                .map(|p| {
                    let tx = tx.clone();
                    spindle::spawn(move || produce(&tx, p, per))
                })
                .collect();
            let consumers: Vec<_> = (0..4)
                .map(|_| {
                    let rx = rx.clone();
                    spindle::spawn(move || consume(&rx))
                })
                .collect();
            drop((tx, rx));
            producers.into_iter().for_each(|h| h.join().unwrap());
            let total = consumers
                .into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |(c, s), (c2, s2)| (c + c2, s + s2));
            assert_eq!(total, expected(4, per), "{name}");
        }
    }

    fn green_and_kernel_threads_on_both_ends(_model) {
        for (name, (tx, rx)) in flavours() {
            let per = 5_000;
            // Producers: 2 kernel, 2 green. Consumers: 2 kernel, 1 green, and this thread.
            let kp: Vec<_> = (0..2)
                .map(|p| {
                    let tx = tx.clone();
                    std::thread::spawn(move || produce(&tx, p, per))
                })
                .collect();
            let gp: Vec<_> = (2..4)
                .map(|p| {
                    let tx = tx.clone();
                    spindle::spawn(move || produce(&tx, p, per))
                })
                .collect();
            let kc: Vec<_> = (0..2)
                .map(|_| {
                    let rx = rx.clone();
                    std::thread::spawn(move || consume(&rx))
                })
                .collect();
            let gc = {
                let rx = rx.clone();
                spindle::spawn(move || consume(&rx))
            };
            drop(tx);
            let mine = consume(&rx);
            gp.into_iter().for_each(|h| h.join().unwrap());
            kp.into_iter().for_each(join_kernel);
            let mut total = mine;
            for (c, s) in kc.into_iter().map(join_kernel).chain([gc.join().unwrap()]) {
                total = (total.0 + c, total.1 + s);
            }
            assert_eq!(total, expected(4, per), "{name}");
        }
    }

    fn ping_pong_between_a_green_and_a_kernel_thread(_model) {
        for (name, (to_echo, echo_rx)) in flavours() {
            let (echo_tx, from_echo) = bounded(1);
            let echo = std::thread::spawn(move || {
                for v in echo_rx {
                    echo_tx.send(v + 1).unwrap();
                }
            });
            for i in 0..2_000u64 {
                to_echo.send(i).unwrap();
                assert_eq!(from_echo.recv().unwrap(), i + 1, "{name}");
            }
            drop(to_echo);
            join_kernel(echo);
        }
    }

    fn timeouts_racing_with_sends_lose_nothing(model) {
        // Consumers poll with tiny timeouts while producers send: timed-out receives must
        // neither swallow a message nor receive one twice. (An expired timeout may return
        // without switching, like a `try_`; so the retry loops yield, as any polling loop
        // must under cooperative scheduling.)
        let per = if model == Model::OneToOne { 2_000 } else { 10_000 };
        for (name, (tx, rx)) in flavours() {
            let producers: Vec<_> = (0..3)
                .map(|p| {
                    let tx = tx.clone();
                    spindle::spawn(move || {
                        for i in 0..per {
                            // Senders time out too, and retry with the message they got
                            // back, waiting longer each time (so that a rendezvous is sure
                            // to happen however slow the build).
                            let mut m = p * per + i;
                            for retry in 0.. {
                                let timeout = Duration::from_micros(i % 7 + retry * retry);
                                match tx.send_timeout(m, timeout) {
                                    Ok(()) => break,
                                    Err(e) => {
                                        m = e.into_inner();
                                        spindle::yield_now();
                                    }
                                }
                            }
                        }
                    })
                })
                .collect();
            let consumers: Vec<_> = (0..3)
                .map(|k| {
                    let rx = rx.clone();
                    spindle::spawn(move || {
                        let (mut c, mut s) = (0u64, 0u64);
                        let mut i = k;
                        loop {
                            i += 1;
                            match rx.recv_timeout(Duration::from_micros(i % 5)) {
                                Ok(v) => (c, s) = (c + 1, s + v),
                                Err(RecvTimeoutError::Timeout) => spindle::yield_now(),
                                Err(RecvTimeoutError::Disconnected) => return (c, s),
                            }
                        }
                    })
                })
                .collect();
            drop((tx, rx));
            producers.into_iter().for_each(|h| h.join().unwrap());
            let total = consumers
                .into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |(c, s), (c2, s2)| (c + c2, s + s2));
            assert_eq!(total, expected(3, per), "{name}");
        }
    }
}
