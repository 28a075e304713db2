//! `spindle::select!` and `spindle::channel::Select` under every model: ready arms,
//! blocking until a peer arrives (green and kernel threads), timeouts, default,
//! disconnection, rendezvous pairs, one channel in several arms, fairness, and a stress
//! test in which every message must be delivered exactly once.
//!
//! Tests that need the selecting thread to be blocked before its peer acts wait for that
//! event (a rendezvous send is ready exactly when a receiver waits: `Select::try_ready`),
//! never for a sleep.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::channel::{
    bounded, unbounded, Receiver, RecvError, Select, SendError, Sender, TryReadyError,
    TrySelectError, TrySendError,
};
use spindle::Model;

/// A message that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Returns once some thread waits to receive on the rendezvous channel of `tx` (a blocked
/// `recv` or a registered select): then a send into it is ready.
fn until_a_receiver_waits<T: Default>(tx: &Sender<T>) {
    assert_eq!(
        tx.capacity(),
        Some(0),
        "only a rendezvous send shows a waiting receiver"
    );
    let mut probe = Select::new();
    probe.send(tx, T::default());
    while probe.try_ready().is_err() {
        spindle::yield_now();
    }
}

/// Returns once some thread waits to send on the rendezvous channel of `rx`.
fn until_a_sender_waits<T>(rx: &Receiver<T>) {
    assert_eq!(rx.capacity(), Some(0));
    let mut probe = Select::new();
    probe.recv(rx);
    while probe.try_ready().is_err() {
        spindle::yield_now();
    }
}

