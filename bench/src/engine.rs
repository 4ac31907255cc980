//! Whole-engine runs: packets through extraction, caches, actions,
//! conntrack and Geneve on in-memory ports, on one core, for a set time.
//! `ironflow-bench engine --scenario NAME` prints what one run did.

use crate::frames::Tcp4;
use ironflow_datapath::config::{Config, Underlay};
use ironflow_datapath::conntrack::CtConfig;
use ironflow_datapath::engine::Engine;
use ironflow_datapath::packet::{PacketBatch, BATCH_SIZE};
use ironflow_datapath::port::PortId;
use ironflow_datapath::worker::Worker;
use ironflow_pipeline::snapshot::Snapshot;
use ironflow_pipeline::LogicalNetwork;
use serde::Serialize;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Instant;

const SEED: &str = include_str!("../../testdata/seed-snapshot.json");

/// What a run drives through the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// web-1 on kube-node2 → router → sshd-2 on kube-node1: Geneve out.
    SeedCrossNode,
    /// sshd-2 → k8s-kube-node1 on kube-node1's switch.
    SeedSameSwitch,
    /// Geneve from kube-node2 arriving at kube-node1 → egress → sshd-2.
    SeedDecap,
    /// Every packet a new TCP connection, committed by the switch's
    /// stateful stage (cross-node path).
    ConntrackNew,
    /// `flows` cross-node flows, picked by a Zipf distribution.
    Mixed,
}

impl Scenario {
    pub const ALL: [(&'static str, Scenario); 5] = [
        ("seed-cross-node", Scenario::SeedCrossNode),
        ("seed-same-switch", Scenario::SeedSameSwitch),
        ("seed-decap", Scenario::SeedDecap),
        ("conntrack-new", Scenario::ConntrackNew),
        ("mixed", Scenario::Mixed),
    ];

    pub fn parse(name: &str) -> Option<Scenario> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("?", |(n, _)| n)
    }
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub flows: usize,
    pub packets: u64,
    pub seconds: f64,
    pub mpps: f64,
    pub ns_per_packet: f64,
    /// Nanoseconds per packet of the thread's own CPU time (from
    /// `/proc/thread-self/schedstat`; 0 where there is none): on a busy
    /// machine this leaves out the time other processes had the core.
    pub cpu_ns_per_packet: f64,
    /// Cache misses during the timed part.
    pub upcalls: u64,
    /// Passes answered by the EMC, and by the megaflow cache, during the
    /// timed part.
    pub emc_hits: u64,
    pub megaflow_hits: u64,
    /// Packets that took the fused path (the next of a burst following
    /// the one before it) during the timed part.
    pub fused: u64,
    pub megaflows: usize,
    pub dropped: u64,
    pub conntrack_entries: u64,
    /// Connections conntrack committed during the timed part, per second
    /// (conntrack-new's figure: once the table is full, packets still
    /// flow but commit nothing).
    pub new_connections_per_s: f64,
    /// Commits refused during the timed part because the table was full.
    pub conntrack_limit_drops: u64,
    pub cores: u32,
    /// The worker's megaflows after the run, as `dpctl/dump-flows` prints
    /// them (for `--show-flows`).
    #[serde(skip)]
    pub megaflow_dump: Vec<String>,
}

const WEB1: PortId = 1;
const SSHD2: PortId = 2;
const K8S_NODE1: PortId = 3;
const UNDERLAY: PortId = 100;
const WEB1_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 2];
const SSHD2_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 1];
const K8S_NODE1_MAC: [u8; 6] = [0xba, 0x2c, 0x06, 0x32, 0x14, 0x78];
const RTOS_NODE2_MAC: [u8; 6] = [0, 0, 0, 0xd3, 0x4b, 0xaa];

fn seed() -> Result<LogicalNetwork, String> {
    let mut net = Snapshot::from_json(SEED)
        .map_err(|e| format!("seed snapshot: {e}"))?
        .network;
    for (port, chassis) in [("sshd-2", "kube-node1"), ("web-1", "kube-node2")] {
        if let Some(p) = net.ports.get_mut(port) {
            p.chassis = Some(chassis.into());
        }
    }
    Ok(net)
}

