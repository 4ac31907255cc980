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

use anyhow::{anyhow, bail, Context, Result};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
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

/// A short prefix no other lab of this process or of another one shares:
/// interface names must fit in 15 bytes, so keep `tag` to two or three
/// characters.
pub fn unique_prefix(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{:04x}{n:x}", std::process::id() & 0xffff)
}

/// A network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up; a stale one of the
    /// same name (from a killed run) is replaced.
    pub fn new(name: &str) -> Result<Netns> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `cmd` inside the namespace (`ip netns exec`); returns stdout.
    pub fn exec(&self, cmd: &[&str]) -> Result<String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(cmd);
        output(&mut c)
    }

    /// Sets a `net.*` sysctl in this namespace (`/proc/sys/net` shows the
    /// reader's namespace), e.g. `net.ipv6.conf.all.disable_ipv6`. A key
    /// the kernel does not have (IPv6 compiled out) is not an error.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_owned();
        self.run(move || match std::fs::write(&path, value) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.with_context(|| format!("cannot write {path}")),
        })
    }

    /// The MAC address of `ifname` in this namespace.
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6]> {
        let out = self.ip(&["-o", "link", "show", "dev", ifname])?;
        let text = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .ok_or_else(|| anyhow!("{ifname} in {} has no MAC: {out}", self.name))?;
        parse_mac(text)
    }

    /// Runs `f` on a thread that has entered this namespace, so sockets
    /// it opens live there (a socket keeps its namespace for life, so it
    /// may be returned and used from any thread).
    pub fn spawn<T, F>(&self, f: F) -> Result<std::thread::JoinHandle<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
        Ok(std::thread::spawn(move || {
            // SAFETY: setns on an open namespace file; it changes only this
            // thread's network namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {path}: {}", std::io::Error::last_os_error());
            }
            f()
        }))
    }

    /// Runs `f` in this namespace and waits for it.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        self.spawn(f)?
            .join()
            .map_err(|_| anyhow!("thread in {} panicked", self.name))?
    }

    /// An AF_PACKET socket on `ifname` in this namespace that sees every
    /// frame in both directions.
    pub fn packet_socket(&self, ifname: &str) -> Result<PacketSocket> {
        let ifname = ifname.to_owned();
        self.run(move || PacketSocket::open(&ifname))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("deleting namespace {}: {e:#}", self.name);
        }
    }
}

