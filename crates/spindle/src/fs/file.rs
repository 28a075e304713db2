//! [`File`]: an open file whose calls park only the green thread.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::pool_backend::{self, Transfer};
use super::uring_backend;
use super::{Metadata, OpenOptions, Permissions};

/// An open file, as [`std::fs::File`], whose every call that can block runs on the
/// runtime's helper pool (see [the module docs](crate::fs) for what that costs).
///
/// `File` and `&File` implement [`Read`], [`Write`] and [`Seek`], so std's `BufReader` and
/// `BufWriter`, and other crates' readers and writers, work over it. Through `&File`,
/// several threads can use one file at once; they share its offset, as with std. Positional
/// I/O ([`File::read_at`], [`File::write_at`]) leaves the offset alone.
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use spindle::fs::File;
///
/// let path = std::env::temp_dir().join(format!("spindle-doc-file-{}", std::process::id()));
/// let rt = spindle::Runtime::builder().build()?;
/// rt.block_on(|| {
///     let mut f = File::create(&path)?;
///     f.write_all(b"alpha\nbeta\n")?;
///     f.sync_all()?;
///     // Buffered: one helper round trip per 8 KiB, not per line.
///     let lines: Vec<String> = BufReader::new(File::open(&path)?).lines().collect::<Result<_, _>>()?;
///     assert_eq!(lines, ["alpha", "beta"]);
///     let mut word = [0u8; 4];
///     File::open(&path)?.read_exact_at(&mut word, 6)?;
///     assert_eq!(&word, b"beta");
///     spindle::fs::remove_file(&path)
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct File {
    /// Shared with the helper running a call on it (a helper gets a clone of the `Arc` and
    /// drops it before the caller resumes).
    inner: Arc<std::fs::File>,
    /// Whether positioned calls may go to the io_uring ring, learnt at the first one.
    positionable: Positionable,
}

/// Whether a file takes positioned reads and writes, once known. An io_uring read or
/// write ignores its offset on a file that has no position (a pipe, a FIFO, a socket, a
/// terminal) and moves bytes through it, where `pread(2)` and `pwrite(2)` fail with
/// `ESPIPE`; so the ring gets positioned calls only for regular files and block devices,
/// and the others go to the helper pool, whose std call fails as std's does. Two threads
/// asking at once both ask, and agree.
pub(super) struct Positionable(AtomicU8);

impl Positionable {
    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;

    fn new() -> Positionable {
        Positionable(AtomicU8::new(Self::UNKNOWN))
    }

    /// The answer: known, or asked of `ask` and kept (an error is not kept).
    pub(super) fn get_or_ask(&self, ask: impl FnOnce() -> io::Result<bool>) -> io::Result<bool> {
        match self.0.load(Relaxed) {
            Self::YES => Ok(true),
            Self::NO => Ok(false),
            _ => {
                let yes = ask()?;
                self.0
                    .store(if yes { Self::YES } else { Self::NO }, Relaxed);
                Ok(yes)
            }
        }
    }
}

