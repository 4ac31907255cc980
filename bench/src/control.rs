//! `ironflow-bench control`: the control-plane benchmark of issue 8. One
//! synthetic Southbound (real ovn-northd, `ironflow_testbeds::synthetic`)
//! is handed in turn to stock `ovn-controller` (with its `ovs-vswitchd` on
//! the userspace datapath) and to `ironflow run`, each a fresh chassis in a
//! namespace of its own with one VIF bound to a port of `ls0`. Measured:
//! the wall time from starting the controller process until every flow is
//! in the datapath, how many flows that is, and the memory it took.
//!
//! "Installed" is judged the same way for both: the installed-flow count
//! (OpenFlow flows in `br-int`; ironflow's classifier rules) has stopped
//! changing for [`SETTLE`] while the controller is idle, and the time is
//! when that final count was first in force.

use crate::system::stats::median;
use crate::system::traffic::{catch_interrupts, cpu_seconds, interrupted};
use anyhow::{bail, Context, Result};
use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::lab::ironflow_bin;
use ironflow_testbeds::netns::{alive, has_arg, output, stop_pid_in, unique_prefix, Netns};
use ironflow_testbeds::stock::{self, StockDaemons};
use ironflow_testbeds::synthetic::{self, Size};
use serde_json::{json, Value};
use std::collections::{BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the installed-flow count must hold still (with the controller
/// idle) before the flows count as all installed.
const SETTLE: Duration = Duration::from_secs(2);

/// How often the installed flows are counted. Stock's time is when the
/// final count was first seen, so it may be late by up to this much;
/// ironflow's is the publish time the daemon recorded.
const POLL: Duration = Duration::from_millis(100);

/// CPU seconds the controller may use within [`SETTLE`] and still count
/// as idle: ironflow's idle workers and ovn-controller's probes use a
/// little; a compile or a flow computation uses a whole core.
const IDLE_CPU: f64 = 0.25;

/// Give up on a peer after this long.
const TIMEOUT: Duration = Duration::from_secs(900);

/// The logical port the chassis binds its one VIF to. Every switch hangs
/// off one router, so through the router's patch ports the chassis's
/// local datapaths are all of them.
const VIF_LSP: &str = "ls0-p0";

/// Both peers' encap IP (they never run at once and have no tunnels).
const ENCAP_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 255, 2);

/// A controller to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Stock `ovn-controller` programming `ovs-vswitchd` (netdev).
    OvnController,
    Ironflow,
}

impl Peer {
    pub const ALL: [Peer; 2] = [Peer::OvnController, Peer::Ironflow];

    pub fn name(self) -> &'static str {
        match self {
            Peer::OvnController => "ovn-controller",
            Peer::Ironflow => "ironflow",
        }
    }

    pub fn parse(s: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// `control`'s options.
#[derive(Debug, Clone)]
pub struct Options {
    pub switches: usize,
    pub ports: usize,
    pub rounds: usize,
    pub peers: Vec<Peer>,
    pub json: bool,
    /// Print every poll (time, installed flows, CPU) on stderr.
    pub verbose: bool,
    /// Write `control.jsonl` and `control.md` here.
    pub out: Option<PathBuf>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            switches: 850,
            ports: 20,
            rounds: 3,
            peers: Peer::ALL.to_vec(),
            json: false,
            verbose: false,
            out: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let positive = |v: String, name: &str| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name} takes a positive number, not \"{v}\""))
            };
            match a.as_str() {
                "--switches" => o.switches = positive(value("--switches")?, "--switches")?,
                "--ports" => o.ports = positive(value("--ports")?, "--ports")?,
                "--rounds" => o.rounds = positive(value("--rounds")?, "--rounds")?,
                "--peer" | "--peers" => {
                    o.peers =
                        crate::parse_names(&value("--peer")?, &Peer::ALL, Peer::name, "peer")?;
                }
                "--json" => o.json = true,
                "-v" | "--verbose" => o.verbose = true,
                "--out" => o.out = Some(value("--out")?.into()),
                other => return Err(format!("unknown argument \"{other}\"")),
            }
        }
        // The addresses synthetic.rs hands out: 10.(sw / 250).(sw % 250).0/24
        // and hosts from .10 on.
        if o.switches > 250 * 256 {
            return Err(format!("--switches {}: at most 64000", o.switches));
        }
        if o.ports > 240 {
            return Err(format!("--ports {}: at most 240 per switch", o.ports));
        }
        Ok(o)
    }
}

