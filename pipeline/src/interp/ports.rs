//! The interpreter's physical stages: where a logical port is, multicast
//! expansion into egress, leaving through patch ports or tunnels, and the
//! port-bound lookups (MAC bindings, port security) that flows call.

use super::*;
use crate::dpaction::TunnelOutput;

impl<'a> Interp<'a> {
    pub(super) fn port_key(&self, dp: Uuid, name: &str) -> u32 {
        self.net
            .ports
            .get(name)
            .filter(|p| p.datapath == dp)
            .map(|p| p.tunnel_key)
            .or_else(|| {
                self.net
                    .multicast_groups
                    .values()
                    .find(|g| g.datapath == dp && g.name == name)
                    .map(|g| g.tunnel_key)
            })
            .unwrap_or(0)
    }

    /// The MAC a MAC_Binding (or Static_MAC_Binding) gives `ip` on a port.
    pub(super) fn mac_binding(&self, dp: Uuid, port_key: u32, ip: u128) -> Option<u128> {
        let port = self.port(dp, port_key)?;
        let ip_matches = |text: &str| parse_ip(text).is_some_and(|v| v == ip);
        let dynamic = self
            .net
            .mac_bindings
            .iter()
            .find(|b| b.logical_port == port.name && ip_matches(&b.ip))
            .map(|b| &b.mac);
        let fixed = self
            .net
            .static_mac_bindings
            .iter()
            .find(|b| b.logical_port == port.name && ip_matches(&b.ip))
            .map(|b| &b.mac);
        fixed.or(dynamic).and_then(|m| parse_mac(m))
    }

    /// Port security of `inport` (`ingress`) or `outport`, as northd asks
    /// for it: true when the packet violates it. A port may send from its
    /// MACs and addresses (and DHCP from 0.0.0.0, IPv6 from link-local or
    /// ::); it may receive for its addresses and broadcast/multicast.
    ///
    /// Also says which key slots the answer depended on.
    pub(super) fn violates_port_security(
        &self,
        pkt: &Packet,
        ingress: bool,
    ) -> (bool, Vec<KeyField>) {
        let violates = self.check_port_security(pkt, ingress);
        let port = if ingress {
            KeyField::InPort
        } else {
            KeyField::OutPort
        };
        let secured = self
            .port(pkt.dp, pkt.key[port.index()] as u32)
            .is_some_and(|p| !p.port_security.is_empty());
        if !secured {
            return (violates, Vec::new());
        }
        let k = |f: KeyField| pkt.key[f.index()];
        let eth_type = k(KeyField::EthType);
        let mut read = vec![KeyField::EthType];
        match (ingress, eth_type) {
            (true, 0x800) => {
                read.extend([KeyField::EthSrc, KeyField::Nw4Src]);
                // A DHCP request from 0.0.0.0 is judged by where it goes.
                if k(KeyField::Nw4Src) == 0 {
                    read.extend([
                        KeyField::Nw4Dst,
                        KeyField::IpProto,
                        KeyField::TpSrc,
                        KeyField::TpDst,
                    ]);
                }
            }
            (true, 0x806) => read.extend([KeyField::EthSrc, KeyField::ArpSha, KeyField::Nw4Src]),
            (true, 0x86dd) => read.extend([KeyField::EthSrc, KeyField::Ip6Src]),
            (true, _) => read.push(KeyField::EthSrc),
            (false, 0x800) => read.extend([KeyField::EthDst, KeyField::Nw4Dst]),
            (false, 0x86dd) => read.extend([KeyField::EthDst, KeyField::Ip6Dst]),
            (false, _) => read.push(KeyField::EthDst),
        }
        (violates, read)
    }

