//! A node of the embedded harness: one chassis's datapath (engine and a
//! single worker) with its in-memory ports, the pods' and the underlay's.
//!
//! The worker is run by the lab's thread, not a poll loop of its own, so a
//! lab is deterministic: each step drains every port in a fixed order and
//! puts what the worker sent on the ports it named.

use ironflow_control::daemon::pinctrl::Pinctrl;
use ironflow_datapath::config::Config;
use ironflow_datapath::conntrack::CtConfig;
use ironflow_datapath::engine::Engine;
use ironflow_datapath::packet::PacketBatch;
use ironflow_datapath::port::{MemPeer, MemPort, Port, PortId, MEM_QUEUE};
use ironflow_datapath::worker::{Worker, WorkerStats};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The datapath port every node's underlay is on; pods are numbered from 1.
pub const UNDERLAY_PORT: PortId = 1 << 16;

/// Punted frames kept per node before the oldest go.
const PUNT_DEPTH: usize = 256;

/// What a node's ports did that its worker does not count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Packets taken from the node's ports.
    pub received: u64,
    /// Packets put on a port.
    pub sent: u64,
    /// Packets for the controller: carried out by ironflow's controller
    /// side (answers, ICMP errors, ARP requests…) and kept in
    /// [`Node::punts`] for tests to look at. What it learns (MAC
    /// bindings) goes nowhere: the lab has no SB to write.
    pub punted: u64,
    /// Outputs to a datapath port the node does not have.
    pub no_such_port: u64,
}

/// One chassis.
pub struct Node {
    pub(crate) name: String,
    pub(crate) ip: Ipv4Addr,
    pub(crate) mac: [u8; 6],
    /// Datapath port → logical port, in the order they were attached.
    pub(crate) bindings: Vec<(PortId, String)>,
    ports: Vec<(PortId, MemPort)>,
    next_port: PortId,
    engine: Option<Arc<Engine>>,
    worker: Option<Worker>,
    pinctrl: Pinctrl,
    punts: VecDeque<Vec<u8>>,
    stats: NodeStats,
}

impl Node {
    /// A node with its underlay port; the far end goes on the segment.
    pub(crate) fn new(name: &str, ip: Ipv4Addr, mac: [u8; 6]) -> (Node, MemPeer) {
        let (underlay, wire) = MemPort::pair(&format!("{name}-underlay"), MEM_QUEUE);
        let node = Node {
            name: name.to_string(),
            ip,
            mac,
            bindings: Vec::new(),
            ports: vec![(UNDERLAY_PORT, underlay)],
            next_port: 1,
            engine: None,
            worker: None,
            // The receiving end is dropped: learned bindings are let go.
            pinctrl: Pinctrl::new(tokio::sync::mpsc::unbounded_channel().0),
            punts: VecDeque::new(),
            stats: NodeStats::default(),
        };
        (node, wire)
    }

    /// Adds a port for `logical_port`; the peer is the pod's end. The
    /// binding takes effect with the next config.
    pub(crate) fn attach(&mut self, logical_port: &str) -> (PortId, MemPeer) {
        let id = self.next_port;
        self.next_port += 1;
        let (port, peer) = MemPort::pair(logical_port, MEM_QUEUE);
        self.ports.push((id, port));
        self.bindings.push((id, logical_port.to_string()));
        (id, peer)
    }

    /// Puts `config` in force: the first one starts the engine and worker,
    /// later ones are published (the worker flushes its caches).
    pub(crate) fn publish(&mut self, config: Config) {
        match &self.engine {
            Some(engine) => engine.publish(config),
            None => {
                let engine = Engine::new(config, CtConfig::default());
                self.worker = Some(Worker::new(engine.clone()));
                self.engine = Some(engine);
            }
        }
    }

    /// Drains every port once through the worker; returns how many packets
    /// it took in.
    pub(crate) fn step(&mut self) -> usize {
        let (Some(worker), Some(engine)) = (&mut self.worker, &self.engine) else {
            return 0;
        };
        let mut moved = 0;
        let mut batch = PacketBatch::new();
        for i in 0..self.ports.len() {
            loop {
                let (id, port) = &mut self.ports[i];
                let id = *id;
                let n = port.recv(&mut worker.pool, &mut batch).unwrap_or(0);
                if n == 0 {
                    break;
                }
                moved += n;
                self.stats.received += n as u64;
                worker.process_batch(id, &mut batch);
                // Whatever a worker leaves in a batch is not ours to keep.
                worker.pool.free_batch(&mut batch);
                let mut sent = worker.take_tx();
                for punt in worker.punted.drain(..) {
                    self.stats.punted += 1;
                    if self.punts.len() >= PUNT_DEPTH {
                        self.punts.pop_front();
                    }
                    self.punts.push_back(punt.packet.data().to_vec());
                    self.pinctrl
                        .handle(engine, &mut worker.pool, punt, &mut sent);
                }
                for (out, pkt) in sent {
                    match self.ports.iter_mut().find(|(p, _)| *p == out) {
                        Some((_, port)) => {
                            let mut one = PacketBatch::new();
                            // A fresh batch always has room for one.
                            let _ = one.push(pkt);
                            self.stats.sent +=
                                port.send(&mut worker.pool, &mut one).unwrap_or(0) as u64;
                        }
                        None => {
                            self.stats.no_such_port += 1;
                            worker.pool.free(pkt);
                        }
                    }
                }
            }
        }
        moved
    }

    /// The chassis name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its underlay (encap) IP.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Its underlay MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The engine, once the node has a config (after the lab's first step).
    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.as_ref()
    }

    /// The worker's counters (drops by reason, upcalls, tunnelled, …).
    pub fn worker_stats(&self) -> WorkerStats {
        self.worker.as_ref().map(Worker::stats).unwrap_or_default()
    }

    /// The worker itself, e.g. to dump its megaflows.
    pub fn worker(&self) -> Option<&Worker> {
        self.worker.as_ref()
    }

    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Frames the datapath handed to the controller, oldest first.
    pub fn punts(&self) -> impl Iterator<Item = &[u8]> {
        self.punts.iter().map(Vec::as_slice)
    }
}
