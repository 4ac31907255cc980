//! Internet checksums (RFC 1071) with incremental updates (RFC 1624), and
//! the CRC32c that SCTP carries instead.
//!
//! The fast path never recomputes a checksum from scratch: a rewrite knows
//! the old and new bytes of the field it changes, and RFC 1624's equation 3
//! (`HC' = ~(~HC + ~m + m')`) folds the difference into the stored value in
//! a handful of instructions. The full computations here serve the slow
//! path (packets the controller builds) and tests that check the
//! incremental results.

/// Folds a 32-bit ones'-complement accumulator into 16 bits.
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Adds `data`, as big-endian 16-bit words, to a ones'-complement
/// accumulator (an odd last byte is padded with zero, as RFC 1071 says).
///
/// The accumulator is 64 bits wide so that no carry is lost on any packet
/// a frame can hold; fold it with [`fold64`].
pub fn sum_bytes(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a 64-bit accumulator from [`sum_bytes`] into 16 bits.
#[inline]
pub fn fold64(acc: u64) -> u16 {
    let s = (acc & 0xffff_ffff) + (acc >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    fold(((s & 0xffff_ffff) + (s >> 32)) as u32)
}

/// The Internet checksum of `data` (the value to store in the header).
pub fn checksum(data: &[u8]) -> u16 {
    !fold64(sum_bytes(data, 0))
}

/// The accumulator of the IPv4 pseudo-header for TCP/UDP.
pub fn pseudo_header_v4(src: u32, dst: u32, proto: u8, l4_len: u16) -> u64 {
    u64::from(src >> 16)
        + u64::from(src & 0xffff)
        + u64::from(dst >> 16)
        + u64::from(dst & 0xffff)
        + u64::from(proto)
        + u64::from(l4_len)
}

/// The accumulator of the IPv6 pseudo-header for TCP/UDP/ICMPv6.
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u64 {
    let acc = sum_bytes(src, 0);
    let acc = sum_bytes(dst, acc);
    acc + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff) + u64::from(proto)
}

/// Updates a stored checksum for one 16-bit word changing from `old` to
/// `new` (RFC 1624, eqn. 3).
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(!old) + u32::from(new))
}

/// Updates a stored checksum for a 32-bit (two-word) change.
#[inline]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    // Each term is below 2^16, so five of them cannot overflow 32 bits.
    let sum = u32::from(!csum) + (!old >> 16) + (!old & 0xffff) + (new >> 16) + (new & 0xffff);
    !fold(sum)
}

/// Updates a stored checksum for a 128-bit (eight-word) change.
#[inline]
pub fn update128(csum: u16, old: u128, new: u128) -> u16 {
    // Summing the words of a u128 in two u64 halves, each split into
    // 32-bit quarters, keeps every partial sum far from overflow.
    let words = |v: u128| -> u64 {
        let hi = (v >> 64) as u64;
        let lo = v as u64;
        (hi >> 32) + (hi & 0xffff_ffff) + (lo >> 32) + (lo & 0xffff_ffff)
    };
    let acc = u64::from(!csum) + words(!old) + words(new);
    !fold64(acc)
}

/// Updates a stored checksum for bytes `old` becoming `new` (same length,
/// even, starting at an even offset of the checksummed data).
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut acc = u64::from(!csum);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
    }
    !fold64(acc)
}

/// CRC32c (Castagnoli, reflected, as SCTP uses it, RFC 9260 appendix A)
/// over `data`; SCTP stores the result in little-endian byte order.
pub fn crc32c(data: &[u8]) -> u32 {
    let table = crc32c_table();
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

fn crc32c_table() -> &'static [u32; 256] {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold64(sum_bytes(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
        // Odd length pads with a zero byte.
        assert_eq!(fold64(sum_bytes(&[0x12], 0)), 0x1200);
    }

    #[test]
    fn incremental_matches_full() {
        let mut data: Vec<u8> = (0u8..40).map(|i| i.wrapping_mul(37)).collect();
        let c0 = checksum(&data);
        let old = u16::from_be_bytes([data[4], data[5]]);
        data[4..6].copy_from_slice(&0xbeefu16.to_be_bytes());
        assert_eq!(update16(c0, old, 0xbeef), checksum(&data));

        let c1 = checksum(&data);
        let old = u32::from_be_bytes(data[8..12].try_into().unwrap());
        data[8..12].copy_from_slice(&0xc0a8_0101u32.to_be_bytes());
        assert_eq!(update32(c1, old, 0xc0a8_0101), checksum(&data));

        let c2 = checksum(&data);
        let old = u128::from_be_bytes(data[16..32].try_into().unwrap());
        let new = 0xfe80_0000_0000_0000_0000_0000_dead_beefu128;
        data[16..32].copy_from_slice(&new.to_be_bytes());
        assert_eq!(update128(c2, old, new), checksum(&data));

        let c3 = checksum(&data);
        let old: Vec<u8> = data[32..38].to_vec();
        data[32..38].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(update_bytes(c3, &old, &data[32..38]), checksum(&data));
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 3: the rest sums to 0xcd7a and m goes from
        // 0x5555 to 0x3285; the right answer is 0x0000, not 0xffff.
        let c = checksum(&[0xcd, 0x7a, 0x55, 0x55]);
        assert_eq!(c, 0xdd2f);
        assert_eq!(update16(c, 0x5555, 0x3285), 0x0000);
        assert_eq!(checksum(&[0xcd, 0x7a, 0x32, 0x85]), 0x0000);
    }

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C over "123456789".
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }
}
