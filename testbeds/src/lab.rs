//! The seed lab in network namespaces: a real OVN central with the seed
//! topology, three nodes (kube-master, kube-node1, kube-node2) each running
//! a real `ironflow run` in its own namespace, one namespace per pod with a
//! veth into its node, and an underlay namespace whose Linux bridge joins
//! the nodes (172.17.42.30-32/24, as in the seed write-up).
//!
//! Any node may run stock OVN instead (`LabConfig::stock`: ovsdb-server,
//! ovs-vswitchd on the userspace datapath and ovn-controller, from
//! [`crate::stock::StockDaemons`], with its files in the lab's directory):
//! a mixed cluster, same central, same underlay, same pods.
//!
//! Every name is built from one per-lab prefix so labs run in parallel:
//! namespaces are `ifl-<prefix>-<what>`; interfaces live only inside the
//! lab's own namespaces, so they can carry readable names (`eth0`, the
//! logical port's name). Daemons are stopped by the PIDs the lab started
//! (checked against their command line, which names the lab's own state
//! directory), and only the namespaces the lab made are deleted.
//!
//! A lab either goes away with its value (tests, `ironflow-lab demo`) or
//! stays up (`ironflow-lab up`) with a state file in its directory from
//! which [`down`] takes it apart later.

use crate::central::OvnCentral;
use crate::netns::{alive, has_arg, output, stop_pidfile, which, Netns};
use crate::seed::{self, SWITCHES, VIFS};
use crate::stock::{self, StockDaemons};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The lab's nodes (chassis names) and their underlay addresses.
pub const NODES: [(&str, Ipv4Addr); 3] = [
    ("kube-master", Ipv4Addr::new(172, 17, 42, 30)),
    ("kube-node1", Ipv4Addr::new(172, 17, 42, 31)),
    ("kube-node2", Ipv4Addr::new(172, 17, 42, 32)),
];

/// Prefix length of the underlay.
const UNDERLAY_PREFIX: u8 = 24;

/// Pod MTU: room for Geneve (and its OVN option) inside the underlay's 1500.
pub const POD_MTU: u32 = 1400;

/// The state file of a lab that outlives its process.
const STATE: &str = "lab.state";

/// Why the lab cannot run here, if it cannot: tests skip on `Some`.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the namespace lab needs root (namespaces, veth, packet sockets)".into());
    }
    for tool in ["ip", "ovsdb-server", "ovn-northd", "ovn-nbctl"] {
        if which(tool).is_none() {
            return Some(format!("{tool} not found: run scripts/setup.sh"));
        }
    }
    None
}

/// The `ironflow` binary: `IRONFLOW_BIN`, else the one cargo built next to
/// the running executable (`target/<profile>/` holds both `ironflow-lab`
/// and, one level up from `deps/`, the test executables' `ironflow`).
pub fn ironflow_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("IRONFLOW_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("IRONFLOW_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("ironflow"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "no ironflow binary at {}: build it (`cargo build -p ironflow-control`) or set IRONFLOW_BIN",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        })
}

/// A pod of the lab: a logical switch port and the node it runs on.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub lsp: String,
    pub switch: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub node: String,
    /// The logical port is the lab's own (added to the NB with the seed),
    /// not one of the seed's.
    pub extra: bool,
}

impl PodSpec {
    /// One of the seed's VIFs (`web-1`, `sshd-2`, `k8s-kube-node1`, …) on
    /// `node`.
    pub fn seed(lsp: &str, node: &str) -> Result<PodSpec> {
        let vif = VIFS
            .iter()
            .find(|v| v.name == lsp)
            .ok_or_else(|| anyhow!("{lsp} is not one of the seed's ports"))?;
        Ok(PodSpec {
            lsp: lsp.into(),
            switch: vif.switch.into(),
            mac: vif.mac.into(),
            ip: vif.ip.parse()?,
            node: node.into(),
            extra: false,
        })
    }

    /// A logical port of the lab's own on `switch` (one of the seed's).
    pub fn extra(lsp: &str, switch: &str, mac: &str, ip: Ipv4Addr, node: &str) -> PodSpec {
        PodSpec {
            lsp: lsp.into(),
            switch: switch.into(),
            mac: mac.into(),
            ip,
            node: node.into(),
            extra: true,
        }
    }

