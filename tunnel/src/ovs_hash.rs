//! The hash Open vSwitch's userspace datapath gives a packet's 5-tuple, so
//! that ironflow picks the same Geneve UDP source port as a stock chassis
//! for the same inner flow.
//!
//! Why it matters: the outer source port is the only entropy an ECMP
//! underlay or a receiving NIC's RSS sees in a tunnel. Matching OVS keeps a
//! flow on the same path and queue whichever kind of chassis sent it, and
//! lets the lab compare ironflow's frames with stock ones byte for byte.
//!
//! What OVS 3.1 does (read in `lib/netdev-native-tnl.[ch]`,
//! `lib/dpif-netdev.c`, `lib/flow.c`, `lib/dp-packet.h`, `lib/hash.h`):
//!
//! - The source port is `32768 + (hash * (61000 - 32768)) >> 32` of the
//!   packet's RSS hash ([`crate::geneve::source_port`]).
//! - Packets read from AF_PACKET (veth) ports carry no RSS hash from the
//!   kernel, so the datapath computes one when it first parses the packet
//!   and keeps it through header rewrites and conntrack recirculations (the
//!   recirculation depth is mixed only into the exact-match-cache key, not
//!   into the stored hash). So the port follows the packet as the pod sent
//!   it: routing's MAC and TTL rewrites are outside the hash anyway, and
//!   after a load balancer's DNAT the port is still that of the tuple to
//!   the VIP (seen on the wire): ironflow must hash the flow key it
//!   extracted at ingress, not the inner frame it tunnels.
//! - That hash is `flow_hash_5tuple(flow, 0)`: source and destination IPv4
//!   addresses (or the four 64-bit words of the IPv6 ones), the IP protocol,
//!   and — for TCP, UDP, SCTP, ICMP and ICMPv6 only — the 32-bit word of
//!   both ports (ICMP type and code), finished with 42. ARP counts as IPv4
//!   with its sender and target addresses and the opcode as protocol.
//! - Words are loaded from the packet in host order; this is the value an
//!   x86-64 or other little-endian host computes.
//! - The mixing functions are `lib/hash.h`'s portable Murmur3 variant, which
//!   is what distribution builds for generic x86-64 use (a build with
//!   SSE 4.2 enabled at compile time uses CRC32 instead and picks other
//!   ports; Debian's `ovs-vswitchd` has no CRC32 instruction in it).

/// Murmur3's per-word mixing, as OVS's `hash_add`: a zero word leaves the
/// state unmixed but still rotated and multiplied.
#[inline]
pub fn hash_add(hash: u32, data: u32) -> u32 {
    let mut h = hash;
    if data != 0 {
        let d = data
            .wrapping_mul(0xcc9e_2d51)
            .rotate_left(15)
            .wrapping_mul(0x1b87_3593);
        h ^= d;
    }
    h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

/// A 64-bit word: its low half, then its high half.
#[inline]
pub fn hash_add64(hash: u32, data: u64) -> u32 {
    hash_add(hash_add(hash, data as u32), (data >> 32) as u32)
}

/// Murmur3's finaliser over `hash ^ last`.
#[inline]
pub fn hash_finish(hash: u32, last: u32) -> u32 {
    let mut h = hash ^ last;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The addresses the 5-tuple hash covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowAddrs {
    /// Neither IPv4, ARP nor IPv6: only the finaliser runs.
    Other,
    /// IPv4 source and destination (ARP: sender and target).
    V4([u8; 4], [u8; 4]),
    /// IPv6 source and destination.
    V6([u8; 16], [u8; 16]),
}

/// The fields of a flow that `flow_hash_5tuple` reads, as OVS's flow
/// extraction leaves them: fields a packet does not have are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub addrs: FlowAddrs,
    /// IP protocol (IPv6: after extension headers; ARP: the opcode).
    pub proto: u8,
    /// TCP/UDP/SCTP ports; ICMP/ICMPv6 type and code.
    pub tp_src: u16,
    pub tp_dst: u16,
}

impl FiveTuple {
    pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, tp_src: u16, tp_dst: u16) -> FiveTuple {
        FiveTuple {
            addrs: FlowAddrs::V4(src, dst),
            proto,
            tp_src,
            tp_dst,
        }
    }
}

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_SCTP: u8 = 132;
const PROTO_ICMPV6: u8 = 58;

