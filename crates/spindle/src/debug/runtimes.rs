//! The live runtimes of the process, for dumps to find.
//!
//! A runtime registers here when it is built, with weak references, so that the list
//! keeps nothing alive; entries whose runtime is gone are dropped whenever the list is
//! touched. Taking the lock is a cost of building a runtime and of a dump, never of a
//! spawn or a switch.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};

use crate::io::IoBackend;
use crate::runtime::Model;
use crate::sched::one_to_one::OneToOneShared;
use crate::sched::pool::PoolShared;

/// What a registered runtime is.
pub(crate) enum RuntimeRef<P, O> {
    Green(P),
    OneToOne(O),
}

/// A registered runtime.
pub(crate) struct Registered<P, O> {
    pub(crate) id: u64,
    pub(crate) model: Model,
    pub(crate) io_backend: Option<IoBackend>,
    pub(crate) runtime: RuntimeRef<P, O>,
}

type Entry = Registered<Weak<PoolShared>, Weak<OneToOneShared>>;

/// A live runtime, as [`live`] returns it.
pub(crate) type Live = Registered<Arc<PoolShared>, Arc<OneToOneShared>>;

struct List {
    entries: Vec<Entry>,
}

static RUNTIMES: Mutex<List> = Mutex::new(List {
    entries: Vec::new(),
});

/// The next runtime number.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A number for a runtime being built, unique in the process, in order of creation.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Relaxed)
}

fn list() -> std::sync::MutexGuard<'static, List> {
    RUNTIMES.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_alive(e: &Entry) -> bool {
    match &e.runtime {
        RuntimeRef::Green(p) => p.strong_count() > 0,
        RuntimeRef::OneToOne(o) => o.strong_count() > 0,
    }
}

/// Registers a runtime being built, under the number a green runtime got from [`next_id`]
/// when it was made (a one-to-one runtime gets one here).
pub(crate) fn register(
    model: Model,
    io_backend: Option<IoBackend>,
    runtime: RuntimeRef<&Arc<PoolShared>, &Arc<OneToOneShared>>,
) {
    crate::debug::clock::exact_stamp();
    let (id, runtime) = match runtime {
        RuntimeRef::Green(p) => (p.debug_id, RuntimeRef::Green(Arc::downgrade(p))),
        RuntimeRef::OneToOne(o) => (next_id(), RuntimeRef::OneToOne(Arc::downgrade(o))),
    };
    let mut l = list();
    l.entries.retain(is_alive);
    l.entries.push(Registered {
        id,
        model,
        io_backend,
        runtime,
    });
}

/// The runtimes alive now, in order of creation.
pub(crate) fn live() -> Vec<Live> {
    let mut l = list();
    l.entries.retain(is_alive);
    l.entries
        .iter()
        .filter_map(|e| {
            let runtime = match &e.runtime {
                RuntimeRef::Green(p) => RuntimeRef::Green(p.upgrade()?),
                RuntimeRef::OneToOne(o) => RuntimeRef::OneToOne(o.upgrade()?),
            };
            Some(Registered {
                id: e.id,
                model: e.model,
                io_backend: e.io_backend,
                runtime,
            })
        })
        .collect()
}