    /// The router port's address on the pod's switch: its default gateway.
    pub fn gateway(&self) -> Result<Ipv4Addr> {
        let sw = SWITCHES
            .iter()
            .find(|s| s.name == self.switch)
            .ok_or_else(|| anyhow!("no switch {} in the seed", self.switch))?;
        let ip = sw.router_net.split('/').next().unwrap_or_default();
        Ok(ip.parse()?)
    }

    /// The `ovn-nbctl` commands that add the port.
    fn nb_commands(&self) -> Vec<Vec<String>> {
        let addresses = format!("{} {}", self.mac, self.ip);
        vec![
            vec!["lsp-add".into(), self.switch.clone(), self.lsp.clone()],
            vec![
                "lsp-set-addresses".into(),
                self.lsp.clone(),
                addresses.clone(),
            ],
            vec!["lsp-set-port-security".into(), self.lsp.clone(), addresses],
        ]
    }
}

/// The seed write-up's pods: web-1 on kube-node2, sshd-2 on kube-node1.
pub fn seed_pods() -> Vec<PodSpec> {
    vec![
        PodSpec::seed("web-1", "kube-node2").expect("seed VIF"),
        PodSpec::seed("sshd-2", "kube-node1").expect("seed VIF"),
    ]
}

/// How to build a lab.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Names the lab's namespaces (`ifl-<prefix>-…`); from
    /// [`crate::netns::unique_prefix`] for labs that run side by side.
    pub prefix: String,
    /// State directory (central, daemon logs and sockets); a fresh
    /// temporary one under /tmp when None.
    pub dir: Option<PathBuf>,
    /// Leave everything running when the value goes (`ironflow-lab up`).
    pub keep: bool,
    pub pods: Vec<PodSpec>,
    /// Give each node its `k8s-<node>` management port, as ovn-kubernetes
    /// does: an internal (TAP) port in the node's namespace with the
    /// seed's address, and routes to the pods and services through it.
    pub mgmt_ports: bool,
    /// `ironflow port add --backend` for the pods.
    pub backend: String,
    /// Nodes (by name, from [`NODES`]) that run stock OVN rather than
    /// ironflow: their pods are `br-int` ports with TX checksum offload
    /// off (stock OVS forwards partial checksums as they are), their
    /// management port an OVS internal port.
    pub stock: Vec<String>,
}

impl LabConfig {
    /// The seed's pods under `prefix`, in a temporary directory.
    pub fn new(prefix: &str) -> LabConfig {
        LabConfig {
            prefix: prefix.into(),
            dir: None,
            keep: false,
            pods: seed_pods(),
            mgmt_ports: true,
            backend: "auto".into(),
            stock: Vec::new(),
        }
    }
}

/// A pod: its namespace (with `eth0`) and the veth end in its node.
pub struct Pod {
    pub spec: PodSpec,
    /// The veth end in the node's namespace that the daemon attaches.
    pub ifname: String,
    ns: Netns,
}

impl Pod {
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Runs `cmd` in the pod (`ip netns exec`), whatever its exit status;
    /// returns (success, stdout and stderr).
    pub fn sh(&self, cmd: &[&str]) -> Result<(bool, String)> {
        let out = Command::new("ip")
            .args(["netns", "exec", self.ns.name()])
            .args(cmd)
            .output()
            .with_context(|| format!("cannot run {cmd:?} in {}", self.ns.name()))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }

    /// `ping -c COUNT` with a deadline, whatever its outcome.
    pub fn ping(&self, dst: Ipv4Addr, count: u32) -> Result<(bool, String)> {
        let (count, deadline) = (count.to_string(), (count + 4).to_string());
        self.sh(&[
            "ping",
            "-n",
            "-c",
            &count,
            "-i",
            "0.2",
            "-w",
            &deadline,
            &dst.to_string(),
        ])
    }
}

/// A node: its namespace and its `ironflow run` (detached, with its own
/// pidfile, log and port state file in the lab's directory).
pub struct Node {
    pub name: String,
    pub encap_ip: Ipv4Addr,
    ns: Netns,
    mgmt: PathBuf,
    log: PathBuf,
    pidfile: PathBuf,
    state: PathBuf,
    /// The `k8s-<node>` port, if the node has one.
    mgmt_port: Option<PodSpec>,
    /// A stock OVN node's daemons (files under `<node>-ovs/` in the lab's
    /// directory); None on an ironflow node.
    stock: Option<StockDaemons>,
}

