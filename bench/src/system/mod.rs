//! `ironflow-bench system`: ironflow side by side with other dataplanes on
//! the same two-node lab (issue 8). Each peer builds the lab its own way
//! with the same pods (names, MACs, addresses), each pair is measured pod
//! to pod (64-byte UDP packets/s and loss, TCP throughput, UDP round-trip
//! p50/p99, datapath CPU per million packets), and the lab is torn down.
//! Several peers run alternately, round after round, so drift on a shared
//! machine hits them alike; medians over the rounds are reported.

pub mod ironflow;
pub mod kernel;
pub mod ovs;
#[cfg(feature = "plots")]
pub mod plot;
pub mod stats;
pub mod traffic;

use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// A dataplane to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Ironflow,
    /// ironflow with its pods on AF_XDP sockets, TX checksum offload off
    /// in the pods (as for OVS's AF_XDP and AF_PACKET ports).
    IronflowAfxdp,
    Kernel,
    OvsNetdev,
    OvsAfxdp,
    OvsKernel,
}

impl Peer {
    pub const ALL: [Peer; 6] = [
        Peer::Ironflow,
        Peer::IronflowAfxdp,
        Peer::Kernel,
        Peer::OvsNetdev,
        Peer::OvsAfxdp,
        Peer::OvsKernel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Ironflow => "ironflow",
            Peer::IronflowAfxdp => "ironflow-afxdp",
            Peer::Kernel => "kernel",
            Peer::OvsNetdev => "ovs-netdev",
            Peer::OvsAfxdp => "ovs-afxdp",
            Peer::OvsKernel => "ovs-kernel",
        }
    }

    pub fn parse(s: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Why this peer cannot run here, if it cannot.
    pub fn unavailable(self) -> Option<String> {
        if let Some(why) = ironflow_testbeds::lab::unavailable() {
            return Some(why);
        }
        match self {
            Peer::Ironflow | Peer::IronflowAfxdp | Peer::Kernel => None,
            Peer::OvsNetdev => ironflow_testbeds::stock::unavailable(),
            // Whether this OVS has AF_XDP shows once a vswitchd runs.
            Peer::OvsAfxdp => ironflow_testbeds::stock::unavailable(),
            Peer::OvsKernel => Some(if kernel_has_openvswitch() {
                "ovs-kernel: this kernel has the openvswitch module, but the harness \
                 does not drive kernel OVS yet"
                    .into()
            } else {
                "ovs-kernel: not available on this host: the kernel has no openvswitch \
                 module (no /sys/module/openvswitch, and modprobe cannot load it)"
                    .into()
            }),
        }
    }
}