/// A raw AF_PACKET socket bound to one interface: what the lab uses to see
/// frames exactly as they are on the wire.
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens the socket in the calling thread's namespace.
    pub fn open(ifname: &str) -> Result<PacketSocket> {
        let cname = std::ffi::CString::new(ifname)?;
        // SAFETY: plain libc calls on a valid C string and a fresh fd.
        unsafe {
            let index = libc::if_nametoindex(cname.as_ptr());
            if index == 0 {
                bail!("no interface {ifname}: {}", std::io::Error::last_os_error());
            }
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            if fd < 0 {
                bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if rc != 0 {
                bail!("bind to {ifname}: {}", std::io::Error::last_os_error());
            }
            Ok(PacketSocket { fd })
        }
    }

    /// The next frame received (not sent) on the interface, or None after
    /// `timeout`.
    pub fn recv_incoming(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, 60_000) as i32;
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                bail!("poll: {e}");
            }
            if n == 0 {
                continue;
            }
            // SAFETY: zeroed sockaddr_ll is valid; buf and sll outlive the call.
            let (len, sll) = unsafe {
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                let mut sll_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let len = libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut sll_len,
                );
                (len, sll)
            };
            if len < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    continue;
                }
                bail!("recvfrom: {e}");
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(buf[..len as usize].to_vec()));
        }
    }
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
        let mut chassis = StockChassis {
            cfg,
            pods: Vec::new(),
            ns,
            dir,
        };
        chassis.start_ovs()?;
        chassis.plumb_underlay()?;
        chassis.start_controller()?;
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

    /// The underlay veth end in [`StockConfig::underlay_ns`].
    pub fn underlay_peer(&self) -> String {
        format!("{}u1", self.cfg.prefix)
    }

    /// The encap IP's interface, whose MAC is the outer source MAC of the
    /// chassis's tunnel packets.
    pub fn encap_mac(&self) -> Result<[u8; 6]> {
        self.ns.mac("br-phy")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
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

    /// Runs `ovs-appctl` against one of the daemons (`ovs-vswitchd`,
    /// `ovn-controller`, `ovsdb-server`); returns stdout.
    pub fn appctl(&self, daemon: &str, args: &[&str]) -> Result<String> {
        let ctl = if daemon == "ovn-controller" {
            let pid = std::fs::read_to_string(self.path("ovn-controller.pid"))
                .context("ovn-controller is not running")?;
            self.path(&format!("ovn-controller.{}.ctl", pid.trim()))
        } else {
            self.path(&format!("{daemon}.ctl"))
        };
        let mut c = Command::new("ovs-appctl");
        c.arg("-t").arg(ctl).arg("--timeout=30").args(args);
        output(&mut c)
    }

    /// Starts a daemon detached in the chassis namespace, its files in the
    /// state directory.
    fn daemon(&self, name: &str, args: &[String]) -> Result<()> {
        let d = self.dir.path();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns.name(), name])
            .arg("--detach")
            .arg("--no-chdir")
            .arg(format!(
                "--pidfile={}",
                self.path(&format!("{name}.pid")).display()
            ))
            .arg(format!(
                "--log-file={}",
                self.path(&format!("{name}.log")).display()
            ))
            .arg("-vconsole:off");
        // ovn-controller takes no --unixctl: its socket is
        // OVN_RUNDIR/ovn-controller.PID.ctl.
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

    fn start_ovs(&self) -> Result<()> {
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
        let c = &self.cfg;
        self.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!("external_ids:system-id={}", c.system_id),
            &format!("external_ids:ovn-remote={}", c.sb_remote),
            "external_ids:ovn-encap-type=geneve",
            &format!("external_ids:ovn-encap-ip={}", c.encap_ip),
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

    /// The underlay veth on `br-phy`, the encap IP on `br-phy` itself (the
    /// tunnel's source address must be the bridge's, not the veth's).
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
        self.ns.ip(&["link", "set", &mine, "up"])?;
        self.vsctl(&["add-port", "br-phy", &mine])?;
        let addr = format!("{}/{}", self.cfg.encap_ip, self.cfg.encap_prefix_len);
        self.ns.ip(&["addr", "add", &addr, "dev", "br-phy"])?;
        self.ns.ip(&["link", "set", "br-phy", "up"])?;
        Ok(())
    }

    fn start_controller(&self) -> Result<()> {
        self.daemon("ovn-controller", &[self.db_remote()])
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
        // The checksum trap: with TX offload on, TCP and UDP leave the pod
        // with partial checksums that AF_PACKET hands OVS as they are.
        pod.exec(&["ethtool", "-K", "eth0", "tx", "off"])?;
        self.pods.push(pod);
        self.vsctl(&[
            "add-port",
            "br-int",
            &port,
            "--",
            "set",
            "Interface",
            &port,
            &format!("external_ids:iface-id={}", spec.lsp),
        ])?;
        Ok(())
    }

    /// Waits until `ovn-controller` has installed the flows for pod `i`
    /// (it sets `external_ids:ovn-installed` on the interface then).
    pub fn wait_installed(&self, i: usize, timeout: Duration) -> Result<()> {
        let port = format!("{}p{i}", self.cfg.prefix);
        let start = Instant::now();
        loop {
            let v = self
                .vsctl(&[
                    "--if-exists",
                    "get",
                    "Interface",
                    &port,
                    "external_ids:ovn-installed",
                ])
                .unwrap_or_default();
            if v.trim().trim_matches('"') == "true" {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "ovn-controller did not install {port} ({}) in {timeout:?}; see {}",
                    self.cfg.pods[i].lsp,
                    self.path("ovn-controller.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `ovn-controller` has made a Geneve port to `remote_ip`
    /// on `br-int`.
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

    /// Stops the daemons, last started first.
    pub fn stop(&self) -> Result<()> {
        for name in DAEMONS.iter().rev() {
            stop_pidfile(&self.path(&format!("{name}.pid")))?;
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

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        bail!("{text} is not a MAC address");
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("{text} is not a MAC address"))?;
    }
    Ok(mac)
}

fn ip(args: &[&str]) -> Result<String> {
    output(Command::new("ip").args(args))
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// SIGTERM to the PID in `pidfile` if that process was started with this
/// very pidfile (a stale PID may belong to someone else now), SIGKILL
/// after 5 s; a missing pidfile or a process already gone is fine.
fn stop_pidfile(pidfile: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(pidfile) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        bail!("{} does not hold a PID", pidfile.display());
    };
    let needle = format!("--pidfile={}", pidfile.display());
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|a| a == needle.as_bytes()))
        .unwrap_or(false);
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    };
    if !ours || !alive() {
        return Ok(());
    }
    // SAFETY: kill on a PID we checked is our daemon.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    let mut killed = false;
    while alive() {
        if !killed && start.elapsed() > Duration::from_secs(5) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("process {pid} from {} does not exit", pidfile.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_short() {
        let a = unique_prefix("sg");
        let b = unique_prefix("sg");
        assert_ne!(a, b);
        // The longest name made from it: "<prefix>u1".
        assert!(a.len() + 2 <= 15, "{a}");
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("0a:00:00:00:00:02").unwrap(), [10, 0, 0, 0, 0, 2]);
        assert!(parse_mac("0a:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:02").is_err());
    }
}
