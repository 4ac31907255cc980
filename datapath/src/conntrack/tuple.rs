//! Connection tuples: what conntrack keys a connection by, read from the
//! flow key and, for ICMP, from the packet's own bytes.
//!
//! A tuple is one direction of a connection (OVS's `conn_key`): zone, IP
//! version, protocol, addresses and ports. ICMP echo-style messages use
//! the echo identifier as both ports and keep the message type with the
//! type its answer would have, so a request and its reply are each other's
//! reverse. ICMP errors are not connections of their own: they are read
//! as the connection their embedded header belongs to (`related`).

use crate::flow::{slots, FlowKey};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(crate) const IPPROTO_ICMP: u8 = 1;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;
pub(crate) const IPPROTO_SCTP: u8 = 132;
pub(crate) const IPPROTO_UDPLITE: u8 = 136;

const ETH_TYPE_IP: u16 = 0x0800;
const ETH_TYPE_IPV6: u16 = 0x86dd;

/// One direction of a connection. IPv4 addresses sit in the low 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CtTuple {
    pub src: u128,
    pub dst: u128,
    /// Transport source port, or the ICMP echo identifier.
    pub sport: u16,
    /// Transport destination port, or the ICMP echo identifier again.
    pub dport: u16,
    /// ICMP message type (0 for other protocols).
    pub icmp_type: u8,
    /// The type of the message that answers `icmp_type` (echo request ↔
    /// echo reply), so that reversing a tuple yields its answer's tuple.
    pub icmp_rtype: u8,
    pub proto: u8,
    pub ipv6: bool,
    pub zone: u16,
}

impl CtTuple {
    /// The other direction.
    #[inline]
    pub fn reverse(&self) -> CtTuple {
        CtTuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            icmp_type: self.icmp_rtype,
            icmp_rtype: self.icmp_type,
            ..*self
        }
    }

    /// Whether the protocol has ports that NAT may rewrite through the
    /// flow key (ICMP's identifier is not in the key).
    #[inline]
    pub(crate) fn has_ports(&self) -> bool {
        matches!(
            self.proto,
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
        )
    }

    pub(crate) fn is_icmp(&self) -> bool {
        (self.proto == IPPROTO_ICMP && !self.ipv6) || (self.proto == IPPROTO_ICMPV6 && self.ipv6)
    }

    /// The words the table hashes: everything that tells tuples apart.
    #[inline(always)]
    pub(crate) fn words(&self) -> [u64; 6] {
        [
            self.src as u64,
            (self.src >> 64) as u64,
            self.dst as u64,
            (self.dst >> 64) as u64,
            u64::from(self.sport)
                | u64::from(self.dport) << 16
                | u64::from(self.icmp_type) << 32
                | u64::from(self.icmp_rtype) << 40
                | u64::from(self.proto) << 48,
            u64::from(self.zone) | u64::from(self.ipv6) << 16,
        ]
    }

    /// The tuple [`CtTuple::words`] made `w` from.
    pub(crate) fn from_words(w: &[u64; 6]) -> CtTuple {
        CtTuple {
            src: u128::from(w[1]) << 64 | u128::from(w[0]),
            dst: u128::from(w[3]) << 64 | u128::from(w[2]),
            sport: w[4] as u16,
            dport: (w[4] >> 16) as u16,
            icmp_type: (w[4] >> 32) as u8,
            icmp_rtype: (w[4] >> 40) as u8,
            proto: (w[4] >> 48) as u8,
            zone: w[5] as u16,
            ipv6: w[5] >> 16 & 1 != 0,
        }
    }
}

fn fmt_addr(f: &mut fmt::Formatter<'_>, ipv6: bool, a: u128) -> fmt::Result {
    if ipv6 {
        write!(f, "{}", Ipv6Addr::from(a))
    } else {
        write!(f, "{}", Ipv4Addr::from(a as u32))
    }
}

impl fmt::Display for CtTuple {
    /// `src=…,dst=…,sport=…,dport=…` (or `id=…,type=…,code=0` for ICMP),
    /// as `ovs-appctl dpctl/dump-conntrack` writes a tuple.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("src=")?;
        fmt_addr(f, self.ipv6, self.src)?;
        f.write_str(",dst=")?;
        fmt_addr(f, self.ipv6, self.dst)?;
        if self.is_icmp() {
            write!(f, ",id={},type={},code=0", self.sport, self.icmp_type)
        } else if self.has_ports() {
            write!(f, ",sport={},dport={}", self.sport, self.dport)
        } else {
            Ok(())
        }
    }
}

/// What a packet is to conntrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extracted {
    /// A packet of the connection with this tuple (in the packet's
    /// direction).
    Own(CtTuple),
    /// An ICMP error about the connection with this tuple (the embedded
    /// header reversed: the direction the error travels).
    Related(CtTuple),
    /// Conntrack cannot make sense of it: `inv`.
    Invalid,
}