/// Whether kernel OVS is loaded or loadable.
fn kernel_has_openvswitch() -> bool {
    Path::new("/sys/module/openvswitch").exists()
        || std::process::Command::new("modprobe")
            .args(["-n", "openvswitch"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

/// What a pair of pods exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pair {
    /// web-1 → web-2: one logical switch, one node.
    SameSwitch,
    /// web-1 → db-1: across the router, both on kube-node2.
    Routed,
    /// web-1 → app-1: across the router and the tunnel to kube-node1.
    CrossNode,
}

impl Pair {
    pub const ALL: [Pair; 3] = [Pair::SameSwitch, Pair::Routed, Pair::CrossNode];

    pub fn name(self) -> &'static str {
        match self {
            Pair::SameSwitch => "same-switch",
            Pair::Routed => "routed",
            Pair::CrossNode => "cross-node",
        }
    }

    pub fn parse(s: &str) -> Option<Pair> {
        Pair::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Source and destination pod.
    pub fn pods(self) -> (&'static str, &'static str) {
        match self {
            Pair::SameSwitch => ("web-1", "web-2"),
            Pair::Routed => ("web-1", "db-1"),
            // Not sshd-2: its ACLs drop UDP.
            Pair::CrossNode => ("web-1", "app-1"),
        }
    }
}

/// The router's address on one of the seed's pod switches: the pods'
/// default gateway.
pub fn gateway(switch: &str) -> Ipv4Addr {
    match switch {
        "kube-node1" => Ipv4Addr::new(192, 168, 2, 1),
        "kube-node2" => Ipv4Addr::new(192, 168, 3, 1),
        _ => Ipv4Addr::new(192, 168, 1, 1),
    }
}

/// A pod every peer's lab has.
pub struct BenchPod {
    pub lsp: &'static str,
    pub switch: &'static str,
    pub mac: &'static str,
    pub ip: Ipv4Addr,
    pub node: &'static str,
    /// One of the seed's own logical ports.
    pub seed: bool,
}

pub const POD_SPECS: [BenchPod; 4] = [
    BenchPod {
        lsp: "web-1",
        switch: "kube-node2",
        mac: "0a:00:00:00:00:02",
        ip: Ipv4Addr::new(192, 168, 3, 3),
        node: "kube-node2",
        seed: true,
    },
    BenchPod {
        lsp: "web-2",
        switch: "kube-node2",
        mac: "0a:00:00:00:00:03",
        ip: Ipv4Addr::new(192, 168, 3, 4),
        node: "kube-node2",
        seed: false,
    },
    BenchPod {
        lsp: "db-1",
        switch: "kube-node1",
        mac: "0a:00:00:00:00:05",
        ip: Ipv4Addr::new(192, 168, 2, 5),
        node: "kube-node2",
        seed: false,
    },
    BenchPod {
        lsp: "app-1",
        switch: "kube-node1",
        mac: "0a:00:00:00:00:06",
        ip: Ipv4Addr::new(192, 168, 2, 6),
        node: "kube-node1",
        seed: false,
    },
];

/// Where a pair's traffic goes from and to in a built lab.
pub struct Endpoints {
    pub src_ns: String,
    pub dst_ns: String,
    pub dst_ip: Ipv4Addr,
}

/// A peer's lab, up.
pub trait Testbed {
    fn endpoints(&self, pair: Pair) -> Result<Endpoints>;
    /// The datapath processes (all of them, on every node); empty where
    /// the datapath is not a process.
    fn datapath_pids(&self) -> Vec<i32>;
    /// CPU seconds the datapath processes have used so far; `None` where
    /// the datapath is not a process.
    fn datapath_cpu(&self) -> Option<f64> {
        let pids = self.datapath_pids();
        if pids.is_empty() {
            return None;
        }
        pids.into_iter().map(traffic::cpu_seconds).sum()
    }
}

fn start(peer: Peer) -> Result<Box<dyn Testbed>> {
    Ok(match peer {
        Peer::Ironflow => Box::new(ironflow::IronflowLab::start(false)?),
        Peer::IronflowAfxdp => Box::new(ironflow::IronflowLab::start(true)?),
        Peer::Kernel => Box::new(kernel::KernelLab::start()?),
        Peer::OvsNetdev => Box::new(ovs::OvsLab::start(false)?),
        Peer::OvsAfxdp => Box::new(ovs::OvsLab::start(true)?),
        Peer::OvsKernel => bail!("{}", peer.unavailable().unwrap_or_default()),
    })
}

/// `system`'s options.
#[derive(Debug, Clone)]
pub struct Options {
    pub peers: Vec<Peer>,
    pub pairs: Vec<Pair>,
    pub seconds: f64,
    pub rounds: usize,
    pub json: bool,
    /// Print the medians as a markdown table.
    pub markdown: bool,
    /// `perf record` the datapath processes during each packets/s phase
    /// into this directory (which perturbs what it measures).
    pub perf: Option<std::path::PathBuf>,
    /// Write the JSON lines, the table and the charts here.
    pub out: Option<std::path::PathBuf>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            peers: vec![Peer::Ironflow],
            pairs: Pair::ALL.to_vec(),
            seconds: 5.0,
            rounds: 3,
            json: false,
            markdown: false,
            perf: None,
            out: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--peer" | "--peers" => {
                    o.peers =
                        crate::parse_names(&value("--peer")?, &Peer::ALL, Peer::name, "peer")?;
                }
                "--pairs" | "--pair" => {
                    o.pairs =
                        crate::parse_names(&value("--pairs")?, &Pair::ALL, Pair::name, "pair")?;
                }
                "--seconds" => {
                    o.seconds = value("--seconds")?
                        .parse()
                        .ok()
                        .filter(|s: &f64| *s > 0.0)
                        .ok_or("--seconds takes a positive number of seconds")?;
                }
                "--rounds" => {
                    o.rounds = value("--rounds")?
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or("--rounds takes a positive number")?;
                }
                "--json" => o.json = true,
                "--markdown" => o.markdown = true,
                "--perf" => o.perf = Some(value("--perf")?.into()),
                "--out" => o.out = Some(value("--out")?.into()),
                other => return Err(format!("unknown argument \"{other}\"")),
            }
        }
        Ok(o)
    }
}

