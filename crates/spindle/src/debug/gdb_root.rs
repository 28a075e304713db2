//! What a debugger reads to find green threads: `spindle_debug_root`.
//!
//! gdb knows kernel threads; green threads live in spindle's own structures, whose Rust
//! layout a debugger cannot know (release builds carry line tables, not types). So spindle
//! keeps a small C-layout table at a fixed symbol, `spindle_debug_root`, that
//! `tools/spindle-gdb.py` reads from a live process or a core file:
//!
//! - a header (`magic`, `version`), then the head of a list of [`GdbWorker`] records, one
//!   per worker of every green-thread runtime (a record is claimed when a worker starts
//!   and released when it exits, then reused: never freed, so a debugger never follows a
//!   dangling pointer);
//! - `layout`: the offsets a debugger needs inside a thread record (id, name, park word,
//!   wait reason, stack bounds, the coroutine's saved stack pointer), published once by the
//!   first worker that starts a coroutine, measured on real values (`offset_of!`, and for
//!   what Rust does not expose, such as an enum variant's payload or corosensei's private
//!   saved stack pointer, the distance between two addresses or a look at a suspended
//!   coroutine, see [`publish_layout`]);
//! - per worker: its registry of started green threads (the vector's pointer and length,
//!   stored on every change: two relaxed stores per spawn and per exit), and where its
//!   "running thread" word is.
//!
//! A debugger reads all of it while the process is stopped; a worker stopped halfway
//! through an update shows one stale entry at worst, which the script tolerates.

use std::ffi::{c_char, CString};
use std::mem::offset_of;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};

use crate::park::WaitReason;
use crate::stack::OverflowInfo;
use crate::task::green::{Body, GreenCoroutine, GreenLocal, GreenTask};
use crate::task::park_word::PARKED;
use crate::task::ThreadInner;

/// The root's `version`: bump it when the layout below changes.
const VERSION: u64 = 1;

/// Indices into [`GdbRoot::layout`]. Offsets are in bytes; `u64::MAX` means unknown.
#[allow(dead_code)]
mod slot {
    /// 1 once the other slots are filled.
    pub const READY: usize = 0;
    /// `ThreadInner::id` (a u64).
    pub const THREAD_ID: usize = 1;
    /// `ThreadInner::name` (`Option<Box<str>>`: two words, null for `None`).
    pub const THREAD_NAME: usize = 2;
    /// Which word of the name is the pointer (0 or 1); the other is the length.
    pub const NAME_PTR_WORD: usize = 3;
    /// The green part (`GreenTask`) inside a green thread's `ThreadInner`.
    pub const THREAD_GREEN: usize = 4;
    /// The park word (a u32) inside `GreenTask`.
    pub const GREEN_STATE: usize = 5;
    /// `GreenLocal` inside `GreenTask`.
    pub const GREEN_LOCAL: usize = 6;
    /// The wait reason (a u8, an index into the names table) inside `GreenLocal`.
    pub const LOCAL_WAIT_REASON: usize = 7;
    /// The descriptor of an I/O wait (an i32, -1 for none) inside `GreenLocal`.
    pub const LOCAL_WAIT_FD: usize = 8;
    /// The switch count (a u64) inside `GreenLocal`.
    pub const LOCAL_SWITCHES: usize = 9;
    /// The coroutine inside `GreenLocal` (while the thread has one).
    pub const LOCAL_COROUTINE: usize = 10;
    /// The saved stack pointer (a u64, 0 when the coroutine finished) inside the coroutine.
    pub const COROUTINE_STACK_PTR: usize = 11;
    /// The low end of the usable stack (a u64) inside `GreenLocal`.
    pub const LOCAL_STACK_LOW: usize = 12;
    /// The usable stack size (a u64) inside `GreenLocal`.
    pub const LOCAL_STACK_SIZE: usize = 13;
    /// The park word's value for a parked thread.
    pub const PARKED_VALUE: usize = 14;
    /// A pointer to the wait reasons' names: an array of pointers to NUL-terminated strings.
    pub const WAIT_REASON_NAMES: usize = 15;
    /// How many names that array has.
    pub const WAIT_REASON_COUNT: usize = 16;
    /// How many slots there are.
    pub const COUNT: usize = 17;
}

/// The table a debugger reads (module docs).
#[repr(C)]
pub struct GdbRoot {
    magic: [u8; 8],
    version: u64,
    workers: AtomicPtr<GdbWorker>,
    layout: [AtomicU64; slot::COUNT],
}

