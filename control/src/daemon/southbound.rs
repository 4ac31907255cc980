//! What the node keeps true in the Southbound beyond its ports: its own
//! chassis rows, the gateway ports it should hold, and the MAC bindings
//! its controller side learned.

use super::ports::Ports;
use super::Node;
use crate::chassis::{claim, claim_gateway, put_mac_binding, register};
use ironflow_pipeline::interp::Learned;
use ironflow_pipeline::network::PortType;
use ironflow_pipeline::LogicalNetwork;
use std::net::Ipv4Addr;
use tracing::{info, warn};

impl Node<'_> {
    /// Puts the chassis back when its rows are gone from the SB (an
    /// operator's `ovn-sbctl chassis-del`, a restored database) or its
    /// encap no longer says what this node runs, and claims the ports
    /// again, as ovn-controller does.
    pub(super) async fn keep_registered(&self, ports: &Ports, net: &LogicalNetwork) {
        let me = &self.chassis.name;
        let ip = self.chassis.encap_ip.to_string();
        let current = net.chassis.get(me).is_some_and(|c| {
            c.encaps
                .iter()
                .any(|e| e.encap_type == self.chassis.encap_type && e.ip == ip)
        });
        if current {
            return;
        }
        warn!("chassis {me} is missing or changed in the Southbound: registering it again");
        if let Err(e) = register(self.client, self.chassis).await {
            warn!("cannot register the chassis again: {e}");
            return;
        }
        for a in &ports.list {
            if let Err(e) = claim(self.client, &a.iface_id, me).await {
                warn!("cannot claim {}: {e}", a.iface_id);
            }
        }
    }

    /// Claims the gateway ports this chassis should have and the SB does
    /// not show here yet: a gateway router's (`options:l3gateway-chassis`
    /// names this chassis), and a distributed gateway port's
    /// chassisredirect port when this chassis is the highest-priority
    /// registered member of its HA_Chassis_Group (ovn-controller also
    /// drops members BFD finds dead; ironflow has no BFD yet).
    pub(super) async fn claim_gateways(&self, net: &LogicalNetwork) {
        let me = self.chassis.name.as_str();
        for p in net.ports.values() {
            let ours = match p.port_type {
                PortType::L3Gateway => {
                    p.options.get("l3gateway-chassis").map(String::as_str) == Some(me)
                }
                PortType::ChassisRedirect => p
                    .ha_chassis
                    .iter()
                    .find(|h| net.chassis.contains_key(&h.chassis))
                    .is_some_and(|h| h.chassis == me),
                _ => false,
            };
            if !ours || p.chassis.as_deref() == Some(me) {
                continue;
            }
            match claim_gateway(self.client, &p.name, me).await {
                Ok(()) => info!("claimed gateway port {}", p.name),
                Err(e) => warn!("cannot claim gateway port {}: {e}", p.name),
            }
        }
    }

    /// Writes a MAC binding `put_arp`/`put_nd` learned, unless the SB
    /// has it already.
    pub(super) async fn learn(&mut self, l: Learned, net: &LogicalNetwork) {
        let Learned::MacBinding {
            datapath,
            logical_port,
            ip,
            ipv6,
            mac,
        } = l;
        let ip = if ipv6 {
            std::net::Ipv6Addr::from(ip).to_string()
        } else {
            Ipv4Addr::from(ip as u32).to_string()
        };
        let b = (mac as u64).to_be_bytes();
        let mac = format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[2], b[3], b[4], b[5], b[6], b[7]
        );
        let known = net.mac_bindings.iter().any(|m| {
            m.logical_port == logical_port && m.ip == ip && m.mac.eq_ignore_ascii_case(&mac)
        });
        if known {
            return;
        }
        match put_mac_binding(self.client, &logical_port, &ip, &mac, &datapath.to_string()).await {
            Ok(()) => info!("learned {ip} at {mac} on {logical_port}"),
            Err(e) => warn!("cannot write the MAC binding {ip} {mac} on {logical_port}: {e}"),
        }
    }
}
