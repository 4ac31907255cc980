//! Flow-key extraction: reads an Ethernet frame once and fills the
//! [`FlowKey`] the caches look up, with where its L3 and L4 headers start.
//!
//! It follows what OVS's `flow_extract` puts in `struct flow`, so that
//! logical flows written for OVN match the same packets:
//!
//! - one 802.1Q (or 802.1ad) tag; `VLAN_TCI` holds the TCI with bit 12
//!   (CFI, OVN's `vlan.present`) set, 0 for an untagged frame;
//! - 802.3 frames with an LLC/SNAP header take the SNAP type; other 802.3
//!   frames get the type 0x05ff (OVS's "no Ethernet type");
//! - ARP (and RARP) with Ethernet/IPv4 addresses: the opcode when it fits
//!   in 8 bits, the protocol addresses in the low 32 bits of the address
//!   slots, the hardware addresses;
//! - IPv4 and IPv6 with the header's own length bounding what follows
//!   (Ethernet padding is not parsed as L4); IPv6 extension headers are
//!   skipped (hop-by-hop, routing, destination options, AH, fragment); a
//!   later fragment keeps L4 fields zero, and for IPv6 has the protocol 44
//!   (fragment) as OVS gives it;
//! - TCP, UDP and SCTP ports, TCP flags (12 bits); ICMPv4 and ICMPv6 type
//!   and code in the port slots; ND solicitations and advertisements with
//!   their target and link-layer address options.
//!
//! A malformed or truncated packet never panics: what was valid is kept
//! (a bad L3 header leaves only L2 fields; a truncated L4 header leaves the
//! L4 fields zero) and the [`Status`] says what went wrong, for the worker
//! to count.
//!
//! The reader is hand-written: fields are read big-endian straight out of
//! fixed-size arrays that one bounds check per header produces. The
//! `extract` bench measures it against [`reference`], the same extraction
//! on top of etherparse's slicer (behind the `etherparse` feature and in
//! tests), which it beats by several times.

use crate::flow::{slots, FlowKey, Slot};
use crate::packet::Packet;

/// What extraction found wrong with a packet; everything but [`Status::Ok`]
/// is worth a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    /// Shorter than an Ethernet header, or than the VLAN tag or LLC header
    /// it announces: L2 fields only (if any).
    ShortL2,
    /// The IPv4, IPv6 (or an extension header) or ARP header is truncated
    /// or invalid: L2 fields only (IPv6 keeps its addresses).
    BadL3,
    /// The L4 header is truncated or invalid (or ND options are): L4
    /// fields zero.
    BadL4,
}

/// Where the headers are, from the start of the frame, and how it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    pub l3: Option<usize>,
    pub l4: Option<usize>,
    pub status: Status,
}

/// `FLOW_NW_FRAG_ANY`: the packet is a fragment.
pub const FRAG_ANY: u8 = 1;
/// `FLOW_NW_FRAG_LATER`: a fragment other than the first.
pub const FRAG_LATER: u8 = 2;
/// The VLAN TCI bit that says a tag is present (OVS's `VLAN_CFI`).
pub const VLAN_PRESENT: u16 = 0x1000;

/// The Ethernet type of an 802.3 frame that carries no SNAP type.
pub const ETH_TYPE_NONE: u16 = 0x05ff;
pub const ETH_TYPE_IPV4: u16 = 0x0800;
pub const ETH_TYPE_ARP: u16 = 0x0806;
pub const ETH_TYPE_RARP: u16 = 0x8035;
pub const ETH_TYPE_IPV6: u16 = 0x86dd;
pub const ETH_TYPE_VLAN: u16 = 0x8100;
pub const ETH_TYPE_VLAN_8021AD: u16 = 0x88a8;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

/// ICMPv6 neighbour solicitation and advertisement types.
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
pub const ND_NEIGHBOR_ADVERT: u8 = 136;

/// Extracts `frame`'s flow key, arrived on `in_port` (first pass:
/// recirculation id 0).
#[inline]
pub fn extract(frame: &[u8], in_port: u32) -> (FlowKey, Layers) {
    let mut key = FlowKey::ZERO;
    let layers = extract_into(frame, in_port, &mut key);
    (key, layers)
}

/// Extracts a packet's flow key and records its header offsets in it (for
/// the rewrites and conntrack that follow).
#[inline]
pub fn extract_packet(pkt: &mut Packet, in_port: u32) -> (FlowKey, Status) {
    let mut key = FlowKey::ZERO;
    let status = extract_packet_into(pkt, in_port, &mut key);
    (key, status)
}

/// [`extract_packet`] into a key the caller owns: the fast path's form
/// (a worker keeps a key per packet of its batch). Returning a key by
/// value costs a copy that can be as dear as the extraction.
#[inline]
pub fn extract_packet_into(pkt: &mut Packet, in_port: u32, key: &mut FlowKey) -> Status {
    let layers = extract_into(pkt.data(), in_port, key);
    pkt.set_layers(layers.l3, layers.l4);
    layers.status
}