/// One pair measured once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub pps: Option<f64>,
    pub sink_pps: Option<f64>,
    pub loss: Option<f64>,
    pub tcp_gbps: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub cpu_s_per_mpkt: Option<f64>,
}

/// Reads one metric of a sample.
type Metric = fn(&Sample) -> Option<f64>;

/// The metrics in output order, with a getter each.
const METRICS: [(&str, Metric); 7] = [
    ("pps", |s| s.pps),
    ("sink_pps", |s| s.sink_pps),
    ("loss", |s| s.loss),
    ("tcp_gbps", |s| s.tcp_gbps),
    ("p50_us", |s| s.p50_us),
    ("p99_us", |s| s.p99_us),
    ("cpu_s_per_mpkt", |s| s.cpu_s_per_mpkt),
];

/// `perf record` of the datapath processes for `seconds`, if asked for
/// and there are any; the caller waits for it.
fn start_perf(
    bed: &dyn Testbed,
    dir: Option<&Path>,
    name: &str,
    seconds: f64,
) -> Result<Option<std::process::Child>> {
    let (Some(dir), pids) = (dir, bed.datapath_pids()) else {
        return Ok(None);
    };
    if pids.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pids: Vec<String> = pids.iter().map(i32::to_string).collect();
    let child = std::process::Command::new("perf")
        .args(["record", "-q", "-g", "-F", "499", "-p", &pids.join(",")])
        .arg("-o")
        .arg(dir.join(format!("{name}.data")))
        .args(["--", "sleep", &format!("{seconds}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot run perf")?;
    Ok(Some(child))
}

fn measure(
    bed: &dyn Testbed,
    pair: Pair,
    seconds: f64,
    perf: Option<(&Path, String)>,
) -> Result<Sample> {
    let ep = bed.endpoints(pair)?;
    traffic::wait_reachable(&ep.src_ns, &ep.dst_ns, ep.dst_ip, Duration::from_secs(15))?;
    let (src, _) = pair.pods();
    let src = POD_SPECS
        .iter()
        .find(|p| p.lsp == src)
        .context("no such pod")?;
    let dst_spec = POD_SPECS
        .iter()
        .find(|p| p.ip == ep.dst_ip)
        .context("no such pod")?;
    let flow = traffic::Flow {
        src_ns: ep.src_ns.clone(),
        dst_ns: ep.dst_ns.clone(),
        src_mac: ironflow_testbeds::netns::parse_mac(src.mac)?,
        src_ip: src.ip,
        dst_ip: ep.dst_ip,
        next_hop: if src.switch == dst_spec.switch {
            ep.dst_ip
        } else {
            gateway(src.switch)
        },
    };
    let mut perf = match perf {
        Some((dir, name)) => start_perf(bed, Some(dir), &name, seconds)?,
        None => None,
    };
    let cpu0 = bed.datapath_cpu();
    let blast = traffic::udp_blast(&flow, seconds);
    let cpu1 = bed.datapath_cpu();
    if let Some(p) = perf.as_mut() {
        let _ = p.wait();
    }
    let blast = blast?;
    if traffic::interrupted() {
        bail!("interrupted");
    }
    // Charged to the packets delivered: what a dropped packet cost is part
    // of the price of the ones that made it.
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) if blast.received > 0 => Some((b - a) / (blast.received as f64 / 1e6)),
        _ => None,
    };
    let tcp = traffic::tcp_gbps(&ep.src_ns, &ep.dst_ns, ep.dst_ip, seconds)?;
    if traffic::interrupted() {
        bail!("interrupted");
    }
    let p50_p99 = traffic::latency(
        &ep.src_ns,
        &ep.dst_ns,
        ep.dst_ip,
        20_000,
        Duration::from_secs_f64(seconds.min(5.0)),
    );
    if traffic::interrupted() {
        bail!("interrupted");
    }
    let (p50, p99) = p50_p99?;
    Ok(Sample {
        pps: Some(blast.pps()),
        sink_pps: Some(blast.sink_received as f64 / blast.seconds),
        loss: Some(blast.loss()),
        tcp_gbps: Some(tcp),
        p50_us: Some(p50),
        p99_us: Some(p99),
        cpu_s_per_mpkt: cpu,
    })
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn describe(s: &Sample) -> String {
    format!(
        "{} pps (loss {}%, {} pps at the socket), {} Gbit/s TCP, p50 {} us, p99 {} us, {} CPU s/Mpkt",
        fmt(s.pps, 0),
        fmt(s.loss.map(|l| l * 100.0), 1),
        fmt(s.sink_pps, 0),
        fmt(s.tcp_gbps, 2),
        fmt(s.p50_us, 1),
        fmt(s.p99_us, 1),
        fmt(s.cpu_s_per_mpkt, 3)
    )
}

/// Runs the benchmark and prints the medians (and ratios).
pub fn run(o: &Options) -> Result<()> {
    for p in &o.peers {
        if let Some(why) = p.unavailable() {
            bail!("{why}");
        }
    }
    traffic::catch_interrupts();
    let mut samples: Vec<(Peer, Pair, Sample)> = Vec::new();
    for round in 1..=o.rounds {
        for &peer in &o.peers {
            let bed = start(peer).with_context(|| format!("starting the {} lab", peer.name()))?;
            for &pair in &o.pairs {
                if traffic::interrupted() {
                    // Returning drops the lab: namespaces and daemons go.
                    bail!("interrupted");
                }
                let perf = o
                    .perf
                    .as_deref()
                    .map(|d| (d, format!("{}-{}-r{round}", peer.name(), pair.name())));
                let s = measure(bed.as_ref(), pair, o.seconds, perf)
                    .with_context(|| format!("{} {}", peer.name(), pair.name()))?;
                eprintln!(
                    "round {round}/{} {} {}: {}",
                    o.rounds,
                    peer.name(),
                    pair.name(),
                    describe(&s)
                );
                samples.push((peer, pair, s));
            }
            drop(bed);
        }
    }
    let median_of = |peer: Peer, pair: Pair| -> (Sample, usize) {
        let runs: Vec<&Sample> = samples
            .iter()
            .filter(|(p, q, _)| *p == peer && *q == pair)
            .map(|(_, _, s)| s)
            .collect();
        let m = |f: Metric| stats::median(runs.iter().map(|s| f(s)));
        (
            Sample {
                pps: m(|s| s.pps),
                sink_pps: m(|s| s.sink_pps),
                loss: m(|s| s.loss),
                tcp_gbps: m(|s| s.tcp_gbps),
                p50_us: m(|s| s.p50_us),
                p99_us: m(|s| s.p99_us),
                cpu_s_per_mpkt: m(|s| s.cpu_s_per_mpkt),
            },
            runs.len(),
        )
    };
    let host = host_description();
    let mut lines = Vec::new();
    if !o.json && !o.markdown {
        println!(
            "medians of {} round(s), {} s each, on {host}:",
            o.rounds, o.seconds
        );
    }
    for &pair in &o.pairs {
        for &peer in &o.peers {
            let (m, runs) = median_of(peer, pair);
            let base = baseline(peer, &o.peers);
            let ratios: Vec<(&str, Option<f64>)> = match base {
                Some(b) => {
                    let ours = median_of(b, pair).0;
                    METRICS
                        .iter()
                        .map(|(name, f)| {
                            let r = match (f(&ours), f(&m)) {
                                (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                                _ => None,
                            };
                            (*name, r)
                        })
                        .collect()
                }
                None => Vec::new(),
            };
            {
                let mut line = serde_json::json!({
                    "peer": peer.name(),
                    "pair": pair.name(),
                    "runs": runs,
                    "seconds": o.seconds,
                    "host": host,
                });
                for (name, f) in METRICS {
                    line[name] = f(&m).into();
                }
                if !ratios.is_empty() {
                    let mut r = serde_json::Map::new();
                    for (name, v) in &ratios {
                        r.insert(name.to_string(), (*v).into());
                    }
                    line["ironflow_over_peer"] = r.into();
                }
                if let Some(b) = base {
                    line["ironflow_as"] = b.name().into();
                }
                if o.json {
                    println!("{line}");
                }
                lines.push(line);
            }
            if !o.json && !o.markdown {
                println!("  {:<11} {:<10} {}", pair.name(), peer.name(), describe(&m));
                if !ratios.is_empty() {
                    let text: Vec<String> = ratios
                        .iter()
                        .filter(|(n, _)| *n != "loss")
                        .map(|(n, v)| format!("{n} {}", fmt(*v, 2)))
                        .collect();
                    println!(
                        "  {:<11} {:<10} {}/{}: {}",
                        "",
                        "",
                        base.map_or("ironflow", Peer::name),
                        peer.name(),
                        text.join(", ")
                    );
                }
            }
        }
    }
    if o.markdown {
        print!("{}", markdown(&lines));
    }
    if let Some(dir) = &o.out {
        save(dir, &lines)?;
    }
    Ok(())
}

/// `--out DIR`: the run's JSON lines, its markdown table and (with the
/// `plots` feature) its charts, all from one command.
fn save(dir: &Path, lines: &[serde_json::Value]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let jsonl = dir.join("system.jsonl");
    std::fs::write(&jsonl, json).with_context(|| format!("cannot write {}", jsonl.display()))?;
    std::fs::write(dir.join("table.md"), markdown(lines))?;
    #[cfg(feature = "plots")]
    plot::plot(&jsonl.to_string_lossy(), &dir.join("plots"))?;
    #[cfg(not(feature = "plots"))]
    eprintln!("no charts: build ironflow-bench with --features plots for them");
    eprintln!("wrote {}", dir.display());
    Ok(())
}

/// A markdown table of `--json` lines (as the README shows them):
/// medians, and ironflow/peer for packets/s and TCP.
pub fn markdown(lines: &[serde_json::Value]) -> String {
    let num = |v: &serde_json::Value| v.as_f64();
    let mut out = String::from(
        "| pair | peer | pps | loss | TCP Gbit/s | p50 / p99 µs (RTT) | CPU s/Mpkt | ironflow/peer pps, TCP |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for l in lines {
        let ratio = |k: &str| fmt(num(&l["ironflow_over_peer"][k]), 2);
        let ratios = if l["ironflow_over_peer"].is_object() {
            match l["ironflow_as"].as_str() {
                Some(b) if b != "ironflow" => {
                    format!("{}, {} ({b})", ratio("pps"), ratio("tcp_gbps"))
                }
                _ => format!("{}, {}", ratio("pps"), ratio("tcp_gbps")),
            }
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {} | {} k | {}% | {} | {} / {} | {} | {} |\n",
            l["pair"].as_str().unwrap_or("?"),
            l["peer"].as_str().unwrap_or("?"),
            fmt(num(&l["pps"]).map(|p| p / 1e3), 0),
            fmt(num(&l["loss"]).map(|p| p * 100.0), 0),
            fmt(num(&l["tcp_gbps"]), 2),
            fmt(num(&l["p50_us"]), 0),
            fmt(num(&l["p99_us"]), 0),
            fmt(num(&l["cpu_s_per_mpkt"]), 1),
            ratios
        ));
    }
    out
}

/// Which ironflow a peer is compared with: like with like for AF_XDP
/// (`ironflow-afxdp` against `ovs-afxdp` when both ran), else `ironflow`;
/// none for ironflow's own peers.
fn baseline(peer: Peer, peers: &[Peer]) -> Option<Peer> {
    match peer {
        Peer::Ironflow | Peer::IronflowAfxdp => None,
        Peer::OvsAfxdp if peers.contains(&Peer::IronflowAfxdp) => Some(Peer::IronflowAfxdp),
        _ => peers.contains(&Peer::Ironflow).then_some(Peer::Ironflow),
    }
}

/// `system-report FILE`: the markdown table of a saved `--json` run.
pub fn report(path: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<Vec<serde_json::Value>, _>>()
        .with_context(|| format!("{path}: not `ironflow-bench system --json` lines"))?;
    print!("{}", markdown(&lines));
    Ok(())
}

/// CPUs and kernel, for the record.
fn host_description() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_rows() {
        let lines = [
            serde_json::json!({"peer": "ironflow", "pair": "routed", "pps": 222489.0,
                "loss": 0.47, "tcp_gbps": 2.15, "p50_us": 48.1, "p99_us": 89.5,
                "cpu_s_per_mpkt": 4.8}),
            serde_json::json!({"peer": "kernel", "pair": "routed", "pps": 229648.0,
                "loss": 0.0, "tcp_gbps": 16.96, "p50_us": 57.7, "p99_us": 102.9,
                "cpu_s_per_mpkt": null,
                "ironflow_over_peer": {"pps": 0.9688, "tcp_gbps": 0.1268}}),
        ];
        let t = markdown(&lines);
        assert!(t.contains("| routed | ironflow | 222 k | 47% | 2.15 | 48 / 90 | 4.8 |  |"));
        assert!(t.contains("| routed | kernel | 230 k | 0% | 16.96 | 58 / 103 | - | 0.97, 0.13 |"));
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options() {
        let o = Options::parse(&args(
            "--peer ironflow,kernel --pairs routed --seconds 2 --json",
        ))
        .unwrap();
        assert_eq!(o.peers, vec![Peer::Ironflow, Peer::Kernel]);
        assert_eq!(o.pairs, vec![Pair::Routed]);
        assert_eq!(o.seconds, 2.0);
        assert!(o.json);
        assert!(Options::parse(&args("--peer vpp")).is_err());
        assert!(Options::parse(&args("--seconds 0")).is_err());
        let d = Options::parse(&[]).unwrap();
        assert!(!d.markdown);
        let all = [
            Peer::Ironflow,
            Peer::IronflowAfxdp,
            Peer::OvsAfxdp,
            Peer::Kernel,
        ];
        assert_eq!(baseline(Peer::OvsAfxdp, &all), Some(Peer::IronflowAfxdp));
        assert_eq!(baseline(Peer::Kernel, &all), Some(Peer::Ironflow));
        assert_eq!(baseline(Peer::OvsAfxdp, &all[2..]), None);
        assert_eq!(d.pairs.len(), 3);
    }
}