/// One peer measured once.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Controller start to the final installed-flow count.
    pub seconds: f64,
    /// OpenFlow flows in br-int, or ironflow's classifier rules.
    pub installed_flows: u64,
    /// Datapaths flows were installed for (distinct `metadata` values in
    /// br-int; ironflow's compiled datapaths).
    pub datapaths: u64,
    /// What the peer added to the node, now and at its peak (stock:
    /// ovn-controller plus ovs-vswitchd's growth).
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    /// Peer-specific details for the JSON line.
    pub extra: serde_json::Map<String, Value>,
}

/// Runs the benchmark and prints the medians and the ratios.
pub fn run(o: &Options) -> Result<()> {
    if let Some(why) = ironflow_testbeds::lab::unavailable() {
        bail!("{why}");
    }
    if o.peers.contains(&Peer::OvnController) {
        if let Some(why) = stock::unavailable() {
            bail!("{why}");
        }
        if ironflow_testbeds::netns::which("ovs-ofctl").is_none() {
            bail!("ovs-ofctl not found: run scripts/setup.sh to install OVS");
        }
    }
    if o.peers.contains(&Peer::Ironflow) {
        ironflow_bin()?;
    }
    catch_interrupts();
    let central = OvnCentral::start()?;
    let size = Size {
        switches: o.switches,
        ports: o.ports,
    };
    eprintln!(
        "building the synthetic Southbound: {} switches of {} ports (ovn-nbctl, ovn-northd)…",
        o.switches, o.ports
    );
    let start = Instant::now();
    synthetic::build(&central, size).context("building the synthetic topology")?;
    if interrupted() {
        bail!("interrupted");
    }
    let logical_flows = count_rows(&central, "Logical_Flow")?;
    let sb_datapaths = count_rows(&central, "Datapath_Binding")?;
    eprintln!(
        "Southbound: {logical_flows} logical flows, {sb_datapaths} datapaths (built in {:.0} s)",
        start.elapsed().as_secs_f64()
    );
    let watch = Watch {
        central: central_pids(&central)?,
        verbose: o.verbose,
    };
    let mut samples: Vec<(Peer, Sample)> = Vec::new();
    for round in 1..=o.rounds {
        for &peer in &o.peers {
            if interrupted() {
                bail!("interrupted");
            }
            let chassis = format!("bench-{}-r{round}", peer.name());
            let s = match peer {
                Peer::OvnController => measure_stock(&central, &watch, &chassis),
                Peer::Ironflow => measure_ironflow(&central, &watch, &chassis, logical_flows),
            };
            // Whatever happened, the SB is left as it was for the next.
            let _ = central.sbctl(&["--if-exists", "chassis-del", &chassis]);
            let mut s = s.with_context(|| format!("round {round}, {}", peer.name()))?;
            // Other work on the machine slows both alike only on average:
            // say how busy it was.
            if let Some(load) = load_average() {
                s.extra.insert("loadavg_1m".into(), load.into());
            }
            eprintln!(
                "round {round}/{} {}: {:.2} s to {} installed flows on {} datapaths, RSS {:.0} MiB (peak {:.0} MiB)",
                o.rounds,
                peer.name(),
                s.seconds,
                s.installed_flows,
                s.datapaths,
                s.rss_mib,
                s.peak_rss_mib
            );
            if peer == Peer::OvnController && s.datapaths < sb_datapaths as u64 {
                eprintln!(
                    "warning: ovn-controller installed flows for {} of the SB's {sb_datapaths} datapaths",
                    s.datapaths
                );
            }
            samples.push((peer, s));
            central.sync()?;
        }
    }
    let lines = summarize(o, logical_flows, &samples);
    if o.json {
        for l in &lines {
            println!("{l}");
        }
    } else {
        println!(
            "medians of {} round(s), {logical_flows} logical flows ({} switches × {} ports), on {}:",
            o.rounds,
            o.switches,
            o.ports,
            host_description()
        );
        print!("{}", markdown(&lines));
    }
    if let Some(dir) = &o.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let jsonl = dir.join("control.jsonl");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&jsonl, text)
            .with_context(|| format!("cannot write {}", jsonl.display()))?;
        let md = dir.join("control.md");
        std::fs::write(&md, markdown(&lines))
            .with_context(|| format!("cannot write {}", md.display()))?;
        #[cfg(feature = "plots")]
        crate::system::plot::plot_control(&jsonl.to_string_lossy(), &dir.join("plots"))?;
        #[cfg(not(feature = "plots"))]
        eprintln!("no charts: build ironflow-bench with --features plots for them");
        eprintln!("wrote {} and {}", jsonl.display(), md.display());
    }
    Ok(())
}

