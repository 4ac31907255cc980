//! The symbol table: every field and predicate a logical flow may name
//! (`man ovn-sb`, "Logical Flow Match Syntax"), with its place in the flow
//! key, its width and its prerequisites.
//!
//! Fields that OVS keeps in one slot share a [`KeyField`] here too (TCP,
//! UDP and SCTP ports and ICMP type/code; ARP and IPv4 addresses; ARP
//! hardware addresses and ND link-layer addresses): their prerequisites
//! keep them apart, and a smaller key hashes faster. Registers follow OVN's
//! overlay: `xxreg0` is `reg0`..`reg3` with `reg0` most significant, and
//! `xreg0` is `xxreg0[64..127]`.

use crate::keyhash::BuildKeyHasher;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

/// A slot of the flow key that the classifier matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyField {
    /// `xxreg0` (reg0..reg3) and `xxreg1` (reg4..reg7).
    Xxreg(u8),
    /// `xreg4`: reg8 (high half) and reg9.
    Xreg4,
    /// Logical flags (reg10).
    Flags,
    /// Logical input port key (reg14).
    InPort,
    /// Logical output port key (reg15).
    OutPort,
    EthSrc,
    EthDst,
    EthType,
    VlanTci,
    IpProto,
    /// DSCP in bits 2..7, ECN in bits 0..1.
    IpTos,
    IpTtl,
    /// Bit 0: a fragment; bit 1: a later fragment.
    IpFrag,
    /// IPv4 source, or ARP sender protocol address.
    Nw4Src,
    /// IPv4 destination, or ARP target protocol address.
    Nw4Dst,
    Ip6Src,
    Ip6Dst,
    Ip6Label,
    ArpOp,
    /// ARP sender hardware address, or ND source link-layer address.
    ArpSha,
    /// ARP target hardware address, or ND target link-layer address.
    ArpTha,
    NdTarget,
    /// TCP/UDP/SCTP source port, or ICMP type.
    TpSrc,
    /// TCP/UDP/SCTP destination port, or ICMP code.
    TpDst,
    TcpFlags,
    CtState,
    CtMark,
    CtLabel,
    PktMark,
}

impl KeyField {
    /// Every key field, in key order: [`KeyField::index`] is the position.
    pub const ALL: [KeyField; 30] = [
        KeyField::Xxreg(0),
        KeyField::Xxreg(1),
        KeyField::Xreg4,
        KeyField::Flags,
        KeyField::InPort,
        KeyField::OutPort,
        KeyField::EthSrc,
        KeyField::EthDst,
        KeyField::EthType,
        KeyField::VlanTci,
        KeyField::IpProto,
        KeyField::IpTos,
        KeyField::IpTtl,
        KeyField::IpFrag,
        KeyField::Nw4Src,
        KeyField::Nw4Dst,
        KeyField::Ip6Src,
        KeyField::Ip6Dst,
        KeyField::Ip6Label,
        KeyField::ArpOp,
        KeyField::ArpSha,
        KeyField::ArpTha,
        KeyField::NdTarget,
        KeyField::TpSrc,
        KeyField::TpDst,
        KeyField::TcpFlags,
        KeyField::CtState,
        KeyField::CtMark,
        KeyField::CtLabel,
        KeyField::PktMark,
    ];

    /// Number of key fields.
    pub const COUNT: usize = Self::ALL.len();

