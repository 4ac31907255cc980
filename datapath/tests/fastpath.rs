//! The fast path end to end on the seed topology: real frames in, the
//! pipelines northd wrote, real frames out, with conntrack and caches.

use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
use ironflow_datapath::config::Config;
use ironflow_datapath::conntrack::CtConfig;
use ironflow_datapath::engine::Engine;
use ironflow_datapath::packet::Packet;
use ironflow_datapath::port::PortId;
use ironflow_datapath::worker::Worker;
use ironflow_pipeline::snapshot::Snapshot;
use ironflow_pipeline::LogicalNetwork;
use std::sync::Arc;

const WEB1: PortId = 1;
const SSHD2: PortId = 2;
const K8S_NODE1: PortId = 3;

const WEB1_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 2];
const SSHD2_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];
const K8S_NODE1_MAC: [u8; 6] = [0xba, 0x2c, 0x06, 0x32, 0x14, 0x78];
const RTOS_NODE2_MAC: [u8; 6] = [0, 0, 0, 0xd3, 0x4b, 0xaa];
const RTOS_NODE1_MAC: [u8; 6] = [0, 0, 0, 0xc0, 0x2e, 0xc7];
const WEB1_IP: [u8; 4] = [192, 168, 3, 3];
const SSHD2_IP: [u8; 4] = [192, 168, 2, 3];
const K8S_NODE1_IP: [u8; 4] = [192, 168, 2, 2];

fn seed() -> LogicalNetwork {
    Snapshot::from_json(include_str!("../../testdata/seed-snapshot.json"))
        .unwrap()
        .network
}

/// One chassis with web-1, sshd-2 and the node1 management port on it.
fn one_node() -> (Arc<Engine>, Worker) {
    let mut config = Config::new(seed(), "node");
    config.bind(WEB1, "web-1").unwrap();
    config.bind(SSHD2, "sshd-2").unwrap();
    config.bind(K8S_NODE1, "k8s-kube-node1").unwrap();
    let engine = Engine::new(config, CtConfig::default());
    let worker = Worker::new(engine.clone());
    (engine, worker)
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    sport: u16,
    dport: u16,
    syn: bool,
    ack: bool,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, ttl)
        .tcp(sport, dport, 1000, 64240);
    let b = if syn { b.syn() } else { b };
    let b = if ack { b.ack(1) } else { b };
    let payload = [0u8; 10];
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

/// web-1's TCP segment to sshd-2:22 from port 40000, sent to its router.
fn web1_to_sshd2(syn: bool, ack: bool) -> Vec<u8> {
    tcp(
        WEB1_MAC,
        RTOS_NODE2_MAC,
        WEB1_IP,
        SSHD2_IP,
        64,
        40000,
        22,
        syn,
        ack,
    )
}

/// sshd-2's answer to it.
fn sshd2_to_web1(syn: bool, ack: bool) -> Vec<u8> {
    tcp(
        SSHD2_MAC,
        RTOS_NODE1_MAC,
        SSHD2_IP,
        WEB1_IP,
        64,
        22,
        40000,
        syn,
        ack,
    )
}

fn run(worker: &mut Worker, port: PortId, frame: &[u8]) -> Vec<(PortId, Vec<u8>)> {
    let mut batch = ironflow_datapath::packet::PacketBatch::new();
    batch.push(Packet::from_slice(frame).unwrap()).ok();
    worker.process_batch(port, &mut batch);
    worker
        .take_tx()
        .into_iter()
        .map(|(p, pkt)| (p, pkt.data().to_vec()))
        .collect()
}

/// Parses a frame and checks its IPv4 and TCP checksums from scratch.
fn parse_checked(frame: &[u8]) -> PacketHeaders<'_> {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("a well-formed frame");
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
        panic!("IPv4 expected");
    };
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IPv4 checksum"
    );
    if let Some(TransportHeader::Tcp(t)) = &h.transport {
        let want = t.calc_checksum_ipv4(ip, h.payload.slice()).unwrap();
        assert_eq!(t.checksum, want, "TCP checksum");
    }
    h
}

