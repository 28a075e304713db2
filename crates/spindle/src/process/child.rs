//! [`Child`]: a running or exited child process.

use std::io::{self, Read};
use std::os::fd::OwnedFd;

use super::pipe::{ChildStderr, ChildStdin, ChildStdout};
use super::{ExitStatus, Output};
use crate::io::Interest;
use crate::park::WaitReason;

/// A child process started by [`crate::process::Command`], as `std::process::Child`.
///
/// Dropping it neither kills nor waits for the process (as with std): call [`Child::wait`]
/// to reap it.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    /// Readable once the child has exited (`pidfd_open(2)`).
    pidfd: OwnedFd,
    /// The parent's end of the child's stdin, if it was piped.
    pub stdin: Option<ChildStdin>,
    /// The parent's end of the child's stdout, if it was piped.
    pub stdout: Option<ChildStdout>,
    /// The parent's end of the child's stderr, if it was piped.
    pub stderr: Option<ChildStderr>,
}

impl Child {
    /// Takes over a child std just started, with its pipes.
    pub(super) fn from_std(mut inner: std::process::Child) -> io::Result<Child> {
        let pid = rustix::process::Pid::from_raw(inner.id() as i32)
            .expect("a child's process id is positive");
        // The child cannot have been reaped yet (only `wait` here reaps it), so its pid
        // still names it, even if it has exited.
        let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                // Without a pidfd there is no way to wait without blocking: do not leave
                // the child running unobserved.
                let _ = inner.kill();
                let _ = inner.wait();
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("spindle::process: pidfd_open failed for the new child: {e}"),
                ));
            }
        };
        Ok(Child {
            stdin: inner.stdin.take().map(ChildStdin::from_std).transpose()?,
            stdout: inner.stdout.take().map(ChildStdout::from_std).transpose()?,
            stderr: inner.stderr.take().map(ChildStderr::from_std).transpose()?,
            inner,
            pidfd,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Sends `SIGKILL` to the child, as std's `Child::kill` (which does nothing once the
    /// child has been reaped).
    pub fn kill(&mut self) -> io::Result<()> {
        self.inner.kill()
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.inner.try_wait()
    }

    /// Waits for the child to exit and returns its status; parks only the calling green
    /// thread. Closes the child's stdin first, as std does, so a child that reads it to
    /// the end does not wait for the parent forever. Returns the same status when called
    /// again.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        loop {
            if let Some(status) = self.inner.try_wait()? {
                return Ok(status);
            }
            crate::io::wait_until(
                std::os::fd::AsFd::as_fd(&self.pidfd),
                Interest::Read,
                WaitReason::ProcessWait,
                None,
            )?;
        }
    }

    /// Closes stdin, reads all of stdout and stderr (the ones that were piped) at the same
    /// time, and waits for the child, as std's `wait_with_output`; parks only the calling
    /// green thread.
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        // Both at once, or a child that fills the pipe we are not reading would wait for
        // us while we wait for the other: stderr on a thread of its own.
        let (stdout, stderr) = crate::scope(|s| {
            let err = s.spawn(move || read_all(stderr));
            let out = read_all(stdout);
            let err = err
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (out, err)
        });
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout: stdout?,
            stderr: stderr?,
        })
    }
}

/// Everything the pipe end gives until end of file (nothing if there is no pipe).
fn read_all(end: Option<impl Read>) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut end) = end {
        end.read_to_end(&mut buf)?;
    }
    Ok(buf)
}
