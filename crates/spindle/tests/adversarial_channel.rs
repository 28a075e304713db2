//! Adversarial tests of `spindle::channel`: exactly-once delivery and drop of messages,
//! crossbeam-channel's disconnection rules, timeouts that never fire early and never lose
//! a served message, `select!` corner cases (one channel in several arms, disconnected
//! channels, zero timeouts, more than 32 operations), the biased lock of a channel made on
//! a many-to-one green thread and then used elsewhere, runtimes dropped while their threads
//! are blocked in channel operations, panicking and re-entrant message destructors,
//! zero-sized messages and capacity edge cases.
//!
//! Tests that need a thread to be blocked before acting wait for that event (the thread
//! shows as parked on a channel in `spindle::debug::threads()`, or a rendezvous peer shows
//! as ready to `Select::try_ready`), never for a sleep.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::join_kernel;
use spindle::channel::{
    bounded, unbounded, Receiver, RecvError, RecvTimeoutError, Select, SendError, SendTimeoutError,
    Sender, TryRecvError, TrySendError,
};
use spindle::debug::ThreadState;
use spindle::{Model, Runtime, ThreadId, WaitReason};

// ---------------------------------------------------------------------------------------
// Helpers.

/// One drop counter per message: detects a message dropped twice or never.
struct Ledger {
    drops: Vec<AtomicU32>,
    made: AtomicUsize,
}

impl Ledger {
    fn new(capacity: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            drops: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            made: AtomicUsize::new(0),
        })
    }

    fn make(self: &Arc<Ledger>) -> Msg {
        let id = self.made.fetch_add(1, SeqCst);
        assert!(id < self.drops.len(), "ledger too small");
        Msg {
            id,
            ledger: self.clone(),
        }
    }

    fn made(&self) -> usize {
        self.made.load(SeqCst)
    }

    fn dropped(&self) -> usize {
        (0..self.made())
            .filter(|&i| self.drops[i].load(SeqCst) > 0)
            .count()
    }

    fn drops_of(&self, id: usize) -> u32 {
        self.drops[id].load(SeqCst)
    }

    /// Every message made so far was dropped exactly once.
    fn assert_each_dropped_once(&self) {
        for i in 0..self.made() {
            let n = self.drops[i].load(SeqCst);
            assert_eq!(n, 1, "message {i} was dropped {n} times");
        }
    }

    /// No message was dropped more than once.
    fn assert_no_double_drop(&self) {
        for i in 0..self.made() {
            let n = self.drops[i].load(SeqCst);
            assert!(n <= 1, "message {i} was dropped {n} times");
        }
    }
}

/// A message that records its drop in its ledger.
struct Msg {
    id: usize,
    ledger: Arc<Ledger>,
}

impl Drop for Msg {
    fn drop(&mut self) {
        self.ledger.drops[self.id].fetch_add(1, SeqCst);
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Msg({})", self.id)
    }
}

/// Whether the thread `id` is parked on a channel operation (send, recv or select).
fn parked_on_a_channel(id: ThreadId) -> bool {
    spindle::debug::threads().iter().any(|t| {
        t.id == id
            && matches!(
                t.state,
                ThreadState::Parked {
                    reason: WaitReason::ChannelSend
                        | WaitReason::ChannelRecv
                        | WaitReason::ChannelSelect,
                    ..
                }
            )
    })
}

