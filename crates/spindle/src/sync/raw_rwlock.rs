//! The lock behind [`crate::sync::RwLock`]: a state word and one FIFO of parked readers
//! and writers, served in order, consecutive readers together.
//!
//! ## The state word
//!
//! One `AtomicUsize`:
//!
//! - `WRITER` (bit 0): a writer holds the lock.
//! - `QUEUED` (bit 1): the wait queue is not empty. Set and cleared only under the queue's
//!   spin lock, together with the change of the queue that makes it true or false, so at
//!   every release of the queue lock: **`QUEUED` set if and only if the queue is not empty**.
//! - the bits above: how many readers hold the lock (`ONE_READER` each).
//!
//! `WRITER` and a nonzero reader count never coexist. The uncontended paths touch nothing
//! else: `read` is a load and one CAS adding `ONE_READER` (acquire), `read_unlock` one
//! `fetch_sub` (release), `write` one CAS `0 -> WRITER` (acquire), `write_unlock` one CAS
//! `WRITER -> 0` (release). No allocation, no system call.
//!
//! ## Fairness: one FIFO, hand-off, consecutive readers batched
//!
//! Neither side is preferred. A thread may take the lock without queuing only if nobody is
//! queued (`QUEUED` clear): a reader joins readers that hold the lock, a writer takes a
//! free lock. Otherwise it queues at the back, and the lock is *handed* to the queue in
//! order: when it becomes free, the head gets it; if the head is a reader, so do all the
//! readers right behind it (up to the next writer), and they hold it together.
//!
//! So a writer waits only for the holders and the threads queued before it, and a reader
//! for the holders, the writers queued before it and the readers before those: neither
//! side can starve, whatever the other does. A stream of readers cannot keep a writer out
//! (once the writer queues, new readers queue behind it), and a stream of writers cannot
//! keep a reader out (they queue behind it). The price, said openly: there is no barging,
//! so under contention every acquisition is a hand-off to a parked thread, and the lock
//! stays idle while that thread is being scheduled (the `Mutex`, which lets arriving
//! threads barge, keeps it busier). A reader that already holds the lock and asks for it
//! again while a writer is queued deadlocks, as std warns for its lock.
//!
//! A kernel thread that finds the lock held with nobody queued spins briefly before it
//! queues (the holder probably runs on another core); a green thread does not, as the
//! holder may be waiting for this very kernel thread.
//!
//! ## The protocol
//!
//! **Acquire, contended.** Take the queue lock. If the lock is now available to us
//! (read: neither `WRITER` nor `QUEUED`; write: the word is 0) drop the queue lock and try
//! again. Otherwise set `QUEUED` (a CAS, which fails if the word changed meanwhile: then
//! look again), link the entry at the back, unlock, and park until an entry's outcome
//! says the lock was handed to us.
//!
//! **Release.** A writer's `CAS WRITER -> 0` fails only if `QUEUED` is set; then, under
//! the queue lock, it hands the lock over without ever clearing `WRITER` first. A reader's
//! `fetch_sub` returns the old word; the reader that sees exactly `ONE_READER | QUEUED` was
//! the last one out with threads queued: the word is now exactly `QUEUED` (no owner), and
//! that reader takes the queue lock and serves.
//!
//! **Serve** (`RawRwLock::serve`, under the queue lock; also run by a thread that leaves
//! the queue, see below) looks at the head:
//!
//! - a writer: it gets the lock if it is free (the releasing writer's own, or the word is
//!   exactly `QUEUED`): the word becomes `WRITER`, plus `QUEUED` if entries remain.
//! - a reader: it and the readers behind it get the lock unless a writer holds it: their
//!   count is added to the word (clearing `QUEUED` if the queue is now empty).
//! - otherwise the head goes back: the holders' release will serve it.
//!
//! The served entries' wake-ups are finished after the queue lock is released
//! (`WakeBatch`, `sync/wait_entry.rs`).
//!
//! ## Why the word may be written with plain stores while serving
//!
//! Under the queue lock with `QUEUED` set, the word changes only by readers leaving
//! (`fetch_sub`): nobody acquires without queuing, and queuing needs the queue lock. So a
//! serving writer that still holds `WRITER`, or a server that found the word exactly
//! `QUEUED` (no reader left to leave), owns the word and stores it. Granting readers while
//! other readers may leave uses `fetch_add`.
//!
//! ## Why no wake-up is lost
//!
//! Invariant: **whenever the queue is not empty, its head will be served**: either a
//! writer holds the lock (its release serves), or readers hold it and the head is a
//! writer (the last reader's release serves), or the word is exactly `QUEUED` and a
//! releaser is on its way to serve (between its `fetch_sub` and the queue lock). Readers
//! holding with a reader at the head cannot last: a reader queues only behind `WRITER` or
//! `QUEUED`, a served batch of readers leaves a writer (or nothing) at the head, and a
//! thread that leaves the queue runs `serve` itself, which admits such readers.
//!
//! A queuing thread's CAS that sets `QUEUED` and a holder's release are RMWs of the same
//! word, so one sees the other: either the release sees `QUEUED` and serves (after
//! taking the queue lock, so after the entry is linked), or the CAS fails and the
//! queuing thread looks again and finds the lock free. Several releasers may be "on their
//! way" at once (a leaver emptied the queue, the lock was taken and released again); each
//! `serve` acts only if the head can really have the lock, so the extra ones do nothing.
//! The wake-up itself is the hand-shake of `sync/waiter.rs`, which cannot lose an unpark.
//!
//! ## Memory orderings
//!
//! Acquire on every CAS that takes the lock, release on every RMW or store that gives it
//! up. Readers give it up with `fetch_sub` (release), and the last one's `fence(Acquire)`
//! makes every reader's section happen before what it serves (`fetch_sub`s continue each
//! other's release sequences). A server reads the word with acquire, so it has seen the
//! previous owners' releases, and the served threads synchronize with the server through
//! the hand-shake's release store of the outcome. `QUEUED` itself is ordered by the queue
//! lock, so setting it is relaxed.
//!
//! ## Cancellation
//!
//! A green thread parked here may be unwound when its runtime is dropped. Its guard takes
//! the queue lock: if the entry is still queued it unlinks it (clearing `QUEUED` if the
//! queue is now empty, else running `serve`, since the new head may be admissible); if it
//! was served meanwhile it waits for the outcome without parking and releases the lock it
//! was handed.
//!
//! ## In a fork child
//!
//! The parent's threads are gone from the queue (fork.rs, "Objects the parent's threads
//! wait on"): a server must not hand them the lock, which no thread of the child would
//! then ever release. Every critical section that queues or serves first forgets the
//! queue's stale entries (`WaitList::forget_inherited`) and, if there were any, `QUEUED`
//! with them (`forget_parent_waiters`), before it reads the word. The invariants then hold
//! for the child's own queue: a writer's release in the child (the forking thread's) finds
//! the queue empty and frees the lock; a word that was exactly `QUEUED` at the fork (a
//! parent's releaser on its way to serve, never arriving) becomes 0 when the first thread
//! of the child would queue behind it, and that thread takes the lock instead.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{fence, AtomicUsize};

