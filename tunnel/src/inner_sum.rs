//! The ones'-complement sum of an inner frame for the outer UDP checksum,
//! from its headers alone where its own checksums vouch for the rest
//! (what Linux calls local checksum offload): a TCP, UDP or ICMP segment
//! whose checksum is right sums, with its pseudo-header, to all ones, so
//! the segment's sum is the complement of the pseudo-header's and the
//! payload never needs reading. Frames it cannot vouch for that way
//! (fragments, IPv6 extension headers, UDP without a checksum, other
//! protocols, VLAN tags) are summed byte by byte.
//!
//! A segment whose own checksum is wrong makes the outer checksum wrong,
//! so the receiving kernel drops the datagram: the same end as the inner
//! packet's own receiver dropping it, one hop earlier.

use crate::geneve::{fold, sum_words};

/// The sum of `inner` added to `acc`, as `sum_words(inner, acc)` would
/// give it (folded the same way), for a frame that starts at an even
/// offset of the checksummed range.
pub fn inner_sum(inner: &[u8], acc: u64) -> u64 {
    // Reading the headers costs more than summing a small frame outright
    // (64-byte frames: 94 ns per packet on the seed's cross-node path
    // summed, 105 ns through the headers).
    if inner.len() < VOUCH_FROM {
        return sum_words(inner, acc);
    }
    match from_headers(inner) {
        Some(s) => acc + u64::from(fold(s)),
        None => sum_words(inner, acc),
    }
}

/// Frames from this long are summed from their headers where they can be.
const VOUCH_FROM: usize = 512;

/// The sum of a segment with a right checksum: the complement of its
/// pseudo-header's sum.
fn vouched(pseudo: u64) -> u64 {
    u64::from(!fold(pseudo))
}

