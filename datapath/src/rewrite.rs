//! Header rewrites: carries out [`DpAction::Set`] and [`DpAction::DecTtl`]
//! on a packet's bytes and its flow key together, with the checksums that
//! cover the field updated incrementally (RFC 1624).
//!
//! The key says what the packet is (Ethernet type, IP protocol, whether it
//! is a later fragment) and the packet where its headers are (the offsets
//! [`crate::extract::extract_packet`] recorded), so nothing is parsed
//! again. A field the packet does not carry (an L4 port on a later
//! fragment, an ND option the message lacks, a header cut short) is left
//! alone in both, and the call says so; so is one no packet carries
//! (registers, `eth.type`, `ip.proto`).
//!
//! Checksums, as OVS keeps them: the IPv4 header checksum for TTL, TOS and
//! addresses; the TCP, UDP and ICMPv6 checksums for the addresses of their
//! pseudo-header and for ports, ND target and options; an ICMPv4 checksum
//! for type and code. A UDP checksum of zero (none) stays zero. SCTP's
//! CRC32c cannot be updated incrementally and is recomputed, keeping a
//! wrong one wrong. An IPv6 routing header's final destination is not
//! looked at: the pseudo-header is taken to hold the packet's destination.
//!
//! [`DpAction::Set`]: ironflow_pipeline::dpaction::DpAction::Set
//! [`DpAction::DecTtl`]: ironflow_pipeline::dpaction::DpAction::DecTtl

use crate::checksum::{crc32c, update128, update16, update32, update_bytes};
use crate::extract::{
    ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_RARP, ETH_TYPE_VLAN, FRAG_LATER,
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, ND_NEIGHBOR_ADVERT,
    ND_NEIGHBOR_SOLICIT, VLAN_PRESENT,
};
use crate::flow::{slots, FlowKey};
use crate::packet::Packet;
use ironflow_pipeline::lflow::symbols::KeyField;

/// Why a rewrite left the packet as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RewriteError {
    /// The packet lacks the header the field is in, or it is cut short.
    Missing,
    /// Not a field of the packet's headers.
    NotWritable,
    /// `dec_ttl` on a TTL (hop limit) of zero.
    TtlZero,
}

type Result<T = ()> = std::result::Result<T, RewriteError>;

/// Sets a header field of the packet and its key to `value` (the field's
/// whole width, as [`DpAction::Set`] carries it), fixing the checksums.
///
/// [`DpAction::Set`]: ironflow_pipeline::dpaction::DpAction::Set
pub fn set(pkt: &mut Packet, key: &mut FlowKey, field: KeyField, value: u128) -> Result {
    match field {
        KeyField::EthDst => set_mac(pkt, key, 0, value),
        KeyField::EthSrc => set_mac(pkt, key, 6, value),
        KeyField::VlanTci => set_vlan_tci(pkt, key, value as u16),
        KeyField::IpTos => set_tos(pkt, key, value as u8),
        KeyField::IpTtl => set_ttl(pkt, key, value as u8),
        KeyField::Nw4Src => set_nw4(pkt, key, true, value as u32),
        KeyField::Nw4Dst => set_nw4(pkt, key, false, value as u32),
        KeyField::Ip6Src => set_ip6(pkt, key, true, value),
        KeyField::Ip6Dst => set_ip6(pkt, key, false, value),
        KeyField::Ip6Label => set_label(pkt, key, value as u32 & 0x000f_ffff),
        KeyField::ArpOp => set_arp_op(pkt, key, value as u16),
        KeyField::ArpSha => set_hw_addr(pkt, key, true, value as u64 & 0xffff_ffff_ffff),
        KeyField::ArpTha => set_hw_addr(pkt, key, false, value as u64 & 0xffff_ffff_ffff),
        KeyField::NdTarget => set_nd_target(pkt, key, value),
        KeyField::TpSrc => set_tp(pkt, key, true, value as u16),
        KeyField::TpDst => set_tp(pkt, key, false, value as u16),
        // Packet metadata the datapath keeps with the packet (the skb
        // mark), not in its bytes.
        KeyField::PktMark => {
            key.set(slots::PKT_MARK, value);
            Ok(())
        }
        _ => Err(RewriteError::NotWritable),
    }
}

