//! `IoBackend`: which kernel interface a runtime's reactors use, and how `Auto` chooses.
//!
//! `Auto` takes io_uring when this process may use it with everything the reactor needs,
//! and epoll otherwise. "May use it" is decided once per process by building a small ring
//! and probing it: io_uring can be missing (kernels before 5.1, or built without it),
//! switched off (`kernel.io_uring_disabled`), refused by a seccomp filter (many container
//! runtimes), or too old for the features used here (`IORING_FEAT_EXT_ARG`, 5.11, for a
//! wait with a timeout; `IORING_FEAT_NODROP`, 5.5, so that no completion is lost when the
//! completion queue is full; `IORING_FEAT_RW_CUR_POS`, 5.6, for reads and writes at the
//! file position; and the opcodes poll, read, write, fsync and cancel).
//!
//! When no backend is set on the builder, the environment variable `SPINDLE_IO_BACKEND`
//! (`auto`, `epoll` or `io_uring`; empty counts as not set) gives the default: that is how
//! one test suite runs on both backends without changing a line.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::OnceLock;

/// The environment variable that gives the default backend.
pub const IO_BACKEND_ENV: &str = "SPINDLE_IO_BACKEND";

/// Which kernel interface the reactors of a green-thread runtime use.
///
/// Set it with [`crate::runtime::Builder::io_backend`]; ask a runtime which one it runs on
/// with [`crate::Runtime::io_backend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum IoBackend {
    /// io_uring where the kernel allows it (probed once per process), epoll otherwise.
    #[default]
    Auto,
    /// `epoll(7)`: readiness for descriptors; files go through the helper pool.
    Epoll,
    /// `io_uring(7)`: readiness through poll requests, and file reads, writes and syncs
    /// as io_uring requests instead of helper-pool round trips.
    IoUring,
}

impl IoBackend {
    /// The backend a runtime asked for `self` gets: `Auto` resolved, and `IoUring`
    /// checked. Fails only for an explicit `IoUring` that this process cannot use.
    pub(crate) fn resolve(self) -> io::Result<IoBackend> {
        match self {
            IoBackend::Epoll => Ok(IoBackend::Epoll),
            IoBackend::Auto => Ok(match uring_support() {
                Ok(()) => IoBackend::IoUring,
                Err(_) => IoBackend::Epoll,
            }),
            IoBackend::IoUring => match uring_support() {
                Ok(()) => Ok(IoBackend::IoUring),
                Err(why) => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "IoBackend::IoUring was asked for, but this process cannot use \
                         io_uring: {why}; use IoBackend::Auto or IoBackend::Epoll"
                    ),
                )),
            },
        }
    }

    /// The default of a builder: `SPINDLE_IO_BACKEND` if set, else `Auto`. Set but empty
    /// (or blank) counts as not set: a shell user who writes `SPINDLE_IO_BACKEND= command`
    /// usually means "no choice".
    pub(crate) fn from_env() -> io::Result<IoBackend> {
        match std::env::var(IO_BACKEND_ENV) {
            Ok(value) if value.trim().is_empty() => Ok(IoBackend::Auto),
            Ok(value) => value.parse().map_err(|e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!("environment variable {IO_BACKEND_ENV}: {e}"),
                )
            }),
            Err(std::env::VarError::NotPresent) => Ok(IoBackend::Auto),
            Err(std::env::VarError::NotUnicode(v)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("environment variable {IO_BACKEND_ENV} is not valid UTF-8: {v:?}"),
            )),
        }
    }
}

/// Whether this process can run the io_uring reactor, probed once: `Err` says why not.
fn uring_support() -> Result<(), &'static str> {
    static SUPPORT: OnceLock<Result<(), String>> = OnceLock::new();
    crate::fork::once_init(&SUPPORT, crate::io::reactor::uring::probe)
        .as_ref()
        .map(|&()| ())
        .map_err(|why| why.as_str())
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoBackend::Auto => "auto",
            IoBackend::Epoll => "epoll",
            IoBackend::IoUring => "io_uring",
        })
    }
}

impl FromStr for IoBackend {
    type Err = io::Error;

    /// Parses `auto`, `epoll` and `io_uring` (also `io-uring` and `iouring`).
    fn from_str(s: &str) -> io::Result<IoBackend> {
        match s.trim() {
            "auto" => Ok(IoBackend::Auto),
            "epoll" => Ok(IoBackend::Epoll),
            "io_uring" | "io-uring" | "iouring" => Ok(IoBackend::IoUring),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "unknown I/O backend {other:?}: expected \"auto\", \"epoll\" or \"io_uring\""
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IoBackend;

    #[test]
    fn parses_and_prints() {
        for b in [IoBackend::Auto, IoBackend::Epoll, IoBackend::IoUring] {
            assert_eq!(b.to_string().parse::<IoBackend>().unwrap(), b);
        }
        let err = "kqueue".parse::<IoBackend>().unwrap_err();
        assert!(err.to_string().contains("\"kqueue\""), "{err}");
    }

    #[test]
    fn auto_resolves_to_a_concrete_backend() {
        let got = IoBackend::Auto.resolve().unwrap();
        assert_ne!(got, IoBackend::Auto);
    }
}