    fn check_port_security(&self, pkt: &Packet, ingress: bool) -> bool {
        let field = if ingress {
            KeyField::InPort
        } else {
            KeyField::OutPort
        };
        let key = pkt.key[field.index()] as u32;
        let Some(port) = self.port(pkt.dp, key) else {
            return false;
        };
        if port.port_security.is_empty() {
            return false;
        }
        let k = |f: KeyField| pkt.key[f.index()];
        let (mac, ip4, ip6) = if ingress {
            (
                k(KeyField::EthSrc),
                k(KeyField::Nw4Src),
                k(KeyField::Ip6Src),
            )
        } else {
            (
                k(KeyField::EthDst),
                k(KeyField::Nw4Dst),
                k(KeyField::Ip6Dst),
            )
        };
        let eth_type = k(KeyField::EthType);
        if !ingress && mac & (1 << 40) != 0 {
            return false;
        }
        let in_prefixes = |ip: u128, v6: bool, ps: &[(u128, u128, bool)]| {
            ps.iter()
                .any(|&(net, mask, is6)| is6 == v6 && ip & mask == net)
        };
        let subnet_broadcast = |ip: u128, ps: &[(u128, u128, bool)]| {
            ps.iter().any(|&(net, mask, is6)| {
                !is6 && mask != u128::from(u32::MAX) && ip == net | (!mask & u128::from(u32::MAX))
            })
        };
        let dhcp_discover =
            k(KeyField::IpProto) == 17 && k(KeyField::TpSrc) == 68 && k(KeyField::TpDst) == 67;
        !port.port_security.iter().any(|entry| {
            let mut words = entry.split_whitespace();
            let Some(allowed_mac) = words.next().and_then(parse_mac) else {
                return false;
            };
            if allowed_mac != mac {
                return false;
            }
            let ips: Vec<(u128, u128, bool)> = words.filter_map(parse_prefix).collect();
            let has = |v6: bool| ips.iter().any(|&(_, _, is6)| is6 == v6);
            match eth_type {
                0x800 if has(false) => {
                    in_prefixes(ip4, false, &ips)
                        || (ingress
                            && ip4 == 0
                            && k(KeyField::Nw4Dst) == 0xffff_ffff
                            && dhcp_discover)
                        || (!ingress
                            && (ip4 == 0xffff_ffff
                                || ip4 >> 28 == 0xe
                                || subnet_broadcast(ip4, &ips)))
                }
                0x806 if ingress && has(false) => {
                    k(KeyField::ArpSha) == mac && in_prefixes(k(KeyField::Nw4Src), false, &ips)
                }
                0x86dd if has(true) => {
                    let link_local = ip6 >> 118 == 0x3fa; // fe80::/10
                    in_prefixes(ip6, true, &ips)
                        || link_local
                        || (ingress && ip6 == 0)
                        || (!ingress && ip6 >> 120 == 0xff)
                }
                _ => true,
            }
        })
    }

    /// `output` in an ingress pipeline: into egress, once per member of a
    /// multicast group.
    pub(super) fn enter_egress(&mut self, pkt: &Packet, depth: usize) {
        let outport = pkt.key[KeyField::OutPort.index()] as u32;
        let inport = pkt.key[KeyField::InPort.index()] as u32;
        let Some(members) = self.program.groups.get(&(pkt.dp, outport)) else {
            // OVN's table 41: no output back to the input port unless the
            // pipeline allowed it, checked before egress clears the flags.
            if outport == inport && !loopback_allowed(&pkt.key) {
                self.drop(pkt, "output to the input port without flags.loopback");
                return;
            }
            match self.placement(pkt.dp, outport) {
                Placement::Local => self.egress(pkt, self.redirected(pkt.dp, outport), depth),
                Placement::Remote(chassis) => self.tunnel(pkt, outport, chassis),
                Placement::Unbound => self.drop(
                    pkt,
                    format!("port with tunnel key {outport} is not bound to a chassis"),
                ),
            }
            return;
        };
        // One copy per remote chassis, which delivers to its own members.
        let mut remote: Vec<String> = Vec::new();
        for (i, &member) in members.iter().enumerate() {
            if member == inport && !loopback_allowed(&pkt.key) {
                continue;
            }
            match self.placement(pkt.dp, member) {
                Placement::Local => {
                    let pushed = self.push_pending(members.as_ptr() as usize, 0, i, pkt);
                    self.egress(pkt, member, depth);
                    if pushed {
                        self.pop_pending();
                    }
                    if self.stopped() {
                        return;
                    }
                }
                Placement::Remote(chassis) if !remote.contains(&chassis) => remote.push(chassis),
                Placement::Remote(_) | Placement::Unbound => {}
            }
        }
        for chassis in remote {
            self.tunnel(pkt, outport, chassis);
        }
    }

    /// A packet from a tunnel: the sender ran the ingress pipeline, so it
    /// enters egress for the port, or each local member of the group.
    pub(super) fn tunnel_arrival(&mut self, pkt: &Packet, outport: u32) {
        match self.program.groups.get(&(pkt.dp, outport)) {
            Some(members) => {
                for (i, &member) in members.iter().enumerate() {
                    if matches!(self.placement(pkt.dp, member), Placement::Local) {
                        let pushed = self.push_pending(members.as_ptr() as usize, 0, i, pkt);
                        self.egress(pkt, member, 0);
                        if pushed {
                            self.pop_pending();
                        }
                        if self.stopped() {
                            return;
                        }
                    }
                }
            }
            None => match self.placement(pkt.dp, outport) {
                Placement::Local => self.egress(pkt, self.redirected(pkt.dp, outport), 0),
                _ => self.drop(
                    pkt,
                    format!("port with tunnel key {outport} is not on this chassis"),
                ),
            },
        }
    }

    /// Runs the egress pipeline for `outport`. It starts as a packet from a
    /// tunnel would: every register but the ports cleared, flags included
    /// (as ovn-trace does), so local and remote delivery agree.
    pub(super) fn egress(&mut self, pkt: &Packet, outport: u32, depth: usize) {
        let mut copy = self.fork(pkt);
        copy.fix(KeyField::OutPort, outport.into());
        for field in [
            KeyField::Xxreg(0),
            KeyField::Xxreg(1),
            KeyField::Xreg4,
            KeyField::Flags,
        ] {
            copy.fix(field, 0);
        }
        self.table(&mut copy, Pipeline::Egress, 0, depth + 1);
    }

