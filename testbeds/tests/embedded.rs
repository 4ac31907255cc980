//! The embedded harness on the seed topology: pods with real TCP/IP stacks
//! (smoltcp) talking through ironflow nodes in this process, on one node
//! and across two joined by the in-memory Geneve underlay.

use ironflow_testbeds::embedded::{Lab, PodId};
use std::net::{Ipv4Addr, SocketAddrV4};

const SSHD2_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];
const WEB1_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 2];
const K8S_NODE1_MAC: [u8; 6] = [0xba, 0x2c, 0x06, 0x32, 0x14, 0x78];
const RTOS_NODE1_MAC: [u8; 6] = [0, 0, 0, 0xc0, 0x2e, 0xc7];
const RTOS_NODE2_MAC: [u8; 6] = [0, 0, 0, 0xd3, 0x4b, 0xaa];
const SSHD2_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 3);
const WEB1_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 3, 3);
const K8S_NODE1_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 2);

/// Steps a test allows for an exchange: each is 1 ms of virtual time, and
/// an exchange takes a handful.
const STEPS: usize = 2000;

fn seed() -> Lab {
    Lab::from_snapshot(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/seed-snapshot.json"
    ))
    .unwrap()
}

/// The IPv4/TCP header fields of a captured frame that a test looks at.
#[derive(Debug)]
struct Seen {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    ttl: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    syn: bool,
}

/// Reads a TCP/IPv4 frame (None for anything else).
fn tcp_frame(f: &[u8]) -> Option<Seen> {
    if f.len() < 14 + 20 + 20 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 6 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let l4 = 14 + ihl;
    let ip = |o: usize| Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
    Some(Seen {
        dst_mac: f[0..6].try_into().ok()?,
        src_mac: f[6..12].try_into().ok()?,
        ttl: f[14 + 8],
        src: ip(14 + 12),
        dst: ip(14 + 16),
        sport: u16::from_be_bytes([f[l4], f[l4 + 1]]),
        dport: u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
        syn: f.get(l4 + 13).is_some_and(|flags| flags & 0x02 != 0),
    })
}

/// The SYN the pod `at` received for port `dport`.
fn syn_seen(lab: &Lab, at: PodId, dport: u16) -> Seen {
    lab[at]
        .captured()
        .filter_map(tcp_frame)
        .find(|s| s.syn && s.dport == dport)
        .expect("a SYN in the capture")
}

/// A TCP exchange both ways between `client` and a server on `server`
/// port `port`; returns the address the server saw the client at.
fn tcp_exchange(lab: &mut Lab, client: PodId, server: PodId, port: u16) -> SocketAddrV4 {
    let listening = lab[server].tcp_listen(port).unwrap();
    let dst = lab[server].ip();
    let conn = lab[client].tcp_connect(dst, port).unwrap();
    let report = |lab: &Lab| lab.report();
    if let Err(e) = lab.run_until(|lab| lab[client].tcp_established(conn), STEPS) {
        panic!("no connection: {e}");
    }
    let request = b"GET / over ironflow\n";
    assert_eq!(lab[client].tcp_send(conn, request).unwrap(), request.len());
    lab.run_until(|lab| lab[server].tcp_received(listening) == request, STEPS)
        .unwrap_or_else(|e| panic!("request lost: {e}"));
    let reply = vec![0x5a; 20_000];
    let mut sent = 0;
    lab.run_until(
        |lab| {
            sent += lab[server].tcp_send(listening, &reply[sent..]).unwrap();
            lab[client].tcp_received(conn).len() == reply.len()
        },
        STEPS,
    )
    .unwrap_or_else(|e| panic!("reply lost: {e}\n{}", report(lab)));
    assert_eq!(lab[client].tcp_take(conn), reply);
    lab[server].tcp_remote(listening).unwrap()
}

#[test]
fn tcp_across_the_router_on_one_node() {
    let mut lab = seed();
    lab.node("kube-node1").unwrap();
    let sshd = lab.pod("kube-node1", "sshd-2").unwrap();
    let web = lab.pod("kube-node1", "web-1").unwrap();
    let a = lab[web].address().unwrap();
    assert_eq!(
        (a.mac, a.ip, a.prefix, a.gateway),
        (WEB1_MAC, WEB1_IP, 24, Some(Ipv4Addr::new(192, 168, 3, 1))),
        "addressed from the Port_Binding and its router port"
    );

    let client = tcp_exchange(&mut lab, web, sshd, 22);
    assert_eq!(*client.ip(), WEB1_IP, "no NAT on the way");

    // As sshd-2 saw the SYN: routed by kube-master, so from the router
    // port's MAC, to sshd-2's, one hop less.
    let syn = syn_seen(&lab, sshd, 22);
    assert_eq!((syn.src_mac, syn.dst_mac), (RTOS_NODE1_MAC, SSHD2_MAC));
    assert_eq!((syn.src, syn.dst, syn.ttl), (WEB1_IP, SSHD2_IP, 63));
    // And the answers as web-1 saw them.
    let back = lab[web]
        .captured()
        .filter_map(tcp_frame)
        .find(|s| s.sport == 22)
        .unwrap();
    assert_eq!((back.src_mac, back.dst_mac), (RTOS_NODE2_MAC, WEB1_MAC));
    assert_eq!(back.ttl, 63);
    let w = lab.get_node("kube-node1").unwrap().worker_stats();
    assert_eq!(w.tunnelled, 0, "one node: nothing on the underlay");
    assert!(w.cache.emc_hits > 0, "the fast path carried it: {w:?}");
}