#[test]
fn same_switch_delivers_unchanged() {
    let (_e, mut w) = one_node();
    let frame = tcp(
        SSHD2_MAC,
        K8S_NODE1_MAC,
        SSHD2_IP,
        K8S_NODE1_IP,
        64,
        40000,
        8080,
        true,
        false,
    );
    let out = run(&mut w, SSHD2, &frame);
    assert_eq!(out.len(), 1, "{:?}", w.stats());
    assert_eq!(out[0].0, K8S_NODE1);
    assert_eq!(out[0].1, frame);
}

#[test]
fn routed_across_the_router_with_ttl_and_macs_rewritten() {
    let (_e, mut w) = one_node();
    let syn = web1_to_sshd2(true, false);
    let out = run(&mut w, WEB1, &syn);
    assert_eq!(out.len(), 1, "{:?}", w.stats());
    let (port, frame) = &out[0];
    assert_eq!(*port, SSHD2);
    let h = parse_checked(frame);
    let eth = h.link.clone().unwrap().ethernet2().unwrap();
    assert_eq!(eth.source, RTOS_NODE1_MAC);
    assert_eq!(eth.destination, SSHD2_MAC);
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
        unreachable!()
    };
    assert_eq!(ip.time_to_live, 63);
    assert_eq!((ip.source, ip.destination), (WEB1_IP, SSHD2_IP));

    // The answer goes back the same way.
    let synack = sshd2_to_web1(true, true);
    let out = run(&mut w, SSHD2, &synack);
    assert_eq!(out.len(), 1, "{:?}", w.stats());
    assert_eq!(out[0].0, WEB1);
    let h = parse_checked(&out[0].1);
    let eth = h.link.clone().unwrap().ethernet2().unwrap();
    assert_eq!((eth.source, eth.destination), (RTOS_NODE2_MAC, WEB1_MAC));
}

#[test]
fn the_second_packet_of_a_flow_is_a_cache_hit() {
    let (_e, mut w) = one_node();
    let frame = |sport| {
        tcp(
            WEB1_MAC,
            RTOS_NODE2_MAC,
            WEB1_IP,
            SSHD2_IP,
            64,
            sport,
            22,
            false,
            true,
        )
    };
    assert_eq!(run(&mut w, WEB1, &frame(40000)).len(), 1);
    assert!(w.stats().upcalls >= 2, "a miss per pass: {:?}", w.stats());
    // The second packet finds its connection established: a new
    // conntrack state, so new megaflows for the passes after conntrack.
    assert_eq!(run(&mut w, WEB1, &frame(40000)).len(), 1);
    let first = w.stats();
    for _ in 0..10 {
        assert_eq!(run(&mut w, WEB1, &frame(40000)).len(), 1);
    }
    let s = w.stats();
    assert_eq!(s.upcalls, first.upcalls, "no more misses: {s:?}");
    assert!(s.cache.emc_hits >= 20, "{s:?}");
}

#[test]
fn a_new_config_flushes_the_caches() {
    let (engine, mut w) = one_node();
    let frame = tcp(
        SSHD2_MAC,
        K8S_NODE1_MAC,
        SSHD2_IP,
        K8S_NODE1_IP,
        64,
        40000,
        8080,
        false,
        true,
    );
    assert_eq!(run(&mut w, SSHD2, &frame).len(), 1);
    // k8s-kube-node1 detached (so unbound): its traffic has nowhere to go.
    let mut config = Config::new(seed(), "node");
    config.bind(SSHD2, "sshd-2").unwrap();
    engine.publish(config);
    assert!(run(&mut w, SSHD2, &frame).is_empty());
    let s = w.stats();
    assert_eq!(s.cache.flushes, 1);
    assert!(
        s.drops.keys().any(|r| r.contains("not bound")),
        "{:?}",
        s.drops
    );
}

