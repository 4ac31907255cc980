//! Frames for the packets controller actions make (the pinctrl side of
//! `arp {}`, `icmp4 {}`, `icmp4_error {}`, `icmp6 {}`, `nd_ns {}`,
//! `nd_na {}`, `nd_na_router {}`, `tcp_reset {}` and `reject {}`):
//! built from the logical key the slow path ended with, and from the
//! packet that triggered them where the new one quotes or answers it.
//!
//! Pure functions over bytes: no I/O, no allocation beyond the frame.

use crate::checksum::{checksum, fold64, pseudo_header_v4, pseudo_header_v6, sum_bytes};
use ironflow_pipeline::classifier::Key;
use ironflow_pipeline::lflow::actions::ArgValue;
use ironflow_pipeline::lflow::symbols::KeyField;

/// The shortest Ethernet frame (without FCS): shorter ones are padded.
const MIN_FRAME: usize = 60;

/// How much of the offending datagram an ICMP error quotes beyond its IP
/// header: RFC 792 asks for 8 bytes; more (as Linux does) lets the sender
/// match the error to its socket on more protocols, and 64 keeps the
/// error small.
const ICMP_QUOTE: usize = 64;

/// Why a frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeError {
    /// A packet kind not built yet (`sctp_abort`).
    Unsupported,
    /// The triggering packet lacks what the new one needs (an IPv4
    /// header to quote, a TCP header to answer).
    Malformed,
}

fn field(key: &Key, f: KeyField) -> u128 {
    key[f.index()]
}

fn mac(v: u128) -> [u8; 6] {
    let b = (v as u64).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn ipv4(v: u128) -> [u8; 4] {
    (v as u32).to_be_bytes()
}

/// The Ethernet header for `key`'s addresses and `ethertype`.
fn ethernet(key: &Key, ethertype: u16, frame: &mut Vec<u8>) {
    frame.extend_from_slice(&mac(field(key, KeyField::EthDst)));
    frame.extend_from_slice(&mac(field(key, KeyField::EthSrc)));
    frame.extend_from_slice(&ethertype.to_be_bytes());
}

fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < MIN_FRAME {
        frame.resize(MIN_FRAME, 0);
    }
    frame
}

/// The ethertype and network-layer bytes of a frame, past any VLAN tags.
fn network_layer(frame: &[u8]) -> Option<(u16, &[u8])> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        off += 4;
        ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    }
    Some((ethertype, frame.get(off + 2..)?))
}

/// The IP datagram inside `original` (after Ethernet and VLAN tags), if
/// it is IPv4 with a whole header.
fn ipv4_datagram(original: &[u8]) -> Option<&[u8]> {
    let (ethertype, ip) = network_layer(original)?;
    if ethertype != 0x0800 {
        return None;
    }
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    // What the IP header says is there, not link-layer padding.
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).clamp(ihl, ip.len());
    Some(&ip[..total])
}

/// An IPv4 header for `key`'s addresses and TTL, carrying `payload_len`
/// bytes of `proto`.
fn ipv4_header(key: &Key, proto: u8, payload_len: usize, frame: &mut Vec<u8>) {
    let start = frame.len();
    let total = (20 + payload_len) as u16;
    let tos = field(key, KeyField::IpTos) as u8;
    frame.extend_from_slice(&[0x45, tos]);
    frame.extend_from_slice(&total.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, DF
    frame.push(field(key, KeyField::IpTtl) as u8);
    frame.push(proto);
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&ipv4(field(key, KeyField::Nw4Src)));
    frame.extend_from_slice(&ipv4(field(key, KeyField::Nw4Dst)));
    let sum = checksum(&frame[start..start + 20]);
    frame[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
}

/// `arp { … }`: an ARP packet as the key describes it (arp.spa and
/// arp.tpa share the IPv4 address slots).
pub fn arp(key: &Key) -> Vec<u8> {
    let mut f = Vec::with_capacity(MIN_FRAME);
    ethernet(key, 0x0806, &mut f);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&(field(key, KeyField::ArpOp) as u16).to_be_bytes());
    f.extend_from_slice(&mac(field(key, KeyField::ArpSha)));
    f.extend_from_slice(&ipv4(field(key, KeyField::Nw4Src)));
    f.extend_from_slice(&mac(field(key, KeyField::ArpTha)));
    f.extend_from_slice(&ipv4(field(key, KeyField::Nw4Dst)));
    pad(f)
}

