//! The io_uring backend of [`crate::fs`]: reads, writes and syncs of an open [`super::File`]
//! as io_uring requests of the calling green thread's worker, instead of helper-pool
//! round trips.
//!
//! A call takes this path when it runs on a green thread whose worker's reactor is
//! io_uring ([`crate::io::IoBackend`]) and is positioned ([`Transfer::At`] or
//! [`Transfer::AllAt`]: `read_at`, `write_at` and their exact forms) on a regular file or
//! a block device, or is a sync; each function returns `None` otherwise, and the caller
//! goes to the helper pool (`pool_backend.rs`). The kind of file is asked once per
//! `File`, with a `statx` request of the ring: io_uring ignores the offset of a read or
//! write on a file without a position (a pipe, a FIFO, a socket) and moves its bytes,
//! where `pread(2)` fails with `ESPIPE`, as std's `read_at` then does on the pool.
//!
//! Why not reads and writes at the file position: io_uring can make them (offset -1,
//! `IORING_FEAT_RW_CUR_POS`), but it reads the position when the request starts and
//! stores it when it ends without taking the file's position lock, which `read(2)` and
//! `write(2)` take. Two such writes in flight at once (two workers, or two requests of one
//! ring) can start at the same position and overwrite each other, where std's writes to a
//! shared `File` each land whole, one after the other; this suite's test of eight threads
//! appending to one shared file loses data that way. io_uring runtimes (tokio-uring,
//! glommio) offer only positioned files for this reason. So the position-moving calls
//! keep std's semantics on the helper pool.
//!
//! Everything else (open, metadata, directories, `read_to_end`) stays on the helper pool
//! too: std's `File` and `Metadata` cannot be built from what `IORING_OP_OPENAT` and
//! `IORING_OP_STATX` return without re-implementing `OpenOptions` and `Metadata`, and one
//! helper round trip for a whole file costs less than a request per chunk.
//!
//! The kernel fills or drains a buffer owned by the request (`io/reactor/uring.rs`,
//! "The protocol"), not the caller's: a caller cancelled while waiting loses its stack,
//! and the kernel may still be copying. So a read costs one copy out of that buffer and a
//! write one copy into it, as on the helper pool, but no helper thread and no wake-up of
//! one: the worker's own ring does the work.

use std::io;
use std::sync::Arc;

use io_uring::opcode;

use super::file::Positionable;
use super::pool_backend::{Transfer, MAX_TRANSFER};
use crate::io::reactor::uring::{self, UringReactor};
use crate::park::WaitReason;

/// A positioned transfer: its start and whether it must move the whole buffer. `None`
/// for transfers at the file position (module docs).
fn positioned(how: Transfer) -> Option<(u64, bool)> {
    match how {
        Transfer::Stream | Transfer::StreamAll => None,
        Transfer::At(pos) => Some((pos, false)),
        Transfer::AllAt(pos) => Some((pos, true)),
    }
}

/// The caller's side of a transfer: the buffer a read fills or a write drains.
enum Caller<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

/// Reads from `file` into `buf` as `how` says; `None` as [`on_the_ring`] says. An empty
/// read still asks the kernel, as std's does (a file not open for reading fails).
pub(super) fn read(
    file: &Arc<std::fs::File>,
    buf: &mut [u8],
    how: Transfer,
    known: &Positionable,
) -> Option<io::Result<usize>> {
    Some(
        on_the_ring(file, how, known)?
            .and_then(|(ring, start, whole)| transfer(ring, file, Caller::Read(buf), start, whole)),
    )
}

/// Writes `buf` to `file` as `how` says; `None` as [`on_the_ring`] says. An empty write
/// still asks the kernel, as std's does (it reports a bad descriptor).
pub(super) fn write(
    file: &Arc<std::fs::File>,
    buf: &[u8],
    how: Transfer,
    known: &Positionable,
) -> Option<io::Result<usize>> {
    Some(
        on_the_ring(file, how, known)?.and_then(|(ring, start, whole)| {
            transfer(ring, file, Caller::Write(buf), start, whole)
        }),
    )
}

/// The ring a transfer `how` on `file` goes to, with its start and whether it must move
/// the whole buffer; `None` when not on an io_uring worker, not positioned, or on a file
/// that has no position (`known` keeps [`positionable`]'s answer: `fs/file.rs`,
/// `Positionable`), and an error when the ring could not tell.
fn on_the_ring<'r>(
    file: &Arc<std::fs::File>,
    how: Transfer,
    known: &Positionable,
) -> Option<io::Result<(&'r UringReactor, u64, bool)>> {
    let (start, whole) = positioned(how)?;
    let ring = uring::current()?;
    match known.get_or_ask(|| positionable(ring, file)) {
        Ok(true) => Some(Ok((ring, start, whole))),
        Ok(false) => None,
        Err(e) => Some(Err(e)),
    }
}