/// OVS's `flow_hash_5tuple(flow, basis)`.
pub fn flow_hash_5tuple(t: &FiveTuple, basis: u32) -> u32 {
    let mut hash = basis;
    match &t.addrs {
        FlowAddrs::Other => return hash_finish(hash, 42),
        FlowAddrs::V4(src, dst) => {
            hash = hash_add(hash, u32::from_le_bytes(*src));
            hash = hash_add(hash, u32::from_le_bytes(*dst));
        }
        FlowAddrs::V6(src, dst) => {
            for addr in [src, dst] {
                for half in addr.chunks_exact(8) {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(half);
                    hash = hash_add64(hash, u64::from_le_bytes(w));
                }
            }
        }
    }
    hash = hash_add(hash, u32::from(t.proto));
    if matches!(
        t.proto,
        PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_ICMP | PROTO_ICMPV6
    ) {
        // Both ports as the one word they share in OVS's flow.
        let [a, b] = t.tp_src.to_be_bytes();
        let [c, d] = t.tp_dst.to_be_bytes();
        hash = hash_add(hash, u32::from_le_bytes([a, b, c, d]));
    }
    hash_finish(hash, 42)
}

/// The hash OVS's datapath gives `frame` (an Ethernet frame) when it
/// arrives with no RSS hash: the UDP source port of its tunnel is
/// [`crate::geneve::source_port`] of this.
pub fn frame_hash(frame: &[u8]) -> u32 {
    flow_hash_5tuple(&five_tuple(frame), 0)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// The 5-tuple of an Ethernet frame as OVS's `miniflow_extract` leaves it:
/// one VLAN tag skipped (OVS's default `vlan-limit`), LLC/SNAP understood,
/// IPv4 and IPv6 checked for sane lengths (insane ones leave the fields
/// zero), IPv6 extension headers walked, no ports for later fragments or
/// transport headers too short to hold them. Never panics.
pub fn five_tuple(frame: &[u8]) -> FiveTuple {
    let none = FiveTuple {
        addrs: FlowAddrs::Other,
        proto: 0,
        tp_src: 0,
        tp_dst: 0,
    };
    if frame.len() < 14 {
        return none;
    }
    let mut at = 12;
    // One 802.1Q/802.1ad tag, when its 4 bytes and an EtherType follow.
    if matches!(be16(frame, at), Some(0x8100 | 0x88a8)) && frame.len() - at >= 6 {
        at += 4;
    }
    let Some(mut dl_type) = be16(frame, at) else {
        return none;
    };
    at += 2;
    if dl_type < 0x600 {
        // 802.2 LLC: only SNAP with an Ethernet OUI carries an EtherType.
        match frame.get(at..at + 8) {
            Some([0xaa, 0xaa, 0x03, 0, 0, 0, t0, t1]) => {
                dl_type = u16::from_be_bytes([*t0, *t1]);
                at += 8;
                if dl_type < 0x600 {
                    return none;
                }
            }
            _ => return none,
        }
    }
    let l3 = &frame[at..];
    match dl_type {
        0x0800 => ipv4_tuple(l3),
        0x86dd => ipv6_tuple(l3),
        0x0806 | 0x8035 => arp_tuple(l3),
        _ => none,
    }
}

fn zero_v4() -> FiveTuple {
    FiveTuple::ipv4([0; 4], [0; 4], 0, 0, 0)
}

fn ipv4_tuple(ip: &[u8]) -> FiveTuple {
    if ip.len() < 20 {
        return zero_v4();
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tot_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || ip.len() < ihl || tot_len > ip.len() || ihl > tot_len {
        return zero_v4();
    }
    let (Some(src), Some(dst)) = (array::<4>(ip, 12), array::<4>(ip, 16)) else {
        return zero_v4();
    };
    let proto = ip[9];
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    let later_fragment = frag & 0x1fff != 0;
    let (tp_src, tp_dst) = if later_fragment {
        (0, 0)
    } else {
        ports(proto, &ip[ihl..tot_len])
    };
    FiveTuple::ipv4(src, dst, proto, tp_src, tp_dst)
}

/// Ports (or ICMP type and code) as OVS extracts them from an L4 header.
fn ports(proto: u8, l4: &[u8]) -> (u16, u16) {
    let two = |min: usize| {
        if l4.len() >= min {
            (be16(l4, 0).unwrap_or(0), be16(l4, 2).unwrap_or(0))
        } else {
            (0, 0)
        }
    };
    match proto {
        PROTO_TCP => {
            // The data offset must be sane too.
            let off = l4.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
            if l4.len() >= 20 && off >= 20 && l4.len() >= off {
                two(20)
            } else {
                (0, 0)
            }
        }
        PROTO_UDP => two(8),
        PROTO_SCTP => two(12),
        PROTO_ICMP | PROTO_ICMPV6 if l4.len() >= 8 => (u16::from(l4[0]), u16::from(l4[1])),
        _ => (0, 0),
    }
}

fn ipv6_tuple(ip: &[u8]) -> FiveTuple {
    let zero = FiveTuple {
        addrs: FlowAddrs::V6([0; 16], [0; 16]),
        proto: 0,
        tp_src: 0,
        tp_dst: 0,
    };
    if ip.len() < 40 {
        return zero;
    }
    let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if plen + 40 > ip.len() {
        return zero;
    }
    let (Some(src), Some(dst)) = (array::<16>(ip, 8), array::<16>(ip, 24)) else {
        return zero;
    };
    let addrs = FlowAddrs::V6(src, dst);
    let mut rest = &ip[40..40 + plen];
    let mut proto = ip[6];
    let mut later_fragment = false;
    // Extension headers, as OVS walks them; a truncated one leaves the
    // protocol unset.
    loop {
        let pull = match proto {
            0 | 43 | 60 | 44 | 51 if rest.len() < 8 => None,
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => Some((rest[0], (usize::from(rest[1]) + 1) * 8)),
            // Authentication header: length in 4-byte units, minus 2.
            51 => Some((rest[0], (usize::from(rest[1]) + 2) * 4)),
            // Fragment.
            44 => {
                let offlg = u16::from_be_bytes([rest[2], rest[3]]);
                if offlg & 0xfff8 != 0 {
                    later_fragment = true;
                    proto = 44;
                    break;
                }
                Some((rest[0], 8))
            }
            _ => break,
        };
        // OVS has taken the addresses by now, not the protocol.
        let truncated = FiveTuple { addrs, ..zero };
        let Some((next, len)) = pull else {
            return truncated;
        };
        let Some(r) = rest.get(len..) else {
            return truncated;
        };
        rest = r;
        proto = next;
    }
    let (tp_src, tp_dst) = if later_fragment {
        (0, 0)
    } else {
        ports(proto, rest)
    };
    FiveTuple {
        addrs,
        proto,
        tp_src,
        tp_dst,
    }
}

fn arp_tuple(arp: &[u8]) -> FiveTuple {
    if arp.len() < 28
        || be16(arp, 0) != Some(1)
        || be16(arp, 2) != Some(0x0800)
        || arp[4] != 6
        || arp[5] != 4
    {
        // OVS keeps no addresses, but dl_type still says ARP.
        return zero_v4();
    }
    let op = u16::from_be_bytes([arp[6], arp[7]]);
    let (Some(spa), Some(tpa)) = (array::<4>(arp, 14), array::<4>(arp, 24)) else {
        return zero_v4();
    };
    let proto = u8::try_from(op).unwrap_or(0);
    FiveTuple::ipv4(spa, tpa, proto, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geneve::source_port;

    /// Values from an independent script written from the algorithm (not
    /// from this code): `hash_add(0, 0)` only rotates zero and adds the
    /// constant.
    #[test]
    fn mixing_steps() {
        assert_eq!(hash_add(0, 0), 0xe654_6b64);
        assert_eq!(hash_add(0, 1), 0x26cf_0576);
        assert_eq!(hash_finish(1, 0), 0x514e_28b7);
        assert_eq!(hash_finish(0, 0), 0);
        assert_eq!(hash_add64(7, 0x1_0000_0002), hash_add(hash_add(7, 2), 1));
    }

    /// The seed's web-1 -> sshd-2 flows, by the same script.
    #[test]
    fn seed_flows() {
        let (web, sshd) = ([192, 168, 3, 3], [192, 168, 2, 3]);
        for (proto, sport, dport, hash, port) in [
            (6, 40000, 22, 0xa96a_7a0f, 51451),
            (17, 5000, 22, 0x9524_3708, 49215),
            (1, 8, 0, 0xc9bb_e0c3, 55015),
        ] {
            let h = flow_hash_5tuple(&FiveTuple::ipv4(web, sshd, proto, sport, dport), 0);
            assert_eq!((h, source_port(h)), (hash, port), "proto {proto}");
        }
    }

    #[test]
    fn ports_stock_ovs_put_on_the_wire() {
        // Captured from Debian's OVS 3.1.0 (userspace datapath, AF_PACKET
        // pod port) by testbeds/tests/stock_geneve.rs: web-1's packets to
        // sshd-2, routed, in Geneve to another chassis. (The ICMP one was
        // predicted by the script of `seed_flows` before it was captured.)
        let (web, sshd) = ([192, 168, 3, 3], [192, 168, 2, 3]);
        for (sport, hash, port) in [
            (46962, 0xd01b_0384, 55718),
            (57780, 0x54ec_fdff, 42133),
            (57790, 0x9cd4_e499, 50063),
        ] {
            let h = flow_hash_5tuple(&FiveTuple::ipv4(web, sshd, 6, sport, 22), 0);
            assert_eq!((h, source_port(h)), (hash, port), "source port {sport}");
        }
        // A UDP datagram and an echo request (type 8, code 0 as the ports).
        let udp = flow_hash_5tuple(&FiveTuple::ipv4(web, sshd, 17, 41968, 22), 0);
        assert_eq!((udp, source_port(udp)), (0x21dd_730d, 36502));
        let icmp = flow_hash_5tuple(&FiveTuple::ipv4(web, sshd, 1, 8, 0), 0);
        assert_eq!((icmp, source_port(icmp)), (0xc9bb_e0c3, 55015));
        // A SYN to the seed's load balancer 172.30.0.10:22: OVS hashed the
        // tuple before the DNAT to sshd-2 (the hash is taken when the
        // packet enters the datapath and kept through ct(nat)).
        let lb = flow_hash_5tuple(&FiveTuple::ipv4(web, [172, 30, 0, 10], 6, 58290, 22), 0);
        assert_eq!((lb, source_port(lb)), (0x8d46_eba0, 48348));
    }

    #[test]
    fn arp_and_non_ip_hash_differently_from_zero_tuples() {
        let other = FiveTuple {
            addrs: FlowAddrs::Other,
            proto: 6,
            tp_src: 1,
            tp_dst: 2,
        };
        assert_eq!(flow_hash_5tuple(&other, 0), hash_finish(0, 42));
        // Protocols without ports stop after the protocol.
        let gre = FiveTuple::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 47, 9, 9);
        let want = hash_finish(
            hash_add(
                hash_add(hash_add(0, u32::from_le_bytes([1, 2, 3, 4])), 0x0807_0605),
                47,
            ),
            42,
        );
        assert_eq!(flow_hash_5tuple(&gre, 0), want);
    }

    fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let tcp = &mut f[34..];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x02;
        f
    }

    #[test]
    fn frames_parse_to_their_tuples() {
        let f = tcp_frame([192, 168, 3, 3], [192, 168, 2, 3], 40000, 22);
        assert_eq!(
            five_tuple(&f),
            FiveTuple::ipv4([192, 168, 3, 3], [192, 168, 2, 3], 6, 40000, 22)
        );
        // Padding after the IP packet is not the transport's.
        let mut padded = f.clone();
        padded.extend_from_slice(&[0xee; 10]);
        assert_eq!(frame_hash(&padded), frame_hash(&f));
        // A later fragment has no ports.
        let mut frag = f.clone();
        frag[20] = 0x00;
        frag[21] = 0x10;
        assert_eq!(five_tuple(&frag).tp_src, 0);
        // A TCP data offset below 5 words: no ports either.
        let mut bad = f.clone();
        bad[34 + 12] = 0x40;
        assert_eq!(five_tuple(&bad).tp_dst, 0);
        // A VLAN tag is skipped.
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&f[12..]);
        assert_eq!(frame_hash(&tagged), frame_hash(&f));
    }

    #[test]
    fn ipv6_walks_extension_headers() {
        let mut f = vec![0u8; 14 + 40 + 8 + 8];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&16u16.to_be_bytes());
        f[20] = 0; // hop-by-hop first
        f[22 + 15] = 1;
        f[38 + 15] = 2;
        f[54] = 17; // then UDP
        f[62..64].copy_from_slice(&5353u16.to_be_bytes());
        f[64..66].copy_from_slice(&53u16.to_be_bytes());
        let t = five_tuple(&f);
        assert_eq!((t.proto, t.tp_src, t.tp_dst), (17, 5353, 53));
        let FlowAddrs::V6(s, d) = t.addrs else {
            panic!("{t:?}")
        };
        assert_eq!((s[15], d[15]), (1, 2));
    }

    #[test]
    fn arp_uses_its_addresses_and_opcode() {
        let mut f = vec![0u8; 42];
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f[28..32].copy_from_slice(&[10, 0, 0, 1]);
        f[38..42].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(
            five_tuple(&f),
            FiveTuple::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 1, 0, 0)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let f = tcp_frame([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
        let mut x: u32 = 0x2545_f491;
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
            for ty in [[0x86, 0xdd], [0x08, 0x06], [0x00, 0x20]] {
                let mut h = g.clone();
                if h.len() >= 14 {
                    h[12..14].copy_from_slice(&ty);
                }
                let _ = frame_hash(&h);
            }
            let _ = frame_hash(&g);
        }
        let _ = source_port(frame_hash(&f));
    }
}
