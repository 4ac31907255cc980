//! A stock OVN chassis (`ovsdb-server`, `ovs-vswitchd` on OVS's userspace
//! datapath, `ovn-controller`) in its own network namespace, with pods in
//! namespaces of their own, the way `../shared/ovn-lab/RECIPE.md` runs one:
//! the reference ironflow must interoperate with on the wire.
//!
//! The kernel here has neither the `openvswitch` nor the `geneve` module, so
//! the bridges are `datapath_type=netdev` and OVS does Geneve itself. The
//! encap IP sits on `br-phy` (an OVS bridge whose tap the kernel sees), with
//! the underlay veth as `br-phy`'s port; its peer is handed to a namespace
//! the caller names, where a capture, a Linux bridge or an ironflow node
//! can sit.
//!
//! Everything is named from one per-lab prefix so labs run in parallel;
//! daemons are stopped by the PID in their own pidfile (never by name:
//! other OVS and OVN processes may run on the machine) and the namespaces
//! deleted, which takes their veths with them.

use crate::netns::{alive, has_arg, output, stop_pidfile, which};
pub use crate::netns::{unique_prefix, Netns, PacketSocket};
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Tools a stock chassis needs (from `openvswitch-switch`, `ovn-host`,
/// `iproute2`, `ethtool`).
pub const TOOLS: [&str; 8] = [
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-appctl",
    "ovn-controller",
    "ip",
    "ethtool",
];

const VSWITCH_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Why a stock chassis cannot run here, if it cannot: not root, or a tool
/// or the vswitch schema missing. Tests skip on `Some`.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("a stock OVN chassis needs root (namespaces, veth, taps)".into());
    }
    for tool in TOOLS {
        if which(tool).is_none() {
            return Some(format!(
                "{tool} not found: run scripts/setup.sh to install OVS and OVN"
            ));
        }
    }
    if !Path::new(VSWITCH_SCHEMA).is_file() {
        return Some(format!("{VSWITCH_SCHEMA} missing: run scripts/setup.sh"));
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun missing: OVS's userspace bridges are taps".into());
    }
    None
}

/// A pod on a stock chassis: a namespace with `eth0` whose peer is a port
/// of `br-int` bound to logical switch port `lsp`.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub lsp: String,
    pub mac: String,
    /// Address with prefix length, e.g. `192.168.3.3/24`.
    pub cidr: String,
    /// The logical router port's address and MAC; the neighbour entry is
    /// static so the first packet needs no ARP.
    pub gateway: Ipv4Addr,
    pub gateway_mac: String,
}

/// How to build a stock chassis.
#[derive(Debug, Clone)]
pub struct StockConfig {
    /// From [`unique_prefix`]: names every namespace and interface.
    pub prefix: String,
    /// The chassis name (`system-id`).
    pub system_id: String,
    /// The SB remote, e.g. [`crate::central::OvnCentral::sb_remote`]; a
    /// unix socket is reachable from any namespace.
    pub sb_remote: String,
    pub encap_ip: Ipv4Addr,
    pub encap_prefix_len: u8,
    /// The namespace that gets the underlay veth's peer, named
    /// [`StockChassis::underlay_peer`], down and without addresses.
    pub underlay_ns: String,
    pub pods: Vec<PodSpec>,
}

/// A running stock chassis; stopped and cleaned up on drop.
pub struct StockChassis {
    cfg: StockConfig,
    // Drop order: daemons are stopped in `drop`, then the pods' and the
    // chassis's namespaces go, then the state directory.
    ovs: StockDaemons,
    pods: Vec<Netns>,
    ns: Netns,
    dir: tempfile::TempDir,
}

/// The chassis's daemons, in start order.
const DAEMONS: [&str; 3] = ["ovsdb-server", "ovs-vswitchd", "ovn-controller"];

