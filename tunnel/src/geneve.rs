//! Geneve (RFC 8926) on the wire the way OVN uses it: outer Ethernet,
//! IPv4 and UDP to port 6081, the Geneve header, and OVN's one option.
//!
//! OVN's option (class 0x0102, type 0x80 with the critical bit set, four
//! bytes of data) carries the logical ingress port key in bits 16..30 and
//! the logical egress port key in bits 0..15; the VNI carries the logical
//! datapath's tunnel key (`man ovn-architecture`, "Tunnel Encapsulations").
//!
//! What stock OVS's userspace datapath puts in the outer headers, read in
//! its `lib/netdev-native-tnl.c` (3.x): IPv4 identification 0, TOS from the
//! tunnel (0 for OVN), TTL 64, DF set (tunnels default to `df_default`),
//! UDP checksum computed (OVN asks for `csum=true`), UDP source port from
//! the inner flow's hash scaled into 32768..61000.

use crate::inner_sum::inner_sum;
use std::net::Ipv4Addr;

/// Geneve's UDP port.
pub const GENEVE_PORT: u16 = 6081;
/// OVN's option class.
pub const OVN_OPTION_CLASS: u16 = 0x0102;
/// OVN's option type: 0x00 with the critical bit (0x80) set.
pub const OVN_OPTION_TYPE: u8 = 0x80;
/// Bytes of outer headers: Ethernet 14, IPv4 20, UDP 8, Geneve 8, option 8.
pub const ENCAP_LEN: usize = 14 + 20 + 8 + 8 + 8;
/// Transparent Ethernet bridging: the payload is an Ethernet frame.
const PROTO_ETHERNET: u16 = 0x6558;
/// OVS's tunnel source-port range (`tnl_udp_port_min`/`max`).
const SRC_PORT_MIN: u16 = 32768;
const SRC_PORT_MAX: u16 = 61000;

/// The logical metadata OVN carries in a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OvnMetadata {
    /// The logical datapath's tunnel key (24 bits).
    pub vni: u32,
    /// The logical ingress port's key (15 bits).
    pub inport_key: u32,
    /// The logical egress port's key, or a multicast group's (16 bits).
    pub outport_key: u32,
}

impl OvnMetadata {
    /// The option's four data bytes.
    pub fn option_value(&self) -> u32 {
        ((self.inport_key & 0x7fff) << 16) | (self.outport_key & 0xffff)
    }
}

/// Everything the outer headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapParams {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub ttl: u8,
    pub src_port: u16,
    pub meta: OvnMetadata,
}

/// The UDP source port for a flow with hash `hash`, as OVS picks it, so
/// that one flow's packets take one path through ECMP underlays.
pub fn source_port(hash: u32) -> u16 {
    let span = u64::from(SRC_PORT_MAX - SRC_PORT_MIN);
    SRC_PORT_MIN + ((u64::from(hash) * span) >> 32) as u16
}

/// Sums 16-bit big-endian words into `acc` (RFC 1071 allows any word
/// size and either byte order as long as the carries fold back in and the
/// result is swapped back): little-endian 64-bit words with their carries
/// counted apart, one add per 8 bytes, which on the short frames the fast
/// path encapsulates beats a vectorized loop of 32-bit words and its
/// set-up (66-byte frames: about half the time).
pub fn sum_words(data: &[u8], acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    let mut sum: u64 = 0;
    let mut carries: u64 = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let (s, carry) = sum.overflowing_add(u64::from_le_bytes(w));
        sum = s;
        carries += u64::from(carry);
    }
    let mut tail: u64 = 0;
    for (i, b) in chunks.remainder().iter().enumerate() {
        tail |= u64::from(*b) << (8 * i);
    }
    let (s, carry) = sum.overflowing_add(tail);
    carries += u64::from(carry);
    // 2^32 and 2^64 are both 1 modulo 0xffff.
    let sum = (s & 0xffff_ffff) + (s >> 32) + carries;
    acc + u64::from(fold(sum).swap_bytes())
}