cross_model! {
    fn the_ready_arm_is_chosen(_model) {
        let (tx1, rx1) = unbounded::<i32>();
        let (_tx2, rx2) = unbounded::<i32>();
        tx1.send(7).unwrap();
        let got = spindle::select! {
            recv(rx1) -> m => m.unwrap(),
            recv(rx2) -> _ => unreachable!("rx2 is empty"),
        };
        assert_eq!(got, 7);

        // A send arm into a channel with room, next to a receive that is not ready.
        let (tx3, rx3) = bounded::<&str>(1);
        spindle::select! {
            recv(rx2) -> _ => unreachable!(),
            send(tx3, "sent") -> res => assert_eq!(res, Ok(())),
        }
        assert_eq!(rx3.try_recv(), Ok("sent"));

        // Blocks with bodies and no commas; a body that breaks out of a loop.
        let mut rounds = 0;
        loop {
            rounds += 1;
            tx1.send(rounds).unwrap();
            spindle::select! {
                recv(rx1) -> m => {
                    if m == Ok(3) {
                        break;
                    }
                }
                recv(rx2) -> _ => { unreachable!() }
            }
        }
        assert_eq!(rounds, 3);
    }

    fn default_runs_only_when_nothing_is_ready(_model) {
        let (tx, rx) = bounded::<u8>(1);
        let ran_default = spindle::select! {
            recv(rx) -> _ => false,
            default => true,
        };
        assert!(ran_default);
        tx.send(1).unwrap();
        let got = spindle::select! {
            recv(rx) -> m => m,
            default => unreachable!("a message is buffered"),
        };
        assert_eq!(got, Ok(1));
        // Full: the send is not ready either.
        tx.send(2).unwrap();
        let ran_default = spindle::select! {
            send(tx, 3) -> _ => false,
            default => true,
        };
        assert!(ran_default);
        // A default with no operation at all.
        assert_eq!(spindle::select! { default => 5 }, 5);

        // The builder: try_select and try_ready.
        let (_tx0, rx0) = bounded::<u8>(0);
        let mut sel = Select::new();
        sel.recv(&rx0);
        assert_eq!(sel.try_select().err(), Some(TrySelectError));
        assert_eq!(sel.try_ready(), Err(TryReadyError));
        let r = sel.recv(&rx);
        assert_eq!(sel.try_ready(), Ok(r), "rx holds a message");
        assert_eq!(rx.len(), 1, "ready does not carry the operation out");
        let oper = sel.try_select().unwrap();
        assert_eq!(oper.index(), r);
        assert_eq!(oper.recv(&rx), Ok(2));
    }

    fn timeouts_expire_no_earlier_than_asked(_model) {
        let timeout = Duration::from_millis(30);
        let (tx, rx) = bounded::<u32>(0);
        let (_tx2, rx2) = unbounded::<u32>();
        let start = Instant::now();
        let timed_out = spindle::select! {
            recv(rx) -> _ => false,
            recv(rx2) -> _ => false,
            send(tx, 1) -> _ => false,
            default(timeout) => true,
        };
        assert!(timed_out);
        assert!(start.elapsed() >= timeout, "select returned early: {:?}", start.elapsed());

        let mut sel = Select::new();
        sel.recv(&rx);
        sel.send(&tx, 2);
        let start = Instant::now();
        assert!(sel.select_timeout(timeout).is_err());
        assert!(start.elapsed() >= timeout);
        let start = Instant::now();
        assert!(sel.ready_timeout(timeout).is_err());
        assert!(start.elapsed() >= timeout);
        assert!(sel.select_deadline(Instant::now()).is_err());

        // A timed wait that is served before its deadline reports the operation.
        let tx2 = tx.clone();
        let h = spindle::spawn(move || {
            until_a_receiver_waits(&tx2);
            tx2.send(9).unwrap();
        });
        let got = spindle::select! {
            recv(rx) -> m => m,
            default(Duration::from_secs(60)) => unreachable!("the sender comes"),
        };
        assert_eq!(got, Ok(9));
        h.join().unwrap();
        // Nothing was left registered: the channel behaves as before.
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
    }

    fn blocks_until_a_green_or_spawned_sender_arrives(_model) {
        for capacity in [0, 1, 8] {
            let (tx1, rx1) = bounded::<u64>(capacity);
            let (tx2, rx2) = bounded::<u64>(capacity);
            let h = spindle::spawn(move || {
                // Wait for the selecting thread to block, if we can see it; otherwise the
                // select may or may not be blocked yet, and must work either way.
                if capacity == 0 {
                    until_a_receiver_waits(&tx2);
                }
                tx2.send(42).unwrap();
                tx1
            });
            let got = spindle::select! {
                recv(rx1) -> m => m.map(|v| v + 1000),
                recv(rx2) -> m => m,
            };
            assert_eq!(got, Ok(42), "capacity {capacity}");
            drop(h.join().unwrap());
        }
    }

    fn blocks_until_a_kernel_thread_sender_arrives(_model) {
        let (tx1, rx1) = bounded::<u64>(0);
        let (tx2, rx2) = bounded::<u64>(0);
        let h = std::thread::spawn(move || {
            until_a_receiver_waits(&tx1);
            tx1.send(1).unwrap();
            until_a_receiver_waits(&tx2);
            tx2.send(2).unwrap();
        });
        for expected in [1, 2] {
            let got = spindle::select! {
                recv(rx1) -> m => m.unwrap(),
                recv(rx2) -> m => m.unwrap(),
            };
            assert_eq!(got, expected);
        }
        h.join().unwrap();
    }

    fn a_kernel_thread_selects_while_a_green_thread_sends(_model) {
        let (tx, rx) = bounded::<u64>(0);
        let (_tx_idle, rx_idle) = unbounded::<u64>();
        let (back_tx, back_rx) = bounded::<u64>(0);
        let h = std::thread::spawn(move || {
            let mut sum = 0;
            for _ in 0..100 {
                spindle::select! {
                    recv(rx) -> m => sum += m.unwrap(),
                    recv(rx_idle) -> _ => unreachable!(),
                }
            }
            // And a send from the kernel thread to the green one, through a select.
            spindle::select! {
                send(back_tx, sum) -> res => res.unwrap(),
                recv(rx_idle) -> _ => unreachable!(),
            }
        });
        for i in 1..=100 {
            tx.send(i).unwrap();
        }
        assert_eq!(back_rx.recv(), Ok(5050));
        h.join().unwrap();
    }

    fn disconnection_makes_an_arm_ready(_model) {
        // Receivers: senders gone.
        let (tx, rx) = unbounded::<u8>();
        let (_tx_idle, rx_idle) = unbounded::<u8>();
        drop(tx);
        let got = spindle::select! {
            recv(rx_idle) -> _ => unreachable!(),
            recv(rx) -> m => m,
        };
        assert_eq!(got, Err(RecvError));

        // Senders: receivers gone; the message comes back.
        let (tx, rx) = bounded::<String>(0);
        drop(rx);
        let got = spindle::select! {
            recv(rx_idle) -> _ => unreachable!(),
            send(tx, String::from("back")) -> res => res,
        };
        assert_eq!(got, Err(SendError(String::from("back"))));

        // A blocked select woken by disconnection.
        let (tx_a, rx_a) = bounded::<u8>(0);
        let (tx_b, rx_b) = bounded::<u8>(0);
        let h = spindle::spawn(move || {
            spindle::select! {
                recv(rx_a) -> m => ('a', m),
                recv(rx_b) -> m => ('b', m),
            }
        });
        until_a_receiver_waits(&tx_a);
        drop(tx_b);
        assert_eq!(h.join().unwrap(), ('b', Err(RecvError)));
        drop(tx_a);

        // A blocked send arm woken by disconnection gets its message back.
        let (tx_c, rx_c) = bounded::<String>(0);
        let h = spindle::spawn(move || {
            spindle::select! {
                send(tx_c, String::from("mine")) -> res => res,
                recv(rx_idle) -> _ => unreachable!(),
            }
        });
        until_a_sender_waits(&rx_c);
        drop(rx_c);
        assert_eq!(h.join().unwrap(), Err(SendError(String::from("mine"))));
    }

    fn rendezvous_pairs_meet(_model) {
        const ROUNDS: u64 = 2_000;
        // Two threads select on opposite ends of two rendezvous channels: each round,
        // exactly one of the two pairings happens, and both sides agree on which.
        let (a_to_b, b_from_a) = bounded::<u64>(0);
        let (b_to_a, a_from_b) = bounded::<u64>(0);
        let h = spindle::spawn(move || {
            let mut log = Vec::new();
            for i in 0..ROUNDS {
                log.push(spindle::select! {
                    recv(b_from_a) -> m => ('r', m.unwrap()),
                    send(b_to_a, i) -> res => { res.unwrap(); ('s', i) }
                });
            }
            log
        });
        let mut log = Vec::new();
        for i in 0..ROUNDS {
            log.push(spindle::select! {
                send(a_to_b, i) -> res => { res.unwrap(); ('s', i) }
                recv(a_from_b) -> m => ('r', m.unwrap()),
            });
        }
        let theirs = h.join().unwrap();
        for (i, (mine, theirs)) in log.iter().zip(&theirs).enumerate() {
            let i = i as u64;
            match (mine, theirs) {
                (('s', a), ('r', b)) | (('r', a), ('s', b)) => {
                    assert_eq!((*a, *b), (i, i), "round {i}");
                }
                other => panic!("round {i}: both sides did {other:?}"),
            }
        }
    }

    fn a_select_and_a_plain_operation_meet(_model) {
        // One side selects, the other uses plain send/recv; both orders of arrival.
        let (tx, rx) = bounded::<u32>(0);
        let (_idle_tx, idle_rx) = unbounded::<u32>();
        let rx2 = rx.clone();
        let h = spindle::spawn(move || (0..500).map(|_| rx2.recv().unwrap()).sum::<u32>());
        for i in 0..500 {
            spindle::select! {
                send(tx, i) -> res => res.unwrap(),
                recv(idle_rx) -> _ => unreachable!(),
            }
        }
        assert_eq!(h.join().unwrap(), (0..500).sum());
        let tx2 = tx.clone();
        let h = spindle::spawn(move || (0..500).for_each(|i| tx2.send(i).unwrap()));
        let mut sum = 0;
        for _ in 0..500 {
            spindle::select! {
                recv(rx) -> m => sum += m.unwrap(),
                recv(idle_rx) -> _ => unreachable!(),
            }
        }
        h.join().unwrap();
        assert_eq!(sum, (0..500).sum());
    }

    fn the_same_channel_in_several_arms(_model) {
        // Two receive arms on one channel: one message, one arm.
        let (tx, rx) = unbounded::<u8>();
        tx.send(1).unwrap();
        let got = spindle::select! {
            recv(rx) -> m => (1, m),
            recv(rx) -> m => (2, m),
        };
        assert!(matches!(got, (1 | 2, Ok(1))), "{got:?}");
        assert!(rx.is_empty());

        // A buffered channel with a send and a receive arm: only the ready one runs.
        let (tx, rx) = bounded::<u8>(1);
        let sent = spindle::select! {
            send(tx, 5) -> res => { res.unwrap(); true }
            recv(rx) -> _ => false,
        };
        assert!(sent, "the buffer was empty, so only the send was ready");
        let received = spindle::select! {
            send(tx, 6) -> _ => None,
            recv(rx) -> m => Some(m.unwrap()),
        };
        assert_eq!(received, Some(5), "the buffer was full, so only the receive was ready");

        // A rendezvous channel with both arms: the select must not match itself; a plain
        // receiver takes the send arm, a plain sender serves the receive arm.
        let (tx, rx) = bounded::<u8>(0);
        for (expected, peer_sends) in [("sent", false), ("received", true), ("sent", false)] {
            let (tx2, rx2) = (tx.clone(), rx.clone());
            let h = spindle::spawn(move || {
                if peer_sends {
                    until_a_receiver_waits(&tx2);
                    tx2.send(9).unwrap();
                    None
                } else {
                    until_a_sender_waits(&rx2);
                    Some(rx2.recv().unwrap())
                }
            });
            let what = spindle::select! {
                send(tx, 7) -> res => { res.unwrap(); "sent" }
                recv(rx) -> m => { assert_eq!(m, Ok(9)); "received" }
            };
            assert_eq!(what, expected);
            let peer = h.join().unwrap();
            assert_eq!(peer, if peer_sends { None } else { Some(7) });
        }
    }

    fn arms_that_are_not_selected_drop_their_messages(_model) {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx1, rx1) = unbounded();
        let (tx2, _rx2) = bounded(0);
        spindle::select! {
            send(tx1, Counted(drops.clone())) -> res => assert!(res.is_ok()),
            send(tx2, Counted(drops.clone())) -> _ => unreachable!("no receiver waits"),
        }
        assert_eq!(drops.load(SeqCst), 1, "the message of the arm not selected is dropped");
        drop(rx1.try_recv().unwrap());
        assert_eq!(drops.load(SeqCst), 2);
    }

    fn builder_selects_repeatedly_and_keeps_untaken_results(_model) {
        let (tx, rx) = unbounded::<u32>();
        let (out_tx, out_rx) = bounded::<u32>(0);
        let mut sel = Select::new();
        let r = sel.recv(&rx);
        let s = sel.send(&out_tx, 100);
        tx.send(1).unwrap();
        // Only the receive is ready (nobody receives from out_rx).
        // Its result is not taken: it is kept ...
        assert_eq!(sel.select().index(), r);
        let oper = sel.select();
        assert_eq!(oper.index(), r, "... and returned first");
        assert_eq!(oper.recv(&rx), Ok(1));

        // Now the send completes when a receiver comes; then it leaves the set.
        let h = spindle::spawn(move || out_rx.recv().unwrap());
        let oper = sel.select();
        assert_eq!(oper.index(), s);
        assert_eq!(oper.send(&out_tx), Ok(()));
        assert_eq!(h.join().unwrap(), 100);
        assert!(sel.try_select().is_err());
        tx.send(2).unwrap();
        assert_eq!(sel.ready(), r);
        sel.remove(r);
        assert!(sel.try_select().is_err(), "removed");
        assert_eq!(rx.try_recv(), Ok(2));
    }

    fn ready_blocks_until_an_operation_is_ready(_model) {
        let (tx, rx) = bounded::<u8>(0);
        let (tx_idle, rx_idle) = bounded::<u8>(0);
        // A sender arrives on a rendezvous channel: the receive becomes ready.
        let tx2 = tx.clone();
        let h = spindle::spawn(move || tx2.send(3).unwrap());
        let mut sel = Select::new();
        let r = sel.recv(&rx);
        sel.recv(&rx_idle);
        loop {
            let i = sel.ready();
            if i == r {
                if let Ok(m) = rx.try_recv() {
                    assert_eq!(m, 3);
                    break;
                }
            }
        }
        h.join().unwrap();
        // A receiver arrives: the send becomes ready.
        let rx2 = rx.clone();
        let h = spindle::spawn(move || rx2.recv().unwrap());
        let mut sel = Select::new();
        let s = sel.send(&tx, 0);
        sel.send(&tx_idle, 0);
        loop {
            let i = sel.ready();
            if i == s && tx.try_send(4).is_ok() {
                break;
            }
        }
        assert_eq!(h.join().unwrap(), 4);
    }

    fn ready_arms_are_chosen_fairly(_model) {
        const SELECTS: u32 = 100_000;
        let (tx1, rx1) = unbounded::<()>();
        let (tx2, rx2) = unbounded::<()>();
        tx1.send(()).unwrap();
        tx2.send(()).unwrap();
        let mut first = 0u32;
        for _ in 0..SELECTS {
            spindle::select! {
                recv(rx1) -> m => { m.unwrap(); first += 1; tx1.send(()).unwrap(); }
                recv(rx2) -> m => { m.unwrap(); tx2.send(()).unwrap(); }
            }
        }
        let share = f64::from(first) / f64::from(SELECTS);
        assert!((0.4..=0.6).contains(&share), "first arm chosen {share:.3} of the time");

        // The same with always-ready send arms, and through the builder.
        let mut sel = Select::new();
        sel.recv(&rx1);
        sel.recv(&rx2);
        let mut counts = [0u32; 2];
        for _ in 0..SELECTS {
            let oper = sel.select();
            let i = oper.index();
            counts[i] += 1;
            let (rx, tx) = if i == 0 { (&rx1, &tx1) } else { (&rx2, &tx2) };
            oper.recv(rx).unwrap();
            tx.send(()).unwrap();
        }
        let share = f64::from(counts[0]) / f64::from(SELECTS);
        assert!((0.4..=0.6).contains(&share), "builder: first chosen {share:.3}");
    }
}