use crossbeam_utils::Backoff;

use super::spin_lock::SpinLock;
use super::wait_entry::{WaitEntry, WakeBatch};
use super::wait_list::WaitList;
use super::waiter::FIRST_OUTCOME;
use crate::park::WaitReason;
use crate::sched::context;

/// A writer holds the lock.
const WRITER: usize = 1;
/// The wait queue is not empty.
const QUEUED: usize = 2;
/// One reader in the reader count.
const ONE_READER: usize = 4;
/// A word at or above this has too many readers to add one more safely.
const READERS_LIMIT: usize = usize::MAX / 2;

/// Outcome: the lock was handed to you (as you asked: shared or exclusive).
const GRANTED: u8 = FIRST_OUTCOME;

/// Backoff rounds a kernel thread spins before queuing (as the mutex does).
const SPIN_ROUNDS: u32 = 6;

/// What a queued thread asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    Read,
    Write,
}

type Entry = WaitEntry<Access>;

/// A reader-writer lock with no data: the state word and the wait queue.
pub(crate) struct RawRwLock {
    state: AtomicUsize,
    queue: SpinLock<WaitList<Entry>>,
}

// SAFETY: the queue holds pointers to entries of blocked threads; they are dereferenced
// only under the queue lock or by the waker that unlinked them (sync/waiter.rs), and an
// entry holds only a thread handle and a plain `Access`, usable from any thread.
unsafe impl Sync for RawRwLock {}
// SAFETY: as above; a lock with waiters is borrowed, so moving it moves no entry.
unsafe impl Send for RawRwLock {}

