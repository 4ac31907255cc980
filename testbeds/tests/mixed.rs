//! A mixed cluster: the seed lab with kube-node1 running stock OVN
//! (ovn-controller and OVS's userspace datapath) and kube-master and
//! kube-node2 running `ironflow run`, one central, one underlay bridge.
//! Pods on the stock node: sshd-2 and web-2 (on kube-node2's switch); on
//! the ironflow node: web-1 and db-1 (on kube-node1's switch, and in the
//! sshd port group, so its ACL is ironflow's to enforce). Ping and TCP go
//! both ways across the router and on one logical switch; the ACL
//! (tcp/23 dropped) and the load balancer (172.30.0.10:22 → sshd-2, and
//! 172.30.0.11:22 → db-1) hold whichever side the client is on; and a
//! capture on the underlay finds the two chassis's Geneve frames laid out
//! alike, field by field, with the VNI and option port keys the SB gives.
//!
//! Needs root and the OVS/OVN packages; skips with a message otherwise.
//! The ironflow daemons are the `ironflow` binary next to this test's
//! executable (or `IRONFLOW_BIN`).

use ironflow_testbeds::lab::{self, LabConfig, PodSpec, SeedLab, TcpSink};
use ironflow_testbeds::netns::{unique_prefix, Netns, PacketSocket};
use ironflow_testbeds::stock;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

const STOCK: &str = "kube-node1";
const IRONFLOW: &str = "kube-node2";

const WEB1: Ipv4Addr = Ipv4Addr::new(192, 168, 3, 3);
const WEB2: Ipv4Addr = Ipv4Addr::new(192, 168, 3, 4);
const SSHD2: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 3);
const DB1: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 5);
const VIP_SSHD: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 10);
const VIP_DB: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 11);

/// Bytes per TCP transfer: many full segments (and, from ironflow's pods,
/// TSO super-frames), short on a debug build.
const TRANSFER: u64 = 4 << 20;

fn pods() -> Vec<PodSpec> {
    let mut pods = lab::seed_pods();
    pods.extend([
        // On kube-node2's switch with web-1, bound on the stock node.
        PodSpec::extra("web-2", "kube-node2", "0a:00:00:00:00:03", WEB2, STOCK),
        // On kube-node1's switch with sshd-2, bound on the ironflow node.
        PodSpec::extra("db-1", "kube-node1", "0a:00:00:00:00:05", DB1, IRONFLOW),
    ]);
    pods
}

/// The daemons' state, for a failure message.
fn report(lab: &SeedLab) -> String {
    let mut s = String::new();
    for node in lab.nodes() {
        let state = match node.stock() {
            Some(ovs) => ovs
                .appctl("ovs-vswitchd", &["dpctl/dump-flows"])
                .unwrap_or_else(|e| format!("{e:#}")),
            None => lab
                .ironflow(&node.name, &["stats"])
                .unwrap_or_else(|e| format!("{e:#}")),
        };
        s.push_str(&format!(
            "--- {} ({}):\n{state}\n{}\n",
            node.name,
            node.kind(),
            node.log_tail(10)
        ));
    }
    s
}

/// Pings until one round gets every reply (the first packets may wait
/// for a tunnel neighbour or a binding), then returns the TTL seen.
fn ping_ok(lab: &SeedLab, from: &str, dst: Ipv4Addr) -> u8 {
    let pod = lab.pod(from).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ok, out) = pod.ping(dst, 2).unwrap();
        if ok && out.contains(" 0% packet loss") {
            return ttl_of(&out);
        }
        assert!(
            Instant::now() < deadline,
            "{from} cannot ping {dst}:\n{out}\n{}",
            report(lab)
        );
    }
}

fn ttl_of(ping: &str) -> u8 {
    ping.split("ttl=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no ttl in {ping}"))
}