/// Runs `work` on a kernel thread outside the runtime; the returned green thread ends when
/// it has. (A green thread must not wait in `std::thread::JoinHandle::join`: that would
/// block its worker, and in many-to-one every thread the kernel thread depends on.)
fn on_a_kernel_thread(work: impl FnOnce() + Send + 'static) -> spindle::JoinHandle<()> {
    let (done_tx, done_rx) = bounded::<()>(1);
    let h = std::thread::spawn(move || {
        work();
        done_tx.send(()).unwrap();
    });
    spindle::spawn(move || {
        done_rx.recv().unwrap();
        h.join().unwrap();
    })
}

/// Stress: producers and consumers of several kinds (select with and without timeouts,
/// the builder, plain operations; green and kernel threads) on four channels of every
/// flavour; every message must arrive exactly once (checked by count and sum).
fn stress(model: Model) {
    const PRODUCERS: u64 = if cfg!(debug_assertions) { 4 } else { 16 };
    const PER_PRODUCER: u64 = if cfg!(debug_assertions) { 500 } else { 5_000 };
    const CONSUMERS: usize = if cfg!(debug_assertions) { 4 } else { 16 };
    let total = PRODUCERS * PER_PRODUCER;
    common::run(model, move || {
        let (tx0, rx0) = bounded::<u64>(0);
        let (tx1, rx1) = bounded::<u64>(1);
        let (tx2, rx2) = bounded::<u64>(16);
        let (tx3, rx3) = unbounded::<u64>();
        let received = Arc::new(AtomicU64::new(0));
        let sum = Arc::new(AtomicU64::new(0));

        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let (tx0, tx1, tx2, tx3) = (tx0.clone(), tx1.clone(), tx2.clone(), tx3.clone());
            let work = move || {
                for i in 0..PER_PRODUCER {
                    let v = p * PER_PRODUCER + i + 1;
                    match p % 4 {
                        // Blocking select over all four channels.
                        0 | 1 => spindle::select! {
                            send(tx0, v) -> r => r.unwrap(),
                            send(tx1, v) -> r => r.unwrap(),
                            send(tx2, v) -> r => r.unwrap(),
                            send(tx3, v) -> r => r.unwrap(),
                        },
                        // Select over the bounded ones with a tiny timeout, retried: a
                        // send claimed while timing out must count as sent, not retried.
                        2 => loop {
                            let sent = spindle::select! {
                                send(tx0, v) -> r => { r.unwrap(); true }
                                send(tx1, v) -> r => { r.unwrap(); true }
                                send(tx2, v) -> r => { r.unwrap(); true }
                                default(Duration::from_micros(20)) => false,
                            };
                            if sent {
                                break;
                            }
                        },
                        // Plain sends, alternating between rendezvous and buffered.
                        _ => {
                            if i % 2 == 0 {
                                tx0.send(v).unwrap();
                            } else {
                                tx2.send(v).unwrap();
                            }
                        }
                    }
                }
            };
            if p == 1 {
                // One producer is a kernel thread outside the runtime.
                producers.push(on_a_kernel_thread(work));
            } else {
                producers.push(spindle::spawn(work));
            }
        }
        drop((tx0, tx1, tx2, tx3));

        let mut consumers = Vec::new();
        for c in 0..CONSUMERS {
            let (rx0, rx1, rx2, rx3) = (rx0.clone(), rx1.clone(), rx2.clone(), rx3.clone());
            let (received, sum) = (received.clone(), sum.clone());
            let take = move |v: u64| {
                sum.fetch_add(v, SeqCst);
                received.fetch_add(1, SeqCst);
            };
            let work = move || match c % 4 {
                // Blocking select; stops at the first disconnected arm (what is left in
                // the other channels is drained by the others, or at the end).
                0 => loop {
                    let v = spindle::select! {
                        recv(rx0) -> m => m,
                        recv(rx1) -> m => m,
                        recv(rx2) -> m => m,
                        recv(rx3) -> m => m,
                    };
                    match v {
                        Ok(v) => take(v),
                        Err(RecvError) => break,
                    }
                },
                // Select with a tiny timeout: a message handed over while timing out must
                // be reported, not lost.
                1 => loop {
                    let v = spindle::select! {
                        recv(rx0) -> m => Some(m),
                        recv(rx1) -> m => Some(m),
                        recv(rx2) -> m => Some(m),
                        recv(rx3) -> m => Some(m),
                        default(Duration::from_micros(20)) => None,
                    };
                    match v {
                        Some(Ok(v)) => take(v),
                        Some(Err(RecvError)) => break,
                        None => {}
                    }
                },
                // The builder: drops disconnected arms, stops when none is left.
                2 => {
                    let rxs = [&rx0, &rx1, &rx2, &rx3];
                    let mut sel = Select::new();
                    for rx in rxs {
                        sel.recv(rx);
                    }
                    let mut live = rxs.len();
                    while live > 0 {
                        let oper = sel.select();
                        let i = oper.index();
                        match oper.recv(rxs[i]) {
                            Ok(v) => take(v),
                            Err(RecvError) => {
                                sel.remove(i);
                                live -= 1;
                            }
                        }
                    }
                }
                // Plain receives on the rendezvous channel.
                _ => {
                    while let Ok(v) = rx0.recv() {
                        take(v);
                    }
                }
            };
            if c == 2 {
                consumers.push(on_a_kernel_thread(work));
            } else {
                consumers.push(spindle::spawn(work));
            }
        }
        producers.into_iter().for_each(|h| h.join().unwrap());
        consumers.into_iter().for_each(|h| h.join().unwrap());
        for rx in [&rx0, &rx1, &rx2, &rx3] {
            for v in rx.try_iter() {
                sum.fetch_add(v, SeqCst);
                received.fetch_add(1, SeqCst);
            }
        }
        assert_eq!(received.load(SeqCst), total, "messages lost or duplicated");
        assert_eq!(sum.load(SeqCst), total * (total + 1) / 2);
    });
}

#[test]
fn stress_many_to_one() {
    stress(Model::ManyToOne);
}

#[test]
fn stress_one_to_one() {
    stress(Model::OneToOne);
}

#[test]
fn stress_many_to_many() {
    stress(Model::ManyToMany { workers: 4 });
}
