//! The fast path and the slow path agree: random packets through a worker
//! with its caches (so most are answered by megaflows another packet made)
//! and through one that translates every pass afresh give the same frames
//! on the same ports. A megaflow whose mask left out a bit the pipeline
//! depended on shows up here as a difference.
//!
//! Topologies: the seed (routers, load balancers, port security), and the
//! `acls` lab topology (port groups, address sets, allow-related ACLs;
//! testdata/acls-snapshot.json is `ironflow sb dump` of `ironflow-lab start
//! --topology acls`).

use etherparse::PacketBuilder;
use ironflow_datapath::config::Config;
use ironflow_datapath::conntrack::CtConfig;
use ironflow_datapath::engine::Engine;
use ironflow_datapath::packet::{Packet, PacketBatch};
use ironflow_datapath::port::PortId;
use ironflow_datapath::worker::Worker;
use ironflow_pipeline::snapshot::Snapshot;
use ironflow_pipeline::LogicalNetwork;

/// A bound port: its number, MAC and IPv4 address, and the MAC of the
/// router port on its switch (its default gateway).
#[derive(Clone, Copy)]
struct Pod {
    port: PortId,
    mac: [u8; 6],
    ip: [u8; 4],
    gateway: [u8; 6],
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn parse_mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, part) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(part, 16).unwrap();
    }
    m
}

fn parse_ip(s: &str) -> [u8; 4] {
    let ip: std::net::Ipv4Addr = s.split('/').next().unwrap().parse().unwrap();
    ip.octets()
}

/// Every MAC and IPv4 address the topology's ports (router ports
/// included) have: what random packets are addressed to.
fn addresses(net: &LogicalNetwork) -> (Vec<[u8; 6]>, Vec<[u8; 4]>) {
    let mut macs = vec![[0xff; 6]];
    let mut ips = vec![[255, 255, 255, 255]];
    for p in net.ports.values() {
        for entry in &p.mac {
            let mut words = entry.split_whitespace();
            if let Some(mac) = words.next().filter(|w| w.contains(':')) {
                macs.push(parse_mac(&mac.to_lowercase()));
            }
            for w in words {
                if w.contains('.') {
                    ips.push(parse_ip(w));
                }
            }
        }
    }
    (macs, ips)
}