/// Whether `frame` is an untagged IPv4 TCP or UDP frame without IP
/// options, long enough for its L4 header: the layout [`same_headers`]
/// knows. Only meaningful for a frame that extracted cleanly.
#[inline]
pub fn plain_ipv4(frame: &[u8]) -> bool {
    let Some(h) = frame.first_chunk::<24>() else {
        return false;
    };
    h[12..15] == [0x08, 0x00, 0x45]
        && match h[23] {
            IPPROTO_TCP => frame.len() >= 14 + 20 + 20,
            IPPROTO_UDP => frame.len() >= 14 + 20 + 8,
            _ => false,
        }
}

/// Whether `b` extracts (at the same port) to the same key, layers and
/// status as `a`, an untagged IPv4 TCP/UDP frame without options that
/// extracted cleanly ([`plain_ipv4`]): the bytes extraction reads are
/// equal, and so are the lengths its checks depend on. What a flow's
/// packets change (IP id and checksum, TCP sequence, acknowledgement,
/// window, checksum and urgent pointer, UDP length and checksum, the
/// payload) extraction does not read. A burst's packets are recognised
/// this way without extracting each: a few compares instead of a key.
#[inline]
pub fn same_headers(a: &[u8], b: &[u8]) -> bool {
    let (Some(x), Some(y)) = (a.first_chunk::<48>(), b.first_chunk::<48>()) else {
        // UDP frames may be shorter than a TCP header's end.
        return a.len() == b.len()
            && a.len() >= 42
            && a[..18] == b[..18]
            && a[20..24] == b[20..24]
            && a[26..38] == b[26..38];
    };
    // Ethernet, version/IHL/TOS/total length; fragment field, TTL,
    // protocol; addresses and ports; TCP data offset and flags (for UDP,
    // bytes of its payload: equal or not, only ever a stricter test).
    a.len() == b.len()
        && x[..18] == y[..18]
        && x[20..24] == y[20..24]
        && x[26..38] == y[26..38]
        && x[46..48] == y[46..48]
}

/// [`extract`] into a key the caller owns (overwritten whole): the fast
/// path's form, see [`extract_packet_into`].
#[inline]
pub fn extract_into(frame: &[u8], in_port: u32, key: &mut FlowKey) -> Layers {
    *key = FlowKey::ZERO;
    put(key, slots::IN_PORT, u64::from(in_port));
    let mut layers = Layers {
        l3: None,
        l4: None,
        status: Status::Ok,
    };
    let Some(eth) = frame.first_chunk::<14>() else {
        layers.status = Status::ShortL2;
        return layers;
    };
    put(
        key,
        slots::ETH_DST,
        mac(&[eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]]),
    );
    put(
        key,
        slots::ETH_SRC,
        mac(&[eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]]),
    );
    let mut eth_type = be16(eth[12], eth[13]);
    let mut off = 14;

    if eth_type == ETH_TYPE_VLAN || eth_type == ETH_TYPE_VLAN_8021AD {
        match tail(frame, off).first_chunk::<4>() {
            Some(tag) => {
                put(
                    key,
                    slots::VLAN_TCI,
                    u64::from(be16(tag[0], tag[1]) | VLAN_PRESENT),
                );
                eth_type = be16(tag[2], tag[3]);
                off += 4;
            }
            // As OVS: the tag's type stays the frame's type.
            None => layers.status = Status::ShortL2,
        }
    }
    if eth_type < 0x0600 {
        // An 802.3 length: the type, if any, is in an LLC/SNAP header.
        match tail(frame, off).first_chunk::<8>() {
            Some(&[0xaa, 0xaa, 0x03, 0, 0, 0, t0, t1]) => {
                eth_type = be16(t0, t1);
                off += 8;
            }
            Some(_) => eth_type = ETH_TYPE_NONE,
            None => {
                eth_type = ETH_TYPE_NONE;
                layers.status = Status::ShortL2;
            }
        }
    }
    put(key, slots::ETH_TYPE, u64::from(eth_type));
    if layers.status != Status::Ok {
        return layers;
    }
    layers.l3 = Some(off);

    match eth_type {
        ETH_TYPE_IPV4 => ipv4(frame, off, key, &mut layers),
        ETH_TYPE_IPV6 => ipv6(frame, off, key, &mut layers),
        ETH_TYPE_ARP | ETH_TYPE_RARP => arp(tail(frame, off), key, &mut layers),
        _ => {}
    }
    layers
}

#[inline(always)]
fn ipv4(frame: &[u8], off: usize, key: &mut FlowKey, layers: &mut Layers) {
    let l3 = tail(frame, off);
    let Some(h) = l3.first_chunk::<20>() else {
        layers.status = Status::BadL3;
        return;
    };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(be16(h[2], h[3]));
    if h[0] >> 4 != 4 || ihl < 20 || total < ihl || total > l3.len() {
        layers.status = Status::BadL3;
        return;
    }
    put_addr4(key, slots::IP_SRC, be32(h[12], h[13], h[14], h[15]));
    put_addr4(key, slots::IP_DST, be32(h[16], h[17], h[18], h[19]));
    let proto = h[9];
    let frag_off = be16(h[6], h[7]);
    let mut frag = 0;
    if frag_off & 0x3fff != 0 {
        frag = FRAG_ANY;
        if frag_off & 0x1fff != 0 {
            frag |= FRAG_LATER;
        }
    }
    put(key, slots::IP_PROTO, u64::from(proto));
    put(key, slots::IP_TOS, u64::from(h[1]));
    put(key, slots::IP_TTL, u64::from(h[8]));
    put(key, slots::IP_FRAG, u64::from(frag));
    layers.l4 = Some(off + ihl);
    if frag & FRAG_LATER == 0 {
        // `total` is within `l3`, so this is the L4 header and payload
        // without the Ethernet padding.
        let l4 = l3.get(ihl..total).unwrap_or(&[]);
        if !transport(l4, proto, false, key) {
            layers.status = Status::BadL4;
        }
    }
}

