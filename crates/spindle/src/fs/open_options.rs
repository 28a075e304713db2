//! [`OpenOptions`]: std's builder for opening files, with an `open` that parks only the
//! green thread.

use std::io;
use std::path::Path;

use super::{pool_backend, File};

/// Options and flags for opening a file, as [`std::fs::OpenOptions`]; [`OpenOptions::open`]
/// runs on the helper pool.
///
/// Opening can block for long: on a network file system, or on a FIFO, whose `open` for
/// reading waits for a writer (and the other way round).
///
/// ```
/// use std::io::Write;
/// use spindle::fs::OpenOptions;
///
/// let path = std::env::temp_dir().join(format!("spindle-doc-options-{}", std::process::id()));
/// let rt = spindle::Runtime::builder().build()?;
/// rt.block_on(|| {
///     let mut log = OpenOptions::new().create(true).append(true).open(&path)?;
///     log.write_all(b"one\n")?;
///     let mut log = OpenOptions::new().append(true).open(&path)?;
///     log.write_all(b"two\n")?;
///     assert_eq!(spindle::fs::read_to_string(&path)?, "one\ntwo\n");
///     spindle::fs::remove_file(&path)
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions(std::fs::OpenOptions);

impl OpenOptions {
    /// Blank options: every option off (as [`std::fs::OpenOptions::new`]).
    pub fn new() -> OpenOptions {
        OpenOptions(std::fs::OpenOptions::new())
    }

    /// Opens for reading.
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.0.read(read);
        self
    }

    /// Opens for writing.
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.0.write(write);
        self
    }

    /// Opens for appending: every write goes to the end of the file (implies writing).
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.0.append(append);
        self
    }

    /// Truncates an existing file to length 0 (needs writing).
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.0.truncate(truncate);
        self
    }

    /// Creates the file if it does not exist (needs writing or appending).
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.0.create(create);
        self
    }

    /// Creates the file, failing with [`io::ErrorKind::AlreadyExists`] if it exists
    /// (atomically; `create` and `truncate` are then ignored).
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.0.create_new(create_new);
        self
    }

    /// Opens `path` with these options, on a helper thread; only the calling green thread
    /// waits. Errors are std's (`NotFound`, `PermissionDenied`, `AlreadyExists`,
    /// `InvalidInput` for contradictory options, ...).
    pub fn open<P: AsRef<Path>>(&self, path: P) -> io::Result<File> {
        let options = self.0.clone();
        pool_backend::with_path(path.as_ref(), move |path| options.open(path)).map(File::from)
    }
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

impl From<std::fs::OpenOptions> for OpenOptions {
    fn from(options: std::fs::OpenOptions) -> OpenOptions {
        OpenOptions(options)
    }
}

impl std::os::unix::fs::OpenOptionsExt for OpenOptions {
    fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.0.mode(mode);
        self
    }

    fn custom_flags(&mut self, flags: i32) -> &mut OpenOptions {
        self.0.custom_flags(flags);
        self
    }
}