/// One worker, as a debugger sees it.
#[repr(C)]
pub struct GdbWorker {
    /// The next record of the list (set once, before the record is published).
    next: AtomicPtr<GdbWorker>,
    /// 1 while a worker uses this record.
    claimed: AtomicU64,
    /// The runtime's number (as in `debug::RuntimeInfo::id`).
    runtime: AtomicU64,
    /// The worker's index.
    index: AtomicU64,
    /// The worker's registry: a pointer to its first entry (`*const ThreadInner`).
    registry: AtomicUsize,
    /// The registry's length.
    len: AtomicUsize,
    /// Where the id of the green thread the worker runs is (a u64, 0 for none).
    running: AtomicUsize,
}

/// The root, at a symbol a debugger finds by name.
#[no_mangle]
#[used]
pub static spindle_debug_root: GdbRoot = GdbRoot {
    magic: *b"SPINDLE\0",
    version: VERSION,
    workers: AtomicPtr::new(std::ptr::null_mut()),
    layout: [const { AtomicU64::new(u64::MAX) }; slot::COUNT],
};

impl GdbWorker {
    /// Claims a record for worker `index` of runtime `runtime` whose running-thread word
    /// is `running`: a released one if there is one, else a new one pushed on the list.
    pub(crate) fn claim(runtime: u64, index: usize, running: &AtomicU64) -> &'static GdbWorker {
        let root = &spindle_debug_root;
        let mut p = root.workers.load(Acquire);
        // SAFETY: records are never freed, and `next` is set before a record is published.
        while let Some(w) = unsafe { p.as_ref() } {
            if w.claimed.compare_exchange(0, 1, AcqRel, Relaxed).is_ok() {
                w.fill(runtime, index, running);
                return w;
            }
            p = w.next.load(Acquire);
        }
        let w: &'static GdbWorker = Box::leak(Box::new(GdbWorker {
            next: AtomicPtr::new(std::ptr::null_mut()),
            claimed: AtomicU64::new(1),
            runtime: AtomicU64::new(0),
            index: AtomicU64::new(0),
            registry: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
        }));
        w.fill(runtime, index, running);
        let mut head = root.workers.load(Acquire);
        loop {
            w.next.store(head, Relaxed);
            let new = w as *const GdbWorker as *mut GdbWorker;
            match root.workers.compare_exchange(head, new, AcqRel, Acquire) {
                Ok(_) => return w,
                Err(h) => head = h,
            }
        }
    }

    fn fill(&self, runtime: u64, index: usize, running: &AtomicU64) {
        self.runtime.store(runtime, Relaxed);
        self.index.store(index as u64, Relaxed);
        self.len.store(0, Relaxed);
        self.registry.store(0, Relaxed);
        self.running
            .store(running as *const AtomicU64 as usize, Relaxed);
    }

    /// The worker's registry is now `len` entries at `entries`.
    #[inline]
    pub(crate) fn publish(&self, entries: *const *const ThreadInner, len: usize) {
        self.registry.store(entries as usize, Relaxed);
        self.len.store(len, Relaxed);
    }

    /// The worker exits: the record may be reused.
    pub(crate) fn release(&self) {
        self.len.store(0, Relaxed);
        self.running.store(0, Relaxed);
        self.claimed.store(0, Release);
    }
}

/// Whether the layout has been published.
static PUBLISHED: AtomicBool = AtomicBool::new(false);

/// Whether the layout still has to be published (one relaxed load).
#[inline]
pub(crate) fn layout_wanted() -> bool {
    !PUBLISHED.load(Relaxed)
}