#[inline(always)]
fn ipv6(frame: &[u8], off: usize, key: &mut FlowKey, layers: &mut Layers) {
    let l3 = tail(frame, off);
    let Some(h) = l3.first_chunk::<40>() else {
        layers.status = Status::BadL3;
        return;
    };
    let payload_len = usize::from(be16(h[4], h[5]));
    if h[0] >> 4 != 6 || payload_len > l3.len() - 40 {
        layers.status = Status::BadL3;
        return;
    }
    let first = be32(h[0], h[1], h[2], h[3]);
    put128(key, slots::IP_SRC, addr6(h, 8));
    put128(key, slots::IP_DST, addr6(h, 24));
    put(key, slots::IP6_LABEL, u64::from(first & 0x000f_ffff));
    let payload = l3.get(40..40 + payload_len).unwrap_or(&[]);

    // Walks the extension headers to the upper-layer protocol.
    let mut proto = h[6];
    let mut pos = 0usize;
    let mut frag = 0u8;
    loop {
        let rest = tail(payload, pos);
        let len = match proto {
            // Hop-by-hop, routing, destination options: 8-octet units
            // not counting the first.
            0 | 43 | 60 => rest.first_chunk::<2>().map(|e| (usize::from(e[1]) + 1) * 8),
            // AH: 4-octet units not counting the first two.
            51 => rest.first_chunk::<2>().map(|e| (usize::from(e[1]) + 2) * 4),
            IPPROTO_FRAGMENT => match rest.first_chunk::<8>() {
                Some(f) => {
                    let off_flags = be16(f[2], f[3]);
                    proto = f[0];
                    pos += 8;
                    // A fragment header with offset 0 and no more
                    // fragments is an atomic fragment: not a fragment.
                    if off_flags != 0 {
                        frag = FRAG_ANY;
                        if off_flags & 0xfff8 != 0 {
                            frag |= FRAG_LATER;
                            proto = IPPROTO_FRAGMENT;
                            break;
                        }
                    }
                    continue;
                }
                None => None,
            },
            _ => break,
        };
        match len {
            Some(len) if len <= rest.len() => {
                // The next-header byte comes first in all of these.
                proto = rest.first().copied().unwrap_or(0);
                pos += len;
            }
            _ => {
                layers.status = Status::BadL3;
                return;
            }
        }
    }
    put(key, slots::IP_PROTO, u64::from(proto));
    put(key, slots::IP_TOS, u64::from((first >> 20) as u8));
    put(key, slots::IP_TTL, u64::from(h[7]));
    put(key, slots::IP_FRAG, u64::from(frag));
    layers.l4 = Some(off + 40 + pos);
    if frag & FRAG_LATER == 0 && !transport(tail(payload, pos), proto, true, key) {
        layers.status = Status::BadL4;
    }
}

/// Fills the L4 fields from `l4` (header and payload, no padding). False
/// if the header is truncated or invalid.
#[inline(always)]
fn transport(l4: &[u8], proto: u8, v6: bool, key: &mut FlowKey) -> bool {
    match proto {
        IPPROTO_TCP => {
            let Some(h) = l4.first_chunk::<20>() else {
                return false;
            };
            let doff = usize::from(h[12] >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return false;
            }
            ports(key, be16(h[0], h[1]), be16(h[2], h[3]));
            put(
                key,
                slots::TCP_FLAGS,
                u64::from(be16(h[12], h[13]) & 0x0fff),
            );
        }
        IPPROTO_UDP => {
            let Some(h) = l4.first_chunk::<8>() else {
                return false;
            };
            ports(key, be16(h[0], h[1]), be16(h[2], h[3]));
        }
        IPPROTO_SCTP => {
            let Some(h) = l4.first_chunk::<12>() else {
                return false;
            };
            ports(key, be16(h[0], h[1]), be16(h[2], h[3]));
        }
        IPPROTO_ICMP if !v6 => {
            let Some(h) = l4.first_chunk::<8>() else {
                return false;
            };
            ports(key, u16::from(h[0]), u16::from(h[1]));
        }
        IPPROTO_ICMPV6 if v6 => {
            let Some(h) = l4.first_chunk::<8>() else {
                return false;
            };
            ports(key, u16::from(h[0]), u16::from(h[1]));
            if (h[0] == ND_NEIGHBOR_SOLICIT || h[0] == ND_NEIGHBOR_ADVERT) && h[1] == 0 {
                // Out of line and returning values: a call that took the
                // key would keep it out of registers for the whole walk.
                let Some((target, sll, tll)) = nd(l4) else {
                    return false;
                };
                put128(key, slots::ND_TARGET, target);
                put(key, slots::ARP_SHA, sll);
                put(key, slots::ARP_THA, tll);
            }
        }
        _ => {}
    }
    true
}

