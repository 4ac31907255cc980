//! `ironflow trace` against real `ovn-trace` on the same live SB: the same
//! output ports, and the same final value for every header field that
//! ovn-trace rewrites, for each class of probe.

use ironflow_control::ovsdb::parse_remotes;
use ironflow_control::sb::{read_once, FollowOptions};
use ironflow_pipeline::program::compile;
use ironflow_pipeline::trace::{header_fields, parse_ct_flags, trace, TraceRequest};
use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::differential::{ovn_trace_outputs, Probe, Seen};
use ironflow_testbeds::topologies::ALL;

fn seed_probes() -> Vec<Probe> {
    let p = |name, microflow, ct: &'static [&'static str], lb_dst| Probe {
        name,
        datapath: "kube-node2",
        microflow,
        ct,
        lb_dst,
    };
    vec![
        p("same switch", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 82:ff:e7:83:99:a9 && ip4.src == 192.168.3.3 && ip4.dst == 192.168.3.2 && ip.ttl == 64", &[], None),
        p("routed across the router", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa && ip4.src == 192.168.3.3 && ip4.dst == 192.168.1.2 && ip.ttl == 64 && udp.dst == 53", &[], None),
        p("TTL expiry", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 1", &[], None),
        p("ping the router", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa && ip4.src == 192.168.3.3 && ip4.dst == 192.168.3.1 && ip.ttl == 64 && icmp4.type == 8", &[], None),
        p("ARP for the router", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == ff:ff:ff:ff:ff:ff && arp.op == 1 && arp.sha == 0a:00:00:00:00:02 && arp.spa == 192.168.3.3 && arp.tpa == 192.168.3.1", &[], None),
        p("ARP for a neighbour", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == ff:ff:ff:ff:ff:ff && arp.op == 1 && arp.sha == 0a:00:00:00:00:02 && arp.spa == 192.168.3.3 && arp.tpa == 192.168.3.2", &[], None),
        p("no route", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa && ip4.src == 192.168.3.3 && ip4.dst == 8.8.8.8 && ip.ttl == 64", &[], None),
        p("unknown destination MAC", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 0a:00:00:00:00:77 && ip4.src == 192.168.3.3 && ip4.dst == 192.168.3.77 && ip.ttl == 64", &[], None),
        p("spoofed source MAC", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:09 && eth.dst == 00:00:00:d3:4b:aa && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 64", &[], None),
        p("ACL allows ssh from web clients, new", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 64 && tcp.dst == 22", &["new"], None),
        p("ACL allows ssh, established", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 64 && tcp.dst == 22", &["est"], None),
        p("ACL drops http, new", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 64 && tcp.dst == 80", &["new"], None),
        p("load balancer VIP", "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa && ip4.src == 192.168.3.3 && ip4.dst == 172.30.0.10 && ip.ttl == 64 && tcp.dst == 22", &["new"], Some("192.168.2.3:22")),
    ]
}

fn ironflow_outputs(
    net: &ironflow_pipeline::LogicalNetwork,
    program: &ironflow_pipeline::program::Program,
    probe: &Probe,
) -> Vec<Seen> {
    let req = TraceRequest {
        datapath: probe.datapath,
        microflow: probe.microflow,
        ct: probe
            .ct
            .iter()
            .map(|f| parse_ct_flags(f).unwrap())
            .collect(),
        lb_dst: probe.lb_dst.map(|lb| {
            let (ip, port) = lb.split_once(':').unwrap();
            (
                u128::from(u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap())),
                port.parse().ok(),
            )
        }),
    };
    let out = trace(program, net, &req).unwrap_or_else(|e| panic!("{}: {e}", probe.name));
    out.outputs
        .iter()
        .map(|o| {
            (
                o.port.clone(),
                header_fields(&o.key)
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// Compares one probe; returns a description of each difference.
fn compare(probe: &Probe, ovn: &[Seen], ours: &[Seen]) -> Vec<String> {
    let mut ovn: Vec<&Seen> = ovn.iter().collect();
    let mut ours: Vec<&Seen> = ours.iter().collect();
    ovn.sort_by(|a, b| a.0.cmp(&b.0));
    ours.sort_by(|a, b| a.0.cmp(&b.0));
    let ports = |v: &[&Seen]| v.iter().map(|s| s.0.clone()).collect::<Vec<_>>();
    if ports(&ovn) != ports(&ours) {
        return vec![format!(
            "{}: ovn-trace outputs to {:?}, ironflow to {:?}",
            probe.name,
            ports(&ovn),
            ports(&ours)
        )];
    }
    let mut diffs = Vec::new();
    for (o, i) in ovn.iter().zip(&ours) {
        for (field, value) in &o.1 {
            // Registers and metadata are not header fields.
            if let Some(mine) = i.1.get(field) {
                if mine != value {
                    diffs.push(format!(
                        "{}: output {} {field}: ovn-trace {value}, ironflow {mine}",
                        probe.name, o.0
                    ));
                }
            } else if field.contains('.')
                && !field.starts_with("reg")
                && !field.starts_with("flags")
                && !field.starts_with("ct_")
            {
                diffs.push(format!(
                    "{}: output {} {field}: ovn-trace {value}, ironflow has no such field",
                    probe.name, o.0
                ));
            }
        }
    }
    diffs
}

/// Runs every probe on a fresh central with `topology`; returns how many
/// produced outputs (so a test can insist it compared something) and the
/// differences.
fn run_probes(topology: &str, probes: &[Probe]) -> (usize, Vec<String>) {
    let central = OvnCentral::start().expect("start OVN central");
    let t = ALL.iter().find(|t| t.name == topology).unwrap();
    t.build(&central).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (net, _, _) = rt
        .block_on(read_once(
            &parse_remotes(&central.sb_remote()).unwrap(),
            &FollowOptions::default(),
        ))
        .unwrap();
    let program = compile(&net);
    assert!(program.failures.is_empty(), "{:?}", program.failures);
    let mut diffs = Vec::new();
    let mut with_outputs = 0;
    for probe in probes {
        let ovn = ovn_trace_outputs(&central, probe).unwrap();
        let ours = ironflow_outputs(&net, &program, probe);
        let compared: usize = ovn.iter().map(|o| o.1.len()).sum();
        with_outputs += usize::from(!ovn.is_empty());
        eprintln!(
            "{topology} / {}: ovn-trace {:?}, ironflow {:?}, {compared} rewrites compared",
            probe.name,
            ovn.iter().map(|o| &o.0).collect::<Vec<_>>(),
            ours.iter().map(|o| &o.0).collect::<Vec<_>>()
        );
        diffs.extend(compare(probe, &ovn, &ours));
    }
    (with_outputs, diffs)
}

#[test]
fn seed_probes_agree_with_ovn_trace() {
    let (with_outputs, diffs) = run_probes("seed", &seed_probes());
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(
        with_outputs >= 9,
        "only {with_outputs} probes produced outputs"
    );
}