/// One JSON object per peer: medians over the rounds, and on stock's line
/// stock/ironflow for time and memory.
pub fn summarize(o: &Options, logical_flows: usize, samples: &[(Peer, Sample)]) -> Vec<Value> {
    let host = host_description();
    let medians = |peer: Peer| {
        let runs: Vec<&Sample> = samples
            .iter()
            .filter(|(p, _)| *p == peer)
            .map(|(_, s)| s)
            .collect();
        let m = |f: fn(&Sample) -> f64| median(runs.iter().map(|s| Some(f(s))));
        let mut line = json!({
            "peer": peer.name(),
            "switches": o.switches,
            "ports": o.ports,
            "logical_flows": logical_flows,
            "installed_flows": m(|s| s.installed_flows as f64).map(|v| v.round() as u64),
            "datapaths": m(|s| s.datapaths as f64).map(|v| v.round() as u64),
            "seconds": m(|s| s.seconds),
            "rss_mib": m(|s| s.rss_mib),
            "peak_rss_mib": m(|s| s.peak_rss_mib),
            "runs": runs.len(),
            "seconds_each": runs.iter().map(|s| s.seconds).collect::<Vec<_>>(),
            "host": host,
        });
        // Numeric details: medians too.
        let keys: BTreeSet<&String> = runs.iter().flat_map(|s| s.extra.keys()).collect();
        for k in keys {
            line[k.as_str()] = median(runs.iter().map(|s| s.extra.get(k).and_then(Value::as_f64)))
                .map_or(Value::Null, Value::from);
        }
        line
    };
    let mut lines: Vec<Value> = o.peers.iter().map(|&p| medians(p)).collect();
    let ours = lines
        .iter()
        .find(|l| l["peer"] == Peer::Ironflow.name())
        .cloned();
    if let Some(ours) = ours {
        for l in lines
            .iter_mut()
            .filter(|l| l["peer"] == Peer::OvnController.name())
        {
            let mut r = serde_json::Map::new();
            for k in ["seconds", "rss_mib", "peak_rss_mib"] {
                let v = match (l[k].as_f64(), ours[k].as_f64()) {
                    (Some(a), Some(b)) if b > 0.0 => Value::from(a / b),
                    _ => Value::Null,
                };
                r.insert(k.into(), v);
            }
            l["stock_over_ironflow"] = r.into();
        }
    }
    lines
}

fn fmt(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The README's table of `summarize`'s lines.
pub fn markdown(lines: &[Value]) -> String {
    let mut out = String::from(
        "| peer | logical flows | installed flows | datapaths | s to installed | RSS MiB | peak RSS MiB | stock/ironflow s, RSS |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for l in lines {
        let r = &l["stock_over_ironflow"];
        let ratios = if r.is_object() {
            format!("{}, {}", fmt(&r["seconds"], 1), fmt(&r["rss_mib"], 1))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            l["peer"].as_str().unwrap_or("?"),
            l["logical_flows"],
            l["installed_flows"],
            l["datapaths"],
            fmt(&l["seconds"], 2),
            fmt(&l["rss_mib"], 0),
            fmt(&l["peak_rss_mib"], 0),
            ratios
        ));
    }
    out
}