#[test]
fn garbage_is_counted_not_fatal() {
    let (_e, mut w) = one_node();
    for len in [0usize, 1, 13, 14, 20, 34, 60] {
        let frame: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
        if let Some(p) = Packet::from_slice(&frame) {
            let mut batch = ironflow_datapath::packet::PacketBatch::new();
            batch.push(p).ok();
            w.process_batch(SSHD2, &mut batch);
        }
    }
    let s = w.stats();
    assert!(s.malformed > 0);
    // From a port nobody bound: dropped with a reason.
    assert!(run(&mut w, 99, &[0u8; 64]).is_empty());
    assert!(w
        .stats()
        .drops
        .keys()
        .any(|r| r.contains("no logical port")));
}

#[test]
fn megaflows_read_like_dpctl_dump_flows() {
    let (_e, mut w) = one_node();
    let syn = web1_to_sshd2(true, false);
    assert_eq!(run(&mut w, WEB1, &syn).len(), 1);
    let lines: Vec<String> = w
        .megaflows()
        .map(|(k, m, f, hits)| ironflow_datapath::dump::format_megaflow(k, m, f, hits))
        .collect();
    let text = lines.join("\n");
    assert!(text.contains("recirc_id(0x0),in_port(1)"), "{text}");
    assert!(text.contains("ct(zone="), "{text}");
    assert!(text.contains("dec_ttl"), "{text}");
    assert!(text.contains("set(eth(src=00:00:00:c0:2e:c7))"), "{text}");
    assert!(text.contains("packets:1"), "{text}");
}

/// The config of kube-node1 (`me` 0) or kube-node2 (1), with `lsp` on
/// `port` and the other node as the only chassis on the underlay.
fn node_config(me: usize, chassis: &str, port: PortId, lsp: &str) -> Config {
    use ironflow_datapath::config::Underlay;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;
    let ips = [Ipv4Addr::new(10, 99, 0, 1), Ipv4Addr::new(10, 99, 0, 2)];
    let macs = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
    let mut net = seed();
    net.ports.get_mut("sshd-2").unwrap().chassis = Some("kube-node1".into());
    net.ports.get_mut("web-1").unwrap().chassis = Some("kube-node2".into());
    let other = 1 - me;
    let mut config = Config::new(net, chassis);
    config.bind(port, lsp).unwrap();
    config.underlay = Some(Underlay {
        port: UNDERLAY,
        local_ip: ips[me],
        local_mac: macs[me],
        next_hop_macs: HashMap::from([(ips[other], macs[other])]),
        chassis_ips: HashMap::from([(["kube-node1", "kube-node2"][other].to_string(), ips[other])]),
    });
    config
}

/// kube-node2 (web-1) and kube-node1 (sshd-2), joined by their underlay
/// ports: what one sends on the underlay, the other receives.
fn two_nodes() -> ((Arc<Engine>, Worker), (Arc<Engine>, Worker)) {
    let node = |me: usize, chassis: &str, port: PortId, lsp: &str| {
        let config = node_config(me, chassis, port, lsp);
        let engine = Engine::new(config, CtConfig::default());
        let worker = Worker::new(engine.clone());
        (engine, worker)
    };
    (
        node(0, "kube-node1", SSHD2, "sshd-2"),
        node(1, "kube-node2", WEB1, "web-1"),
    )
}

const UNDERLAY: PortId = 100;

