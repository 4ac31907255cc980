//! The `kernel` peer: the benchmark's pods with the same names, MACs and
//! addresses, wired with nothing but Linux. Each node is a router
//! namespace (ip_forward) with one Linux bridge per logical switch that
//! has pods there, holding the router's address on that switch; the two
//! nodes meet on an underlay bridge (the seed's 172.17.42.31/.32) and a
//! VXLAN tunnel between them carries cross-node traffic (this kernel has
//! no geneve module). No OVN, no ACLs, no conntrack.

use super::{gateway, Endpoints, Pair, Testbed, POD_SPECS};
use anyhow::{Context, Result};
use ironflow_testbeds::lab::POD_MTU;
use ironflow_testbeds::netns::{unique_prefix, Netns};

pub struct KernelLab {
    /// In creation order; deleted in reverse.
    namespaces: Vec<Netns>,
    pods: Vec<(&'static str, String)>,
}

impl Drop for KernelLab {
    fn drop(&mut self) {
        while let Some(ns) = self.namespaces.pop() {
            drop(ns);
        }
    }
}

impl KernelLab {
    pub fn start() -> Result<KernelLab> {
        let prefix = unique_prefix("bk");
        let mut lab = KernelLab {
            namespaces: Vec::new(),
            pods: Vec::new(),
        };
        lab.build(&prefix)
            .context("building the kernel-forwarding lab")?;
        Ok(lab)
    }

    fn ns(&mut self, name: String) -> Result<usize> {
        let ns = Netns::new(&name)?;
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        self.namespaces.push(ns);
        Ok(self.namespaces.len() - 1)
    }

    fn build(&mut self, prefix: &str) -> Result<()> {
        let ul = self.ns(format!("ifl-{prefix}-ul"))?;
        self.namespaces[ul].ip(&["link", "add", "br0", "type", "bridge"])?;
        self.namespaces[ul].ip(&["link", "set", "br0", "up"])?;
        let nodes = [
            ("kube-node1", "172.17.42.31", "10.255.0.1", "172.17.42.32"),
            ("kube-node2", "172.17.42.32", "10.255.0.2", "172.17.42.31"),
        ];
        let mut routers = Vec::new();
        for (name, ip, tun_ip, remote) in nodes {
            let r = self.ns(format!("ifl-{prefix}-{name}"))?;
            let ul_name = self.namespaces[ul].name().to_string();
            let ns = &self.namespaces[r];
            ns.sysctl("net.ipv4.ip_forward", "1")?;
            ns.ip(&[
                "link", "add", "eth0", "type", "veth", "peer", "name", name, "netns", &ul_name,
            ])?;
            self.namespaces[ul].ip(&["link", "set", name, "master", "br0", "up"])?;
            let ns = &self.namespaces[r];
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            ns.ip(&[
                "link", "add", "vx0", "type", "vxlan", "id", "42", "local", ip, "remote", remote,
                "dstport", "4789", "dev", "eth0",
            ])?;
            ns.ip(&["addr", "add", &format!("{tun_ip}/30"), "dev", "vx0"])?;
            ns.ip(&["link", "set", "vx0", "up"])?;
            routers.push((name, r));
        }
        let mtu = POD_MTU.to_string();
        for spec in POD_SPECS {
            let r = routers
                .iter()
                .find(|(n, _)| *n == spec.node)
                .map(|(_, r)| *r)
                .context("pod on an unknown node")?;
            let bridge = format!("br-{}", &spec.switch[spec.switch.len() - 1..]);
            let rns = &self.namespaces[r];
            if rns.ip(&["link", "show", "dev", &bridge]).is_err() {
                rns.ip(&["link", "add", &bridge, "type", "bridge"])?;
                rns.ip(&[
                    "addr",
                    "add",
                    &format!("{}/24", gateway(spec.switch)),
                    "dev",
                    &bridge,
                ])?;
                rns.ip(&["link", "set", &bridge, "up"])?;
            }
            let rname = rns.name().to_string();
            let p = self.ns(format!("ifl-{prefix}-{}", spec.lsp))?;
            let pns = &self.namespaces[p];
            pns.ip(&[
                "link", "add", "eth0", "type", "veth", "peer", "name", spec.lsp, "netns", &rname,
            ])?;
            pns.ip(&[
                "link", "set", "eth0", "address", spec.mac, "mtu", &mtu, "up",
            ])?;
            pns.ip(&["addr", "add", &format!("{}/24", spec.ip), "dev", "eth0"])?;
            pns.ip(&[
                "route",
                "add",
                "default",
                "via",
                &gateway(spec.switch).to_string(),
            ])?;
            let pname = pns.name().to_string();
            let rns = &self.namespaces[r];
            rns.ip(&[
                "link", "set", spec.lsp, "master", &bridge, "mtu", &mtu, "up",
            ])?;
            self.pods.push((spec.lsp, pname));
        }
        // Each node routes the other node's pods through the tunnel: the
        // same /24 lives on both nodes, so the remote pods are /32s.
        for spec in POD_SPECS {
            for (name, r) in &routers {
                if *name != spec.node {
                    let via = if *name == "kube-node1" {
                        "10.255.0.2"
                    } else {
                        "10.255.0.1"
                    };
                    self.namespaces[*r].ip(&[
                        "route",
                        "add",
                        &format!("{}/32", spec.ip),
                        "via",
                        via,
                        "dev",
                        "vx0",
                    ])?;
                }
            }
        }
        Ok(())
    }

    fn pod_ns(&self, lsp: &str) -> Result<&str> {
        self.pods
            .iter()
            .find(|(n, _)| *n == lsp)
            .map(|(_, ns)| ns.as_str())
            .with_context(|| format!("no pod {lsp} in the kernel lab"))
    }
}

impl Testbed for KernelLab {
    fn endpoints(&self, pair: Pair) -> Result<Endpoints> {
        let (src, dst) = pair.pods();
        let ip = POD_SPECS
            .iter()
            .find(|p| p.lsp == dst)
            .map(|p| p.ip)
            .context("no such pod")?;
        Ok(Endpoints {
            src_ns: self.pod_ns(src)?.to_string(),
            dst_ns: self.pod_ns(dst)?.to_string(),
            dst_ip: ip,
        })
    }

    /// The kernel forwards in softirq context on whatever CPU the packet
    /// arrived: no process to charge it to.
    fn datapath_pids(&self) -> Vec<i32> {
        Vec::new()
    }
}
