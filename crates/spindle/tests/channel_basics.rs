//! `spindle::channel` semantics under every model: order, blocking, rendezvous,
//! disconnection, non-blocking and timed operations, iterators, drops.

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::channel::{
    bounded, unbounded, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};

/// A message that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

cross_model! {
    fn messages_arrive_in_fifo_order(_model) {
        for (tx, rx) in [unbounded(), bounded(1000)] {
            for i in 0..1000 {
                tx.send(i).unwrap();
            }
            assert_eq!(rx.len(), 1000);
            let got: Vec<i32> = rx.try_iter().collect();
            assert_eq!(got, (0..1000).collect::<Vec<_>>());
        }
        // Also across threads, through a small buffer.
        let (tx, rx) = bounded(3);
        let h = spindle::spawn(move || (0..500).for_each(|i| tx.send(i).unwrap()));
        let got: Vec<i32> = rx.iter().collect();
        h.join().unwrap();
        assert_eq!(got, (0..500).collect::<Vec<_>>());
    }

    fn a_bounded_channel_larger_than_its_first_allocation_fills_to_its_capacity(_model) {
        // A bounded channel allocates at most 1,024 slots up front and grows beyond; sends
        // past the first allocation take the path that grows the buffer, and the capacity
        // still holds exactly.
        const CAP: usize = 3000;
        let (tx, rx) = bounded(CAP);
        for i in 0..CAP {
            assert_eq!(tx.try_send(i), Ok(()), "send {i} of {CAP}");
        }
        assert!(tx.is_full());
        assert_eq!(tx.try_send(CAP), Err(TrySendError::Full(CAP)));
        // Wrap the ring around a few times, one out and one in.
        for i in CAP..3 * CAP {
            assert_eq!(rx.try_recv(), Ok(i - CAP));
            assert_eq!(tx.try_send(i), Ok(()));
            assert_eq!(tx.try_send(usize::MAX), Err(TrySendError::Full(usize::MAX)));
        }
        let got: Vec<usize> = rx.try_iter().collect();
        assert_eq!(got, (2 * CAP..3 * CAP).collect::<Vec<_>>());
        // Receivers gone: a send finds out at once, with its message back.
        tx.send(7).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(8), Err(TrySendError::Disconnected(8)));
        assert_eq!(tx.send(9), Err(SendError(9)));
    }

    fn a_receive_that_makes_room_moves_the_waiting_senders_message_in(_model) {
        // The receive's inlined path must not pop while a sender waits: the message taken
        // leaves room that the sender's message fills at once, and the sender is woken.
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        let sender = spindle::spawn(move || tx.send(2).unwrap());
        common::wait_until_parked(sender.thread().id(), spindle::WaitReason::ChannelSend);
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.len(), 1, "the waiting sender's message is in the buffer");
        sender.join().unwrap();
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Err(RecvError));
    }

    fn a_send_with_room_serves_the_waiting_receiver(_model) {
        // The send's inlined path must not buffer while a receiver waits, room or not: the
        // message goes to the receiver, which is woken. (Left in the buffer, it would wait
        // there while the receiver sleeps until its deadline.)
        let (tx, rx) = bounded(4);
        let receiver = spindle::spawn(move || rx.recv_timeout(Duration::from_secs(60)));
        common::wait_until_parked(receiver.thread().id(), spindle::WaitReason::ChannelRecv);
        tx.send(1).unwrap();
        assert_eq!(tx.len(), 0, "the message went to the receiver, not into the buffer");
        assert_eq!(receiver.join().unwrap(), Ok(1));
    }

    fn send_blocks_while_full(_model) {
        let (tx, rx) = bounded(2);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert!(tx.is_full());
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        let h = spindle::spawn(move || {
            tx.send(3).unwrap(); // blocks until a recv makes room
            tx.send(4).unwrap();
        });
        // Whenever the blocked sends complete, their messages come after the buffered ones.
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Ok(3));
        assert_eq!(rx.recv(), Ok(4));
        h.join().unwrap();
        assert_eq!(rx.recv(), Err(RecvError));
    }

    fn rendezvous_hands_over_directly(_model) {
        let (tx, rx) = bounded::<u32>(0);
        assert_eq!(tx.capacity(), Some(0));
        assert!(tx.is_full() && rx.is_empty());
        assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)), "no receiver waits");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "no sender waits");
        // A receiver first, then a sender.
        let rx2 = rx.clone();
        let h = spindle::spawn(move || rx2.recv().unwrap());
        tx.send(7).unwrap(); // returns once the receiver has the message
        assert_eq!(h.join().unwrap(), 7);
        // A sender first, then a receiver.
        let tx2 = tx.clone();
        let h = spindle::spawn(move || tx2.send(8).unwrap());
        assert_eq!(rx.recv(), Ok(8));
        h.join().unwrap();
        assert_eq!(rx.len(), 0);
    }

    fn receivers_drain_then_see_disconnection(_model) {
        let (tx, rx) = unbounded();
        for i in 0..3 {
            tx.send(i).unwrap();
        }
        let tx2 = tx.clone();
        drop(tx);
        assert_eq!(rx.recv(), Ok(0), "one sender is still alive");
        drop(tx2);
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Err(RecvTimeoutError::Disconnected));
    }

    fn a_parked_receiver_wakes_on_disconnection(_model) {
        let (tx, rx) = bounded::<u8>(1);
        let h = spindle::spawn(move || rx.recv());
        spindle::yield_now();
        drop(tx);
        assert_eq!(h.join().unwrap(), Err(RecvError));
    }

    fn senders_get_their_message_back_when_receivers_are_gone(_model) {
        let (tx, rx) = bounded(1);
        tx.send(String::from("kept")).unwrap();
        // A sender parked on the full channel.
        let tx2 = tx.clone();
        let h = spindle::spawn(move || tx2.send(String::from("parked")));
        spindle::yield_now();
        drop(rx);
        assert_eq!(h.join().unwrap(), Err(SendError(String::from("parked"))));
        assert_eq!(tx.send(String::from("late")), Err(SendError(String::from("late"))));
        assert_eq!(tx.try_send(1.to_string()), Err(TrySendError::Disconnected("1".into())));
        assert_eq!(
            tx.send_timeout(2.to_string(), Duration::from_secs(60)),
            Err(SendTimeoutError::Disconnected("2".into()))
        );
        assert_eq!(tx.len(), 0, "buffered messages are dropped with the last receiver");
    }

    fn timeouts_expire_and_return_the_message(_model) {
        let timeout = Duration::from_millis(20);
        let (tx, rx) = bounded::<u32>(1);
        let start = Instant::now();
        assert_eq!(rx.recv_timeout(timeout), Err(RecvTimeoutError::Timeout));
        assert!(start.elapsed() >= timeout, "recv_timeout returned early");
        tx.send(1).unwrap();
        let start = Instant::now();
        assert_eq!(tx.send_timeout(2, timeout), Err(SendTimeoutError::Timeout(2)));
        assert!(start.elapsed() >= timeout, "send_timeout returned early");
        // The timed-out entries left the queues: the channel works as before.
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.send(3).unwrap();
        assert_eq!(rx.recv_deadline(Instant::now()), Ok(3));
        assert_eq!(rx.recv_deadline(Instant::now()), Err(RecvTimeoutError::Timeout));
        // Rendezvous: a zero timeout with nobody on the other side.
        let (tx0, rx0) = bounded::<u32>(0);
        assert_eq!(tx0.send_timeout(5, Duration::ZERO), Err(SendTimeoutError::Timeout(5)));
        assert_eq!(rx0.recv_timeout(Duration::ZERO), Err(RecvTimeoutError::Timeout));
    }

    fn a_timed_wait_succeeds_when_served_in_time(_model) {
        let (tx, rx) = bounded::<u32>(0);
        let h = spindle::spawn(move || rx.recv_timeout(Duration::from_secs(60)));
        tx.send(9).unwrap();
        assert_eq!(h.join().unwrap(), Ok(9));
        let (tx, rx) = bounded::<u32>(0);
        let h = spindle::spawn(move || tx.send_timeout(10, Duration::from_secs(60)));
        assert_eq!(rx.recv(), Ok(10));
        assert_eq!(h.join().unwrap(), Ok(()));
    }

    fn iterators(_model) {
        let (tx, rx) = unbounded();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(rx.try_iter().next(), None, "try_iter stops when empty");
        let h = spindle::spawn(move || {
            for i in 3..6 {
                tx.send(i).unwrap();
            }
        });
        let mut got = Vec::new();
        for v in &rx {
            got.push(v);
        }
        h.join().unwrap();
        assert_eq!(got, [3, 4, 5]);
        let (tx, rx) = bounded(1);
        let h = spindle::spawn(move || (0..4).for_each(|i| tx.send(i).unwrap()));
        assert_eq!(rx.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
        h.join().unwrap();
    }

    fn len_capacity_and_same_channel(_model) {
        let (tx, rx) = unbounded::<u8>();
        assert_eq!(tx.capacity(), None);
        assert!(!tx.is_full() && tx.is_empty() && rx.is_empty());
        tx.send(1).unwrap();
        assert_eq!((tx.len(), rx.len()), (1, 1));
        let (tx2, rx2) = bounded::<u8>(5);
        assert_eq!(rx2.capacity(), Some(5));
        assert!(tx.same_channel(&tx.clone()) && !tx.same_channel(&unbounded().0));
        assert!(rx2.same_channel(&rx2.clone()));
        drop((tx2, rx));
    }

    fn leftover_messages_are_dropped(_model) {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = unbounded();
        for _ in 0..10 {
            tx.send(Counted(drops.clone())).unwrap();
        }
        drop(rx.recv().unwrap());
        assert_eq!(drops.load(SeqCst), 1);
        drop(tx);
        assert_eq!(drops.load(SeqCst), 1, "receivers may still drain");
        drop(rx);
        assert_eq!(drops.load(SeqCst), 10);

        // Dropping the receivers drops the buffer at once, and a parked sender's message
        // comes back to it (and is dropped by whoever holds it then).
        let (tx, rx) = bounded(2);
        tx.send(Counted(drops.clone())).unwrap();
        tx.send(Counted(drops.clone())).unwrap();
        let (tx2, d) = (tx.clone(), drops.clone());
        let h = spindle::spawn(move || tx2.send(Counted(d)).map_err(|e| e.into_inner()));
        spindle::yield_now();
        drop(rx);
        assert_eq!(drops.load(SeqCst), 12);
        let back = h.join().unwrap().expect_err("the receiver is gone");
        drop(back);
        drop(tx);
        assert_eq!(drops.load(SeqCst), 13);
    }
}