/// `icmp4 { … }` / `icmp4_error { … }`: an ICMPv4 message with the key's
/// type and code, quoting the IP header and the first bytes of the
/// datagram in `original`.
pub fn icmp4(key: &Key, original: &[u8]) -> Result<Vec<u8>, ComposeError> {
    let datagram = ipv4_datagram(original).ok_or(ComposeError::Malformed)?;
    let ihl = usize::from(datagram[0] & 0x0f) * 4;
    let quote = &datagram[..datagram.len().min(ihl + ICMP_QUOTE)];
    let icmp_len = 8 + quote.len();
    let mut f = Vec::with_capacity(14 + 20 + icmp_len);
    ethernet(key, 0x0800, &mut f);
    ipv4_header(key, 1, icmp_len, &mut f);
    let start = f.len();
    f.push(field(key, KeyField::TpSrc) as u8);
    f.push(field(key, KeyField::TpDst) as u8);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(quote);
    let sum = checksum(&f[start..]);
    f[start + 2..start + 4].copy_from_slice(&sum.to_be_bytes());
    Ok(pad(f))
}

/// `tcp_reset { … }` (and `reject` of TCP), over IPv4 or IPv6: a RST
/// answering the TCP segment in `original`, from the key's addresses.
/// The key keeps the original's ports, so they are swapped here; sequence
/// numbers follow RFC 793's reset generation.
pub fn tcp_reset(key: &Key, original: &[u8]) -> Result<Vec<u8>, ComposeError> {
    let v6 = field(key, KeyField::EthType) == 0x86dd;
    let tcp = if v6 {
        let packet = ipv6_packet(original).ok_or(ComposeError::Malformed)?;
        // No extension headers between IPv6 and TCP, as northd's reject
        // flows only match plain TCP.
        if packet[6] != 6 {
            return Err(ComposeError::Malformed);
        }
        &packet[40..]
    } else {
        let datagram = ipv4_datagram(original).ok_or(ComposeError::Malformed)?;
        let ihl = usize::from(datagram[0] & 0x0f) * 4;
        if datagram[9] != 6 {
            return Err(ComposeError::Malformed);
        }
        &datagram[ihl..]
    };
    if tcp.len() < 20 {
        return Err(ComposeError::Malformed);
    }
    let data_off = usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    let (syn, fin, has_ack) = (flags & 0x02 != 0, flags & 0x01 != 0, flags & 0x10 != 0);
    let seg_len = tcp.len().saturating_sub(data_off) as u32 + u32::from(syn) + u32::from(fin);
    let (rst_seq, rst_ack, rst_flags) = if has_ack {
        (ack, 0, 0x04)
    } else {
        (0, seq.wrapping_add(seg_len), 0x14)
    };
    let mut f = Vec::with_capacity(MIN_FRAME);
    if v6 {
        ethernet(key, 0x86dd, &mut f);
        ipv6_header(key, 6, 20, &mut f);
    } else {
        ethernet(key, 0x0800, &mut f);
        ipv4_header(key, 6, 20, &mut f);
    }
    let start = f.len();
    f.extend_from_slice(&tcp[2..4]); // the original's destination port
    f.extend_from_slice(&tcp[0..2]);
    f.extend_from_slice(&rst_seq.to_be_bytes());
    f.extend_from_slice(&rst_ack.to_be_bytes());
    f.extend_from_slice(&[5 << 4, rst_flags, 0, 0, 0, 0, 0, 0]);
    let pseudo = if v6 {
        pseudo_header_v6(
            &ipv6(field(key, KeyField::Ip6Src)),
            &ipv6(field(key, KeyField::Ip6Dst)),
            6,
            20,
        )
    } else {
        pseudo_header_v4(
            field(key, KeyField::Nw4Src) as u32,
            field(key, KeyField::Nw4Dst) as u32,
            6,
            20,
        )
    };
    let sum = !fold64(sum_bytes(&f[start..], pseudo));
    f[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
    Ok(pad(f))
}

/// A UDP frame (over IPv4 or IPv6, as the key's ethertype says) with the
/// key's addresses and ports around `payload`: a controller's answer that
/// replaces the packet's payload (a DHCP or DNS reply).
pub fn udp(key: &Key, payload: &[u8]) -> Vec<u8> {
    let v6 = field(key, KeyField::EthType) == 0x86dd;
    let udp_len = 8 + payload.len();
    let mut f = Vec::with_capacity(14 + 40 + udp_len);
    let pseudo = if v6 {
        ethernet(key, 0x86dd, &mut f);
        ipv6_header(key, 17, udp_len, &mut f);
        pseudo_header_v6(
            &ipv6(field(key, KeyField::Ip6Src)),
            &ipv6(field(key, KeyField::Ip6Dst)),
            17,
            udp_len as u32,
        )
    } else {
        ethernet(key, 0x0800, &mut f);
        ipv4_header(key, 17, udp_len, &mut f);
        pseudo_header_v4(
            field(key, KeyField::Nw4Src) as u32,
            field(key, KeyField::Nw4Dst) as u32,
            17,
            udp_len as u16,
        )
    };
    let start = f.len();
    f.extend_from_slice(&(field(key, KeyField::TpSrc) as u16).to_be_bytes());
    f.extend_from_slice(&(field(key, KeyField::TpDst) as u16).to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let sum = match !fold64(sum_bytes(&f[start..], pseudo)) {
        0 => 0xffff, // zero means "no checksum" in UDP
        s => s,
    };
    f[start + 6..start + 8].copy_from_slice(&sum.to_be_bytes());
    pad(f)
}

/// The UDP payload of the IPv4 datagram in `frame`, if it has one.
pub fn udp4_payload(frame: &[u8]) -> Option<&[u8]> {
    let ip = ipv4_datagram(frame)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[9] != 17 || ip.len() < ihl + 8 {
        return None;
    }
    Some(&ip[ihl + 8..])
}

/// The IPv6 packet inside `original` (after Ethernet and VLAN tags), as
/// long as its header says it is.
fn ipv6_packet(original: &[u8]) -> Option<&[u8]> {
    let (ethertype, ip) = network_layer(original)?;
    if ethertype != 0x86dd || ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let total = (40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))).min(ip.len());
    Some(&ip[..total])
}