impl StockChassis {
    /// Starts the chassis and its pods, returning once `ovs-vswitchd` has
    /// taken every bridge and port and `ovn-controller` runs (whether it
    /// has claimed the pods yet is [`StockChassis::wait_installed`]'s
    /// business).
    pub fn start(cfg: StockConfig) -> Result<StockChassis> {
        if let Some(why) = unavailable() {
            bail!("{why}");
        }
        // Under /tmp: unix socket paths must stay short.
        let dir = tempfile::Builder::new()
            .prefix("ironflow-stock-")
            .tempdir_in("/tmp")
            .context("cannot create a temporary directory under /tmp")?;
        let ns = Netns::new(&format!("ifl-{}-ch", cfg.prefix))?;
        let ovs = StockDaemons::new(ns.name(), dir.path());
        let mut chassis = StockChassis {
            cfg,
            ovs,
            pods: Vec::new(),
            ns,
            dir,
        };
        let c = &chassis.cfg;
        chassis
            .ovs
            .start_ovs(&c.system_id, &c.sb_remote, c.encap_ip)?;
        chassis.plumb_underlay()?;
        chassis.ovs.start_controller()?;
        for i in 0..chassis.cfg.pods.len() {
            chassis.add_pod(i)?;
        }
        Ok(chassis)
    }

    pub fn namespace(&self) -> &Netns {
        &self.ns
    }

    /// The namespace of pod `i` (in [`StockConfig::pods`] order).
    pub fn pod(&self, i: usize) -> Option<&Netns> {
        self.pods.get(i)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The chassis's daemons.
    pub fn daemons(&self) -> &StockDaemons {
        &self.ovs
    }

    /// The underlay veth end in [`StockConfig::underlay_ns`].
    pub fn underlay_peer(&self) -> String {
        format!("{}u1", self.cfg.prefix)
    }

    /// The encap IP's interface, whose MAC is the outer source MAC of the
    /// chassis's tunnel packets.
    pub fn encap_mac(&self) -> Result<[u8; 6]> {
        self.ns.mac("br-phy")
    }

    /// Runs `ovs-vsctl` on this chassis's database; returns stdout.
    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        self.ovs.vsctl(args)
    }

    /// Runs `ovs-appctl` against one of the daemons (`ovs-vswitchd`,
    /// `ovn-controller`, `ovsdb-server`); returns stdout.
    pub fn appctl(&self, daemon: &str, args: &[&str]) -> Result<String> {
        self.ovs.appctl(daemon, args)
    }

    /// The underlay veth: one end on `br-phy`, the other handed to the
    /// caller's namespace.
    fn plumb_underlay(&self) -> Result<()> {
        let p = &self.cfg.prefix;
        let (mine, peer) = (format!("{p}u0"), format!("{p}u1"));
        self.ns.ip(&[
            "link",
            "add",
            &mine,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &self.cfg.underlay_ns,
        ])?;
        self.ovs
            .attach_underlay(&mine, self.cfg.encap_ip, self.cfg.encap_prefix_len)
    }

    fn add_pod(&mut self, i: usize) -> Result<()> {
        let spec = self.cfg.pods[i].clone();
        let pod = Netns::new(&format!("ifl-{}-pod{i}", self.cfg.prefix))?;
        let port = format!("{}p{i}", self.cfg.prefix);
        self.ns.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.name(),
        ])?;
        self.ns.ip(&["link", "set", &port, "mtu", "1400", "up"])?;
        // No IPv6 chatter (router solicitations, MLD) from the pod.
        pod.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        pod.ip(&[
            "link", "set", "eth0", "address", &spec.mac, "mtu", "1400", "up",
        ])?;
        pod.ip(&["addr", "add", &spec.cidr, "dev", "eth0"])?;
        let gw = spec.gateway.to_string();
        pod.ip(&["route", "add", "default", "via", &gw])?;
        pod.ip(&[
            "neigh",
            "replace",
            &gw,
            "lladdr",
            &spec.gateway_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])?;
        checksum_offload_off(&pod)?;
        self.pods.push(pod);
        self.ovs.add_vif(&port, &spec.lsp)
    }

    /// Waits until `ovn-controller` has installed the flows for pod `i`
    /// (it sets `external_ids:ovn-installed` on the interface then).
    pub fn wait_installed(&self, i: usize, timeout: Duration) -> Result<()> {
        let port = format!("{}p{i}", self.cfg.prefix);
        self.ovs
            .wait_installed(&port, timeout)
            .with_context(|| format!("pod {}", self.cfg.pods[i].lsp))
    }

    /// Waits until `ovn-controller` has made a Geneve port to `remote_ip`
    /// on `br-int`.
    pub fn wait_tunnel(&self, remote_ip: Ipv4Addr, timeout: Duration) -> Result<String> {
        self.ovs.wait_tunnel(remote_ip, timeout)
    }

    /// Stops the daemons, last started first.
    pub fn stop(&self) -> Result<()> {
        self.ovs.stop()
    }
}