/// Decrements the IPv4 TTL or IPv6 hop limit (and the key's). A TTL of
/// zero is refused rather than wrapped: the pipeline sends such packets to
/// the controller before it gets here.
#[inline]
pub fn dec_ttl(pkt: &mut Packet, key: &mut FlowKey) -> Result {
    let l3 = pkt.l3_offset().ok_or(RewriteError::Missing)?;
    let data = pkt.data_mut();
    let ttl = match key.eth_type() {
        ETH_TYPE_IPV4 => {
            let h = hdr::<20>(data, l3)?;
            let ttl = h[8];
            if ttl == 0 {
                return Err(RewriteError::TtlZero);
            }
            let old = be16(h[8], h[9]);
            h[8] = ttl - 1;
            let sum = update16(be16(h[10], h[11]), old, old - 0x100);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            ttl - 1
        }
        ETH_TYPE_IPV6 => {
            let h = hdr::<40>(data, l3)?;
            if h[7] == 0 {
                return Err(RewriteError::TtlZero);
            }
            h[7] -= 1;
            h[7]
        }
        _ => return Err(RewriteError::Missing),
    };
    key.set(slots::IP_TTL, u128::from(ttl));
    Ok(())
}

/// Patches the packet for what conntrack's NAT changed in its key: the
/// addresses and transport ports that differ between `old` (the key the
/// packet was extracted with) and `new`.
pub fn rewrite_from_key_diff(pkt: &mut Packet, old: &FlowKey, new: &FlowKey) -> Result {
    let mut key = *old;
    let v4 = old.eth_type() != ETH_TYPE_IPV6;
    let changes = [
        (
            slots::IP_SRC,
            if v4 {
                KeyField::Nw4Src
            } else {
                KeyField::Ip6Src
            },
        ),
        (
            slots::IP_DST,
            if v4 {
                KeyField::Nw4Dst
            } else {
                KeyField::Ip6Dst
            },
        ),
        (slots::TP_SRC, KeyField::TpSrc),
        (slots::TP_DST, KeyField::TpDst),
    ];
    for (slot, field) in changes {
        let v = new.get(slot);
        if old.get(slot) != v {
            set(pkt, &mut key, field, v)?;
        }
    }
    Ok(())
}

fn set_mac(pkt: &mut Packet, key: &mut FlowKey, at: usize, value: u128) -> Result {
    let b = (value as u64).to_be_bytes();
    let m = hdr::<6>(pkt.data_mut(), at)?;
    m.copy_from_slice(&b[2..]);
    key.set(
        if at == 0 {
            slots::ETH_DST
        } else {
            slots::ETH_SRC
        },
        value,
    );
    Ok(())
}

/// OVS's semantics: a TCI with the present bit (CFI) set writes the tag,
/// pushing one if there is none; without it, pops the tag. The wire TCI
/// has the bit clear (it is DEI there).
fn set_vlan_tci(pkt: &mut Packet, key: &mut FlowKey, tci: u16) -> Result {
    let tagged = key.get(slots::VLAN_TCI) as u16 & VLAN_PRESENT != 0;
    let wire = (tci & !VLAN_PRESENT).to_be_bytes();
    match (tagged, tci & VLAN_PRESENT != 0) {
        (true, true) => {
            let h = hdr::<16>(pkt.data_mut(), 0)?;
            h[14..16].copy_from_slice(&wire);
        }
        (true, false) => {
            hdr::<16>(pkt.data_mut(), 0)?.copy_within(0..12, 4);
            pkt.pull_front(4);
        }
        (false, true) => {
            if pkt.len() < 12 {
                return Err(RewriteError::Missing);
            }
            pkt.push_front(4).ok_or(RewriteError::Missing)?;
            let h = hdr::<16>(pkt.data_mut(), 0)?;
            h.copy_within(4..16, 0);
            h[12..14].copy_from_slice(&ETH_TYPE_VLAN.to_be_bytes());
            h[14..16].copy_from_slice(&wire);
        }
        (false, false) => {}
    }
    // The frame-relative header offsets are right as they are: the MACs
    // moved, the headers after the tag did not.
    let kept = if tci & VLAN_PRESENT != 0 { tci } else { 0 };
    key.set(slots::VLAN_TCI, u128::from(kept));
    Ok(())
}