    /// Dense index into a key: stable, and the order of [`KeyField::ALL`].
    pub fn index(self) -> usize {
        match self {
            // Only xxreg0 and xxreg1 exist.
            KeyField::Xxreg(n) => usize::from(n.min(1)),
            KeyField::Xreg4 => 2,
            KeyField::Flags => 3,
            KeyField::InPort => 4,
            KeyField::OutPort => 5,
            KeyField::EthSrc => 6,
            KeyField::EthDst => 7,
            KeyField::EthType => 8,
            KeyField::VlanTci => 9,
            KeyField::IpProto => 10,
            KeyField::IpTos => 11,
            KeyField::IpTtl => 12,
            KeyField::IpFrag => 13,
            KeyField::Nw4Src => 14,
            KeyField::Nw4Dst => 15,
            KeyField::Ip6Src => 16,
            KeyField::Ip6Dst => 17,
            KeyField::Ip6Label => 18,
            KeyField::ArpOp => 19,
            KeyField::ArpSha => 20,
            KeyField::ArpTha => 21,
            KeyField::NdTarget => 22,
            KeyField::TpSrc => 23,
            KeyField::TpDst => 24,
            KeyField::TcpFlags => 25,
            KeyField::CtState => 26,
            KeyField::CtMark => 27,
            KeyField::CtLabel => 28,
            KeyField::PktMark => 29,
        }
    }

    /// Width in bits.
    pub fn width(self) -> u16 {
        match self {
            KeyField::Xxreg(_)
            | KeyField::Ip6Src
            | KeyField::Ip6Dst
            | KeyField::NdTarget
            | KeyField::CtLabel => 128,
            KeyField::Xreg4 => 64,
            KeyField::EthSrc | KeyField::EthDst | KeyField::ArpSha | KeyField::ArpTha => 48,
            KeyField::Flags
            | KeyField::InPort
            | KeyField::OutPort
            | KeyField::Nw4Src
            | KeyField::Nw4Dst
            | KeyField::CtState
            | KeyField::CtMark
            | KeyField::PktMark => 32,
            KeyField::Ip6Label => 20,
            KeyField::EthType
            | KeyField::VlanTci
            | KeyField::ArpOp
            | KeyField::TpSrc
            | KeyField::TpDst => 16,
            KeyField::TcpFlags => 12,
            KeyField::IpProto | KeyField::IpTos | KeyField::IpTtl => 8,
            KeyField::IpFrag => 2,
        }
    }

    /// All ones over the field's width.
    pub fn full_mask(self) -> u128 {
        ones(self.width())
    }
}

/// `n` low one bits.
pub fn ones(n: u16) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

/// What values a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Integer,
    /// A logical port, named by a string (`inport`, `outport`).
    PortName,
}

/// Which actions may write a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writable {
    Yes,
    No,
    /// Only inside `ct_commit { … }` (`ct_mark`, `ct_label`).
    CtCommit,
}

/// A bit range of one key field, with what must hold before it means
/// anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub key: KeyField,
    /// Lowest bit within `key`.
    pub low: u16,
    pub width: u16,
    pub kind: FieldKind,
    /// An expression that must hold for the field to exist (`tcp` for
    /// `tcp.dst`); the parser adds it to every match that uses the field.
    pub prereqs: Option<&'static str>,
    pub writable: Writable,
}

impl Field {
    /// The field's bits as a mask over its key field.
    pub fn mask(&self) -> u128 {
        ones(self.width) << self.low
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Symbol {
    Field(Field),
    /// A name for an expression (`ip4` is `eth.type == 0x800`).
    Predicate(&'static str),
}

impl fmt::Display for KeyField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyField::Xxreg(n) => write!(f, "xxreg{n}"),
            other => write!(f, "{}", format!("{other:?}").to_lowercase()),
        }
    }
}

/// Looks a name up.
pub fn lookup(name: &str) -> Option<&'static Symbol> {
    table().get(name)
}

/// Every symbol, for documentation and tests.
pub fn all() -> impl Iterator<Item = (&'static str, &'static Symbol)> {
    table().iter().map(|(k, v)| (k.as_str(), v))
}

/// Names are looked up a few times per flow and come from the trusted
/// Southbound: a cheap hash beats SipHash here.
type Table = HashMap<String, Symbol, BuildKeyHasher>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(build)
}

