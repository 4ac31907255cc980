//! Executable datapath actions: a slow-path translation made concrete for
//! this datapath (logical ports resolved to datapath ports, chassis to
//! tunnel endpoints, frozen states to recirculation ids), as a megaflow
//! stores it.

use crate::config::Config;
use crate::engine::Engine;
use crate::port::PortId;
use ironflow_pipeline::dpaction::{CtAction, DpAction};
use ironflow_pipeline::interp::Translation;
use ironflow_pipeline::lflow::symbols::KeyField;
use ironflow_tunnel::geneve::{EncapParams, HeaderTemplate, OvnMetadata};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Where a Geneve packet goes and what its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    pub port: PortId,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub vni: u32,
    pub inport_key: u32,
    pub outport_key: u32,
}

/// A tunnel output: where to, and its outer headers built once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelOut {
    pub encap: Encap,
    pub template: HeaderTemplate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exec {
    Set(KeyField, u128),
    DecTtl,
    Output(PortId),
    /// Shared: a trail's copy of the actions costs a count, not a copy.
    Tunnel(Arc<TunnelOut>),
    Ct(Box<CtAction>),
    CtClear,
    Recirc(u32),
    Controller,
}

/// Why a translated action could not be made concrete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// Output to a logical port bound here but not attached.
    NoPort,
    /// A tunnel to a chassis with no known encap IP, or no underlay.
    NoTunnel,
}

/// A megaflow's actions.
#[derive(Debug, Clone)]
pub struct Flow {
    pub actions: Box<[Exec]>,
    /// When the last action sends the packet away, it can take it rather
    /// than a copy.
    pub last_consumes: bool,
    /// The packet's key at the start of this pass must be kept: the pass
    /// recirculates (a miss later replays it) or goes to the controller.
    pub keeps_key: bool,
    /// Why the packet is dropped, when nothing sends it anywhere.
    pub drop_reason: Option<Arc<str>>,
    /// Actions left out because they could not be resolved.
    pub unresolved: Option<Unresolved>,
}

impl Flow {
    /// Makes a translation concrete under `config`.
    pub fn install(t: Translation, config: &Config, engine: &Engine) -> Flow {
        let mut unresolved = None;
        let mut actions: Vec<Exec> = Vec::with_capacity(t.actions.len() + 1);
        if t.controller {
            actions.push(Exec::Controller);
        } else {
            for a in t.actions {
                match a {
                    DpAction::Set { field, value } => actions.push(Exec::Set(field, value)),
                    DpAction::DecTtl => actions.push(Exec::DecTtl),
                    DpAction::Output {
                        datapath_key,
                        port_key,
                    } => match config.outputs.get(&(datapath_key, port_key)) {
                        Some(&port) => actions.push(Exec::Output(port)),
                        None => unresolved = Some(Unresolved::NoPort),
                    },
                    DpAction::Tunnel(t) => match tunnel(config, &t.chassis) {
                        Some(mut e) => {
                            e.vni = t.datapath_key;
                            e.inport_key = t.inport_key;
                            e.outport_key = t.outport_key;
                            let template = HeaderTemplate::new(&EncapParams {
                                src_mac: e.src_mac,
                                dst_mac: e.dst_mac,
                                src_ip: e.src_ip,
                                dst_ip: e.dst_ip,
                                ttl: 64,
                                src_port: 0,
                                meta: OvnMetadata {
                                    vni: e.vni,
                                    inport_key: e.inport_key,
                                    outport_key: e.outport_key,
                                },
                            });
                            actions.push(Exec::Tunnel(Arc::new(TunnelOut { encap: e, template })));
                        }
                        None => unresolved = Some(Unresolved::NoTunnel),
                    },
                    DpAction::Ct(ct) => actions.push(Exec::Ct(Box::new(ct))),
                    DpAction::CtClear => actions.push(Exec::CtClear),
                    DpAction::Recirc(id) => actions.push(Exec::Recirc(id)),
                    DpAction::Controller => actions.push(Exec::Controller),
                }
            }
            if let Some(state) = t.freeze {
                actions.push(Exec::Recirc(engine.recirc_id(config.generation, state)));
            }
        }
        let last_consumes = matches!(actions.last(), Some(Exec::Output(_) | Exec::Tunnel(_)));
        let sends = actions.iter().any(|a| {
            matches!(
                a,
                Exec::Output(_) | Exec::Tunnel(_) | Exec::Recirc(_) | Exec::Controller
            )
        });
        let drop_reason = if sends {
            None
        } else {
            Some(
                t.drop_reason
                    .map(Arc::from)
                    .or_else(|| match unresolved {
                        Some(Unresolved::NoPort) => Some("output port not attached".into()),
                        Some(Unresolved::NoTunnel) => {
                            Some("no tunnel to the destination chassis".into())
                        }
                        None => None,
                    })
                    .unwrap_or_else(|| "no output".into()),
            )
        };
        let keeps_key = actions
            .iter()
            .any(|a| matches!(a, Exec::Recirc(_) | Exec::Controller));
        Flow {
            actions: actions.into_boxed_slice(),
            last_consumes,
            keeps_key,
            drop_reason,
            unresolved,
        }
    }
}

impl Flow {
    /// The zone of the first conntrack trip, if the actions take one
    /// before they recirculate.
    #[inline]
    pub fn first_ct_zone(&self) -> Option<u16> {
        self.actions.iter().find_map(|a| match a {
            Exec::Ct(ct) => Some(Some(ct.zone)),
            Exec::Recirc(_) | Exec::Controller => Some(None),
            _ => None,
        })?
    }
}

/// The encapsulation towards `chassis`, less the per-packet OVN metadata.
fn tunnel(config: &Config, chassis: &str) -> Option<Encap> {
    let u = config.underlay.as_ref()?;
    let dst_ip = *u.chassis_ips.get(chassis)?;
    let dst_mac = *u.next_hop_macs.get(&dst_ip)?;
    Some(Encap {
        port: u.port,
        src_mac: u.local_mac,
        dst_mac,
        src_ip: u.local_ip,
        dst_ip,
        vni: 0,
        inport_key: 0,
        outport_key: 0,
    })
}
