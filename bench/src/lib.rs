//! ironflow benchmarks: whole-engine runs (`engine`) and the frames they
//! use, and side-by-side runs against other dataplanes (`system`); the criterion micro-benchmarks live in `benches/`. Never needed at
//! run time.

pub mod engine;
pub mod frames;
pub mod system;
