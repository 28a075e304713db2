//! [`Stdio`]: what a child's stdin, stdout or stderr is connected to.

use std::io;
use std::os::fd::OwnedFd;

/// Describes what to do with a standard stream of a child process, as
/// `std::process::Stdio`: inherit the parent's, connect it to `/dev/null`, make a pipe, or
/// hand over a descriptor (a file, or another child's pipe end, to chain two children).
///
/// Unlike std's, it is kept by the [`crate::process::Command`] and applied again on every
/// spawn: a descriptor is duplicated for each child.
#[derive(Debug)]
pub struct Stdio(pub(super) Kind);

#[derive(Debug)]
pub(super) enum Kind {
    Inherit,
    Null,
    Piped,
    Fd(OwnedFd),
}

impl Stdio {
    /// A new pipe between parent and child; the parent's end is on the [`crate::process::Child`].
    pub fn piped() -> Stdio {
        Stdio(Kind::Piped)
    }

    /// The parent's own stream.
    pub fn inherit() -> Stdio {
        Stdio(Kind::Inherit)
    }

    /// `/dev/null`.
    pub fn null() -> Stdio {
        Stdio(Kind::Null)
    }

    /// The std form of this setting for one spawn.
    pub(super) fn to_std(&self) -> io::Result<std::process::Stdio> {
        Ok(match &self.0 {
            Kind::Inherit => std::process::Stdio::inherit(),
            Kind::Null => std::process::Stdio::null(),
            Kind::Piped => std::process::Stdio::piped(),
            Kind::Fd(fd) => std::process::Stdio::from(fd.try_clone()?),
        })
    }
}

impl From<OwnedFd> for Stdio {
    /// Connects the stream to `fd` (duplicated for each spawn).
    fn from(fd: OwnedFd) -> Stdio {
        Stdio(Kind::Fd(fd))
    }
}

impl From<std::fs::File> for Stdio {
    /// Connects the stream to the file.
    fn from(file: std::fs::File) -> Stdio {
        Stdio(Kind::Fd(file.into()))
    }
}