#[test]
fn tcp_and_udp_on_one_switch() {
    let mut lab = seed();
    lab.node("kube-node1").unwrap();
    let sshd = lab.pod("kube-node1", "sshd-2").unwrap();
    let mgmt = lab.pod("kube-node1", "k8s-kube-node1").unwrap();

    let client = tcp_exchange(&mut lab, sshd, mgmt, 8080);
    assert_eq!(*client.ip(), SSHD2_IP);
    // Switched, not routed: MACs and TTL as sshd-2 sent them.
    let syn = syn_seen(&lab, mgmt, 8080);
    assert_eq!((syn.src_mac, syn.dst_mac), (SSHD2_MAC, K8S_NODE1_MAC));
    assert_eq!((syn.src, syn.dst, syn.ttl), (SSHD2_IP, K8S_NODE1_IP, 64));

    let tx = lab[sshd].udp_bind(5353).unwrap();
    let rx = lab[mgmt].udp_bind(53).unwrap();
    lab[sshd]
        .udp_send(tx, SocketAddrV4::new(K8S_NODE1_IP, 53), b"query")
        .unwrap();
    let mut got = None;
    lab.run_until(
        |lab| {
            got = lab[mgmt].udp_recv(rx);
            got.is_some()
        },
        STEPS,
    )
    .unwrap();
    assert_eq!(
        got.unwrap(),
        (SocketAddrV4::new(SSHD2_IP, 5353), b"query".to_vec())
    );
}

#[test]
fn ping_the_router_and_across_it_where_the_acl_allows() {
    let mut lab = seed();
    lab.node("kube-node1").unwrap();
    let sshd = lab.pod("kube-node1", "sshd-2").unwrap();
    let web = lab.pod("kube-node1", "web-1").unwrap();
    // The router answers for its own port's address.
    let gw = Ipv4Addr::new(192, 168, 3, 1);
    lab[web].ping(gw, 1, b"router").unwrap();
    lab.run_until(|lab| !lab[web].echo_replies().is_empty(), STEPS)
        .unwrap();
    assert_eq!(lab[web].echo_replies()[0].from, gw);

    // sshd-2 → web-1 crosses the router; nothing guards web-1.
    for seq in 1..=3 {
        lab[sshd].ping(WEB1_IP, seq, b"ironflow").unwrap();
    }
    lab.run_until(|lab| lab[sshd].echo_replies().len() == 3, STEPS)
        .unwrap();
    let replies = lab[sshd].echo_replies();
    assert!(replies
        .iter()
        .all(|r| r.from == WEB1_IP && r.data == b"ironflow"));
    let seqs: Vec<u16> = replies.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);

    // The other way the seed's ACL (pg_sshd: TCP 22 from $web_clients
    // only) drops the echo request before it reaches sshd-2.
    let drops_before: u64 = lab.nodes()[0].worker_stats().drops.values().sum();
    lab[web].ping(SSHD2_IP, 9, b"blocked").unwrap();
    lab.run(50).unwrap();
    assert!(lab[web].echo_replies().iter().all(|r| r.seq != 9));
    let drops_after: u64 = lab.nodes()[0].worker_stats().drops.values().sum();
    assert_eq!(drops_after, drops_before + 1, "{}", lab.report());
}

#[test]
fn raw_frames_reach_a_raw_pod_byte_for_byte() {
    let mut lab = seed();
    lab.node("kube-node1").unwrap();
    let sshd = lab.raw_pod("kube-node1", "sshd-2").unwrap();
    let mgmt = lab.raw_pod("kube-node1", "k8s-kube-node1").unwrap();
    // A UDP datagram (checksum 0: none) from sshd-2 to the management port.
    let mut frame = Vec::new();
    frame.extend_from_slice(&K8S_NODE1_MAC);
    frame.extend_from_slice(&SSHD2_MAC);
    frame.extend_from_slice(&[0x08, 0x00]);
    let payload = b"raw";
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&SSHD2_IP.octets());
    ip.extend_from_slice(&K8S_NODE1_IP.octets());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&[0x9c, 0x40, 0x00, 0x35]);
    frame.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);

    assert!(lab[sshd].inject(&frame));
    lab.run(2).unwrap();
    assert_eq!(lab[mgmt].receive().as_deref(), Some(&frame[..]));
    assert_eq!(lab[mgmt].receive(), None);
    assert_eq!(lab[sshd].receive(), None, "nothing comes back");
}