#[test]
fn error_messages_match_crossbeam() {
    assert_eq!(
        SendError(1).to_string(),
        "sending on a disconnected channel"
    );
    assert_eq!(format!("{:?}", SendError(1)), "SendError(..)");
    assert_eq!(
        TrySendError::Full(1).to_string(),
        "sending on a full channel"
    );
    assert_eq!(format!("{:?}", TrySendError::Full(1)), "Full(..)");
    assert_eq!(
        TrySendError::Disconnected(1).to_string(),
        "sending on a disconnected channel"
    );
    assert_eq!(
        SendTimeoutError::Timeout(1).to_string(),
        "timed out waiting on send operation"
    );
    assert_eq!(
        RecvError.to_string(),
        "receiving on an empty and disconnected channel"
    );
    assert_eq!(
        TryRecvError::Empty.to_string(),
        "receiving on an empty channel"
    );
    assert_eq!(
        RecvTimeoutError::Timeout.to_string(),
        "timed out waiting on receive operation"
    );
    assert_eq!(
        RecvTimeoutError::Disconnected.to_string(),
        "channel is empty and disconnected"
    );
    assert_eq!(SendTimeoutError::Timeout(4).into_inner(), 4);
    assert!(TrySendError::Full(()).is_full());
    assert!(RecvTimeoutError::from(RecvError).is_disconnected());
    let _: &dyn std::error::Error = &SendError(1u8);
}

