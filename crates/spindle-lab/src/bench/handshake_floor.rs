//! The floor of a channel that takes spindle's biased lock once per operation: messages
//! through a minimal ring of 128 slots under that lock's owner path and nothing else, on
//! one kernel thread, the producer filling the ring and the consumer draining it in turn
//! (as two many-to-one green threads do).
//!
//! Each operation does what the owner's path of `sync/biased_lock.rs` does (read the
//! kernel thread's bias id from a thread-local, check the owner, check that the section is
//! not entered already, store `in_section`, a compiler fence, check the owner again,
//! release-store `in_section` when done) around a push or pop on a ring whose slots are
//! inline and whose mask and bound are constants. It leaves out everything else a channel
//! does: no receive hint, no waiting lists, no disconnection, no switch between two
//! threads, no `Result`. So no channel built on that lock can move more messages per
//! second than this loop on the same vCPU at the same minute: `bench sync` runs it beside
//! the channels and reports it against crossbeam-channel, an upper bound in that run for
//! any such design.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

/// Slots of the ring (the channels' capacity in `bench sync`).
const SLOTS: usize = 128;

thread_local! {
    /// The kernel thread's bias id, as the real lock keeps it: read on every lock.
    static BIAS_ID: Cell<u64> = const { Cell::new(1) };
}

/// The lock's words and the ring, as atomics so that every access goes to memory as the
/// real lock's do (relaxed loads and stores are plain moves on x86-64).
struct Floor {
    owner: AtomicU64,
    in_section: AtomicBool,
    head: AtomicU64,
    tail: AtomicU64,
    slots: [AtomicU64; SLOTS],
}

impl Floor {
    /// Enters a section as the calling kernel thread: the owner's half of the handshake.
    #[inline(always)]
    fn enter(&self) {
        let me = BIAS_ID.with(Cell::get);
        if self.owner.load(Relaxed) != me {
            lost_owner();
        }
        if self.in_section.load(Relaxed) {
            lost_owner();
        }
        self.in_section.store(true, Relaxed);
        compiler_fence(SeqCst);
        if self.owner.load(Relaxed) != me {
            lost_owner();
        }
    }

    #[inline(always)]
    fn leave(&self) {
        self.in_section.store(false, Release);
    }
}

/// Where the real lock would take its slow path or panic; nothing takes this lock from
/// elsewhere, and no section enters another.
/// Out of line, taking no reference to the loop's values: a reference would keep them in
/// memory, which the compiler fence then makes the loop store and reload.
#[cold]
#[inline(never)]
fn lost_owner() -> ! {
    panic!("the handshake floor's lock lost its owner or was entered twice");
}

/// Passes `0..msgs` through the ring and checks that the consumer's sum is right; returns
/// the time taken.
pub fn handshake_floor(msgs: u64) -> Result<Duration, String> {
    let floor = Floor {
        owner: AtomicU64::new(BIAS_ID.with(Cell::get)),
        in_section: AtomicBool::new(false),
        head: AtomicU64::new(0),
        tail: AtomicU64::new(0),
        slots: std::array::from_fn(|_| AtomicU64::new(0)),
    };
    let f = black_box(&floor);
    let (mut sent, mut sum) = (0u64, 0u64);
    let start = Instant::now();
    while sent < msgs {
        // The producer's turn: send until the ring is full (or every message is sent).
        loop {
            f.enter();
            let (head, tail) = (f.head.load(Relaxed), f.tail.load(Relaxed));
            if tail - head == SLOTS as u64 || sent == msgs {
                f.leave();
                break;
            }
            f.slots[tail as usize % SLOTS].store(sent, Relaxed);
            f.tail.store(tail + 1, Relaxed);
            f.leave();
            sent += 1;
        }
        // The consumer's turn: receive until the ring is empty.
        loop {
            f.enter();
            let (head, tail) = (f.head.load(Relaxed), f.tail.load(Relaxed));
            if head == tail {
                f.leave();
                break;
            }
            sum += f.slots[head as usize % SLOTS].load(Relaxed);
            f.head.store(head + 1, Relaxed);
            f.leave();
        }
    }
    let elapsed = start.elapsed();
    check(msgs, sum)?;
    Ok(elapsed)
}

/// Checks the consumer's `sum` of `0..msgs`. A function of its own, so that the error's
/// formatting takes references to copies, not to the loop's variables (see
/// [`lost_owner`]).
#[inline(never)]
fn check(msgs: u64, sum: u64) -> Result<(), String> {
    let expected = msgs * msgs.saturating_sub(1) / 2;
    if sum == expected {
        return Ok(());
    }
    Err(format!(
        "the handshake floor's consumer summed {msgs} messages to {sum}, expected {expected}"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_message_arrives_once() {
        for msgs in [0, 1, 127, 128, 129, 1000] {
            super::handshake_floor(msgs).unwrap();
        }
    }
}
