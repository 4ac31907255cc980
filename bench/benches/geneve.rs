//! Placeholder: the geneve benchmarks are being written.
fn main() {}