/// An ND solicitation or advertisement: the target and the source and
/// target link-layer address options. `None` for invalid options (zero
/// length, running past the end, a repeated address): then all three stay
/// zero, as in OVS.
#[cold]
fn nd(msg: &[u8]) -> Option<(u128, u64, u64)> {
    let target = tail(msg, 8).first_chunk::<16>()?;
    let mut sll = 0u64;
    let mut tll = 0u64;
    let mut opts = tail(msg, 24);
    while let Some(o) = opts.first_chunk::<8>() {
        let len = usize::from(o[1]) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if len == 8 && (o[0] == 1 || o[0] == 2) {
            let slot = if o[0] == 1 { &mut sll } else { &mut tll };
            if *slot != 0 {
                return None;
            }
            *slot = mac(&[o[2], o[3], o[4], o[5], o[6], o[7]]);
        }
        opts = tail(opts, len);
    }
    Some((u128::from_be_bytes(*target), sll, tll))
}

#[inline(always)]
fn arp(l3: &[u8], key: &mut FlowKey, layers: &mut Layers) {
    let Some(a) = l3.first_chunk::<28>() else {
        layers.status = Status::BadL3;
        return;
    };
    // Only Ethernet/IPv4 ARP has fields in the key; others are not wrong.
    if be16(a[0], a[1]) != 1 || be16(a[2], a[3]) != ETH_TYPE_IPV4 || a[4] != 6 || a[5] != 4 {
        return;
    }
    let op = be16(a[6], a[7]);
    // OVS keeps the opcode in 8 bits; larger ones read as 0.
    if op <= 0xff {
        put(key, slots::ARP_OP, u64::from(op));
    }
    put(
        key,
        slots::ARP_SHA,
        mac(&[a[8], a[9], a[10], a[11], a[12], a[13]]),
    );
    put_addr4(key, slots::IP_SRC, be32(a[14], a[15], a[16], a[17]));
    put(
        key,
        slots::ARP_THA,
        mac(&[a[18], a[19], a[20], a[21], a[22], a[23]]),
    );
    put_addr4(key, slots::IP_DST, be32(a[24], a[25], a[26], a[27]));
}

/// ORs a field of 64 bits or fewer into a key that is zero there (so no
/// masking is needed).
#[inline(always)]
fn put(key: &mut FlowKey, s: Slot, v: u64) {
    key.words[s.word] |= v << s.shift;
}

/// Stores a 128-bit field (two whole words, high first).
#[inline(always)]
fn put128(key: &mut FlowKey, s: Slot, v: u128) {
    key.words[s.word] = (v >> 64) as u64;
    key.words[s.word + 1] = v as u64;
}

/// Stores an IPv4 address in the low 32 bits of a 128-bit address slot.
#[inline(always)]
fn put_addr4(key: &mut FlowKey, s: Slot, v: u32) {
    key.words[s.word + 1] = u64::from(v);
}

/// `data` from `off` on, empty if `off` is past its end.
#[inline(always)]
fn tail(data: &[u8], off: usize) -> &[u8] {
    data.get(off..).unwrap_or(&[])
}

#[inline(always)]
fn be16(a: u8, b: u8) -> u16 {
    u16::from_be_bytes([a, b])
}

