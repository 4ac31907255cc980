//! Megaflows as text, in the layout of `ovs-appctl dpctl/dump-flows`, so
//! that OVS users read `ironflow flows` without a legend: only the fields a
//! megaflow matches are shown, each with its mask when it is partial.

use crate::exec::{Exec, Flow};
use crate::flow::{slots, FlowKey, Slot};
use ironflow_pipeline::dpaction::CtNat;
use ironflow_pipeline::lflow::symbols::KeyField;
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

fn mac(v: u128) -> String {
    let b = (v as u64).to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

type Show = fn(u128) -> String;

/// A field's value, with its mask when partial; `None` if unmatched.
fn value(key: &FlowKey, mask: &FlowKey, slot: Slot, show: Show) -> Option<String> {
    let m = mask.get(slot);
    if m == 0 {
        return None;
    }
    let v = key.get(slot);
    Some(if m == slot.ones() {
        show(v)
    } else {
        format!("{}/{}", show(v), show(m))
    })
}

fn dec(v: u128) -> String {
    v.to_string()
}

fn hex(v: u128) -> String {
    format!("{v:#x}")
}

fn ip4(v: u128) -> String {
    Ipv4Addr::from(v as u32).to_string()
}

fn ip6(v: u128) -> String {
    Ipv6Addr::from(v).to_string()
}

/// The match part of a megaflow.
pub fn format_match(key: &FlowKey, mask: &FlowKey) -> String {
    let mut parts: Vec<String> = Vec::new();
    let single: [(&str, Slot, Show); 10] = [
        ("recirc_id", slots::RECIRC_ID, hex),
        ("in_port", slots::IN_PORT, dec),
        ("tun_id", slots::TUN_VNI, hex),
        ("tun_src", slots::TUN_SRC, ip4),
        ("tun_opt", slots::TUN_OPT, hex),
        ("ct_state", slots::CT_STATE, hex),
        ("ct_mark", slots::CT_MARK, hex),
        ("ct_label", slots::CT_LABEL, hex),
        ("eth_type", slots::ETH_TYPE, |v| format!("0x{v:04x}")),
        ("tcp_flags", slots::TCP_FLAGS, hex),
    ];
    let mut group = |name: &str, fields: &[(&str, Slot, Show)]| {
        let inner: Vec<String> = fields
            .iter()
            .filter_map(|(n, s, show)| value(key, mask, *s, *show).map(|v| format!("{n}={v}")))
            .collect();
        if !inner.is_empty() {
            parts.push(format!("{name}({})", inner.join(",")));
        }
    };
    group(
        "eth",
        &[("src", slots::ETH_SRC, mac), ("dst", slots::ETH_DST, mac)],
    );
    group("vlan", &[("tci", slots::VLAN_TCI, hex)]);
    // IPv4 addresses are the low 32 bits of the address slots.
    let (src4, dst4) = (
        Slot {
            word: slots::IP_SRC.word + 1,
            shift: 0,
            bits: 32,
        },
        Slot {
            word: slots::IP_DST.word + 1,
            shift: 0,
            bits: 32,
        },
    );
    let ip = |show: Show, v4: bool| {
        [
            ("src", if v4 { src4 } else { slots::IP_SRC }, show),
            ("dst", if v4 { dst4 } else { slots::IP_DST }, show),
            ("proto", slots::IP_PROTO, dec as Show),
            ("tos", slots::IP_TOS, hex as Show),
            ("ttl", slots::IP_TTL, dec as Show),
            ("frag", slots::IP_FRAG, dec as Show),
        ]
    };
    match key.eth_type() {
        0x0800 => group("ipv4", &ip(ip4, true)),
        0x86dd => group("ipv6", &ip(ip6, false)),
        0x0806 => group(
            "arp",
            &[
                ("sip", src4, ip4),
                ("tip", dst4, ip4),
                ("op", slots::ARP_OP, dec),
                ("sha", slots::ARP_SHA, mac),
                ("tha", slots::ARP_THA, mac),
            ],
        ),
        _ => {}
    }
    if matches!(key.eth_type(), 0x0800 | 0x86dd) {
        let ports = [
            ("src", slots::TP_SRC, dec as Show),
            ("dst", slots::TP_DST, dec as Show),
        ];
        let icmp = [
            ("type", slots::TP_SRC, dec as Show),
            ("code", slots::TP_DST, dec as Show),
        ];
        match key.ip_proto() {
            6 => group("tcp", &ports),
            17 => group("udp", &ports),
            132 => group("sctp", &ports),
            1 => group("icmp", &icmp),
            58 => group("icmpv6", &icmp),
            _ => {}
        }
    }
    let mut head: Vec<String> = single
        .iter()
        .filter_map(|(n, s, show)| value(key, mask, *s, *show).map(|v| format!("{n}({v})")))
        .collect();
    head.extend(parts);
    head.join(",")
}

fn field_name(f: KeyField) -> &'static str {
    match f {
        KeyField::EthSrc => "eth(src",
        KeyField::EthDst => "eth(dst",
        KeyField::Nw4Src | KeyField::Ip6Src => "ip(src",
        KeyField::Nw4Dst | KeyField::Ip6Dst => "ip(dst",
        KeyField::IpTtl => "ip(ttl",
        KeyField::IpTos => "ip(tos",
        KeyField::TpSrc => "l4(src",
        KeyField::TpDst => "l4(dst",
        KeyField::ArpOp => "arp(op",
        KeyField::ArpSha => "arp(sha",
        KeyField::ArpTha => "arp(tha",
        KeyField::NdTarget => "nd(target",
        KeyField::VlanTci => "vlan(tci",
        _ => "field(",
    }
}

