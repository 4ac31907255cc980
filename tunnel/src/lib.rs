//! Geneve tunnels the way OVN uses them.
//!
//! Owns the Geneve wire format (RFC 8926) with OVN's option (class 0x0102,
//! type 0x80: ingress and egress logical port keys), encapsulation and
//! decapsulation, and tunnel endpoints (remote chassis → underlay address).
//! It knows nothing of logical flows.
//!
//! Nothing is implemented here yet; tunnels are tracked in the project's issues.
