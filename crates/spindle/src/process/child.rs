//! [`Child`]: a running or exited child process.

use std::io::{self, Read};
use std::os::fd::OwnedFd;

use super::pipe::{read_both_polling, ChildStderr, ChildStdin, ChildStdout};
use super::{ExitStatus, Output};
use crate::io::Interest;
use crate::park::WaitReason;
use crate::sched::context;

/// A child process started by [`crate::process::Command`], as `std::process::Child`.
///
/// Dropping it neither kills nor waits for the process (as with std): call [`Child::wait`]
/// to reap it.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    /// Readable once the child has exited (`pidfd_open(2)`); `None` if the child was
    /// already reaped by someone else (`SIGCHLD` ignored), when waiting fails as std's.
    pidfd: Option<OwnedFd>,
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
        // Unless the kernel reaps children itself (`SIGCHLD` ignored: ESRCH), the child
        // cannot have been reaped yet, only `wait` here reaps it, so its pid still names
        // it even if it has exited.
        let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => Some(fd),
            Err(rustix::io::Errno::SRCH) => None,
            Err(e) => {
                return Err(abandon(
                    inner,
                    format!("spindle::process: pidfd_open failed for the new child: {e}"),
                    e.into(),
                ))
            }
        };
        let pipes = (|| {
            Ok::<_, io::Error>((
                inner.stdin.take().map(ChildStdin::from_std).transpose()?,
                inner.stdout.take().map(ChildStdout::from_std).transpose()?,
                inner.stderr.take().map(ChildStderr::from_std).transpose()?,
            ))
        })();
        let (stdin, stdout, stderr) = match pipes {
            Ok(p) => p,
            Err(e) => {
                let what = format!("spindle::process: cannot set up the child's pipes: {e}");
                return Err(abandon(inner, what, e));
            }
        };
        Ok(Child {
            stdin,
            stdout,
            stderr,
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
            let Some(pidfd) = &self.pidfd else {
                // No pidfd, yet not reaped (pidfd_open said ESRCH, which only a reaped
                // child gives): block in std's wait rather than spin.
                return self.inner.wait();
            };
            crate::io::wait_until(
                std::os::fd::AsFd::as_fd(pidfd),
                Interest::Read,
                WaitReason::ProcessWait,
                None,
            )?;
        }
    }

    /// Closes stdin, reads all of stdout and stderr (the ones that were piped) at the same
    /// time, and waits for the child, as std's `wait_with_output`; parks only the calling
    /// green thread.
    ///
    /// On a green thread the two pipes are read by two green threads (this one and a
    /// scoped one), each waiting through the reactor. On a kernel thread (one-to-one, or
    /// outside any runtime) this thread reads both, polling them (`poll(2)`) as std does:
    /// no helper thread, which a one-to-one runtime inherited by a fork child could not
    /// spawn anyway. On the green thread that called `fork()`, in the child, it fails
    /// with the inherited-runtime message, as [`Child::wait`] does there (`fork.rs`).
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        let read = if crate::fork::on_inherited_green_thread() {
            Err(crate::fork::inherited_error(
                "read a child's output on the green thread that called fork()",
            ))
        } else if context::current_green().is_none() {
            read_both_polling(stdout.as_ref(), stderr.as_ref())
        } else {
            // Both at once, or a child that fills the pipe we are not reading would wait
            // for us while we wait for the other: stderr on a thread of its own.
            crate::scope(|s| {
                let err = s.spawn(move || read_all(stderr));
                let out = read_all(stdout);
                let err = err
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                Ok((out?, err?))
            })
        };
        // Reaped even if a read failed.
        let status = self.wait()?;
        let (stdout, stderr) = read?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// A child that cannot be handed out: killed and reaped, so that it is not left running
/// unobserved; the error says `what` failed.
fn abandon(mut child: std::process::Child, what: String, cause: io::Error) -> io::Error {
    let _ = child.kill();
    let _ = child.wait();
    io::Error::new(cause.kind(), what)
}

/// Everything the pipe end gives until end of file (nothing if there is no pipe).
fn read_all(end: Option<impl Read>) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut end) = end {
        end.read_to_end(&mut buf)?;
    }
    Ok(buf)
}