/// The actions part of a megaflow.
pub fn format_actions(flow: &Flow) -> String {
    if flow.actions.is_empty() {
        return "drop".to_string();
    }
    let mut parts = Vec::new();
    for a in flow.actions.iter() {
        let mut s = String::new();
        match a {
            Exec::Set(f, v) => {
                let value = match f {
                    KeyField::EthSrc | KeyField::EthDst | KeyField::ArpSha | KeyField::ArpTha => {
                        mac(*v)
                    }
                    KeyField::Nw4Src | KeyField::Nw4Dst => ip4(*v),
                    KeyField::Ip6Src | KeyField::Ip6Dst | KeyField::NdTarget => ip6(*v),
                    _ => v.to_string(),
                };
                let _ = write!(s, "set({}={value}))", field_name(*f));
            }
            Exec::DecTtl => s.push_str("dec_ttl"),
            Exec::Output(p) => {
                let _ = write!(s, "{p}");
            }
            Exec::Tunnel(t) => {
                let e = &t.encap;
                let _ = write!(
                    s,
                    "tnl_push(tnl_port(genev_sys_6081),header(eth(dst={},src={}),ipv4(src={},dst={}),udp(dst=6081),geneve(vni={:#x},options({{class=0x102,type=0x80,len=4,{:#010x}}})))),{}",
                    mac_bytes(&e.dst_mac),
                    mac_bytes(&e.src_mac),
                    e.src_ip,
                    e.dst_ip,
                    e.vni,
                    (e.inport_key << 16) | e.outport_key,
                    e.port
                );
            }
            Exec::Ct(ct) => {
                let mut args = Vec::new();
                if ct.commit {
                    args.push("commit".to_string());
                }
                args.push(format!("zone={}", ct.zone));
                if let Some((v, m)) = ct.mark {
                    args.push(format!("mark={v:#x}/{m:#x}"));
                }
                if let Some((v, m)) = ct.label {
                    args.push(format!("label={v:#x}/{m:#x}"));
                }
                match &ct.nat {
                    None => {}
                    Some(CtNat::Existing) => args.push("nat".into()),
                    Some(CtNat::Src(r)) => args.push(format!("nat(src={})", range(r))),
                    Some(CtNat::Dst(r)) => args.push(format!("nat(dst={})", range(r))),
                    Some(CtNat::DstSelect(b)) => args.push(format!("nat(lb={} backends)", b.len())),
                }
                let _ = write!(s, "ct({})", args.join(","));
            }
            Exec::CtClear => s.push_str("ct_clear"),
            Exec::Recirc(id) => {
                let _ = write!(s, "recirc({id:#x})");
            }
            Exec::Controller => s.push_str("userspace(controller)"),
        }
        parts.push(s);
    }
    parts.join(",")
}

fn range(r: &ironflow_pipeline::dpaction::NatRange) -> String {
    let show = |a: u128| if r.ipv6 { ip6(a) } else { ip4(a) };
    let mut s = show(r.addr_min);
    if r.addr_max != r.addr_min {
        s = format!("{s}-{}", show(r.addr_max));
    }
    if let Some((lo, hi)) = r.ports {
        s = format!("{s}:{lo}-{hi}");
    }
    s
}

fn mac_bytes(b: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

/// One megaflow as `ovs-appctl dpctl/dump-flows` prints it.
pub fn format_megaflow(key: &FlowKey, mask: &FlowKey, flow: &Flow, hits: u64) -> String {
    format!(
        "{}, packets:{hits}, actions:{}",
        format_match(key, mask),
        format_actions(flow)
    )
}
