//! ironflow's userspace datapath.
//!
//! Owns packet buffers, flow-key extraction, the exact-match and megaflow
//! caches, datapath action execution, userspace conntrack, the port backends
//! (AF_XDP, AF_PACKET, TAP, in-memory) and the poll-mode workers. It never
//! parses OVN text nor talks OVSDB: it runs what `ironflow-pipeline` compiled.

pub mod afpacket;
pub mod afpacket_ring;
#[cfg(feature = "afxdp")]
pub mod afxdp;
pub mod cache;
pub mod checksum;
pub mod compose;
pub mod config;
pub mod conntrack;
pub mod dhcp;
pub mod dhcp6;
pub mod dns;
pub mod dump;
pub mod engine;
pub mod exec;
pub mod extract;
pub mod flow;
pub mod keymap;
pub mod packet;
pub mod port;
pub mod rewrite;
pub mod tap;
pub mod tunnel;
pub mod udp_underlay;
pub mod vnet;
pub mod worker;
