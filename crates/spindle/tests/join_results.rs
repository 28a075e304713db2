//! A thread's result travels in its own record: it reaches `join` intact whatever its size,
//! and is dropped exactly once when nobody joins, whether the handle goes before or after
//! the thread finishes.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A result too big to be stored in place (boxed in the slot).
struct Big {
    words: [u64; 16],
    // Held for its drop.
    _counted: Counted,
}

cross_model! {
    fn small_and_big_results_come_back_intact(model) {
        let small = spindle::spawn(|| 7u8);
        let pair = spindle::spawn(|| (1u64, String::from("two")));
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let big = spindle::spawn(move || Big {
            words: std::array::from_fn(|i| i as u64 * 3),
            _counted: Counted(d),
        });
        assert_eq!(small.join().unwrap(), 7);
        assert_eq!(pair.join().unwrap(), (1, "two".to_string()));
        let b = big.join().unwrap();
        assert_eq!(b.words[15], 45, "{model}");
        assert_eq!(drops.load(SeqCst), 0);
        drop(b);
        assert_eq!(drops.load(SeqCst), 1);
    }

    fn an_unjoined_result_is_dropped_once_when_the_handle_goes_first(model) {
        let drops = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = spindle::channel::unbounded::<()>();
        let d = drops.clone();
        let h = spindle::spawn(move || {
            go_rx.recv().unwrap();
            let r = (Counted(d.clone()), Big { words: [0; 16], _counted: Counted(d) });
            done_tx.send(()).unwrap();
            r
        });
        drop(h); // detached while running
        go_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        // The thread drops its result itself once it returns and finds the handle gone.
        while drops.load(SeqCst) < 2 {
            spindle::yield_now();
        }
        assert_eq!(drops.load(SeqCst), 2, "{model}");
    }

    fn an_unjoined_result_is_dropped_once_when_the_thread_ends_first(model) {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let h = spindle::spawn(move || Counted(d));
        while !h.is_finished() {
            spindle::yield_now();
        }
        assert_eq!(drops.load(SeqCst), 0, "{model}: dropped before anyone decided");
        drop(h);
        assert_eq!(drops.load(SeqCst), 1);
    }

    fn scoped_results_that_borrow_are_gone_when_the_scope_ends(model) {
        let drops = Arc::new(AtomicUsize::new(0));
        let text = String::from("borrowed");
        spindle::scope(|s| {
            for _ in 0..4 {
                let d = drops.clone();
                // Unjoined: each result (which borrows `text`) must be dropped before the
                // scope returns.
                s.spawn(|| (text.as_str(), Counted(d)));
            }
            let joined = s.spawn(|| text.len());
            assert_eq!(joined.join().unwrap(), 8);
        });
        assert_eq!(drops.load(SeqCst), 4, "{model}");
    }
}