fn ipv6(v: u128) -> [u8; 16] {
    v.to_be_bytes()
}

/// An IPv6 header and ICMPv6 `message` (its checksum field zero), with
/// the checksum filled in.
fn icmp6_frame(key: &Key, message: &[u8]) -> Vec<u8> {
    let (src, dst) = (
        ipv6(field(key, KeyField::Ip6Src)),
        ipv6(field(key, KeyField::Ip6Dst)),
    );
    let mut f = Vec::with_capacity(14 + 40 + message.len());
    ethernet(key, 0x86dd, &mut f);
    ipv6_header(key, 58, message.len(), &mut f);
    let start = f.len();
    f.extend_from_slice(message);
    let pseudo = pseudo_header_v6(&src, &dst, 58, message.len() as u32);
    let sum = !fold64(sum_bytes(&f[start..], pseudo));
    f[start + 2..start + 4].copy_from_slice(&sum.to_be_bytes());
    pad(f)
}

/// `icmp6 { … }` / `icmp6_error { … }`: an ICMPv6 message with the key's
/// type and code quoting as much of the offending packet as keeps the
/// error within the IPv6 minimum MTU (RFC 4443 §2.4).
pub fn icmp6(key: &Key, original: &[u8]) -> Result<Vec<u8>, ComposeError> {
    let packet = ipv6_packet(original).ok_or(ComposeError::Malformed)?;
    let quote = &packet[..packet.len().min(1280 - 40 - 8)];
    let mut m = vec![
        field(key, KeyField::TpSrc) as u8,
        field(key, KeyField::TpDst) as u8,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    m.extend_from_slice(quote);
    Ok(icmp6_frame(key, &m))
}

/// `nd_ns { … }`: a neighbor solicitation for `nd.target`, with the
/// source link-layer address option when `nd.sll` is set.
pub fn nd_ns(key: &Key) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&ipv6(field(key, KeyField::NdTarget)));
    let sll = field(key, KeyField::ArpSha);
    if sll != 0 {
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&mac(sll));
    }
    icmp6_frame(key, &m)
}