/// Folds a sum to 16 bits. Four steps always do (the largest sum leaves
/// 2^33, 0x2fffe, 0x10001, then 2): a fixed sequence, where a loop until
/// it fits costs a mispredicted branch on many packets.
pub fn fold(acc: u64) -> u16 {
    let s = (acc & 0xffff_ffff) + (acc >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Writes the [`ENCAP_LEN`] bytes of outer headers for `inner` into `hdr`
/// (which must be exactly that long: the headroom in front of the inner
/// frame). Returns false, writing nothing, if `hdr` is the wrong size or
/// the packet would not fit in an IPv4 length.
pub fn write_headers(hdr: &mut [u8], inner: &[u8], p: &EncapParams) -> bool {
    let Ok(hdr) = <&mut [u8; ENCAP_LEN]>::try_from(hdr) else {
        return false;
    };
    let udp_len = 8 + 16 + inner.len();
    let ip_len = 20 + udp_len;
    let (Ok(udp_len), Ok(ip_len)) = (u16::try_from(udp_len), u16::try_from(ip_len)) else {
        return false;
    };
    // Ethernet.
    hdr[0..6].copy_from_slice(&p.dst_mac);
    hdr[6..12].copy_from_slice(&p.src_mac);
    hdr[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    // IPv4: no options, TOS 0, id 0, DF, UDP.
    let ip = &mut hdr[14..34];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&[0, 0]);
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = p.ttl;
    ip[9] = 17;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&p.src_ip.octets());
    ip[16..20].copy_from_slice(&p.dst_ip.octets());
    let ip_sum = !fold(sum_words(ip, 0));
    ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    // UDP.
    let udp = &mut hdr[34..42];
    udp[0..2].copy_from_slice(&p.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&GENEVE_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    // Geneve: version 0, 2 words of options, C flag, Ethernet, VNI.
    let g = &mut hdr[42..58];
    g[0] = 2;
    g[1] = 0x40;
    g[2..4].copy_from_slice(&PROTO_ETHERNET.to_be_bytes());
    g[4..8].copy_from_slice(&((p.meta.vni & 0x00ff_ffff) << 8).to_be_bytes());
    g[8..10].copy_from_slice(&OVN_OPTION_CLASS.to_be_bytes());
    g[10] = OVN_OPTION_TYPE;
    g[11] = 1;
    g[12..16].copy_from_slice(&p.meta.option_value().to_be_bytes());
    // UDP checksum: pseudo-header, UDP header, Geneve, inner frame.
    let mut acc = sum_words(&p.src_ip.octets(), 0);
    acc = sum_words(&p.dst_ip.octets(), acc);
    acc += 17 + u64::from(udp_len);
    acc = sum_words(&hdr[34..58], acc);
    acc = inner_sum(inner, acc);
    let mut csum = !fold(acc);
    if csum == 0 {
        // Zero means "no checksum" in UDP over IPv4.
        csum = 0xffff;
    }
    hdr[40..42].copy_from_slice(&csum.to_be_bytes());
    true
}

/// The outer headers of one tunnel, built once: per packet only the
/// lengths, the UDP source port and the checksums change, and the parts
/// of the checksums that do not change are summed in advance (as OVS's
/// `tnl_push` header templates do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    bytes: [u8; ENCAP_LEN],
    /// IPv4 header sum without the total length.
    ip_sum: u64,
    /// Pseudo-header and Geneve sum without lengths and source port.
    udp_sum: u64,
}

impl HeaderTemplate {
    /// The template for `p` (its `src_port` is ignored: it is per packet).
    pub fn new(p: &EncapParams) -> HeaderTemplate {
        let mut bytes = [0u8; ENCAP_LEN];
        // Any inner frame: only the constant parts are kept.
        write_headers(&mut bytes, &[], p);
        for at in [16, 17, 24, 25, 34, 35, 38, 39, 40, 41] {
            bytes[at] = 0;
        }
        let ip_sum = sum_words(&bytes[14..34], 0);
        let mut udp_sum = sum_words(&p.src_ip.octets(), 0);
        udp_sum = sum_words(&p.dst_ip.octets(), udp_sum);
        udp_sum += 17;
        udp_sum = sum_words(&bytes[34..58], udp_sum);
        HeaderTemplate {
            bytes,
            ip_sum,
            udp_sum,
        }
    }

    /// Writes the headers for `inner` into `hdr`; the result equals what
    /// [`write_headers`] writes. False, writing nothing, if `hdr` is the
    /// wrong size or the packet too long for IPv4.
    #[inline]
    pub fn write(&self, hdr: &mut [u8], inner: &[u8], src_port: u16) -> bool {
        let Ok(hdr) = <&mut [u8; ENCAP_LEN]>::try_from(hdr) else {
            return false;
        };
        let (Ok(udp_len), Ok(ip_len)) = (
            u16::try_from(8 + 16 + inner.len()),
            u16::try_from(20 + 8 + 16 + inner.len()),
        ) else {
            return false;
        };
        *hdr = self.bytes;
        hdr[16..18].copy_from_slice(&ip_len.to_be_bytes());
        let ip_sum = !fold(self.ip_sum + u64::from(ip_len));
        hdr[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        hdr[34..36].copy_from_slice(&src_port.to_be_bytes());
        hdr[38..40].copy_from_slice(&udp_len.to_be_bytes());
        // The UDP length counts twice: pseudo-header and UDP header.
        let acc = self.udp_sum + 2 * u64::from(udp_len) + u64::from(src_port);
        let mut csum = !fold(inner_sum(inner, acc));
        if csum == 0 {
            csum = 0xffff;
        }
        hdr[40..42].copy_from_slice(&csum.to_be_bytes());
        true
    }
}

/// What went wrong with a packet that should have been Geneve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecapError {
    /// Not IPv4/UDP to port 6081 (not for the tunnel at all).
    NotGeneve,
    Truncated,
    /// Geneve version other than 0.
    BadVersion,
    /// The payload is not an Ethernet frame.
    NotEthernet,
    /// A critical option this node does not know (RFC 8926 §3.5: drop).
    UnknownCriticalOption,
    /// OVN's option with a length other than 4 bytes.
    BadOptionLength,
    /// No OVN option: the packet carries no logical ports.
    MissingOvnOption,
    /// A non-zero UDP checksum that does not check out.
    BadChecksum,
}

impl DecapError {
    pub fn as_str(&self) -> &'static str {
        match self {
            DecapError::NotGeneve => "not Geneve",
            DecapError::Truncated => "truncated Geneve packet",
            DecapError::BadVersion => "unknown Geneve version",
            DecapError::NotEthernet => "Geneve payload not Ethernet",
            DecapError::UnknownCriticalOption => "unknown critical Geneve option",
            DecapError::BadOptionLength => "OVN Geneve option of the wrong length",
            DecapError::MissingOvnOption => "Geneve packet without OVN's option",
            DecapError::BadChecksum => "bad outer UDP checksum",
        }
    }
}

