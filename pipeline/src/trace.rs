//! `trace`: a microflow written as `ovn-trace` takes it, run through the
//! compiled program, and the result's header fields named as OVN names them.

use crate::classifier::{Key, ZERO_KEY};
use crate::interp::{ct_state, run, Outcome, SimulatedConntrack};
use crate::lflow::expr::parse_match;
use crate::lflow::names::DatapathNames;
use crate::lflow::normalize::normalize;
use crate::lflow::symbols::KeyField;
use crate::network::LogicalNetwork;
use crate::program::Program;
use std::net::{Ipv4Addr, Ipv6Addr};

/// What to trace.
pub struct TraceRequest<'a> {
    /// Logical switch or router, by name or UUID (prefix).
    pub datapath: &'a str,
    /// An OVN match of equalities that pins down one packet.
    pub microflow: &'a str,
    /// `ct_state` for each recirculation in turn (`--ct`).
    pub ct: Vec<u32>,
    /// `--lb-dst`: the backend a load balancer picks.
    pub lb_dst: Option<(u128, Option<u16>)>,
    /// The chassis the trace runs on: ports bound elsewhere are reached by
    /// tunnel. `None` treats every port as local, as `ovn-trace` does.
    pub chassis: Option<&'a str>,
}

/// Runs a trace; the error says what to fix in the request.
pub fn trace(
    program: &Program,
    net: &LogicalNetwork,
    req: &TraceRequest,
) -> Result<Outcome, String> {
    let dp = net
        .find_datapath(req.datapath)
        .ok_or_else(|| format!("no logical switch or router {:?}", req.datapath))?;
    let key = microflow_key(net, dp, req.microflow)?;
    let mut ct = SimulatedConntrack {
        states: req.ct.clone(),
        next: 0,
        lb_dst: req.lb_dst,
    };
    Ok(run(program, net, dp.uuid, key, &mut ct, req.chassis))
}

/// The key a microflow describes: every field it sets (with the
/// prerequisites its fields imply, as `ovn-trace` adds them), zero elsewhere.
pub fn microflow_key(
    net: &LogicalNetwork,
    dp: &crate::network::Datapath,
    text: &str,
) -> Result<Key, String> {
    let expr = parse_match(text).map_err(|e| format!("microflow: {e}"))?;
    let normal =
        normalize(&expr, &DatapathNames::new(net, dp)).map_err(|e| format!("microflow: {e}"))?;
    let conj = match normal.0.as_slice() {
        [one] => one,
        [] => return Err("microflow can never match (contradictory, or a port that is not on this datapath)".into()),
        many => {
            return Err(format!(
                "microflow must describe one packet, but it allows {} (say which, e.g. ip4 rather than ip)",
                many.len()
            ))
        }
    };
    let mut key = ZERO_KEY;
    for (field, m) in &conj.0 {
        key[field.index()] = m.value;
    }
    if key[KeyField::InPort.index()] == 0 {
        return Err("microflow needs the input port: inport == \"PORT\"".into());
    }
    Ok(key)
}

/// `--ct` flags: `new`, `est`, `rel`, `rpl`, `inv`, `trk`, `snat`, `dnat`
/// separated by `,`, spaces or `|` (`trk` is implied).
pub fn parse_ct_flags(text: &str) -> Result<u32, String> {
    text.split(|c: char| c == '|' || c == ',' || c.is_whitespace())
        .filter(|f| !f.is_empty())
        .try_fold(ct_state::TRK, |acc, flag| {
            let bit = match flag.trim() {
                "new" => ct_state::NEW,
                "est" => ct_state::EST,
                "rel" => ct_state::REL,
                "rpl" => ct_state::RPL,
                "inv" => ct_state::INV,
                "trk" => ct_state::TRK,
                "snat" => ct_state::SNAT,
                "dnat" => ct_state::DNAT,
                other => {
                    return Err(format!(
                        "unknown ct flag {other:?} (use new, est, rel, rpl, inv, trk, snat, dnat)"
                    ))
                }
            };
            Ok(acc | bit)
        })
}

/// A header field's value in its usual text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Mac(u64),
    Ip4(Ipv4Addr),
    Ip6(Ipv6Addr),
    Number(u128),
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Mac(m) => {
                let b = m.to_be_bytes();
                write!(
                    f,
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    b[2], b[3], b[4], b[5], b[6], b[7]
                )
            }
            FieldValue::Ip4(a) => write!(f, "{a}"),
            FieldValue::Ip6(a) => write!(f, "{a}"),
            FieldValue::Number(n) => write!(f, "{n}"),
        }
    }
}

/// What the transport slots (`tp_src`, `tp_dst`) are called for an IP
/// protocol.
fn l4_names(proto: u128, v6: bool) -> Option<(&'static str, &'static str)> {
    Some(match (proto, v6) {
        (6, _) => ("tcp.src", "tcp.dst"),
        (17, _) => ("udp.src", "udp.dst"),
        (132, _) => ("sctp.src", "sctp.dst"),
        (1, false) => ("icmp4.type", "icmp4.code"),
        (58, true) => ("icmp6.type", "icmp6.code"),
        _ => return None,
    })
}

