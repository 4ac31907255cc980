//! The datapath flow key: the fixed-layout summary of a packet that the
//! caches hash and the megaflow masks cover (OVS's `struct flow`).
//!
//! It is an array of `u64` words so that masking is a word-wise AND and
//! hashing a word-wise mix; the layout below groups fields that are
//! consulted together into the same words. IPv4 and IPv6 addresses share
//! the 128-bit address slots (an IPv4 or ARP address sits in the low 32
//! bits), as ICMP type/code share the transport port slots and ND link-layer
//! addresses share the ARP hardware-address slots: the Ethernet type and
//! protocol, which every such match also consults, keep them apart.
//!
//! Logical metadata (registers, logical ports, flags) is not here: on the
//! first pass it follows from the input port, and after a recirculation it
//! is part of the frozen state the recirculation id names.

use std::fmt;

/// Number of 64-bit words in a [`FlowKey`].
pub const WORDS: usize = 18;

/// A packet's flow key, or a mask over flow keys (ones = bits that count).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C, align(8))]
pub struct FlowKey {
    pub words: [u64; WORDS],
}

/// A field's place: `bits` wide at bit `shift` of word `word` (two words,
/// high first, for 128-bit fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub word: usize,
    pub shift: u32,
    pub bits: u32,
}

const fn slot(word: usize, shift: u32, bits: u32) -> Slot {
    Slot { word, shift, bits }
}

/// Where every field lives.
pub mod slots {
    use super::{slot, Slot};
    /// The datapath port the packet came in on (0 after a recirculation).
    pub const IN_PORT: Slot = slot(0, 0, 32);
    /// 0 on the first pass; else which frozen state the packet resumes.
    pub const RECIRC_ID: Slot = slot(0, 32, 32);
    pub const VLAN_TCI: Slot = slot(1, 0, 16);
    pub const ETH_SRC: Slot = slot(1, 16, 48);
    pub const ETH_TYPE: Slot = slot(2, 0, 16);
    pub const ETH_DST: Slot = slot(2, 16, 48);
    pub const IP_PROTO: Slot = slot(3, 0, 8);
    pub const IP_TOS: Slot = slot(3, 8, 8);
    pub const IP_TTL: Slot = slot(3, 16, 8);
    /// Bit 0: a fragment; bit 1: a later fragment.
    pub const IP_FRAG: Slot = slot(3, 24, 8);
    /// TCP/UDP/SCTP source port, or ICMP type.
    pub const TP_SRC: Slot = slot(3, 32, 16);
    /// TCP/UDP/SCTP destination port, or ICMP code.
    pub const TP_DST: Slot = slot(3, 48, 16);
    /// IPv6 source, or IPv4/ARP sender address in the low 32 bits.
    pub const IP_SRC: Slot = slot(4, 0, 128);
    /// IPv6 destination, or IPv4/ARP target address in the low 32 bits.
    pub const IP_DST: Slot = slot(6, 0, 128);
    pub const ARP_OP: Slot = slot(8, 0, 16);
    pub const TCP_FLAGS: Slot = slot(8, 16, 16);
    pub const IP6_LABEL: Slot = slot(8, 32, 32);
    /// ARP sender hardware address, or ND source link-layer address.
    pub const ARP_SHA: Slot = slot(9, 0, 48);
    /// ARP target hardware address, or ND target link-layer address.
    pub const ARP_THA: Slot = slot(10, 0, 48);
    pub const ND_TARGET: Slot = slot(11, 0, 128);
    pub const CT_STATE: Slot = slot(13, 0, 32);
    pub const CT_MARK: Slot = slot(13, 32, 32);
    pub const CT_LABEL: Slot = slot(14, 0, 128);
    /// Outer IPv4 source of a decapsulated packet (which chassis sent it).
    pub const TUN_SRC: Slot = slot(16, 0, 32);
    /// Geneve VNI: the logical datapath's tunnel key.
    pub const TUN_VNI: Slot = slot(16, 32, 32);
    /// OVN's Geneve option: ingress port key << 16 | egress port key.
    pub const TUN_OPT: Slot = slot(17, 0, 32);
    pub const PKT_MARK: Slot = slot(17, 32, 32);
}

impl Slot {
    /// All ones over the field.
    pub const fn ones(self) -> u128 {
        if self.bits >= 128 {
            u128::MAX
        } else {
            (1u128 << self.bits) - 1
        }
    }
}

impl FlowKey {
    pub const ZERO: FlowKey = FlowKey { words: [0; WORDS] };

    #[inline]
    pub fn get(&self, s: Slot) -> u128 {
        if s.bits > 64 {
            (u128::from(self.words[s.word]) << 64) | u128::from(self.words[s.word + 1])
        } else {
            u128::from((self.words[s.word] >> s.shift) & (s.ones() as u64))
        }
    }

