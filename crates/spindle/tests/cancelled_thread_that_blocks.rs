//! A green thread being cancelled by a runtime drop cannot wait: if a destructor blocks
//! during the unwind, the process aborts with a message naming the thread (instead of
//! hanging, or dying of a bare double panic). Runs the crash in a child process.

mod common;

use std::os::unix::process::ExitStatusExt;

const CHILD_ENV: &str = "SPINDLE_TEST_CANCELLED_BLOCKER_CHILD";

/// Blocks in its destructor: waits for a message nobody sends.
struct BlocksOnDrop(spindle::channel::Receiver<()>);

impl Drop for BlocksOnDrop {
    fn drop(&mut self) {
        let _ = self.0.recv();
    }
}

fn child() {
    let rt = spindle::Runtime::builder().build().unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (_keep_sender, rx) = spindle::channel::bounded::<()>(1);
    rt.block_on(move || {
        spindle::thread::Builder::new()
            .name("stubborn".into())
            .spawn(move || {
                let _guard = BlocksOnDrop(rx);
                started_tx.send(()).unwrap();
                loop {
                    spindle::park();
                }
            })
            .unwrap();
    });
    started_rx.recv().unwrap();
    drop(rt);
    unreachable!("dropping the runtime aborts");
}

#[test]
fn a_destructor_that_blocks_during_cancellation_aborts_with_a_message() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let out = common::rerun_in_child(
        "a_destructor_that_blocks_during_cancellation_aborts_with_a_message",
        CHILD_ENV,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(6),
        "expected SIGABRT; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("('stubborn') tried to block"),
        "stderr:\n{stderr}"
    );
    assert!(stderr.contains("cannot wait"), "stderr:\n{stderr}");
}
