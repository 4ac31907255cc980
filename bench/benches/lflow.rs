//! Throughput of the logical-flow language on real northd output: the seed
//! topology's flows parsed, normalised per datapath, and their actions parsed.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ironflow_pipeline::lflow::actions::parse_actions;
use ironflow_pipeline::lflow::expr::parse_match;
use ironflow_pipeline::lflow::names::DatapathNames;
use ironflow_pipeline::lflow::normalize::normalize;
use ironflow_pipeline::snapshot::Snapshot;

const SEED: &str = include_str!("../../testdata/seed-snapshot.json");

fn lflow(c: &mut Criterion) {
    let net = Snapshot::from_json(SEED).expect("seed snapshot").network;
    let flows: Vec<_> = net.logical_flows.values().collect();
    let n = flows.len() as u64;
    let mut group = c.benchmark_group("seed_lflows");
    group.throughput(Throughput::Elements(n));

    group.bench_function("parse_match", |b| {
        b.iter(|| {
            for f in &flows {
                black_box(parse_match(&f.match_).ok());
            }
        })
    });

    let parsed: Vec<_> = flows
        .iter()
        .map(|f| (*f, parse_match(&f.match_).expect("seed matches parse")))
        .collect();
    let names = DatapathNames::for_all(&net);
    group.bench_function("normalize", |b| {
        b.iter(|| {
            for (flow, expr) in &parsed {
                for dp in net.flow_datapaths(flow) {
                    black_box(normalize(expr, &names[dp]).ok());
                }
            }
        })
    });

    group.bench_function("parse_actions", |b| {
        b.iter(|| {
            for f in &flows {
                black_box(parse_actions(&f.actions).ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, lflow);
criterion_main!(benches);