/// A seed chassis with `bound` ports, joined to the other node by Geneve.
fn node(
    net: &LogicalNetwork,
    chassis: &str,
    bound: &[(PortId, &str)],
    ct: CtConfig,
) -> Result<Worker, String> {
    let ips = [Ipv4Addr::new(10, 99, 0, 1), Ipv4Addr::new(10, 99, 0, 2)];
    let macs = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
    let me = usize::from(chassis == "kube-node2");
    let other = 1 - me;
    let mut config = Config::new(net.clone(), chassis);
    for (port, lsp) in bound {
        config.bind(*port, lsp).map_err(|e| e.to_string())?;
    }
    config.underlay = Some(Underlay {
        port: UNDERLAY,
        local_ip: ips[me],
        local_mac: macs[me],
        next_hop_macs: HashMap::from([(ips[other], macs[other])]),
        chassis_ips: HashMap::from([(["kube-node1", "kube-node2"][other].to_string(), ips[other])]),
    });
    Ok(Worker::new(Engine::new(config, ct)))
}

fn web1_to_sshd2(sport: u16, dport: u16, flags: u8) -> Tcp4 {
    Tcp4 {
        src_mac: WEB1_MAC,
        dst_mac: RTOS_NODE2_MAC,
        src: [192, 168, 3, 3],
        dst: [192, 168, 2, 3],
        ttl: 64,
        sport,
        dport,
        flags,
    }
}

/// Flow `i` of `n`: distinct source ports, then destination ports.
fn ports(i: usize) -> (u16, u16) {
    (
        1024 + (i % 60000) as u16,
        22u16.wrapping_add((i / 60000) as u16),
    )
}

/// A Zipf(1) sequence over `n` flows, `len` long (inverse CDF, xorshift).
fn zipf(n: usize, len: usize) -> Vec<usize> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            cdf.partition_point(|&c| c < u).min(n - 1)
        })
        .collect()
}