/// Returns once every thread of `ids` is parked on a channel operation; panics after 20 s.
/// Polls `spindle::debug::threads()` (an event, not a guess about timing).
fn until_parked(ids: &[ThreadId]) {
    let give_up = Instant::now() + Duration::from_secs(20);
    for &id in ids {
        while !parked_on_a_channel(id) {
            assert!(
                Instant::now() < give_up,
                "thread {id:?} never parked on a channel"
            );
            if spindle::current().is_green() {
                spindle::sleep(Duration::from_millis(1));
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Returns once some thread waits to receive on the rendezvous channel of `tx`.
fn until_a_receiver_waits<T>(tx: &Sender<T>, probe_message: impl Fn() -> T) {
    assert_eq!(tx.capacity(), Some(0));
    let mut probe = Select::new();
    probe.send(tx, probe_message());
    let give_up = Instant::now() + Duration::from_secs(20);
    while probe.try_ready().is_err() {
        assert!(Instant::now() < give_up, "no receiver came");
        spindle::yield_now();
    }
}

/// Returns once some thread waits to send on the rendezvous channel of `rx`.
fn until_a_sender_waits<T>(rx: &Receiver<T>) {
    assert_eq!(rx.capacity(), Some(0));
    let mut probe = Select::new();
    probe.recv(rx);
    let give_up = Instant::now() + Duration::from_secs(20);
    while probe.try_ready().is_err() {
        assert!(Instant::now() < give_up, "no sender came");
        spindle::yield_now();
    }
}

fn runtime(model: Model) -> Runtime {
    Runtime::builder().model(model).build().unwrap()
}

// ---------------------------------------------------------------------------------------
// Behaviour under every model.

cross_model! {
    fn zero_sized_messages(_model) {
        let (tx, rx) = unbounded::<()>();
        for _ in 0..10_000 {
            tx.send(()).unwrap();
        }
        assert_eq!(rx.len(), 10_000);
        assert_eq!(rx.try_iter().count(), 10_000);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

        let (tx, rx) = bounded::<()>(1);
        tx.send(()).unwrap();
        assert!(tx.is_full());
        assert_eq!(tx.try_send(()), Err(TrySendError::Full(())));
        assert_eq!(rx.recv(), Ok(()));
        assert!(rx.is_empty());

        for cap in [0, 1, 3] {
            let (tx, rx) = bounded::<()>(cap);
            let h = spindle::spawn(move || (0..2_000).for_each(|_| tx.send(()).unwrap()));
            assert_eq!(rx.iter().count(), 2_000, "bounded({cap})");
            h.join().unwrap();
        }
    }

    fn capacity_len_and_is_full_edges(_model) {
        let (tx, rx) = bounded::<u8>(1);
        assert_eq!((tx.capacity(), rx.capacity()), (Some(1), Some(1)));
        assert!(tx.is_empty() && !tx.is_full());
        tx.try_send(1).unwrap();
        assert!(tx.is_full() && rx.is_full());
        assert_eq!((tx.len(), rx.len()), (1, 1));
        assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
        assert_eq!(tx.send_timeout(3, Duration::ZERO), Err(SendTimeoutError::Timeout(3)));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::ZERO), Err(RecvTimeoutError::Timeout));
        assert!(rx.is_empty() && !rx.is_full());

        // A capacity far beyond what is allocated up front.
        let (tx, rx) = bounded::<usize>(usize::MAX);
        assert_eq!(tx.capacity(), Some(usize::MAX));
        for i in 0..5_000 {
            tx.try_send(i).unwrap();
        }
        assert!(!tx.is_full());
        assert_eq!(rx.len(), 5_000);
        assert!(rx.try_iter().eq(0..5_000));

        let (tx, rx) = unbounded::<u8>();
        assert_eq!(tx.capacity(), None);
        assert!(!tx.is_full());
        drop(rx);
        assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));
        assert_eq!(tx.send(5), Err(SendError(5)));
        assert_eq!(tx.send_timeout(6, Duration::from_secs(5)), Err(SendTimeoutError::Disconnected(6)));

        // Rendezvous: always full and empty; try operations need a waiting peer.
        let (tx, rx) = bounded::<u8>(0);
        assert_eq!(tx.capacity(), Some(0));
        assert!(tx.is_full() && rx.is_empty());
        assert_eq!(rx.len(), 0);
        assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        let rx2 = rx.clone();
        let h = spindle::spawn(move || rx2.recv());
        until_a_receiver_waits(&tx, || 0);
        assert_eq!(tx.try_send(7), Ok(()));
        assert_eq!(h.join().unwrap(), Ok(7));
        let tx2 = tx.clone();
        let h = spindle::spawn(move || tx2.send(8));
        until_a_sender_waits(&rx);
        assert_eq!(rx.try_recv(), Ok(8));
        h.join().unwrap().unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Err(RecvTimeoutError::Disconnected));
    }

    fn len_counts_the_buffer_not_the_waiting_senders(_model) {
        let (tx, rx) = bounded::<u32>(2);
        tx.send(0).unwrap();
        tx.send(1).unwrap();
        let senders: Vec<_> = (2..4)
            .map(|i| {
                let tx = tx.clone();
                spindle::spawn(move || tx.send(i).unwrap())
            })
            .collect();
        let ids: Vec<_> = senders.iter().map(|h| h.thread().id()).collect();
        until_parked(&ids);
        assert_eq!(rx.len(), 2);
        assert!(rx.is_full());
        // Each receive moves a waiting sender's message into the buffer: still full.
        let first = rx.recv().unwrap();
        assert_eq!(first, 0);
        assert_eq!(rx.len(), 2);
        assert!(tx.is_full());
        let rest: Vec<u32> = (0..3).map(|_| rx.recv().unwrap()).collect();
        senders.into_iter().for_each(|h| h.join().unwrap());
        let mut rest_sorted = rest.clone();
        rest_sorted.sort_unstable();
        assert_eq!(rest_sorted, [1, 2, 3]);
        assert_eq!(rest[0], 1, "the buffered message comes before the waiting senders'");
        assert!(rx.is_empty());
    }

    fn buffered_messages_dropped_once_even_when_one_drop_panics(_model) {
        struct Bomb {
            armed: bool,
            inner: Msg,
        }
        impl Drop for Bomb {
            fn drop(&mut self) {
                if self.armed {
                    panic!("bomb {}", self.inner.id);
                }
            }
        }
        let ledger = Ledger::new(16);
        let (tx, rx) = unbounded::<Bomb>();
        for i in 0..10 {
            tx.send(Bomb { armed: i == 3, inner: ledger.make() }).unwrap();
        }
        let dropped = catch_unwind(AssertUnwindSafe(move || drop(rx)));
        assert!(dropped.is_err(), "the bomb's panic comes through");
        // The message whose destructor panicked still dropped its fields; every other one
        // was dropped once.
        ledger.assert_each_dropped_once();
        // The channel is still usable: the receivers are gone.
        match tx.send(Bomb { armed: false, inner: ledger.make() }) {
            Err(SendError(b)) => drop(b),
            Ok(()) => panic!("sent into a channel without receivers"),
        }
        assert!(tx.is_empty());
        drop(tx);
        ledger.assert_each_dropped_once();
    }

    fn message_destructors_may_use_their_own_channel(_model) {
        // A message whose destructor sends on its own channel and reads its length: it
        // must never run under the channel's lock (that would spin forever or panic).
        struct Echo {
            tx: Option<Sender<Echo>>,
            inner: Msg,
        }
        impl Drop for Echo {
            fn drop(&mut self) {
                if let Some(tx) = self.tx.take() {
                    let _ = tx.len();
                    let _ = tx.is_full();
                    match tx.try_send(Echo { tx: None, inner: self.inner.ledger.make() }) {
                        Ok(()) => {}
                        Err(e) => drop(e.into_inner()),
                    }
                }
            }
        }
        let ledger = Ledger::new(64);

        // Dropped because the receivers went away (buffered), while the senders live.
        let (tx, rx) = bounded::<Echo>(4);
        for _ in 0..4 {
            tx.send(Echo { tx: Some(tx.clone()), inner: ledger.make() }).unwrap();
        }
        drop(rx);
        assert!(tx.is_empty());
        drop(tx);
        ledger.assert_each_dropped_once();

        // The last sender travels inside the channel: dropping the receiver drops it, and
        // its drop disconnects the channel it sits in.
        let (tx, rx) = unbounded::<Echo>();
        let tx2 = tx.clone();
        tx.send(Echo { tx: Some(tx2), inner: ledger.make() }).unwrap();
        drop(tx);
        drop(rx);
        ledger.assert_each_dropped_once();

        // Handed back by a send that found the receivers gone.
        let (tx, rx) = bounded::<Echo>(0);
        drop(rx);
        let back = tx.send(Echo { tx: Some(tx.clone()), inner: ledger.make() }).unwrap_err();
        drop(back);
        ledger.assert_each_dropped_once();

        // The message of a select arm that was not selected.
        let (tx, rx) = bounded::<Echo>(1);
        let (tx_full, _rx_full) = bounded::<Echo>(0);
        spindle::select! {
            send(tx, Echo { tx: Some(tx.clone()), inner: ledger.make() }) -> r => assert!(r.is_ok()),
            send(tx_full, Echo { tx: Some(tx_full.clone()), inner: ledger.make() }) -> _ => unreachable!(),
        }
        // The unselected arm's destructor tried a rendezvous send (nobody waits): dropped.
        assert_eq!(rx.len(), 1);
        drop(rx.recv().unwrap());
        // That drop sent an echo into the channel.
        assert_eq!(rx.len(), 1);
        drop(rx);
        drop((tx, tx_full));
        ledger.assert_each_dropped_once();

        // Taken back from a timed-out send.
        let (tx, rx) = bounded::<Echo>(0);
        let back = tx
            .send_timeout(Echo { tx: Some(tx.clone()), inner: ledger.make() }, Duration::from_millis(1))
            .unwrap_err();
        assert!(back.is_timeout());
        drop(back);
        drop((tx, rx));
        ledger.assert_each_dropped_once();
    }

    fn a_select_with_one_channel_in_two_arms_is_woken_once_by_disconnection(_model) {
        // Two receive arms on one channel, blocked: the last sender leaves. Exactly one arm
        // runs, with the error.
        let (tx, rx) = bounded::<u8>(0);
        let (_idle_tx, idle_rx) = unbounded::<u8>();
        let h = spindle::spawn(move || {
            spindle::select! {
                recv(rx) -> m => (1, m),
                recv(idle_rx) -> _ => unreachable!(),
                recv(rx) -> m => (2, m),
            }
        });
        until_a_receiver_waits(&tx, || 0);
        drop(tx);
        let (arm, got) = h.join().unwrap();
        assert!(arm == 1 || arm == 2);
        assert_eq!(got, Err(RecvError));

        // Two send arms on one rendezvous channel, blocked: the receiver leaves. One arm
        // gets its message back; the other's is dropped by the select; none is lost.
        let ledger = Ledger::new(8);
        let (tx, rx) = bounded::<Msg>(0);
        let l2 = ledger.clone();
        let h = spindle::spawn(move || {
            let back = spindle::select! {
                send(tx, l2.make()) -> r => r.unwrap_err().into_inner(),
                send(tx, l2.make()) -> r => r.unwrap_err().into_inner(),
            };
            assert_eq!(l2.dropped(), 1, "the other arm's message was dropped");
            back.id
        });
        until_a_sender_waits(&rx);
        drop(rx);
        let id = h.join().unwrap();
        assert!(id < 2);
        ledger.assert_each_dropped_once();
    }

    fn send_and_receive_arms_on_one_rendezvous_channel_never_match_each_other(_model) {
        let ledger = Ledger::new(2_100);
        let (tx, rx) = bounded::<Msg>(0);
        for _ in 0..1_000 {
            let ran_default = spindle::select! {
                send(tx, ledger.make()) -> _ => false,
                recv(rx) -> _ => false,
                default => true,
            };
            assert!(ran_default);
            let timed_out = spindle::select! {
                send(tx, ledger.make()) -> _ => false,
                recv(rx) -> _ => false,
                default(Duration::from_micros(1)) => true,
            };
            assert!(timed_out);
        }
        ledger.assert_each_dropped_once();
    }

    fn zero_timeouts_still_take_what_is_ready(_model) {
        // A sender blocked on a rendezvous channel is ready for a receive with a zero
        // timeout, in recv_timeout, select! and Select.
        let (tx, rx) = bounded::<u32>(0);
        let tx2 = tx.clone();
        let h = spindle::spawn(move || (0..3).for_each(|i| tx2.send(i).unwrap()));
        until_a_sender_waits(&rx);
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(0));
        until_a_sender_waits(&rx);
        let got = spindle::select! {
            recv(rx) -> m => m,
            default(Duration::ZERO) => panic!("a sender waits: the receive is ready"),
        };
        assert_eq!(got, Ok(1));
        until_a_sender_waits(&rx);
        let mut sel = Select::new();
        let r = sel.recv(&rx);
        let oper = sel.select_deadline(Instant::now() - Duration::from_millis(5)).unwrap();
        assert_eq!(oper.index(), r);
        assert_eq!(oper.recv(&rx), Ok(2));
        h.join().unwrap();

        // And a receiver blocked on it is ready for a send with a zero timeout.
        let rx2 = rx.clone();
        let h = spindle::spawn(move || (0..2).map(|_| rx2.recv().unwrap()).collect::<Vec<_>>());
        until_a_receiver_waits(&tx, || 0);
        assert_eq!(tx.send_timeout(10, Duration::ZERO), Ok(()));
        until_a_receiver_waits(&tx, || 0);
        spindle::select! {
            send(tx, 11) -> r => r.unwrap(),
            default(Duration::ZERO) => panic!("a receiver waits: the send is ready"),
        }
        assert_eq!(h.join().unwrap(), [10, 11]);

        // Nothing ready: a zero timeout reports the timeout and gives the message back.
        assert_eq!(tx.send_timeout(12, Duration::ZERO), Err(SendTimeoutError::Timeout(12)));
        assert!(Select::new().select_timeout(Duration::ZERO).is_err());
    }

    fn timed_operations_never_end_early(_model) {
        let wait = Duration::from_millis(30);
        let (tx, rx) = bounded::<u8>(0);
        let t = Instant::now();
        assert_eq!(rx.recv_timeout(wait), Err(RecvTimeoutError::Timeout));
        assert!(t.elapsed() >= wait, "recv_timeout returned after {:?}", t.elapsed());
        let t = Instant::now();
        assert_eq!(tx.send_timeout(1, wait), Err(SendTimeoutError::Timeout(1)));
        assert!(t.elapsed() >= wait, "send_timeout returned after {:?}", t.elapsed());
        let t = Instant::now();
        spindle::select! {
            recv(rx) -> _ => unreachable!(),
            send(tx, 2) -> _ => unreachable!(),
            default(wait) => {}
        }
        assert!(t.elapsed() >= wait, "select! returned after {:?}", t.elapsed());
        let mut sel = Select::new();
        sel.recv(&rx);
        let t = Instant::now();
        assert!(sel.ready_timeout(wait).is_err());
        assert!(t.elapsed() >= wait, "ready_timeout returned after {:?}", t.elapsed());
        // No live operation at all (the only send arm is removed): the deadline still holds.
        let mut sel = Select::new();
        let s = sel.send(&tx, 3);
        sel.remove(s);
        let t = Instant::now();
        assert!(sel.select_timeout(wait).is_err());
        assert!(t.elapsed() >= wait, "an empty select_timeout returned after {:?}", t.elapsed());
    }

    fn a_select_over_more_than_32_operations(_model) {
        const N: usize = 40;
        let pairs: Vec<_> = (0..N).map(|_| bounded::<usize>(0)).collect();
        let (senders, receivers): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        // The last channel gets a message from a kernel thread once the select waits.
        let last = senders[N - 1].clone();
        let k = std::thread::spawn(move || last.send(N - 1).unwrap());
        let mut sel = Select::new();
        for rx in &receivers {
            sel.recv(rx);
        }
        let oper = sel.select();
        let i = oper.index();
        assert_eq!(i, N - 1);
        assert_eq!(oper.recv(&receivers[i]), Ok(N - 1));
        join_kernel(k);
        // Every channel's sender gone but one: a disconnected operation is ready.
        drop(senders);
        let oper = sel.select();
        let i = oper.index();
        assert_eq!(oper.recv(&receivers[i]), Err(RecvError));
    }

    fn select_send_arm_on_a_full_channel_keeps_fifo_order(_model) {
        let (tx, rx) = bounded::<u32>(1);
        tx.send(0).unwrap();
        let tx2 = tx.clone();
        let (_idle_tx, idle_rx) = unbounded::<u32>();
        let h = spindle::spawn(move || {
            spindle::select! {
                send(tx2, 1) -> r => r.unwrap(),
                recv(idle_rx) -> _ => unreachable!(),
            }
        });
        until_parked(&[h.thread().id()]);
        // The receive frees the slot and moves the select's message in, behind it.
        assert_eq!(rx.recv(), Ok(0));
        h.join().unwrap();
        assert_eq!(rx.len(), 1);
        assert_eq!(rx.try_recv(), Ok(1));
    }

    fn iterators_drain_then_end(_model) {
        let (tx, rx) = bounded::<u32>(2);
        let k = std::thread::spawn(move || (0..100).for_each(|i| tx.send(i).unwrap()));
        assert!(rx.into_iter().eq(0..100));
        join_kernel(k);
        let (tx, rx) = unbounded::<u32>();
        assert_eq!(rx.try_iter().next(), None, "try_iter does not block");
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        drop(tx);
        assert!(rx.iter().eq([1, 2]));
        assert_eq!(rx.iter().next(), None, "fused after disconnection");
    }

    fn timed_select_sends_racing_with_receivers_lose_nothing(model) {
        // Selecting threads offer messages with short timeouts on two rendezvous channels;
        // receivers (green and kernel) take them with short timeouts. Every message is
        // either received once or handed back once.
        const PER: usize = if cfg!(debug_assertions) { 200 } else { 2_000 };
        let ledger = Ledger::new(4 * PER);
        let (tx_a, rx_a) = bounded::<Msg>(0);
        let (tx_b, rx_b) = bounded::<Msg>(0);
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut handed_back = Vec::new();
        let mut senders = Vec::new();
        for s in 0..2 {
            let (tx_a, tx_b, ledger) = (tx_a.clone(), tx_b.clone(), ledger.clone());
            senders.push(spindle::spawn(move || {
                let mut back = Vec::new();
                for i in 0..PER {
                    let timeout = Duration::from_micros(((i * 7 + s) % 50) as u64);
                    let (a, b) = (ledger.make(), ledger.make());
                    let (ida, idb) = (a.id, b.id);
                    spindle::select! {
                        send(tx_a, a) -> r => { r.unwrap(); back.push(idb); }
                        send(tx_b, b) -> r => { r.unwrap(); back.push(ida); }
                        default(timeout) => { back.push(ida); back.push(idb); }
                    }
                }
                back
            }));
        }
        drop((tx_a, tx_b));
        let recv_loop = |rx_a: Receiver<Msg>, rx_b: Receiver<Msg>, received: Arc<Mutex<Vec<usize>>>| {
            move || {
                let mut mine = Vec::new();
                let (mut a_open, mut b_open) = (true, true);
                while a_open || b_open {
                    if a_open {
                        match rx_a.recv_timeout(Duration::from_micros(20)) {
                            Ok(m) => mine.push(m.id),
                            Err(RecvTimeoutError::Disconnected) => a_open = false,
                            Err(RecvTimeoutError::Timeout) => {}
                        }
                    }
                    if b_open {
                        match rx_b.recv_timeout(Duration::from_micros(35)) {
                            Ok(m) => mine.push(m.id),
                            Err(RecvTimeoutError::Disconnected) => b_open = false,
                            Err(RecvTimeoutError::Timeout) => {}
                        }
                    }
                }
                received.lock().unwrap().extend(mine);
            }
        };
        let green = spindle::spawn(recv_loop(rx_a.clone(), rx_b.clone(), received.clone()));
        let kernel = std::thread::spawn(recv_loop(rx_a, rx_b, received.clone()));
        for h in senders {
            handed_back.extend(h.join().unwrap());
        }
        green.join().unwrap();
        join_kernel(kernel);
        let mut all: Vec<usize> = received.lock().unwrap().clone();
        let n_received = all.len();
        all.extend(handed_back);
        all.sort_unstable();
        assert_eq!(all.len(), ledger.made(), "{model}: {n_received} received");
        assert!(all.iter().copied().eq(0..ledger.made()), "{model}: a message lost or duplicated");
        ledger.assert_each_dropped_once();
    }

    fn a_channel_made_on_a_many_to_one_thread_used_from_other_runtimes(model) {
        // The channel is made on a green thread of a many-to-one runtime (its lock is then
        // biased to that worker's kernel thread), which keeps using it, while threads of
        // this test's runtime (any model) and a kernel thread join in, with plain
        // operations and selects. Every message arrives once.
        const PER: u64 = if cfg!(debug_assertions) { 300 } else { 3_000 };
        for cap in [0usize, 1, 16] {
            let owner = runtime(Model::ManyToOne);
            let (tx, rx) = owner.block_on(move || bounded::<u64>(cap));
            let (tx2, rx2) = (tx.clone(), rx.clone());
            // Owner side: a sender and a receiver, on the owner's worker.
            let owner_sender = owner.spawn(move || (0..PER).for_each(|i| tx2.send(i).unwrap()));
            let owner_receiver = owner.spawn(move || {
                let mut sum = 0u64;
                let mut n = 0u64;
                while let Ok(v) = rx2.recv() {
                    sum += v;
                    n += 1;
                }
                (sum, n)
            });
            // Here (this runtime): a selecting sender and a selecting receiver.
            let (tx3, rx3) = (tx.clone(), rx.clone());
            let here_sender = spindle::spawn(move || {
                let (_idle_tx, idle_rx) = unbounded::<u64>();
                for i in PER..2 * PER {
                    spindle::select! {
                        send(tx3, i) -> r => r.unwrap(),
                        recv(idle_rx) -> _ => unreachable!(),
                    }
                }
            });
            let here_receiver = spindle::spawn(move || {
                let (_idle_tx, idle_rx) = unbounded::<u64>();
                let (mut sum, mut n) = (0u64, 0u64);
                loop {
                    spindle::select! {
                        recv(rx3) -> m => match m {
                            Ok(v) => { sum += v; n += 1; }
                            Err(_) => break,
                        },
                        recv(idle_rx) -> _ => unreachable!(),
                    }
                }
                (sum, n)
            });
            // A kernel thread sends with timeouts (retrying), and receives.
            let (tx4, rx4) = (tx.clone(), rx.clone());
            let kernel_sender = std::thread::spawn(move || {
                for i in 2 * PER..3 * PER {
                    let mut m = i;
                    loop {
                        match tx4.send_timeout(m, Duration::from_micros(50)) {
                            Ok(()) => break,
                            Err(SendTimeoutError::Timeout(back)) => m = back,
                            Err(SendTimeoutError::Disconnected(_)) => panic!("receivers gone"),
                        }
                    }
                }
            });
            let kernel_receiver = std::thread::spawn(move || {
                let (mut sum, mut n) = (0u64, 0u64);
                while let Ok(v) = rx4.recv() {
                    sum += v;
                    n += 1;
                }
                (sum, n)
            });
            drop((tx, rx));
            owner_sender.join().unwrap();
            here_sender.join().unwrap();
            join_kernel(kernel_sender);
            let parts = [
                owner_receiver.join().unwrap(),
                here_receiver.join().unwrap(),
                join_kernel(kernel_receiver),
            ];
            let (sum, n) = parts.iter().fold((0, 0), |(s, n), p| (s + p.0, n + p.1));
            let total = 3 * PER;
            assert_eq!(n, total, "{model} cap {cap}: {parts:?}");
            assert_eq!(sum, total * (total - 1) / 2, "{model} cap {cap}");
            drop(owner);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Zero-sized messages with a destructor (a static counter: not cross-model).

static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);

struct ZstDrop;

impl Drop for ZstDrop {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, SeqCst);
    }
}

