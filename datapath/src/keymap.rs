//! Between the datapath's flow key and the pipeline's logical key: the
//! slow path runs the interpreter on the logical view of a packet, and its
//! answer's mask comes back as a flow-key mask for the megaflow.

use crate::flow::{slots, FlowKey, Slot};
use ironflow_pipeline::classifier::{Key, ZERO_KEY};
use ironflow_pipeline::lflow::symbols::KeyField;

/// Header and conntrack fields that sit in one flow-key slot each.
const DIRECT: [(KeyField, Slot); 18] = [
    (KeyField::EthSrc, slots::ETH_SRC),
    (KeyField::EthDst, slots::ETH_DST),
    (KeyField::EthType, slots::ETH_TYPE),
    (KeyField::VlanTci, slots::VLAN_TCI),
    (KeyField::IpProto, slots::IP_PROTO),
    (KeyField::IpTos, slots::IP_TOS),
    (KeyField::IpTtl, slots::IP_TTL),
    (KeyField::IpFrag, slots::IP_FRAG),
    (KeyField::Ip6Label, slots::IP6_LABEL),
    (KeyField::ArpOp, slots::ARP_OP),
    (KeyField::ArpSha, slots::ARP_SHA),
    (KeyField::ArpTha, slots::ARP_THA),
    (KeyField::NdTarget, slots::ND_TARGET),
    (KeyField::TpSrc, slots::TP_SRC),
    (KeyField::TpDst, slots::TP_DST),
    (KeyField::TcpFlags, slots::TCP_FLAGS),
    (KeyField::CtState, slots::CT_STATE),
    (KeyField::CtMark, slots::CT_MARK),
];

/// Where a logical header field lives in the flow key; the two IPv4
/// fields are the low 32 bits of the shared address slots.
pub fn slot_of(field: KeyField) -> Option<Slot> {
    match field {
        KeyField::Nw4Src | KeyField::Ip6Src => Some(slots::IP_SRC),
        KeyField::Nw4Dst | KeyField::Ip6Dst => Some(slots::IP_DST),
        KeyField::CtLabel => Some(slots::CT_LABEL),
        KeyField::PktMark => Some(slots::PKT_MARK),
        f => DIRECT.iter().find(|(k, _)| *k == f).map(|(_, s)| *s),
    }
}

/// The logical view of a packet's headers and conntrack state (metadata
/// zero: the interpreter sets the entry's ports).
pub fn to_logical(fk: &FlowKey) -> Key {
    let mut key = ZERO_KEY;
    for (field, slot) in DIRECT {
        key[field.index()] = fk.get(slot);
    }
    key[KeyField::CtLabel.index()] = fk.get(slots::CT_LABEL);
    key[KeyField::PktMark.index()] = fk.get(slots::PKT_MARK);
    let (src, dst) = (fk.get(slots::IP_SRC), fk.get(slots::IP_DST));
    match fk.eth_type() {
        0x0800 | 0x0806 => {
            key[KeyField::Nw4Src.index()] = src & 0xffff_ffff;
            key[KeyField::Nw4Dst.index()] = dst & 0xffff_ffff;
        }
        0x86dd => {
            key[KeyField::Ip6Src.index()] = src;
            key[KeyField::Ip6Dst.index()] = dst;
        }
        _ => {}
    }
    key
}

/// The flow-key mask for a logical mask. The input port and
/// recirculation id always count: they stand for the metadata.
pub fn to_flow_mask(mask: &Key) -> FlowKey {
    let mut fm = FlowKey::ZERO;
    for (field, slot) in DIRECT {
        fm.or(slot, mask[field.index()]);
    }
    fm.or(slots::CT_LABEL, mask[KeyField::CtLabel.index()]);
    fm.or(slots::PKT_MARK, mask[KeyField::PktMark.index()]);
    fm.or(
        slots::IP_SRC,
        (mask[KeyField::Nw4Src.index()] & 0xffff_ffff) | mask[KeyField::Ip6Src.index()],
    );
    fm.or(
        slots::IP_DST,
        (mask[KeyField::Nw4Dst.index()] & 0xffff_ffff) | mask[KeyField::Ip6Dst.index()],
    );
    // The address slots mean IPv4 or IPv6 by the Ethernet type.
    if fm.get(slots::IP_SRC) != 0 || fm.get(slots::IP_DST) != 0 {
        fm.or(slots::ETH_TYPE, u128::MAX);
    }
    fm.or(slots::IN_PORT, u128::MAX);
    fm.or(slots::RECIRC_ID, u128::MAX);
    fm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_ipv6_share_the_address_slots() {
        let mut fk = FlowKey::ZERO;
        fk.set(slots::ETH_TYPE, 0x0800);
        fk.set(slots::IP_SRC, 0xc0a8_0303);
        fk.set(slots::IP_TTL, 64);
        let key = to_logical(&fk);
        assert_eq!(key[KeyField::Nw4Src.index()], 0xc0a8_0303);
        assert_eq!(key[KeyField::Ip6Src.index()], 0);
        assert_eq!(key[KeyField::IpTtl.index()], 64);

        fk.set(slots::ETH_TYPE, 0x86dd);
        fk.set(slots::IP_SRC, 0xfe80 << 112 | 1);
        let key = to_logical(&fk);
        assert_eq!(key[KeyField::Nw4Src.index()], 0);
        assert_eq!(key[KeyField::Ip6Src.index()], 0xfe80 << 112 | 1);
    }

    #[test]
    fn masks_map_field_by_field() {
        let mut mask = ZERO_KEY;
        mask[KeyField::Nw4Dst.index()] = 0xffff_ff00;
        mask[KeyField::TpDst.index()] = 0xffff;
        mask[KeyField::Xxreg(0).index()] = u128::MAX;
        let fm = to_flow_mask(&mask);
        assert_eq!(fm.get(slots::IP_DST), 0xffff_ff00);
        assert_eq!(fm.get(slots::TP_DST), 0xffff);
        assert_eq!(fm.get(slots::ETH_TYPE), 0xffff);
        assert_eq!(fm.get(slots::IN_PORT), 0xffff_ffff);
        assert_eq!(fm.get(slots::IP_SRC), 0);
        assert_eq!(slot_of(KeyField::Nw4Src), Some(slots::IP_SRC));
        assert_eq!(slot_of(KeyField::Xxreg(0)), None);
    }
}
