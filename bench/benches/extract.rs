//! Per-packet costs of the datapath's packet handling: flow-key extraction
//! (the hand-written reader against the etherparse-based reference),
//! header rewrites with their checksum updates, and taking a frame from
//! the pool.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ironflow_datapath::checksum::{
    checksum, fold64, pseudo_header_v4, pseudo_header_v6, sum_bytes,
};
use ironflow_datapath::extract::{
    self, extract, extract_into, extract_packet, extract_packet_into,
};
use ironflow_datapath::flow::{slots, FlowKey};
use ironflow_datapath::packet::{Packet, PacketPool};
use ironflow_datapath::rewrite::{dec_ttl, rewrite_from_key_diff, set};
use ironflow_pipeline::lflow::symbols::KeyField;

const MAC_A: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [0x0a, 0, 0, 0, 0, 2];

/// A 64-byte frame (60 on the wire before the FCS): Ethernet, IPv4 with
/// TTL 64, TCP with ACK|PSH and 6 bytes of payload.
fn ipv4_tcp_64() -> Vec<u8> {
    let mut f = eth(0x0800);
    let tcp_len = 20 + 6;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip[2..4].copy_from_slice(&(20 + tcp_len as u16).to_be_bytes());
    ip.extend_from_slice(&[192, 168, 1, 2, 10, 0, 0, 3]);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut tcp = vec![
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ];
    tcp.extend_from_slice(b"abcdef");
    let acc = pseudo_header_v4(0xc0a8_0102, 0x0a00_0003, 6, tcp_len as u16);
    let c = !fold64(sum_bytes(&tcp, acc));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f.resize(64, 0);
    f
}

/// Ethernet, IPv6, UDP with 16 bytes of payload (78 bytes).
fn ipv6_udp() -> Vec<u8> {
    let mut f = eth(0x86dd);
    let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut udp = vec![0x03, 0xe8, 0x07, 0xd0, 0, 24, 0, 0];
    udp.extend_from_slice(&[0x5a; 16]);
    let acc = pseudo_header_v6(&src, &dst, 17, udp.len() as u32);
    let c = !fold64(sum_bytes(&udp, acc));
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&udp);
    f
}

/// An ARP request padded to 60 bytes.
fn arp() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    f.resize(60, 0);
    f
}

fn eth(ty: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&ty.to_be_bytes());
    f
}

/// Packets per batch, as a worker takes them from a port.
const BATCH: usize = 32;

fn extraction(c: &mut Criterion) {
    let mut group = c.benchmark_group("extract");
    for (name, frame) in [
        ("ipv4_tcp_64", ipv4_tcp_64()),
        ("ipv6_udp", ipv6_udp()),
        ("arp", arp()),
    ] {
        // The two must agree on what they are timed on.
        assert_eq!(
            extract(&frame, 1).0,
            extract::reference::extract(&frame, 1),
            "{name}"
        );
        // One call at a time, into a key the caller keeps.
        let mut key = FlowKey::ZERO;
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}/hand"), |b| {
            b.iter(|| {
                let l = extract_into(black_box(&frame), black_box(1), &mut key);
                black_box(&key);
                l
            })
        });
        group.bench_function(format!("{name}/etherparse"), |b| {
            b.iter(|| {
                extract::reference::extract_into(black_box(&frame), black_box(1), &mut key);
                black_box(&key);
            })
        });
        // A batch of packets in their own frames, as a worker sees them:
        // the time per packet.
        let mut pkts: Vec<Packet> = (0..BATCH)
            .map(|_| Packet::from_slice(&frame).expect("fits"))
            .collect();
        let mut keys = [FlowKey::ZERO; BATCH];
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(format!("{name}/hand_batch32"), |b| {
            b.iter(|| {
                for (p, k) in pkts.iter_mut().zip(keys.iter_mut()) {
                    black_box(extract_packet_into(p, 1, k));
                }
                black_box(&keys);
            })
        });
        group.bench_function(format!("{name}/etherparse_batch32"), |b| {
            b.iter(|| {
                for (p, k) in pkts.iter().zip(keys.iter_mut()) {
                    extract::reference::extract_into(p.data(), 1, k);
                }
                black_box(&keys);
            })
        });
    }
    group.finish();
}

fn rewrites(c: &mut Criterion) {
    let mut group = c.benchmark_group("rewrite");
    // A batch of packets in their own frames, each with its key, and the
    // time per packet: rewriting one frame over and over would time the
    // store-to-load stalls of the last iteration's writes instead.
    let mut pkts: Vec<(Packet, FlowKey)> = (0..BATCH)
        .map(|_| {
            let mut p = Packet::from_slice(&ipv4_tcp_64()).expect("fits");
            let (k, _) = extract_packet(&mut p, 1);
            (p, k)
        })
        .collect();
    group.throughput(Throughput::Elements(BATCH as u64));

    // A logical router's rewrite of a forwarded packet. The TTLs go back
    // to 64 once every 60 batches so that they never reach zero.
    let mut rounds = 0u32;
    group.bench_function("router_eth_src_dst_dec_ttl", |b| {
        b.iter(|| {
            rounds += 1;
            if rounds == 60 {
                rounds = 0;
                for (p, k) in pkts.iter_mut() {
                    let _ = set(p, k, KeyField::IpTtl, 64);
                }
            }
            for (p, k) in pkts.iter_mut() {
                let _ = set(p, k, KeyField::EthSrc, black_box(0x0000_00d3_4baa));
                let _ = set(p, k, KeyField::EthDst, black_box(0x0a00_0000_0007));
                black_box(dec_ttl(p, k)).ok();
            }
        })
    });

    // Conntrack's DNAT: destination address and port, with the IPv4
    // header and TCP checksums; alternates between two translations so
    // that every call writes.
    let k0 = pkts[0].1;
    let mut k1 = k0;
    k1.set(slots::IP_DST, 0xc0a8_6401);
    k1.set(slots::TP_DST, 8080);
    for (p, k) in pkts.iter_mut() {
        let _ = set(p, k, KeyField::IpTtl, 64);
        *k = k0;
    }
    let mut flip = false;
    group.bench_function("nat_dst_addr_port", |b| {
        b.iter(|| {
            let (from, to) = if flip { (&k1, &k0) } else { (&k0, &k1) };
            flip = !flip;
            for (p, _) in pkts.iter_mut() {
                black_box(rewrite_from_key_diff(p, from, to)).ok();
            }
        })
    });
    group.finish();
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("packet");
    let mut pool = PacketPool::new(256);
    group.bench_function("pool_alloc_free", |b| {
        b.iter(|| {
            let p = pool.alloc();
            black_box(&p);
            pool.free(p);
        })
    });
    group.bench_function("heap_alloc_free", |b| b.iter(|| black_box(Packet::new())));
    group.finish();
}

criterion_group!(benches, extraction, rewrites, frames);
criterion_main!(benches);