/// Rows of an SB table.
fn count_rows(central: &OvnCentral, table: &str) -> Result<usize> {
    let out = central.sbctl(&["--bare", "--columns=_uuid", "list", table])?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

/// A memory line of `/proc/PID/status` (`VmRSS`, `VmHWM`), in MiB.
pub fn status_mib(pid: i32, field: &str) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kib / 1024.0)
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Seconds since the Unix epoch.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The central's processes whose work a controller may be waiting for,
/// and whether to print every poll.
struct Watch {
    /// The SB `ovsdb-server` (it sends what a controller asks to monitor)
    /// and `ovn-northd` (a claim makes it write the SB again).
    central: Vec<i32>,
    verbose: bool,
}

impl Watch {
    /// CPU seconds of `controller` and the central so far: all of it must
    /// be idle before the flows count as all installed. Stock
    /// ovn-controller widens its monitor conditions datapath by datapath
    /// and sits idle while the SB server sends what it asked for; its own
    /// CPU alone would call that settled.
    fn cpu(&self, controller: i32) -> f64 {
        std::iter::once(controller)
            .chain(self.central.iter().copied())
            .filter_map(cpu_seconds)
            .sum()
    }

    fn trace(&self, peer: &str, since: Instant, count: u64, cpu: f64) {
        if self.verbose {
            eprintln!(
                "  {peer} {:7.2} s: {count} installed, {cpu:.2} CPU s (controller and central)",
                since.elapsed().as_secs_f64()
            );
        }
    }
}

/// The PIDs of the central's SB server and northd (from their pidfiles).
fn central_pids(central: &OvnCentral) -> Result<Vec<i32>> {
    ["sb", "northd"]
        .iter()
        .map(|name| {
            let pidfile = central.dir().join(format!("{name}.pid"));
            std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .filter(|pid| alive(*pid))
                .with_context(|| format!("the central's {name} is not running"))
        })
        .collect()
}

/// Tells when a series of installed-flow counts has settled: the count
/// unchanged and the controller idle for [`SETTLE`].
struct Settle {
    /// (count, when it was first seen).
    last: Option<(u64, Instant)>,
    /// Recent (when, CPU seconds) of the controller.
    cpu: VecDeque<(Instant, f64)>,
}

impl Settle {
    fn new() -> Settle {
        Settle {
            last: None,
            cpu: VecDeque::new(),
        }
    }

    /// Records a poll; true once settled.
    fn poll(&mut self, now: Instant, count: u64, cpu: f64) -> bool {
        if self.last.map(|(c, _)| c) != Some(count) {
            self.last = Some((count, now));
        }
        self.cpu.push_back((now, cpu));
        while self
            .cpu
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) >= SETTLE)
        {
            self.cpu.pop_front();
        }
        let (Some(&(t0, c0)), Some((count_now, since))) = (self.cpu.front(), self.last) else {
            return false;
        };
        count_now > 0
            && now.duration_since(since) >= SETTLE
            && now.duration_since(t0) >= SETTLE
            && cpu - c0 < IDLE_CPU
    }
}

/// Stock's chassis: the daemons, their namespace and files; stopped and
/// removed on drop (also when the run is interrupted).
struct StockNode {
    daemons: StockDaemons,
    _ns: Netns,
    _dir: tempfile::TempDir,
}

impl Drop for StockNode {
    fn drop(&mut self) {
        // `exit` has ovn-controller take its chassis out of the SB, as an
        // operator's stop would; SIGTERM (stop) is the fallback.
        if self.daemons.pids()[2].1.is_some() {
            let _ = self.daemons.appctl("ovn-controller", &["exit"]);
        }
        if let Err(e) = self.daemons.stop() {
            eprintln!("stopping the stock chassis: {e:#}");
        }
    }
}