impl File {
    /// Opens a file for reading (as [`std::fs::File::open`]).
    pub fn open<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new().read(true).open(path)
    }

    /// Opens a file for writing, creating it or truncating it (as [`std::fs::File::create`]).
    pub fn create<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// Creates a new file for reading and writing, failing with
    /// [`io::ErrorKind::AlreadyExists`] if it exists (as [`std::fs::File::create_new`]).
    pub fn create_new<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
    }

    /// Blank [`OpenOptions`] (as [`std::fs::File::options`]).
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Reads up to `buf.len()` bytes (at most 2 MiB per call) at `offset`, without moving
    /// the file offset; returns how many were read, 0 at the end of the file (as
    /// [`std::os::unix::fs::FileExt::read_at`]).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.read_with(buf, Transfer::At(offset))
    }

    /// Writes up to `buf.len()` bytes (at most 2 MiB per call) at `offset`, without moving
    /// the file offset; returns how many were written (as
    /// [`std::os::unix::fs::FileExt::write_at`]). On a file opened for appending, Linux
    /// writes at the end instead.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.write_with(buf, Transfer::At(offset))
    }

    /// Fills `buf` from `offset`, in one helper round trip;
    /// [`io::ErrorKind::UnexpectedEof`] if the file ends first.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_with(buf, Transfer::AllAt(offset)).map(drop)
    }

    /// Writes all of `buf` at `offset`, in one helper round trip.
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_with(buf, Transfer::AllAt(offset)).map(drop)
    }

    /// Flushes the file's data and metadata to the device (`fsync`).
    pub fn sync_all(&self) -> io::Result<()> {
        self.sync(false)
    }

    /// Flushes the file's data, and only the metadata needed to read it back, to the device
    /// (`fdatasync`).
    pub fn sync_data(&self) -> io::Result<()> {
        self.sync(true)
    }

    /// Truncates or extends the file to `size` bytes; the offset does not move.
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        pool_backend::with_file(&self.inner, move |f| f.set_len(size))
    }

    /// The file's metadata (`fstat`).
    pub fn metadata(&self) -> io::Result<Metadata> {
        pool_backend::with_file(&self.inner, |f| f.metadata())
    }

    /// Changes the file's permissions (`fchmod`).
    pub fn set_permissions(&self, perm: Permissions) -> io::Result<()> {
        pool_backend::with_file(&self.inner, move |f| f.set_permissions(perm))
    }

    /// A new `File` for the same open file (a `dup` of the descriptor: offset and flags are
    /// shared). Runs in place: `dup` does not block.
    pub fn try_clone(&self) -> io::Result<File> {
        self.inner.try_clone().map(File::from)
    }

    /// Reads as `how` says: an io_uring request on an io_uring worker, a helper-pool
    /// round trip otherwise.
    fn read_with(&self, buf: &mut [u8], how: Transfer) -> io::Result<usize> {
        uring_backend::read(&self.inner, buf, how, &self.positionable)
            .unwrap_or_else(|| pool_backend::read(&self.inner, buf, how))
    }

    /// Writes as `how` says, by the same path as [`File::read_with`].
    fn write_with(&self, buf: &[u8], how: Transfer) -> io::Result<usize> {
        uring_backend::write(&self.inner, buf, how, &self.positionable)
            .unwrap_or_else(|| pool_backend::write(&self.inner, buf, how))
    }

    /// `fsync`, or `fdatasync` with `data_only`, by the same path as [`File::read_with`].
    fn sync(&self, data_only: bool) -> io::Result<()> {
        uring_backend::sync(&self.inner, data_only).unwrap_or_else(|| {
            pool_backend::with_file(&self.inner, move |f| {
                if data_only {
                    f.sync_data()
                } else {
                    f.sync_all()
                }
            })
        })
    }

    /// The std file inside, for code that wants one (its calls block the kernel thread).
    pub fn into_std(self) -> std::fs::File {
        // Helpers (and the ring's requests) drop their clones before the caller resumes,
        // and a `File` whose call was cancelled is dropped with its thread, so the `Arc`
        // is unique here; should that ever change, a `dup` of the descriptor is the same
        // open file.
        Arc::try_unwrap(self.inner).unwrap_or_else(|shared| {
            shared
                .try_clone()
                .expect("spindle::fs::File::into_std: cannot dup the descriptor")
        })
    }
}

impl From<std::fs::File> for File {
    /// Wraps a std file; its calls then park only the green thread.
    fn from(file: std::fs::File) -> File {
        File {
            inner: Arc::new(file),
            positionable: Positionable::new(),
        }
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl std::os::unix::fs::FileExt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        File::read_at(self, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        File::write_at(self, buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        File::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        File::write_all_at(self, buf, offset)
    }
}

/// Reads at the file offset; at most 2 MiB per `read`, while `read_exact`, `read_to_end`
/// and `read_to_string` take one helper round trip each.
impl Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(buf, Transfer::Stream)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.read_with(buf, Transfer::StreamAll).map(drop)
    }

    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        pool_backend::read_to_end(&self.inner, buf)
    }

    fn read_to_string(&mut self, buf: &mut String) -> io::Result<usize> {
        pool_backend::read_to_string(&self.inner, buf)
    }
}

/// Writes at the file offset (the end, when appending); at most 2 MiB per `write`, while
/// `write_all` takes one helper round trip. `flush` does nothing, as with std: a `File`
/// keeps no buffer (use [`File::sync_all`] to reach the device).
impl Write for &File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(buf, Transfer::Stream)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_with(buf, Transfer::StreamAll).map(drop)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Moves the file offset (`lseek`, on a helper: on network and FUSE file systems it can
/// ask the server for the file's size).
impl Seek for &File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        pool_backend::with_file(&self.inner, move |mut f| f.seek(pos))
    }
}

/// As for `&File`.
impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        (&*self).read_exact(buf)
    }

    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        (&*self).read_to_end(buf)
    }

    fn read_to_string(&mut self, buf: &mut String) -> io::Result<usize> {
        (&*self).read_to_string(buf)
    }
}

/// As for `&File`.
impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}

/// As for `&File`.
impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        (&*self).seek(pos)
    }
}