#[test]
fn zero_sized_messages_with_a_destructor_are_dropped_once() {
    common::run(Model::ManyToMany { workers: 2 }, || {
        let (tx, rx) = unbounded::<ZstDrop>();
        for _ in 0..1_000 {
            tx.send(ZstDrop).unwrap();
        }
        for _ in 0..400 {
            drop(rx.recv().unwrap());
        }
        assert_eq!(ZST_DROPS.load(SeqCst), 400);
        drop(rx);
        assert_eq!(ZST_DROPS.load(SeqCst), 1_000);
        let back = tx.send(ZstDrop).unwrap_err();
        assert_eq!(ZST_DROPS.load(SeqCst), 1_000);
        drop(back);
        assert_eq!(ZST_DROPS.load(SeqCst), 1_001);
    });
}

// ---------------------------------------------------------------------------------------
// Biased lock: the owner runtime goes away.

#[test]
fn a_channel_outlives_the_many_to_one_runtime_it_was_made_on() {
    for cap in [0usize, 4] {
        let rt = runtime(Model::ManyToOne);
        let (tx, rx) = rt.block_on(move || {
            let (tx, rx) = bounded::<u32>(cap);
            if cap > 0 {
                tx.send(1).unwrap();
            }
            (tx, rx)
        });
        drop(rt);
        // The kernel thread the lock was biased to has exited: this one revokes the bias.
        if cap > 0 {
            assert_eq!(rx.recv(), Ok(1));
        }
        let k = std::thread::spawn({
            let tx = tx.clone();
            move || (0..1_000).for_each(|i| tx.send(i).unwrap())
        });
        let other = runtime(Model::ManyToMany { workers: 2 });
        let sum: u32 = other.block_on(move || (0..1_000).map(|_| rx.recv().unwrap()).sum());
        join_kernel(k);
        assert_eq!(sum, 1_000 * 999 / 2);
        drop(tx);
    }
}