/// The checksum trap: with TX offload on, TCP and UDP leave a pod with
/// partial checksums that AF_PACKET hands stock OVS as they are, and OVS
/// forwards them so; a pod of a stock chassis turns it off.
pub fn checksum_offload_off(pod: &Netns) -> Result<()> {
    pod.exec(&["ethtool", "-K", "eth0", "tx", "off"]).map(drop)
}

/// The daemons of one stock chassis (`ovsdb-server`, `ovs-vswitchd` with
/// `br-int` and `br-phy` on the userspace datapath, `ovn-controller`),
/// run in a namespace the caller made, with every file (database, pidfiles,
/// logs, unixctl sockets) in a directory the caller owns: nothing is shared
/// with another OVS on the machine. [`StockChassis`] builds a whole chassis
/// on it; the seed lab runs it as one of its nodes.
pub struct StockDaemons {
    ns: String,
    dir: PathBuf,
}

impl StockDaemons {
    /// Nothing runs yet: [`StockDaemons::start_ovs`], then
    /// [`StockDaemons::attach_underlay`], then
    /// [`StockDaemons::start_controller`].
    pub fn new(ns: &str, dir: &Path) -> StockDaemons {
        StockDaemons {
            ns: ns.into(),
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A daemon's pidfile (`ovsdb-server`, `ovs-vswitchd`,
    /// `ovn-controller`), which [`crate::netns::stop_pidfile`] accepts.
    pub fn pidfile(&self, daemon: &str) -> PathBuf {
        self.path(&format!("{daemon}.pid"))
    }

    /// The PIDs of the daemons that run (and are these daemons: started
    /// with their own pidfile), in start order.
    pub fn pids(&self) -> Vec<(&'static str, Option<i32>)> {
        DAEMONS
            .iter()
            .map(|name| {
                let pidfile = self.pidfile(name);
                let pid = std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .filter(|pid| {
                        has_arg(*pid, &format!("--pidfile={}", pidfile.display())) && alive(*pid)
                    });
                (*name, pid)
            })
            .collect()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn db_remote(&self) -> String {
        format!("unix:{}", self.path("db.sock").display())
    }

    /// Runs `ovs-vsctl` on this chassis's database; returns stdout.
    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new("ovs-vsctl");
        c.arg(format!("--db={}", self.db_remote()))
            .arg("--timeout=30")
            .args(args);
        output(&mut c)
    }

    /// The `ovs-appctl -t` target of a daemon (`ovs-vswitchd`,
    /// `ovn-controller`, `ovsdb-server`).
    pub fn ctl(&self, daemon: &str) -> Result<PathBuf> {
        if daemon == "ovn-controller" {
            // ovn-controller takes no --unixctl: its socket is
            // OVN_RUNDIR/ovn-controller.PID.ctl.
            let pid = std::fs::read_to_string(self.path("ovn-controller.pid"))
                .context("ovn-controller is not running")?;
            Ok(self.path(&format!("ovn-controller.{}.ctl", pid.trim())))
        } else {
            Ok(self.path(&format!("{daemon}.ctl")))
        }
    }

    /// Runs `ovs-appctl` against one of the daemons; returns stdout.
    pub fn appctl(&self, daemon: &str, args: &[&str]) -> Result<String> {
        let mut c = Command::new("ovs-appctl");
        c.arg("-t")
            .arg(self.ctl(daemon)?)
            .arg("--timeout=30")
            .args(args);
        output(&mut c)
    }

    /// Starts a daemon detached in the namespace, its files in the
    /// directory.
    fn daemon(&self, name: &str, args: &[String]) -> Result<()> {
        let d = &self.dir;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, name])
            .arg("--detach")
            .arg("--no-chdir")
            .arg(format!("--pidfile={}", self.pidfile(name).display()))
            .arg(format!(
                "--log-file={}",
                self.path(&format!("{name}.log")).display()
            ))
            .arg("-vconsole:off");
        if name != "ovn-controller" {
            c.arg(format!(
                "--unixctl={}",
                self.path(&format!("{name}.ctl")).display()
            ));
        }
        c.args(args);
        for var in [
            "OVS_RUNDIR",
            "OVS_DBDIR",
            "OVS_LOGDIR",
            "OVN_RUNDIR",
            "OVN_DBDIR",
            "OVN_LOGDIR",
        ] {
            c.env(var, d);
        }
        output(&mut c).map(drop)
    }

