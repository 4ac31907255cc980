//! What the datapath runs at one moment: the compiled program, the
//! logical network it came from, which chassis this is, which datapath
//! ports are bound to which logical ports, and how to reach the other
//! chassis. Control builds a new one on every change and publishes it;
//! workers pick it up between batches and flush their caches.

use crate::flow::{slots, FlowKey};
use crate::port::PortId;
use ironflow_pipeline::interp::Entry;
use ironflow_pipeline::program::{compile, Program};
use ironflow_pipeline::{LogicalNetwork, Uuid};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The `in_port` of packets that arrived in a tunnel (after decapsulation
/// their flow key carries the tunnel metadata instead).
pub const TUNNEL_IN_PORT: PortId = u32::MAX - 1;

/// A datapath port bound to a logical port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub logical_port: String,
    pub datapath: Uuid,
    pub datapath_key: u32,
    pub port_key: u32,
}

/// The underlay: where Geneve packets leave from and who is at the far end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// The datapath port facing the underlay network.
    pub port: PortId,
    /// This chassis's encap IP (the outer source).
    pub local_ip: Ipv4Addr,
    pub local_mac: [u8; 6],
    /// The MAC outer frames are sent to (the next hop, or the peer itself
    /// on a flat underlay), per remote encap IP.
    pub next_hop_macs: HashMap<Ipv4Addr, [u8; 6]>,
    /// Remote chassis name → its encap IP (the SB's Chassis/Encap rows).
    pub chassis_ips: HashMap<String, Ipv4Addr>,
}

/// One published state of the datapath.
pub struct Config {
    pub generation: u64,
    pub chassis: String,
    pub net: Arc<LogicalNetwork>,
    pub program: Arc<Program>,
    pub bindings: HashMap<PortId, Binding>,
    /// (datapath key, port key) → datapath port, for output.
    pub outputs: HashMap<(u32, u32), PortId>,
    pub underlay: Option<Underlay>,
    /// Datapath tunnel key → datapath (for packets from tunnels).
    pub datapaths_by_key: HashMap<u32, Uuid>,
}

/// A mistake in what a caller asked the datapath to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    NoSuchLogicalPort(String),
    PortInUse(PortId),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NoSuchLogicalPort(name) => write!(
                f,
                "no logical port \"{name}\" in the Southbound database (check the iface-id)"
            ),
            ConfigError::PortInUse(id) => write!(f, "datapath port {id} is already bound"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The state for `chassis` running `net`, compiled here.
    pub fn new(net: LogicalNetwork, chassis: &str) -> Config {
        let program = compile(&net);
        Config::with_program(Arc::new(net), Arc::new(program), chassis)
    }

    /// The same with a program compiled already.
    pub fn with_program(net: Arc<LogicalNetwork>, program: Arc<Program>, chassis: &str) -> Config {
        let datapaths_by_key = net
            .datapaths
            .values()
            .map(|d| (d.tunnel_key, d.uuid))
            .collect();
        Config {
            generation: 0,
            chassis: chassis.to_string(),
            net,
            program,
            bindings: HashMap::new(),
            outputs: HashMap::new(),
            underlay: None,
            datapaths_by_key,
        }
    }

    /// Binds datapath port `port` to the logical port named `logical_port`.
    pub fn bind(&mut self, port: PortId, logical_port: &str) -> Result<(), ConfigError> {
        if self.bindings.contains_key(&port) {
            return Err(ConfigError::PortInUse(port));
        }
        let lp = self
            .net
            .ports
            .get(logical_port)
            .ok_or_else(|| ConfigError::NoSuchLogicalPort(logical_port.to_string()))?;
        let datapath_key = self
            .net
            .datapaths
            .get(&lp.datapath)
            .map_or(0, |d| d.tunnel_key);
        let datapath = lp.datapath;
        let port_key = lp.tunnel_key;
        // Claimed here, as the Port_Binding's chassis column will say once
        // control has written it.
        if lp.chassis.as_deref() != Some(self.chassis.as_str()) {
            let chassis = self.chassis.clone();
            if let Some(lp) = Arc::make_mut(&mut self.net).ports.get_mut(logical_port) {
                lp.chassis = Some(chassis);
            }
        }
        self.outputs.insert((datapath_key, port_key), port);
        self.bindings.insert(
            port,
            Binding {
                logical_port: logical_port.to_string(),
                datapath,
                datapath_key,
                port_key,
            },
        );
        Ok(())
    }

    /// Removes a binding; false if there was none.
    pub fn unbind(&mut self, port: PortId) -> bool {
        match self.bindings.remove(&port) {
            Some(b) => {
                self.outputs.remove(&(b.datapath_key, b.port_key));
                true
            }
            None => false,
        }
    }

    /// Where a packet with flow key `key` entered the logical network, as
    /// the slow path names it: a bound port's ingress, or a tunnel's
    /// datapath and ports.
    pub fn entry(&self, key: &FlowKey) -> Option<Entry> {
        if key.in_port() == TUNNEL_IN_PORT {
            let vni = key.get(slots::TUN_VNI) as u32;
            let opt = key.get(slots::TUN_OPT) as u32;
            return Some(Entry::Tunnel {
                datapath: *self.datapaths_by_key.get(&vni)?,
                inport: opt >> 16,
                outport: opt & 0xffff,
            });
        }
        let b = self.bindings.get(&key.in_port())?;
        Some(Entry::Port {
            datapath: b.datapath,
            inport: b.port_key,
        })
    }

    /// Which chassis an encap IP belongs to.
    pub fn chassis_at(&self, ip: Ipv4Addr) -> Option<&str> {
        let u = self.underlay.as_ref()?;
        u.chassis_ips
            .iter()
            .find(|(_, a)| **a == ip)
            .map(|(c, _)| c.as_str())
    }
}