    /// The port egress runs for when `outport` is output here: a
    /// chassisredirect port on its gateway chassis stands for its
    /// distributed gateway port (`options:distributed-port`), as
    /// ovn-controller maps it before the egress pipeline.
    fn redirected(&self, dp: Uuid, outport: u32) -> u32 {
        self.port(dp, outport)
            .filter(|p| p.port_type == PortType::ChassisRedirect)
            .and_then(|p| p.options.get("distributed-port"))
            .map(|name| self.port_key(dp, name))
            .filter(|&key| key != 0)
            .unwrap_or(outport)
    }

    /// Where the port (or group) with `key` on `dp` is.
    pub(super) fn placement(&self, dp: Uuid, key: u32) -> Placement {
        let (Some(local), Some(port)) = (self.chassis, self.port(dp, key)) else {
            return Placement::Local;
        };
        let bound_here = || match &port.chassis {
            Some(c) if c == local => Placement::Local,
            Some(c) => Placement::Remote(c.clone()),
            None => Placement::Unbound,
        };
        match port.port_type {
            PortType::Vif | PortType::Virtual | PortType::External | PortType::ChassisRedirect => {
                bound_here()
            }
            // Claimed by the gateway chassis once it runs; local until then.
            PortType::L3Gateway => match bound_here() {
                Placement::Unbound => Placement::Local,
                other => other,
            },
            _ => Placement::Local,
        }
    }

    /// Sends the packet to another chassis, which runs the egress pipeline.
    pub(super) fn tunnel(&mut self, pkt: &Packet, outport: u32, chassis: String) {
        let datapath_key = self
            .program
            .datapaths
            .get(&pkt.dp)
            .map_or(0, |d| d.tunnel_key);
        let inport_key = pkt.key[KeyField::InPort.index()] as u32;
        if !self.executing() {
            if let Some(rec) = &mut self.rec {
                if rec.active() && pkt.generated_by.is_none() {
                    rec.commit(&pkt.key, &pkt.prov);
                    rec.emit(DpAction::Tunnel(TunnelOutput {
                        chassis: chassis.into(),
                        datapath_key,
                        inport_key,
                        outport_key: outport,
                    }));
                }
                return;
            }
        }
        let name = self
            .port(pkt.dp, outport)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| {
                self.net
                    .multicast_groups
                    .values()
                    .find(|g| g.datapath == pkt.dp && g.tunnel_key == outport)
                    .map_or_else(|| outport.to_string(), |g| g.name.clone())
            });
        self.out.outputs.push(Output {
            port: name,
            datapath: self.dp_name(pkt.dp),
            generated_by: pkt.generated_by,
            key: pkt.key,
            tunnel: Some(Tunnel {
                chassis,
                datapath_key,
                inport_key,
                outport_key: outport,
            }),
            datapath_key,
            port_key: outport,
        });
    }

    /// `output` in an egress pipeline: out of the datapath.
    pub(super) fn leave(&mut self, pkt: &Packet, depth: usize) {
        let outport = pkt.key[KeyField::OutPort.index()] as u32;
        let Some(port) = self.port(pkt.dp, outport) else {
            self.drop(pkt, format!("no port with tunnel key {outport}"));
            return;
        };
        let peer = match port.port_type {
            PortType::Patch | PortType::L3Gateway => {
                port.peer().and_then(|p| self.net.ports.get(p))
            }
            _ => None,
        };
        match peer {
            Some(peer) => {
                // ovn-controller's patch: a fresh pipeline in the peer, with
                // the conntrack state forgotten.
                let mut next = self.fork(pkt);
                next.dp = peer.datapath;
                for field in [
                    KeyField::Xxreg(0),
                    KeyField::Xxreg(1),
                    KeyField::Xreg4,
                    KeyField::Flags,
                    KeyField::OutPort,
                    KeyField::CtState,
                    KeyField::CtMark,
                    KeyField::CtLabel,
                ] {
                    next.fix(field, 0);
                }
                next.fix(KeyField::InPort, peer.tunnel_key.into());
                if let Some(rec) = self.recording() {
                    rec.emit(DpAction::CtClear);
                }
                self.table(&mut next, Pipeline::Ingress, 0, depth + 1);
            }
            None => {
                let datapath_key = self
                    .program
                    .datapaths
                    .get(&pkt.dp)
                    .map_or(0, |d| d.tunnel_key);
                if !self.executing() {
                    if let Some(rec) = &mut self.rec {
                        if rec.active() && pkt.generated_by.is_none() {
                            rec.commit(&pkt.key, &pkt.prov);
                            rec.emit(DpAction::Output {
                                datapath_key,
                                port_key: outport,
                            });
                        }
                        return;
                    }
                }
                let datapath = self.dp_name(pkt.dp);
                self.out.outputs.push(Output {
                    port: port.name.clone(),
                    datapath,
                    generated_by: pkt.generated_by,
                    key: pkt.key,
                    tunnel: None,
                    datapath_key,
                    port_key: outport,
                });
            }
        }
    }
}
