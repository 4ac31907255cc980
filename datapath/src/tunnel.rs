//! The datapath's side of Geneve: encapsulating a packet bound for another
//! chassis, and vouching for one that arrives (a known chassis sent it, to
//! a datapath and ports that exist) before it reaches the pipelines.

use crate::config::Config;
use crate::exec::TunnelOut;
use crate::flow::{slots, FlowKey};
use crate::packet::Packet;
use ironflow_tunnel::geneve::{self, source_port, ENCAP_LEN};
use ironflow_tunnel::ovs_hash::{flow_hash_5tuple, FiveTuple, FlowAddrs};
use std::net::Ipv4Addr;

/// A Geneve packet this node accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub src: Ipv4Addr,
    pub vni: u32,
    pub inport_key: u32,
    pub outport_key: u32,
    pub inner_offset: usize,
}

/// Takes a frame from the underlay apart, or says why it is refused.
pub fn decap(frame: &[u8], config: &Config) -> Result<Arrival, &'static str> {
    let d = geneve::decap(frame).map_err(|e| e.as_str())?;
    vouch(&d, config)?;
    Ok(arrival(&d))
}

fn arrival(d: &geneve::Decapped) -> Arrival {
    Arrival {
        src: d.src_ip,
        vni: d.meta.vni,
        inport_key: d.meta.inport_key,
        outport_key: d.meta.outport_key,
        inner_offset: d.inner_offset,
    }
}

/// Whether `config` knows the sender, datapath and ports of `d`.
fn vouch(d: &geneve::Decapped, config: &Config) -> Result<(), &'static str> {
    if config.chassis_at(d.src_ip).is_none() {
        return Err("Geneve from an address that is no chassis's encap IP");
    }
    let Some(&datapath) = config.datapaths_by_key.get(&d.meta.vni) else {
        return Err("Geneve VNI that is no datapath's tunnel key");
    };
    let program = &config.program;
    let out = d.meta.outport_key;
    if !program.ports.contains_key(&(datapath, out))
        && !program.groups.contains_key(&(datapath, out))
    {
        return Err("Geneve egress key that is no port or group of the datapath");
    }
    if !program.ports.contains_key(&(datapath, d.meta.inport_key)) {
        return Err("Geneve ingress key that is no port of the datapath");
    }
    Ok(())
}

/// Entries in a [`Vouched`] (a power of two).
const VOUCHED: usize = 256;

/// The (sender, VNI, port keys) a worker has recently let in under one
/// config: checking them again costs four hash-map lookups a packet, most
/// of a decapsulation. Direct-mapped; only acceptances are remembered, so
/// a refused packet is always checked in full, and a new config forgets
/// everything.
pub struct Vouched {
    generation: u64,
    /// `1 << 127 | sender << 64 | VNI << 32 | ingress key << 16 | egress
    /// key` (0: empty).
    seen: Box<[u128]>,
}

impl Default for Vouched {
    fn default() -> Self {
        Vouched {
            generation: 0,
            seen: vec![0; VOUCHED].into_boxed_slice(),
        }
    }
}