#[test]
fn works_outside_any_runtime() {
    let (tx, rx) = bounded(1);
    let k = std::thread::spawn(move || (0..100).for_each(|i| tx.send(i).unwrap()));
    assert_eq!(rx.iter().sum::<i32>(), 4950);
    k.join().unwrap();
}

#[test]
fn a_cancelled_receiver_leaves_the_queue() {
    let (tx, rx) = unbounded::<u32>();
    let rt = spindle::Runtime::builder().build().unwrap();
    let rx2 = rx.clone();
    rt.block_on(move || {
        spindle::spawn(move || rx2.recv());
        spindle::yield_now(); // it runs and parks in recv
    });
    drop(rt); // unwinds it: its entry must leave the channel's queue
    tx.send(1).unwrap(); // must go to the buffer, not to the cancelled entry
    assert_eq!(rx.try_recv(), Ok(1));
}

#[test]
fn a_cancelled_sender_leaves_the_queue() {
    let (tx, rx) = bounded::<u32>(0);
    let rt = spindle::Runtime::builder().build().unwrap();
    let tx2 = tx.clone();
    rt.block_on(move || {
        spindle::spawn(move || tx2.send(1));
        spindle::yield_now(); // it runs and parks in send
    });
    drop(rt);
    assert_eq!(
        rx.try_recv(),
        Err(TryRecvError::Empty),
        "the cancelled send is gone"
    );
    let k = std::thread::spawn(move || tx.send(2));
    assert_eq!(rx.recv(), Ok(2));
    k.join().unwrap().unwrap();
}