// ---------------------------------------------------------------------------------------
// A runtime dropped while its threads are blocked in channel operations.

/// Blocks green threads of a `model` runtime in every kind of channel operation, each with
/// messages that must be dropped exactly once, then drops the runtime. The channels' other
/// ends, held here, must still work and see the cancelled operations gone.
fn runtime_dropped_while_blocked(model: Model) {
    let ledger = Ledger::new(64);
    let rt = runtime(model);
    // A full buffered channel with a blocked sender.
    let (full_tx, full_rx) = bounded::<Msg>(1);
    full_tx.send(ledger.make()).unwrap();
    // A rendezvous channel with a blocked sender, a blocked timed sender, and a blocked
    // receiver on another one.
    let (rv_tx, rv_rx) = bounded::<Msg>(0);
    let (empty_tx, empty_rx) = bounded::<Msg>(0);
    // Selects: one with send arms on full channels, one receiving.
    let (sel_tx, sel_rx) = bounded::<Msg>(0);
    let handles = {
        let (full_tx, rv_tx, empty_rx, sel_tx, empty_rx2) = (
            full_tx.clone(),
            rv_tx.clone(),
            empty_rx.clone(),
            sel_tx.clone(),
            empty_rx.clone(),
        );
        let (full_tx2, rv_tx2, rv_tx3, sel_tx2) = (
            full_tx.clone(),
            rv_tx.clone(),
            rv_tx.clone(),
            sel_tx.clone(),
        );
        let ledger = ledger.clone();
        rt.block_on(move || {
            let (l1, l2, l3, l4) = (
                ledger.clone(),
                ledger.clone(),
                ledger.clone(),
                ledger.clone(),
            );
            vec![
                spindle::spawn(move || drop(full_tx.send(l1.make()))),
                spindle::spawn(move || drop(rv_tx.send(l2.make()))),
                spindle::spawn(move || {
                    drop(rv_tx2.send_timeout(l3.make(), Duration::from_secs(3_600)))
                }),
                spindle::spawn(move || drop(empty_rx.recv())),
                spindle::spawn(move || drop(empty_rx2.recv_timeout(Duration::from_secs(3_600)))),
                spindle::spawn(move || {
                    spindle::select! {
                        send(full_tx2, l4.make()) -> _ => unreachable!(),
                        send(sel_tx, l4.make()) -> _ => unreachable!(),
                        send(sel_tx2, l4.make()) -> _ => unreachable!(),
                        send(rv_tx3, l4.make()) -> _ => unreachable!(),
                    }
                }),
            ]
        })
    };
    let ids: Vec<ThreadId> = handles.iter().map(|h| h.thread().id()).collect();
    until_parked(&ids);
    let made = ledger.made();
    assert_eq!(made, 1 + 3 + 4);
    assert_eq!(ledger.dropped(), 0);
    drop(rt);
    for h in handles {
        let err = h.join().expect_err("cancelled");
        assert!(err.downcast_ref::<spindle::thread::Cancelled>().is_some());
    }
    // Every message the cancelled threads held is dropped, once; the buffered one stays.
    assert_eq!(ledger.dropped(), made - 1, "{model}");
    ledger.assert_no_double_drop();
    assert_eq!(
        ledger.drops_of(0),
        0,
        "{model}: the buffered message is still there"
    );
    // The channels have none of the cancelled operations left in their queues.
    assert_eq!(rv_rx.try_recv().map(|m| m.id), Err(TryRecvError::Empty));
    assert_eq!(sel_rx.try_recv().map(|m| m.id), Err(TryRecvError::Empty));
    assert_eq!(
        empty_tx.try_send(ledger.make()).map_err(|e| e.is_full()),
        Err(true)
    );
    assert_eq!(full_rx.try_recv().map(|m| m.id), Ok(0));
    assert_eq!(full_rx.try_recv().map(|m| m.id), Err(TryRecvError::Empty));
    // And they still work, from kernel threads.
    let k = std::thread::spawn(move || rv_rx.recv().map(|m| m.id));
    let m = ledger.make();
    let id = m.id;
    rv_tx.send(m).unwrap();
    assert_eq!(k.join().unwrap(), Ok(id));
    drop((full_tx, full_rx, rv_tx, empty_tx, empty_rx, sel_tx, sel_rx));
    ledger.assert_each_dropped_once();
}

