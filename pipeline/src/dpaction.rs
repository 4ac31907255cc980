//! Datapath actions: the flat list of things the fast path does to a
//! packet, which the interpreter produces for one pass of a packet through
//! the logical pipelines (OVS's ODP actions).
//!
//! A pass ends at a conntrack action that recirculates: the datapath runs
//! [`DpAction::Ct`], then looks the packet up again with
//! [`DpAction::Recirc`]'s id, which names the frozen logical state
//! (registers, logical ports, where in the pipelines to go on).

use crate::lflow::symbols::KeyField;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpAction {
    /// Sets a packet header field (a [`KeyField`] the packet carries, not
    /// a register) to a value; L3/L4 checksums follow.
    Set { field: KeyField, value: u128 },
    /// Decrements the IPv4 TTL or IPv6 hop limit by one.
    DecTtl,
    /// Sends the packet out of a logical port bound to this chassis.
    Output { datapath_key: u32, port_key: u32 },
    /// Sends the packet to another chassis in Geneve, with OVN's metadata.
    Tunnel(TunnelOutput),
    /// Runs the packet through conntrack.
    Ct(CtAction),
    /// Forgets the packet's conntrack state (`ct_clear`).
    CtClear,
    /// Looks the packet up again, resuming the frozen state with this id.
    Recirc(u32),
    /// Hands the packet to the controller (slow path): the pipeline needs
    /// it to make a packet (`arp`, `icmp4`, `put_arp`, …).
    Controller,
}

/// Where a tunnelled packet goes (`man ovn-architecture`, "Tunnel
/// Encapsulations"): the VNI is the datapath's tunnel key, the Geneve
/// option carries the logical ingress and egress port keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelOutput {
    pub chassis: Arc<str>,
    pub datapath_key: u32,
    pub inport_key: u32,
    pub outport_key: u32,
}

/// One trip through conntrack, as ovn-controller encodes OVN's `ct_*`
/// actions into OpenFlow `ct()`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CtAction {
    pub zone: u16,
    /// Creates (or keeps) the connection entry.
    pub commit: bool,
    pub nat: Option<CtNat>,
    /// `ct_mark` written on commit: (value, mask).
    pub mark: Option<(u32, u32)>,
    /// `ct_label` written on commit: (value, mask).
    pub label: Option<(u128, u128)>,
    /// Whether the packet is looked up again afterwards (`ct_next` and
    /// friends do; `ct_commit` does not).
    pub recirculates: bool,
}

/// Network address translation done by conntrack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtNat {
    /// Apply the translation the connection already has (`ct_dnat;`,
    /// `ct_snat;`, `ct_lb_mark;` without backends): replies are un-NATed.
    Existing,
    /// A new connection's source becomes an address (and port) from the
    /// range; established ones keep theirs.
    Src(NatRange),
    /// The same for the destination.
    Dst(NatRange),
    /// Load balancing: a new connection's destination becomes one of the
    /// backends, chosen by a hash of its 5-tuple; established ones keep
    /// theirs (`ct_lb_mark(backends=…)`).
    DstSelect(Arc<[Backend]>),
}

/// Addresses and ports to translate to, inclusive (IPv4 in the low 32
/// bits). No port range means ports are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatRange {
    pub ipv6: bool,
    pub addr_min: u128,
    pub addr_max: u128,
    pub ports: Option<(u16, u16)>,
}

/// A load-balancer backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    pub ipv6: bool,
    pub addr: u128,
    pub port: Option<u16>,
}