/// `nd_na { … }` / `nd_na_router { … }`: a solicited advertisement for
/// `nd.target` with the target link-layer address option; the router flag
/// for `nd_na_router`, override except for an anycast-style answer
/// without a link-layer address.
pub fn nd_na(key: &Key, router: bool) -> Vec<u8> {
    let tll = field(key, KeyField::ArpTha);
    let flags = u8::from(router) << 7 | 0x40 | u8::from(tll != 0) << 5;
    let mut m = vec![136, 0, 0, 0, flags, 0, 0, 0];
    m.extend_from_slice(&ipv6(field(key, KeyField::NdTarget)));
    if tll != 0 {
        m.extend_from_slice(&[2, 1]);
        m.extend_from_slice(&mac(tll));
    }
    icmp6_frame(key, &m)
}

/// An IPv6 header for `key`'s addresses and hop limit carrying `next`.
fn ipv6_header(key: &Key, next: u8, payload_len: usize, frame: &mut Vec<u8>) {
    let tc = field(key, KeyField::IpTos) as u32;
    let label = field(key, KeyField::Ip6Label) as u32 & 0xf_ffff;
    frame.extend_from_slice(&(6 << 28 | tc << 20 | label).to_be_bytes());
    frame.extend_from_slice(&(payload_len as u16).to_be_bytes());
    frame.push(next);
    frame.push(field(key, KeyField::IpTtl) as u8);
    frame.extend_from_slice(&ipv6(field(key, KeyField::Ip6Src)));
    frame.extend_from_slice(&ipv6(field(key, KeyField::Ip6Dst)));
}

/// The UDP payload of the IPv6 packet in `frame` (no extension headers).
pub fn udp6_payload(frame: &[u8]) -> Option<&[u8]> {
    let ip = ipv6_packet(frame)?;
    if ip[6] != 17 || ip.len() < 48 {
        return None;
    }
    Some(&ip[48..])
}