#[inline(always)]
fn be32(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

#[inline(always)]
fn mac(b: &[u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

#[inline(always)]
fn addr6(h: &[u8; 40], at: usize) -> u128 {
    let mut a = [0u8; 16];
    // `at` is 8 or 24, so the range is inside the 40-byte header.
    if let Some(s) = h.get(at..at + 16) {
        a.copy_from_slice(s);
    }
    u128::from_be_bytes(a)
}

#[inline(always)]
fn ports(key: &mut FlowKey, src: u16, dst: u16) {
    put(key, slots::TP_SRC, u64::from(src));
    put(key, slots::TP_DST, u64::from(dst));
}

/// The same extraction on top of etherparse's slicer: the yardstick the
/// hand-written reader is tested and benchmarked against. It covers the
/// common, well-formed cases (no LLC/SNAP, no ND options, no 802.3 frames)
/// and gives up (returns what it has) where etherparse rejects a packet.
#[cfg(any(test, feature = "etherparse"))]
pub mod reference {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    /// Extracts `frame`'s key with etherparse.
    pub fn extract(frame: &[u8], in_port: u32) -> FlowKey {
        let mut key = FlowKey::ZERO;
        extract_into(frame, in_port, &mut key);
        key
    }

    /// [`extract`] into a key the caller owns (overwritten whole).
    pub fn extract_into(frame: &[u8], in_port: u32, key: &mut FlowKey) {
        *key = FlowKey::ZERO;
        key.set(slots::IN_PORT, u128::from(in_port));
        let Ok(p) = SlicedPacket::from_ethernet(frame) else {
            return;
        };
        if let Some(etherparse::LinkSlice::Ethernet2(e)) = &p.link {
            key.set(slots::ETH_DST, mac_u128(e.destination()));
            key.set(slots::ETH_SRC, mac_u128(e.source()));
            key.set(slots::ETH_TYPE, u128::from(e.ether_type().0));
        }
        if let Some(v) = &p.vlan {
            let outer = match v {
                etherparse::VlanSlice::SingleVlan(s) => s.clone(),
                etherparse::VlanSlice::DoubleVlan(d) => d.outer(),
            };
            let tci = (u16::from(outer.priority_code_point().value()) << 13)
                | (u16::from(outer.drop_eligible_indicator()) << 12)
                | outer.vlan_identifier().value();
            key.set(slots::VLAN_TCI, u128::from(tci | VLAN_PRESENT));
            key.set(slots::ETH_TYPE, u128::from(outer.ether_type().0));
        }
        let mut later = false;
        match &p.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                key.set(slots::IP_SRC, u128::from(u32::from_be_bytes(h.source())));
                key.set(
                    slots::IP_DST,
                    u128::from(u32::from_be_bytes(h.destination())),
                );
                key.set(slots::IP_PROTO, u128::from(h.protocol().0));
                key.set(
                    slots::IP_TOS,
                    u128::from((h.dcp().value() << 2) | h.ecn().value()),
                );
                key.set(slots::IP_TTL, u128::from(h.ttl()));
                let off = h.fragments_offset().value();
                let mut frag = 0;
                if off != 0 || h.more_fragments() {
                    frag = FRAG_ANY;
                    if off != 0 {
                        frag |= FRAG_LATER;
                        later = true;
                    }
                }
                key.set(slots::IP_FRAG, u128::from(frag));
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header();
                key.set(slots::IP_SRC, u128::from_be_bytes(h.source()));
                key.set(slots::IP_DST, u128::from_be_bytes(h.destination()));
                key.set(slots::IP6_LABEL, u128::from(h.flow_label().value()));
                key.set(slots::IP_TOS, u128::from(h.traffic_class()));
                key.set(slots::IP_TTL, u128::from(h.hop_limit()));
                key.set(slots::IP_PROTO, u128::from(ip.payload().ip_number.0));
            }
            Some(NetSlice::Arp(a)) => {
                key.set(slots::ARP_OP, u128::from(a.operation().0));
                key.set(slots::ARP_SHA, bytes_u128(a.sender_hw_addr()));
                key.set(slots::IP_SRC, bytes_u128(a.sender_protocol_addr()));
                key.set(slots::ARP_THA, bytes_u128(a.target_hw_addr()));
                key.set(slots::IP_DST, bytes_u128(a.target_protocol_addr()));
            }
            None => {}
        }
        if later {
            return;
        }
        match &p.transport {
            Some(TransportSlice::Tcp(t)) => {
                key.set(slots::TP_SRC, u128::from(t.source_port()));
                key.set(slots::TP_DST, u128::from(t.destination_port()));
                let hdr = t.slice();
                let flags = u16::from_be_bytes([hdr[12], hdr[13]]) & 0x0fff;
                key.set(slots::TCP_FLAGS, u128::from(flags));
            }
            Some(TransportSlice::Udp(u)) => {
                key.set(slots::TP_SRC, u128::from(u.source_port()));
                key.set(slots::TP_DST, u128::from(u.destination_port()));
            }
            Some(TransportSlice::Icmpv4(i)) => {
                key.set(slots::TP_SRC, u128::from(i.type_u8()));
                key.set(slots::TP_DST, u128::from(i.code_u8()));
            }
            Some(TransportSlice::Icmpv6(i)) => {
                key.set(slots::TP_SRC, u128::from(i.type_u8()));
                key.set(slots::TP_DST, u128::from(i.code_u8()));
            }
            None => {}
        }
    }

    fn mac_u128(m: [u8; 6]) -> u128 {
        bytes_u128(&m)
    }

    fn bytes_u128(b: &[u8]) -> u128 {
        b.iter().fold(0u128, |acc, &x| (acc << 8) | u128::from(x))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    pub const MAC_A: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];
    pub const MAC_B: [u8; 6] = [0x0a, 0, 0, 0, 0, 2];

    fn build(b: etherparse::PacketBuilderStep<etherparse::UdpHeader>, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    pub fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([192, 168, 1, 2], [10, 0, 0, 3], 64)
            .tcp(40000, 80, 1234, 65535)
            .syn()
            .ack(7);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    pub fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
        build(
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv4([192, 168, 1, 2], [10, 0, 0, 3], 64)
                .udp(5353, 53),
            payload,
        )
    }

    pub fn ipv6_udp(payload: &[u8]) -> Vec<u8> {
        build(
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv6(
                    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                    63,
                )
                .udp(1000, 2000),
            payload,
        )
    }

    pub fn ipv6_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                63,
            )
            .tcp(443, 50000, 1, 100)
            .fin();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    pub fn ipv4_icmp() -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([192, 168, 1, 2], [10, 0, 0, 3], 64)
            .icmpv4_echo_request(7, 1);
        let mut v = Vec::new();
        b.write(&mut v, b"ping-data").unwrap();
        v
    }

    pub fn ipv6_icmp() -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                255,
            )
            .icmpv6_echo_request(9, 2);
        let mut v = Vec::new();
        b.write(&mut v, b"ping6").unwrap();
        v
    }

    /// An ARP request from 10.0.0.1 (MAC_A) for 10.0.0.2, padded to 60.
    pub fn arp_request() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&[0xff; 6]);
        v.extend_from_slice(&MAC_A);
        v.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        v.extend_from_slice(&MAC_A);
        v.extend_from_slice(&[10, 0, 0, 1]);
        v.extend_from_slice(&[0; 6]);
        v.extend_from_slice(&[10, 0, 0, 2]);
        v.resize(60, 0);
        v
    }

    /// A neighbour solicitation for fd00::2 from fd00::1 with an SLL option.
    pub fn nd_ns() -> Vec<u8> {
        let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&MAC_A);
        let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2];
        let acc = crate::checksum::pseudo_header_v6(&src, &dst, 58, icmp.len() as u32);
        let c = !crate::checksum::fold64(crate::checksum::sum_bytes(&icmp, acc));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        ipv6_raw(&src, &dst, 58, &icmp)
    }

    /// Ethernet + IPv6 header (hop limit 255, tclass 0xb8, label 0x12345)
    /// around a payload whose first header is `next`.
    pub fn ipv6_raw(src: &[u8; 16], dst: &[u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&[0x33, 0x33, 0xff, 0, 0, 2]);
        v.extend_from_slice(&MAC_A);
        v.extend_from_slice(&[0x86, 0xdd]);
        v.extend_from_slice(&[0x6b, 0x81, 0x23, 0x45]);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(&[next, 255]);
        v.extend_from_slice(src);
        v.extend_from_slice(dst);
        v.extend_from_slice(payload);
        v
    }

    fn mac_of(m: [u8; 6]) -> u128 {
        u128::from(mac(&m))
    }

    /// `same_headers` says "same" only where extraction agrees, and does
    /// for every byte a flow's packets change.
    #[test]
    fn same_headers_is_same_extraction() {
        for (base, l4) in [
            (ipv4_tcp(b"payload."), 34),
            (ipv4_udp(b"dns query here"), 34),
        ] {
            assert!(plain_ipv4(&base));
            let (key, layers) = extract(&base, 1);
            assert_eq!(layers.status, Status::Ok);
            for at in 0..base.len() {
                let mut other = base.clone();
                other[at] ^= 0x5a;
                let (k, l) = extract(&other, 1);
                let same =
                    k == key && (l.l3, l.l4, l.status) == (layers.l3, layers.l4, layers.status);
                if same_headers(&base, &other) {
                    assert!(same, "byte {at} changes extraction but was called the same");
                }
                // What flows change: IP id and checksum, and past the
                // ports, TCP's sequence to checksum or UDP's length and
                // checksum.
                let varies = matches!(at, 18 | 19 | 24 | 25)
                    || (base[23] == IPPROTO_TCP && (l4 + 4..l4 + 12).contains(&at))
                    || (base[23] == IPPROTO_TCP && (l4 + 14..l4 + 20).contains(&at))
                    || (base[23] == IPPROTO_UDP && (l4 + 4..l4 + 8).contains(&at));
                if varies {
                    assert!(same_headers(&base, &other), "byte {at}");
                }
            }
            let mut longer = base.clone();
            longer.push(0);
            assert!(!same_headers(&base, &longer));
        }
        assert!(!plain_ipv4(&ipv6_udp(b"x")));
    }

    #[test]
    fn ipv4_tcp_fields() {
        let f = ipv4_tcp(b"hello");
        let (k, l) = extract(&f, 7);
        assert_eq!(l.status, Status::Ok);
        assert_eq!((l.l3, l.l4), (Some(14), Some(34)));
        assert_eq!(k.in_port(), 7);
        assert_eq!(k.recirc_id(), 0);
        assert_eq!(k.get(slots::ETH_SRC), mac_of(MAC_A));
        assert_eq!(k.get(slots::ETH_DST), mac_of(MAC_B));
        assert_eq!(k.eth_type(), 0x0800);
        assert_eq!(k.get(slots::VLAN_TCI), 0);
        assert_eq!(k.get(slots::IP_SRC), 0xc0a8_0102);
        assert_eq!(k.get(slots::IP_DST), 0x0a00_0003);
        assert_eq!(k.ip_proto(), 6);
        assert_eq!(k.get(slots::IP_TTL), 64);
        assert_eq!(k.get(slots::IP_FRAG), 0);
        assert_eq!(k.get(slots::TP_SRC), 40000);
        assert_eq!(k.get(slots::TP_DST), 80);
        assert_eq!(k.get(slots::TCP_FLAGS), 0x012);
        assert_eq!(k, reference::extract(&f, 7));
    }

    #[test]
    fn agrees_with_etherparse() {
        for f in [
            ipv4_tcp(&[]),
            ipv4_udp(b"x"),
            ipv6_udp(&[1, 2, 3]),
            ipv6_tcp(b"abc"),
            ipv4_icmp(),
            ipv6_icmp(),
            arp_request(),
        ] {
            let (k, l) = extract(&f, 3);
            assert_eq!(l.status, Status::Ok);
            assert_eq!(k, reference::extract(&f, 3), "{f:02x?}");
        }
    }

    #[test]
    fn arp_fields() {
        let (k, l) = extract(&arp_request(), 1);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(k.eth_type(), 0x0806);
        assert_eq!(k.get(slots::ARP_OP), 1);
        assert_eq!(k.get(slots::IP_SRC), 0x0a00_0001);
        assert_eq!(k.get(slots::IP_DST), 0x0a00_0002);
        assert_eq!(k.get(slots::ARP_SHA), mac_of(MAC_A));
        assert_eq!(k.get(slots::ARP_THA), 0);
        assert_eq!(l.l4, None);
    }

    #[test]
    fn vlan_tag() {
        let mut f = ipv4_udp(b"payload");
        // Insert a tag with PCP 5, VID 100 after the MACs.
        f.splice(12..12, [0x81, 0x00, 0xa0, 0x64]);
        let (k, l) = extract(&f, 1);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(k.get(slots::VLAN_TCI), 0xb064);
        assert_eq!(k.eth_type(), 0x0800);
        assert_eq!((l.l3, l.l4), (Some(18), Some(38)));
        assert_eq!(k.get(slots::TP_DST), 53);
        assert_eq!(k, reference::extract(&f, 1));
        // A tag cut short: the tag's type stays.
        let (k, l) = extract(&f[..16], 1);
        assert_eq!(l.status, Status::ShortL2);
        assert_eq!(k.eth_type(), 0x8100);
        assert_eq!(k.get(slots::VLAN_TCI), 0);
    }

    #[test]
    fn llc_snap_and_802_3() {
        let mut f = vec![0xff; 12];
        f.extend_from_slice(&[0, 50, 0xaa, 0xaa, 3, 0, 0, 0, 0x08, 0x06]);
        f.extend_from_slice(&arp_request()[14..42]);
        let (k, l) = extract(&f, 1);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(k.eth_type(), 0x0806);
        assert_eq!(k.get(slots::IP_DST), 0x0a00_0002);
        f[14] = 0x42;
        let (k, l) = extract(&f, 1);
        assert_eq!((k.eth_type(), l.status), (ETH_TYPE_NONE, Status::Ok));
        assert_eq!(k.get(slots::IP_DST), 0);
    }

    #[test]
    fn ipv6_header_fields() {
        let f = ipv6_raw(&[1; 16], &[2; 16], 17, &[0, 1, 0, 2, 0, 8, 0, 0]);
        let (k, l) = extract(&f, 1);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(k.get(slots::IP_SRC), u128::from_be_bytes([1; 16]));
        assert_eq!(k.get(slots::IP_DST), u128::from_be_bytes([2; 16]));
        assert_eq!(k.get(slots::IP_TOS), 0xb8);
        assert_eq!(k.get(slots::IP6_LABEL), 0x12345);
        assert_eq!(k.get(slots::IP_TTL), 255);
        assert_eq!((k.get(slots::TP_SRC), k.get(slots::TP_DST)), (1, 2));
        assert_eq!(k, reference::extract(&f, 1));
    }

    #[test]
    fn ipv6_extension_headers_and_fragments() {
        let udp = [0, 1, 0, 2, 0, 8, 0, 0];
        // Hop-by-hop (8 bytes), destination options (16 bytes), UDP.
        let mut p = vec![60, 0, 1, 4, 0, 0, 0, 0];
        p.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&udp);
        let f = ipv6_raw(&[1; 16], &[2; 16], 0, &p);
        let (k, l) = extract(&f, 1);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(k.ip_proto(), 17);
        assert_eq!(l.l4, Some(14 + 40 + 24));
        assert_eq!(k.get(slots::TP_DST), 2);
        assert_eq!(k, reference::extract(&f, 1));

        // First fragment (offset 0, more fragments): L4 is parsed.
        let mut p = vec![17, 0, 0x00, 0x01, 0, 0, 0, 9];
        p.extend_from_slice(&udp);
        let (k, l) = extract(&ipv6_raw(&[1; 16], &[2; 16], 44, &p), 1);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(k.get(slots::IP_FRAG), u128::from(FRAG_ANY));
        assert_eq!((k.ip_proto(), k.get(slots::TP_SRC)), (17, 1));

        // A later fragment: no L4, protocol 44 as OVS has it.
        p[2] = 0x01;
        let (k, l) = extract(&ipv6_raw(&[1; 16], &[2; 16], 44, &p), 1);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(k.get(slots::IP_FRAG), u128::from(FRAG_ANY | FRAG_LATER));
        assert_eq!((k.ip_proto(), k.get(slots::TP_SRC)), (44, 0));

        // An atomic fragment is not a fragment.
        p[2] = 0;
        p[3] = 0;
        let (k, _) = extract(&ipv6_raw(&[1; 16], &[2; 16], 44, &p), 1);
        assert_eq!(k.get(slots::IP_FRAG), 0);
        assert_eq!(k.get(slots::TP_SRC), 1);

        // An extension header running past the payload.
        let (k, l) = extract(&ipv6_raw(&[1; 16], &[2; 16], 0, &[17, 3, 0, 0]), 1);
        assert_eq!(l.status, Status::BadL3);
        assert_eq!(k.get(slots::IP_SRC), u128::from_be_bytes([1; 16]));
        assert_eq!((k.ip_proto(), l.l4), (0, None));
    }

    #[test]
    fn ipv4_fragments() {
        let mut f = ipv4_udp(b"0123456789");
        f[20] = 0x20; // more fragments, offset 0
        let (k, _) = extract(&f, 1);
        assert_eq!(k.get(slots::IP_FRAG), u128::from(FRAG_ANY));
        assert_eq!(k.get(slots::TP_DST), 53);
        f[21] = 0x03; // offset 24 bytes
        let (k, l) = extract(&f, 1);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(k.get(slots::IP_FRAG), u128::from(FRAG_ANY | FRAG_LATER));
        assert_eq!(k.get(slots::TP_DST), 0);
        assert_eq!(l.l4, Some(34));
        assert_eq!(k, reference::extract(&f, 1));
    }

    #[test]
    fn nd_solicitation() {
        let f = nd_ns();
        let (k, l) = extract(&f, 1);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(k.ip_proto(), 58);
        assert_eq!((k.get(slots::TP_SRC), k.get(slots::TP_DST)), (135, 0));
        assert_eq!(
            k.get(slots::ND_TARGET),
            0xfd00_0000_0000_0000_0000_0000_0000_0002
        );
        assert_eq!(k.get(slots::ARP_SHA), mac_of(MAC_A));
        assert_eq!(k.get(slots::ARP_THA), 0);

        // Two SLL options: invalid, ND fields zero, type/code kept.
        let mut icmp = f[54..].to_vec();
        icmp.extend_from_slice(&[1, 1, 1, 2, 3, 4, 5, 6]);
        let (k, l) = extract(&ipv6_raw(&[1; 16], &[2; 16], 58, &icmp), 1);
        assert_eq!(l.status, Status::BadL4);
        assert_eq!(k.get(slots::TP_SRC), 135);
        assert_eq!((k.get(slots::ND_TARGET), k.get(slots::ARP_SHA)), (0, 0));

        // A zero-length option: invalid.
        let mut icmp = f[54..78].to_vec();
        icmp.extend_from_slice(&[2, 0, 1, 2, 3, 4, 5, 6]);
        let (_, l) = extract(&ipv6_raw(&[1; 16], &[2; 16], 58, &icmp), 1);
        assert_eq!(l.status, Status::BadL4);
    }

    #[test]
    fn padding_is_not_l4() {
        // A UDP header cut to 4 bytes by the IP length, padded by Ethernet.
        let mut f = ipv4_udp(&[]);
        f[16..18].copy_from_slice(&24u16.to_be_bytes());
        f.resize(60, 0xee);
        let (k, l) = extract(&f, 1);
        assert_eq!(l.status, Status::BadL4);
        assert_eq!(k.get(slots::IP_SRC), 0xc0a8_0102);
        assert_eq!(k.get(slots::TP_SRC), 0);
    }

    #[test]
    fn truncations_never_panic() {
        for f in [
            ipv4_tcp(b"data"),
            ipv6_tcp(b"data"),
            ipv4_icmp(),
            ipv6_icmp(),
            arp_request(),
            nd_ns(),
        ] {
            let (full, _) = extract(&f, 1);
            for n in 0..f.len() {
                let (k, l) = extract(&f[..n], 1);
                // Never a field the full packet does not have.
                for (a, b) in k.words.iter().zip(&full.words) {
                    assert_eq!(a & !b, 0, "{n}: {k:?} vs {full:?}");
                }
                if n < 14 {
                    assert_eq!(l.status, Status::ShortL2);
                }
            }
        }
        // Truncating inside the IP header: only L2 fields.
        let f = ipv4_tcp(&[]);
        let (k, l) = extract(&f[..30], 1);
        assert_eq!(l.status, Status::BadL3);
        assert_eq!(k.get(slots::IP_SRC), 0);
        // Cut inside TCP with the IP length fixed up: L3 kept, L4 zero.
        let mut f = ipv4_tcp(&[]);
        f.truncate(44);
        f[16..18].copy_from_slice(&30u16.to_be_bytes());
        let (k, l) = extract(&f, 1);
        assert_eq!(l.status, Status::BadL4);
        assert_eq!(k.get(slots::IP_DST), 0x0a00_0003);
        assert_eq!(k.get(slots::TP_DST), 0);
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic generator; every prefix of every frame.
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut f = ipv6_tcp(&[0; 40]);
            if x & 1 == 0 {
                f = ipv4_udp(&[0; 40]);
            }
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize >> 8) % f.len();
                f[i] = (x >> 32) as u8;
            }
            let n = (x as usize >> 20) % (f.len() + 1);
            let _ = extract(&f[..n], 1);
        }
    }

    #[test]
    fn extract_packet_records_offsets() {
        let mut p = Packet::from_slice(&ipv6_udp(b"z")).unwrap();
        let (k, s) = extract_packet(&mut p, 9);
        assert_eq!(s, Status::Ok);
        assert_eq!(k.in_port(), 9);
        assert_eq!(p.l3_offset(), Some(14));
        assert_eq!(p.l4_offset(), Some(54));
    }
}
