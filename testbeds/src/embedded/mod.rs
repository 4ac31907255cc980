//! The embedded harness: ironflow nodes in the test's own process, no root
//! and no namespaces.
//!
//! A [`Lab`] holds a logical network (from a snapshot file or a live SB
//! read once), one or more nodes (chassis, each a datapath with a worker)
//! joined by an in-memory underlay that carries the real Geneve frames, and
//! pods: in-memory ports bound to logical ports, each played by a smoltcp
//! TCP/IP stack with the port's MAC and IP and a default route through its
//! logical router port. Everything runs on the test's thread, one
//! [`Lab::poll`] at a time, on a virtual clock, so a run repeats exactly.
//!
//! The README's example, run from the crate's folder:
//!
//! ```
//! use ironflow_testbeds::embedded::Lab;
//!
//! let mut lab = Lab::from_snapshot("../testdata/seed-snapshot.json")?;
//! lab.node("kube-node1")?;
//! lab.node("kube-node2")?;
//! let sshd = lab.pod("kube-node1", "sshd-2")?;
//! let web = lab.pod("kube-node2", "web-1")?;
//! let server = lab[sshd].tcp_listen(22)?;
//! let dst = lab[sshd].ip();
//! let client = lab[web].tcp_connect(dst, 22)?;
//! lab.run_until(|lab| lab[web].tcp_established(client), 1000)?;
//! lab[web].tcp_send(client, b"hello")?;
//! lab.run_until(|lab| lab[sshd].tcp_received(server) == b"hello", 1000)?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Configs: a node's config (compiled program, its bindings, the underlay
//! listing every other node) is rebuilt and republished with
//! `Engine::publish` at the next step after any node or pod is added, so
//! pods may be attached at any time; the Port_Binding `chassis` column of
//! each attached logical port names its node on every node, as the SB
//! would once the chassis claimed it.

mod node;
mod pod;
mod underlay;

pub use node::{Node, NodeStats, UNDERLAY_PORT};
pub use pod::{
    parse_ipv4_cidr, parse_mac, same_subnet, EchoReply, Pod, PodAddress, TcpHandle, UdpHandle,
    CAPTURE_DEPTH,
};
pub use underlay::{Segment, SegmentStats};

use anyhow::{anyhow, bail, Context, Result};
use ironflow_datapath::config::{Config, Underlay};
use ironflow_pipeline::network::{DatapathKind, PortType};
use ironflow_pipeline::program::compile;
use ironflow_pipeline::snapshot::Snapshot;
use ironflow_pipeline::LogicalNetwork;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

/// Virtual time one [`Lab::poll`] advances by.
pub const TICK_MS: i64 = 1;

/// Rounds of node steps and underlay carrying within one poll, bounding a
/// storm (a forwarding loop) to something a test still finishes.
const MAX_ROUNDS: usize = 64;

/// A pod of a lab, for `lab[id]` (an id from another lab indexes out of
/// bounds, as any index does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PodId(usize);

/// An in-process lab of ironflow nodes and pods.
pub struct Lab {
    net: LogicalNetwork,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    segment: Segment,
    /// Virtual milliseconds since the lab started.
    now_ms: i64,
    /// Configs must be rebuilt before the next step.
    dirty: bool,
}

impl Lab {
    /// A lab running `net`, with no node yet.
    pub fn new(net: LogicalNetwork) -> Lab {
        Lab {
            net,
            nodes: Vec::new(),
            pods: Vec::new(),
            segment: Segment::default(),
            now_ms: 0,
            dirty: true,
        }
    }

