//! Placeholder: the conntrack benchmarks are being written.
fn main() {}
