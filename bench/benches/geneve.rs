//! Geneve with OVN's option: building the outer headers in front of a
//! 64-byte and a 1400-byte inner frame (from a per-tunnel template, as the
//! fast path does, and from scratch), and taking a frame apart with every
//! check.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ironflow_tunnel::geneve::{
    decap, source_port, write_headers, EncapParams, HeaderTemplate, OvnMetadata, ENCAP_LEN,
};
use std::net::Ipv4Addr;

fn params() -> EncapParams {
    EncapParams {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        src_ip: Ipv4Addr::new(10, 99, 0, 2),
        dst_ip: Ipv4Addr::new(10, 99, 0, 1),
        ttl: 64,
        src_port: source_port(0xdead_beef),
        meta: OvnMetadata {
            vni: 1,
            inport_key: 3,
            outport_key: 1,
        },
    }
}

fn geneve(c: &mut Criterion) {
    let p = params();
    let template = HeaderTemplate::new(&p);
    let mut group = c.benchmark_group("geneve");
    group.throughput(Throughput::Elements(1));
    for len in [64usize, 1400] {
        let mut frame = vec![0u8; ENCAP_LEN + len];
        for (i, b) in frame[ENCAP_LEN..].iter_mut().enumerate() {
            *b = i as u8;
        }
        group.bench_function(format!("encap_template_{len}"), |b| {
            b.iter(|| {
                let (hdr, inner) = frame.split_at_mut(ENCAP_LEN);
                black_box(template.write(hdr, inner, black_box(40000)))
            })
        });
        group.bench_function(format!("encap_scratch_{len}"), |b| {
            b.iter(|| {
                let (hdr, inner) = frame.split_at_mut(ENCAP_LEN);
                black_box(write_headers(hdr, inner, black_box(&p)))
            })
        });
        let (hdr, inner) = frame.split_at_mut(ENCAP_LEN);
        assert!(write_headers(hdr, inner, &p));
        group.bench_function(format!("decap_{len}"), |b| {
            b.iter(|| black_box(decap(black_box(&frame)).map(|d| d.meta)))
        });
    }
    group.finish();
}

criterion_group!(benches, geneve);
criterion_main!(benches);
