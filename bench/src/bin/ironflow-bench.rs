//! `ironflow-bench`: whole-engine measurements that criterion's repeated
//! samples do not suit (one big compile, peak memory). Micro-benchmarks are
//! the criterion benches under `benches/`; `system` runs ironflow side by
//! side with other dataplanes on a namespace lab, `control` with stock
//! ovn-controller on one big Southbound.

use ironflow_bench::control;
use ironflow_bench::engine::{self, Scenario};
use ironflow_bench::system;
use ironflow_pipeline::program::{compile, compile_in, Program};
use ironflow_pipeline::snapshot::Snapshot;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage:
  ironflow-bench compile --snapshot FILE [--threads N] [--digest]
      (FILE from `ironflow sb dump` or `ironflow-lab synth`; --digest adds a
      hash of the compiled tables, to check that a change keeps them)
  ironflow-bench engine --scenario NAME [--flows N] [--seconds S] [--json] [--show-flows]
      NAME: seed-cross-node, seed-same-switch, seed-decap, conntrack-new, mixed
      (--show-flows prints the megaflows after the run, as dpctl/dump-flows)
  ironflow-bench system [--peer PEER[,PEER]...] [--pairs PAIR[,PAIR]...] [--seconds S] [--rounds N] [--json] [--markdown] [--perf DIR] [--out DIR]
      PEER: ironflow (default), ironflow-afxdp, kernel, ovs-netdev, ovs-afxdp, ovs-kernel
      PAIR: same-switch, routed, cross-node (default: all)
      builds each peer's two-node lab in namespaces (root), measures each pair,
      tears it down; several peers alternate, N rounds (default 3), medians;
      --perf DIR: `perf record -g` of the datapath processes during each pps phase
      --out DIR: DIR/system.jsonl, DIR/table.md and (--features plots) DIR/plots/*.svg
  ironflow-bench system-report FILE
      the markdown table of a saved `system --json` run
  ironflow-bench system-plot FILE DIR
      SVG bar charts of a saved `system --json` run (built with --features plots)
  ironflow-bench control [--switches N] [--ports M] [--rounds R] [--peer PEER[,PEER]] [--json] [-v] [--out DIR]
      PEER: ovn-controller, ironflow (default: both, alternately)
      a synthetic SB of N switches (default 850) of M ports (default 20) on one
      router, built by ovn-northd; each peer starts as a chassis with one VIF
      (root); seconds from starting it to all flows installed, flows, RSS;
      medians of R rounds (default 3); -v: every poll on stderr;
      --out DIR: DIR/control.jsonl, DIR/control.md and (--features plots) DIR/plots/control_*.svg
  ironflow-bench control-plot FILE DIR
      SVG bar charts of a saved `control --json` run (built with --features plots)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [cmd, rest @ ..] if cmd == "compile" => match compile_args(rest) {
            Ok((path, threads, digest)) => compile_snapshot(&path, threads, digest),
            Err(e) => {
                eprintln!("ironflow-bench: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        [cmd, rest @ ..] if cmd == "engine" => match engine_args(rest) {
            Ok((scenario, flows, seconds, json, show)) => {
                run_engine(scenario, flows, seconds, json, show)
            }
            Err(e) => {
                eprintln!("ironflow-bench: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        [cmd, file, dir] if cmd == "system-plot" => plot(file, dir),
        [cmd, file, dir] if cmd == "control-plot" => control_plot(file, dir),
        [cmd, file] if cmd == "system-report" => system::report(file).map_err(|e| format!("{e:#}")),
        [cmd, rest @ ..] if cmd == "system" => match system::Options::parse(rest) {
            Ok(o) => system::run(&o).map_err(|e| format!("{e:#}")),
            Err(e) => {
                eprintln!("ironflow-bench: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        [cmd, rest @ ..] if cmd == "control" => match control::Options::parse(rest) {
            Ok(o) => control::run(&o).map_err(|e| format!("{e:#}")),
            Err(e) => {
                eprintln!("ironflow-bench: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironflow-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "plots")]
fn plot(file: &str, dir: &str) -> Result<(), String> {
    system::plot::plot(file, std::path::Path::new(dir)).map_err(|e| format!("{e:#}"))
}

#[cfg(not(feature = "plots"))]
fn plot(_: &str, _: &str) -> Result<(), String> {
    Err(
        "charts need the plots feature: cargo build --release -p ironflow-bench --features plots"
            .into(),
    )
}

#[cfg(feature = "plots")]
fn control_plot(file: &str, dir: &str) -> Result<(), String> {
    system::plot::plot_control(file, std::path::Path::new(dir)).map_err(|e| format!("{e:#}"))
}

#[cfg(not(feature = "plots"))]
fn control_plot(_: &str, _: &str) -> Result<(), String> {
    plot("", "")
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// Resident memory now, in MiB (Linux).
fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

/// A memory line of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Compiles a snapshot once, on `threads` threads (default: as
/// [`compile`] chooses), and prints times and memory as JSON.
fn compile_snapshot(path: &str, threads: Option<usize>, digest: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let start = Instant::now();
    let net = Snapshot::from_json(&text)
        .map_err(|e| format!("{path}: {e}"))?
        .network;
    drop(text);
    let load = start.elapsed();
    let rss_loaded = peak_rss_mib().unwrap_or(0.0);
    // The snapshot's text is gone by now: this is what the network holds.
    let rss_network = rss_mib().unwrap_or(0.0);
    let start = Instant::now();
    let program = match threads {
        Some(n) => compile_in(&net, n),
        None => compile(&net),
    };
    let compile_time = start.elapsed();
    let rss = peak_rss_mib().unwrap_or(0.0);
    let out = serde_json::json!({
        "flows": program.flows,
        "failed": program.failures.len(),
        "rules": program.rules,
        "datapaths": program.datapaths.len(),
        "load_s": load.as_secs_f64(),
        "compile_s": compile_time.as_secs_f64(),
        "peak_rss_after_load_mib": rss_loaded,
        "rss_network_mib": rss_network,
        "peak_rss_mib": rss,
    });
    let mut out = out;
    if digest {
        out["digest"] = format!("{:016x}", program_digest(&program)).into();
    }
    println!("{out}");
    Ok(())
}

/// `compile`'s flags: snapshot, threads, digest.
fn compile_args(args: &[String]) -> Result<(String, Option<usize>, bool), String> {
    let (mut path, mut threads, mut digest) = (None, None, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--snapshot" => path = Some(it.next().ok_or("--snapshot needs a file")?.clone()),
            "--threads" => {
                threads = Some(
                    it.next()
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&n| n > 0)
                        .ok_or("--threads takes a positive number")?,
                )
            }
            "--digest" => digest = true,
            other => return Err(format!("unknown argument \"{other}\"")),
        }
    }
    Ok((path.ok_or("--snapshot is required")?, threads, digest))
}

/// A hash of everything a compiled program decides packets by: each
/// datapath's and group's tables, each rule's subtable position, masks,
/// values, priority, place among equal keys, flow and parsed actions.
/// Rules are sorted first, so the classifier's internal layout (hash
/// table order) does not count, only what lookups would see.
fn program_digest(program: &Program) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut dps: Vec<_> = program
        .datapaths
        .values()
        .chain(program.dp_groups.values())
        .collect();
    dps.sort_by_key(|d| d.uuid);
    for dp in dps {
        (dp.uuid, &dp.name, dp.tunnel_key, dp.is_router).hash(&mut h);
        let mut groups = dp.groups.clone();
        groups.sort();
        groups.hash(&mut h);
        for tables in [&dp.ingress, &dp.egress] {
            tables.len().hash(&mut h);
            for table in tables {
                table.stage_name.hash(&mut h);
                let mut rules: Vec<_> = table
                    .classifier
                    .rules()
                    .map(|r| {
                        (
                            r.subtable,
                            r.masks.to_vec(),
                            r.values.to_vec(),
                            r.rank,
                            r.priority,
                            r.value.uuid,
                            &r.value.match_text,
                            format!("{:?}", r.value.actions),
                        )
                    })
                    .collect();
                rules.sort();
                rules.hash(&mut h);
            }
        }
    }
    h.finish()
}

/// `engine`'s flags: scenario, flows, seconds, JSON output, flow dump.
fn engine_args(args: &[String]) -> Result<(Scenario, usize, f64, bool, bool), String> {
    let mut scenario = None;
    let mut show = false;
    let mut flows = 1usize;
    let mut seconds = 3.0f64;
    let mut json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--scenario" => {
                let v = value("--scenario")?;
                scenario =
                    Some(Scenario::parse(&v).ok_or_else(|| format!("unknown scenario \"{v}\""))?);
            }
            "--flows" => {
                flows = value("--flows")?
                    .parse()
                    .map_err(|_| "--flows takes a number of flows".to_string())?;
            }
            "--seconds" => {
                seconds = value("--seconds")?
                    .parse()
                    .map_err(|_| "--seconds takes a number of seconds".to_string())?;
            }
            "--json" => json = true,
            "--show-flows" => show = true,
            other => return Err(format!("unknown argument \"{other}\"")),
        }
    }
    let scenario = scenario.ok_or("--scenario is required")?;
    Ok((scenario, flows, seconds, json, show))
}

fn run_engine(
    scenario: Scenario,
    flows: usize,
    seconds: f64,
    json: bool,
    show: bool,
) -> Result<(), String> {
    let r = engine::run(scenario, flows, seconds)?;
    if show {
        for line in &r.megaflow_dump {
            println!("{line}");
        }
    }
    println!(
        "{}: {:.2} Mpps ({:.0} ns/packet, {:.0} ns of CPU time) on 1 core, {} flows, {} packets in {:.2} s, {} upcalls, {} megaflows, {} dropped, {} conntrack entries, {:.2} M new connections/s, {} refused by the limit",
        r.scenario,
        r.mpps,
        r.ns_per_packet,
        r.cpu_ns_per_packet,
        r.flows,
        r.packets,
        r.seconds,
        r.upcalls,
        r.megaflows,
        r.dropped,
        r.conntrack_entries,
        r.new_connections_per_s / 1e6,
        r.conntrack_limit_drops
    );
    if json {
        println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
    }
    Ok(())
}
