//! Conntrack micro-benchmarks: the hot path (a packet of an established
//! connection found in a table of 10k or 1M connections) and committing a
//! new connection, plain and load-balanced.
//!
//! The lookup benches walk all connections of the table in turn, so the
//! big table pays the cache misses a busy node would; `one_conn` repeats a
//! single connection for the cost with everything in cache.
//!
//! `conntrack/fastpath` is what the fast path does for one packet of an
//! established connection through an OVN pipeline with stateful ACLs:
//! `ct(zone=Z,nat)` (the first pass's conntrack trip), then on the second
//! pass `ct(commit,zone=Z,mark=0/1)` with the state the first call left
//! in the key; `commit_same` is the commit alone; `lookup_2threads` times
//! lookups while a second thread looks up in the same table.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ironflow_datapath::conntrack::{Conntrack, CtConfig};
use ironflow_datapath::flow::{slots, FlowKey};
use ironflow_pipeline::dpaction::{Backend, CtAction, CtNat};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SYN: u16 = 0x02;
const ACK: u16 = 0x10;

/// The `i`th client's TCP packet to a server (or the server's answer).
fn tcp(i: u32, reply: bool, flags: u16) -> FlowKey {
    let client = 0x0a00_0000 | (i >> 14);
    let port = 1024 + (i & 0x3fff) as u16;
    let (src, dst, sp, dp) = if reply {
        (0x0a01_0001, client, 80, port)
    } else {
        (client, 0x0a01_0001, port, 80)
    };
    let mut k = FlowKey::ZERO;
    k.set(slots::ETH_TYPE, 0x0800);
    k.set(slots::IP_PROTO, 6);
    k.set(slots::IP_SRC, u128::from(src));
    k.set(slots::IP_DST, u128::from(dst));
    k.set(slots::TP_SRC, u128::from(sp));
    k.set(slots::TP_DST, u128::from(dp));
    k.set(slots::TCP_FLAGS, u128::from(flags));
    k
}

fn action(commit: bool) -> CtAction {
    CtAction {
        zone: 7,
        commit,
        recirculates: !commit,
        ..CtAction::default()
    }
}

fn established(n: u32) -> Conntrack {
    let ct = Conntrack::new(CtConfig::default());
    let (c, next) = (action(true), action(false));
    for i in 0..n {
        ct.execute(&mut tcp(i, false, SYN), &[], &c, 0);
        ct.execute(&mut tcp(i, true, SYN | ACK), &[], &next, 0);
        ct.execute(&mut tcp(i, false, ACK), &[], &next, 0);
    }
    assert_eq!(ct.len(), n as usize);
    ct
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack/lookup_est");
    g.throughput(Throughput::Elements(1));
    let next = action(false);
    for n in [10_000u32, 1_000_000] {
        let ct = established(n);
        let keys: Vec<FlowKey> = (0..n).map(|i| tcp(i, false, ACK)).collect();
        let mut i = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut k = keys[i];
                i = if i + 1 == keys.len() { 0 } else { i + 1 };
                black_box(ct.execute(&mut k, &[], &next, 1))
            })
        });
    }
    let ct = established(1);
    let key = tcp(0, false, ACK);
    g.bench_function("one_conn", |b| {
        b.iter(|| {
            let mut k = key;
            black_box(ct.execute(&mut k, &[], &next, 1))
        })
    });
    g.finish();
}

/// Times `iters` commits of new connections, in fresh tables of at most
/// 200k connections (flushing is not timed).
fn commit_new(iters: u64, action: &CtAction) -> Duration {
    let ct = Conntrack::new(CtConfig::default());
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(200_000);
        let start = Instant::now();
        for i in 0..n as u32 {
            let mut k = tcp(i, false, SYN);
            black_box(ct.execute(&mut k, &[], action, 0));
        }
        total += start.elapsed();
        ct.flush();
        left -= n;
    }
    total
}

fn commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack/commit_new");
    g.throughput(Throughput::Elements(1));
    let plain = action(true);
    g.bench_function("plain", |b| {
        b.iter_custom(|iters| commit_new(iters, &plain))
    });
    let backends: Vec<Backend> = (1..=8)
        .map(|i| Backend {
            ipv6: false,
            addr: 0xc0a8_0000 | i,
            port: Some(8080),
        })
        .collect();
    let lb = CtAction {
        nat: Some(CtNat::DstSelect(backends.into())),
        ..action(true)
    };
    g.bench_function("lb_8_backends", |b| {
        b.iter_custom(|iters| commit_new(iters, &lb))
    });
    g.finish();
}

/// The fast path's two conntrack calls for one packet of an established
/// connection (see the module doc).
fn fastpath(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack/fastpath");
    g.throughput(Throughput::Elements(1));
    let ct = established(1);
    let key = tcp(0, false, ACK);
    let nat = CtAction {
        nat: Some(CtNat::Existing),
        ..action(false)
    };
    let mark = CtAction {
        mark: Some((0, 1)),
        ..action(true)
    };
    g.bench_function("nat_then_commit_mark", |b| {
        b.iter(|| {
            let mut k = key;
            ct.execute(&mut k, &[], &nat, 1);
            black_box(ct.execute(&mut k, &[], &mark, 1))
        })
    });
    g.bench_function("nat_only", |b| {
        b.iter(|| {
            let mut k = key;
            black_box(ct.execute(&mut k, &[], &nat, 1))
        })
    });
    let mut est = key;
    ct.execute(&mut est, &[], &nat, 1);
    g.bench_function("commit_same", |b| {
        b.iter(|| {
            let mut k = est;
            black_box(ct.execute(&mut k, &[], &mark, 1))
        })
    });
    g.finish();
}

/// Lookups on one thread while another thread looks up other connections
/// of the same table (the table is shared by workers): scaling must not
/// suffer from shared cache lines.
fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack/lookup_2threads");
    g.throughput(Throughput::Elements(1));
    let n = 10_000u32;
    let ct = established(n);
    let next = action(false);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut k = tcp(n - 1 - i, false, ACK);
                i = (i + 1) % (n / 2);
                black_box(ct.execute(&mut k, &[], &next, 1));
            }
        });
        let keys: Vec<FlowKey> = (0..n / 2).map(|i| tcp(i, false, ACK)).collect();
        let mut i = 0;
        g.bench_function("10000", |b| {
            b.iter(|| {
                let mut k = keys[i];
                i = if i + 1 == keys.len() { 0 } else { i + 1 };
                black_box(ct.execute(&mut k, &[], &next, 1))
            })
        });
        stop.store(true, Ordering::Relaxed);
    });
    g.finish();
}

criterion_group!(benches, lookup, commit, fastpath, two_threads);
criterion_main!(benches);