#[test]
fn cross_node_traffic_goes_in_geneve_with_ovn_metadata() {
    let ((_e1, mut node1), (_e2, mut node2)) = two_nodes();
    let syn = web1_to_sshd2(true, false);
    let out = run(&mut node2, WEB1, &syn);
    assert_eq!(out.len(), 1, "{:?}", node2.stats());
    let (port, geneve) = &out[0];
    assert_eq!(*port, UNDERLAY);
    // Outer Ethernet, IPv4 (UDP), UDP to 6081, Geneve: VNI = kube-node1's
    // tunnel key, OVN option = stor-kube-node1's key << 16 | sshd-2's.
    let outer = PacketHeaders::from_ethernet_slice(geneve).unwrap();
    let Some(TransportHeader::Udp(udp)) = &outer.transport else {
        panic!("UDP expected");
    };
    assert_eq!(udp.destination_port, 6081);
    let g = outer.payload.slice();
    assert_eq!(
        &g[0..4],
        &[0x02, 0x40, 0x65, 0x58],
        "options 2 words, C flag, Ethernet"
    );
    assert_eq!(&g[4..8], &[0, 0, 1, 0], "VNI 1");
    assert_eq!(
        &g[8..12],
        &[0x01, 0x02, 0x80, 0x01],
        "class 0x0102 type 0x80 len 1"
    );
    assert_eq!(&g[12..16], &[0, 3, 0, 1], "ingress key 3, egress key 1");

    let delivered = run(&mut node1, UNDERLAY, geneve);
    assert_eq!(delivered.len(), 1, "{:?}", node1.stats());
    assert_eq!(delivered[0].0, SSHD2);
    let h = parse_checked(&delivered[0].1);
    let eth = h.link.clone().unwrap().ethernet2().unwrap();
    assert_eq!((eth.source, eth.destination), (RTOS_NODE1_MAC, SSHD2_MAC));
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
        unreachable!()
    };
    assert_eq!(ip.time_to_live, 63, "routed on the sending node");

    // And back.
    let synack = sshd2_to_web1(true, true);
    let out = run(&mut node1, SSHD2, &synack);
    assert_eq!(out.len(), 1, "{:?}", node1.stats());
    let back = run(&mut node2, UNDERLAY, &out[0].1);
    assert_eq!(back.len(), 1, "{:?}", node2.stats());
    assert_eq!(back[0].0, WEB1);
}

/// The outer UDP source port of a Geneve frame.
fn udp_source_port(frame: &[u8]) -> u16 {
    let outer = PacketHeaders::from_ethernet_slice(frame).unwrap();
    let Some(TransportHeader::Udp(udp)) = &outer.transport else {
        panic!("UDP expected");
    };
    udp.source_port
}

#[test]
fn geneve_source_ports_are_the_ones_stock_ovs_picks() {
    use ironflow_tunnel::geneve::source_port;
    use ironflow_tunnel::ovs_hash::frame_hash;
    let ((_e1, _node1), (_e2, mut node2)) = two_nodes();
    // The vectors of `ironflow_tunnel::ovs_hash` (web-1 to sshd-2): TCP
    // from port 40000, then the same on a cache hit and after conntrack
    // has the connection, then UDP from port 5000.
    let syn = web1_to_sshd2(true, false);
    for frame in [&syn, &syn, &web1_to_sshd2(false, true)] {
        let out = run(&mut node2, WEB1, frame);
        assert_eq!(out.len(), 1, "{:?}", node2.stats());
        assert_eq!(udp_source_port(&out[0].1), 51451);
    }
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(WEB1_MAC, RTOS_NODE2_MAC)
        .ipv4(WEB1_IP, SSHD2_IP, 64)
        .udp(5000, 22)
        .write(&mut udp, b"ironflow")
        .unwrap();
    let out = run(&mut node2, WEB1, &udp);
    assert_eq!(out.len(), 1, "{:?}", node2.stats());
    assert_eq!(udp_source_port(&out[0].1), 49215);
    // Any flow: OVS's hash of the frame as the pod sent it, although the
    // tunnelled frame was routed (MACs and TTL rewritten).
    for sport in [1024, 33333, 65535] {
        let f = tcp(
            WEB1_MAC,
            RTOS_NODE2_MAC,
            WEB1_IP,
            SSHD2_IP,
            64,
            sport,
            22,
            true,
            false,
        );
        let out = run(&mut node2, WEB1, &f);
        assert_eq!(out.len(), 1, "{:?}", node2.stats());
        assert_eq!(
            udp_source_port(&out[0].1),
            source_port(frame_hash(&f)),
            "source port {sport}"
        );
    }
}