impl Node {
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    pub fn mgmt_socket(&self) -> &Path {
        &self.mgmt
    }

    /// The stock OVN daemons of a node that runs them instead of ironflow.
    pub fn stock(&self) -> Option<&StockDaemons> {
        self.stock.as_ref()
    }

    /// What forwards on the node: "ironflow" or "stock OVN".
    pub fn kind(&self) -> &'static str {
        if self.stock.is_some() {
            "stock OVN"
        } else {
            "ironflow"
        }
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Where the daemon keeps the ports added to it.
    pub fn state_file(&self) -> &Path {
        &self.state
    }

    /// The daemon's PID, if it runs (and is this lab's).
    pub fn pid(&self) -> Option<i32> {
        let pid = std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let ours = has_arg(pid, &format!("--pidfile={}", self.pidfile.display()));
        (ours && alive(pid)).then_some(pid)
    }

    /// The `k8s-<node>` management port, if the node has one.
    pub fn mgmt_port(&self) -> Option<&PodSpec> {
        self.mgmt_port.as_ref()
    }

    /// The last `lines` lines of the daemon's log (ovn-controller's and
    /// ovs-vswitchd's on a stock node), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        if let Some(ovs) = &self.stock {
            return format!(
                "ovn-controller:\n{}\novs-vswitchd:\n{}",
                ovs.log_tail("ovn-controller", lines),
                ovs.log_tail("ovs-vswitchd", lines)
            );
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A running seed lab.
pub struct SeedLab {
    prefix: String,
    bin: PathBuf,
    backend: String,
    keep: bool,
    // Drop order matters: daemons first (in `drop`), then pods, nodes and
    // the underlay (namespaces), then the central, then the directory.
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    underlay: Netns,
    central: OvnCentral,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl SeedLab {
    /// Builds the lab and returns once every daemon runs, sees the other
    /// chassis, and has claimed its pods.
    pub fn start(cfg: LabConfig) -> Result<SeedLab> {
        if let Some(why) = unavailable() {
            bail!("{why}");
        }
        if !cfg.stock.is_empty() {
            if let Some(why) = stock::unavailable() {
                bail!("{why}");
            }
        }
        if let Some(bad) = cfg
            .stock
            .iter()
            .find(|n| !NODES.iter().any(|(m, _)| m == n))
        {
            bail!("no node {bad} in the lab to run stock OVN");
        }
        let bin = ironflow_bin()?;
        let (dir, tmp) = match &cfg.dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("cannot create {}", d.display()))?;
                (d.canonicalize()?, None)
            }
            None => {
                // Under /tmp: unix socket paths must stay short.
                let t = tempfile::Builder::new()
                    .prefix("ironflow-lab-")
                    .tempdir_in("/tmp")
                    .context("cannot create a temporary directory under /tmp")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let _ = std::fs::remove_file(dir.join(STATE));
        let central = OvnCentral::start_in(&dir.join("central"), cfg.keep)?;
        let mut commands = seed::commands();
        for pod in cfg.pods.iter().filter(|p| p.extra) {
            commands.extend(pod.nb_commands());
        }
        central.nbctl_batch(&commands)?;
        let underlay = Netns::new(&format!("ifl-{}-ul", cfg.prefix))?;
        let mut lab = SeedLab {
            prefix: cfg.prefix.clone(),
            bin,
            backend: cfg.backend.clone(),
            // Until the lab is up, a failure takes down what was built.
            keep: false,
            pods: Vec::new(),
            nodes: Vec::new(),
            underlay,
            central,
            dir,
            _tmp: tmp,
        };
        lab.record(&format!("ns {}", lab.underlay.name()))?;
        lab.plumb_underlay()?;
        for (name, ip) in NODES {
            let stock = cfg.stock.iter().any(|n| n == name);
            lab.add_node(name, ip, stock)?;
        }
        for i in 0..lab.nodes.len() {
            if lab.nodes[i].stock.is_none() {
                lab.spawn_daemon(i)?;
            }
        }
        // Pods come to a running node as they do under a CNI: interface
        // first, then `ironflow port add`.
        for spec in cfg.pods {
            let p = lab.plumb_pod(spec)?;
            lab.attach(p)?;
        }
        if cfg.mgmt_ports {
            for i in 0..lab.nodes.len() {
                lab.add_mgmt_port(i)?;
            }
        }
        lab.wait_ready(Duration::from_secs(30))?;
        lab.keep = cfg.keep;
        Ok(lab)
    }