    /// Stores `value` (truncated to the field's width).
    #[inline]
    pub fn set(&mut self, s: Slot, value: u128) {
        if s.bits > 64 {
            self.words[s.word] = (value >> 64) as u64;
            self.words[s.word + 1] = value as u64;
        } else {
            let m = (s.ones() as u64) << s.shift;
            let w = &mut self.words[s.word];
            *w = (*w & !m) | (((value as u64) << s.shift) & m);
        }
    }

    /// ORs `mask` into the field (for building masks).
    #[inline]
    pub fn or(&mut self, s: Slot, mask: u128) {
        let v = self.get(s) | (mask & s.ones());
        self.set(s, v);
    }

    /// `self & mask`, word by word.
    #[inline]
    pub fn masked(&self, mask: &FlowKey) -> FlowKey {
        let mut out = FlowKey::ZERO;
        for ((o, k), m) in out.words.iter_mut().zip(&self.words).zip(&mask.words) {
            *o = k & m;
        }
        out
    }

    /// Whether `self` and `other` agree on every bit of `mask`.
    #[inline]
    pub fn matches(&self, other: &FlowKey, mask: &FlowKey) -> bool {
        self.words
            .iter()
            .zip(&other.words)
            .zip(&mask.words)
            .all(|((a, b), m)| (a ^ b) & m == 0)
    }

    pub fn in_port(&self) -> u32 {
        self.get(slots::IN_PORT) as u32
    }

    pub fn recirc_id(&self) -> u32 {
        self.get(slots::RECIRC_ID) as u32
    }

    pub fn eth_type(&self) -> u16 {
        self.get(slots::ETH_TYPE) as u16
    }

    pub fn ip_proto(&self) -> u8 {
        self.get(slots::IP_PROTO) as u8
    }

    /// Whether the address slots hold IPv4 (or ARP) addresses.
    pub fn is_ipv4_like(&self) -> bool {
        matches!(self.eth_type(), 0x0800 | 0x0806)
    }
}

impl fmt::Debug for FlowKey {
    /// Only the words that are not zero, as `wN=hex`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_map();
        for (i, w) in self.words.iter().enumerate().filter(|(_, w)| **w != 0) {
            list.entry(&format_args!("w{i}"), &format_args!("{w:#x}"));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap() {
        let all = [
            slots::IN_PORT,
            slots::RECIRC_ID,
            slots::VLAN_TCI,
            slots::ETH_SRC,
            slots::ETH_TYPE,
            slots::ETH_DST,
            slots::IP_PROTO,
            slots::IP_TOS,
            slots::IP_TTL,
            slots::IP_FRAG,
            slots::TP_SRC,
            slots::TP_DST,
            slots::IP_SRC,
            slots::IP_DST,
            slots::ARP_OP,
            slots::TCP_FLAGS,
            slots::IP6_LABEL,
            slots::ARP_SHA,
            slots::ARP_THA,
            slots::ND_TARGET,
            slots::CT_STATE,
            slots::CT_MARK,
            slots::CT_LABEL,
            slots::TUN_SRC,
            slots::TUN_VNI,
            slots::TUN_OPT,
            slots::PKT_MARK,
        ];
        let mut seen = FlowKey::ZERO;
        for s in all {
            let mut one = FlowKey::ZERO;
            one.set(s, u128::MAX);
            assert_eq!(one.get(s), s.ones(), "{s:?} round-trips");
            assert!(
                seen.words.iter().zip(&one.words).all(|(a, b)| a & b == 0),
                "{s:?} overlaps an earlier field"
            );
            for (a, b) in seen.words.iter_mut().zip(&one.words) {
                *a |= b;
            }
        }
    }

    #[test]
    fn set_truncates_and_keeps_neighbours() {
        let mut k = FlowKey::ZERO;
        k.set(slots::ETH_TYPE, 0x0800);
        k.set(slots::ETH_DST, 0xffff_0a00_0000_0001);
        assert_eq!(k.get(slots::ETH_DST), 0x0a00_0000_0001);
        assert_eq!(k.eth_type(), 0x0800);
        k.set(slots::IP_SRC, 0xc0a8_0203);
        assert_eq!(k.get(slots::IP_SRC), 0xc0a8_0203);
        let mut mask = FlowKey::ZERO;
        mask.or(slots::ETH_TYPE, u128::MAX);
        let mut other = k;
        other.set(slots::IP_SRC, 1);
        assert!(k.matches(&other, &mask));
        mask.or(slots::IP_SRC, 0xffff_ffff);
        assert!(!k.matches(&other, &mask));
    }
}
