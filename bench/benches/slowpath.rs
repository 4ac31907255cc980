//! The slow path on the seed topology: compiling the logical network, and
//! running the cross-node packet (web-1 on kube-node2, through the router,
//! to sshd-2 on kube-node1) through the compiled pipelines.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ironflow_pipeline::interp::{run, translate, Entry, SimulatedConntrack};
use ironflow_pipeline::program::compile;
use ironflow_pipeline::snapshot::Snapshot;
use ironflow_pipeline::trace::microflow_key;

const SEED: &str = include_str!("../../testdata/seed-snapshot.json");

fn slowpath(c: &mut Criterion) {
    let net = Snapshot::from_json(SEED).expect("seed snapshot").network;
    let mut group = c.benchmark_group("seed_slowpath");

    group.throughput(Throughput::Elements(net.logical_flows.len() as u64));
    group.bench_function("compile", |b| b.iter(|| black_box(compile(&net))));

    let program = compile(&net);
    let dp = net
        .find_datapath("kube-node2")
        .expect("seed has kube-node2");
    let key = microflow_key(
        &net,
        dp,
        "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa \
         && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 64 && tcp.dst == 22",
    )
    .expect("seed microflow");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cross_node_packet", |b| {
        b.iter(|| {
            let mut ct = SimulatedConntrack {
                states: Vec::new(),
                next: 0,
                lb_dst: None,
            };
            let out = run(&program, &net, dp.uuid, key, &mut ct, None);
            assert_eq!(out.outputs.len(), 1);
            black_box(out)
        })
    });
    // The datapath's slow path: the first pass of the same packet on
    // kube-node2 (a cache miss costs this, then one per later pass).
    let mut bound = net.clone();
    for (port, chassis) in [("sshd-2", "kube-node1"), ("web-1", "kube-node2")] {
        if let Some(p) = bound.ports.get_mut(port) {
            p.chassis = Some(chassis.into());
        }
    }
    let bound_program = compile(&bound);
    let entry = Entry::Port {
        datapath: dp.uuid,
        inport: bound.ports["web-1"].tunnel_key,
    };
    group.bench_function("translate_first_pass", |b| {
        b.iter(|| {
            let t = translate(&bound_program, &bound, "kube-node2", entry, &key, &[]);
            assert!(t.freeze.is_some());
            black_box(t)
        })
    });
    group.finish();
}

criterion_group!(benches, slowpath);
criterion_main!(benches);