    pub fn central(&self) -> &OvnCentral {
        &self.central
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn underlay(&self) -> &Netns {
        &self.underlay
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| anyhow!("no node {name} in the lab"))
    }

    pub fn pod(&self, lsp: &str) -> Result<&Pod> {
        self.pods
            .iter()
            .find(|p| p.spec.lsp == lsp)
            .ok_or_else(|| anyhow!("no pod {lsp} in the lab"))
    }

    /// Appends a line to the state file that [`down`] reads.
    fn record(&self, line: &str) -> Result<()> {
        let path = self.dir.join(STATE);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    fn plumb_underlay(&self) -> Result<()> {
        let ul = &self.underlay;
        quiet_ipv6(ul)?;
        ul.ip(&["link", "add", "br0", "type", "bridge"])?;
        ul.ip(&["link", "set", "br0", "up"])?;
        Ok(())
    }

    fn add_node(&mut self, name: &str, ip: Ipv4Addr, stock: bool) -> Result<()> {
        let ns = Netns::new(&format!("ifl-{}-{name}", self.prefix))?;
        self.record(&format!("ns {}", ns.name()))?;
        quiet_ipv6(&ns)?;
        // The node's eth0; its peer in the underlay is named after the node.
        ns.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            name,
            "netns",
            self.underlay.name(),
        ])?;
        self.underlay
            .ip(&["link", "set", name, "master", "br0", "up"])?;
        let ovs = if stock {
            Some(self.start_stock(&ns, name, ip)?)
        } else {
            let cidr = format!("{ip}/{UNDERLAY_PREFIX}");
            ns.ip(&["addr", "add", &cidr, "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            None
        };
        let path = |ext: &str| self.dir.join(format!("{name}.{ext}"));
        // A fresh lab: no ports from an earlier one's state file.
        let _ = std::fs::remove_file(path("ports.json"));
        self.nodes.push(Node {
            name: name.into(),
            encap_ip: ip,
            mgmt: path("sock"),
            log: path("log"),
            pidfile: path("pid"),
            state: path("ports.json"),
            mgmt_port: None,
            stock: ovs,
            ns,
        });
        Ok(())
    }

    /// Stock OVN on node `name`: its daemons in the node's namespace, eth0
    /// (the underlay) as `br-phy`'s port with the encap IP on `br-phy`, as
    /// `../shared/ovn-lab/RECIPE.md` has it.
    fn start_stock(&self, ns: &Netns, name: &str, ip: Ipv4Addr) -> Result<StockDaemons> {
        let dir = self.dir.join(format!("{name}-ovs"));
        // A fresh lab: no database from an earlier one.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ovs = StockDaemons::new(ns.name(), &dir);
        // Recorded before the start, so `down` finds daemons that started
        // even if this process dies on the way; `down` stops them in this
        // order, the controller first.
        for daemon in ["ovn-controller", "ovs-vswitchd", "ovsdb-server"] {
            self.record(&format!("daemon {}", ovs.pidfile(daemon).display()))?;
        }
        let sb = self.central.sb_remote();
        let started = ovs
            .start_ovs(name, &sb, ip)
            .and_then(|()| ovs.attach_underlay("eth0", ip, UNDERLAY_PREFIX))
            .and_then(|()| ovs.start_controller());
        if let Err(e) = started {
            let _ = ovs.stop();
            return Err(e.context(format!("starting stock OVN on {name}")));
        }
        Ok(ovs)
    }

    fn node_index(&self, name: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| anyhow!("no node {name} in the lab"))
    }

