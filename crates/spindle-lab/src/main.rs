//! spindle-lab: the threading-model experiments.
fn main() {}