fn build() -> Table {
    use KeyField as K;
    let mut t = Table::default();
    let mut field = |name: &str,
                     key: KeyField,
                     low: u16,
                     width: u16,
                     prereqs: Option<&'static str>,
                     writable: Writable| {
        let kind = if matches!(key, K::InPort | K::OutPort) {
            FieldKind::PortName
        } else {
            FieldKind::Integer
        };
        t.insert(
            name.to_string(),
            Symbol::Field(Field {
                key,
                low,
                width,
                kind,
                prereqs,
                writable,
            }),
        );
    };
    let rw = Writable::Yes;
    let ro = Writable::No;

    field("inport", K::InPort, 0, 32, None, rw);
    field("outport", K::OutPort, 0, 32, None, rw);
    for xx in 0..2u8 {
        field(&format!("xxreg{xx}"), K::Xxreg(xx), 0, 128, None, rw);
        for half in 0..2u16 {
            let xi = 2 * u16::from(xx) + half;
            field(
                &format!("xreg{xi}"),
                K::Xxreg(xx),
                64 * (1 - half),
                64,
                None,
                rw,
            );
        }
        for quarter in 0..4u16 {
            let ri = 4 * u16::from(xx) + quarter;
            field(
                &format!("reg{ri}"),
                K::Xxreg(xx),
                32 * (3 - quarter),
                32,
                None,
                rw,
            );
        }
    }
    field("xreg4", K::Xreg4, 0, 64, None, rw);
    field("reg8", K::Xreg4, 32, 32, None, rw);
    field("reg9", K::Xreg4, 0, 32, None, rw);

    field("flags", K::Flags, 0, 32, None, rw);
    for (name, bit) in [
        ("flags.loopback", 0),
        ("flags.force_snat_for_dnat", 2),
        ("flags.force_snat_for_lb", 3),
        ("flags.skip_snat_for_lb", 9),
        ("flags.use_snat_zone", 11),
        ("flags.localnet", 15),
        ("flags.tunnel_rx", 16),
        ("flags.icmp_snat", 17),
        ("flags.from_ctrl", 19),
    ] {
        field(name, K::Flags, bit, 1, None, rw);
    }

    let ct = Writable::CtCommit;
    field("ct_mark", K::CtMark, 0, 32, None, ct);
    for (name, low, width) in [
        ("ct_mark.blocked", 0, 1),
        ("ct_mark.natted", 1, 1),
        ("ct_mark.skip_snat", 2, 1),
        ("ct_mark.force_snat", 3, 1),
        ("ct_mark.obs_stage", 4, 2),
        ("ct_mark.allow_established", 6, 1),
        ("ct_mark.ecmp_reply_port", 16, 16),
        ("ct_mark.obs_collector_id", 16, 8),
    ] {
        field(name, K::CtMark, low, width, None, ct);
    }
    field("ct_label", K::CtLabel, 0, 128, None, ct);
    for (name, low, width) in [
        // The first two are the pre-22.09 homes of ct_mark's bits, still
        // accepted so older northd databases parse.
        ("ct_label.blocked", 0, 1),
        ("ct_label.natted", 1, 1),
        ("ct_label.ecmp_reply_eth", 32, 48),
        ("ct_label.ecmp_reply_port", 80, 16),
        ("ct_label.label", 96, 32),
        ("ct_label.obs_point_id", 96, 32),
        ("ct_label.obs_unused", 0, 96),
    ] {
        field(name, K::CtLabel, low, width, None, ct);
    }
    field("ct_state", K::CtState, 0, 32, None, ro);
    for (name, bit) in [
        ("ct.new", 0),
        ("ct.est", 1),
        ("ct.rel", 2),
        ("ct.rpl", 3),
        ("ct.inv", 4),
        ("ct.trk", 5),
        ("ct.snat", 6),
        ("ct.dnat", 7),
    ] {
        let prereqs = if name == "ct.trk" {
            None
        } else {
            Some("ct.trk")
        };
        field(name, K::CtState, bit, 1, prereqs, ro);
    }

    field("eth.src", K::EthSrc, 0, 48, None, rw);
    field("eth.dst", K::EthDst, 0, 48, None, rw);
    field("eth.type", K::EthType, 0, 16, None, ro);
    field("eth.mcast", K::EthDst, 40, 1, None, ro);
    field("vlan.tci", K::VlanTci, 0, 16, None, rw);
    field("vlan.pcp", K::VlanTci, 13, 3, Some("vlan.present"), rw);
    field("vlan.vid", K::VlanTci, 0, 12, Some("vlan.present"), rw);

    field("ip.proto", K::IpProto, 0, 8, Some("ip"), ro);
    field("ip.dscp", K::IpTos, 2, 6, Some("ip"), rw);
    field("ip.ecn", K::IpTos, 0, 2, Some("ip"), rw);
    field("ip.ttl", K::IpTtl, 0, 8, Some("ip"), rw);
    field("ip.frag", K::IpFrag, 0, 2, Some("ip"), ro);
    field("ip4.src", K::Nw4Src, 0, 32, Some("ip4"), rw);
    field("ip4.dst", K::Nw4Dst, 0, 32, Some("ip4"), rw);
    field("ip6.src", K::Ip6Src, 0, 128, Some("ip6"), rw);
    field("ip6.dst", K::Ip6Dst, 0, 128, Some("ip6"), rw);
    field("ip6.label", K::Ip6Label, 0, 20, Some("ip6"), rw);
    field("icmp4.type", K::TpSrc, 0, 8, Some("icmp4"), rw);
    field("icmp4.code", K::TpDst, 0, 8, Some("icmp4"), rw);
    field("icmp6.type", K::TpSrc, 0, 8, Some("icmp6"), rw);
    field("icmp6.code", K::TpDst, 0, 8, Some("icmp6"), rw);

    for (proto, pre) in [("arp", "arp"), ("rarp", "rarp")] {
        field(&format!("{proto}.op"), K::ArpOp, 0, 16, Some(pre), rw);
        field(&format!("{proto}.spa"), K::Nw4Src, 0, 32, Some(pre), rw);
        field(&format!("{proto}.tpa"), K::Nw4Dst, 0, 32, Some(pre), rw);
        field(&format!("{proto}.sha"), K::ArpSha, 0, 48, Some(pre), rw);
        field(&format!("{proto}.tha"), K::ArpTha, 0, 48, Some(pre), rw);
    }
    field("nd.target", K::NdTarget, 0, 128, Some("nd"), rw);
    field("nd.sll", K::ArpSha, 0, 48, Some("nd_ns"), rw);
    field("nd.tll", K::ArpTha, 0, 48, Some("nd_na"), rw);

    for proto in ["tcp", "udp", "sctp"] {
        let pre: &'static str = match proto {
            "tcp" => "tcp",
            "udp" => "udp",
            _ => "sctp",
        };
        field(&format!("{proto}.src"), K::TpSrc, 0, 16, Some(pre), rw);
        field(&format!("{proto}.dst"), K::TpDst, 0, 16, Some(pre), rw);
    }
    field("tcp.flags", K::TcpFlags, 0, 12, Some("tcp"), ro);
    field("pkt.mark", K::PktMark, 0, 32, None, rw);

    for (name, expansion) in [
        ("eth.bcast", "eth.dst == ff:ff:ff:ff:ff:ff"),
        ("eth.mcastv6", "eth.dst[32..47] == 0x3333"),
        ("vlan.present", "vlan.tci[12]"),
        ("ip4", "eth.type == 0x800"),
        ("ip6", "eth.type == 0x86dd"),
        ("ip", "ip4 || ip6"),
        ("ip4.src_mcast", "ip4.src[28..31] == 0xe"),
        ("ip4.mcast", "eth.mcast && ip4.dst[28..31] == 0xe"),
        ("icmp4", "ip4 && ip.proto == 1"),
        ("igmp", "ip4.mcast && ip.proto == 2"),
        ("ip6.mcast_rsvd", "ip6.dst[116..127] == 0xff0 && ip6.dst[0..111] == 0x0"),
        ("ip6.mcast_all_nodes", "ip6.dst == ff01::1 || ip6.dst == ff02::1"),
        ("ip6.mcast_all_rtrs", "ip6.dst == ff01::2 || ip6.dst == ff02::2 || ip6.dst == ff05::2"),
        ("ip6.mcast_sol_node", "ip6.dst == ff02::1:ff00:0000/104"),
        (
            "ip6.mcast_flood",
            "eth.mcastv6 && (ip6.mcast_rsvd || ip6.mcast_all_nodes || ip6.mcast_all_rtrs || ip6.mcast_sol_node)",
        ),
        ("ip6.mcast", "eth.mcastv6 && ip6.dst[120..127] == 0xff"),
        ("icmp6", "ip6 && ip.proto == 58"),
        ("icmp", "icmp4 || icmp6"),
        ("ip.is_frag", "ip.frag[0]"),
        ("ip.later_frag", "ip.frag[1]"),
        ("ip.first_frag", "ip.is_frag && !ip.later_frag"),
        ("arp", "eth.type == 0x806"),
        ("rarp", "eth.type == 0x8035"),
        ("nd", "icmp6.type == {135, 136} && icmp6.code == 0 && ip.ttl == 255"),
        ("nd_ns", "icmp6.type == 135 && icmp6.code == 0 && ip.ttl == 255"),
        ("nd_ns_mcast", "ip6.mcast && icmp6.type == 135 && icmp6.code == 0 && ip.ttl == 255"),
        ("nd_na", "icmp6.type == 136 && icmp6.code == 0 && ip.ttl == 255"),
        ("nd_rs", "icmp6.type == 133 && icmp6.code == 0 && ip.ttl == 255"),
        ("nd_ra", "icmp6.type == 134 && icmp6.code == 0 && ip.ttl == 255"),
        ("mldv1", "eth.mcastv6 && ip6.src == fe80::/10 && icmp6.type == {130, 131, 132}"),
        ("mldv2", "eth.mcastv6 && ip6.dst == ff02::16 && icmp6.type == 143"),
        ("tcp", "ip.proto == 6"),
        ("udp", "ip.proto == 17"),
        ("sctp", "ip.proto == 132"),
    ] {
        t.insert(name.to_string(), Symbol::Predicate(expansion));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> &'static Field {
        match lookup(name) {
            Some(Symbol::Field(f)) => f,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn key_field_indices_are_dense() {
        for (i, k) in KeyField::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k}");
        }
    }

    #[test]
    fn registers_overlay_as_in_ovn() {
        // xxreg0[96..127] is reg0, as the seed's trace shows.
        assert_eq!(
            (field("reg0").key, field("reg0").low),
            (KeyField::Xxreg(0), 96)
        );
        assert_eq!(field("reg3").low, 0);
        assert_eq!(
            (field("reg4").key, field("reg4").low),
            (KeyField::Xxreg(1), 96)
        );
        assert_eq!(
            (field("xreg0").key, field("xreg0").low, field("xreg0").width),
            (KeyField::Xxreg(0), 64, 64)
        );
        assert_eq!(
            (field("xreg3").key, field("xreg3").low),
            (KeyField::Xxreg(1), 0)
        );
        assert_eq!(
            (field("reg8").key, field("reg8").low),
            (KeyField::Xreg4, 32)
        );
        assert!(
            lookup("reg10").is_none(),
            "reg10 is flags, not a logical register"
        );
    }

    #[test]
    fn every_field_fits_its_key_and_every_prereq_is_a_symbol() {
        for (name, sym) in all() {
            if let Symbol::Field(f) = sym {
                assert!(f.low + f.width <= f.key.width(), "{name}");
                if let Some(p) = f.prereqs {
                    assert!(lookup(p).is_some(), "{name} needs unknown {p}");
                }
            }
        }
        assert_eq!(field("tcp.dst").prereqs, Some("tcp"));
        assert_eq!(lookup("tcp"), Some(&Symbol::Predicate("ip.proto == 6")));
        assert_eq!(field("ip.proto").prereqs, Some("ip"));
        assert_eq!(field("inport").kind, FieldKind::PortName);
        assert_eq!(field("ct_mark.blocked").writable, Writable::CtCommit);
    }
}
