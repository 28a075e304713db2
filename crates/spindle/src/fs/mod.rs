//! Files and directories, as [`std::fs`], parking only the calling green thread.
//!
//! A read of a regular file cannot be made non-blocking: `O_NONBLOCK` means nothing to it,
//! and epoll refuses it. So a green thread that called `std::fs` directly would stop its
//! worker, and in the many-to-one model every other green thread with it, for as long as
//! the disk (or the network file system) takes. Here, every call that can block runs on the
//! runtime's helper pool through [`crate::unblock`]: the calling green thread parks (its
//! wait reason is `unblock (helper pool)`), its worker runs other threads, and a helper
//! kernel thread makes the system call. On a kernel thread (the one-to-one model, or
//! outside any runtime) the calls run in place, as plain std calls.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("spindle-doc-fs-{}", std::process::id()));
//! let rt = spindle::Runtime::builder().build()?;
//! rt.block_on(|| {
//!     spindle::fs::create_dir_all(&dir)?;
//!     spindle::fs::write(dir.join("greeting"), "hello")?;
//!     assert_eq!(spindle::fs::read_to_string(dir.join("greeting"))?, "hello");
//!     assert_eq!(spindle::fs::metadata(dir.join("greeting"))?.len(), 5);
//!     let names: Vec<_> = spindle::fs::read_dir(&dir)?.map(|e| e.unwrap().file_name()).collect();
//!     assert_eq!(names, ["greeting"]);
//!     spindle::fs::remove_file(dir.join("greeting"))?;
//!     std::fs::remove_dir(&dir)
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # What a call costs
//!
//! On a green thread, each call is **one helper round trip**: the job goes to a helper (a
//! lock and usually a wake-up), the helper makes the system call, and the green thread is
//! unparked and scheduled again. When the data is in the page cache, that costs much more
//! than the system call itself.
//!
//! It is also **one copy** of the bytes: `unblock` takes only `'static` closures, so the
//! helper cannot borrow the caller's buffer (were the caller cancelled while waiting, its
//! stack would be freed under the helper). A read fills a vector on the helper that is then
//! copied into the caller's buffer; a write first copies the caller's bytes into a vector.
//! A single `read` or `write` moves at most 2 MiB (the `Read` and `Write` contracts allow
//! short transfers); `read_exact`, `write_all`, `read_exact_at` and `write_all_at` move the
//! whole buffer in one round trip. [`read`], [`read_to_string`], and `read_to_end` or
//! `read_to_string` into an empty buffer, copy nothing: the helper's buffer is moved out.
//! On kernel threads there is no copy and no round trip.
//!
//! So **buffer small reads and writes**: [`std::io::BufReader`] and [`std::io::BufWriter`]
//! work over a [`File`] and make one round trip per 8 KiB instead of one per line or field.
//!
//! # Backends
//!
//! On a worker whose reactor is io_uring ([`crate::io::IoBackend`]), the positioned calls
//! ([`File::read_at`], [`File::write_at`], [`File::read_exact_at`],
//! [`File::write_all_at`]) on regular files and block devices, and the syncs
//! ([`File::sync_all`], [`File::sync_data`]), are io_uring requests of the worker's own
//! ring: no helper thread, and no helper wake-up. Everything else goes through the helper
//! pool as described above, on both backends; reads and writes at the file offset do
//! because io_uring moves the offset without the lock `read(2)` and `write(2)` take, so
//! concurrent ones could overwrite each other (`fs/uring_backend.rs` has the details). The
//! API and its semantics are the same on both backends.
//!
//! # Details
//!
//! - A `File` is an `Arc` of a [`std::fs::File`], shared with a helper during a call.
//!   Through `&File` several threads may use one file; they share its offset, as with std.
//!   [`File::read_at`] and [`File::write_at`] do not touch the offset.
//! - Dropping a `File` closes it on the dropping thread, as std does (`close` returns no
//!   error to report anyway). On a local file system that does not block.
//! - If the runtime is dropped while a green thread waits for a call, the call still runs
//!   to completion on its helper (an io_uring request is cancelled if it has not started),
//!   and its result is dropped.
//! - [`read_dir`] reads the whole directory in one round trip (see its docs).
//! - [`Metadata`], [`Permissions`] and [`FileType`] are std's own types.

mod file;
mod open_options;
mod pool_backend;
mod read_dir;
mod uring_backend;

use std::io;
use std::path::{Path, PathBuf};

pub use file::File;
pub use open_options::OpenOptions;
pub use read_dir::{read_dir, DirEntry, ReadDir};
pub use std::fs::{FileType, Metadata, Permissions};