fn pid_of(daemons: &StockDaemons, name: &str) -> Result<i32> {
    daemons
        .pids()
        .into_iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, p)| p)
        .with_context(|| {
            format!(
                "{name} is not running; its log ends:\n{}",
                daemons.log_tail(name, 10)
            )
        })
}

/// `ovs-ofctl ARGS` against the chassis's `br-int`; stdout.
fn ofctl(dir: &Path, args: &[&str]) -> Result<String> {
    let target = format!("unix:{}", dir.join("br-int.mgmt").display());
    output(
        Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow15", "--timeout=30"])
            .arg(args[0])
            .arg(target)
            .args(&args[1..]),
    )
}

/// The number of OpenFlow flows in `br-int`, from the tables' counters:
/// `dump-aggregate` walks every flow, and at 250k flows ten times a
/// second it kept ovs-vswitchd half busy, slowing what it measured.
fn openflow_count(dir: &Path) -> Result<u64> {
    let out = ofctl(dir, &["dump-tables"])?;
    let counts: Vec<u64> = out
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|w| w.strip_prefix("active="))
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()
        .with_context(|| format!("ovs-ofctl dump-tables said {out:?}"))?;
    if counts.is_empty() {
        bail!("ovs-ofctl dump-tables listed no tables: {out:?}");
    }
    Ok(counts.iter().sum())
}

/// Stock ovn-controller as chassis `chassis`, its VIF already on br-int
/// when it starts, so that its first computation has everything local.
fn measure_stock(central: &OvnCentral, watch: &Watch, chassis: &str) -> Result<Sample> {
    let prefix = unique_prefix("bc");
    let ns = Netns::new(&format!("ifl-{prefix}-oc"))?;
    let dir = tempfile::Builder::new()
        .prefix("ironflow-bench-ctl-")
        .tempdir_in("/tmp")
        .context("cannot create a directory under /tmp")?;
    let node = StockNode {
        daemons: StockDaemons::new(ns.name(), dir.path()),
        _ns: ns,
        _dir: dir,
    };
    let d = &node.daemons;
    d.start_ovs(chassis, &central.sb_remote(), ENCAP_IP)?;
    d.add_internal("vif0", VIF_LSP, 1400)?;
    let vswitchd = pid_of(d, "ovs-vswitchd")?;
    let vswitchd_before = status_mib(vswitchd, "VmRSS")?;

    let start = Instant::now();
    d.start_controller()?;
    let controller = pid_of(d, "ovn-controller")?;
    let mut settle = Settle::new();
    let mut installed = false;
    let mut recomputes = 0u32;
    loop {
        if interrupted() {
            bail!("interrupted");
        }
        if !alive(controller) {
            bail!(
                "ovn-controller exited; its log ends:\n{}",
                d.log_tail("ovn-controller", 10)
            );
        }
        let now = Instant::now();
        let count = openflow_count(d.dir())?;
        let cpu = watch.cpu(controller);
        watch.trace("ovn-controller", start, count, cpu);
        // ovn-installed: the VIF's own flows are in, so the claim went
        // through; the count settling says the rest is in too.
        if !installed {
            let v = d.vsctl(&[
                "--if-exists",
                "get",
                "Interface",
                "vif0",
                "external_ids:ovn-installed",
            ])?;
            installed = v.trim().trim_matches('"') == "true";
        }
        if settle.poll(now, count, cpu) && installed {
            // ovn-controller 23.03 at times computes the last flows and
            // then sits on them, idle, until something wakes it (seen
            // here for tens of seconds with a third of the flows missing).
            // A full recompute must find nothing to add; if it does, the
            // flows were not all installed and the clock runs on.
            if recomputes == 3 {
                bail!("ovn-controller's flows still changed after {recomputes} recomputes");
            }
            d.appctl("ovn-controller", &["recompute"])?;
            recomputes += 1;
            let before = settle.last;
            let mut again = Settle::new();
            let settled = loop {
                if interrupted() {
                    bail!("interrupted");
                }
                let now = Instant::now();
                let count = openflow_count(d.dir())?;
                let cpu = watch.cpu(controller);
                watch.trace("ovn-controller (recompute)", start, count, cpu);
                if again.poll(now, count, cpu) {
                    break again.last;
                }
                if start.elapsed() > TIMEOUT {
                    bail!("ovn-controller had not settled after {TIMEOUT:?} ({count} flows)");
                }
                std::thread::sleep(POLL.saturating_sub(now.elapsed()));
            };
            match (before, settled) {
                (Some((a, _)), Some((b, _))) if a == b => {
                    settle.last = before;
                    break;
                }
                _ => settle.last = settled,
            }
            continue;
        }
        if start.elapsed() > TIMEOUT {
            bail!(
                "ovn-controller had not settled after {TIMEOUT:?} ({count} flows); its log ends:\n{}",
                d.log_tail("ovn-controller", 10)
            );
        }
        std::thread::sleep(POLL.saturating_sub(now.elapsed()));
    }
    let (flows, since) = settle.last.context("no flows counted")?;
    let seconds = since.duration_since(start).as_secs_f64();
    let ctl_rss = status_mib(controller, "VmRSS")?;
    let ctl_hwm = status_mib(controller, "VmHWM")?;
    let vs_rss = status_mib(vswitchd, "VmRSS")?;
    let vs_hwm = status_mib(vswitchd, "VmHWM")?;
    // After the memory readings: a full dump makes ovs-vswitchd allocate.
    let dump = ofctl(d.dir(), &["dump-flows"])?;
    let datapaths: BTreeSet<&str> = dump
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|w| w.strip_prefix("metadata="))
        .collect();
    let mut extra = serde_json::Map::new();
    extra.insert("controller_rss_mib".into(), ctl_rss.into());
    extra.insert("controller_peak_rss_mib".into(), ctl_hwm.into());
    extra.insert(
        "vswitchd_rss_growth_mib".into(),
        (vs_rss - vswitchd_before).into(),
    );
    extra.insert("controller_cpu_s".into(), cpu_seconds(controller).into());
    // Recomputes that added flows (the first, which checks, is not one).
    extra.insert("recomputes".into(), (recomputes - 1).into());
    Ok(Sample {
        seconds,
        // The tables' active counts; `dump-aggregate` said 3% more at
        // 850 switches (244,919 against 237,264).
        installed_flows: flows,
        datapaths: datapaths.len() as u64,
        rss_mib: ctl_rss + (vs_rss - vswitchd_before),
        peak_rss_mib: ctl_hwm + (vs_hwm - vswitchd_before),
        extra,
    })
}

