//! The `ovs-netdev` peer: stock OVN and OVS on the same seed topology and
//! pods — a real OVN central, and on each of kube-node1 and kube-node2 a
//! stock chassis (`ovsdb-server`, `ovs-vswitchd` with the userspace
//! datapath on AF_PACKET ports, `ovn-controller`) from
//! `ironflow_testbeds::stock`, their underlay veths on one Linux bridge,
//! Geneve between them done by OVS itself. The `ovs-afxdp` peer is the
//! same with the pods' ports switched to `type=afxdp`.

use super::{gateway, Endpoints, Pair, Testbed, POD_SPECS};
use anyhow::{Context, Result};
use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::netns::{alive, has_arg, unique_prefix, Netns};
use ironflow_testbeds::seed::{self, SWITCHES};
use ironflow_testbeds::stock::{self, StockChassis, StockConfig};
use std::net::Ipv4Addr;
use std::time::Duration;

const NODES: [(&str, Ipv4Addr); 2] = [
    ("kube-node1", Ipv4Addr::new(172, 17, 42, 31)),
    ("kube-node2", Ipv4Addr::new(172, 17, 42, 32)),
];

pub struct OvsLab {
    // Drop order: the chassis (daemons, then their namespaces), the
    // underlay, the central.
    chassis: Vec<(StockChassis, Vec<&'static str>)>,
    _underlay: Netns,
    _central: OvnCentral,
}

impl OvsLab {
    /// With `afxdp`, the pods' ports on `br-int` become `type=afxdp`
    /// (the `ovs-afxdp` peer), if this OVS build has that type.
    pub fn start(afxdp: bool) -> Result<OvsLab> {
        if let Some(why) = stock::unavailable() {
            anyhow::bail!("ovs-netdev: {why}");
        }
        let central = OvnCentral::start()?;
        let mut commands = seed::commands();
        for p in POD_SPECS.iter().filter(|p| !p.seed) {
            let addresses = format!("{} {}", p.mac, p.ip);
            let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            commands.push(w(&["lsp-add", p.switch, p.lsp]));
            commands.push(w(&["lsp-set-addresses", p.lsp, &addresses]));
            commands.push(w(&["lsp-set-port-security", p.lsp, &addresses]));
        }
        central.nbctl_batch(&commands)?;
        let prefix = unique_prefix("bo");
        let underlay = Netns::new(&format!("ifl-{prefix}-ul"))?;
        underlay.ip(&["link", "add", "br0", "type", "bridge"])?;
        underlay.ip(&["link", "set", "br0", "up"])?;
        let mut lab = OvsLab {
            chassis: Vec::new(),
            _underlay: underlay,
            _central: central,
        };
        for (n, (node, ip)) in NODES.into_iter().enumerate() {
            let pods: Vec<_> = POD_SPECS.iter().filter(|p| p.node == node).collect();
            let specs = pods
                .iter()
                .map(|p| {
                    let gw_mac = SWITCHES
                        .iter()
                        .find(|s| s.name == p.switch)
                        .map(|s| s.router_mac.to_lowercase())
                        .context("pod on an unknown switch")?;
                    Ok(stock::PodSpec {
                        lsp: p.lsp.into(),
                        mac: p.mac.into(),
                        cidr: format!("{}/24", p.ip),
                        gateway: gateway(p.switch),
                        gateway_mac: gw_mac,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let chassis = StockChassis::start(StockConfig {
                prefix: format!("{prefix}{n}"),
                system_id: node.into(),
                sb_remote: lab._central.sb_remote(),
                encap_ip: ip,
                encap_prefix_len: 24,
                underlay_ns: lab._underlay.name().into(),
                pods: specs,
            })
            .with_context(|| format!("stock chassis {node}"))?;
            if afxdp {
                let types = chassis.vsctl(&["get", "Open_vSwitch", ".", "iface_types"])?;
                if !types.contains("afxdp") {
                    anyhow::bail!(
                        "ovs-afxdp: not available on this host: this OVS build has no afxdp \
                         interface type (iface_types {})",
                        types.trim()
                    );
                }
                for i in 0..pods.len() {
                    // stock.rs names pod i's port `<prefix>p<i>`.
                    let port = format!("{prefix}{n}p{i}");
                    chassis.vsctl(&["set", "Interface", &port, "type=afxdp"])?;
                    wait_afxdp(&chassis, &port)?;
                }
            }
            lab._underlay.ip(&[
                "link",
                "set",
                &chassis.underlay_peer(),
                "master",
                "br0",
                "up",
            ])?;
            lab.chassis
                .push((chassis, pods.iter().map(|p| p.lsp).collect()));
        }
        for (i, (c, pods)) in lab.chassis.iter().enumerate() {
            for p in 0..pods.len() {
                c.wait_installed(p, Duration::from_secs(30))?;
            }
            let other = NODES[1 - i].1;
            c.wait_tunnel(other, Duration::from_secs(30))?;
        }
        Ok(lab)
    }

    fn pod_ns(&self, lsp: &str) -> Result<String> {
        for (c, pods) in &self.chassis {
            if let Some(i) = pods.iter().position(|p| *p == lsp) {
                return Ok(c.pod(i).context("pod missing")?.name().to_string());
            }
        }
        anyhow::bail!("no pod {lsp} in the ovs-netdev lab")
    }
}

/// Waits until `ovs-vswitchd` has opened `port` as AF_XDP, or says why
/// not.
fn wait_afxdp(chassis: &StockChassis, port: &str) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        let error = chassis.vsctl(&["get", "Interface", port, "error"])?;
        let status = chassis.vsctl(&["get", "Interface", port, "status"])?;
        // This OVS says so in its log, not in the interface's status.
        let log =
            std::fs::read_to_string(chassis.dir().join("ovs-vswitchd.log")).unwrap_or_default();
        let opened = format!("{port}: ");
        if log
            .lines()
            .any(|l| l.contains(&opened) && l.contains("XDP mode will be in use"))
        {
            return Ok(());
        }
        let error = error.trim();
        if !error.is_empty() && error != "[]" {
            anyhow::bail!("ovs-afxdp: {port} did not open as AF_XDP: {error}");
        }
        if start.elapsed() > Duration::from_secs(10) {
            let log =
                std::fs::read_to_string(chassis.dir().join("ovs-vswitchd.log")).unwrap_or_default();
            let said: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("xdp") || l.contains("XDP"))
                .collect();
            anyhow::bail!(
                "ovs-afxdp: {port} is not AF_XDP after 10 s (status {}); ovs-vswitchd: {}",
                status.trim(),
                said.join(" / ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Testbed for OvsLab {
    fn endpoints(&self, pair: Pair) -> Result<Endpoints> {
        let (src, dst) = pair.pods();
        let ip = POD_SPECS
            .iter()
            .find(|p| p.lsp == dst)
            .map(|p| p.ip)
            .context("no such pod")?;
        Ok(Endpoints {
            src_ns: self.pod_ns(src)?,
            dst_ns: self.pod_ns(dst)?,
            dst_ip: ip,
        })
    }

    /// Both chassis's `ovs-vswitchd` (the datapath; `ovn-controller` only
    /// programs it).
    fn datapath_pids(&self) -> Vec<i32> {
        self.chassis
            .iter()
            .filter_map(|(c, _)| {
                let pidfile = c.dir().join("ovs-vswitchd.pid");
                let pid: i32 = std::fs::read_to_string(&pidfile)
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                let ours = has_arg(pid, &format!("--pidfile={}", pidfile.display()));
                (ours && alive(pid)).then_some(pid)
            })
            .collect()
    }
}