fn from_headers(f: &[u8]) -> Option<u64> {
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let l3 = &f[14..];
    let (header_len, l4_end, proto, pseudo) = match ethertype {
        0x0800 => {
            let ihl = usize::from(*l3.first()? & 0x0f) * 4;
            if l3[0] >> 4 != 4 || ihl < 20 || l3.len() < ihl {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([l3[2], l3[3]]));
            // More fragments, or a fragment offset: not a whole segment.
            if total < ihl || total > l3.len() || l3[6] & 0x3f != 0 || l3[7] != 0 {
                return None;
            }
            let proto = l3[9];
            let pseudo = sum_words(&l3[12..20], u64::from(proto) + (total - ihl) as u64);
            (ihl, total, proto, pseudo)
        }
        0x86dd => {
            if l3.len() < 40 || l3[0] >> 4 != 6 {
                return None;
            }
            let total = 40 + usize::from(u16::from_be_bytes([l3[4], l3[5]]));
            if total > l3.len() {
                return None;
            }
            let proto = l3[6];
            let len = (total - 40) as u64;
            let pseudo = sum_words(&l3[8..40], u64::from(proto) + (len >> 16) + (len & 0xffff));
            (40, total, proto, pseudo)
        }
        _ => return None,
    };
    let l4 = &l3[header_len..l4_end];
    let segment = match proto {
        6 if l4.len() >= 20 => vouched(pseudo),
        17 if l4.len() >= 8 && l4[6..8] != [0, 0] => vouched(pseudo),
        // ICMPv4's checksum covers the message alone.
        1 if ethertype == 0x0800 && l4.len() >= 8 => 0xffff,
        58 if ethertype == 0x86dd && l4.len() >= 8 => vouched(pseudo),
        _ => return None,
    };
    // Ethernet and the network header as they are (a few words), the
    // segment vouched for, and any link-layer padding after it.
    let mut sum = sum_words(&f[..14 + header_len], 0) + segment;
    let padding = &l3[l4_end..];
    if !padding.is_empty() {
        let s = fold(sum_words(padding, 0));
        // An odd-length segment leaves the padding at an odd offset.
        sum += u64::from(if l4.len() & 1 == 1 { s.swap_bytes() } else { s });
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `proto` over IPv4 or IPv6 with `payload` bytes of
    /// payload and `pad` bytes of padding, its checksums right.
    fn frame(v6: bool, proto: u8, payload: usize, pad: usize, seed: u8) -> Vec<u8> {
        let mut f = vec![0x0a, 0, 0, 0, 0, 1, 0x0a, 0, 0, 0, 0, 2];
        let l4_header = match proto {
            6 => 20,
            _ => 8,
        };
        let mut l4: Vec<u8> = (0..l4_header + payload)
            .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
            .collect();
        let csum_at = match proto {
            6 => 16,
            17 => 6,
            _ => 2,
        };
        l4[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let (src, dst): (Vec<u8>, Vec<u8>) = if v6 {
            (
                (0..16u8).map(|i| i.wrapping_mul(seed)).collect(),
                (0..16u8).map(|i| i.wrapping_add(seed)).collect(),
            )
        } else {
            (vec![10, 0, 0, seed], vec![192, 168, seed, 3])
        };
        let len = l4.len() as u64;
        let pseudo = sum_words(&src, 0)
            + sum_words(&dst, 0)
            + u64::from(proto)
            + (len >> 16)
            + (len & 0xffff);
        let with_pseudo = proto != 1 || v6;
        let mut c = !fold(sum_words(&l4, if with_pseudo { pseudo } else { 0 }));
        if proto == 17 && c == 0 {
            c = 0xffff;
        }
        l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&src);
            f.extend_from_slice(&dst);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            f.extend_from_slice(&src);
            f.extend_from_slice(&dst);
            let h = !fold(sum_words(&f[14..34], 0));
            f[24..26].copy_from_slice(&h.to_be_bytes());
        }
        f.extend_from_slice(&l4);
        f.extend((0..pad).map(|i| (i as u8) ^ seed));
        f
    }

    /// A full-sized TCP/IPv4 frame.
    pub(super) fn frame_for_timing() -> Vec<u8> {
        frame(false, 6, 1448, 0, 9)
    }

    #[test]
    fn headers_give_the_sum_the_bytes_give() {
        for v6 in [false, true] {
            for proto in [6u8, 17, if v6 { 58 } else { 1 }] {
                for payload in [0, 1, 6, 7, 64, 1357, 1400] {
                    for pad in [0, 1, 5] {
                        for seed in [1u8, 7, 200] {
                            let f = frame(v6, proto, payload, pad, seed);
                            assert!(from_headers(&f).is_some(), "{v6} {proto} {payload}");
                            assert_eq!(
                                fold(from_headers(&f).unwrap() + 12345),
                                fold(sum_words(&f, 12345)),
                                "from the headers: v6 {v6} proto {proto} payload {payload} pad {pad}"
                            );
                            assert_eq!(
                                fold(inner_sum(&f, 12345)),
                                fold(sum_words(&f, 12345)),
                                "v6 {v6} proto {proto} payload {payload} pad {pad} seed {seed}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn what_cannot_be_vouched_for_is_summed() {
        let mut f = frame(false, 17, 10, 0, 3);
        f[40..42].copy_from_slice(&[0, 0]); // UDP without a checksum
        assert!(from_headers(&f).is_none());
        assert_eq!(fold(inner_sum(&f, 0)), fold(sum_words(&f, 0)));
        let mut f = frame(false, 6, 10, 0, 3);
        f[20] = 0x20; // more fragments
        assert!(from_headers(&f).is_none());
        for short in [&[][..], &[0u8; 13][..], &f[..20]] {
            assert!(from_headers(short).is_none());
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// `cargo test --release -p ironflow-tunnel inner_sum_rate --
    /// --ignored --nocapture`: a full-sized TCP frame summed byte by byte
    /// and from its headers.
    #[test]
    #[ignore]
    fn inner_sum_rate() {
        let f = super::tests::frame_for_timing();
        let n = 2_000_000u32;
        let t = std::time::Instant::now();
        let mut x = 0u64;
        for i in 0..n {
            x = x.wrapping_add(sum_words(std::hint::black_box(&f), u64::from(i)));
        }
        let bytes = t.elapsed().as_nanos() as f64 / f64::from(n);
        let t = std::time::Instant::now();
        for i in 0..n {
            x = x.wrapping_add(inner_sum(std::hint::black_box(&f), u64::from(i)));
        }
        let headers = t.elapsed().as_nanos() as f64 / f64::from(n);
        eprintln!(
            "{}-byte TCP frame: {bytes:.1} ns summed byte by byte, {headers:.1} ns from its headers ({x})",
            f.len()
        );
    }
}
