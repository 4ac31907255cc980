//! Geneve tunnels the way OVN uses them.
//!
//! Owns the Geneve wire format (RFC 8926) with OVN's option (class 0x0102,
//! type 0x80: ingress and egress logical port keys): building the outer
//! headers in front of an inner frame, and taking them apart with every
//! check a receiver owes the sender. It knows nothing of logical flows;
//! which VNIs, port keys and sender addresses are acceptable is the
//! datapath's to say.

pub mod geneve;
pub mod inner_sum;
pub mod ovs_hash;

pub use geneve::{
    decap, write_headers, DecapError, Decapped, EncapParams, HeaderTemplate, OvnMetadata,
};
