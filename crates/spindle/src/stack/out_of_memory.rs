//! Errors for a stack that cannot be reserved, saying why.
//!
//! When `mmap`, `mprotect` or `madvise` fail with `ENOMEM` there are two very different
//! causes: the process has run out of memory mappings (`vm.max_map_count`, 65,530 by default;
//! each `mprotect`ed guard costs a mapping), or it has really run out of memory or address space.
//! The first is common, fixable with one `sysctl`, and invisible in the bare error. So on this
//! error path only, the mappings are counted (the lines of `/proc/self/maps`) and compared with
//! `/proc/sys/vm/max_map_count`, and the message names the cause, the stack size asked for, and
//! the fix.

use std::fs::File;
use std::io::{self, BufRead, BufReader};

use super::arena::Arena;
use super::guard::GuardStrategy;
use super::Bytes;

/// What was being done when reserving a stack failed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Step {
    /// Mapping a new arena chunk of this many bytes.
    MapChunk(usize),
    /// Installing a slot's guard page with this strategy.
    Guard(GuardStrategy),
}

impl Step {
    fn describe(self) -> String {
        match self {
            Step::MapChunk(len) => format!("mmap of a {} arena chunk", Bytes(len)),
            Step::Guard(strategy) => format!("{} of its guard page", strategy.system_call()),
        }
    }
}

/// The error for a failed reservation of a stack with `usable` bytes: `err` is what the
/// system call at `step` returned.
#[cold]
pub(super) fn reservation_error(
    usable: usize,
    step: Step,
    err: io::Error,
    arena: &Arena,
) -> io::Error {
    let mappings = if err.raw_os_error() == Some(libc::ENOMEM) {
        mapping_count().ok().zip(max_map_count().ok())
    } else {
        None
    };
    describe(
        usable,
        step,
        err,
        arena.reserved_bytes(),
        arena.guard_strategy(),
        mappings,
    )
}

/// Builds the message; `mappings` is `(mappings in use, vm.max_map_count)` when known.
fn describe(
    usable: usize,
    step: Step,
    err: io::Error,
    reserved: usize,
    guard: GuardStrategy,
    mappings: Option<(usize, usize)>,
) -> io::Error {
    let what = format!("cannot reserve a {} green-thread stack", Bytes(usable));
    if err.raw_os_error() != Some(libc::ENOMEM) {
        return io::Error::new(
            err.kind(),
            format!("{what}: {} failed: {err}", step.describe()),
        );
    }
    let message = match mappings {
        Some((in_use, max)) if near_limit(in_use, max) => {
            let why_so_many = match guard {
                GuardStrategy::ProtNone => {
                    " Green-thread stacks are guarded with mprotect(PROT_NONE) here, which costs \
                     two mappings per stack (madvise(MADV_GUARD_INSTALL), Linux 6.13+, costs \
                     none)."
                }
                GuardStrategy::GuardMarker => "",
            };
            format!(
                "{what}: the process has {in_use} memory mappings, at the kernel's limit \
                 vm.max_map_count = {max}, and {} failed ({err}).{why_so_many} Raise the limit, \
                 e.g. `sysctl -w vm.max_map_count={}`, or run fewer green threads at once.",
                step.describe(),
                suggested_limit(max),
            )
        }
        _ => format!(
            "{what}: out of memory or address space: {} failed ({err}); this worker's stack \
             pool already reserves {} of address space",
            step.describe(),
            Bytes(reserved),
        ),
    };
    io::Error::new(io::ErrorKind::OutOfMemory, message)
}

/// Whether `in_use` mappings are close enough to `max` that the limit is the likely cause.
fn near_limit(in_use: usize, max: usize) -> bool {
    in_use + (max / 100).max(16) >= max
}

/// A limit to suggest: four times the current one, rounded up to a power of two.
fn suggested_limit(max: usize) -> usize {
    max.saturating_mul(4).max(1).next_power_of_two()
}