/// The router advertisement `put_nd_ra_opts` asked for: managed/other
/// flags from `addr_mode`, the router preference, the source link-layer
/// address, the MTU and each prefix (autonomous unless addresses come
/// from DHCPv6), from the key's addresses.
pub fn router_advertisement(key: &Key, options: &[(String, ArgValue)]) -> Vec<u8> {
    let get = |name: &str| options.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let text = |name: &str| match get(name) {
        Some(ArgValue::Str(s) | ArgValue::Id(s)) => s.as_str(),
        _ => "",
    };
    let mode = text("addr_mode");
    let mut flags = match mode {
        "dhcpv6_stateful" => 0xc0,
        "dhcpv6_stateless" => 0x40,
        _ => 0,
    };
    flags |= match text("router_preference") {
        "HIGH" => 0x08,
        "LOW" => 0x18,
        _ => 0,
    };
    let mut m = vec![134, 0, 0, 0, 255, flags, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
    if let Some(ArgValue::Int(c)) = get("slla") {
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&mac(c.value));
    }
    if let Some(ArgValue::Int(c)) = get("mtu") {
        m.extend_from_slice(&[5, 1, 0, 0]);
        m.extend_from_slice(&(c.value as u32).to_be_bytes());
    }
    let autonomous = mode != "dhcpv6_stateful";
    let prefixes = match get("prefix") {
        Some(ArgValue::Set(items) | ArgValue::List(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    for p in prefixes {
        let ArgValue::Int(c) = p else { continue };
        let mask = c.mask.unwrap_or(u128::MAX);
        m.extend_from_slice(&[3, 4, mask.count_ones() as u8]);
        m.push(0x80 | if autonomous { 0x40 } else { 0 });
        m.extend_from_slice(&u32::MAX.to_be_bytes()); // valid lifetime
        m.extend_from_slice(&u32::MAX.to_be_bytes()); // preferred lifetime
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&(c.value & mask).to_be_bytes());
    }
    icmp6_frame(key, &m)
}

/// The frame for a packet `generated_by` a controller action.
pub fn generated(generated_by: &str, key: &Key, original: &[u8]) -> Result<Vec<u8>, ComposeError> {
    match generated_by {
        "arp" => Ok(arp(key)),
        "icmp4" | "icmp4_error" => icmp4(key, original),
        "icmp6" | "icmp6_error" => icmp6(key, original),
        "nd_ns" => Ok(nd_ns(key)),
        "nd_na" => Ok(nd_na(key, false)),
        "nd_na_router" => Ok(nd_na(key, true)),
        "tcp_reset" => tcp_reset(key, original),
        _ => Err(ComposeError::Unsupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::extract;
    use crate::keymap::to_logical;
    use ironflow_pipeline::classifier::ZERO_KEY;

    fn set(key: &mut Key, f: KeyField, v: u128) {
        key[f.index()] = v;
    }

    /// A TCP SYN from 192.168.3.3:40000 to 192.168.2.3:22 with `payload`.
    fn syn(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[0..6].copy_from_slice(&[0, 0, 0, 0xd3, 0x4b, 0xaa]);
        f[6..12].copy_from_slice(&[0x0a, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut key = ZERO_KEY;
        set(&mut key, KeyField::Nw4Src, 0xc0a8_0303);
        set(&mut key, KeyField::Nw4Dst, 0xc0a8_0203);
        set(&mut key, KeyField::IpTtl, 1);
        ipv4_header(&key, 6, 20 + payload.len(), &mut f);
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&22u16.to_be_bytes());
        f.extend_from_slice(&1000u32.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 5 << 4, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    /// Checks the IPv4 and the L4 checksum of a frame from scratch.
    fn checksums_hold(frame: &[u8]) {
        let ip = &frame[14..];
        assert_eq!(checksum(&ip[..20]), 0, "IPv4 header checksum");
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let l4 = &ip[20..total];
        let sum = match ip[9] {
            1 => checksum(l4),
            p => {
                let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
                let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
                !fold64(sum_bytes(
                    l4,
                    pseudo_header_v4(src, dst, p, l4.len() as u16),
                ))
            }
        };
        assert_eq!(sum, 0, "L4 checksum");
    }

    #[test]
    fn arp_request_has_the_keys_fields() {
        let mut key = ZERO_KEY;
        set(&mut key, KeyField::EthDst, 0xffff_ffff_ffff);
        set(&mut key, KeyField::EthSrc, 0x0000_00c0_2ec7);
        set(&mut key, KeyField::ArpOp, 1);
        set(&mut key, KeyField::ArpSha, 0x0000_00c0_2ec7);
        set(&mut key, KeyField::Nw4Src, 0xc0a8_0201);
        set(&mut key, KeyField::Nw4Dst, 0xc0a8_0263);
        let f = arp(&key);
        assert_eq!(f.len(), 60);
        let (fk, _) = extract(&f, 1);
        let back = to_logical(&fk);
        for k in [
            KeyField::EthDst,
            KeyField::EthSrc,
            KeyField::ArpOp,
            KeyField::ArpSha,
            KeyField::Nw4Src,
            KeyField::Nw4Dst,
        ] {
            assert_eq!(back[k.index()], key[k.index()], "{k:?}");
        }
        assert_eq!(back[KeyField::EthType.index()], 0x806);
    }

    #[test]
    fn time_exceeded_quotes_the_datagram() {
        let original = syn(&[7u8; 100]);
        let mut key = ZERO_KEY;
        set(&mut key, KeyField::EthDst, 0x0a00_0000_0002);
        set(&mut key, KeyField::EthSrc, 0x0000_00d3_4baa);
        set(&mut key, KeyField::Nw4Src, 0xc0a8_0301);
        set(&mut key, KeyField::Nw4Dst, 0xc0a8_0303);
        set(&mut key, KeyField::IpTtl, 254);
        set(&mut key, KeyField::TpSrc, 11);
        let f = icmp4(&key, &original).unwrap();
        checksums_hold(&f);
        let icmp = &f[34..];
        assert_eq!((icmp[0], icmp[1]), (11, 0));
        // The quote: the original IP header and 64 bytes after it.
        assert_eq!(&icmp[8..], &original[14..14 + 20 + ICMP_QUOTE]);
        assert_eq!(f[14 + 8], 254, "TTL from the key");
    }

    #[test]
    fn reset_answers_a_syn() {
        let original = syn(b"");
        let mut key = ZERO_KEY;
        set(&mut key, KeyField::EthType, 0x0800);
        set(&mut key, KeyField::Nw4Src, 0xc0a8_0203);
        set(&mut key, KeyField::Nw4Dst, 0xc0a8_0303);
        set(&mut key, KeyField::IpTtl, 255);
        let f = tcp_reset(&key, &original).unwrap();
        checksums_hold(&f);
        let tcp = &f[34..54];
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 22);
        assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 40000);
        assert_eq!(u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]), 0);
        assert_eq!(u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]), 1001);
        assert_eq!(tcp[13], 0x14, "RST|ACK");
    }

    #[test]
    fn neighbor_discovery_messages_check_out() {
        let mut key = ZERO_KEY;
        let router_ll = 0xfe80_u128 << 112 | 0x0200_00ff_fe06_0001;
        set(&mut key, KeyField::EthType, 0x86dd);
        set(&mut key, KeyField::EthSrc, 0x0000_0006_0001);
        set(&mut key, KeyField::EthDst, 0x0a00_0006_010a);
        set(&mut key, KeyField::Ip6Src, router_ll);
        set(
            &mut key,
            KeyField::Ip6Dst,
            0xfd00_0006_0001_u128 << 80 | 0xa,
        );
        set(&mut key, KeyField::IpTtl, 255);
        set(&mut key, KeyField::NdTarget, router_ll);
        set(&mut key, KeyField::ArpTha, 0x0000_0006_0001);
        let na = nd_na(&key, true);
        let icmp = &na[54..];
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4], 0xe0, "router, solicited, override");
        assert_eq!(&icmp[8..24], &router_ll.to_be_bytes());
        assert_eq!(
            &icmp[24..32],
            &[2, 1, 0, 0, 0, 6, 0, 1],
            "target link-layer address"
        );
        let (fk, _) = extract(&na, 1);
        let back = to_logical(&fk);
        assert_eq!(back[KeyField::NdTarget.index()], router_ll);
        assert_eq!(back[KeyField::ArpTha.index()], 0x0000_0006_0001);
        // The checksum: summed with its pseudo-header it folds to zero.
        let payload = &na[54..54 + 32];
        let pseudo = pseudo_header_v6(
            &na[22..38].try_into().unwrap(),
            &na[38..54].try_into().unwrap(),
            58,
            32,
        );
        assert_eq!(!fold64(sum_bytes(payload, pseudo)), 0);

        set(&mut key, KeyField::ArpSha, 0x0000_0006_0001);
        let ns = nd_ns(&key);
        assert_eq!(ns[54], 135);
        assert_eq!(
            &ns[78..86],
            &[1, 1, 0, 0, 0, 6, 0, 1],
            "source link-layer address"
        );
    }

    #[test]
    fn reset_answers_an_ipv6_segment() {
        let (a, b) = (0xfd00_u128 << 112 | 0xa, 0xfd00_u128 << 112 | 0xb);
        let mut syn = vec![0u8; 14];
        syn[12..14].copy_from_slice(&[0x86, 0xdd]);
        syn.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
        syn.extend_from_slice(&a.to_be_bytes());
        syn.extend_from_slice(&b.to_be_bytes());
        syn.extend_from_slice(&40000u16.to_be_bytes());
        syn.extend_from_slice(&80u16.to_be_bytes());
        syn.extend_from_slice(&7u32.to_be_bytes());
        syn.extend_from_slice(&[0, 0, 0, 0, 5 << 4, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        let mut key = ZERO_KEY;
        set(&mut key, KeyField::EthType, 0x86dd);
        set(&mut key, KeyField::Ip6Src, b);
        set(&mut key, KeyField::Ip6Dst, a);
        set(&mut key, KeyField::IpTtl, 255);
        let f = tcp_reset(&key, &syn).unwrap();
        let tcp = &f[54..74];
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 80);
        assert_eq!(u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]), 8);
        let pseudo = pseudo_header_v6(&b.to_be_bytes(), &a.to_be_bytes(), 6, 20);
        assert_eq!(!fold64(sum_bytes(tcp, pseudo)), 0, "TCP checksum");
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let key = ZERO_KEY;
        for frame in [&[][..], &[0u8; 13][..], &[0u8; 20][..], &syn(b"")[..30]] {
            assert!(icmp4(&key, frame).is_err());
            let mut k = key;
            set(&mut k, KeyField::EthType, 0x0800);
            assert!(tcp_reset(&k, frame).is_err());
        }
        assert_eq!(
            generated("sctp_abort", &key, &[]),
            Err(ComposeError::Unsupported)
        );
        assert!(icmp6(&key, &[0u8; 60]).is_err());
    }
}
