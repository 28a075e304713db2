//! The io_uring backend of [`crate::fs`]: reads, writes and syncs of an open [`super::File`]
//! as io_uring requests of the calling green thread's worker, instead of helper-pool
//! round trips.
//!
//! A call takes this path when it runs on a green thread whose worker's reactor is
//! io_uring ([`crate::io::IoBackend`]) and is positioned ([`Transfer::At`] or
//! [`Transfer::AllAt`]: `read_at`, `write_at` and their exact forms), or is a sync; each
//! function returns `None` otherwise, and the caller goes to the helper pool
//! (`pool_backend.rs`).
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

/// Reads from `file` into `buf` as `how` says; `None` when not on an io_uring worker or
/// not positioned.
pub(super) fn read(
    file: &Arc<std::fs::File>,
    buf: &mut [u8],
    how: Transfer,
) -> Option<io::Result<usize>> {
    let (start, whole) = positioned(how)?;
    let ring = uring::current()?;
    Some(read_on(ring, file, buf, start, whole))
}

fn read_on(
    ring: &UringReactor,
    file: &Arc<std::fs::File>,
    buf: &mut [u8],
    start: u64,
    whole: bool,
) -> io::Result<usize> {
    let mut done = 0;
    let mut chunk = Vec::new();
    while done < buf.len() {
        let offset = start.saturating_add(done as u64);
        chunk.resize((buf.len() - done).min(MAX_TRANSFER), 0);
        let (n, back) = match ring.file_request(file, chunk, WaitReason::FileRead, &|fd, p, len| {
            opcode::Read::new(fd, p, len).offset(offset).build()
        }) {
            Ok(got) => got,
            Err(e) if whole && e.kind() == io::ErrorKind::Interrupted => {
                chunk = Vec::new();
                continue;
            }
            Err(e) => return Err(e),
        };
        chunk = back;
        buf[done..done + n].copy_from_slice(&chunk[..n]);
        done += n;
        if !whole {
            return Ok(n);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "failed to fill whole buffer",
            ));
        }
    }
    Ok(done)
}

/// Writes `buf` to `file` as `how` says; `None` when not on an io_uring worker or not
/// positioned.
pub(super) fn write(
    file: &Arc<std::fs::File>,
    buf: &[u8],
    how: Transfer,
) -> Option<io::Result<usize>> {
    let (start, whole) = positioned(how)?;
    let ring = uring::current()?;
    Some(write_on(ring, file, buf, start, whole))
}

fn write_on(
    ring: &UringReactor,
    file: &Arc<std::fs::File>,
    buf: &[u8],
    start: u64,
    whole: bool,
) -> io::Result<usize> {
    let mut done = 0;
    let mut chunk = Vec::new();
    // An empty write still asks the kernel, as std's does (it reports a bad descriptor).
    while done < buf.len() || (done == 0 && buf.is_empty()) {
        let offset = start.saturating_add(done as u64);
        let end = done + (buf.len() - done).min(MAX_TRANSFER);
        chunk.clear();
        chunk.extend_from_slice(&buf[done..end]);
        let (n, back) =
            match ring.file_request(file, chunk, WaitReason::FileWrite, &|fd, p, len| {
                opcode::Write::new(fd, p, len).offset(offset).build()
            }) {
                Ok(got) => got,
                Err(e) if whole && e.kind() == io::ErrorKind::Interrupted => {
                    chunk = Vec::new();
                    continue;
                }
                Err(e) => return Err(e),
            };
        chunk = back;
        done += n;
        if !whole || buf.is_empty() {
            return Ok(n);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "failed to write whole buffer",
            ));
        }
    }
    Ok(done)
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
