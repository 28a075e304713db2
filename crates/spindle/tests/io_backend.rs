//! Choosing the reactor's backend (epoll or io_uring), and what only the io_uring one does.
//!
//! The rest of the suite runs on whatever `SPINDLE_IO_BACKEND` says (CI runs it once with
//! the default, io_uring where the machine has it, and once with `epoll`).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use spindle::io::IoBackend;
use spindle::{Model, Runtime};

/// Builds a many-to-one runtime on `backend`, or says why this machine cannot.
fn runtime_on(backend: IoBackend) -> Option<Runtime> {
    match Runtime::builder().io_backend(backend).build() {
        Ok(rt) => Some(rt),
        Err(e) if backend == IoBackend::IoUring => {
            assert!(e.to_string().contains("io_uring"), "{e}");
            eprintln!("skipped: this machine has no io_uring ({e})");
            None
        }
        Err(e) => panic!("cannot build a runtime on {backend}: {e}"),
    }
}

#[test]
fn a_runtime_reports_the_backend_it_runs_on() {
    let rt = runtime_on(IoBackend::Epoll).unwrap();
    assert_eq!(rt.io_backend(), Some(IoBackend::Epoll));
    if let Some(rt) = runtime_on(IoBackend::IoUring) {
        assert_eq!(rt.io_backend(), Some(IoBackend::IoUring));
    }
    let auto = Runtime::builder()
        .model(Model::ManyToMany { workers: 2 })
        .io_backend(IoBackend::Auto)
        .build()
        .unwrap();
    let picked = auto.io_backend().expect("a green runtime has a reactor");
    assert_ne!(picked, IoBackend::Auto, "Auto is resolved at build time");
    let one = Runtime::builder().model(Model::OneToOne).build().unwrap();
    assert_eq!(one.io_backend(), None, "one-to-one has no reactor");
}

#[test]
fn the_environment_gives_the_default_and_a_bad_value_is_named() {
    if let Ok(value) = std::env::var("SPINDLE_TEST_BACKEND_ENV_CHILD") {
        let built = Runtime::builder().build();
        match value.as_str() {
            "epoll" => assert_eq!(built.unwrap().io_backend(), Some(IoBackend::Epoll)),
            // Empty is not set: Auto, resolved.
            "" => {
                let picked = built.unwrap().io_backend();
                assert!(
                    matches!(picked, Some(IoBackend::Epoll | IoBackend::IoUring)),
                    "{picked:?}"
                );
            }
            _ => {
                let Err(err) = built else {
                    panic!("a bad SPINDLE_IO_BACKEND is an error")
                };
                let msg = err.to_string();
                assert!(
                    msg.contains("SPINDLE_IO_BACKEND") && msg.contains("kqueue"),
                    "{msg}"
                );
                // An explicit choice wins over the environment.
                let rt = Runtime::builder().io_backend(IoBackend::Epoll).build();
                assert_eq!(rt.unwrap().io_backend(), Some(IoBackend::Epoll));
            }
        }
        return;
    }
    for value in ["epoll", "kqueue", ""] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "the_environment_gives_the_default_and_a_bad_value_is_named",
                "--nocapture",
            ])
            .env("SPINDLE_TEST_BACKEND_ENV_CHILD", value)
            .env("SPINDLE_IO_BACKEND", value)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "child with SPINDLE_IO_BACKEND={value} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// On io_uring, positioned reads and writes and syncs are requests of the worker's ring:
/// they complete while the runtime's only helper thread is busy. (On epoll they would
/// wait for that helper.)
#[test]
fn positioned_file_io_needs_no_helper_on_io_uring() {
    let Some(_probe) = runtime_on(IoBackend::IoUring) else {
        return;
    };
    let rt = Runtime::builder()
        .io_backend(IoBackend::IoUring)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("spindle-io-backend-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("positioned");
    let helper_gave_up = Arc::new(AtomicBool::new(false));
    rt.block_on(|| {
        let (started_tx, started_rx) = spindle::channel::bounded::<()>(1);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let gave_up = helper_gave_up.clone();
        let occupier = spindle::spawn(move || {
            spindle::unblock(move || {
                started_tx.send(()).unwrap();
                // Released by the main thread once its file calls are done; a minute
                // means they waited for this helper, which the assertion below reports.
                if release_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                    gave_up.store(true, Ordering::SeqCst);
                }
            })
        });
        started_rx.recv().unwrap();
        let f = spindle::fs::File::from(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .unwrap(),
        );
        f.write_all_at(b"hello, ring", 4).unwrap();
        f.sync_all().unwrap();
        f.sync_data().unwrap();
        let mut back = [0u8; 11];
        f.read_exact_at(&mut back, 4).unwrap();
        assert_eq!(&back, b"hello, ring");
        let mut short = [0u8; 32];
        assert_eq!(
            f.read_at(&mut short, 10).unwrap(),
            5,
            "a short read at the end"
        );
        assert_eq!(&short[..5], b" ring");
        let mut past = [0u8; 4];
        let err = f.read_exact_at(&mut past, 14).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        release_tx.send(()).unwrap();
        occupier.join().unwrap();
    });
    assert!(
        !helper_gave_up.load(Ordering::SeqCst),
        "positioned file calls waited for the helper pool on io_uring"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A green thread parked on an io_uring readiness wait is cancelled when its runtime is
/// dropped: the drop returns, the thread's destructors run, and the request's memory is
/// reclaimed by the ring (not freed under the kernel).
#[test]
fn dropping_a_runtime_cancels_waits_in_flight() {
    for backend in [IoBackend::Epoll, IoBackend::IoUring] {
        let Some(rt) = runtime_on(backend) else {
            continue;
        };
        let (reader, mut writer) = std::io::pipe().unwrap();
        rustix::io::ioctl_fionbio(reader.as_fd(), true).unwrap();
        let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
        let (waiting_tx, waiting_rx) = spindle::channel::bounded::<()>(1);
        struct Tell(mpsc::Sender<()>);
        impl Drop for Tell {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        rt.spawn(move || {
            let _tell = Tell(dropped_tx);
            waiting_tx.send(()).unwrap();
            let mut buf = [0u8; 1];
            loop {
                match (&reader).read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        spindle::io::wait_readable(&reader).unwrap()
                    }
                    other => panic!("the pipe stays empty, got {other:?}"),
                }
            }
        });
        rt.block_on(|| waiting_rx.recv().unwrap());
        drop(rt);
        dropped_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{backend}: the waiting thread was not unwound"));
        // The reader went with the thread: the pipe has no reader left.
        let err = writer.write_all(b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
