//! The helper-pool backend of [`crate::fs`]: every file system call runs on a helper
//! thread through [`crate::unblock`], with owned data crossing over.
//!
//! `unblock` needs a `'static` closure, so nothing borrowed from the caller can go to the
//! helper: the file goes as a clone of its `Arc`, a path as a `PathBuf`, the bytes of a write
//! as a `Vec` copied from the caller's slice, and a read fills a `Vec` on the helper that the
//! caller then copies into its buffer. Borrowing the caller's buffer instead would be
//! unsound, not merely awkward: if the runtime is dropped while the caller waits, the caller
//! is cancelled and its stack freed, while the helper may still be writing into the buffer.
//!
//! On a kernel thread (the one-to-one model, or outside any runtime) `unblock` runs the
//! closure in place, and so does this module, but directly on the caller's buffers, without
//! the copies.
//!
//! The io_uring backend (`uring_backend.rs`) takes the positioned reads and writes and the
//! syncs when the worker's reactor is io_uring; everything else comes here.

use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::sched::context;

/// The most bytes one `read`, `write`, `read_at` or `write_at` moves through a helper: the
/// helper's buffer is this big at most, whatever the caller's. `Read` and `Write` allow
/// short transfers; the `_exact` and `_all` forms move everything in one round trip.
pub(super) const MAX_TRANSFER: usize = 2 << 20;

/// Whether a call runs in place on this thread: the same test as `unblock`'s own (a green
/// thread on a worker hands the call to a helper; anything else runs it itself).
fn in_place() -> bool {
    context::current_green().is_none() || context::current_worker().is_none()
}

/// Runs `op` on the file, on a helper.
pub(super) fn with_file<R, F>(file: &Arc<std::fs::File>, op: F) -> io::Result<R>
where
    F: FnOnce(&std::fs::File) -> io::Result<R> + Send + 'static,
    R: Send + 'static,
{
    if in_place() {
        return op(file);
    }
    let file = file.clone();
    crate::unblock(move || op(&file))
}

/// Runs `op` on an owned copy of `path`, on a helper.
pub(super) fn with_path<R, F>(path: &Path, op: F) -> io::Result<R>
where
    F: FnOnce(&Path) -> io::Result<R> + Send + 'static,
    R: Send + 'static,
{
    if in_place() {
        return op(path);
    }
    let path = path.to_path_buf();
    crate::unblock(move || op(&path))
}

/// Runs `op` on owned copies of two paths, on a helper.
pub(super) fn with_paths<R, F>(from: &Path, to: &Path, op: F) -> io::Result<R>
where
    F: FnOnce(&Path, &Path) -> io::Result<R> + Send + 'static,
    R: Send + 'static,
{
    if in_place() {
        return op(from, to);
    }
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    crate::unblock(move || op(&from, &to))
}

/// How a read or write places and sizes its transfer.
#[derive(Clone, Copy)]
pub(super) enum Transfer {
    /// At the file offset, at most [`MAX_TRANSFER`] bytes (`read`, `write`).
    Stream,
    /// At the file offset, the whole buffer (`read_exact`, `write_all`).
    StreamAll,
    /// At this position, at most [`MAX_TRANSFER`] bytes (`read_at`, `write_at`).
    At(u64),
    /// At this position, the whole buffer (`read_exact_at`, `write_all_at`).
    AllAt(u64),
}

impl Transfer {
    /// The bytes this transfer moves for a caller's buffer of `len`.
    fn len(self, len: usize) -> usize {
        match self {
            Transfer::Stream | Transfer::At(_) => len.min(MAX_TRANSFER),
            Transfer::StreamAll | Transfer::AllAt(_) => len,
        }
    }

    /// Reads into `buf`; returns the bytes read (all of them for the exact forms).
    fn read(self, file: &std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
        let mut file = file;
        match self {
            Transfer::Stream => file.read(buf),
            Transfer::StreamAll => file.read_exact(buf).map(|()| buf.len()),
            Transfer::At(pos) => file.read_at(buf, pos),
            Transfer::AllAt(pos) => file.read_exact_at(buf, pos).map(|()| buf.len()),
        }
    }

    /// Writes from `buf`; returns the bytes written (all of them for the all forms).
    fn write(self, file: &std::fs::File, buf: &[u8]) -> io::Result<usize> {
        let mut file = file;
        match self {
            Transfer::Stream => file.write(buf),
            Transfer::StreamAll => file.write_all(buf).map(|()| buf.len()),
            Transfer::At(pos) => file.write_at(buf, pos),
            Transfer::AllAt(pos) => file.write_all_at(buf, pos).map(|()| buf.len()),
        }
    }
}

/// Reads from `file` into `buf`: into a `Vec` on a helper, then copied into `buf`.
pub(super) fn read(file: &Arc<std::fs::File>, buf: &mut [u8], how: Transfer) -> io::Result<usize> {
    if in_place() {
        return how.read(file, buf);
    }
    let len = how.len(buf.len());
    let file = file.clone();
    let data = crate::unblock(move || {
        let mut data = vec![0u8; len];
        let n = how.read(&file, &mut data)?;
        data.truncate(n);
        Ok::<_, io::Error>(data)
    })?;
    buf[..data.len()].copy_from_slice(&data);
    Ok(data.len())
}

/// Writes `buf` to `file`: copied into a `Vec`, then written on a helper.
pub(super) fn write(file: &Arc<std::fs::File>, buf: &[u8], how: Transfer) -> io::Result<usize> {
    if in_place() {
        return how.write(file, buf);
    }
    let file = file.clone();
    let data = buf[..how.len(buf.len())].to_vec();
    crate::unblock(move || how.write(&file, &data))
}

/// Reads the rest of `file` and appends it to `buf`, in one round trip. Into an empty
/// `buf`, the helper's vector is moved in, not copied. As with std, the bytes read before
/// an error are kept.
pub(super) fn read_to_end(file: &Arc<std::fs::File>, buf: &mut Vec<u8>) -> io::Result<usize> {
    if in_place() {
        return (&**file).read_to_end(buf);
    }
    let file = file.clone();
    let (data, result) = crate::unblock(move || {
        let mut data = Vec::new();
        let result = (&*file).read_to_end(&mut data);
        (data, result)
    });
    if buf.is_empty() {
        *buf = data;
    } else {
        buf.extend_from_slice(&data);
    }
    result
}

/// Reads the rest of `file` as UTF-8 and appends it to `buf`, in one round trip, with
/// std's guarantees (on invalid UTF-8, nothing is appended). Into an empty `buf`, the
/// helper's string is moved in, not copied.
pub(super) fn read_to_string(file: &Arc<std::fs::File>, buf: &mut String) -> io::Result<usize> {
    if in_place() {
        return (&**file).read_to_string(buf);
    }
    let file = file.clone();
    let (data, result) = crate::unblock(move || {
        let mut data = String::new();
        let result = (&*file).read_to_string(&mut data);
        (data, result)
    });
    if buf.is_empty() {
        *buf = data;
    } else {
        buf.push_str(&data);
    }
    result
}

/// Writes `contents` as the whole file at `path` (creating or truncating it), copied into
/// a `Vec` for the helper.
pub(super) fn write_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    if in_place() {
        return std::fs::write(path, contents);
    }
    let contents = contents.to_vec();
    with_path(path, move |path| std::fs::write(path, contents))
}
