//! Shared helpers for the integration tests: the cross-model macro.

#![allow(dead_code)]

use spindle::{Model, Runtime};

/// Every model a behaviour test runs under.
pub const MODELS: [Model; 3] = [
    Model::ManyToOne,
    Model::OneToOne,
    Model::ManyToMany { workers: 2 },
];

/// Builds a runtime for `model` and runs `f` as its first thread.
pub fn run<T: Send>(model: Model, f: impl FnOnce() -> T + Send) -> T {
    let rt = Runtime::builder()
        .model(model)
        .build()
        .unwrap_or_else(|e| panic!("cannot build a {model} runtime: {e}"));
    rt.block_on(f)
}

/// Whether the running test body is on a green thread (false in the one-to-one model).
pub fn on_green_thread() -> bool {
    spindle::current().is_green()
}

/// Defines one `#[test]` per model for each body: `cross_model! { fn name(model) { ... } }`.
/// The body runs as the runtime's first thread; `model` names the model it runs under.
#[macro_export]
macro_rules! cross_model {
    ($(fn $name:ident($model:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[test]
                fn many_to_one() {
                    let $model = spindle::Model::ManyToOne;
                    $crate::common::run($model, move || $body)
                }

                #[test]
                fn one_to_one() {
                    let $model = spindle::Model::OneToOne;
                    $crate::common::run($model, move || $body)
                }

                #[test]
                fn many_to_many() {
                    let $model = spindle::Model::ManyToMany { workers: 2 };
                    $crate::common::run($model, move || $body)
                }
            }
        )*
    };
}

/// Runs the test `test_name` of the current test binary again in a child process, with the
/// environment variable `child_env` set so that the test knows to play the child, and
/// returns the child's status and output (for tests of what must crash).
pub fn rerun_in_child(test_name: &str, child_env: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", test_name, "--nocapture"])
        .env(child_env, "1")
        .output()
        .expect("cannot run the test binary as a child")
}
