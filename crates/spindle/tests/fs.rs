//! `spindle::fs`: std's file API through the helper pool, parking only the green thread.

mod common;

use std::ffi::CString;
use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use spindle::fs::{self, File, OpenOptions};
use spindle::{Model, Runtime};

/// A directory of its own under the system temp dir, removed (with its contents) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "spindle-fs-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes of a recognisable pattern (no run repeats at a short period).
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

cross_model! {
    fn write_then_read_back(model) {
        let dir = TempDir::new("roundtrip");
        let path = dir.join("a");
        fs::write(&path, b"hello, spindle").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello, spindle", "{model}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "hello, spindle");

        // Bigger than one transfer (2 MiB), through File and the Read/Write traits.
        let big = pattern(5 << 20);
        let mut f = File::create(&path).unwrap();
        f.write_all(&big).unwrap();
        f.flush().unwrap();
        f.sync_all().unwrap();
        drop(f);
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == big, "read_to_end gave back other bytes");

        // Plain reads: short at most, never wrong, and 0 at the end.
        let mut f = File::open(&path).unwrap();
        let mut back = Vec::new();
        let mut chunk = vec![0u8; 3 << 20];
        loop {
            let n = f.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= 3 << 20);
            back.extend_from_slice(&chunk[..n]);
        }
        assert!(back == big, "read loop gave back other bytes");

        // Appending to a non-empty buffer keeps what was there.
        let mut s = String::from(">");
        fs::write(&path, "lines\nof\ntext\n").unwrap();
        File::open(&path).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, ">lines\nof\ntext\n");

        // Buffered readers and writers work over it.
        let mut w = std::io::BufWriter::new(File::create(&path).unwrap());
        for i in 0..1000 {
            writeln!(w, "line {i}").unwrap();
        }
        w.into_inner().unwrap().sync_data().unwrap();
        let lines: Vec<String> = BufReader::new(File::open(&path).unwrap())
            .lines()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999], "line 999");
    }

    fn positional_reads_and_writes_leave_the_offset(model) {
        let dir = TempDir::new("positional");
        let f = File::create_new(dir.join("p")).unwrap();
        assert_eq!(f.write_at(b"world", 6).unwrap(), 5);
        f.write_all_at(b"hello ", 0).unwrap();
        let mut buf = [0u8; 11];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello world", "{model}");
        let mut part = [0u8; 8];
        assert_eq!(f.read_at(&mut part, 6).unwrap(), 5, "a short read at the end");
        assert_eq!(&part[..5], b"world");
        assert_eq!(f.read_at(&mut part, 100).unwrap(), 0);
        let err = f.read_exact_at(&mut part, 6).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        // The offset never moved.
        assert_eq!((&f).stream_position().unwrap(), 0);
        // Generic code over std's FileExt sees the same methods.
        fn via_ext(f: &impl std::os::unix::fs::FileExt) -> u8 {
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, 4).unwrap();
            b[0]
        }
        assert_eq!(via_ext(&f), b'o');
        // An offset past i64::MAX fails as pread(2) does, never reading at the file position
        // (io_uring would take u64::MAX as "the current position").
        for offset in [u64::MAX, i64::MAX as u64 + 1] {
            let err = f.read_at(&mut part, offset).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "read at {offset}: {err}");
            let err = f.write_at(b"x", offset).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "write at {offset}: {err}");
        }
        assert_eq!((&f).stream_position().unwrap(), 0);
    }

    fn seek_moves_the_offset(model) {
        let dir = TempDir::new("seek");
        let mut f = File::options().read(true).write(true).create(true).truncate(true)
            .open(dir.join("s")).unwrap();
        f.write_all(b"0123456789").unwrap();
        assert_eq!(f.seek(SeekFrom::Start(2)).unwrap(), 2, "{model}");
        let mut two = [0u8; 2];
        f.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"23");
        assert_eq!(f.seek(SeekFrom::Current(3)).unwrap(), 7);
        f.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"78");
        assert_eq!(f.seek(SeekFrom::End(-1)).unwrap(), 9);
        f.write_all(b"X").unwrap();
        f.rewind().unwrap();
        let mut all = String::new();
        f.read_to_string(&mut all).unwrap();
        assert_eq!(all, "012345678X");
        assert_eq!(f.seek(SeekFrom::Current(-20)).unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    fn append_through_open_options(model) {
        let dir = TempDir::new("append");
        let path = dir.join("log");
        for line in ["one\n", "two\n", "three\n"] {
            let mut f = OpenOptions::new().create(true).append(true).open(&path).unwrap();
            f.write_all(line.as_bytes()).unwrap();
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\nthree\n", "{model}");
        // mode() through std's OpenOptionsExt.
        let secret = dir.join("secret");
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&secret).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
    }

    fn metadata_and_length(model) {
        let dir = TempDir::new("metadata");
        let path = dir.join("m");
        fs::write(&path, vec![7u8; 1234]).unwrap();
        let m = fs::metadata(&path).unwrap();
        assert_eq!(m.len(), 1234, "{model}");
        assert!(m.is_file());
        assert!(fs::metadata(&dir.0).unwrap().is_dir());
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 1234);
        f.set_len(10).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 10);
        f.set_len(1 << 20).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 1 << 20);
        assert!(fs::exists(&path).unwrap());
        assert!(!fs::exists(dir.join("nothing")).unwrap());
    }

    fn errors_are_std_errors(model) {
        let dir = TempDir::new("errors");
        let missing = dir.join("missing");
        let err = File::open(&missing).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{model}");
        assert!(err.to_string().contains("No such file or directory"), "{err}");
        assert_eq!(fs::read(&missing).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(fs::metadata(&missing).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(fs::remove_file(&missing).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(fs::read_dir(&missing).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(fs::rename(&missing, dir.join("x")).unwrap_err().kind(), ErrorKind::NotFound);

        let present = dir.join("present");
        fs::write(&present, "x").unwrap();
        assert_eq!(File::create_new(&present).unwrap_err().kind(), ErrorKind::AlreadyExists);

        fs::write(&present, [0xff, 0xfe]).unwrap();
        assert_eq!(fs::read_to_string(&present).unwrap_err().kind(), ErrorKind::InvalidData);
        let mut s = String::from("kept");
        let err = File::open(&present).unwrap().read_to_string(&mut s).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert_eq!(s, "kept");

        // Writing to a file opened only for reading.
        let err = File::open(&present).unwrap().write(b"no").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }

    fn read_dir_lists_the_entries(model) {
        let dir = TempDir::new("readdir");
        for name in ["b", "a", "c"] {
            fs::write(dir.join(name), name).unwrap();
        }
        fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        let mut entries: Vec<_> = fs::read_dir(&dir.0).unwrap().map(Result::unwrap).collect();
        entries.sort_by_key(|e| e.file_name());
        let names: Vec<_> = entries.iter().map(|e| e.file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c", "sub"], "{model}");
        assert_eq!(entries[0].path(), dir.join("a"));
        assert!(entries[0].file_type().unwrap().is_file());
        assert!(entries[3].file_type().unwrap().is_dir());
        assert_eq!(entries[1].metadata().unwrap().len(), 1);
        assert_eq!(fs::read_dir(dir.join("sub")).unwrap().count(), 1);
    }

    fn rename_copy_remove(model) {
        let dir = TempDir::new("rename");
        let a = dir.join("a");
        let b = dir.join("b");
        fs::write(&a, "contents").unwrap();
        fs::rename(&a, &b).unwrap();
        assert!(!fs::exists(&a).unwrap(), "{model}");
        assert_eq!(fs::read_to_string(&b).unwrap(), "contents");
        assert_eq!(fs::copy(&b, &a).unwrap(), 8);
        assert_eq!(fs::read_to_string(&a).unwrap(), "contents");
        fs::remove_file(&a).unwrap();
        fs::remove_file(&b).unwrap();
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 0);

        fs::create_dir_all(dir.join("x/y/z")).unwrap();
        fs::create_dir_all(dir.join("x/y/z")).unwrap();
        let canonical = fs::canonicalize(dir.join("x/y/z/../..")).unwrap();
        assert_eq!(canonical, std::fs::canonicalize(dir.join("x")).unwrap());
        fs::remove_dir(dir.join("x/y/z")).unwrap();
        fs::remove_dir_all(dir.join("x")).unwrap();
        assert!(!fs::exists(dir.join("x")).unwrap());
    }

    // One file used through `&File` and a `try_clone` by several threads at once.
    fn shared_and_cloned_files(model) {
        let dir = TempDir::new("shared");
        let f = Arc::new(File::create_new(dir.join("shared")).unwrap());
        let hs: Vec<_> = (0..8u8)
            .map(|i| {
                let f = f.clone();
                spindle::spawn(move || {
                    let mut w: &File = &f;
                    w.write_all(&[b'a' + i; 100]).unwrap();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let clone = f.try_clone().unwrap();
        let mut all = Vec::new();
        (&clone).rewind().unwrap();
        (&clone).read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 800, "{model}");
        for i in 0..8u8 {
            assert_eq!(all.iter().filter(|&&b| b == b'a' + i).count(), 100);
        }
        // The clone shares the offset: it is now at the end for the original too.
        assert_eq!((&*f).stream_position().unwrap(), 800);
        let std_file = clone.into_std();
        assert_eq!(std_file.metadata().unwrap().len(), 800);
    }
}

/// In many-to-one, many green threads each read a file, then wait in `open` of a FIFO
/// (which blocks until a writer opens it) and read it to its end, while a ticker green
/// thread on the same, only worker keeps going round, opening for writing (non-blocking)
/// and filling every FIFO whose reader is there. The readers can only finish if their
/// waits park them alone: the ticker is their only writer, and it runs on their kernel
/// thread.
#[test]
fn many_readers_wait_while_a_ticker_runs() {
    const READERS: usize = 64;
    let dir = TempDir::new("fifos");
    let rt = Runtime::builder().model(Model::ManyToOne).build().unwrap();
    let fifos: Vec<PathBuf> = (0..READERS)
        .map(|i| dir.join(&format!("fifo{i}")))
        .collect();
    let files: Vec<PathBuf> = (0..READERS)
        .map(|i| dir.join(&format!("file{i}")))
        .collect();
    for (i, (fifo, file)) in fifos.iter().zip(&files).enumerate() {
        mkfifo(fifo);
        std::fs::write(file, format!("file {i}")).unwrap();
    }
    let ticks = rt.block_on(|| {
        let readers: Vec<_> = fifos
            .iter()
            .zip(&files)
            .map(|(fifo, file)| {
                let (fifo, file) = (fifo.clone(), file.clone());
                spindle::spawn(move || {
                    let from_file = fs::read_to_string(&file).unwrap();
                    let from_fifo = fs::read_to_string(&fifo).unwrap();
                    (from_file, from_fifo)
                })
            })
            .collect();
        let writer_fifos = fifos.clone();
        let ticker = spindle::spawn(move || {
            let mut ticks = 0u64;
            let mut pending: Vec<(usize, PathBuf)> = writer_fifos.into_iter().enumerate().collect();
            while !pending.is_empty() {
                // Serve whichever readers are in `open` now, in any order (a reader whose
                // job waits for a helper gets one when an earlier reader is served).
                pending.retain(|(i, fifo)| {
                    // O_NONBLOCK: an open for writing fails with ENXIO, instead of
                    // blocking, until a reader has the FIFO open.
                    match std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(fifo)
                    {
                        Ok(mut w) => {
                            // Small enough for the pipe buffer: never blocks.
                            w.write_all(format!("fifo {i}").as_bytes()).unwrap();
                            false
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => true,
                        Err(e) => panic!("open {}: {e}", fifo.display()),
                    }
                });
                ticks += 1;
                spindle::yield_now();
            }
            ticks
        });
        for (i, h) in readers.into_iter().enumerate() {
            let (from_file, from_fifo) = h.join().unwrap();
            assert_eq!(from_file, format!("file {i}"));
            assert_eq!(from_fifo, format!("fifo {i}"));
        }
        ticker.join().unwrap()
    });
    println!("the ticker went round {ticks} times while the readers waited");
}

/// Outside any runtime, the calls run in place on the calling kernel thread.
#[test]
fn outside_a_runtime_calls_run_in_place() {
    let dir = TempDir::new("kernel");
    let path = dir.join("k");
    fs::write(&path, "kernel thread").unwrap();
    let f = File::open(&path).unwrap();
    let mut buf = [0u8; 6];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"kernel");
    assert_eq!(fs::read_to_string(&path).unwrap(), "kernel thread");
}