#[test]
fn tcp_across_two_nodes_over_the_geneve_underlay() {
    let mut lab = seed();
    lab.node("kube-node1").unwrap();
    lab.node("kube-node2").unwrap();
    let sshd = lab.pod("kube-node1", "sshd-2").unwrap();
    let web = lab.pod("kube-node2", "web-1").unwrap();

    let client = tcp_exchange(&mut lab, web, sshd, 22);
    assert_eq!(*client.ip(), WEB1_IP);
    // Routed on the sending node (kube-node2), delivered by kube-node1's
    // egress pipeline: the same rewrite as on one node.
    let syn = syn_seen(&lab, sshd, 22);
    assert_eq!((syn.src_mac, syn.dst_mac), (RTOS_NODE1_MAC, SSHD2_MAC));
    assert_eq!((syn.src, syn.dst, syn.ttl), (WEB1_IP, SSHD2_IP, 63));

    let n1 = lab.get_node("kube-node1").unwrap().worker_stats();
    let n2 = lab.get_node("kube-node2").unwrap().worker_stats();
    assert!(n2.tunnelled > 0 && n1.decapsulated > 0, "{}", lab.report());
    assert!(n1.tunnelled > 0 && n2.decapsulated > 0, "{}", lab.report());
    let u = lab.underlay_stats();
    assert_eq!(u.unknown_unicast + u.runts + u.queue_full, 0, "{u:?}");
    assert!(u.delivered >= n1.tunnelled + n2.tunnelled);
}

#[test]
fn mistakes_are_errors_not_panics() {
    let mut lab = seed();
    lab.node("kube-node1").unwrap();
    assert!(lab.node("kube-node1").is_err(), "a node twice");
    assert!(lab.pod("kube-node9", "sshd-2").is_err(), "no such node");
    assert!(lab.pod("kube-node1", "nope").is_err(), "no such port");
    let e = lab.pod("kube-node1", "stor-kube-node1").unwrap_err();
    assert!(e.to_string().contains("patch"), "{e}");
    lab.pod("kube-node1", "sshd-2").unwrap();
    assert!(lab.pod("kube-node1", "sshd-2").is_err(), "attached twice");
    // A raw pod has no stack to open sockets on.
    let raw = lab.raw_pod("kube-node1", "web-1").unwrap();
    assert!(lab[raw].tcp_listen(80).is_err());
}

#[test]
fn runs_repeat_exactly() {
    let run = || {
        let mut lab = seed();
        lab.node("kube-node1").unwrap();
        let sshd = lab.pod("kube-node1", "sshd-2").unwrap();
        let web = lab.pod("kube-node1", "web-1").unwrap();
        tcp_exchange(&mut lab, web, sshd, 22);
        (
            lab.now_ms(),
            lab[sshd].captured().map(<[u8]>::to_vec).collect::<Vec<_>>(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn a_lab_from_a_live_southbound() {
    use ironflow_testbeds::central::OvnCentral;
    use ironflow_testbeds::seed::build_seed;
    let central = OvnCentral::start().expect("start OVN central");
    build_seed(&central).expect("build seed");
    let mut lab = Lab::from_db(&central.sb_remote()).unwrap();
    drop(central);
    lab.node("kube-node1").unwrap();
    lab.node("kube-node2").unwrap();
    let sshd = lab.pod("kube-node1", "sshd-2").unwrap();
    let web = lab.pod("kube-node2", "web-1").unwrap();
    let client = tcp_exchange(&mut lab, web, sshd, 22);
    assert_eq!(*client.ip(), WEB1_IP);
    // Nobody answers at an address with no SB behind it.
    assert!(Lab::from_db("unix:/nonexistent/sb.sock").is_err());
}

#[test]
fn the_controller_side_answers_in_the_lab() {
    let mut lab = seed();
    lab.node("kube-node2").unwrap();
    let web = lab.raw_pod("kube-node2", "web-1").unwrap();
    // UDP from web-1 to sshd-2 with TTL 1: the router's time exceeded.
    let mut frame = Vec::new();
    frame.extend_from_slice(&RTOS_NODE2_MAC);
    frame.extend_from_slice(&WEB1_MAC);
    frame.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 31, 0, 1, 0x40, 0, 1, 17, 0, 0];
    ip.extend_from_slice(&WEB1_IP.octets());
    ip.extend_from_slice(&SSHD2_IP.octets());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&[0x9c, 0x40, 0x00, 0x35, 0, 11, 0, 0, b'x', b'y', b'z']);
    assert!(lab[web].inject(&frame));
    lab.run(4).unwrap();
    let reply = lab[web].receive().expect("an answer from the router");
    assert_eq!(&reply[0..6], &WEB1_MAC);
    assert_eq!(reply[23], 1, "ICMP");
    assert_eq!(reply[34], 11, "time exceeded");
    assert_eq!(&reply[26..30], &[192, 168, 3, 1], "from the router port");
    let node = lab.get_node("kube-node2").unwrap();
    assert_eq!(node.stats().punted, 1, "{}", lab.report());
}
