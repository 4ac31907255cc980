//! The flow caches on their own: an EMC hit, and megaflow hits when the
//! hit is in the last of N subtables (masks), with the EMC off.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ironflow_datapath::cache::{key_hash, FlowCache};
use ironflow_datapath::flow::{slots, FlowKey};

fn key(i: u128) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set(slots::IN_PORT, 1);
    k.set(slots::ETH_TYPE, 0x0800);
    k.set(slots::IP_SRC, 0xc0a8_0303);
    k.set(slots::IP_DST, 0x0a00_0000 + i);
    k.set(slots::IP_PROTO, 6);
    k.set(slots::TP_DST, 22);
    k
}

/// Mask `n`: the input port, the Ethernet type and the top `n + 8` bits
/// of the destination address (a distinct mask per `n`).
fn mask(n: u32) -> FlowKey {
    let mut m = FlowKey::ZERO;
    m.or(slots::IN_PORT, u128::MAX);
    m.or(slots::ETH_TYPE, u128::MAX);
    m.or(slots::IP_DST, u128::from(u32::MAX << (24 - n.min(24))));
    m
}

fn cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache");
    group.throughput(Throughput::Elements(1));

    let mut emc: FlowCache<u32> = FlowCache::new(1024, true);
    let k = key(1);
    let h = key_hash(&k);
    emc.insert_and_remember(&k, h, &mask(0), 7);
    group.bench_function("emc_hit", |b| {
        b.iter(|| black_box(emc.lookup(black_box(&k), h)))
    });
    group.bench_function("key_hash", |b| {
        b.iter(|| black_box(key_hash(black_box(&k))))
    });

    for masks in [1u32, 8, 24] {
        let mut mf: FlowCache<u32> = FlowCache::new(1024, false);
        // Masks 1..masks-1 hold flows that never match the probe, so the
        // hit is in the last subtable visited.
        for n in 1..masks {
            mf.insert(&key(0xff_0000), &mask(n), n);
        }
        mf.insert(&k, &mask(0), 0);
        let probe = key(2);
        group.bench_function(format!("megaflow_hit_{masks}_masks"), |b| {
            b.iter(|| black_box(mf.lookup(black_box(&probe), h)))
        });
    }
    group.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