    /// The pod's namespace and its veth; the node's end is named after the
    /// logical port and left for the daemon.
    fn plumb_pod(&mut self, spec: PodSpec) -> Result<usize> {
        if spec.lsp.len() > 15 || spec.lsp.contains('/') {
            bail!(
                "pod {}: the name must do as an interface name (≤ 15 bytes)",
                spec.lsp
            );
        }
        let gateway = spec.gateway()?;
        let n = self.node_index(&spec.node)?;
        let ns = Netns::new(&format!("ifl-{}-{}", self.prefix, spec.lsp))?;
        self.record(&format!("ns {}", ns.name()))?;
        let ifname = spec.lsp.clone();
        let node_ns = &self.nodes[n].ns;
        quiet_ipv6(&ns)?;
        node_ns.ip(&[
            "link",
            "add",
            &ifname,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ])?;
        let mtu = POD_MTU.to_string();
        node_ns.ip(&["link", "set", &ifname, "mtu", &mtu, "up"])?;
        ns.ip(&[
            "link", "set", "eth0", "address", &spec.mac, "mtu", &mtu, "up",
        ])?;
        let prefix_len = SWITCHES
            .iter()
            .find(|s| s.name == spec.switch)
            .and_then(|s| s.router_net.split('/').nth(1))
            .unwrap_or("24");
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/{prefix_len}", spec.ip),
            "dev",
            "eth0",
        ])?;
        ns.ip(&["route", "add", "default", "via", &gateway.to_string()])?;
        // Offloads stay as veth has them (TX checksum and TSO on): the
        // datapath must cope, unlike stock OVS on AF_PACKET.
        self.pods.push(Pod { spec, ifname, ns });
        Ok(self.pods.len() - 1)
    }

    /// Starts `ironflow run --detach` for node `i` in its namespace; it
    /// returns once the node is up, or with the daemon's error.
    fn spawn_daemon(&mut self, i: usize) -> Result<()> {
        let sb = self.central.sb_remote();
        let node = &self.nodes[i];
        let pidfile = format!("--pidfile={}", node.pidfile.display());
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", node.ns.name()])
            .arg(&self.bin)
            .arg("run")
            .arg(format!("--ovn-remote={sb}"))
            .arg(format!("--system-id={}", node.name))
            .arg(format!("--encap-ip={}", node.encap_ip))
            .arg(format!("--mgmt-socket={}", node.mgmt.display()))
            .arg(format!("--state={}", node.state.display()))
            .arg("--detach")
            .arg(&pidfile)
            .arg(format!("--log-file={}", node.log.display()));
        // Written before the start, so `down` finds a daemon that started
        // even if this process dies on the way.
        self.record(&format!("daemon {}", node.pidfile.display()))?;
        output(&mut cmd).with_context(|| format!("starting ironflow on {}", node.name))?;
        Ok(())
    }

    /// `ironflow port add` for pod `p` on its node, or a `br-int` port on
    /// a stock node.
    fn attach(&self, p: usize) -> Result<()> {
        let pod = &self.pods[p];
        if let Some(ovs) = self.node(&pod.spec.node)?.stock() {
            stock::checksum_offload_off(&pod.ns)?;
            return ovs
                .add_vif(&pod.ifname, &pod.spec.lsp)
                .with_context(|| format!("attaching {} on {}", pod.spec.lsp, pod.spec.node));
        }
        let backend = format!("--backend={}", self.backend);
        let iface_id = format!("--iface-id={}", pod.spec.lsp);
        self.ironflow(
            &pod.spec.node,
            &["port", "add", &pod.ifname, &iface_id, &backend],
        )
        .with_context(|| format!("attaching {} on {}", pod.spec.lsp, pod.spec.node))?;
        Ok(())
    }

    /// The node's `k8s-<node>` port: `ironflow port add --backend tap`
    /// makes the interface, which then gets the seed's MAC and address and
    /// carries the node's own traffic to the cluster's pods (192.168.0.0/16)
    /// and services (172.30.0.0/16).
    fn add_mgmt_port(&mut self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let lsp = format!("k8s-{}", node.name);
        let spec = PodSpec::seed(&lsp, &node.name)?;
        let gateway = spec.gateway()?.to_string();
        let iface_id = format!("--iface-id={lsp}");
        match node.stock() {
            Some(ovs) => ovs.add_internal(&lsp, &lsp, POD_MTU),
            None => self
                .ironflow(
                    &node.name,
                    &["port", "add", &lsp, &iface_id, "--backend=tap"],
                )
                .map(drop),
        }
        .with_context(|| format!("attaching {lsp}"))?;
        let mtu = POD_MTU.to_string();
        let ns = &node.ns;
        ns.ip(&["link", "set", &lsp, "address", &spec.mac, "mtu", &mtu, "up"])?;
        ns.ip(&["addr", "add", &format!("{}/24", spec.ip), "dev", &lsp])?;
        for net in ["192.168.0.0/16", "172.30.0.0/16"] {
            ns.ip(&["route", "add", net, "via", &gateway, "dev", &lsp])?;
        }
        self.nodes[i].mgmt_port = Some(spec);
        Ok(())
    }

    /// Waits until every daemon answers on its socket with a tunnel to
    /// every other node, and every pod's port is up in the NB.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let want_tunnels = self.nodes.len() - 1;
        loop {
            let mut missing = Vec::new();
            for node in &self.nodes {
                if let Some(ovs) = &node.stock {
                    if let Some((daemon, _)) = ovs.pids().iter().find(|(_, pid)| pid.is_none()) {
                        bail!(
                            "{daemon} on {} is not running:\n{}",
                            node.name,
                            node.log_tail(20)
                        );
                    }
                    let tunnels = ovs.tunnels().map_or(0, |t| t.len());
                    if tunnels < want_tunnels {
                        missing.push(format!("{}: {tunnels} tunnels", node.name));
                    }
                    continue;
                }
                if node.pid().is_none() {
                    bail!(
                        "ironflow on {} is not running:\n{}",
                        node.name,
                        node.log_tail(20)
                    );
                }
                match self.ironflow_json(&node.name, &["show"]) {
                    Ok(show) => {
                        let tunnels = show["tunnels"].as_array().map_or(0, Vec::len);
                        if tunnels < want_tunnels {
                            missing.push(format!("{}: {tunnels} tunnels", node.name));
                        }
                    }
                    Err(_) => missing.push(format!("{}: no answer on its socket", node.name)),
                }
            }
            let pods = self.pods.iter().map(|p| &p.spec);
            let mgmt = self.nodes.iter().filter_map(|n| n.mgmt_port.as_ref());
            for spec in pods.chain(mgmt) {
                let up = self.central.nbctl(&["lsp-get-up", &spec.lsp])?;
                if up.trim() != "up" {
                    missing.push(format!("{} not up", spec.lsp));
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "the lab is not ready after {timeout:?}: {}; logs in {}",
                    missing.join(", "),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `ironflow ARGS --mgmt-socket NODE`; returns stdout.
    pub fn ironflow(&self, node: &str, args: &[&str]) -> Result<String> {
        let node = self.node(node)?;
        if node.stock.is_some() {
            bail!("{} runs stock OVN, not ironflow", node.name);
        }
        output(
            Command::new(&self.bin)
                .args(args)
                .arg("--mgmt-socket")
                .arg(&node.mgmt),
        )
    }

    /// `ironflow ARGS --json` on a node, parsed.
    pub fn ironflow_json(&self, node: &str, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ironflow(node, &all)?;
        serde_json::from_str(&text).with_context(|| format!("ironflow {args:?}: {text}"))
    }

    /// Runs the `ironflow` binary with `args` as they are (e.g. `trace`).
    pub fn ironflow_raw(&self, args: &[&str]) -> Result<String> {
        output(Command::new(&self.bin).args(args))
    }

    /// Adds a pod while the lab runs: its logical port (if the lab's own),
    /// its namespace and veth, attached to its node's running daemon with
    /// `ironflow port add`. Returns once the port is up in the NB.
    pub fn add_pod(&mut self, spec: PodSpec) -> Result<&Pod> {
        if spec.extra {
            self.central.nbctl_batch(&spec.nb_commands())?;
        }
        let lsp = spec.lsp.clone();
        let p = self.plumb_pod(spec)?;
        self.attach(p)?;
        self.wait_ready(Duration::from_secs(30))
            .with_context(|| format!("after adding {lsp}"))?;
        Ok(&self.pods[p])
    }

    /// SIGKILL to a node's daemon: no chance to clean up.
    pub fn kill_daemon(&self, node: &str) -> Result<()> {
        let node = self.node(node)?;
        if node.stock.is_some() {
            bail!("{} runs stock OVN, not ironflow", node.name);
        }
        let pid = node
            .pid()
            .ok_or_else(|| anyhow!("ironflow on {} is not running", node.name))?;
        // SAFETY: kill on the PID of the daemon this lab started (checked
        // by its pidfile argument).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let start = Instant::now();
        while alive(pid) {
            if start.elapsed() > Duration::from_secs(5) {
                bail!("ironflow on {} (pid {pid}) survives SIGKILL", node.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Starts a node's daemon again (after [`SeedLab::kill_daemon`], or
    /// stopping it first) with nothing but its state file to find its
    /// ports, and waits for the lab to be ready. A TAP management port
    /// went away with the killed daemon and comes back bare (no address,
    /// MAC or routes): the lab leaves it so, as nothing would redo it.
    pub fn restart_daemon(&mut self, node: &str) -> Result<()> {
        let n = self.node_index(node)?;
        if self.nodes[n].stock.is_some() {
            bail!("{node} runs stock OVN, not ironflow");
        }
        stop_pidfile(&self.nodes[n].pidfile)?;
        self.spawn_daemon(n)?;
        self.wait_ready(Duration::from_secs(30))
    }

    /// What to type to reach the lab, for `ironflow-lab up`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let bin = self.bin.display();
        s.push_str(&format!(
            "ironflow seed lab up (state in {}):\n",
            self.dir.display()
        ));
        s.push_str(&format!(
            "  central: ovn-nbctl --db={} show\n           ovn-sbctl --db={} show\n",
            self.central.nb_remote(),
            self.central.sb_remote()
        ));
        for node in &self.nodes {
            let log = match &node.stock {
                Some(ovs) => ovs.dir().display().to_string(),
                None => node.log.display().to_string(),
            };
            s.push_str(&format!(
                "  node {:<12} {:<9} netns {:<24} underlay {}  log {log}\n",
                node.name,
                node.kind(),
                node.ns.name(),
                node.encap_ip,
            ));
            if let Some(m) = &node.mgmt_port {
                s.push_str(&format!("      management port {} {} (tap)\n", m.lsp, m.ip));
            }
            match &node.stock {
                Some(ovs) => {
                    let ctl = |d| ovs.ctl(d).map(|p| p.display().to_string());
                    s.push_str(&format!(
                        "      stock OVN (files in {}):\n      ovs-appctl -t {} dpctl/dump-flows\n      ovs-appctl -t {} ofproto/trace br-int ...\n      ovs-appctl -t {} connection-status\n",
                        ovs.dir().display(),
                        ctl("ovs-vswitchd").unwrap_or_default(),
                        ctl("ovs-vswitchd").unwrap_or_default(),
                        ctl("ovn-controller").unwrap_or_default(),
                    ));
                }
                None => s.push_str(&format!(
                    "      {bin} show|stats|flows|port list --mgmt-socket {}\n",
                    node.mgmt.display()
                )),
            }
        }
        for pod in &self.pods {
            s.push_str(&format!(
                "  pod  {:<12} netns {:<24} {} on {}\n",
                pod.spec.lsp,
                pod.ns.name(),
                pod.spec.ip,
                pod.spec.node
            ));
        }
        if let (Ok(web), Ok(sshd)) = (self.pod("web-1"), self.pod("sshd-2")) {
            s.push_str(&format!(
                "  try: ip netns exec {} ping -c 3 {}\n",
                web.ns.name(),
                sshd.spec.ip
            ));
        }
        s
    }
}

impl Drop for SeedLab {
    fn drop(&mut self) {
        if self.keep {
            // Everything outlives this value; `down` takes it apart.
            for pod in &mut self.pods {
                pod.ns.keep();
            }
            for node in &mut self.nodes {
                node.ns.keep();
            }
            self.underlay.keep();
            return;
        }
        // SIGTERM: a clean exit takes the chassis out of the SB.
        for node in &self.nodes {
            let stopped = match &node.stock {
                Some(ovs) => ovs.stop(),
                None => stop_pidfile(&node.pidfile),
            };
            if let Err(e) = stopped {
                eprintln!("stopping {} on {}: {e:#}", node.kind(), node.name);
            }
        }
    }
}

/// Takes apart the lab that `ironflow-lab up` left in `dir`: its daemons
/// (by the PIDs it recorded, if they are still its daemons), its
/// namespaces, its central.
pub fn down(dir: &Path) -> Result<()> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no lab in {}", dir.display()))?;
    let state = std::fs::read_to_string(dir.join(STATE)).unwrap_or_default();
    let mut namespaces = Vec::new();
    for line in state.lines() {
        let words: Vec<&str> = line.splitn(2, ' ').collect();
        match words.as_slice() {
            ["daemon", pidfile] => stop_pidfile(Path::new(pidfile))?,
            ["ns", name] => namespaces.push(name.to_string()),
            _ => {}
        }
    }
    // Pods before nodes before the underlay: the reverse of creation.
    for name in namespaces.iter().rev() {
        if Path::new("/run/netns").join(name).exists() {
            drop(Netns::adopt(name));
        }
    }
    crate::central::stop_in(&dir.join("central")).or_else(|e| {
        if dir.join("central").exists() {
            Err(e)
        } else {
            Ok(())
        }
    })?;
    let _ = std::fs::remove_file(dir.join(STATE));
    Ok(())
}

/// No IPv6 in a lab namespace: router solicitations and MLD reports would
/// only be noise on the ports.
fn quiet_ipv6(ns: &Netns) -> Result<()> {
    ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
    ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
}

/// Byte `i` of every transfer: a pattern the receiver checks, so a
/// corrupted, lost or reordered segment shows up as a wrong byte.
fn pattern(i: u64) -> u8 {
    (i ^ (i >> 8) ^ (i >> 16)) as u8
}

/// A TCP server in a namespace: each connection's bytes are checked
/// against [`pattern`], and the server answers with the count it read
/// (`OK <n>`) or where it first went wrong (`BAD <offset>`).
pub struct TcpSink {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl TcpSink {
    /// Listens on `port` (all addresses) in `ns`; returns once listening.
    pub fn start(ns: &Netns, port: u16) -> Result<TcpSink> {
        let listener = ns.run(move || {
            let l = TcpListener::bind(("0.0.0.0", port))
                .with_context(|| format!("cannot listen on port {port}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        std::thread::spawn(move || serve(conn));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        });
        Ok(TcpSink {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for TcpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream) -> Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n: u64 = 0;
    let mut bad = None;
    loop {
        let got = conn.read(&mut buf)?;
        if got == 0 {
            break;
        }
        if bad.is_none() {
            if let Some(off) = buf[..got]
                .iter()
                .enumerate()
                .position(|(k, b)| *b != pattern(n + k as u64))
            {
                bad = Some(n + off as u64);
            }
        }
        n += got as u64;
    }
    let answer = match bad {
        None => format!("OK {n}\n"),
        Some(off) => format!("BAD {off}\n"),
    };
    conn.write_all(answer.as_bytes())?;
    Ok(())
}

/// A finished transfer.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub bytes: u64,
    pub elapsed: Duration,
    /// The address the client connected from.
    pub local: SocketAddr,
}

impl Transfer {
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Connects from `ns` to `dst` (giving up after `connect_timeout`), sends
/// `bytes` of [`pattern`] and waits for a [`TcpSink`]'s verdict.
pub fn tcp_send(
    ns: &Netns,
    dst: SocketAddrV4,
    bytes: u64,
    connect_timeout: Duration,
) -> Result<Transfer> {
    ns.run(move || {
        let start = Instant::now();
        let mut conn = TcpStream::connect_timeout(&SocketAddr::V4(dst), connect_timeout)
            .with_context(|| format!("connect to {dst}"))?;
        let local = conn.local_addr()?;
        conn.set_write_timeout(Some(Duration::from_secs(30)))?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut chunk = vec![0u8; 1 << 16];
        let mut sent = 0u64;
        while sent < bytes {
            let len = (bytes - sent).min(chunk.len() as u64) as usize;
            for (k, b) in chunk[..len].iter_mut().enumerate() {
                *b = pattern(sent + k as u64);
            }
            conn.write_all(&chunk[..len])
                .with_context(|| format!("sending to {dst} after {sent} bytes"))?;
            sent += len as u64;
        }
        conn.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer)
            .with_context(|| format!("waiting for {dst}'s answer"))?;
        let elapsed = start.elapsed();
        if answer.trim() != format!("OK {bytes}") {
            bail!("{dst} answered {:?} to {bytes} bytes", answer.trim());
        }
        Ok(Transfer {
            bytes,
            elapsed,
            local,
        })
    })
}
