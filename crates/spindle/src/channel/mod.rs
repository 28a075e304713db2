//! Multi-producer multi-consumer channels that park green threads.
//!
//! [`unbounded`] and [`bounded`] (`bounded(0)` is a rendezvous channel) return a
//! ([`Sender`], [`Receiver`]) pair; both ends are `Clone`, and `Send`/`Sync` when the
//! message type is `Send`. The API and the disconnection rules are crossbeam-channel's:
//! once every sender is gone, receivers drain what is buffered and then get
//! `Disconnected`; once every receiver is gone, `send` hands the message back in the error
//! and buffered messages are dropped. Green threads of every model and plain kernel threads
//! can use the same channel at once.
//!
//! ```
//! let rt = spindle::Runtime::builder().build()?;
//! let sum: u64 = rt.block_on(|| {
//!     let (tx, rx) = spindle::channel::bounded(4);
//!     for i in 0..3u64 {
//!         let tx = tx.clone();
//!         spindle::spawn(move || (0..100).for_each(|j| tx.send(i * 100 + j).unwrap()));
//!     }
//!     drop(tx);
//!     rx.iter().sum()
//! });
//! assert_eq!(sum, (0..300).sum());
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`select!`](crate::select) (and the [`Select`] builder behind it) waits on several
//! operations at once and carries out exactly one, chosen at random among those ready; its
//! protocol, which adds entries shared by several channels to what follows, is the module
//! doc of `channel/select.rs`.
//!
//! # The protocol
//!
//! The design is the Go runtime's `hchan`: one lock per channel, a buffer, and two FIFOs of
//! parked threads, with messages handed directly to a parked receiver.
//!
//! ## State
//!
//! Behind one spin lock (`sync/biased_lock.rs`: a CAS to lock, a plain release store to
//! unlock; its sections never block). A channel made on a green thread of a many-to-one
//! runtime is biased to that kernel thread, which then locks and unlocks with plain stores
//! and no read-modify-write, until another kernel thread first takes the lock and revokes
//! the bias with a `membarrier` system call, once:
//!
//! - `buffer`: a ring (`crate::ring`) of at most `cap` messages (`cap` = `usize::MAX` when
//!   unbounded, 0 for rendezvous). It keeps its allocation, so a warmed-up channel does
//!   not allocate per message.
//! - `waiting_receivers`, `waiting_senders`: intrusive FIFOs of entries that live on the
//!   parked threads' stacks (`sync/wait_list.rs`): blocking allocates nothing. A sender's
//!   entry carries its message in a slot; a receiver's entry has an empty slot.
//! - `senders_gone`, `receivers_gone`: set when the last handle of that side is dropped.
//! - `fast_send_room`: derived, for `send`'s inlined path: `min(cap, ring slots)` while the
//!   receivers are there and `waiting_receivers` is empty, 0 otherwise. "`len <
//!   fast_send_room`" is then one test for steps 1 to 3 (receivers there, none waiting,
//!   room, and a free slot without growing the ring); when it fails, the out-of-line path
//!   runs the steps in full.
//! - `fast_recv_floor`: derived, for `recv`'s inlined path: 0 while `waiting_senders` is
//!   empty, `usize::MAX` otherwise, so that "`len > fast_recv_floor`" is one test for "a
//!   message is there and no sender waits".
//!
//! Every unlock through the guard's drop derives both bounds again. The inlined paths
//! unlock without: they change no list, no end's `*_gone`, and never grow the ring.
//!
//! Invariants, all under the lock: a receiver waits only while the buffer is empty and no
//! sender waits; a sender waits only while the buffer is full (`len == cap`) and no receiver
//! waits. So at most one of the two lists is non-empty, and waiting senders' messages come
//! after everything in the buffer.
//!
//! ## Operations (each takes the lock exactly once)
//!
//! **send(v)**:
//! 1. receivers gone: fail, giving `v` back.
//! 2. a receiver waits: unlink the first, move `v` into its slot, start its wake-up; unlock;
//!    finish the wake-up (unpark it). It returns with `v` without touching the lock again.
//! 3. the buffer has room: push `v`; unlock. No unpark, no atomic besides the lock.
//! 4. otherwise (`try_send`: fail with `Full`) link an entry holding `v` into
//!    `waiting_senders`, unlock, and park until served.
//!
//! **recv()**:
//! 1. the buffer has a message: pop it. If a sender waits (the buffer was full), move the
//!    first waiting sender's message into the buffer and start its wake-up. Unlock, finish
//!    the wake-up.
//! 2. the buffer is empty but a sender waits (rendezvous): take its message from its slot,
//!    start its wake-up; unlock; finish it.
//! 3. senders gone: fail with `Disconnected` (the buffer is empty).
//! 4. otherwise (`try_recv`: fail with `Empty`) link an empty entry into
//!    `waiting_receivers`, unlock, park until served.
//!
//! A `try_send` or `try_recv` (or a select's first pass) that is going to fail, with
//! nothing in the opposite list that could be served, returns before step 2: it pops no
//! observer of the other side (`channel/select.rs`), since it makes nothing ready.
//!
//! **Yield first (green threads, untimed operations).** Before step 4 of a blocking `send`
//! on a buffered channel, or of a blocking `recv`, a green thread unlocks, yields once, and
//! looks again; only
//! if it still cannot proceed does it register and park. A yielding thread is in no wait
//! list, so nothing about the protocol changes: it is an ordinary operation that happens a
//! little later. What it buys is the many-to-one ping-pong: the peer, runnable on the same
//! worker, runs during the yield and produces, and the second look succeeds with no park and
//! no unpark. A green `recv` also reads `recv_ready_hint`, a relaxed flag that every unlock
//! leaves saying whether "a receive would succeed now" (the fast paths skip the store when
//! their change cannot flip it): if the channel looked empty it yields before even
//! taking the lock. The hint is advisory; a stale value costs one useless yield or lock round
//! trip, never correctness. Rendezvous senders do not yield first (a rendezvous needs one
//! side registered for the other to find), nor do timed operations (their deadline should
//! measure time spent registered; two sides with tiny timeouts that each yielded before
//! registering might never meet).
//!
//! **Dropping the last sender** sets `senders_gone` and wakes every waiting receiver with
//! the outcome "disconnected" (the buffer is empty, by the invariant). **Dropping the last
//! receiver** sets `receivers_gone`, wakes every waiting sender with "disconnected" (its
//! message is still in its slot, and `send` returns it), and drops the buffered messages
//! after unlocking. Messages are never dropped under the lock: a message's destructor may
//! use the channel.
//!
//! ## A waiting entry: states and owners
//!
//! An entry belongs to a thread blocked in one `send` or `recv`, or to one operation of a
//! blocked `select`. The latter points at the select's shared word, which its waker must
//! win with a CAS before serving it; an entry whose select was already decided is *stale*,
//! and wakers drop it from the list and go on to the next (`channel/select.rs`). So
//! "the first waiting receiver" in the steps above is the first entry that can still be
//! served, and the invariants hold for those entries. For a thread's own entry the
//! hand-shake is the one every spindle primitive uses (`sync/waiter.rs`):
//!
//! | state          | in a list? | who may touch the slot                                  |
//! |----------------|------------|---------------------------------------------------------|
//! | `WAITING`      | yes        | the lock holder (a waker fills/empties it; the owner, on timeout) |
//! | `NOTIFYING`    | no         | nobody: the waker is unparking the owner                |
//! | `SERVED`       | no         | the owner: a receiver takes its message; a sender's slot is empty |
//! | `DISCONNECTED` | no         | the owner: a sender takes its message back              |
//!
//! Only the lock holder moves an entry out of `WAITING`, and it unlinks the entry in the
//! same critical section. The waker's last access is the release store of the outcome,
//! after the unpark; the owner returns only after loading an outcome (acquire), so the entry
//! outlives every access and the owner sees the slot as the waker left it. A spurious
//! return from `park` finds `WAITING` and parks again; `NOTIFYING` makes the owner spin for
//! the few nanoseconds until the outcome is stored.
//!
//! **Timeout.** The owner's deadline passes while parked: it takes the lock. Still
//! `WAITING`: it unlinks its entry and reports the timeout (a sender takes its message back
//! from the slot). Otherwise a waker has already served it (or the channel disconnected) in
//! a critical section that came first: it waits for that outcome and reports it, a success
//! rather than a timeout. **Cancellation** (the thread is unwound because its runtime was
//! dropped) does the same from a drop guard, without parking; a message handed to a
//! cancelled receiver is dropped with it.
//!
//! **In a fork child** the entries of the parent's blocked senders, receivers and selects
//! are copied with the lists, but their threads do not exist (fork.rs, "Objects the
//! parent's threads wait on"). The lists forget them at their first use in the child
//! (`sync/wait_list.rs`): "a receiver waits" is then false, so a message sent in the child
//! goes into the buffer (or the sender waits), never into a parent's slot where nobody
//! would take it; a receive does not take a parent's waiting sender's message. The derived
//! bounds are derived from the lists as they read, so the inlined paths come back once an
//! out-of-line path has run in the child.
//!
//! ## Why no message is lost or duplicated
//!
//! Each message is in exactly one place at a time, and it moves only under the lock: a
//! sender's hands or slot, the buffer, a receiver's slot or hands. A slot is emptied or
//! filled only by the lock holder while the entry is `WAITING`, and the entry leaves
//! `WAITING` in that same critical section, so no two parties act on one entry. A timed-out
//! sender takes its message back only after unlinking its still-`WAITING` entry, so no
//! receiver can have taken it; a receiver whose entry was served never reports a timeout.
//!
//! ## Why no wake-up is lost
//!
//! A thread parks only after linking its entry under the lock, having seen (under the same
//! lock) that it cannot proceed. Any later state change that could let it proceed is made
//! under the lock, sees the entry and serves it, or (disconnection) serves every entry.
//! The unpark goes through the hand-shake, which cannot lose it (park has token semantics).
//!
//! ## Cost
//!
//! Uncontended `send` into a channel with room: lock, push, unlock; one atomic
//! read-modify-write (the lock's CAS; the unlock is a plain store, and so is the hint's
//! when the buffer was empty; on a lock biased to the calling kernel thread, none:
//! `sync/biased_lock.rs`). A send that
//! serves a parked receiver adds the unpark (one CAS in the park protocol) and two plain
//! stores. A blocking operation adds the entry on the stack (no allocation, no reference
//! count for green threads) and the park. In a many-to-one ping-pong over buffered channels,
//! yield-first turns every park/unpark pair into a yield, so a round trip is four lock
//! CASes and two switches; over a rendezvous channel it is four lock CASes and two
//! park/unpark pairs of the scheduler's protocol (`sched/README.md`).