#[test]
fn runtime_dropped_while_blocked_many_to_one() {
    runtime_dropped_while_blocked(Model::ManyToOne);
}

#[test]
fn runtime_dropped_while_blocked_many_to_many() {
    runtime_dropped_while_blocked(Model::ManyToMany { workers: 2 });
}

/// Kernel threads keep serving green threads blocked in `recv` and in selects while the
/// runtime is dropped: a message handed to a thread that is then cancelled is dropped with
/// it, once; nothing hangs.
fn runtime_dropped_while_served(model: Model, rounds: usize) {
    for round in 0..rounds {
        let ledger = Ledger::new(100_000);
        let rt = runtime(model);
        let (tx, rx) = bounded::<Msg>(if round % 2 == 0 { 0 } else { 2 });
        let (tx_b, rx_b) = bounded::<Msg>(0);
        let mut blocked = Vec::new();
        for i in 0..4 {
            let (rx, rx_b) = (rx.clone(), rx_b.clone());
            blocked.push(rt.spawn(move || loop {
                if i % 2 == 0 {
                    drop(rx.recv());
                } else {
                    spindle::select! {
                        recv(rx) -> m => drop(m),
                        recv(rx_b) -> m => drop(m),
                    }
                }
            }));
        }
        drop((rx, rx_b));
        let feeders: Vec<_> = [tx, tx_b]
            .into_iter()
            .map(|tx| {
                let ledger = ledger.clone();
                std::thread::spawn(move || loop {
                    match tx.send_timeout(ledger.make(), Duration::from_millis(50)) {
                        Ok(()) => {}
                        Err(SendTimeoutError::Disconnected(m)) => {
                            drop(m);
                            return;
                        }
                        Err(SendTimeoutError::Timeout(m)) => drop(m),
                    }
                    if ledger.made() > 90_000 {
                        return;
                    }
                })
            })
            .collect();
        // Let messages flow, then drop the runtime in the middle of it.
        while ledger.made() < 200 {
            std::thread::yield_now();
        }
        drop(rt);
        for h in blocked {
            assert!(h.join().is_err());
        }
        // The receivers were all in the cancelled threads: the feeders see the channel
        // disconnected and stop.
        for f in feeders {
            f.join().unwrap();
        }
        ledger.assert_each_dropped_once();
    }
}