impl std::fmt::Display for DecapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for DecapError {}

/// A Geneve packet taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapped {
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub meta: OvnMetadata,
    /// Where the inner Ethernet frame starts.
    pub inner_offset: usize,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses and checks a Geneve frame (outer Ethernet included).
pub fn decap(frame: &[u8]) -> Result<Decapped, DecapError> {
    if be16(frame, 12) != Some(0x0800) {
        return Err(DecapError::NotGeneve);
    }
    let ip = frame.get(14..34).ok_or(DecapError::NotGeneve)?;
    if ip[0] >> 4 != 4 || ip[9] != 17 {
        return Err(DecapError::NotGeneve);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let ip_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || ip_len < ihl + 8 || frame.len() < 14 + ip_len {
        return Err(DecapError::Truncated);
    }
    // A later fragment has no UDP header; reassembly is not done here.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(DecapError::NotGeneve);
    }
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp_at = 14 + ihl;
    let end = 14 + ip_len;
    let udp = frame.get(udp_at..udp_at + 8).ok_or(DecapError::Truncated)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != GENEVE_PORT {
        return Err(DecapError::NotGeneve);
    }
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < 8 + 8 || udp_at + udp_len > end {
        return Err(DecapError::Truncated);
    }
    let udp_csum = u16::from_be_bytes([udp[6], udp[7]]);
    let g_at = udp_at + 8;
    let g = frame.get(g_at..g_at + 8).ok_or(DecapError::Truncated)?;
    if g[0] >> 6 != 0 {
        return Err(DecapError::BadVersion);
    }
    let opt_len = usize::from(g[0] & 0x3f) * 4;
    if u16::from_be_bytes([g[2], g[3]]) != PROTO_ETHERNET {
        return Err(DecapError::NotEthernet);
    }
    let vni = u32::from_be_bytes([0, g[4], g[5], g[6]]);
    let inner_offset = g_at + 8 + opt_len;
    if inner_offset + 14 > udp_at + udp_len {
        return Err(DecapError::Truncated);
    }
    let mut ovn = None;
    let mut at = g_at + 8;
    while at < g_at + 8 + opt_len {
        let o = frame.get(at..at + 4).ok_or(DecapError::Truncated)?;
        let class = u16::from_be_bytes([o[0], o[1]]);
        let ty = o[2];
        let len = usize::from(o[3] & 0x1f) * 4;
        let data = frame
            .get(at + 4..at + 4 + len)
            .ok_or(DecapError::Truncated)?;
        if at + 4 + len > g_at + 8 + opt_len {
            return Err(DecapError::Truncated);
        }
        if class == OVN_OPTION_CLASS && ty == OVN_OPTION_TYPE {
            if len != 4 {
                return Err(DecapError::BadOptionLength);
            }
            ovn = Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
        } else if ty & 0x80 != 0 {
            return Err(DecapError::UnknownCriticalOption);
        }
        at += 4 + len;
    }
    let value = ovn.ok_or(DecapError::MissingOvnOption)?;
    if udp_csum != 0 {
        let udp_bytes = &frame[udp_at..udp_at + udp_len];
        let mut acc = sum_words(&src_ip.octets(), 0);
        acc = sum_words(&dst_ip.octets(), acc);
        acc += 17 + udp_len as u64;
        acc = sum_words(udp_bytes, acc);
        if fold(acc) != 0xffff {
            return Err(DecapError::BadChecksum);
        }
    }
    Ok(Decapped {
        src_ip,
        dst_ip,
        meta: OvnMetadata {
            vni,
            inport_key: (value >> 16) & 0x7fff,
            outport_key: value & 0xffff,
        },
        inner_offset,
    })
}