/// A packet from `from`: mostly to another pod the way a host would
/// address it (its MAC on the same subnet, the gateway's otherwise), else
/// to anything the topology has, or to nothing it has.
fn frame(rng: &mut Rng, from: &Pod, pods: &[Pod], macs: &[[u8; 6]], ips: &[[u8; 4]]) -> Vec<u8> {
    let to = pods[rng.below(pods.len())];
    let (mut dst_mac, mut dst_ip) = if to.ip[..3] == from.ip[..3] {
        (to.mac, to.ip)
    } else {
        (from.gateway, to.ip)
    };
    if rng.chance(30) {
        dst_mac = rng.pick(macs);
        dst_ip = rng.pick(ips);
    }
    if rng.chance(5) {
        dst_ip = [172, 16, rng.next() as u8, rng.next() as u8];
    }
    let src_mac = if rng.chance(95) {
        from.mac
    } else {
        [0x0a, 0, 0, 0, 0x99, rng.next() as u8]
    };
    let src_ip = if rng.chance(95) {
        from.ip
    } else {
        [10, 9, 9, rng.next() as u8]
    };
    let ttl = if rng.chance(80) {
        64
    } else {
        rng.pick(&[0u8, 1, 2, 255])
    };
    let ports = [22u16, 53, 67, 68, 80, 443, 8080, 40000, 55555];
    // Few source ports, so that connections repeat.
    let sport = 40000 + rng.below(16) as u16;
    let dport = rng.pick(&ports);
    let payload = [0u8; 12];
    let mut out = Vec::new();
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    match rng.below(10) {
        0..=4 => {
            let b = eth.ipv4(src_ip, dst_ip, ttl).tcp(sport, dport, 1, 64240);
            let b = match rng.below(5) {
                0 => b.syn(),
                1 => b.syn().ack(1),
                2 => b.fin().ack(1),
                3 => b.rst(),
                _ => b.ack(1),
            };
            b.write(&mut out, &payload).unwrap();
        }
        5..=6 => eth
            .ipv4(src_ip, dst_ip, ttl)
            .udp(sport, dport)
            .write(&mut out, &payload)
            .unwrap(),
        7 => eth
            .ipv4(src_ip, dst_ip, ttl)
            .icmpv4_echo_request(sport, 1)
            .write(&mut out, &payload)
            .unwrap(),
        8 => {
            // ARP request (or reply) for an address of the topology.
            let op: u16 = if rng.chance(80) { 1 } else { 2 };
            out.extend_from_slice(&dst_mac);
            out.extend_from_slice(&src_mac);
            out.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
            out.extend_from_slice(&op.to_be_bytes());
            out.extend_from_slice(&src_mac);
            out.extend_from_slice(&src_ip);
            out.extend_from_slice(&[0; 6]);
            out.extend_from_slice(&dst_ip);
        }
        _ => eth
            .ipv6(
                [
                    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, from.ip[3],
                ],
                [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                ttl,
            )
            .udp(sport, dport)
            .write(&mut out, &payload)
            .unwrap(),
    }
    out
}

type Sent = Vec<(PortId, Vec<u8>)>;

fn run(w: &mut Worker, port: PortId, frame: &[u8]) -> (Sent, usize) {
    let mut batch = PacketBatch::new();
    batch.push(Packet::from_slice(frame).unwrap()).ok();
    w.process_batch(port, &mut batch);
    let sent = w
        .take_tx()
        .into_iter()
        .map(|(p, pkt)| (p, pkt.data().to_vec()))
        .collect();
    let punted = w.punted.len();
    w.punted.clear();
    (sent, punted)
}

/// Runs `frames` as one batch; what was sent and how many were punted.
fn run_batch(w: &mut Worker, port: PortId, frames: &[Vec<u8>]) -> (Sent, usize) {
    let mut batch = PacketBatch::new();
    for f in frames {
        batch.push(Packet::from_slice(f).unwrap()).ok();
    }
    w.process_batch(port, &mut batch);
    let sent = w
        .take_tx()
        .into_iter()
        .map(|(p, pkt)| (p, pkt.data().to_vec()))
        .collect();
    let punted = w.punted.len();
    w.punted.clear();
    (sent, punted)
}

/// Sends the same random packets through a caching worker and an
/// uncached one, each on its own engine (so conntrack evolves alike).
/// With `batches`, the caching worker gets them in batches of up to 32
/// from one port (some repeating a packet of the batch, as a flow's
/// packets come together), the uncached one still one at a time.
fn agree(
    net: LogicalNetwork,
    chassis: &str,
    pods: &[(&str, PortId)],
    packets: usize,
    seed: u64,
    batches: bool,
) {
    let (macs, ips) = addresses(&net);
    let mut config = Config::new(net.clone(), chassis);
    let mut bound = Vec::new();
    for &(lsp, port) in pods {
        config.bind(port, lsp).unwrap();
        let p = &net.ports[lsp];
        let mut words = p.mac[0].split_whitespace();
        // The router port across this switch's patch port.
        let gateway = net
            .ports
            .values()
            .filter(|q| q.datapath == p.datapath)
            .filter_map(|q| q.options.get("peer"))
            .filter_map(|peer| net.ports.get(peer))
            .find_map(|r| r.mac.first())
            .map_or([0; 6], |m| {
                parse_mac(&m.split_whitespace().next().unwrap().to_lowercase())
            });
        bound.push(Pod {
            port,
            mac: parse_mac(words.next().unwrap()),
            ip: parse_ip(words.next().unwrap()),
            gateway,
        });
    }
    let mut config2 = Config::new(net, chassis);
    for &(lsp, port) in pods {
        config2.bind(port, lsp).unwrap();
    }
    let mut fast = Worker::new(Engine::new(config, CtConfig::default()));
    let mut slow = Worker::uncached(Engine::new(config2, CtConfig::default()));
    let mut rng = Rng(seed);
    let mut delivered = 0;
    let mut i = 0;
    while batches && i < packets {
        let from = &bound[rng.below(bound.len())];
        let n = 1 + rng.below(32);
        let mut frames: Vec<Vec<u8>> = Vec::with_capacity(n);
        for _ in 0..n {
            let f = match frames.len() {
                0 => frame(&mut rng, from, &bound, &macs, &ips),
                // A burst: the packet before again (the fused path).
                k if rng.chance(30) => frames[k - 1].clone(),
                k if rng.chance(50) => frames[rng.below(k)].clone(),
                _ => frame(&mut rng, from, &bound, &macs, &ips),
            };
            frames.push(f);
        }
        let a = run_batch(&mut fast, from.port, &frames);
        let mut b: (Sent, usize) = (Vec::new(), 0);
        for f in &frames {
            let (sent, punted) = run(&mut slow, from.port, f);
            b.0.extend(sent);
            b.1 += punted;
        }
        assert_eq!(a, b, "batch at packet {i} from port {}", from.port);
        delivered += a.0.len();
        i += n;
    }
    for i in (0..packets).filter(|_| !batches) {
        let from = &bound[rng.below(bound.len())];
        let f = frame(&mut rng, from, &bound, &macs, &ips);
        let a = run(&mut fast, from.port, &f);
        let b = run(&mut slow, from.port, &f);
        assert_eq!(a, b, "packet {i} from port {}: {:02x?}", from.port, f);
        delivered += a.0.len();
    }
    let s = fast.stats();
    assert!(
        s.cache.emc_hits + s.cache.megaflow_hits > s.upcalls,
        "the fast path was exercised: {s:?}"
    );
    assert!(!batches || s.fused > 0, "bursts took the fused path: {s:?}");
    // Conntrack answered both alike: the fused path's answers are counted
    // as the ones conntrack would have given.
    let (cf, cs) = (
        fast.engine().conntrack.stats(),
        slow.engine().conntrack.stats(),
    );
    assert_eq!(
        (cf.new, cf.committed, cf.invalid, cf.entries),
        (cs.new, cs.committed, cs.invalid, cs.entries),
        "conntrack: fast {cf:?} slow {cs:?}"
    );
    // ACLs drop much of the random traffic; enough must get through for
    // the comparison to cover delivery too.
    assert!(
        delivered > packets / 20,
        "packets were delivered: {delivered} {s:?}"
    );
}

fn snapshot(text: &str) -> LogicalNetwork {
    Snapshot::from_json(text).unwrap().network
}

#[test]
fn seed_fast_and_slow_paths_agree() {
    agree(
        snapshot(include_str!("../../testdata/seed-snapshot.json")),
        "node",
        &[
            ("web-1", 1),
            ("sshd-2", 2),
            ("k8s-kube-node1", 3),
            ("k8s-kube-node2", 4),
        ],
        3000,
        0x1234_5678_9abc_def1,
        false,
    );
}

#[test]
fn seed_batches_agree_with_packets_one_at_a_time() {
    agree(
        snapshot(include_str!("../../testdata/seed-snapshot.json")),
        "node",
        &[
            ("web-1", 1),
            ("sshd-2", 2),
            ("k8s-kube-node1", 3),
            ("k8s-kube-node2", 4),
        ],
        6000,
        0x2545_f491_4f6c_dd1d,
        true,
    );
}

#[test]
fn port_group_acls_fast_and_slow_paths_agree() {
    agree(
        snapshot(include_str!("../../testdata/acls-snapshot.json")),
        "node",
        &[("web1", 1), ("web2", 2), ("db1", 3)],
        3000,
        0x0fed_cba9_8765_4321,
        false,
    );
}

#[test]
fn port_group_batches_agree_with_packets_one_at_a_time() {
    agree(
        snapshot(include_str!("../../testdata/acls-snapshot.json")),
        "node",
        &[("web1", 1), ("web2", 2), ("db1", 3)],
        6000,
        0x9e37_79b9_7f4a_7c15,
        true,
    );
}

/// A TCP segment between two pods through their router.
fn tcp_via_router(from: &Pod, to: &Pod, sport: u16, dport: u16, syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(from.mac, from.gateway)
        .ipv4(from.ip, to.ip, 64)
        .tcp(sport, dport, 1, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, &[0u8; 8]).unwrap();
    out
}

/// The same packet (the same key) is refused before its connection exists
/// and delivered once it does: the fast path's shortcuts from one pass to
/// the next must go by what conntrack answered, not by the key alone.
#[test]
fn an_answer_refused_before_its_connection_is_delivered_after() {
    let net = snapshot(include_str!("../../testdata/acls-snapshot.json"));
    let mut config = Config::new(net, "node");
    config.bind(1, "web1").unwrap();
    config.bind(3, "db1").unwrap();
    let web1 = Pod {
        port: 1,
        mac: [0x0a, 0, 0, 0x0a, 0, 0x0a],
        ip: [10, 10, 0, 10],
        gateway: [0, 0, 0, 0x0a, 0, 1],
    };
    let db1 = Pod {
        port: 3,
        mac: [0x0a, 0, 0, 0x0b, 0, 0x0a],
        ip: [10, 20, 0, 10],
        gateway: [0, 0, 0, 0x0b, 0, 1],
    };
    let mut w = Worker::new(Engine::new(config, CtConfig::default()));
    let answer = tcp_via_router(&db1, &web1, 5432, 40000, false);
    for _ in 0..3 {
        let (sent, _) = run(&mut w, db1.port, &answer);
        assert!(
            sent.iter().all(|(p, _)| *p != web1.port),
            "no connection: not delivered"
        );
    }
    let (sent, _) = run(
        &mut w,
        web1.port,
        &tcp_via_router(&web1, &db1, 40000, 5432, true),
    );
    assert_eq!(sent.len(), 1, "web1 may open a connection to db1:5432");
    assert_eq!(sent[0].0, db1.port);
    for _ in 0..3 {
        let (sent, _) = run(&mut w, db1.port, &answer);
        assert_eq!(sent.len(), 1, "the answer is delivered: {:?}", w.stats());
        assert_eq!(sent[0].0, web1.port);
    }
}