/// Runs `scenario` with `flows` flows for about `seconds`.
pub fn run(scenario: Scenario, flows: usize, seconds: f64) -> Result<Report, String> {
    let net = seed()?;
    let flows = flows.max(1);
    // conntrack-new commits every packet: room for all a run makes (OVS's
    // default 3 M would fill in a few seconds, and refused commits are
    // cheap), so that it measures inserts into an ever bigger table.
    let ct = if scenario == Scenario::ConntrackNew {
        CtConfig {
            max_entries: 64 << 20,
            ..CtConfig::default()
        }
    } else {
        CtConfig::default()
    };
    // Each scenario: the worker, its input port, and the frames it cycles
    // through (conntrack-new writes a fresh one per packet instead).
    let (mut w, in_port, frames): (Worker, PortId, Vec<Vec<u8>>) = match scenario {
        Scenario::SeedCrossNode | Scenario::ConntrackNew | Scenario::Mixed => {
            let w = node(&net, "kube-node2", &[(WEB1, "web-1")], ct)?;
            let frames = (0..flows)
                .map(|i| {
                    let (s, d) = ports(i);
                    web1_to_sshd2(s, d, 0x10).frame()
                })
                .collect();
            (w, WEB1, frames)
        }
        Scenario::SeedSameSwitch => {
            let w = node(
                &net,
                "kube-node1",
                &[(SSHD2, "sshd-2"), (K8S_NODE1, "k8s-kube-node1")],
                ct,
            )?;
            let frames = (0..flows)
                .map(|i| {
                    let (s, d) = ports(i);
                    Tcp4 {
                        src_mac: SSHD2_MAC,
                        dst_mac: K8S_NODE1_MAC,
                        src: [192, 168, 2, 3],
                        dst: [192, 168, 2, 2],
                        ttl: 64,
                        sport: s,
                        dport: d,
                        flags: 0x10,
                    }
                    .frame()
                })
                .collect();
            (w, SSHD2, frames)
        }
        Scenario::SeedDecap => {
            // What kube-node2 sends is what kube-node1 receives.
            let mut sender = node(&net, "kube-node2", &[(WEB1, "web-1")], CtConfig::default())?;
            let mut batch = PacketBatch::new();
            let mut frames = Vec::with_capacity(flows);
            for i in 0..flows {
                let (s, d) = ports(i);
                let mut p = sender.pool.alloc();
                p.set_data(&web1_to_sshd2(s, d, 0x10).frame());
                let _ = batch.push(p);
                sender.process_batch(WEB1, &mut batch);
                for (_, p) in sender.take_tx() {
                    frames.push(p.data().to_vec());
                }
            }
            if frames.len() != flows {
                return Err(format!(
                    "kube-node2 sent {} Geneve frames for {flows} flows",
                    frames.len()
                ));
            }
            let w = node(&net, "kube-node1", &[(SSHD2, "sshd-2")], ct)?;
            (w, UNDERLAY, frames)
        }
    };
    let order: Vec<usize> = match scenario {
        Scenario::Mixed => zipf(flows, 1 << 20),
        _ => (0..flows).collect(),
    };

    let mut batch = PacketBatch::new();
    let mut next = 0usize;
    let mut new_conn = 0usize;
    let mut scratch = [0u8; crate::frames::TCP4_LEN];
    let mut fill = |w: &mut Worker, batch: &mut PacketBatch| {
        for _ in 0..BATCH_SIZE {
            let mut p = w.pool.alloc();
            if scenario == Scenario::ConntrackNew {
                let (s, d) = ports(new_conn);
                new_conn += 1;
                web1_to_sshd2(s, d, 0x02).write(&mut scratch);
                p.set_data(&scratch);
            } else {
                p.set_data(&frames[order[next]]);
                // Wrapped by compare: a division per packet shows up in
                // what is measured.
                next += 1;
                if next == order.len() {
                    next = 0;
                }
            }
            let _ = batch.push(p);
        }
    };
    let drain = |w: &mut Worker| {
        for (_, p) in w.tx.drain(..) {
            w.pool.free(p);
        }
    };
    // Warm up: every flow seen twice (connections established, megaflows
    // cached for both conntrack states).
    let warm = if scenario == Scenario::ConntrackNew {
        4
    } else {
        2 * flows.div_ceil(BATCH_SIZE) + 2
    };
    for _ in 0..warm {
        fill(&mut w, &mut batch);
        w.process_batch(in_port, &mut batch);
        drain(&mut w);
    }
    let before = w.stats();
    let ct_before = w.engine().conntrack.stats();
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    let mut batches: u64 = 0;
    loop {
        for _ in 0..64 {
            fill(&mut w, &mut batch);
            w.process_batch(in_port, &mut batch);
            drain(&mut w);
        }
        batches += 64;
        if start.elapsed().as_secs_f64() >= seconds {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns()
        .zip(cpu_start)
        .map_or(0, |(b, a)| b.saturating_sub(a));
    let after = w.stats();
    let ct_after = w.engine().conntrack.stats();
    let packets = batches * BATCH_SIZE as u64;
    let dropped = after.drops.values().sum::<u64>() - before.drops.values().sum::<u64>();
    Ok(Report {
        scenario: scenario.name(),
        flows,
        packets,
        seconds: elapsed,
        mpps: packets as f64 / elapsed / 1e6,
        ns_per_packet: elapsed * 1e9 / packets as f64,
        cpu_ns_per_packet: cpu as f64 / packets as f64,
        upcalls: after.upcalls - before.upcalls,
        emc_hits: after.cache.emc_hits - before.cache.emc_hits,
        megaflow_hits: after.cache.megaflow_hits - before.cache.megaflow_hits,
        fused: after.fused - before.fused,
        megaflows: w.megaflows().count(),
        dropped,
        conntrack_entries: ct_after.entries,
        new_connections_per_s: (ct_after.committed - ct_before.committed) as f64 / elapsed,
        conntrack_limit_drops: ct_after.limit_drops - ct_before.limit_drops,
        cores: 1,
        megaflow_dump: w
            .megaflows()
            .map(|(k, m, f, hits)| ironflow_datapath::dump::format_megaflow(k, m, f, hits))
            .collect(),
    })
}

/// The CPU time this thread has run, in nanoseconds (Linux).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_forwards_without_drops() {
        for (name, s) in Scenario::ALL {
            let r = run(s, 64, 0.05).unwrap();
            assert_eq!(r.dropped, 0, "{name}: {r:?}");
            assert!(r.packets > 0, "{name}");
            if s != Scenario::ConntrackNew {
                assert_eq!(r.upcalls, 0, "{name}: warm caches miss: {r:?}");
            }
        }
    }

    #[test]
    fn zipf_favours_the_first_flows() {
        let z = zipf(100, 10_000);
        let first = z.iter().filter(|&&i| i == 0).count();
        let last = z.iter().filter(|&&i| i == 99).count();
        assert!(first > 10 * last.max(1), "{first} vs {last}");
    }
}