#[test]
fn a_sender_let_in_before_is_refused_once_the_config_drops_it() {
    let ((e1, mut node1), (_e2, mut node2)) = two_nodes();
    let syn = web1_to_sshd2(true, false);
    let geneve = run(&mut node2, WEB1, &syn).remove(0).1;
    assert_eq!(run(&mut node1, UNDERLAY, &geneve).len(), 1);
    assert_eq!(run(&mut node1, UNDERLAY, &geneve).len(), 1);
    // kube-node2 leaves: its encap IP is no chassis's now.
    let mut config = node_config(0, "kube-node1", SSHD2, "sshd-2");
    if let Some(u) = config.underlay.as_mut() {
        u.chassis_ips.clear();
    }
    e1.publish(config);
    let before = node1.stats().drops.values().sum::<u64>();
    assert!(run(&mut node1, UNDERLAY, &geneve).is_empty());
    assert_eq!(node1.stats().drops.values().sum::<u64>(), before + 1);
}

#[test]
fn a_batch_from_the_underlay_delivers_around_what_it_refuses() {
    let ((_e1, mut node1), (_e2, mut node2)) = two_nodes();
    let geneve = run(&mut node2, WEB1, &web1_to_sshd2(true, false))
        .remove(0)
        .1;
    let mut stranger = geneve.clone();
    stranger[14 + 12..14 + 16].copy_from_slice(&[10, 99, 0, 77]);
    fix_ipv4_checksum(&mut stranger);
    let mut batch = ironflow_datapath::packet::PacketBatch::new();
    for f in [&geneve, &stranger, &geneve, &geneve[..40], &geneve] {
        batch.push(Packet::from_slice(f).unwrap()).ok();
    }
    node1.process_batch(UNDERLAY, &mut batch);
    let out = node1.take_tx();
    assert_eq!(out.len(), 3, "{:?}", node1.stats());
    assert!(out.iter().all(|(p, _)| *p == SSHD2));
    let s = node1.stats();
    assert_eq!((s.packets, s.decapsulated), (5, 3));
    assert_eq!(s.drops.values().sum::<u64>(), 2, "{s:?}");
}

#[test]
fn a_burst_from_the_underlay_takes_the_fused_path() {
    let ((_e1, mut node1), (_e2, mut node2)) = two_nodes();
    let geneve = run(&mut node2, WEB1, &web1_to_sshd2(true, false))
        .remove(0)
        .1;
    let first = run(&mut node1, UNDERLAY, &geneve);
    let mut batch = ironflow_datapath::packet::PacketBatch::new();
    for _ in 0..8 {
        batch.push(Packet::from_slice(&geneve).unwrap()).ok();
    }
    node1.process_batch(UNDERLAY, &mut batch);
    let out = node1.take_tx();
    assert_eq!(out.len(), 8, "{:?}", node1.stats());
    assert!(out
        .iter()
        .all(|(p, f)| *p == SSHD2 && f.data() == &first[0].1[..]));
    let s = node1.stats();
    assert!(s.fused >= 6, "{s:?}");
    assert_eq!(s.decapsulated, 9);
}