/// Counters of packets decapsulation refused, by reason: a plain struct.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecapStats {
    pub ok: u64,
    pub not_geneve: u64,
    pub truncated: u64,
    pub bad_version: u64,
    pub not_ethernet: u64,
    pub unknown_critical_option: u64,
    pub bad_option_length: u64,
    pub missing_ovn_option: u64,
    pub bad_checksum: u64,
}

impl DecapStats {
    pub fn record(&mut self, r: &Result<Decapped, DecapError>) {
        let n = match r {
            Ok(_) => &mut self.ok,
            Err(DecapError::NotGeneve) => &mut self.not_geneve,
            Err(DecapError::Truncated) => &mut self.truncated,
            Err(DecapError::BadVersion) => &mut self.bad_version,
            Err(DecapError::NotEthernet) => &mut self.not_ethernet,
            Err(DecapError::UnknownCriticalOption) => &mut self.unknown_critical_option,
            Err(DecapError::BadOptionLength) => &mut self.bad_option_length,
            Err(DecapError::MissingOvnOption) => &mut self.missing_ovn_option,
            Err(DecapError::BadChecksum) => &mut self.bad_checksum,
        };
        *n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_keeps_every_carry() {
        for acc in [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0xffff_ffff,
            u64::MAX,
            u64::MAX - 1,
        ] {
            let mut slow = acc;
            while slow > 0xffff {
                slow = (slow & 0xffff) + (slow >> 16);
            }
            assert_eq!(u64::from(fold(acc)), slow, "{acc:#x}");
        }
    }

    #[test]
    fn sum_words_is_rfc1071() {
        // The sum as RFC 1071 writes it: big-endian 16-bit words, an odd
        // byte padded with zero, carries folded in.
        fn reference(data: &[u8]) -> u16 {
            let mut sum: u64 = 0;
            for pair in data.chunks(2) {
                sum += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            }
            fold(sum)
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300 {
            for fill in [None, Some(0x00), Some(0xff)] {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        fill.unwrap_or(x as u8)
                    })
                    .collect();
                assert_eq!(
                    sum_words(&data, 0),
                    u64::from(reference(&data)),
                    "{len} {fill:?}"
                );
                assert_eq!(sum_words(&data, 7), 7 + u64::from(reference(&data)));
            }
        }
    }