/// Publishes the layout once, measured on `task` (a green thread's record) and on a
/// suspended probe coroutine ([`measure_coroutine`]'s answer, if there was one).
#[cold]
pub(crate) fn publish_layout(task: &ThreadInner, coroutine: Option<(usize, usize)>) {
    if PUBLISHED.swap(true, Relaxed) {
        return;
    }
    let layout = &spindle_debug_root.layout;
    let set = |i: usize, v: usize| layout[i].store(v as u64, Relaxed);
    let addr = |p: *const u8| p as usize;
    set(slot::THREAD_ID, offset_of!(ThreadInner, id));
    set(slot::THREAD_NAME, offset_of!(ThreadInner, name));
    let probe_name: Option<Box<str>> = Some("name".into());
    // SAFETY: an `Option<Box<str>>` is two words (a fat pointer with a null niche); reading
    // them as two usizes only looks at its bytes.
    let words: [usize; 2] = unsafe { std::mem::transmute_copy(&probe_name) };
    let ptr = probe_name.as_deref().map_or(0, |n| n.as_ptr() as usize);
    set(slot::NAME_PTR_WORD, usize::from(words[0] != ptr));
    let green = task.green();
    let green_addr = addr(green as *const GreenTask as *const u8);
    set(
        slot::THREAD_GREEN,
        green_addr - addr(task as *const ThreadInner as *const u8),
    );
    set(slot::GREEN_STATE, offset_of!(GreenTask, state));
    set(
        slot::GREEN_LOCAL,
        addr(green.local_ptr() as *const u8) - green_addr,
    );
    set(slot::LOCAL_WAIT_REASON, offset_of!(GreenLocal, wait_reason));
    set(slot::LOCAL_WAIT_FD, offset_of!(GreenLocal, wait_fd));
    set(slot::LOCAL_SWITCHES, offset_of!(GreenLocal, switches));
    let overflow = offset_of!(GreenLocal, overflow);
    set(
        slot::LOCAL_STACK_LOW,
        overflow + offset_of!(OverflowInfo, guard_end),
    );
    set(
        slot::LOCAL_STACK_SIZE,
        overflow + offset_of!(OverflowInfo, stack_size),
    );
    set(slot::PARKED_VALUE, PARKED as usize);
    let names: Vec<*const c_char> = WaitReason::all()
        .iter()
        .map(|r| {
            CString::new(r.as_str())
                .expect("no NUL in a reason")
                .into_raw() as *const c_char
        })
        .collect();
    set(slot::WAIT_REASON_COUNT, names.len());
    set(
        slot::WAIT_REASON_NAMES,
        Box::leak(names.into_boxed_slice()).as_ptr() as usize,
    );
    if let Some((in_local, stack_ptr)) = coroutine {
        set(
            slot::LOCAL_COROUTINE,
            offset_of!(GreenLocal, body) + in_local,
        );
        set(slot::COROUTINE_STACK_PTR, stack_ptr);
    }
    set(slot::READY, 1);
}

/// The saved stack pointer of the switched-out coroutine in `local`, once the layout is
/// known (for a capture's check of the room left on the thread's stack).
///
/// # Safety
///
/// `local` is a started green thread's, switched out, read by its worker.
pub(crate) unsafe fn saved_stack_pointer(local: *const GreenLocal) -> Option<usize> {
    let layout = &spindle_debug_root.layout;
    let (co, sp) = (
        layout[slot::LOCAL_COROUTINE].load(Relaxed),
        layout[slot::COROUTINE_STACK_PTR].load(Relaxed),
    );
    if co == u64::MAX || sp == u64::MAX {
        return None;
    }
    // SAFETY: both offsets were measured on this very type (`publish_layout`), so the word
    // lies within the coroutine inside `*local`, which the caller may read.
    Some(unsafe {
        (local as *const u8)
            .add((co + sp) as usize)
            .cast::<usize>()
            .read_unaligned()
    })
}

/// Where a coroutine sits inside `Body::Coroutine`, and where its saved stack pointer sits
/// inside the coroutine, measured on `body`, which holds a coroutine suspended once on a
/// stack whose usable part is `[low, high)`.
///
/// corosensei keeps the saved stack pointer in a private field. Two words of a suspended
/// coroutine point strictly inside its usable stack: that one and the initial stack
/// pointer, which is higher (suspending pushes frames). The other words are the stack's
/// bounds (none strictly inside), a pool id and a function pointer. So the saved stack
/// pointer is the lower of exactly two such words; anything else leaves it unknown.
pub(crate) fn measure_coroutine(body: &Body, low: usize, high: usize) -> Option<(usize, usize)> {
    let Body::Coroutine(co) = body else {
        return None;
    };
    let co_start = co as *const GreenCoroutine as usize;
    let in_body = co_start - body as *const Body as usize;
    let words = std::mem::size_of::<GreenCoroutine>() / std::mem::size_of::<usize>();
    // SAFETY: reading the coroutine's bytes as words, within the value.
    let read = |i: usize| unsafe { (co_start as *const usize).add(i).read_unaligned() };
    let inside: Vec<(usize, usize)> = (0..words)
        .map(|i| (i, read(i)))
        .filter(|&(_, v)| v > low && v < high)
        .collect();
    match inside.as_slice() {
        [(i, a), (j, b)] => {
            let word = if a < b { *i } else { *j };
            Some((in_body, word * std::mem::size_of::<usize>()))
        }
        _ => None,
    }
}