/// ironflow's node: `ironflow run --detach` in a namespace, stopped by
/// its PID (SIGTERM, so it takes its chassis out of the SB) on drop.
struct IronflowNode {
    pidfile: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    _ns: Netns,
    _dir: tempfile::TempDir,
}

impl IronflowNode {
    fn pid(&self) -> Result<i32> {
        let pid = std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|pid| alive(*pid) && has_arg(*pid, &self.socket.display().to_string()));
        pid.with_context(|| {
            format!(
                "ironflow is not running; its log ends:\n{}",
                self.log_tail()
            )
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// The management socket's `show`.
    fn show(&self) -> Result<Value> {
        let out = output(
            Command::new(&self.bin)
                .args(["show", "--json", "--mgmt-socket"])
                .arg(&self.socket),
        )?;
        serde_json::from_str(&out).context("ironflow show --json: not JSON")
    }
}

impl Drop for IronflowNode {
    fn drop(&mut self) {
        let arg = self.socket.display().to_string();
        if let Err(e) = stop_pid_in(&self.pidfile, &arg) {
            eprintln!("stopping ironflow: {e:#}");
        }
    }
}

/// `ironflow run` as chassis `chassis` with its VIF on the command line
/// (attached before it connects, as stock's is on br-int before
/// ovn-controller starts).
fn measure_ironflow(
    central: &OvnCentral,
    watch: &Watch,
    chassis: &str,
    logical_flows: usize,
) -> Result<Sample> {
    let bin = ironflow_bin()?;
    let prefix = unique_prefix("bc");
    let ns = Netns::new(&format!("ifl-{prefix}-if"))?;
    // The encap IP must be the node's own (on a veth: this kernel may
    // lack the dummy module); the VIF a real interface.
    ns.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"])?;
    ns.ip(&["addr", "add", &format!("{ENCAP_IP}/24"), "dev", "ul0"])?;
    ns.ip(&["link", "set", "ul0", "up"])?;
    ns.ip(&["link", "set", "ul1", "up"])?;
    ns.ip(&[
        "link", "add", "vif0", "type", "veth", "peer", "name", "vif0p",
    ])?;
    ns.ip(&["link", "set", "vif0", "up"])?;
    ns.ip(&["link", "set", "vif0p", "up"])?;
    let dir = tempfile::Builder::new()
        .prefix("ironflow-bench-ctl-")
        .tempdir_in("/tmp")
        .context("cannot create a directory under /tmp")?;
    let node = IronflowNode {
        pidfile: dir.path().join("node.pid"),
        socket: dir.path().join("node.sock"),
        log: dir.path().join("node.log"),
        bin,
        _ns: ns,
        _dir: dir,
    };
    let started = unix_now();
    let start = Instant::now();
    // --detach returns once the node is up: connected, the first program
    // compiled and published, the management socket open.
    output(
        Command::new("ip")
            .args(["netns", "exec", node._ns.name()])
            .arg(&node.bin)
            .arg("run")
            .args(["--ovn-remote", &central.sb_remote()])
            .args(["--system-id", chassis])
            .args(["--encap-ip", &ENCAP_IP.to_string()])
            .args(["--port", &format!("vif0={VIF_LSP}")])
            .arg("--mgmt-socket")
            .arg(&node.socket)
            .arg("--pidfile")
            .arg(&node.pidfile)
            .arg("--log-file")
            .arg(&node.log)
            .arg("--detach"),
    )
    .with_context(|| format!("starting ironflow; its log ends:\n{}", node.log_tail()))?;
    let pid = node.pid()?;
    let mut settle = Settle::new();
    // The program each rule count was first published with:
    // (rules, compiles, published_at).
    let mut first_seen: Option<(u64, u64, f64)> = None;
    let mut first_publish = None;
    let last = loop {
        if interrupted() {
            bail!("interrupted");
        }
        let now = Instant::now();
        let show = node.show()?;
        let p = &show["program"];
        let (Some(rules), Some(compiles), Some(at), Some(lflows)) = (
            p["rules"].as_u64(),
            p["compiles"].as_u64(),
            p["published_at"].as_f64(),
            p["logical_flows"].as_u64(),
        ) else {
            bail!("ironflow show --json has no program section: {show}");
        };
        if first_publish.is_none() && lflows as usize == logical_flows {
            first_publish = Some(at - started);
        }
        if first_seen.is_none_or(|(r, _, _)| r != rules) {
            first_seen = Some((rules, compiles, at));
        }
        let cpu = watch.cpu(pid);
        watch.trace("ironflow", start, rules, cpu);
        // Settled on the number of compiles: a recompile that yields the
        // same rule count is still work not yet done.
        if settle.poll(now, compiles, cpu) && lflows as usize == logical_flows {
            break (show, first_seen);
        }
        if start.elapsed() > TIMEOUT {
            bail!(
                "ironflow had not settled after {TIMEOUT:?} ({lflows} of {logical_flows} logical flows compiled); its log ends:\n{}",
                node.log_tail()
            );
        }
        std::thread::sleep(POLL.saturating_sub(now.elapsed()));
    };
    let (show, first_seen) = last;
    let p = &show["program"];
    let at = p["published_at"].as_f64().unwrap_or(0.0);
    let mut extra = serde_json::Map::new();
    extra.insert("first_publish_seconds".into(), first_publish.into());
    extra.insert(
        "final_rules_first_seconds".into(),
        first_seen.map(|(_, _, t)| t - started).into(),
    );
    extra.insert("compiles".into(), p["compiles"].clone());
    extra.insert("compile_seconds".into(), p["compile_seconds"].clone());
    extra.insert("cpu_s".into(), cpu_seconds(pid).into());
    Ok(Sample {
        // The last program's publish: conservative, since a recompile
        // after the claim may change nothing.
        seconds: at - started,
        installed_flows: p["rules"].as_u64().unwrap_or(0),
        datapaths: p["datapaths"].as_u64().unwrap_or(0),
        rss_mib: status_mib(pid, "VmRSS")?,
        peak_rss_mib: status_mib(pid, "VmHWM")?,
        extra,
    })
}

/// CPUs, memory and kernel, for the record.
pub fn host_description() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(String::new(), |kib| {
            format!(", {:.0} GiB", kib / 1024.0 / 1024.0)
        });
    format!("{cpus} CPUs ({model}){mem}, Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options() {
        let o = Options::parse(&args("--switches 20 --ports 5 --rounds 1 --json")).unwrap();
        assert_eq!((o.switches, o.ports, o.rounds, o.json), (20, 5, 1, true));
        assert_eq!(o.peers, Peer::ALL.to_vec());
        let d = Options::parse(&[]).unwrap();
        assert_eq!((d.switches, d.ports, d.rounds), (850, 20, 3));
        let e = Options::parse(&args("--switches 0")).unwrap_err();
        assert!(e.contains("positive"), "{e}");
        assert!(Options::parse(&args("--peer ovs")).is_err());
        assert!(Options::parse(&args("--ports 300")).is_err());
        assert!(Options::parse(&args("--rounds")).is_err());
    }

    #[test]
    fn settles_on_an_unchanged_count_and_an_idle_controller() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let mut s = Settle::new();
        assert!(!s.poll(at(0), 0, 0.0));
        assert!(!s.poll(at(500), 100, 0.5));
        // Unchanged but busy: a computation in progress.
        assert!(!s.poll(at(2600), 100, 2.5));
        assert!(!s.poll(at(3000), 120, 2.9));
        assert!(!s.poll(at(4000), 120, 3.0));
        assert!(s.poll(at(5100), 120, 3.05));
        assert_eq!(
            s.last.map(|(c, when)| (c, when - t)),
            Some((120, Duration::from_millis(3000)))
        );
        // Nothing installed is never settled.
        let mut z = Settle::new();
        assert!(!z.poll(at(0), 0, 0.0));
        assert!(!z.poll(at(5000), 0, 0.0));
    }