/// Whether `file` is a regular file or a block device, the kinds whose reads and writes
/// take an offset: a `statx` request of the ring (on a network file system the kernel may
/// have to ask the server, so not a call in place).
fn positionable(ring: &UringReactor, file: &Arc<std::fs::File>) -> io::Result<bool> {
    let buffer = vec![0u8; std::mem::size_of::<libc::statx>()];
    let (_, buffer) = ring.file_request(file, buffer, WaitReason::FileStat, &|fd, p, _| {
        opcode::Statx::new(fd, c"".as_ptr(), p.cast())
            .flags(libc::AT_EMPTY_PATH)
            .mask(libc::STATX_TYPE)
            .build()
    })?;
    // SAFETY: the buffer holds `size_of::<statx>()` bytes, which the completed request
    // filled (`statx` is plain data: any bytes are a value); unaligned, so read unaligned.
    let stat: libc::statx = unsafe { std::ptr::read_unaligned(buffer.as_ptr().cast()) };
    let kind = u32::from(stat.stx_mode) & libc::S_IFMT;
    Ok(kind == libc::S_IFREG || kind == libc::S_IFBLK)
}

/// A positioned transfer from `start`, one request per at most [`MAX_TRANSFER`] bytes,
/// through a buffer the request owns. With `whole`, every byte (retrying `EINTR`), else
/// what the first request moved, as `read_exact_at` / `read_at` and their write forms.
fn transfer(
    ring: &UringReactor,
    file: &Arc<std::fs::File>,
    mut caller: Caller<'_>,
    start: u64,
    whole: bool,
) -> io::Result<usize> {
    let len = match &caller {
        Caller::Read(buf) => buf.len(),
        Caller::Write(buf) => buf.len(),
    };
    if whole && len == 0 {
        // As std's `read_exact_at` and `write_all_at`, which make no call for nothing.
        return Ok(0);
    }
    let mut done = 0;
    let mut chunk = Vec::new();
    loop {
        let part = (len - done).min(MAX_TRANSFER);
        chunk.clear();
        let reason = match &caller {
            Caller::Read(_) => {
                chunk.resize(part, 0);
                WaitReason::FileRead
            }
            Caller::Write(buf) => {
                chunk.extend_from_slice(&buf[done..done + part]);
                WaitReason::FileWrite
            }
        };
        // io_uring reads an offset of -1 (u64::MAX) as "the file position": an offset past
        // what pread(2) takes fails as pread does, with EINVAL, instead of becoming one.
        let offset = match start.checked_add(done as u64) {
            Some(offset) if offset <= i64::MAX as u64 => offset,
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let is_read = matches!(caller, Caller::Read(_));
        let requested = ring.file_request(file, chunk, reason, &|fd, p, l| {
            if is_read {
                opcode::Read::new(fd, p, l).offset(offset).build()
            } else {
                opcode::Write::new(fd, p, l).offset(offset).build()
            }
        });
        let n;
        (n, chunk) = match requested {
            Ok(got) => got,
            Err(e) if whole && e.kind() == io::ErrorKind::Interrupted => {
                chunk = Vec::new();
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Caller::Read(buf) = &mut caller {
            buf[done..done + n].copy_from_slice(&chunk[..n]);
        }
        done += n;
        if !whole {
            return Ok(n);
        }
        if done >= len {
            return Ok(done);
        }
        if n == 0 {
            return Err(if is_read {
                io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer")
            } else {
                io::Error::new(io::ErrorKind::WriteZero, "failed to write whole buffer")
            });
        }
    }
}

/// `fsync` (`fdatasync` with `data_only`) of `file`; `None` when not on an io_uring worker.
pub(super) fn sync(file: &Arc<std::fs::File>, data_only: bool) -> Option<io::Result<()>> {
    let ring = uring::current()?;
    let flags = if data_only {
        io_uring::types::FsyncFlags::DATASYNC
    } else {
        io_uring::types::FsyncFlags::empty()
    };
    let result = ring.file_request(file, Vec::new(), WaitReason::FileSync, &|fd, _, _| {
        opcode::Fsync::new(fd).flags(flags).build()
    });
    Some(result.map(drop))
}