/// Every header field the packet has, by OVN name, in a stable order.
pub fn header_fields(key: &Key) -> Vec<(&'static str, FieldValue)> {
    use FieldValue::*;
    let k = |f: KeyField| key[f.index()];
    let mac = |f: KeyField| Mac(k(f) as u64);
    let ip4 = |f: KeyField| Ip4(Ipv4Addr::from(k(f) as u32));
    let ip6 = |f: KeyField| Ip6(Ipv6Addr::from(k(f)));
    let mut out = vec![
        ("eth.src", mac(KeyField::EthSrc)),
        ("eth.dst", mac(KeyField::EthDst)),
        ("eth.type", Number(k(KeyField::EthType))),
    ];
    let v6 = match k(KeyField::EthType) {
        0x800 => false,
        0x86dd => true,
        0x806 | 0x8035 => {
            out.extend([
                ("arp.op", Number(k(KeyField::ArpOp))),
                ("arp.sha", mac(KeyField::ArpSha)),
                ("arp.spa", ip4(KeyField::Nw4Src)),
                ("arp.tha", mac(KeyField::ArpTha)),
                ("arp.tpa", ip4(KeyField::Nw4Dst)),
            ]);
            return out;
        }
        _ => return out,
    };
    if v6 {
        out.extend([
            ("ip6.src", ip6(KeyField::Ip6Src)),
            ("ip6.dst", ip6(KeyField::Ip6Dst)),
        ]);
    } else {
        out.extend([
            ("ip4.src", ip4(KeyField::Nw4Src)),
            ("ip4.dst", ip4(KeyField::Nw4Dst)),
        ]);
    }
    let proto = k(KeyField::IpProto);
    out.extend([
        ("ip.ttl", Number(k(KeyField::IpTtl))),
        ("ip.proto", Number(proto)),
    ]);
    if let Some((src, dst)) = l4_names(proto, v6) {
        out.extend([
            (src, Number(k(KeyField::TpSrc))),
            (dst, Number(k(KeyField::TpDst))),
        ]);
    }
    let nd_type = k(KeyField::TpSrc);
    if v6 && proto == 58 && matches!(nd_type, 135 | 136) {
        out.push(("nd.target", ip6(KeyField::NdTarget)));
        out.push(if nd_type == 135 {
            ("nd.sll", mac(KeyField::ArpSha))
        } else {
            ("nd.tll", mac(KeyField::ArpTha))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::compile;
    use crate::snapshot::Snapshot;

    fn seed() -> LogicalNetwork {
        Snapshot::from_json(include_str!("../../testdata/seed-snapshot.json"))
            .unwrap()
            .network
    }

    fn fields(key: &Key) -> std::collections::BTreeMap<&'static str, String> {
        header_fields(key)
            .into_iter()
            .map(|(n, v)| (n, v.to_string()))
            .collect()
    }

    #[test]
    fn routes_the_seed_cross_node_path() {
        let net = seed();
        let program = compile(&net);
        let req = TraceRequest {
            datapath: "kube-node2",
            microflow: "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa \
                        && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 64 && tcp.dst == 22",
            ct: vec![],
            lb_dst: None,
            chassis: None,
        };
        let out = trace(&program, &net, &req).unwrap();
        assert_eq!(out.outputs.len(), 1, "{:#?}", out.drops);
        let o = &out.outputs[0];
        assert_eq!(
            (o.port.as_str(), o.datapath.as_str(), o.generated_by),
            ("sshd-2", "kube-node1", None)
        );
        let f = fields(&o.key);
        assert_eq!(f["eth.src"], "00:00:00:c0:2e:c7");
        assert_eq!(f["eth.dst"], "0a:00:00:00:00:01");
        assert_eq!(f["ip.ttl"], "63");
        assert_eq!(f["tcp.dst"], "22");
        assert!(out.consulted[KeyField::InPort.index()] != 0);

        // Conntrack in the sending port's zone on its switch, and in the
        // receiving port's zone on the other (ovn-trace shows the same two
        // ct_lb_mark recirculations).
        let zone_of = |port: &str| {
            let p = &net.ports[port];
            program.zones.ports[&(p.datapath, p.tunnel_key)]
        };
        let used: Vec<(&str, u16)> = out
            .conntrack
            .iter()
            .map(|c| (c.datapath.as_str(), c.zone))
            .collect();
        assert_eq!(
            used,
            [
                ("kube-node2", zone_of("web-1")),
                ("kube-node1", zone_of("sshd-2"))
            ]
        );
        assert_ne!(zone_of("web-1"), zone_of("sshd-2"));
    }

    #[test]
    fn expired_ttl_gets_icmp_time_exceeded() {
        let net = seed();
        let program = compile(&net);
        let req = TraceRequest {
            datapath: "kube-node2",
            microflow: "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa \
                        && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3",
            ct: vec![],
            lb_dst: None,
            chassis: None,
        };
        let out = trace(&program, &net, &req).unwrap();
        assert_eq!(out.outputs.len(), 1, "{:#?}", out.drops);
        let o = &out.outputs[0];
        assert_eq!((o.port.as_str(), o.generated_by), ("web-1", Some("icmp4")));
        let f = fields(&o.key);
        assert_eq!(
            (
                f["icmp4.type"].as_str(),
                f["ip4.src"].as_str(),
                f["ip.ttl"].as_str()
            ),
            ("11", "192.168.3.1", "254")
        );
    }

    /// As kube-node2's chassis sees it, the seed's cross-node packet leaves
    /// in a tunnel to kube-node1's chassis with the header the seed
    /// write-up shows: VNI = kube-node1's key, ingress = its router port,
    /// egress = sshd-2.
    #[test]
    fn remote_ports_are_reached_by_tunnel() {
        let mut net = seed();
        for (port, chassis) in [
            ("web-1", "node2"),
            ("sshd-2", "node1"),
            ("k8s-kube-node2", "node3"),
        ] {
            net.ports.get_mut(port).unwrap().chassis = Some(chassis.into());
        }
        let program = compile(&net);
        let routed = "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa \
                      && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 64 && tcp.dst == 22";
        let req = |microflow, chassis| TraceRequest {
            datapath: "kube-node2",
            microflow,
            ct: vec![],
            lb_dst: None,
            chassis,
        };
        let out = trace(&program, &net, &req(routed, Some("node2"))).unwrap();
        assert_eq!(out.outputs.len(), 1, "{:?}", out.drops);
        let o = &out.outputs[0];
        let t = o.tunnel.as_ref().expect("sshd-2 is on another chassis");
        let node1 = net.find_datapath("kube-node1").unwrap();
        assert_eq!((o.port.as_str(), t.chassis.as_str()), ("sshd-2", "node1"));
        assert_eq!(t.datapath_key, node1.tunnel_key);
        assert_eq!(t.inport_key, net.ports["stor-kube-node1"].tunnel_key);
        assert_eq!(t.outport_key, net.ports["sshd-2"].tunnel_key);
        assert_eq!(
            fields(&o.key)["ip.ttl"],
            "63",
            "routed on the sending chassis"
        );

        // Seen from node1 itself, the same packet is delivered locally.
        let out = trace(&program, &net, &req(routed, Some("node1"))).unwrap();
        assert!(out.outputs[0].tunnel.is_none());

        // A broadcast reaches a remote member once, by the group.
        let arp = "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == ff:ff:ff:ff:ff:ff \
                   && arp.op == 1 && arp.sha == 0a:00:00:00:00:02 && arp.spa == 192.168.3.3 && arp.tpa == 192.168.3.99";
        let out = trace(&program, &net, &req(arp, Some("node2"))).unwrap();
        let tunnels: Vec<_> = out
            .outputs
            .iter()
            .filter_map(|o| {
                o.tunnel
                    .as_ref()
                    .map(|t| (o.port.clone(), t.chassis.clone()))
            })
            .collect();
        assert!(
            tunnels
                .iter()
                .any(|(port, ch)| port.starts_with("_MC_") && ch == "node3"),
            "{tunnels:?}"
        );

        // A VIF bound nowhere gets nothing.
        net.ports.get_mut("sshd-2").unwrap().chassis = None;
        let program = compile(&net);
        let out = trace(&program, &net, &req(routed, Some("node2"))).unwrap();
        assert!(out.outputs.is_empty());
        assert!(
            out.drops.iter().any(|d| d.reason.contains("not bound")),
            "{:?}",
            out.drops
        );
    }

    #[test]
    fn explains_bad_requests() {
        let net = seed();
        let program = compile(&net);
        for (dp, flow, what) in [
            ("nope", "inport == \"web-1\"", "no logical switch"),
            ("kube-node2", "ip4.src == 1.2.3.4", "needs the input port"),
            ("kube-node2", "inport == \"web-1\" && ip", "allows 2"),
            ("kube-node2", "inport == \"sshd-2\"", "never match"),
            ("kube-node2", "inport ==", "microflow"),
        ] {
            let req = TraceRequest {
                datapath: dp,
                microflow: flow,
                ct: vec![],
                lb_dst: None,
                chassis: None,
            };
            let e = trace(&program, &net, &req).unwrap_err();
            assert!(e.contains(what), "{flow}: {e}");
        }
        assert_eq!(
            parse_ct_flags("new").unwrap(),
            ct_state::NEW | ct_state::TRK
        );
        assert!(parse_ct_flags("new|bogus").unwrap_err().contains("bogus"));
        assert_eq!(
            parse_ct_flags("trk,est").unwrap(),
            parse_ct_flags("est").unwrap()
        );
    }
}