    /// `ovsdb-server` and `ovs-vswitchd` with the chassis's OVN settings,
    /// `br-int` and `br-phy`; returns once the bridges' taps exist.
    pub fn start_ovs(&self, system_id: &str, sb_remote: &str, encap_ip: Ipv4Addr) -> Result<()> {
        let db = self.path("conf.db");
        output(
            Command::new("ovsdb-tool")
                .arg("create")
                .arg(&db)
                .arg(VSWITCH_SCHEMA),
        )?;
        self.daemon(
            "ovsdb-server",
            &[
                format!("--remote=punix:{}", self.path("db.sock").display()),
                db.display().to_string(),
            ],
        )?;
        self.vsctl(&["--no-wait", "init"])?;
        self.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!("external_ids:system-id={system_id}"),
            &format!("external_ids:ovn-remote={sb_remote}"),
            "external_ids:ovn-encap-type=geneve",
            &format!("external_ids:ovn-encap-ip={encap_ip}"),
            "external_ids:ovn-bridge-datapath-type=netdev",
        ])?;
        self.daemon("ovs-vswitchd", &[self.db_remote()])?;
        // Without --no-wait: returns once ovs-vswitchd made the taps.
        self.vsctl(&[
            "add-br",
            "br-int",
            "--",
            "set",
            "Bridge",
            "br-int",
            "datapath_type=netdev",
            "fail_mode=secure",
            "other_config:disable-in-band=true",
        ])?;
        self.vsctl(&[
            "add-br",
            "br-phy",
            "--",
            "set",
            "Bridge",
            "br-phy",
            "datapath_type=netdev",
        ])?;
        Ok(())
    }

    /// The underlay interface `ifname` (in the namespace) as `br-phy`'s
    /// port, the encap IP on `br-phy` itself: the tunnel's source address
    /// must be the bridge's, not the port's.
    pub fn attach_underlay(&self, ifname: &str, encap_ip: Ipv4Addr, prefix_len: u8) -> Result<()> {
        crate::netns::ip(&["-n", &self.ns, "link", "set", ifname, "up"])?;
        // The port is still the kernel's too: without arp_ignore it would
        // answer ARP for the encap IP with its own MAC as well as br-phy
        // with br-phy's, and peers would address tunnel frames to either.
        let arp_ignore = format!("/proc/sys/net/ipv4/conf/{ifname}/arp_ignore");
        output(Command::new("ip").args([
            "netns",
            "exec",
            &self.ns,
            "sh",
            "-c",
            &format!("echo 1 > {arp_ignore}"),
        ]))
        .with_context(|| format!("setting {arp_ignore}"))?;
        self.vsctl(&["add-port", "br-phy", ifname])?;
        let addr = format!("{encap_ip}/{prefix_len}");
        crate::netns::ip(&["-n", &self.ns, "addr", "add", &addr, "dev", "br-phy"])?;
        crate::netns::ip(&["-n", &self.ns, "link", "set", "br-phy", "up"])?;
        Ok(())
    }

    pub fn start_controller(&self) -> Result<()> {
        self.daemon("ovn-controller", &[self.db_remote()])
    }

    /// Interface `ifname` (in the namespace) as a port of `br-int` bound
    /// to logical switch port `lsp`.
    pub fn add_vif(&self, ifname: &str, lsp: &str) -> Result<()> {
        self.vsctl(&[
            "add-port",
            "br-int",
            ifname,
            "--",
            "set",
            "Interface",
            ifname,
            &format!("external_ids:iface-id={lsp}"),
        ])
        .map(drop)
    }

    /// An internal port of `br-int` (a tap named `ifname` in the
    /// namespace, as ovn-kubernetes makes its management port) bound to
    /// `lsp`, with MTU `mtu` (OVS would otherwise set its own); returns
    /// once the tap exists.
    pub fn add_internal(&self, ifname: &str, lsp: &str, mtu: u32) -> Result<()> {
        self.vsctl(&[
            "add-port",
            "br-int",
            ifname,
            "--",
            "set",
            "Interface",
            ifname,
            "type=internal",
            &format!("mtu_request={mtu}"),
            &format!("external_ids:iface-id={lsp}"),
        ])
        .map(drop)
    }

    /// Waits until `ovn-controller` has installed the flows for the port
    /// `ifname` (it sets `external_ids:ovn-installed` on the interface
    /// then).
    pub fn wait_installed(&self, ifname: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let v = self
                .vsctl(&[
                    "--if-exists",
                    "get",
                    "Interface",
                    ifname,
                    "external_ids:ovn-installed",
                ])
                .unwrap_or_default();
            if v.trim().trim_matches('"') == "true" {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "ovn-controller did not install {ifname} in {timeout:?}; see {}",
                    self.path("ovn-controller.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The remote IPs of the Geneve ports `ovn-controller` made on
    /// `br-int`.
    pub fn tunnels(&self) -> Result<Vec<String>> {
        let out = self.vsctl(&[
            "--bare",
            "--columns=options",
            "find",
            "Interface",
            "type=geneve",
        ])?;
        Ok(out
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter_map(|w| w.strip_prefix("remote_ip="))
            .map(|ip| ip.trim_matches(|c| c == '"' || c == '}').to_owned())
            .collect())
    }

    /// Waits until `ovn-controller` has made a Geneve port to `remote_ip`
    /// on `br-int`; returns its name.
    pub fn wait_tunnel(&self, remote_ip: Ipv4Addr, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        let want = format!("options:remote_ip=\"{remote_ip}\"");
        loop {
            let out = self
                .vsctl(&[
                    "--bare",
                    "--columns=name",
                    "find",
                    "Interface",
                    "type=geneve",
                    &want,
                ])
                .unwrap_or_default();
            if let Some(name) = out.split_whitespace().next() {
                return Ok(name.to_owned());
            }
            if start.elapsed() > timeout {
                bail!("no Geneve port to {remote_ip} on br-int after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `lines` lines of a daemon's log, for failure messages.
    pub fn log_tail(&self, daemon: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.path(&format!("{daemon}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops the daemons, last started first.
    pub fn stop(&self) -> Result<()> {
        for name in DAEMONS.iter().rev() {
            stop_pidfile(&self.pidfile(name))?;
        }
        Ok(())
    }
}

impl Drop for StockChassis {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "stopping stock chassis in {}: {e:#}",
                self.dir.path().display()
            );
        }
    }
}