/// [`TRANSFER`] bytes from pod `from` to `dst`, retried while the path
/// settles; returns the rate for the log.
fn transfer(lab: &SeedLab, from: &str, dst: SocketAddrV4) {
    let pod = lab.pod(from).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match lab::tcp_send(pod.ns(), dst, TRANSFER, Duration::from_secs(2)) {
            Ok(t) => {
                eprintln!("{from} -> {dst}: {:.0} Mbit/s", t.mbit_per_s());
                return;
            }
            Err(e) if Instant::now() > deadline => {
                panic!("{from} -> {dst}: {e:#}\n{}", report(lab))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Connect {
    Connected,
    Refused,
    TimedOut,
}

/// One TCP connect from `ns`: an ACL drop is a timeout, a closed port
/// that the ACL let through a refusal.
fn connect(ns: &Netns, dst: SocketAddrV4, timeout: Duration) -> Connect {
    ns.run(move || {
        Ok(
            match TcpStream::connect_timeout(&SocketAddr::V4(dst), timeout) {
                Ok(_) => Connect::Connected,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Connect::Refused,
                Err(_) => Connect::TimedOut,
            },
        )
    })
    .unwrap()
}

/// A tunnel key from the SB: `table`'s row where `column` is `value`.
fn tunnel_key(lab: &SeedLab, table: &str, cond: &str) -> u32 {
    let out = lab
        .central()
        .sbctl(&["--bare", "--columns=tunnel_key", "find", table, cond])
        .unwrap();
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("tunnel key of {table} {cond}: {out:?}"))
}

fn dp_key(lab: &SeedLab, switch: &str) -> u32 {
    tunnel_key(
        lab,
        "Datapath_Binding",
        &format!("external_ids:name={switch}"),
    )
}

fn port_key(lab: &SeedLab, lsp: &str) -> u32 {
    tunnel_key(lab, "Port_Binding", &format!("logical_port={lsp}"))
}

/// Offsets in an outer Ethernet/IPv4/UDP/Geneve frame with one 8-byte
/// option.
const IP: usize = 14;
const UDP: usize = 34;
const GENEVE: usize = 42;
const INNER: usize = 58;
const INNER_IP: usize = INNER + 14;

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Whether `f` is a Geneve frame from `src` carrying an inner IPv4 ICMP
/// packet.
fn is_geneve_icmp(f: &[u8], src: Ipv4Addr) -> bool {
    f.len() >= INNER_IP + 24
        && be16(&f[12..]) == 0x0800
        && f[IP + 9] == 17
        && be16(&f[UDP + 2..]) == 6081
        && f[IP + 12..IP + 16] == src.octets()
        && f[GENEVE] & 0x3f == 2
        && be16(&f[INNER + 12..]) == 0x0800
        && f[INNER_IP + 9] == 1
}

/// The one's-complement sum of `data` (16-bit words, big-endian).
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Whether the outer IPv4 header checksum and the UDP checksum (over the
/// pseudo-header and the whole Geneve packet) verify.
fn checksums_ok(f: &[u8]) -> (bool, bool) {
    let ip_ok = fold(sum16(&f[IP..UDP], 0)) == 0xffff;
    let udp_len = be16(&f[UDP + 4..]);
    let udp = &f[UDP..UDP + usize::from(udp_len)];
    let mut acc = sum16(&f[IP + 12..IP + 20], 0);
    acc += 17 + u32::from(udp_len);
    (ip_ok, fold(sum16(udp, acc)) == 0xffff)
}

/// The layout of an outer Geneve frame by field: everything but what must
/// differ between senders (addresses, lengths, checksum values, the
/// source port's value) and what depends on the packet (VNI, port keys:
/// checked against the SB on their own).
fn layout(f: &[u8]) -> BTreeMap<&'static str, u64> {
    let (ip, udp, g) = (&f[IP..UDP], &f[UDP..GENEVE], &f[GENEVE..INNER]);
    let (ip_ok, udp_ok) = checksums_ok(f);
    let src_port = be16(&udp[0..]);
    let mut m = BTreeMap::new();
    let mut put = |k, v: u64| {
        m.insert(k, v);
    };
    put("ethertype", u64::from(be16(&f[12..])));
    put("ip version/ihl", u64::from(ip[0]));
    put("ip tos", u64::from(ip[1]));
    put("ip identification", u64::from(be16(&ip[4..])));
    put("ip flags", u64::from(ip[6] >> 5));
    put("ip fragment offset", u64::from(be16(&ip[6..]) & 0x1fff));
    put("ip ttl", u64::from(ip[8]));
    put("ip protocol", u64::from(ip[9]));
    put("ip header checksum verifies", u64::from(ip_ok));
    put(
        "ip total length = frame",
        u64::from(usize::from(be16(&ip[2..])) + IP == f.len()),
    );
    put("udp dst port", u64::from(be16(&udp[2..])));
    put(
        "udp src port in 32768..61000",
        u64::from((32768..61000).contains(&src_port)),
    );
    put("udp checksum present", u64::from(udp[6..8] != [0, 0]));
    put("udp checksum verifies", u64::from(udp_ok));
    put(
        "udp length = ip payload",
        u64::from(be16(&udp[4..]) + 20 == be16(&ip[2..])),
    );
    put("geneve version", u64::from(g[0] >> 6));
    put("geneve options length (words)", u64::from(g[0] & 0x3f));
    put("geneve O flag", u64::from(g[1] >> 7));
    put("geneve C flag", u64::from((g[1] >> 6) & 1));
    put("geneve flag reserved bits", u64::from(g[1] & 0x3f));
    put("geneve protocol", u64::from(be16(&g[2..])));
    put("geneve reserved", u64::from(g[7]));
    put("option class", u64::from(be16(&g[8..])));
    put("option type", u64::from(g[10]));
    put("option reserved bits", u64::from(g[11] >> 5));
    put("option length (words)", u64::from(g[11] & 0x1f));
    put("option data bit 31", u64::from(g[12] >> 7));
    m
}

/// What the SB says a frame must carry: (VNI, ingress key, egress key).
fn keys(f: &[u8]) -> (u32, u32, u32) {
    let g = &f[GENEVE..INNER];
    let vni = u32::from_be_bytes([0, g[4], g[5], g[6]]);
    let data = u32::from_be_bytes([g[12], g[13], g[14], g[15]]);
    (vni, (data >> 16) & 0x7fff, data & 0xffff)
}

/// One class of frame the capture must find: the inner addresses and
/// ICMP type, who sends it on the underlay, and what it must carry.
struct Want {
    what: &'static str,
    from: &'static str,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    icmp_type: u8,
    switch: &'static str,
    ingress: &'static str,
    egress: &'static str,
    /// Inner TTL (routing happens on the sending chassis: 63 routed).
    ttl: u8,
    /// Inner source MAC when routed: the router port's.
    router_mac: Option<[u8; 6]>,
}

#[test]
fn stock_ovn_and_ironflow_nodes_form_one_cluster() {
    if let Some(why) = lab::unavailable().or_else(stock::unavailable) {
        eprintln!("skipping the mixed cluster: {why}");
        return;
    }
    let started = Instant::now();
    let mut cfg = LabConfig::new(&unique_prefix("mx"));
    cfg.pods = pods();
    cfg.stock = vec![STOCK.into()];
    let lab = SeedLab::start(cfg).expect("start the mixed lab");
    assert_eq!(lab.node(STOCK).unwrap().kind(), "stock OVN");
    assert_eq!(lab.node(IRONFLOW).unwrap().kind(), "ironflow");
    // web-2 is a web client too; db-1 joins sshd-2's port group (its
    // ACL then runs on the ironflow node) and gets a VIP of its own.
    lab.central()
        .nbctl_batch(&[
            words("add Address_Set web_clients addresses \"192.168.3.4\""),
            words("pg-set-ports pg_sshd sshd-2 db-1"),
            words("lb-add lb-sshd 172.30.0.11:22 192.168.2.5:22 tcp"),
        ])
        .unwrap();
    eprintln!("mixed lab up in {:.1} s", started.elapsed().as_secs_f64());
    // The stock node tunnels to both ironflow nodes.
    let mut tunnels = lab.node(STOCK).unwrap().stock().unwrap().tunnels().unwrap();
    tunnels.sort();
    assert_eq!(tunnels, ["172.17.42.30", "172.17.42.32"]);

    // Frames arriving at the underlay bridge from each node's veth.
    let ul = lab.underlay();
    let cap = |node: &str| -> PacketSocket { ul.packet_socket(node).expect("capture") };
    let (from_stock, from_ironflow) = (cap(STOCK), cap(IRONFLOW));

    // Across the router, both ways: the routing chassis decrements.
    assert_eq!(
        ping_ok(&lab, "web-1", SSHD2),
        63,
        "web-1 (ironflow) → sshd-2 (stock)"
    );
    assert_eq!(
        ping_ok(&lab, "sshd-2", WEB1),
        63,
        "sshd-2 (stock) → web-1 (ironflow)"
    );
    assert_eq!(
        ping_ok(&lab, "web-2", DB1),
        63,
        "web-2 (stock) → db-1 (ironflow)"
    );
    assert_eq!(
        ping_ok(&lab, "db-1", WEB2),
        63,
        "db-1 (ironflow) → web-2 (stock)"
    );
    // One logical switch across the two chassis: nothing routes.
    assert_eq!(
        ping_ok(&lab, "web-1", WEB2),
        64,
        "web-1 → web-2 on kube-node2's switch"
    );
    assert_eq!(
        ping_ok(&lab, "web-2", WEB1),
        64,
        "web-2 → web-1 on kube-node2's switch"
    );
    assert_eq!(
        ping_ok(&lab, "sshd-2", DB1),
        64,
        "sshd-2 → db-1 on kube-node1's switch"
    );
    assert_eq!(
        ping_ok(&lab, "db-1", SSHD2),
        64,
        "db-1 → sshd-2 on kube-node1's switch"
    );
    // The stock node's management port (an OVS internal port) reaches a
    // pod on the ironflow node through the router.
    let (ok, out) = lab
        .node(STOCK)
        .unwrap()
        .ns()
        .exec(&[
            "ping",
            "-n",
            "-c",
            "2",
            "-i",
            "0.2",
            "-w",
            "6",
            "192.168.3.3",
        ])
        .map(|o| (true, o))
        .unwrap_or_else(|e| (false, format!("{e:#}")));
    assert!(
        ok && out.contains("ttl=63"),
        "k8s-kube-node1 → web-1: {out}"
    );

    // The underlay capture, on the pings' frames: each class from each
    // side (routed and switched, request and reply).
    let web_mac = Some(mac("00:00:00:d3:4b:aa"));
    let node1_mac = Some(mac("00:00:00:c0:2e:c7"));
    let wants = [
        Want {
            what: "routed request",
            from: IRONFLOW,
            src: WEB1,
            dst: SSHD2,
            icmp_type: 8,
            switch: "kube-node1",
            ingress: "stor-kube-node1",
            egress: "sshd-2",
            ttl: 63,
            router_mac: node1_mac,
        },
        Want {
            what: "routed reply",
            from: STOCK,
            src: SSHD2,
            dst: WEB1,
            icmp_type: 0,
            switch: "kube-node2",
            ingress: "stor-kube-node2",
            egress: "web-1",
            ttl: 63,
            router_mac: web_mac,
        },
        Want {
            what: "routed request",
            from: STOCK,
            src: WEB2,
            dst: DB1,
            icmp_type: 8,
            switch: "kube-node1",
            ingress: "stor-kube-node1",
            egress: "db-1",
            ttl: 63,
            router_mac: node1_mac,
        },
        Want {
            what: "routed reply",
            from: IRONFLOW,
            src: DB1,
            dst: WEB2,
            icmp_type: 0,
            switch: "kube-node2",
            ingress: "stor-kube-node2",
            egress: "web-2",
            ttl: 63,
            router_mac: web_mac,
        },
        Want {
            what: "switched request",
            from: IRONFLOW,
            src: WEB1,
            dst: WEB2,
            icmp_type: 8,
            switch: "kube-node2",
            ingress: "web-1",
            egress: "web-2",
            ttl: 64,
            router_mac: None,
        },
        Want {
            what: "switched reply",
            from: STOCK,
            src: WEB2,
            dst: WEB1,
            icmp_type: 0,
            switch: "kube-node2",
            ingress: "web-2",
            egress: "web-1",
            ttl: 64,
            router_mac: None,
        },
        Want {
            what: "switched request",
            from: STOCK,
            src: WEB2,
            dst: WEB1,
            icmp_type: 8,
            switch: "kube-node2",
            ingress: "web-2",
            egress: "web-1",
            ttl: 64,
            router_mac: None,
        },
        Want {
            what: "switched reply",
            from: IRONFLOW,
            src: WEB1,
            dst: WEB2,
            icmp_type: 0,
            switch: "kube-node2",
            ingress: "web-1",
            egress: "web-2",
            ttl: 64,
            router_mac: None,
        },
    ];
    let mut found: Vec<Option<Vec<u8>>> = vec![None; wants.len()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while found.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "no Geneve frame on the underlay for {:?}",
            wants
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(w, _)| format!("{} from {} ({} → {})", w.what, w.from, w.src, w.dst))
                .collect::<Vec<_>>()
        );
        for (from, to) in [
            ("web-1", SSHD2),
            ("web-2", DB1),
            ("web-1", WEB2),
            ("web-2", WEB1),
        ] {
            let _ = lab.pod(from).unwrap().ping(to, 1);
        }
        for (sock, node) in [(&from_stock, STOCK), (&from_ironflow, IRONFLOW)] {
            let src = lab.node(node).unwrap().encap_ip;
            while let Ok(Some(f)) = sock.recv_incoming(Duration::from_millis(50)) {
                if !is_geneve_icmp(&f, src) {
                    continue;
                }
                let inner = &f[INNER_IP..];
                for (w, slot) in wants.iter().zip(found.iter_mut()) {
                    if slot.is_none()
                        && w.from == node
                        && inner[12..16] == w.src.octets()
                        && inner[16..20] == w.dst.octets()
                        && inner[20] == w.icmp_type
                    {
                        *slot = Some(f.clone());
                    }
                }
            }
        }
    }
    let frames: Vec<Vec<u8>> = found.into_iter().map(Option::unwrap).collect();
    let encap_mac = |node: &str| {
        let n = lab.node(node).unwrap();
        let ifname = if n.stock().is_some() {
            "br-phy"
        } else {
            "eth0"
        };
        n.ns().mac(ifname).unwrap()
    };
    let reference = layout(&frames[0]);
    for (w, f) in wants.iter().zip(&frames) {
        let ctx = format!("{} from {} ({} → {})", w.what, w.from, w.src, w.dst);
        // Layout: the same for every frame, whoever sent it.
        assert_eq!(
            layout(f),
            reference,
            "{ctx}: laid out unlike the {}",
            wants[0].from
        );
        // Addresses: the sender's encap IP and MAC to the receiver's.
        let to = if w.from == STOCK { IRONFLOW } else { STOCK };
        let (src_node, dst_node) = (lab.node(w.from).unwrap(), lab.node(to).unwrap());
        assert_eq!(
            f[IP + 12..IP + 16],
            src_node.encap_ip.octets(),
            "{ctx}: outer src"
        );
        assert_eq!(
            f[IP + 16..IP + 20],
            dst_node.encap_ip.octets(),
            "{ctx}: outer dst"
        );
        assert_eq!(f[0..6], encap_mac(to), "{ctx}: outer dst MAC");
        assert_eq!(f[6..12], encap_mac(w.from), "{ctx}: outer src MAC");
        // VNI and option: the destination switch's key, the ingress and
        // egress ports' keys.
        let want_keys = (
            dp_key(&lab, w.switch),
            port_key(&lab, w.ingress),
            port_key(&lab, w.egress),
        );
        assert_eq!(keys(f), want_keys, "{ctx}: (VNI, ingress key, egress key)");
        // The inner frame: routed by the sender.
        let inner_ip = &f[INNER_IP..];
        assert_eq!(inner_ip[8], w.ttl, "{ctx}: inner TTL");
        if let Some(m) = w.router_mac {
            assert_eq!(f[INNER + 6..INNER + 12], m, "{ctx}: inner source MAC");
        }
    }
    // What both sides put there, spelled out.
    for (k, v) in [
        ("ip flags", 2),
        ("ip identification", 0),
        ("ip ttl", 64),
        ("udp dst port", 6081),
        ("udp checksum present", 1),
        ("udp checksum verifies", 1),
        ("geneve version", 0),
        ("geneve options length (words)", 2),
        ("geneve C flag", 1),
        ("geneve protocol", 0x6558),
        ("option class", 0x0102),
        ("option type", 0x80),
        ("option length (words)", 1),
    ] {
        assert_eq!(reference[k], v, "{k}");
    }
    eprintln!("Geneve layout, the same from both chassis: {reference:#?}");
    drop((from_stock, from_ironflow));

    // TCP both ways, across the router and on one switch.
    let _sinks: Vec<TcpSink> = [
        ("sshd-2", 22),
        ("db-1", 22),
        ("web-1", 8080),
        ("web-2", 8080),
    ]
    .iter()
    .map(|(pod, port)| TcpSink::start(lab.pod(pod).unwrap().ns(), *port).unwrap())
    .collect();
    let at = |ip: Ipv4Addr, port| SocketAddrV4::new(ip, port);
    transfer(&lab, "web-1", at(SSHD2, 22)); // ironflow → stock, routed
    transfer(&lab, "sshd-2", at(WEB1, 8080)); // stock → ironflow, routed
    transfer(&lab, "web-2", at(DB1, 22)); // stock → ironflow, routed
    transfer(&lab, "db-1", at(WEB2, 8080)); // ironflow → stock, routed
    transfer(&lab, "web-1", at(WEB2, 8080)); // ironflow → stock, one switch
    transfer(&lab, "web-2", at(WEB1, 8080)); // stock → ironflow, one switch

    // The ACL, whichever side the client and the server are on: tcp/22
    // from web clients connects, tcp/23 is dropped (a timeout, where a
    // port the ACL let through would refuse).
    let cases = [
        ("web-1", SSHD2, "ironflow client, stock server"),
        ("web-2", SSHD2, "stock client, stock server"),
        ("web-2", DB1, "stock client, ironflow server"),
        ("web-1", DB1, "ironflow client, ironflow server"),
    ];
    std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(from, dst, what)| {
                let ns = lab.pod(from).unwrap().ns();
                s.spawn(move || {
                    let ssh = connect(ns, at(*dst, 22), Duration::from_secs(3));
                    let telnet = connect(ns, at(*dst, 23), Duration::from_secs(2));
                    (*what, ssh, telnet)
                })
            })
            .collect();
        for h in handles {
            let (what, ssh, telnet) = h.join().unwrap();
            assert_eq!(ssh, Connect::Connected, "tcp/22, {what}\n{}", report(&lab));
            assert_eq!(telnet, Connect::TimedOut, "tcp/23, {what}");
        }
    });

    // The load balancer, whichever side DNATs and whichever delivers: a
    // whole transfer through each VIP from each side.
    transfer(&lab, "web-1", at(VIP_SSHD, 22)); // ironflow DNAT → stock
    transfer(&lab, "web-2", at(VIP_SSHD, 22)); // stock DNAT → stock
    transfer(&lab, "web-2", at(VIP_DB, 22)); // stock DNAT → ironflow
    transfer(&lab, "web-1", at(VIP_DB, 22)); // ironflow DNAT → ironflow
    eprintln!(
        "mixed cluster test done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn words(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in cmd.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ' ' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn mac(text: &str) -> [u8; 6] {
    ironflow_testbeds::netns::parse_mac(text).unwrap()
}