/// Whether this ICMP(v6) echo-style type may open a connection (only
/// requests may, as in OVS's `icmp4_valid_new`/`icmp6_valid_new`).
pub(crate) fn icmp_opens(ipv6: bool, icmp_type: u8) -> bool {
    if ipv6 {
        icmp_type == 128
    } else {
        matches!(icmp_type, 8 | 13 | 15)
    }
}

/// The answer's type for an ICMPv4 query type, if it is one.
fn icmp4_reverse(t: u8) -> Option<u8> {
    Some(match t {
        8 => 0,
        0 => 8,
        13 => 14,
        14 => 13,
        15 => 16,
        16 => 15,
        _ => return None,
    })
}

fn icmp6_reverse(t: u8) -> Option<u8> {
    Some(match t {
        128 => 129,
        129 => 128,
        _ => return None,
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be_addr(b: &[u8], at: usize, len: usize) -> Option<u128> {
    let s = b.get(at..at + len)?;
    Some(s.iter().fold(0u128, |a, &x| a << 8 | u128::from(x)))
}

/// An IP header read from bytes: addresses, protocol and where its
/// transport header starts. `None` when truncated, not the expected
/// version, or a non-first fragment (no transport header to read).
struct L3 {
    src: u128,
    dst: u128,
    proto: u8,
    l4: usize,
}

fn parse_ipv4(b: &[u8]) -> Option<L3> {
    let v = *b.first()?;
    let ihl = usize::from(v & 0x0f) * 4;
    if v >> 4 != 4 || ihl < 20 || b.len() < ihl {
        return None;
    }
    if be16(b, 6)? & 0x1fff != 0 {
        return None;
    }
    Some(L3 {
        src: be_addr(b, 12, 4)?,
        dst: be_addr(b, 16, 4)?,
        proto: b[9],
        l4: ihl,
    })
}

fn parse_ipv6(b: &[u8]) -> Option<L3> {
    if b.len() < 40 || b[0] >> 4 != 6 {
        return None;
    }
    let mut next = b[6];
    let mut off = 40;
    // Extension headers before the transport header; a bound on how many
    // keeps a crafted chain from costing more than a few reads.
    for _ in 0..8 {
        let len = match next {
            0 | 43 | 60 => (usize::from(*b.get(off + 1)?) + 1) * 8,
            44 => {
                if be16(b, off + 2)? & 0xfff8 != 0 {
                    return None;
                }
                8
            }
            51 => (usize::from(*b.get(off + 1)?) + 2) * 4,
            _ => break,
        };
        next = *b.get(off)?;
        off += len;
    }
    if b.len() < off {
        return None;
    }
    Some(L3 {
        src: be_addr(b, 8, 16)?,
        dst: be_addr(b, 24, 16)?,
        proto: next,
        l4: off,
    })
}

/// The tuple words ([`CtTuple::words`]) of a TCP, UDP, SCTP or UDP-Lite
/// packet in `zone`, straight from its flow key's words (the key keeps
/// both ports in one word's high half, as a tuple's fifth word has them);
/// `None` for any other packet, which [`extract`] reads. This is the
/// common packet's whole extraction: a few loads and masks.
#[inline(always)]
pub(crate) fn fast_words(key: &FlowKey, zone: u16) -> Option<[u64; 6]> {
    const _: () = assert!(
        slots::TP_SRC.word == slots::IP_PROTO.word
            && slots::TP_SRC.shift == 32
            && slots::TP_DST.shift == 48
            && slots::IP_FRAG.word == slots::IP_PROTO.word
    );
    let w = &key.words;
    let ipv6 = match key.eth_type() {
        ETH_TYPE_IP => false,
        ETH_TYPE_IPV6 => true,
        _ => return None,
    };
    let l4 = w[slots::IP_PROTO.word];
    let proto = key.ip_proto();
    if !matches!(
        proto,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
    ) || key.get(slots::IP_FRAG) & 2 != 0
    {
        return None;
    }
    // 128-bit slots hold the high word first; IPv4 sits in the low 32 bits.
    let (lo, hi) = if ipv6 {
        (u64::MAX, u64::MAX)
    } else {
        (u64::from(u32::MAX), 0)
    };
    let (s, d) = (slots::IP_SRC.word, slots::IP_DST.word);
    Some([
        w[s + 1] & lo,
        w[s] & hi,
        w[d + 1] & lo,
        w[d] & hi,
        l4 >> 32 | u64::from(proto) << 48,
        u64::from(zone) | u64::from(ipv6) << 16,
    ])
}

/// The words of the reverse of the tuple with words `w`
/// ([`CtTuple::reverse`] on words).
#[inline(always)]
pub(crate) fn reverse_words(w: &[u64; 6]) -> [u64; 6] {
    let p = w[4];
    let ports = (p & 0xffff) << 16 | (p >> 16) & 0xffff;
    let types = (p >> 32 & 0xff) << 40 | (p >> 40 & 0xff) << 32;
    [
        w[2],
        w[3],
        w[0],
        w[1],
        ports | types | (p & 0xff << 48),
        w[5],
    ]
}

/// The tuple of the packet with flow key `key` and IP header bytes `l3`
/// in `zone`. TCP, UDP and other protocols are read from the key alone
/// (inline: this is on every packet's path, and a tuple returned through
/// memory cost more than building it); ICMP needs `l3` for the echo
/// identifier and an error's embedded header, and is read out of line.
#[inline(always)]
pub(crate) fn extract(key: &FlowKey, l3: &[u8], zone: u16) -> Extracted {
    let ipv6 = match key.eth_type() {
        ETH_TYPE_IP => false,
        ETH_TYPE_IPV6 => true,
        _ => return Extracted::Invalid,
    };
    // Without reassembly a later fragment has no transport header to
    // match a connection by.
    if key.get(slots::IP_FRAG) & 2 != 0 {
        return Extracted::Invalid;
    }
    let addr_mask = if ipv6 {
        u128::MAX
    } else {
        u128::from(u32::MAX)
    };
    let mut t = CtTuple {
        src: key.get(slots::IP_SRC) & addr_mask,
        dst: key.get(slots::IP_DST) & addr_mask,
        proto: key.ip_proto(),
        ipv6,
        zone,
        ..CtTuple::default()
    };
    match (t.proto, ipv6) {
        (IPPROTO_ICMP, false) | (IPPROTO_ICMPV6, true) => icmp_extract(t, key, l3),
        (IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE, _) => {
            t.sport = key.get(slots::TP_SRC) as u16;
            t.dport = key.get(slots::TP_DST) as u16;
            Extracted::Own(t)
        }
        // Other protocols are tracked by addresses alone (OVS's "other").
        _ => Extracted::Own(t),
    }
}

/// [`extract`]'s ICMP part, out of the common path.
#[inline(never)]
fn icmp_extract(t: CtTuple, key: &FlowKey, l3: &[u8]) -> Extracted {
    let ty = key.get(slots::TP_SRC) as u8;
    let code = key.get(slots::TP_DST) as u8;
    icmp(t, ty, code, l3).unwrap_or(Extracted::Invalid)
}

fn icmp(mut t: CtTuple, ty: u8, code: u8, l3: &[u8]) -> Option<Extracted> {
    let outer = if t.ipv6 {
        parse_ipv6(l3)?
    } else {
        parse_ipv4(l3)?
    };
    let l4 = l3.get(outer.l4..)?;
    let reverse = if t.ipv6 { icmp6_reverse } else { icmp4_reverse };
    if let Some(rtype) = reverse(ty) {
        if code != 0 {
            return None;
        }
        let id = be16(l4, 4)?;
        t.sport = id;
        t.dport = id;
        t.icmp_type = ty;
        t.icmp_rtype = rtype;
        return Some(Extracted::Own(t));
    }
    let is_error = if t.ipv6 {
        matches!(ty, 1..=4)
    } else {
        matches!(ty, 3 | 4 | 5 | 11 | 12)
    };
    if !is_error {
        return None;
    }
    let inner_bytes = l4.get(8..)?;
    let inner = if t.ipv6 {
        parse_ipv6(inner_bytes)?
    } else {
        parse_ipv4(inner_bytes)?
    };
    // The error must be about a packet this host's peer sent to where the
    // error now goes (OVS checks the same): otherwise it is forged.
    if inner.src != t.dst {
        return None;
    }
    let il4 = inner_bytes.get(inner.l4..)?;
    let mut it = CtTuple {
        src: inner.src,
        dst: inner.dst,
        proto: inner.proto,
        ..t
    };
    match (inner.proto, t.ipv6) {
        (IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE, _) => {
            // RFC 792 guarantees 8 bytes of the original datagram.
            if il4.len() < 8 {
                return None;
            }
            it.sport = be16(il4, 0)?;
            it.dport = be16(il4, 2)?;
        }
        (IPPROTO_ICMP, false) | (IPPROTO_ICMPV6, true) => {
            let ity = *il4.first()?;
            let rtype = reverse(ity)?;
            if *il4.get(1)? != 0 {
                return None;
            }
            let id = be16(il4, 4)?;
            it.sport = id;
            it.dport = id;
            it.icmp_type = ity;
            it.icmp_rtype = rtype;
        }
        // Other protocols: addresses alone, as for their own packets.
        _ => {}
    }
    Some(Extracted::Related(it.reverse()))
}