    #[test]
    fn summary_has_medians_and_ratios() {
        let o = Options::parse(&args("--switches 2 --ports 1")).unwrap();
        let s = |seconds, rss| Sample {
            seconds,
            installed_flows: 10,
            datapaths: 3,
            rss_mib: rss,
            peak_rss_mib: rss * 2.0,
            extra: Default::default(),
        };
        let samples = [
            (Peer::OvnController, s(4.0, 100.0)),
            (Peer::Ironflow, s(1.0, 50.0)),
            (Peer::OvnController, s(6.0, 100.0)),
            (Peer::Ironflow, s(3.0, 50.0)),
        ];
        let lines = summarize(&o, 99, &samples);
        assert_eq!(lines[0]["peer"], "ovn-controller");
        assert_eq!(lines[0]["seconds"], 5.0);
        assert_eq!(lines[0]["logical_flows"], 99);
        assert_eq!(lines[0]["installed_flows"], 10);
        assert_eq!(lines[0]["stock_over_ironflow"]["seconds"], 2.5);
        assert_eq!(lines[0]["stock_over_ironflow"]["rss_mib"], 2.0);
        assert!(lines[1].get("stock_over_ironflow").is_none());
        let t = markdown(&lines);
        assert!(
            t.contains("| ovn-controller | 99 | 10 | 3 | 5.00 | 100 | 200 | 2.5, 2.0 |"),
            "{t}"
        );
        assert!(
            t.contains("| ironflow | 99 | 10 | 3 | 2.00 | 50 | 100 |  |"),
            "{t}"
        );
    }
}