    fn params() -> EncapParams {
        EncapParams {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: Ipv4Addr::new(10, 99, 0, 2),
            dst_ip: Ipv4Addr::new(10, 99, 0, 1),
            ttl: 64,
            src_port: source_port(0x1234_5678),
            meta: OvnMetadata {
                vni: 3,
                inport_key: 1,
                outport_key: 2,
            },
        }
    }

    fn inner() -> Vec<u8> {
        (0..64u8).map(|b| b.wrapping_mul(7)).collect()
    }

    fn encap(inner: &[u8], p: &EncapParams) -> Vec<u8> {
        let mut frame = vec![0u8; ENCAP_LEN];
        assert!(write_headers(&mut frame, inner, p));
        frame.extend_from_slice(inner);
        frame
    }

    #[test]
    fn headers_are_byte_for_byte_what_ovs_sends() {
        let p = params();
        let inner = inner();
        let f = encap(&inner, &p);
        let want_prefix: [u8; 42 - 2] = [
            2,
            0,
            0,
            0,
            0,
            1, // dst MAC
            2,
            0,
            0,
            0,
            0,
            2, // src MAC
            0x08,
            0x00, // IPv4
            0x45,
            0x00, // v4, IHL 5, TOS 0
            0,
            20 + 8 + 16 + 64, // total length
            0,
            0, // identification 0
            0x40,
            0x00, // DF
            64,
            17, // TTL, UDP
            0,
            0, // checksum, checked below
            10,
            99,
            0,
            2, // src
            10,
            99,
            0,
            1, // dst
            0,
            0, // UDP source port, checked below
            0x17,
            0xc1, // 6081
            0,
            8 + 16 + 64, // UDP length
        ];
        let mut got = f[..40].to_vec();
        got[24..26].copy_from_slice(&[0, 0]);
        got[34..36].copy_from_slice(&[0, 0]);
        assert_eq!(got, want_prefix);
        // Geneve as the capture in the lab recipe shows it: version 0, two
        // words of options, C flag, Ethernet, VNI 3; class 0x0102, type
        // 0x80, length 1 word, data 00 01 00 02.
        assert_eq!(
            &f[42..58],
            &[2, 0x40, 0x65, 0x58, 0, 0, 3, 0, 0x01, 0x02, 0x80, 0x01, 0, 1, 0, 2]
        );
        assert_eq!(fold(sum_words(&f[14..34], 0)), 0xffff, "IPv4 checksum");
        let port = u16::from_be_bytes([f[34], f[35]]);
        assert!((32768..61000).contains(&port));
        assert_ne!(u16::from_be_bytes([f[40], f[41]]), 0, "UDP checksum set");
        assert_eq!(&f[58..], &inner[..]);
    }

