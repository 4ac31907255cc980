//! ironflow benchmarks: whole-engine runs (`engine`) and the frames they
//! use, side-by-side runs against other dataplanes (`system`) and
//! against stock ovn-controller (`control`); the criterion
//! micro-benchmarks live in `benches/`. Never needed at run time.

pub mod control;
pub mod engine;
pub mod frames;
pub mod system;
