//! Skynet: each thread spawns 10 children, down to a million leaves, and sums their
//! numbers. A test of spawning, joining and stacks at scale in every model (one-to-one at a
//! thousand leaves, since those are kernel threads).

use spindle::{Model, Runtime};

fn skynet(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let step = size / 10;
    let children: Vec<_> = (0..10)
        .map(|i| spindle::spawn(move || skynet(num + i * step, step)))
        .collect();
    children.into_iter().map(|h| h.join().unwrap()).sum()
}

fn run(model: Model, leaves: u64) {
    let rt = Runtime::builder()
        .model(model)
        .stack_size(16 * 1024)
        .build()
        .unwrap();
    let sum = rt.block_on(move || skynet(0, leaves));
    assert_eq!(sum, leaves * (leaves - 1) / 2, "{model}");
}

#[test]
fn skynet_many_to_one_million() {
    run(Model::ManyToOne, 1_000_000);
}

#[test]
fn skynet_many_to_many_million() {
    run(Model::ManyToMany { workers: 2 }, 1_000_000);
}

#[test]
fn skynet_many_to_many_4_workers_million() {
    run(Model::ManyToMany { workers: 4 }, 1_000_000);
}

#[test]
fn skynet_one_to_one_thousand() {
    run(Model::OneToOne, 1_000);
}

#[test]
fn skynet_answer_for_a_million_is_the_known_one() {
    let rt = Runtime::builder()
        .model(Model::ManyToMany { workers: 2 })
        .stack_size(16 * 1024)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(|| skynet(0, 1_000_000)), 499_999_500_000);
}