#[test]
fn decapsulation_refuses_what_it_cannot_vouch_for() {
    let ((_e1, mut node1), (_e2, mut node2)) = two_nodes();
    let syn = web1_to_sshd2(true, false);
    let geneve = run(&mut node2, WEB1, &syn).remove(0).1;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // From an address that is no chassis's encap IP.
    let mut stranger = geneve.clone();
    stranger[14 + 12..14 + 16].copy_from_slice(&[10, 99, 0, 77]);
    fix_ipv4_checksum(&mut stranger);
    cases.push(("unknown chassis", stranger));
    // A VNI no datapath has.
    let mut vni = geneve.clone();
    vni[14 + 20 + 8 + 4..14 + 20 + 8 + 7].copy_from_slice(&[0, 0, 99]);
    cases.push(("unknown VNI", vni));
    // An egress key no port has.
    let mut port = geneve.clone();
    port[14 + 20 + 8 + 14..14 + 20 + 8 + 16].copy_from_slice(&[0, 99]);
    cases.push(("unknown port", port));
    // Truncated.
    cases.push(("truncated", geneve[..40].to_vec()));
    for (what, frame) in cases {
        let before = node1.stats().drops.values().sum::<u64>();
        assert!(run(&mut node1, UNDERLAY, &frame).is_empty(), "{what}");
        let after = node1.stats().drops.values().sum::<u64>();
        assert_eq!(after, before + 1, "{what} is counted: {:?}", node1.stats());
    }
}

fn fix_ipv4_checksum(frame: &mut [u8]) {
    frame[14 + 10] = 0;
    frame[14 + 11] = 0;
    let mut sum: u32 = 0;
    for pair in frame[14..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[14 + 10..14 + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

#[test]
fn geneve_through_kernel_udp_sockets() {
    use ironflow_datapath::config::Underlay;
    use ironflow_datapath::packet::{PacketBatch, PacketPool};
    use ironflow_datapath::port::Port;
    use ironflow_datapath::udp_underlay::UdpUnderlay;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, SocketAddrV4};
    // Two chassis on loopback addresses, Geneve's port on each.
    let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let mut net = seed();
    net.ports.get_mut("sshd-2").unwrap().chassis = Some("kube-node1".into());
    net.ports.get_mut("web-1").unwrap().chassis = Some("kube-node2".into());
    let node = |me: usize, chassis: &str, port: PortId, lsp: &str| {
        let other = 1 - me;
        let mut config = Config::new(net.clone(), chassis);
        config.bind(port, lsp).unwrap();
        config.underlay = Some(Underlay {
            port: UNDERLAY,
            local_ip: ips[me],
            local_mac: [0; 6],
            next_hop_macs: HashMap::from([(ips[other], [0; 6])]),
            chassis_ips: HashMap::from([(
                ["kube-node1", "kube-node2"][other].to_string(),
                ips[other],
            )]),
        });
        Worker::new(Engine::new(config, CtConfig::default()))
    };
    let mut node1 = node(0, "kube-node1", SSHD2, "sshd-2");
    let mut node2 = node(1, "kube-node2", WEB1, "web-1");
    let mut u1 = UdpUnderlay::bind(SocketAddrV4::new(ips[0], 6081), 6081).unwrap();
    let mut u2 = UdpUnderlay::bind(SocketAddrV4::new(ips[1], 6081), 6081).unwrap();

    let syn = web1_to_sshd2(true, false);
    let mut pool = PacketPool::new(8);
    let mut out = PacketBatch::new();
    let mut batch = PacketBatch::new();
    batch.push(Packet::from_slice(&syn).unwrap()).ok();
    node2.process_batch(WEB1, &mut batch);
    for (port, p) in node2.take_tx() {
        assert_eq!(port, UNDERLAY);
        out.push(p).ok();
    }
    assert_eq!(u2.send(&mut pool, &mut out).unwrap(), 1);
    let mut got = PacketBatch::new();
    for _ in 0..1000 {
        if u1.recv(&mut pool, &mut got).unwrap() > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(got.len(), 1, "the Geneve datagram arrived");
    node1.process_batch(UNDERLAY, &mut got);
    let delivered: Vec<_> = node1.take_tx();
    assert_eq!(delivered.len(), 1, "{:?}", node1.stats());
    assert_eq!(delivered[0].0, SSHD2);
    let h = parse_checked(delivered[0].1.data());
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
        unreachable!()
    };
    assert_eq!(ip.time_to_live, 63);
}
