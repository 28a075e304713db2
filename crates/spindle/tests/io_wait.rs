//! `spindle::io::wait_readable` / `wait_writable`: waiting for any descriptor parks only
//! the green thread, in every model.

mod common;

use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

fn nonblocking_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2(2) to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2()");
    // SAFETY: pipe2(2) succeeded, so both are open descriptors we now own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn read_byte(fd: &OwnedFd) -> std::io::Result<u8> {
    let mut b = 0u8;
    // SAFETY: reading one byte into a valid buffer from an open descriptor.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut b as *mut u8).cast(), 1) };
    match n {
        1 => Ok(b),
        _ => Err(std::io::Error::last_os_error()),
    }
}

fn write_byte(fd: &OwnedFd, b: u8) -> std::io::Result<()> {
    // SAFETY: writing one byte from a valid buffer to an open descriptor.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&b as *const u8).cast(), 1) };
    match n {
        1 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Reads one byte from a non-blocking descriptor, waiting for it as a green thread should.
fn read_when_ready(fd: &OwnedFd) -> u8 {
    loop {
        match read_byte(fd) {
            Ok(b) => return b,
            Err(e) if e.kind() == ErrorKind::WouldBlock => spindle::io::wait_readable(fd).unwrap(),
            Err(e) => panic!("read: {e}"),
        }
    }
}

cross_model! {
    // The reader waits on an empty pipe that only a thread spawned after it writes: in
    // many-to-one that thread can only run if the wait parks the green thread alone.
    fn a_reader_waits_alone_for_a_writer(model) {
        let (r, w) = nonblocking_pipe();
        let reader = spindle::spawn(move || read_when_ready(&r));
        let writer = spindle::spawn(move || write_byte(&w, 42).unwrap());
        assert_eq!(reader.join().unwrap(), 42, "{model}");
        writer.join().unwrap();
    }

    fn a_kernel_thread_wakes_a_green_reader(model) {
        let (r, w) = nonblocking_pipe();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let kernel = std::thread::spawn(move || {
            rx.recv().unwrap();
            write_byte(&w, 7).unwrap();
        });
        let reader = spindle::spawn(move || {
            tx.send(()).unwrap();
            read_when_ready(&r)
        });
        assert_eq!(reader.join().unwrap(), 7, "{model}");
        kernel.join().unwrap();
    }

    // Many pipes at once, each with its own reader and writer.
    fn many_waits_at_once(model) {
        let n = if model == spindle::Model::OneToOne { 20 } else { 200 };
        let readers: Vec<_> = (0..n)
            .map(|i| {
                let (r, w) = nonblocking_pipe();
                let reader = spindle::spawn(move || read_when_ready(&r));
                let writer = spindle::spawn(move || {
                    spindle::yield_now();
                    write_byte(&w, (i % 251) as u8).unwrap();
                });
                (i, reader, writer)
            })
            .collect();
        for (i, reader, writer) in readers {
            assert_eq!(reader.join().unwrap(), (i % 251) as u8);
            writer.join().unwrap();
        }
    }

    fn a_full_pipe_waits_for_writable(model) {
        let (r, w) = nonblocking_pipe();
        // Fill the pipe.
        let mut filled = 0usize;
        while write_byte(&w, 1).is_ok() {
            filled += 1;
        }
        let drainer = spindle::spawn(move || {
            for _ in 0..filled {
                read_when_ready(&r);
            }
            r
        });
        // Waits until the drainer has made room.
        loop {
            match write_byte(&w, 2) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    spindle::io::wait_writable(w.as_fd()).unwrap()
                }
                Err(e) => panic!("write: {e} ({model})"),
            }
        }
        let r = drainer.join().unwrap();
        assert_eq!(read_when_ready(&r), 2);
    }
}

/// Two green threads wait on the same descriptor at once (both for readable): both are
/// woken when it becomes readable (the second registers a duplicate of it).
#[test]
fn two_waiters_on_one_descriptor() {
    common::run(spindle::Model::ManyToOne, || {
        let (r, w) = nonblocking_pipe();
        let r = std::sync::Arc::new(r);
        let (ready_tx, ready_rx) = spindle::channel::unbounded::<()>();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                let ready_tx = ready_tx.clone();
                spindle::spawn(move || {
                    ready_tx.send(()).unwrap();
                    spindle::io::wait_readable(r.as_fd()).unwrap();
                })
            })
            .collect();
        ready_rx.recv().unwrap();
        ready_rx.recv().unwrap();
        // Both have registered by now in many-to-one (each parks in its wait right after
        // sending); a late registration would see the byte at once anyway.
        write_byte(&w, 9).unwrap();
        for h in waiters {
            h.join().unwrap();
        }
        assert_eq!(read_byte(&r).unwrap(), 9);
    });
}
