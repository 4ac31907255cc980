//! Placeholder: the extract benchmarks are being written.
fn main() {}