impl Vouched {
    /// [`decap`], skipping the checks of what was let in before.
    #[inline]
    pub fn decap(&mut self, frame: &[u8], config: &Config) -> Result<Arrival, &'static str> {
        // Read in place: moving the result whole reads with wide loads
        // what the callee just wrote with narrow stores, and waits.
        let r = geneve::decap(frame);
        let d = match &r {
            Ok(d) => d,
            Err(e) => return Err(e.as_str()),
        };
        if self.generation != config.generation {
            self.seen.fill(0);
            self.generation = config.generation;
        }
        // Keys are 16 bits on the wire; more would not fit the tag.
        let (inport, outport) = (d.meta.inport_key, d.meta.outport_key);
        if (inport | outport) >> 16 != 0 || d.meta.vni >> 24 != 0 {
            vouch(d, config)?;
            return Ok(arrival(d));
        }
        let tag = 1 << 127
            | u128::from(u32::from(d.src_ip)) << 64
            | u128::from(d.meta.vni) << 32
            | u128::from(inport << 16 | outport);
        let h = (tag as u64 ^ (tag >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let at = (h >> 56) as usize & (VOUCHED - 1);
        if self.seen.get(at) != Some(&tag) {
            vouch(d, config)?;
            if let Some(e) = self.seen.get_mut(at) {
                *e = tag;
            }
        }
        Ok(arrival(d))
    }
}

/// The hash stock OVS gives a packet as it enters the datapath
/// (`flow_hash_5tuple` of its 5-tuple, see [`ironflow_tunnel::ovs_hash`]),
/// from `key` as extracted on arrival: before any rewrite or NAT, so that
/// a flow's Geneve source port is the one a stock chassis would pick.
/// Fields a packet lacks are zero in the key as in OVS's flow, so ARP
/// hashes its sender and target addresses with the opcode as protocol,
/// and other non-IP frames hash to a constant.
pub fn arrival_hash(key: &FlowKey) -> u32 {
    let addr4 = |s| (key.get(s) as u32).to_be_bytes();
    let (addrs, proto) = match key.eth_type() {
        0x0800 => (
            FlowAddrs::V4(addr4(slots::IP_SRC), addr4(slots::IP_DST)),
            key.ip_proto(),
        ),
        0x0806 | 0x8035 => (
            FlowAddrs::V4(addr4(slots::IP_SRC), addr4(slots::IP_DST)),
            key.get(slots::ARP_OP) as u8,
        ),
        0x86dd => (
            FlowAddrs::V6(
                key.get(slots::IP_SRC).to_be_bytes(),
                key.get(slots::IP_DST).to_be_bytes(),
            ),
            key.ip_proto(),
        ),
        _ => (FlowAddrs::Other, 0),
    };
    let tuple = FiveTuple {
        addrs,
        proto,
        tp_src: key.get(slots::TP_SRC) as u16,
        tp_dst: key.get(slots::TP_DST) as u16,
    };
    flow_hash_5tuple(&tuple, 0)
}

/// Pushes the outer headers in front of `pkt` (into its headroom), with
/// the source port for a packet whose [`arrival_hash`] is `hash`.
#[inline]
pub fn encap(pkt: &mut Packet, t: &TunnelOut, hash: u32) -> bool {
    if pkt.push_front(ENCAP_LEN).is_none() {
        return false;
    }
    let (hdr, inner) = pkt.data_mut().split_at_mut(ENCAP_LEN);
    t.template.write(hdr, inner, source_port(hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::extract;

    /// Ports stock OVS 3.1 put on the wire for web-1's packets to sshd-2
    /// (the vectors of `ironflow_tunnel::ovs_hash`), from keys extracted
    /// from such packets.
    #[test]
    fn arrival_hash_is_ovs_flow_hash_5tuple() {
        let (web, sshd) = ([192, 168, 3, 3], [192, 168, 2, 3]);
        let mut frame = vec![0u8; 14 + 20 + 20];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&40u16.to_be_bytes());
        frame[22] = 64;
        frame[26..30].copy_from_slice(&web);
        frame[30..34].copy_from_slice(&sshd);
        frame[46] = 0x50;
        for (proto, sport, dport, port) in [
            (6, 46962u16, 22u16, 55718u16),
            (6, 40000, 22, 51451),
            (17, 41968, 22, 36502),
        ] {
            frame[23] = proto;
            frame[34..36].copy_from_slice(&sport.to_be_bytes());
            frame[36..38].copy_from_slice(&dport.to_be_bytes());
            if proto == 17 {
                frame[38..40].copy_from_slice(&20u16.to_be_bytes());
            }
            let (key, _) = extract(&frame, 1);
            assert_eq!(source_port(arrival_hash(&key)), port, "{proto} {sport}");
            assert_eq!(
                arrival_hash(&key),
                ironflow_tunnel::ovs_hash::frame_hash(&frame)
            );
        }
        // An echo request: type and code where the ports are.
        frame[23] = 1;
        frame[34..38].copy_from_slice(&[8, 0, 0, 0]);
        let (key, _) = extract(&frame, 1);
        assert_eq!(source_port(arrival_hash(&key)), 55015);
    }
}