impl RawRwLock {
    /// An unlocked lock.
    pub(crate) const fn new() -> RawRwLock {
        RawRwLock {
            state: AtomicUsize::new(0),
            queue: SpinLock::new(WaitList::new()),
        }
    }

    /// Takes the lock shared, parking while a writer holds it or threads are queued.
    #[inline]
    pub(crate) fn read(&self) {
        let s = self.state.load(Relaxed);
        if s & (WRITER | QUEUED) != 0
            || s >= READERS_LIMIT
            || self
                .state
                .compare_exchange_weak(s, s + ONE_READER, Acquire, Relaxed)
                .is_err()
        {
            self.acquire_contended(Access::Read);
        }
    }

    /// Takes the lock shared if that is possible without waiting (no writer holds it and
    /// nobody is queued).
    #[inline]
    pub(crate) fn try_read(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        loop {
            if s & (WRITER | QUEUED) != 0 {
                return false;
            }
            check_reader_count(s);
            match self
                .state
                .compare_exchange_weak(s, s + ONE_READER, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// Releases a shared hold. The caller holds the lock shared.
    #[inline]
    pub(crate) fn read_unlock(&self) {
        let prev = self.state.fetch_sub(ONE_READER, Release);
        debug_assert!(
            prev >= ONE_READER && prev & WRITER == 0,
            "read_unlock of {prev:#x}"
        );
        if prev == ONE_READER | QUEUED {
            self.read_unlock_last();
        }
    }

    /// Takes the lock exclusively, parking while anyone holds it or threads are queued.
    #[inline]
    pub(crate) fn write(&self) {
        if self
            .state
            .compare_exchange_weak(0, WRITER, Acquire, Relaxed)
            .is_err()
        {
            self.acquire_contended(Access::Write);
        }
    }

    /// Takes the lock exclusively if it is free and nobody is queued.
    #[inline]
    pub(crate) fn try_write(&self) -> bool {
        self.state
            .compare_exchange(0, WRITER, Acquire, Relaxed)
            .is_ok()
    }

    /// Releases an exclusive hold. The caller holds the lock exclusively.
    #[inline]
    pub(crate) fn write_unlock(&self) {
        if self
            .state
            .compare_exchange(WRITER, 0, Release, Relaxed)
            .is_err()
        {
            self.write_unlock_contended();
        }
    }

    /// Whether `s` lets `access` be taken right away, without queuing.
    #[inline]
    fn available(s: usize, access: Access) -> bool {
        match access {
            Access::Read => s & (WRITER | QUEUED) == 0,
            Access::Write => s == 0,
        }
    }

    #[cold]
    #[inline(never)]
    fn acquire_contended(&self, access: Access) {
        let may_spin = context::current_green().is_none();
        let backoff = Backoff::new();
        let mut spins = 0;
        let entry = Entry::for_current_thread(access);
        loop {
            let s = self.state.load(Relaxed);
            if Self::available(s, access) {
                let new = match access {
                    Access::Read => {
                        check_reader_count(s);
                        s + ONE_READER
                    }
                    Access::Write => WRITER,
                };
                if self
                    .state
                    .compare_exchange_weak(s, new, Acquire, Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if may_spin && s & QUEUED == 0 && spins < SPIN_ROUNDS {
                spins += 1;
                backoff.spin();
                continue;
            }
            if self.queue_and_wait(&entry) {
                return;
            }
        }
    }

    /// Queues `entry` unless the lock became available, and parks until it is handed the
    /// lock. Returns false (without queuing) if the lock was available.
    fn queue_and_wait(&self, entry: &Entry) -> bool {
        {
            let mut queue = self.queue.lock();
            self.forget_parent_waiters(&mut queue);
            let mut s = self.state.load(Relaxed);
            while s & QUEUED == 0 {
                if Self::available(s, entry.data) {
                    return false;
                }
                // Relaxed: QUEUED is ordered by the queue lock (module doc).
                match self
                    .state
                    .compare_exchange_weak(s, s | QUEUED, Relaxed, Relaxed)
                {
                    Ok(_) => break,
                    Err(actual) => s = actual,
                }
            }
            // SAFETY: `entry` lives in our caller's frame and is in no list (it was never
            // queued, or we returned above before queuing it). It stays put until unlinked:
            // we wait below until a server has unlinked and served it, and if we are
            // unwound meanwhile the guard unlinks it.
            unsafe { queue.push_back(entry) };
        }
        let reason = match entry.data {
            Access::Read => WaitReason::RwLockRead,
            Access::Write => WaitReason::RwLockWrite,
        };
        let guard = LeaveOnUnwind { lock: self, entry };
        let outcome = entry.waiter.wait(reason, None);
        std::mem::forget(guard);
        debug_assert_eq!(outcome, Some(GRANTED));
        true
    }

    #[cold]
    #[inline(never)]
    fn read_unlock_last(&self) {
        // Every earlier reader's release `fetch_sub` happens before what we serve.
        fence(Acquire);
        let mut batch = WakeBatch::new();
        {
            let mut queue = self.queue.lock();
            self.serve(&mut queue, &mut batch, false);
        }
        batch.wake_all(GRANTED);
    }

    #[cold]
    #[inline(never)]
    fn write_unlock_contended(&self) {
        let mut batch = WakeBatch::new();
        {
            let mut queue = self.queue.lock();
            self.serve(&mut queue, &mut batch, true);
        }
        batch.wake_all(GRANTED);
    }

    /// Hands the lock to the head of the queue (and the readers right behind a reader
    /// head) if they may have it now; see "Serve" in the module doc. Called under the
    /// queue lock; the served entries go into `batch`, whose wake-ups the caller finishes
    /// after unlocking. `releasing_writer`: the caller holds the lock exclusively and is
    /// giving it up (then the word is its own to write).
    fn serve(
        &self,
        queue: &mut WaitList<Entry>,
        batch: &mut WakeBatch<Access>,
        releasing_writer: bool,
    ) {
        self.forget_parent_waiters(queue);
        let Some(head) = queue.pop_front() else {
            // The queue is empty, so QUEUED is clear (invariant).
            if releasing_writer {
                // We hold WRITER and nobody is queued: no one else writes the word.
                self.state.store(0, Release);
            }
            return;
        };
        // Acquire: we have seen every release of the lock before this word (module doc).
        let s = self.state.load(Acquire);
        // SAFETY: `head` was queued, so it is live (push contract); `data` is not written
        // while an entry is queued.
        let access = unsafe { (*head).data };
        match access {
            Access::Write => {
                if !releasing_writer && s != QUEUED {
                    // Held: the holders' release will serve it.
                    // SAFETY: `head` was the head of this queue a moment ago, still live.
                    unsafe { queue.push_front(head) };
                    return;
                }
                let rest = if queue.is_empty() { 0 } else { QUEUED };
                // The word is ours: we hold WRITER, or it is exactly QUEUED (module doc).
                self.state.store(WRITER | rest, Release);
                // SAFETY: unlinked just now under the queue lock, and `WAITING`.
                unsafe { batch.push(head) };
            }
            Access::Read => {
                if !releasing_writer && s & WRITER != 0 {
                    // SAFETY: as above.
                    unsafe { queue.push_front(head) };
                    return;
                }
                // SAFETY: unlinked just now under the queue lock, and `WAITING`.
                unsafe { batch.push(head) };
                let mut granted = ONE_READER;
                while let Some(next) = queue.pop_front() {
                    // SAFETY: as for `head`.
                    if unsafe { (*next).data } == Access::Write {
                        // SAFETY: as for `head`.
                        unsafe { queue.push_front(next) };
                        break;
                    }
                    // SAFETY: unlinked just now under the queue lock, and `WAITING`.
                    unsafe { batch.push(next) };
                    granted += ONE_READER;
                }
                let rest = if queue.is_empty() { 0 } else { QUEUED };
                if releasing_writer {
                    self.state.store(granted | rest, Release);
                } else {
                    // Readers may be leaving meanwhile, so add; QUEUED is set (invariant)
                    // and must go if the queue is now empty.
                    debug_assert!(s & QUEUED != 0);
                    let delta = granted - (QUEUED - rest);
                    let prev = self.state.fetch_add(delta, AcqRel);
                    check_reader_count(prev);
                }
            }
        }
    }

    /// Under the queue lock: forgets the queue's entries linked before a fork (threads of
    /// the parent process) and `QUEUED` with them (module docs, "In a fork child").
    #[inline]
    fn forget_parent_waiters(&self, queue: &mut WaitList<Entry>) {
        if queue.forget_inherited() {
            // Relaxed: QUEUED is ordered by the queue lock (module doc).
            self.state.fetch_and(!QUEUED, Relaxed);
        }
    }
}

/// Panics if a word with this many readers cannot take one more (a reader count that
/// large can only come from leaked guards).
#[inline]
fn check_reader_count(s: usize) {
    if s >= READERS_LIMIT {
        too_many_readers();
    }
}

#[cold]
#[inline(never)]
fn too_many_readers() -> ! {
    panic!("too many readers hold the RwLock (are read guards being leaked?)");
}

/// Unlinks a queued entry, or releases the lock it was handed, if its thread is unwound
/// while parked.
struct LeaveOnUnwind<'a> {
    lock: &'a RawRwLock,
    entry: &'a Entry,
}

impl Drop for LeaveOnUnwind<'_> {
    fn drop(&mut self) {
        let mut queue = self.lock.queue.lock();
        if self.entry.waiter.is_waiting() {
            // SAFETY: a `WAITING` entry is in this queue (only the lock holder unlinks).
            unsafe { queue.remove(self.entry) };
            let mut batch = WakeBatch::new();
            if queue.is_empty() {
                self.lock.state.fetch_and(!QUEUED, Relaxed);
            } else {
                // The new head may be admissible now (readers behind a departed writer).
                self.lock.serve(&mut queue, &mut batch, false);
            }
            drop(queue);
            batch.wake_all(GRANTED);
            return;
        }
        drop(queue);
        self.entry.waiter.outcome_without_parking();
        match self.entry.data {
            Access::Read => self.lock.read_unlock(),
            Access::Write => self.lock.write_unlock(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RawRwLock;
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    struct Pair {
        lock: RawRwLock,
        value: UnsafeCell<(u64, u64)>,
    }
    // SAFETY: `value` is read only with the lock held shared and written only with it held
    // exclusively.
    unsafe impl Sync for Pair {}

    #[test]
    fn kernel_threads_read_and_write() {
        let p = Arc::new(Pair {
            lock: RawRwLock::new(),
            value: UnsafeCell::new((0, 0)),
        });
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        if (i + t) % 4 == 0 {
                            p.lock.write();
                            // SAFETY: held exclusively.
                            unsafe {
                                let v = &mut *p.value.get();
                                v.0 += 1;
                                v.1 += 1;
                            }
                            p.lock.write_unlock();
                        } else {
                            p.lock.read();
                            // SAFETY: held shared; writers are excluded.
                            let (a, b) = unsafe { *p.value.get() };
                            assert_eq!(a, b);
                            p.lock.read_unlock();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(p.lock.try_write());
        assert!(!p.lock.try_read());
        p.lock.write_unlock();
        assert!(p.lock.try_read() && p.lock.try_read());
        assert!(!p.lock.try_write());
        p.lock.read_unlock();
        p.lock.read_unlock();
        // SAFETY: no thread holds the lock any more.
        assert_eq!(unsafe { *p.value.get() }, (30_000, 30_000));
    }
}
