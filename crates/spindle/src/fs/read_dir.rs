//! [`read_dir`]: a directory's entries, read whole on a helper thread.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use super::{pool_backend, FileType, Metadata};

/// Reads the entries of the directory at `path` (as [`std::fs::read_dir`], without `.` and
/// `..`, in no particular order).
///
/// Unlike std, the whole directory is read in one helper round trip, here; the returned
/// iterator then only hands out what was collected (so it holds every entry in memory, and
/// does not see entries made after this call). Each entry's type is read along with it.
pub fn read_dir<P: AsRef<Path>>(path: P) -> io::Result<ReadDir> {
    pool_backend::with_path(path.as_ref(), |path| {
        let entries = std::fs::read_dir(path)?
            .map(|entry| entry.map(DirEntry::from_std))
            .collect::<Vec<_>>();
        Ok(ReadDir {
            entries: entries.into_iter(),
        })
    })
}

/// The entries of a directory, from [`read_dir`]; an entry that could not be read is an
/// `Err`, as with std.
#[derive(Debug)]
pub struct ReadDir {
    entries: std::vec::IntoIter<io::Result<DirEntry>>,
}

impl Iterator for ReadDir {
    type Item = io::Result<DirEntry>;

    fn next(&mut self) -> Option<io::Result<DirEntry>> {
        self.entries.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

/// One entry of a directory, from [`ReadDir`] (as [`std::fs::DirEntry`]).
#[derive(Clone, Debug)]
pub struct DirEntry {
    path: PathBuf,
    file_name: OsString,
    /// Read along with the entry; `None` if that failed (then [`DirEntry::file_type`] asks
    /// again, and reports the error).
    file_type: Option<FileType>,
}

impl DirEntry {
    fn from_std(entry: std::fs::DirEntry) -> DirEntry {
        DirEntry {
            path: entry.path(),
            file_name: entry.file_name(),
            file_type: entry.file_type().ok(),
        }
    }

    /// The entry's full path: the directory given to [`read_dir`] joined with the name.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The entry's name within its directory.
    pub fn file_name(&self) -> OsString {
        self.file_name.clone()
    }

    /// The entry's type, not following symbolic links (known already, no call).
    pub fn file_type(&self) -> io::Result<FileType> {
        match self.file_type {
            Some(file_type) => Ok(file_type),
            None => super::symlink_metadata(&self.path).map(|m| m.file_type()),
        }
    }

    /// The entry's metadata, not following symbolic links (an `lstat` on a helper thread).
    pub fn metadata(&self) -> io::Result<Metadata> {
        super::symlink_metadata(&self.path)
    }
}
