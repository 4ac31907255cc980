//! ironflow benchmarks.
//!
//! Will hold the criterion micro-benchmarks, whole-engine throughput runs and
//! side-by-side runs against OVS and the kernel. Never needed at run time.
