//! A green thread that overflows its stack: the process prints which thread overflowed and
//! aborts, as std does for kernel threads. Runs the overflow in a child process.

mod common;

use std::os::unix::process::ExitStatusExt;

const CHILD_ENV: &str = "SPINDLE_TEST_GREEN_OVERFLOW_CHILD";

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + pad[3]
}

fn child() {
    let rt = spindle::Runtime::builder()
        .model(spindle::Model::ManyToOne)
        .build()
        .unwrap();
    rt.block_on(|| {
        let h = spindle::thread::Builder::new()
            .name("deep-recursion".into())
            .stack_size(64 * 1024)
            .spawn(|| recurse(0))
            .unwrap();
        let _ = h.join();
    });
    unreachable!("the overflow aborts the process");
}

#[test]
fn overflow_names_the_green_thread_and_aborts() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let out = common::rerun_in_child("overflow_names_the_green_thread_and_aborts", CHILD_ENV);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc_sigabrt()),
        "status {:?}, stderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("thread 'deep-recursion' (spindle green thread "),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("has overflowed its stack of 65536 bytes"),
        "stderr:\n{stderr}"
    );
}

fn libc_sigabrt() -> i32 {
    6
}
