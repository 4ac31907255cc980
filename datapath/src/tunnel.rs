//! The datapath's side of Geneve: encapsulating a packet bound for another
//! chassis, and vouching for one that arrives (a known chassis sent it, to
//! a datapath and ports that exist) before it reaches the pipelines.

use crate::config::Config;
use crate::exec::TunnelOut;
use crate::flow::{slots, FlowKey};
use crate::packet::Packet;
use ironflow_tunnel::geneve::{self, source_port, ENCAP_LEN};
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
    Ok(Arrival {
        src: d.src_ip,
        vni: d.meta.vni,
        inport_key: d.meta.inport_key,
        outport_key: out,
        inner_offset: d.inner_offset,
    })
}

/// The flow hash OVS spreads tunnel source ports by: the inner 5-tuple.
fn flow_hash(key: &FlowKey) -> u32 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for v in [
        key.get(slots::IP_SRC) as u64,
        key.get(slots::IP_DST) as u64,
        key.get(slots::IP_PROTO) as u64,
        key.get(slots::TP_SRC) as u64 | (key.get(slots::TP_DST) as u64) << 16,
    ] {
        h = (h ^ v).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 32;
    }
    h as u32
}

/// Pushes the outer headers in front of `pkt` (into its headroom).
pub fn encap(pkt: &mut Packet, t: &TunnelOut, key: &FlowKey) -> bool {
    if pkt.push_front(ENCAP_LEN).is_none() {
        return false;
    }
    let (hdr, inner) = pkt.data_mut().split_at_mut(ENCAP_LEN);
    t.template.write(hdr, inner, source_port(flow_hash(key)))
}