    /// A lab running the network of a file written by `ironflow sb dump`.
    pub fn from_snapshot(path: impl AsRef<Path>) -> Result<Lab> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read snapshot {}", path.display()))?;
        let snap = Snapshot::from_json(&text).with_context(|| path.display().to_string())?;
        Ok(Lab::new(snap.network))
    }

    /// A lab running what a live SB holds now (`unix:PATH` or
    /// `tcp:IP:PORT`, comma-separated for a cluster), read once. Not from
    /// inside a tokio runtime: use [`Lab::from_db_async`] there.
    pub fn from_db(remote: &str) -> Result<Lab> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a runtime to read the Southbound database")?;
        rt.block_on(Lab::from_db_async(remote))
    }

    /// [`Lab::from_db`] for async tests.
    pub async fn from_db_async(remote: &str) -> Result<Lab> {
        use ironflow_control::ovsdb::parse_remotes;
        use ironflow_control::sb::{read_once, FollowOptions};
        let remotes = parse_remotes(remote)?;
        let (net, _schema, _source) = read_once(&remotes, &FollowOptions::default())
            .await
            .with_context(|| format!("cannot read the Southbound database at {remote}"))?;
        Ok(Lab::new(net))
    }

    /// The logical network as the lab runs it (with the chassis of every
    /// attached pod filled in).
    pub fn network(&self) -> &LogicalNetwork {
        &self.net
    }

    /// Adds a chassis named `name`. The n-th node's underlay address is
    /// 10.99.0.n, its MAC 02:00:0a:63:00:n.
    pub fn node(&mut self, name: &str) -> Result<&mut Node> {
        if self.nodes.iter().any(|n| n.name == name) {
            bail!("the lab has a node {name} already");
        }
        let n = self.nodes.len() + 1;
        let Ok(n) = u8::try_from(n) else {
            bail!("a lab holds at most 255 nodes");
        };
        let (node, wire) = Node::new(name, Ipv4Addr::new(10, 99, 0, n), [2, 0, 10, 99, 0, n]);
        self.segment.attach(node.mac, wire);
        self.nodes.push(node);
        self.dirty = true;
        let last = self.nodes.len() - 1;
        Ok(&mut self.nodes[last])
    }

    /// Attaches logical port `logical_port` to node `node` as a pod with a
    /// TCP/IP stack, addressed from its Port_Binding: the MAC and IPv4 of
    /// its `mac` column, the prefix and default gateway of the logical
    /// router port on its switch (a switch with no router: /24, no
    /// gateway). Use [`Lab::pod_with`] to give the addressing yourself.
    pub fn pod(&mut self, node: &str, logical_port: &str) -> Result<PodId> {
        self.check_attachable(node, logical_port)?;
        let address = self.address_of(logical_port)?;
        self.pod_with(node, logical_port, address)
    }

    /// Attaches a pod addressed as the test says.
    pub fn pod_with(
        &mut self,
        node: &str,
        logical_port: &str,
        address: PodAddress,
    ) -> Result<PodId> {
        let now = self.now();
        let (node, peer) = self.attach(node, logical_port)?;
        let pod = Pod::new(logical_port, &node, address, peer, now)?;
        self.pods.push(pod);
        Ok(PodId(self.pods.len() - 1))
    }

    /// Attaches a pod with no stack: the test injects and reads frames
    /// itself ([`Pod::inject`], [`Pod::receive`]).
    pub fn raw_pod(&mut self, node: &str, logical_port: &str) -> Result<PodId> {
        let (node, peer) = self.attach(node, logical_port)?;
        self.pods.push(Pod::raw(logical_port, &node, peer));
        Ok(PodId(self.pods.len() - 1))
    }

    /// Refuses what cannot become a pod, before anything changes.
    fn check_attachable(&self, node: &str, logical_port: &str) -> Result<()> {
        let Some(lp) = self.net.ports.get(logical_port) else {
            bail!("no logical port \"{logical_port}\" in the Southbound database");
        };
        if !matches!(lp.port_type, PortType::Vif) {
            bail!(
                "logical port {logical_port} is of type \"{}\": only a VIF can be a pod",
                lp.port_type.as_str()
            );
        }
        if self.pods.iter().any(|p| p.name() == logical_port) {
            bail!("logical port {logical_port} is attached already");
        }
        if !self.nodes.iter().any(|n| n.name == node) {
            bail!("no node {node} in the lab (add it with lab.node)");
        }
        Ok(())
    }

    fn attach(
        &mut self,
        node: &str,
        logical_port: &str,
    ) -> Result<(String, ironflow_datapath::port::MemPeer)> {
        self.check_attachable(node, logical_port)?;
        let (Some(lp), Some(n)) = (
            self.net.ports.get_mut(logical_port),
            self.nodes.iter_mut().find(|n| n.name == node),
        ) else {
            bail!("no logical port {logical_port} or no node {node}");
        };
        lp.chassis = Some(node.to_string());
        let (_, peer) = n.attach(logical_port);
        self.dirty = true;
        Ok((node.to_string(), peer))
    }

    /// The addressing a pod on `logical_port` gets from the Port_Binding.
    pub fn address_of(&self, logical_port: &str) -> Result<PodAddress> {
        let lp = self.net.ports.get(logical_port).ok_or_else(|| {
            anyhow!("no logical port \"{logical_port}\" in the Southbound database")
        })?;
        let (mac, ip) = lp
            .mac
            .iter()
            .find_map(|entry| {
                let mut words = entry.split_whitespace();
                let mac = parse_mac(words.next()?)?;
                let ip = words.find_map(|w| parse_ipv4_cidr(w).map(|(ip, _)| ip))?;
                Some((mac, ip))
            })
            .ok_or_else(|| {
                anyhow!(
                    "logical port {logical_port} has no \"MAC IPv4\" in its mac column ({:?}): give the address with pod_with",
                    lp.mac
                )
            })?;
        let (prefix, gateway) = match self.gateway_of(logical_port, ip) {
            Some((gw, prefix)) => (prefix, Some(gw)),
            None => (24, None),
        };
        Ok(PodAddress {
            mac,
            ip,
            prefix,
            gateway,
        })
    }

    /// The router port on `logical_port`'s switch whose network holds
    /// `ip`: its address and prefix length. Found through the switch's
    /// patch ports, whose peers are router ports with "MAC IP/len" in their
    /// `mac` column.
    fn gateway_of(&self, logical_port: &str, ip: Ipv4Addr) -> Option<(Ipv4Addr, u8)> {
        let switch = self.net.ports.get(logical_port)?.datapath;
        self.net
            .ports
            .values()
            .filter(|p| p.datapath == switch && p.port_type == PortType::Patch)
            .filter_map(|p| self.net.ports.get(p.peer()?))
            .filter(|rp| {
                self.net
                    .datapaths
                    .get(&rp.datapath)
                    .is_some_and(|d| d.kind == DatapathKind::Router)
            })
            .flat_map(|rp| rp.mac.iter())
            .flat_map(|entry| entry.split_whitespace().skip(1))
            .filter_map(parse_ipv4_cidr)
            .find_map(|(gw, len)| {
                let len = len?;
                same_subnet(gw, ip, len).then_some((gw, len))
            })
    }

    /// A pod by logical port name.
    pub fn find_pod(&self, logical_port: &str) -> Option<PodId> {
        self.pods
            .iter()
            .position(|p| p.name() == logical_port)
            .map(PodId)
    }

    /// A node by chassis name.
    pub fn get_node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// What the underlay carried.
    pub fn underlay_stats(&self) -> SegmentStats {
        self.segment.stats()
    }

    /// Virtual time since the lab started, in milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_millis(self.now_ms)
    }

    /// Rebuilds and publishes every node's config if a node or pod came
    /// since the last time. [`Lab::poll`] does it first thing; call it to
    /// inspect engines before the first poll.
    pub fn sync(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let net = Arc::new(self.net.clone());
        let program = Arc::new(compile(&net));
        let peers: Vec<(String, Ipv4Addr, [u8; 6])> = self
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.ip, n.mac))
            .collect();
        for node in &mut self.nodes {
            let mut config = Config::with_program(net.clone(), program.clone(), &node.name);
            for (id, lsp) in &node.bindings {
                config
                    .bind(*id, lsp)
                    .with_context(|| format!("binding {lsp} on {}", node.name))?;
            }
            let others = peers.iter().filter(|(name, _, _)| *name != node.name);
            config.underlay = Some(Underlay {
                port: UNDERLAY_PORT,
                local_ip: node.ip,
                local_mac: node.mac,
                next_hop_macs: others.clone().map(|(_, ip, mac)| (*ip, *mac)).collect(),
                chassis_ips: others
                    .map(|(name, ip, _)| (name.clone(), *ip))
                    .collect::<HashMap<_, _>>(),
            });
            node.publish(config);
        }
        self.dirty = false;
        Ok(())
    }

    /// One step of the whole lab: every pod's stack runs, then nodes and
    /// the underlay pass frames along until nothing moves (bounded), then
    /// the virtual clock advances by [`TICK_MS`]. Returns whether anything
    /// moved.
    pub fn poll(&mut self) -> Result<bool> {
        self.sync()?;
        let now = self.now();
        let mut moved = false;
        for pod in &mut self.pods {
            moved |= pod.poll(now);
        }
        for _ in 0..MAX_ROUNDS {
            let mut n = 0;
            for node in &mut self.nodes {
                n += node.step();
            }
            n += self.segment.carry();
            if n == 0 {
                break;
            }
            moved = true;
        }
        // Deliveries of this step reach the stacks before time moves on, so
        // an answer can leave in the same tick.
        for pod in &mut self.pods {
            moved |= pod.poll(now);
        }
        self.now_ms += TICK_MS;
        Ok(moved)
    }

    /// Polls until `done` holds, at most `max_steps` times; returns the
    /// steps taken. The error says what every node dropped and why.
    pub fn run_until(
        &mut self,
        mut done: impl FnMut(&mut Lab) -> bool,
        max_steps: usize,
    ) -> Result<usize> {
        for step in 0..max_steps {
            if done(self) {
                return Ok(step);
            }
            self.poll()?;
        }
        if done(self) {
            return Ok(max_steps);
        }
        bail!(
            "condition not met after {max_steps} steps ({} ms virtual)\n{}",
            max_steps as i64 * TICK_MS,
            self.report()
        )
    }

    /// Polls `steps` times.
    pub fn run(&mut self, steps: usize) -> Result<()> {
        for _ in 0..steps {
            self.poll()?;
        }
        Ok(())
    }

    /// Per node: packets, drops by reason, punts; and the underlay's
    /// counters. What a failing test prints.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let w = n.worker_stats();
            let s = n.stats();
            out.push_str(&format!(
                "node {} ({}): {} packets, {} outputs, {} tunnelled, {} decapsulated, {} upcalls, {} punted, {} to no port; drops {:?}\n",
                n.name, n.ip, w.packets, w.outputs, w.tunnelled, w.decapsulated, w.upcalls,
                s.punted, s.no_such_port, w.drops
            ));
        }
        out.push_str(&format!("underlay: {:?}\n", self.segment.stats()));
        for p in &self.pods {
            let (sent, refused) = p.sent();
            out.push_str(&format!(
                "pod {} on {}: {} sent ({} refused), {} captured\n",
                p.name(),
                p.node(),
                sent,
                refused,
                p.captured().count()
            ));
        }
        out
    }
}

impl std::ops::Index<PodId> for Lab {
    type Output = Pod;
    fn index(&self, id: PodId) -> &Pod {
        &self.pods[id.0]
    }
}

impl std::ops::IndexMut<PodId> for Lab {
    fn index_mut(&mut self, id: PodId) -> &mut Pod {
        &mut self.pods[id.0]
    }
}
