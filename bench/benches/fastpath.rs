//! The fast path on cache hits: the seed's cross-node packet (web-1 on
//! kube-node2 → router → sshd-2 on kube-node1), from a frame arriving on
//! web-1's port to a Geneve frame ready for the underlay, in batches of 32.
//! It includes the conntrack trip the switch's load balancers cause and
//! the second lookup after it. Issue goal: ≥ 20 Mpps per core (≤ 50 ns a
//! packet). For comparison, the same packet routed to sshd-2 on the same
//! node (two conntrack trips: the sender's and the receiver's switch).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ironflow_datapath::config::{Config, Underlay};
use ironflow_datapath::conntrack::CtConfig;
use ironflow_datapath::engine::Engine;
use ironflow_datapath::packet::{PacketBatch, BATCH_SIZE};
use ironflow_datapath::worker::Worker;
use ironflow_pipeline::snapshot::Snapshot;
use std::collections::HashMap;
use std::net::Ipv4Addr;

const SEED: &str = include_str!("../../testdata/seed-snapshot.json");
const WEB1: u32 = 1;
const SSHD2: u32 = 2;
const UNDERLAY: u32 = 100;

/// kube-node2 with web-1 on it; sshd-2 on kube-node1 across the
/// underlay, or (`local`) on kube-node2 too.
fn node2(local: bool) -> Worker {
    let mut net = Snapshot::from_json(SEED).expect("seed").network;
    net.ports.get_mut("sshd-2").expect("sshd-2").chassis = Some("kube-node1".into());
    let mut config = Config::new(net, "kube-node2");
    config.bind(WEB1, "web-1").expect("web-1");
    if local {
        config.bind(SSHD2, "sshd-2").expect("sshd-2");
    }
    let node1 = Ipv4Addr::new(10, 99, 0, 1);
    config.underlay = Some(Underlay {
        port: UNDERLAY,
        local_ip: Ipv4Addr::new(10, 99, 0, 2),
        local_mac: [0x02, 0, 0, 0, 0, 2],
        next_hop_macs: HashMap::from([(node1, [0x02, 0, 0, 0, 0, 1])]),
        chassis_ips: HashMap::from([("kube-node1".to_string(), node1)]),
    });
    Worker::new(Engine::new(config, CtConfig::default()))
}

/// A 64-byte TCP segment from web-1 to sshd-2's port 22, from `sport`.
fn frame(sport: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&[0, 0, 0, 0xd3, 0x4b, 0xaa, 0x0a, 0, 0, 0, 0, 2, 0x08, 0x00]);
    let ip_tcp_len = 20 + 20 + 10;
    let mut ip = [
        0x45,
        0,
        0,
        ip_tcp_len as u8,
        0,
        0,
        0x40,
        0,
        64,
        6,
        0,
        0,
        192,
        168,
        3,
        3,
        192,
        168,
        2,
        3,
    ];
    let sum = ones_complement(&ip);
    ip[10..12].copy_from_slice(&(!sum).to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = [0u8; 30];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&22u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x10; // ACK
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = vec![192, 168, 3, 3, 192, 168, 2, 3, 0, 6, 0, 30];
    pseudo.extend_from_slice(&tcp);
    let sum = ones_complement(&pseudo);
    tcp[16..18].copy_from_slice(&(!sum).to_be_bytes());
    f.extend_from_slice(&tcp);
    f
}

fn ones_complement(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn run_batches(c: &mut Criterion, name: &str, flows: u16, local: bool) {
    let mut w = node2(local);
    let frames: Vec<Vec<u8>> = (0..flows).map(|i| frame(40000 + i)).collect();
    let mut batch = PacketBatch::new();
    let mut next = 0usize;
    let mut fill = |w: &mut Worker, batch: &mut PacketBatch| {
        for _ in 0..BATCH_SIZE {
            let mut p = w.pool.alloc();
            p.set_data(&frames[next % frames.len()]);
            next += 1;
            let _ = batch.push(p);
        }
    };
    // Warm up: every flow's megaflows cached, connections established.
    for _ in 0..(usize::from(flows) / BATCH_SIZE + 2) * 2 {
        fill(&mut w, &mut batch);
        w.process_batch(WEB1, &mut batch);
        for (_, p) in w.take_tx() {
            w.pool.free(p);
        }
    }
    let s = w.stats();
    assert_eq!(s.drops.len(), 0, "warm-up dropped packets: {s:?}");
    assert!(
        s.tunnelled > 0 || (local && s.outputs > 0),
        "warm-up sent nothing: {s:?}"
    );

    let mut group = c.benchmark_group("fastpath");
    group.throughput(Throughput::Elements(BATCH_SIZE as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            fill(&mut w, &mut batch);
            w.process_batch(WEB1, &mut batch);
            for (_, p) in w.tx.drain(..) {
                black_box(p.len());
                w.pool.free(p);
            }
        })
    });
    group.finish();
    let s = w.stats();
    eprintln!(
        "{name}: {} packets, {} upcalls, EMC hits {}, megaflow hits {}",
        s.packets, s.upcalls, s.cache.emc_hits, s.cache.megaflow_hits
    );
}

fn fastpath(c: &mut Criterion) {
    run_batches(c, "seed_routed_same_node_1_flow", 1, true);
    run_batches(c, "seed_cross_node_geneve_1_flow", 1, false);
    run_batches(c, "seed_cross_node_geneve_1000_flows", 1000, false);
}

criterion_group!(benches, fastpath);
criterion_main!(benches);
