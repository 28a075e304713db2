//! The parent's ends of a child's pipes: [`ChildStdin`], [`ChildStdout`], [`ChildStderr`].
//!
//! Each is std's pipe end made non-blocking (`O_NONBLOCK` is on the parent's end only: the
//! two ends of a pipe are separate open files, so the child's stays blocking), read and
//! written like a spindle socket: try the call, and on `WouldBlock` wait for the descriptor
//! through the worker's reactor, parking only the green thread (`net`'s "How a call
//! waits").
//!
//! [`read_both_polling`] is `Child::wait_with_output` on a kernel thread: it reads a
//! child's stdout and stderr at the same time from the calling thread alone, as std does
//! on Unix.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::stdio::{Kind, Stdio};
use crate::io::Interest;
use crate::park::WaitReason;

/// One non-blocking pipe end.
#[derive(Debug)]
struct PipeEnd(OwnedFd);

impl PipeEnd {
    /// Takes over `fd`, making it non-blocking.
    fn new(fd: OwnedFd) -> io::Result<PipeEnd> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(PipeEnd(fd))
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        crate::net::retry(
            self.0.as_fd(),
            Interest::Read,
            WaitReason::PipeRead,
            || Ok(None),
            || Ok(rustix::io::read(&self.0, &mut *buf)?),
        )
    }

    /// Reads what the pipe holds now onto the end of `buf`, until it would block: true at
    /// end of file, false when the pipe is empty but still open. Never waits.
    fn read_available(&self, buf: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            buf.reserve(READ_CHUNK);
            match rustix::io::read(&self.0, rustix::buffer::spare_capacity(buf)) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        crate::net::retry(
            self.0.as_fd(),
            Interest::Write,
            WaitReason::PipeWrite,
            || Ok(None),
            || Ok(rustix::io::write(&self.0, buf)?),
        )
    }

    /// The descriptor, blocking again, for a child to use as its stream.
    fn into_blocking(self) -> io::Result<OwnedFd> {
        rustix::io::ioctl_fionbio(&self.0, false)?;
        Ok(self.0)
    }
}

/// Room made in the buffer before each read of [`PipeEnd::read_available`]: a pipe's
/// default capacity, so that a full pipe is emptied in one call.
const READ_CHUNK: usize = 64 * 1024;

/// Reads `out` and `err` (each if piped) to their ends at the same time from the calling
/// kernel thread, which blocks in `poll(2)` on the ones still open and reads whichever is
/// ready, as std's `wait_with_output` does on Unix. Reading one pipe to its end before the
/// other would deadlock with a child that fills the other meanwhile. For a kernel thread
/// only (one-to-one, or outside any runtime): a green thread would block its worker.
pub(super) fn read_both_polling(
    out: Option<&ChildStdout>,
    err: Option<&ChildStderr>,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut open = [out.map(|e| &e.0), err.map(|e| &e.0)];
    let mut got = [Vec::new(), Vec::new()];
    loop {
        let waiting: Vec<usize> = (0..2).filter(|&i| open[i].is_some()).collect();
        if waiting.is_empty() {
            let [out, err] = got;
            return Ok((out, err));
        }
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd<'_>> = waiting
                .iter()
                .filter_map(|&i| open[i])
                .map(|end| PollFd::new(&end.0, PollFlags::IN))
                .collect();
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            // Readable, at end of file (`POLLHUP`) or failed (`POLLERR`): the read says
            // which.
            waiting
                .iter()
                .zip(&fds)
                .filter(|(_, fd)| !fd.revents().is_empty())
                .map(|(&i, _)| i)
                .collect()
        };
        for i in ready {
            if let Some(end) = open[i] {
                if end.read_available(&mut got[i])? {
                    open[i] = None;
                }
            }
        }
    }
}

/// The parent's end of a child's stdin: [`Write`] parks only the calling green thread.
/// Dropping it closes the pipe, which the child reads as end of input.
#[derive(Debug)]
pub struct ChildStdin(PipeEnd);

/// The parent's end of a child's stdout: [`Read`] parks only the calling green thread.
#[derive(Debug)]
pub struct ChildStdout(PipeEnd);

/// The parent's end of a child's stderr: [`Read`] parks only the calling green thread.
#[derive(Debug)]
pub struct ChildStderr(PipeEnd);

impl ChildStdin {
    pub(super) fn from_std(end: std::process::ChildStdin) -> io::Result<ChildStdin> {
        PipeEnd::new(end.into()).map(ChildStdin)
    }
}

impl ChildStdout {
    pub(super) fn from_std(end: std::process::ChildStdout) -> io::Result<ChildStdout> {
        PipeEnd::new(end.into()).map(ChildStdout)
    }
}

impl ChildStderr {
    pub(super) fn from_std(end: std::process::ChildStderr) -> io::Result<ChildStderr> {
        PipeEnd::new(end.into()).map(ChildStderr)
    }
}

impl Write for ChildStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &ChildStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for ChildStdout {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Read for ChildStderr {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// The descriptor traits, and the conversions into a descriptor and into a [`Stdio`] (to
/// connect the pipe to another child: the descriptor is made blocking again for it).
macro_rules! pipe_conversions {
    ($ty:ident) => {
        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0 .0.as_fd()
            }
        }

        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.0 .0.as_raw_fd()
            }
        }

        impl From<$ty> for OwnedFd {
            /// The descriptor, still non-blocking.
            fn from(end: $ty) -> OwnedFd {
                end.0 .0
            }
        }

        impl TryFrom<$ty> for Stdio {
            type Error = io::Error;

            /// The pipe end as another child's stream, made blocking again (a child
            /// program expects blocking standard streams).
            fn try_from(end: $ty) -> io::Result<Stdio> {
                Ok(Stdio(Kind::Fd(end.0.into_blocking()?)))
            }
        }
    };
}

pipe_conversions!(ChildStdin);
pipe_conversions!(ChildStdout);
pipe_conversions!(ChildStderr);