/// Reads the whole file at `path` (as [`std::fs::read`]); no copy: the helper's vector is
/// returned.
pub fn read<P: AsRef<Path>>(path: P) -> io::Result<Vec<u8>> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::read(path))
}

/// Reads the whole file at `path` as UTF-8 (as [`std::fs::read_to_string`]); no copy.
pub fn read_to_string<P: AsRef<Path>>(path: P) -> io::Result<String> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::read_to_string(path))
}

/// Writes `contents` as the whole file at `path`, creating it or truncating it (as
/// [`std::fs::write`]); `contents` is copied once for the helper.
pub fn write<P: AsRef<Path>, C: AsRef<[u8]>>(path: P, contents: C) -> io::Result<()> {
    pool_backend::write_file(path.as_ref(), contents.as_ref())
}

/// The metadata of `path`, following symbolic links (as [`std::fs::metadata`]).
pub fn metadata<P: AsRef<Path>>(path: P) -> io::Result<Metadata> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::metadata(path))
}

/// The metadata of `path` itself, not following a symbolic link (as
/// [`std::fs::symlink_metadata`]).
pub fn symlink_metadata<P: AsRef<Path>>(path: P) -> io::Result<Metadata> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::symlink_metadata(path))
}

/// Whether `path` exists, following symbolic links; an error if that cannot be told (as
/// [`std::fs::exists`]).
pub fn exists<P: AsRef<Path>>(path: P) -> io::Result<bool> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::exists(path))
}

/// Removes the file at `path` (as [`std::fs::remove_file`]).
pub fn remove_file<P: AsRef<Path>>(path: P) -> io::Result<()> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::remove_file(path))
}

/// Creates the directory `path`; its parent must exist (as [`std::fs::create_dir`]).
pub fn create_dir<P: AsRef<Path>>(path: P) -> io::Result<()> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::create_dir(path))
}

/// Creates the directory `path` and any missing parents, in one round trip (as
/// [`std::fs::create_dir_all`]).
pub fn create_dir_all<P: AsRef<Path>>(path: P) -> io::Result<()> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::create_dir_all(path))
}

/// Removes the empty directory `path` (as [`std::fs::remove_dir`]).
pub fn remove_dir<P: AsRef<Path>>(path: P) -> io::Result<()> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::remove_dir(path))
}

/// Removes the directory `path` and everything in it, in one round trip (as
/// [`std::fs::remove_dir_all`]).
pub fn remove_dir_all<P: AsRef<Path>>(path: P) -> io::Result<()> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::remove_dir_all(path))
}

/// Renames `from` to `to`, replacing `to` if it is a file (as [`std::fs::rename`]).
pub fn rename<P: AsRef<Path>, Q: AsRef<Path>>(from: P, to: Q) -> io::Result<()> {
    pool_backend::with_paths(from.as_ref(), to.as_ref(), |from, to| {
        std::fs::rename(from, to)
    })
}

/// Copies the contents and permissions of the file `from` to `to`, in one round trip;
/// returns the bytes copied (as [`std::fs::copy`]). The bytes never reach the caller.
pub fn copy<P: AsRef<Path>, Q: AsRef<Path>>(from: P, to: Q) -> io::Result<u64> {
    pool_backend::with_paths(from.as_ref(), to.as_ref(), |from, to| {
        std::fs::copy(from, to)
    })
}

/// Makes a hard link `link` to the file `original` (as [`std::fs::hard_link`]).
pub fn hard_link<P: AsRef<Path>, Q: AsRef<Path>>(original: P, link: Q) -> io::Result<()> {
    pool_backend::with_paths(original.as_ref(), link.as_ref(), |original, link| {
        std::fs::hard_link(original, link)
    })
}

/// The target of the symbolic link `path` (as [`std::fs::read_link`]).
pub fn read_link<P: AsRef<Path>>(path: P) -> io::Result<PathBuf> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::read_link(path))
}

/// The absolute path of `path`, with every symbolic link and `.` or `..` resolved (as
/// [`std::fs::canonicalize`]).
pub fn canonicalize<P: AsRef<Path>>(path: P) -> io::Result<PathBuf> {
    pool_backend::with_path(path.as_ref(), |path| std::fs::canonicalize(path))
}

/// Changes the permissions of `path` (as [`std::fs::set_permissions`]).
pub fn set_permissions<P: AsRef<Path>>(path: P, perm: Permissions) -> io::Result<()> {
    pool_backend::with_path(path.as_ref(), move |path| {
        std::fs::set_permissions(path, perm)
    })
}
