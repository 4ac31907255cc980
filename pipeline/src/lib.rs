//! The pure core of ironflow: what OVN's logical network is and how it runs.
//!
//! This crate owns the logical network model built from the Southbound
//! database ([`network`]), the snapshot file format ([`snapshot`]), and —
//! as the project grows — the logical-flow language, the pipeline compiler,
//! the slow-path interpreter and `trace`. It does no I/O, spawns no threads
//! and knows nothing of sockets, so every stage is testable with values in
//! and values out (the way smoltcp's `wire` and s2n-quic's core are).

pub mod classifier;
pub mod dpaction;
pub mod interp;
pub mod keyhash;
pub mod lflow;
pub mod network;
pub mod program;
pub mod snapshot;
pub mod trace;
pub mod uuid;

pub use network::LogicalNetwork;
pub use uuid::Uuid;