/// How many memory mappings the process has: the lines of `/proc/self/maps`.
fn mapping_count() -> io::Result<usize> {
    let mut reader = BufReader::new(File::open("/proc/self/maps")?);
    let mut lines = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(lines);
        }
        lines += buf.iter().filter(|&&b| b == b'\n').count();
        let len = buf.len();
        reader.consume(len);
    }
}

/// The kernel's limit on memory mappings per process.
fn max_map_count() -> io::Result<usize> {
    let text = std::fs::read_to_string("/proc/sys/vm/max_map_count")?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("vm.max_map_count: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_support::{child_mode, run_child, test_path};
    use crate::stack::StackPool;

    fn enomem() -> io::Error {
        io::Error::from_raw_os_error(libc::ENOMEM)
    }

    #[test]
    fn map_count_exhaustion_is_named_with_the_fix() {
        let err = describe(
            16 * 1024,
            Step::Guard(GuardStrategy::ProtNone),
            enomem(),
            1 << 30,
            GuardStrategy::ProtNone,
            Some((65_530, 65_530)),
        );
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot reserve a 16 KiB green-thread stack: "),
            "{msg}"
        );
        assert!(msg.contains("65530 memory mappings"), "{msg}");
        assert!(msg.contains("vm.max_map_count = 65530"), "{msg}");
        assert!(msg.contains("`sysctl -w vm.max_map_count=262144`"), "{msg}");
        assert!(
            msg.contains("mprotect(PROT_NONE) of its guard page failed"),
            "{msg}"
        );
        assert!(msg.contains("two mappings"), "{msg}");
    }

    #[test]
    fn memory_exhaustion_is_named_with_the_size() {
        let err = describe(
            64 * 1024,
            Step::MapChunk(64 << 20),
            enomem(),
            3 << 30,
            GuardStrategy::GuardMarker,
            Some((120, 65_530)),
        );
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot reserve a 64 KiB green-thread stack: "),
            "{msg}"
        );
        assert!(msg.contains("out of memory or address space"), "{msg}");
        assert!(msg.contains("mmap of a 64 MiB arena chunk failed"), "{msg}");
        assert!(msg.contains("reserves 3 GiB"), "{msg}");
        assert!(!msg.contains("max_map_count"), "{msg}");
    }

    #[test]
    fn other_errors_keep_their_kind() {
        let err = describe(
            16 * 1024,
            Step::Guard(GuardStrategy::GuardMarker),
            io::Error::from_raw_os_error(libc::EPERM),
            0,
            GuardStrategy::GuardMarker,
            None,
        );
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err
            .to_string()
            .contains("madvise(MADV_GUARD_INSTALL) of its guard page failed"));
    }

    #[test]
    fn mappings_are_counted() {
        assert!(mapping_count().unwrap() > 5);
        assert!(max_map_count().unwrap() > 0);
    }

    /// Child mode: with mprotect guards (two mappings per stack), take stacks until the
    /// mapping limit stops us, and print the error. In a child process, because exhausting
    /// the mapping budget would break every other test running in this one.
    #[test]
    fn child_entry() {
        if child_mode().as_deref() != Some("exhaust-mappings") {
            return;
        }
        let mut pool = StackPool::with_guard_strategy(0, GuardStrategy::ProtNone);
        let mut held = Vec::new();
        loop {
            match pool.take(16 * 1024) {
                Ok(stack) => held.push(stack),
                Err(err) => {
                    println!("held={} kind={:?}", held.len(), err.kind());
                    println!("error: {err}");
                    break;
                }
            }
        }
        for stack in held {
            pool.give_back(stack);
        }
    }

    #[test]
    fn exhausting_the_mapping_limit_gives_an_error_naming_it() {
        let out = run_child(
            &test_path(module_path!(), "child_entry"),
            "exhaust-mappings",
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {out:?}");
        assert!(stdout.contains("kind=OutOfMemory"), "{stdout}");
        assert!(
            stdout.contains("error: cannot reserve a 16 KiB green-thread stack: the process has"),
            "{stdout}"
        );
        assert!(stdout.contains("sysctl -w vm.max_map_count="), "{stdout}");
    }
}