#[test]
fn runtime_dropped_while_served_many_to_one() {
    runtime_dropped_while_served(Model::ManyToOne, 20);
}

#[test]
fn runtime_dropped_while_served_many_to_many() {
    runtime_dropped_while_served(Model::ManyToMany { workers: 2 }, 20);
}

// ---------------------------------------------------------------------------------------
// `Select::ready` observers under concurrency: a lost wake-up of an observer hangs.

cross_model! {
    fn ready_based_producers_and_consumers_lose_no_wake_up(model) {
        // Producers wait with `ready` for room (a send observer) and then `try_send`;
        // consumers wait with `ready` for a message (a receive observer) and then
        // `try_recv`. Green and kernel threads on both sides, on a bounded(1) and a
        // rendezvous channel. A `ready` that misses its wake-up would wait out its
        // (long) timeout, which fails the test.
        const PER: u64 = if cfg!(debug_assertions) { 200 } else { 2_000 };
        const HANG: Duration = Duration::from_secs(20);
        for cap in [1usize, 0] {
            let (tx, rx) = bounded::<u64>(cap);
            let produce = |tx: Sender<u64>, base: u64| {
                move || {
                    let (_idle_tx, idle_rx) = unbounded::<u64>();
                    for i in base..base + PER {
                        let mut m = i;
                        loop {
                            match tx.try_send(m) {
                                Ok(()) => break,
                                Err(TrySendError::Full(back)) => m = back,
                                Err(TrySendError::Disconnected(_)) => panic!("receivers gone"),
                            }
                            let mut sel = Select::new();
                            sel.send(&tx, 0);
                            sel.recv(&idle_rx);
                            sel.ready_timeout(HANG).expect("a send observer missed its wake-up");
                        }
                    }
                }
            };
            let consume = |rx: Receiver<u64>| {
                move || {
                    let (_idle_tx, idle_rx) = unbounded::<u64>();
                    let (mut sum, mut n) = (0u64, 0u64);
                    loop {
                        match rx.try_recv() {
                            Ok(v) => {
                                sum += v;
                                n += 1;
                                continue;
                            }
                            Err(TryRecvError::Disconnected) => return (sum, n),
                            Err(TryRecvError::Empty) => {}
                        }
                        let mut sel = Select::new();
                        sel.recv(&rx);
                        sel.recv(&idle_rx);
                        sel.ready_timeout(HANG).expect("a receive observer missed its wake-up");
                    }
                }
            };
            let green_p = spindle::spawn(produce(tx.clone(), 0));
            let kernel_p = std::thread::spawn(produce(tx.clone(), PER));
            let green_c = spindle::spawn(consume(rx.clone()));
            let kernel_c = std::thread::spawn(consume(rx.clone()));
            // A plain receiver and a plain sender too, so that observers meet every path.
            let plain_p = spindle::spawn({
                let tx = tx.clone();
                move || (2 * PER..3 * PER).for_each(|i| tx.send(i).unwrap())
            });
            let plain_c = spindle::spawn({
                let rx = rx.clone();
                move || {
                    let (mut sum, mut n) = (0u64, 0u64);
                    while let Ok(v) = rx.recv() {
                        sum += v;
                        n += 1;
                    }
                    (sum, n)
                }
            });
            drop((tx, rx));
            green_p.join().unwrap();
            join_kernel(kernel_p);
            plain_p.join().unwrap();
            let parts = [green_c.join().unwrap(), join_kernel(kernel_c), plain_c.join().unwrap()];
            let (sum, n) = parts.iter().fold((0, 0), |(s, n), p| (s + p.0, n + p.1));
            let total = 3 * PER;
            assert_eq!(n, total, "{model} cap {cap}: {parts:?}");
            assert_eq!(sum, total * (total - 1) / 2);
        }
    }
}