fn set_tos(pkt: &mut Packet, key: &mut FlowKey, tos: u8) -> Result {
    let l3 = pkt.l3_offset().ok_or(RewriteError::Missing)?;
    let data = pkt.data_mut();
    match key.eth_type() {
        ETH_TYPE_IPV4 => {
            let h = hdr::<20>(data, l3)?;
            let old = be16(h[0], h[1]);
            h[1] = tos;
            let sum = update16(be16(h[10], h[11]), old, be16(h[0], tos));
            h[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        ETH_TYPE_IPV6 => {
            let h = hdr::<40>(data, l3)?;
            h[0] = (h[0] & 0xf0) | (tos >> 4);
            h[1] = (h[1] & 0x0f) | (tos << 4);
        }
        _ => return Err(RewriteError::Missing),
    }
    key.set(slots::IP_TOS, u128::from(tos));
    Ok(())
}

fn set_ttl(pkt: &mut Packet, key: &mut FlowKey, ttl: u8) -> Result {
    let l3 = pkt.l3_offset().ok_or(RewriteError::Missing)?;
    let data = pkt.data_mut();
    match key.eth_type() {
        ETH_TYPE_IPV4 => {
            let h = hdr::<20>(data, l3)?;
            let old = be16(h[8], h[9]);
            h[8] = ttl;
            let sum = update16(be16(h[10], h[11]), old, be16(ttl, h[9]));
            h[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        ETH_TYPE_IPV6 => hdr::<40>(data, l3)?[7] = ttl,
        _ => return Err(RewriteError::Missing),
    }
    key.set(slots::IP_TTL, u128::from(ttl));
    Ok(())
}

/// An IPv4 address, or an ARP protocol address.
fn set_nw4(pkt: &mut Packet, key: &mut FlowKey, src: bool, addr: u32) -> Result {
    let l3 = pkt.l3_offset().ok_or(RewriteError::Missing)?;
    let l4 = pkt.l4_offset();
    let slot = if src { slots::IP_SRC } else { slots::IP_DST };
    let data = pkt.data_mut();
    match key.eth_type() {
        ETH_TYPE_IPV4 => {
            let h = hdr::<20>(data, l3)?;
            let at = if src { 12 } else { 16 };
            let old = be32(h[at], h[at + 1], h[at + 2], h[at + 3]);
            put32(h, at, addr);
            let sum = update32(be16(h[10], h[11]), old, addr);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            pseudo_header_changed(data, key, l4, |c| update32(c, old, addr));
        }
        ETH_TYPE_ARP | ETH_TYPE_RARP => {
            let a = hdr::<28>(data, l3)?;
            put32(a, if src { 14 } else { 24 }, addr);
        }
        _ => return Err(RewriteError::Missing),
    }
    key.set(slot, u128::from(addr));
    Ok(())
}

fn set_ip6(pkt: &mut Packet, key: &mut FlowKey, src: bool, addr: u128) -> Result {
    if key.eth_type() != ETH_TYPE_IPV6 {
        return Err(RewriteError::Missing);
    }
    let l3 = pkt.l3_offset().ok_or(RewriteError::Missing)?;
    let l4 = pkt.l4_offset();
    let data = pkt.data_mut();
    let a = hdr::<16>(data, l3 + if src { 8 } else { 24 })?;
    let old = u128::from_be_bytes(*a);
    *a = addr.to_be_bytes();
    pseudo_header_changed(data, key, l4, |c| update128(c, old, addr));
    key.set(if src { slots::IP_SRC } else { slots::IP_DST }, addr);
    Ok(())
}

/// Updates the L4 checksum that covers the pseudo-header after an address
/// in it changed (`update` maps the old checksum to the new). ICMPv6 has
/// one; ICMPv4 and SCTP do not. A later fragment has no L4 header.
fn pseudo_header_changed(
    data: &mut [u8],
    key: &FlowKey,
    l4: Option<usize>,
    update: impl Fn(u16) -> u16,
) {
    let Some(l4) = l4 else { return };
    if key.get(slots::IP_FRAG) as u8 & FRAG_LATER != 0 {
        return;
    }
    match key.ip_proto() {
        IPPROTO_TCP => {
            if let Ok(t) = hdr::<18>(data, l4) {
                let sum = update(be16(t[16], t[17]));
                t[16..18].copy_from_slice(&sum.to_be_bytes());
            }
        }
        IPPROTO_UDP => {
            if let Ok(u) = hdr::<8>(data, l4) {
                update_udp_sum(u, update);
            }
        }
        IPPROTO_ICMPV6 if key.eth_type() == ETH_TYPE_IPV6 => {
            if let Ok(i) = hdr::<4>(data, l4) {
                let sum = update(be16(i[2], i[3]));
                i[2..4].copy_from_slice(&sum.to_be_bytes());
            }
        }
        _ => {}
    }
}

/// A UDP checksum of zero means none (and stays so); a computed zero is
/// sent as all ones (RFC 768).
#[inline]
fn update_udp_sum(u: &mut [u8; 8], update: impl Fn(u16) -> u16) {
    let old = be16(u[6], u[7]);
    if old != 0 {
        let sum = match update(old) {
            0 => 0xffff,
            s => s,
        };
        u[6..8].copy_from_slice(&sum.to_be_bytes());
    }
}

fn set_label(pkt: &mut Packet, key: &mut FlowKey, label: u32) -> Result {
    if key.eth_type() != ETH_TYPE_IPV6 {
        return Err(RewriteError::Missing);
    }
    let l3 = pkt.l3_offset().ok_or(RewriteError::Missing)?;
    let h = hdr::<4>(pkt.data_mut(), l3)?;
    let first = (u32::from_be_bytes(*h) & 0xfff0_0000) | label;
    *h = first.to_be_bytes();
    key.set(slots::IP6_LABEL, u128::from(label));
    Ok(())
}

fn set_arp_op(pkt: &mut Packet, key: &mut FlowKey, op: u16) -> Result {
    if !matches!(key.eth_type(), ETH_TYPE_ARP | ETH_TYPE_RARP) {
        return Err(RewriteError::Missing);
    }
    let l3 = pkt.l3_offset().ok_or(RewriteError::Missing)?;
    let a = hdr::<28>(pkt.data_mut(), l3)?;
    a[6..8].copy_from_slice(&op.to_be_bytes());
    key.set(slots::ARP_OP, u128::from(op));
    Ok(())
}

/// An ARP hardware address, or an ND link-layer address option (`sha`:
/// source, else target). A missing ND option is not added.
fn set_hw_addr(pkt: &mut Packet, key: &mut FlowKey, sha: bool, addr: u64) -> Result {
    let slot = if sha { slots::ARP_SHA } else { slots::ARP_THA };
    let new = addr.to_be_bytes();
    let new = [new[2], new[3], new[4], new[5], new[6], new[7]];
    let l3 = pkt.l3_offset().ok_or(RewriteError::Missing)?;
    match key.eth_type() {
        ETH_TYPE_ARP | ETH_TYPE_RARP => {
            let a = hdr::<28>(pkt.data_mut(), l3)?;
            let at = if sha { 8 } else { 18 };
            a[at..at + 6].copy_from_slice(&new);
        }
        ETH_TYPE_IPV6 => {
            let (l4, end) = nd_message(pkt, key)?;
            let want = if sha { 1 } else { 2 };
            let data = pkt.data_mut();
            let mut at = l4 + 24;
            // Finds the option (the extractor has checked the list).
            loop {
                let o = hdr::<8>(data, at)?;
                let len = usize::from(o[1]) * 8;
                if len == 0 || at + len > end {
                    return Err(RewriteError::Missing);
                }
                if o[0] == want && len == 8 {
                    let old = [o[2], o[3], o[4], o[5], o[6], o[7]];
                    o[2..8].copy_from_slice(&new);
                    let i = hdr::<4>(data, l4)?;
                    let sum = update_bytes(be16(i[2], i[3]), &old, &new);
                    i[2..4].copy_from_slice(&sum.to_be_bytes());
                    break;
                }
                at += len;
            }
        }
        _ => return Err(RewriteError::Missing),
    }
    key.set(slot, u128::from(addr));
    Ok(())
}

fn set_nd_target(pkt: &mut Packet, key: &mut FlowKey, target: u128) -> Result {
    let (l4, _) = nd_message(pkt, key)?;
    let data = pkt.data_mut();
    let t = hdr::<16>(data, l4 + 8)?;
    let old = u128::from_be_bytes(*t);
    *t = target.to_be_bytes();
    let i = hdr::<4>(data, l4)?;
    let sum = update128(be16(i[2], i[3]), old, target);
    i[2..4].copy_from_slice(&sum.to_be_bytes());
    key.set(slots::ND_TARGET, target);
    Ok(())
}

/// Where an ND solicitation or advertisement starts and where the IPv6
/// payload ends, if the packet is one.
fn nd_message(pkt: &Packet, key: &FlowKey) -> Result<(usize, usize)> {
    let ty = key.get(slots::TP_SRC) as u8;
    if key.eth_type() != ETH_TYPE_IPV6
        || key.ip_proto() != IPPROTO_ICMPV6
        || !(ty == ND_NEIGHBOR_SOLICIT || ty == ND_NEIGHBOR_ADVERT)
        || key.get(slots::TP_DST) != 0
    {
        return Err(RewriteError::Missing);
    }
    let l3 = pkt.l3_offset().ok_or(RewriteError::Missing)?;
    let l4 = pkt.l4_offset().ok_or(RewriteError::Missing)?;
    Ok((l4, ip_end(pkt.data(), l3, true)))
}

/// A transport port, or an ICMP type (`src`) or code.
fn set_tp(pkt: &mut Packet, key: &mut FlowKey, src: bool, value: u16) -> Result {
    let eth_type = key.eth_type();
    if !matches!(eth_type, ETH_TYPE_IPV4 | ETH_TYPE_IPV6)
        || key.get(slots::IP_FRAG) as u8 & FRAG_LATER != 0
    {
        return Err(RewriteError::Missing);
    }
    let l4 = pkt.l4_offset().ok_or(RewriteError::Missing)?;
    let at = if src { 0 } else { 2 };
    let v6 = eth_type == ETH_TYPE_IPV6;
    let stored = match key.ip_proto() {
        IPPROTO_TCP => {
            let t = hdr::<18>(pkt.data_mut(), l4)?;
            let old = be16(t[at], t[at + 1]);
            t[at..at + 2].copy_from_slice(&value.to_be_bytes());
            let sum = update16(be16(t[16], t[17]), old, value);
            t[16..18].copy_from_slice(&sum.to_be_bytes());
            value
        }
        IPPROTO_UDP => {
            let u = hdr::<8>(pkt.data_mut(), l4)?;
            let old = be16(u[at], u[at + 1]);
            u[at..at + 2].copy_from_slice(&value.to_be_bytes());
            update_udp_sum(u, |c| update16(c, old, value));
            value
        }
        IPPROTO_SCTP => {
            set_sctp_port(pkt, l4, at, value)?;
            value
        }
        p if (p == IPPROTO_ICMP && !v6) || (p == IPPROTO_ICMPV6 && v6) => {
            // Type and code share the checksum's first word.
            let i = hdr::<4>(pkt.data_mut(), l4)?;
            let old = be16(i[0], i[1]);
            i[if src { 0 } else { 1 }] = value as u8;
            let sum = update16(be16(i[2], i[3]), old, be16(i[0], i[1]));
            i[2..4].copy_from_slice(&sum.to_be_bytes());
            // ICMP type and code are 8 bits wide.
            value & 0xff
        }
        _ => return Err(RewriteError::Missing),
    };
    key.set(
        if src { slots::TP_SRC } else { slots::TP_DST },
        u128::from(stored),
    );
    Ok(())
}

/// SCTP's CRC32c covers the whole SCTP packet: recompute it, and carry
/// over any error the old one had (as OVS does) so that a corrupt packet
/// is not made to look good.
#[cold]
fn set_sctp_port(pkt: &mut Packet, l4: usize, at: usize, value: u16) -> Result {
    let l3 = pkt.l3_offset().ok_or(RewriteError::Missing)?;
    let v6 = pkt.data().get(l3).is_some_and(|b| b >> 4 == 6);
    let end = ip_end(pkt.data(), l3, v6);
    let s = pkt
        .data_mut()
        .get_mut(l4..end)
        .filter(|s| s.len() >= 12)
        .ok_or(RewriteError::Missing)?;
    let stored = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    s[8..12].fill(0);
    let before = crc32c(s);
    s[at..at + 2].copy_from_slice(&value.to_be_bytes());
    let after = crc32c(s) ^ before ^ stored;
    s[8..12].copy_from_slice(&after.to_le_bytes());
    Ok(())
}

/// Where the IP payload ends: the header's own length, bounded by the
/// data (Ethernet padding is not part of it).
fn ip_end(data: &[u8], l3: usize, v6: bool) -> usize {
    let (at, base) = if v6 { (4, 40) } else { (2, 0) };
    let len = data
        .get(l3 + at..l3 + at + 2)
        .map_or(0, |b| usize::from(be16(b[0], b[1])));
    (l3 + base + len).min(data.len())
}

/// `N` bytes of `data` at `at`, or `Missing` if it is too short.
#[inline(always)]
fn hdr<const N: usize>(data: &mut [u8], at: usize) -> Result<&mut [u8; N]> {
    data.get_mut(at..)
        .and_then(|s| s.first_chunk_mut::<N>())
        .ok_or(RewriteError::Missing)
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
fn put32<const N: usize>(h: &mut [u8; N], at: usize, v: u32) {
    if let Some(d) = h.get_mut(at..at + 4) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{checksum, fold64, pseudo_header_v4, pseudo_header_v6, sum_bytes};
    use crate::extract::tests::{
        arp_request, ipv4_icmp, ipv4_tcp, ipv4_udp, ipv6_icmp, ipv6_raw, ipv6_tcp, ipv6_udp, nd_ns,
    };
    use crate::extract::{extract, extract_packet, Status};

    fn packet(frame: &[u8]) -> (Packet, FlowKey) {
        let mut p = Packet::from_slice(frame).unwrap();
        let (k, s) = extract_packet(&mut p, 5);
        assert_eq!(s, Status::Ok);
        (p, k)
    }

    /// Recomputes every checksum of the frame from scratch and checks the
    /// stored ones against them (a UDP checksum of 0 means none).
    fn assert_checksums(frame: &[u8]) {
        let (k, l) = extract(frame, 0);
        let l3 = l.l3.unwrap();
        let l4 = l.l4;
        let v6 = k.eth_type() == ETH_TYPE_IPV6;
        if k.eth_type() == ETH_TYPE_IPV4 {
            let ihl = usize::from(frame[l3] & 0xf) * 4;
            let mut h = frame[l3..l3 + ihl].to_vec();
            let stored = u16::from_be_bytes([h[10], h[11]]);
            h[10..12].fill(0);
            assert_eq!(stored, checksum(&h), "IPv4 header checksum");
        }
        let (Some(l4), true) = (l4, k.get(slots::IP_FRAG) as u8 & FRAG_LATER == 0) else {
            return;
        };
        let end = ip_end(frame, l3, v6);
        let mut seg = frame[l4..end].to_vec();
        let at = match k.ip_proto() {
            IPPROTO_TCP => 16,
            IPPROTO_UDP => 6,
            IPPROTO_ICMP | IPPROTO_ICMPV6 => 2,
            IPPROTO_SCTP => {
                let stored = u32::from_le_bytes(seg[8..12].try_into().unwrap());
                seg[8..12].fill(0);
                assert_eq!(stored, crc32c(&seg), "SCTP CRC32c");
                return;
            }
            _ => return,
        };
        let stored = u16::from_be_bytes([seg[at], seg[at + 1]]);
        seg[at..at + 2].fill(0);
        let acc = match (v6, k.ip_proto()) {
            (false, IPPROTO_ICMP) => 0,
            (false, p) => pseudo_header_v4(
                k.get(slots::IP_SRC) as u32,
                k.get(slots::IP_DST) as u32,
                p,
                seg.len() as u16,
            ),
            (true, p) => pseudo_header_v6(
                &k.get(slots::IP_SRC).to_be_bytes(),
                &k.get(slots::IP_DST).to_be_bytes(),
                p,
                seg.len() as u32,
            ),
        };
        let full = !fold64(sum_bytes(&seg, acc));
        if k.ip_proto() == IPPROTO_UDP {
            if stored == 0 {
                return;
            }
            assert_eq!(
                stored,
                if full == 0 { 0xffff } else { full },
                "UDP checksum"
            );
        } else {
            assert_eq!(stored, full, "L4 checksum of protocol {}", k.ip_proto());
        }
    }

    /// Sets `field` to `value`, then checks the checksums and that
    /// extraction gives the updated key back.
    fn round_trip(frame: &[u8], field: KeyField, value: u128) -> (Packet, FlowKey) {
        assert_checksums(frame);
        let (mut p, mut k) = packet(frame);
        let before = k;
        set(&mut p, &mut k, field, value).unwrap_or_else(|e| panic!("{field}: {e:?}"));
        assert_ne!(k, before, "{field} changed the key");
        assert_checksums(p.data());
        let (again, l) = extract(p.data(), 5);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(
            again, k,
            "{field} = {value:#x}: extraction after the rewrite"
        );
        (p, k)
    }

    const V6: u128 = 0x2001_0db8_0000_0000_0000_0000_0bad_cafe;

    #[test]
    fn ipv4_fields_across_protocols() {
        for f in [ipv4_tcp(b"payload"), ipv4_udp(b"odd"), ipv4_icmp()] {
            round_trip(&f, KeyField::EthSrc, 0x0a00_0000_00ff);
            round_trip(&f, KeyField::EthDst, 0x0200_0000_0001);
            round_trip(&f, KeyField::IpTos, 0xb9);
            round_trip(&f, KeyField::IpTtl, 3);
            round_trip(&f, KeyField::Nw4Src, 0xac10_fffe);
            round_trip(&f, KeyField::Nw4Dst, 0x6440_0001);
            round_trip(&f, KeyField::TpSrc, 0);
            round_trip(&f, KeyField::TpDst, 0xfffe);
        }
    }

    #[test]
    fn ipv6_fields_across_protocols() {
        for f in [ipv6_tcp(b"payload"), ipv6_udp(b"odd"), ipv6_icmp()] {
            round_trip(&f, KeyField::EthSrc, 0x0a00_0000_00ff);
            round_trip(&f, KeyField::IpTos, 0xb9);
            round_trip(&f, KeyField::IpTtl, 3);
            round_trip(&f, KeyField::Ip6Label, 0xfedcb);
            round_trip(&f, KeyField::Ip6Src, V6);
            round_trip(&f, KeyField::Ip6Dst, !V6);
            round_trip(&f, KeyField::TpSrc, 129);
            round_trip(&f, KeyField::TpDst, 0xffff);
        }
    }

    #[test]
    fn dec_ttl_both_families() {
        for f in [ipv4_tcp(b"x"), ipv4_udp(&[]), ipv6_udp(b"y"), ipv6_icmp()] {
            let (mut p, mut k) = packet(&f);
            let ttl = k.get(slots::IP_TTL);
            dec_ttl(&mut p, &mut k).unwrap();
            assert_eq!(k.get(slots::IP_TTL), ttl - 1);
            assert_checksums(p.data());
            assert_eq!(extract(p.data(), 5).0, k);
        }
        let (mut p, mut k) = packet(&ipv4_udp(&[]));
        set(&mut p, &mut k, KeyField::IpTtl, 0).unwrap();
        let frame = p.data().to_vec();
        assert_eq!(dec_ttl(&mut p, &mut k), Err(RewriteError::TtlZero));
        assert_eq!(p.data(), &frame[..]);
        let (mut p, mut k) = packet(&arp_request());
        assert_eq!(dec_ttl(&mut p, &mut k), Err(RewriteError::Missing));
    }

    #[test]
    fn router_rewrite() {
        // What a logical router does to a forwarded packet.
        let (mut p, mut k) = packet(&ipv4_tcp(b"routed"));
        set(&mut p, &mut k, KeyField::EthSrc, 0x0000_00d3_4baa).unwrap();
        set(&mut p, &mut k, KeyField::EthDst, 0x0a00_0000_0007).unwrap();
        dec_ttl(&mut p, &mut k).unwrap();
        assert_checksums(p.data());
        assert_eq!(
            &p.data()[..12],
            &[0x0a, 0, 0, 0, 0, 7, 0, 0, 0, 0xd3, 0x4b, 0xaa]
        );
        assert_eq!(extract(p.data(), 5).0, k);
    }

    #[test]
    fn udp_without_checksum_keeps_none() {
        let mut f = ipv4_udp(b"no checksum");
        f[40..42].fill(0);
        let (p, _) = round_trip(&f, KeyField::Nw4Src, 0x0101_0101);
        assert_eq!(&p.data()[40..42], &[0, 0]);
        let (p, _) = round_trip(&f, KeyField::TpDst, 4789);
        assert_eq!(&p.data()[40..42], &[0, 0]);
    }

    #[test]
    fn arp_fields() {
        let f = arp_request();
        round_trip(&f, KeyField::ArpOp, 2);
        round_trip(&f, KeyField::ArpSha, 0x0a00_0000_0009);
        round_trip(&f, KeyField::ArpTha, 0x0a00_0000_0001);
        round_trip(&f, KeyField::Nw4Src, 0x0a00_0002);
        round_trip(&f, KeyField::Nw4Dst, 0x0a00_0001);
        let (mut p, mut k) = packet(&f);
        assert_eq!(
            set(&mut p, &mut k, KeyField::TpSrc, 1),
            Err(RewriteError::Missing)
        );
        assert_eq!(
            set(&mut p, &mut k, KeyField::Ip6Src, 1),
            Err(RewriteError::Missing)
        );
    }

    #[test]
    fn nd_fields() {
        let f = nd_ns();
        round_trip(&f, KeyField::NdTarget, V6);
        round_trip(&f, KeyField::ArpSha, 0x0a00_0000_00aa);
        round_trip(&f, KeyField::Ip6Src, V6);
        // The solicitation has no target link-layer option: not added.
        let (mut p, mut k) = packet(&f);
        let before = (p.data().to_vec(), k);
        assert_eq!(
            set(&mut p, &mut k, KeyField::ArpTha, 0x0a00_0000_00bb),
            Err(RewriteError::Missing)
        );
        assert_eq!((p.data().to_vec(), k), before);
        // An echo request is not ND.
        let (mut p, mut k) = packet(&ipv6_icmp());
        assert_eq!(
            set(&mut p, &mut k, KeyField::NdTarget, 1),
            Err(RewriteError::Missing)
        );
    }

    #[test]
    fn vlan_push_modify_pop() {
        let f = ipv4_udp(b"tagme");
        let (mut p, mut k) = round_trip(&f, KeyField::VlanTci, 0x1000 | 0xa064);
        assert_eq!(&p.data()[12..16], &[0x81, 0x00, 0xa0, 0x64]);
        assert_eq!(p.l3_offset(), Some(18));
        set(&mut p, &mut k, KeyField::VlanTci, 0x1000 | 7).unwrap();
        assert_eq!(&p.data()[12..16], &[0x81, 0x00, 0x00, 0x07]);
        assert_eq!(extract(p.data(), 5).0, k);
        set(&mut p, &mut k, KeyField::VlanTci, 0).unwrap();
        assert_eq!(p.data(), &f[..]);
        assert_eq!(p.l3_offset(), Some(14));
        assert_eq!(extract(p.data(), 5).0, k);
        // A later rewrite still finds the headers.
        set(&mut p, &mut k, KeyField::TpSrc, 99).unwrap();
        assert_checksums(p.data());
        assert_eq!(extract(p.data(), 5).0, k);
    }

    #[test]
    fn sctp_port_recomputes_crc() {
        let mut sctp = vec![0x13, 0x88, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 0];
        sctp.extend_from_slice(&[
            1, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0x10, 0, 0, 1, 0, 1, 0, 0, 0, 9,
        ]);
        let crc = crc32c(&sctp);
        sctp[8..12].copy_from_slice(&crc.to_le_bytes());
        let f = ipv6_raw(&[1; 16], &[2; 16], IPPROTO_SCTP, &sctp);
        round_trip(&f, KeyField::TpSrc, 7000);
        round_trip(&f, KeyField::TpDst, 7001);
        // A wrong CRC stays exactly as wrong.
        let mut bad = f.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        let (mut p, mut k) = packet(&bad);
        set(&mut p, &mut k, KeyField::TpSrc, 7000).unwrap();
        let seg = &p.data()[54..];
        let stored = u32::from_le_bytes(seg[8..12].try_into().unwrap());
        let mut zeroed = seg.to_vec();
        zeroed[8..12].fill(0);
        let orig_stored = u32::from_le_bytes(bad[62..66].try_into().unwrap());
        let mut orig = bad[54..].to_vec();
        orig[8..12].fill(0);
        assert_eq!(stored ^ crc32c(&zeroed), orig_stored ^ crc32c(&orig));
    }

    #[test]
    fn nat_from_key_diff() {
        for f in [
            ipv4_tcp(b"nat"),
            ipv4_udp(b"nat"),
            ipv6_tcp(b"nat"),
            ipv6_udp(b""),
        ] {
            let (mut p, old) = packet(&f);
            let mut new = old;
            if old.eth_type() == ETH_TYPE_IPV4 {
                new.set(slots::IP_SRC, 0xac10_0001);
                new.set(slots::IP_DST, 0xc0a8_6401);
            } else {
                new.set(slots::IP_DST, V6);
            }
            new.set(slots::TP_SRC, 61000);
            rewrite_from_key_diff(&mut p, &old, &new).unwrap();
            assert_checksums(p.data());
            assert_eq!(extract(p.data(), 5).0, new);
        }
        // Nothing changed: nothing written.
        let f = ipv4_tcp(b"same");
        let (mut p, k) = packet(&f);
        rewrite_from_key_diff(&mut p, &k, &k).unwrap();
        assert_eq!(p.data(), &f[..]);
    }

    #[test]
    fn later_fragments_have_no_l4() {
        let mut f = ipv4_udp(b"0123456789abcdef");
        f[20] = 0x00;
        f[21] = 0x03;
        f[24..26].fill(0);
        let c = checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let (mut p, mut k) = packet(&f);
        assert_eq!(
            set(&mut p, &mut k, KeyField::TpDst, 1),
            Err(RewriteError::Missing)
        );
        // The address changes; what follows the header is payload, left be.
        set(&mut p, &mut k, KeyField::Nw4Dst, 0x0808_0808).unwrap();
        assert_eq!(&p.data()[34..], &f[34..]);
        assert_checksums(p.data());
        assert_eq!(extract(p.data(), 5).0, k);
    }

    #[test]
    fn not_writable_and_cut_short() {
        let (mut p, mut k) = packet(&ipv4_tcp(&[]));
        for field in [
            KeyField::EthType,
            KeyField::IpProto,
            KeyField::InPort,
            KeyField::CtMark,
        ] {
            assert_eq!(
                set(&mut p, &mut k, field, 1),
                Err(RewriteError::NotWritable)
            );
        }
        set(&mut p, &mut k, KeyField::PktMark, 42).unwrap();
        assert_eq!(k.get(slots::PKT_MARK), 42);
        // Offsets that point past a truncated packet are refused, never
        // followed out of bounds.
        p.truncate(40);
        for field in [KeyField::TpSrc, KeyField::TpDst] {
            assert_eq!(set(&mut p, &mut k, field, 1), Err(RewriteError::Missing));
        }
        p.truncate(20);
        assert_eq!(dec_ttl(&mut p, &mut k), Err(RewriteError::Missing));
        assert_eq!(
            set(&mut p, &mut k, KeyField::Nw4Src, 1),
            Err(RewriteError::Missing)
        );
        p.truncate(8);
        assert_eq!(
            set(&mut p, &mut k, KeyField::EthSrc, 1),
            Err(RewriteError::Missing)
        );
        assert_eq!(
            set(&mut p, &mut k, KeyField::VlanTci, 0x1001),
            Err(RewriteError::Missing)
        );
    }
}
