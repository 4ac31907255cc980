//! Labs for ironflow and the integration tests that use them.
//!
//! Owns the real OVN central run from the Debian packages ([`central`]) and
//! the seed topology built on it with `ovn-nbctl` ([`seed`]), synthetic
//! Southbounds of any size for the benchmarks ([`synthetic`]), and the
//! in-process labs of the embedded harness ([`embedded`]); later, the
//! network-namespace labs with ironflow and stock OVN chassis. Tests under
//! `tests/` drive ironflow against these labs: no mock stands where a real
//! component runs.

pub mod central;
pub mod differential;
pub mod embedded;
pub mod inproc;
pub mod lab;
pub mod netns;
pub mod node;
pub mod seed;
pub mod stock;
pub mod synthetic;
pub mod topologies;