/// A `try_send` or `try_recv` that fails makes no operation of the other side ready, so it
/// must not wake that side's `Select::ready` observers: if it did, two threads that each
/// loop on `ready` and a `try_` operation on a rendezvous channel with no real peer would
/// keep waking each other. Many-to-one, where a woken observer runs at the next yield.
#[test]
fn failing_try_operations_wake_no_ready_observer() {
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    rt.block_on(|| {
        let (tx, rx) = bounded::<u32>(0);
        // A receive observer, then failing sends.
        let woke = Arc::new(AtomicUsize::new(0));
        let observer = spindle::spawn({
            let (rx, woke) = (rx.clone(), woke.clone());
            move || {
                let mut sel = Select::new();
                sel.recv(&rx);
                sel.ready();
                woke.fetch_add(1, SeqCst);
            }
        });
        common::wait_until_parked(observer.thread().id(), WaitReason::ChannelSelect);
        for _ in 0..3 {
            assert_eq!(tx.try_send(7), Err(TrySendError::Full(7)));
            let mut sel = Select::new();
            sel.send(&tx, 8);
            assert!(sel.try_select().is_err(), "no receiver waits");
        }
        spindle::yield_now();
        assert_eq!(
            woke.load(SeqCst),
            0,
            "a failing try_send woke a receive observer"
        );
        // A real sender makes the receive ready.
        let sender = spindle::spawn({
            let tx = tx.clone();
            move || tx.send(9).unwrap()
        });
        observer.join().unwrap();
        assert_eq!(woke.load(SeqCst), 1);
        assert_eq!(rx.recv(), Ok(9));
        sender.join().unwrap();

        // A send observer, then failing receives.
        let observer = spindle::spawn({
            let (tx, woke) = (tx.clone(), woke.clone());
            move || {
                let mut sel = Select::new();
                sel.send(&tx, 0);
                sel.ready();
                woke.fetch_add(1, SeqCst);
            }
        });
        common::wait_until_parked(observer.thread().id(), WaitReason::ChannelSelect);
        for _ in 0..3 {
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            let mut sel = Select::new();
            sel.recv(&rx);
            assert!(sel.try_select().is_err(), "no sender waits");
        }
        spindle::yield_now();
        assert_eq!(
            woke.load(SeqCst),
            1,
            "a failing try_recv woke a send observer"
        );
        let receiver = spindle::spawn({
            let rx = rx.clone();
            move || rx.recv().unwrap()
        });
        observer.join().unwrap();
        assert_eq!(woke.load(SeqCst), 2);
        tx.send(10).unwrap();
        assert_eq!(receiver.join().unwrap(), 10);
    });
}