mod chan;
mod entry;
mod error;
mod iter;
mod operation;
mod receiver;
mod select;
mod select_macro;
mod selection;
mod sender;

use std::sync::Arc;

pub use error::{
    ReadyTimeoutError, RecvError, RecvTimeoutError, SelectTimeoutError, SendError,
    SendTimeoutError, TryReadyError, TryRecvError, TrySelectError, TrySendError,
};
pub use iter::{IntoIter, Iter, TryIter};
pub use receiver::Receiver;
pub use select::{Select, SelectedOperation};
pub use sender::Sender;

#[doc(inline)]
pub use crate::select;

/// What the expansion of [`select!`](crate::select) uses; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use super::operation::{OpRef, RecvOp, SendOp};
    pub use super::select::{__Timeout as Timeout, __select as select};
}

use chan::Chan;

/// A channel with no limit on buffered messages: `send` never blocks.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    pair(Chan::new(None))
}

/// A channel that buffers at most `cap` messages; `send` blocks while it is full.
///
/// With `cap == 0` it is a rendezvous channel: each `send` waits for a `recv` to take its
/// message, and the other way round.
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    pair(Chan::new(Some(cap)))
}

fn pair<T>(chan: Chan<T>) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(chan);
    (Sender::new(chan.clone()), Receiver::new(chan))
}