    #[test]
    fn udp_checksum_checks_out_independently() {
        for len in [14usize, 15, 64, 65, 1400] {
            let inner: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let f = encap(&inner, &params());
            let h = etherparse::PacketHeaders::from_ethernet_slice(&f).unwrap();
            let Some(etherparse::NetHeaders::Ipv4(ip, _)) = &h.net else {
                panic!()
            };
            let Some(etherparse::TransportHeader::Udp(udp)) = &h.transport else {
                panic!()
            };
            let want = udp.calc_checksum_ipv4(ip, h.payload.slice()).unwrap();
            assert_eq!(udp.checksum, want, "inner of {len} bytes");
        }
    }

    #[test]
    fn templates_write_what_write_headers_writes() {
        let p = params();
        let t = HeaderTemplate::new(&p);
        for len in [0usize, 1, 14, 63, 64, 1400] {
            let inner: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
            for port in [32768u16, 40000, 60999] {
                let mut a = [0u8; ENCAP_LEN];
                let mut b = [0u8; ENCAP_LEN];
                let q = EncapParams {
                    src_port: port,
                    ..p
                };
                assert!(write_headers(&mut a, &inner, &q));
                assert!(t.write(&mut b, &inner, port));
                assert_eq!(a, b, "inner of {len} bytes, port {port}");
            }
        }
    }

    #[test]
    fn round_trip() {
        let p = params();
        let inner = inner();
        let f = encap(&inner, &p);
        let d = decap(&f).unwrap();
        assert_eq!(d.meta, p.meta);
        assert_eq!((d.src_ip, d.dst_ip), (p.src_ip, p.dst_ip));
        assert_eq!(&f[d.inner_offset..], &inner[..]);
    }

    #[test]
    fn each_defect_has_its_error() {
        let f = encap(&inner(), &params());
        let with = |at: usize, v: u8| {
            let mut g = f.clone();
            g[at] = v;
            g
        };
        assert_eq!(decap(&f[..30]), Err(DecapError::NotGeneve));
        assert_eq!(decap(&f[..60]), Err(DecapError::Truncated));
        assert_eq!(decap(&with(37, 0x00)), Err(DecapError::NotGeneve), "port");
        assert_eq!(decap(&with(42, 0x42)), Err(DecapError::BadVersion));
        assert_eq!(decap(&with(45, 0x00)), Err(DecapError::NotEthernet));
        assert_eq!(
            decap(&with(51, 0x03)),
            Err(DecapError::UnknownCriticalOption)
        );
        // A non-critical unknown option is skipped: then OVN's is missing.
        assert_eq!(decap(&with(52, 0x7f)), Err(DecapError::MissingOvnOption));
        assert_eq!(decap(&with(53, 0x00)), Err(DecapError::BadOptionLength));
        assert_eq!(decap(&with(70, 0xee)), Err(DecapError::BadChecksum));
        let mut stats = DecapStats::default();
        stats.record(&decap(&f));
        stats.record(&decap(&with(70, 0xee)));
        assert_eq!((stats.ok, stats.bad_checksum), (1, 1));
    }

    #[test]
    fn mangled_frames_never_panic() {
        let f = encap(&inner(), &params());
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut g = f.clone();
            g.truncate((x as usize) % (f.len() + 1));
            if !g.is_empty() {
                let at = (x >> 8) as usize % g.len();
                g[at] ^= (x >> 24) as u8;
            }
            let _ = decap(&g);
        }
    }

    #[test]
    fn source_port_spans_ovs_range() {
        assert_eq!(source_port(0), 32768);
        assert!(source_port(u32::MAX) < 61000);
        assert_ne!(source_port(1 << 31), source_port(1 << 30));
    }
}
