//! The slow-path interpreter: runs a packet through the compiled logical
//! pipelines the way ovn-controller's OpenFlow tables would.
//!
//! `next` is a resubmit: the packet's changes in later tables persist when
//! it returns. `output` in an ingress pipeline enters the egress pipeline
//! (once per member for a multicast group, skipping the input port unless
//! `flags.loopback`); in an egress pipeline it leaves the datapath — through
//! a patch port into the peer datapath's ingress with registers, flags and
//! conntrack state cleared, or out of a port. Conntrack actions recirculate
//! to the next table with the state the [`Conntrack`] gives. Controller
//! blocks (`arp`, `icmp4`, `tcp_reset`, …) run on a generated packet, as
//! the man page describes it; what follows them applies to the original.
//!
//! Every table lookup ORs its masks into [`Outcome::consulted`]: the key
//! bits the decision depended on, which the fast path caches by.

use crate::classifier::{Key, ZERO_KEY};
use crate::lflow::actions::{Action, Actions, Args, Bare, Block, CtLb, Func, Nat, Source};
use crate::lflow::cursor::FieldRef;
use crate::lflow::lexer::{parse_mac, Format};
use crate::lflow::symbols::{lookup, ones, KeyField, Symbol};
use crate::network::{LogicalNetwork, LogicalPort, Pipeline, PortType};
use crate::program::{CompiledFlow, Program};
use crate::Uuid;
use std::sync::Arc;

mod ports;

/// `ct_state` bits (`man ovn-sb`, `ct.*`).
pub mod ct_state {
    pub const NEW: u32 = 1 << 0;
    pub const EST: u32 = 1 << 1;
    pub const REL: u32 = 1 << 2;
    pub const RPL: u32 = 1 << 3;
    pub const INV: u32 = 1 << 4;
    pub const TRK: u32 = 1 << 5;
    pub const SNAT: u32 = 1 << 6;
    pub const DNAT: u32 = 1 << 7;
}

/// Decides connection-tracking outcomes. The datapath has a real one;
/// `trace` a simulated one that answers what the user asked for.
pub trait Conntrack {
    /// The `ct_state` after a recirculation (`ct_next`, `ct_lb_mark`, …).
    fn next_state(&mut self, zone: u16, key: &Key) -> u32;
    /// The backend a load-balanced packet goes to, by index: a new
    /// connection's choice, or an established one's recorded mapping.
    fn choose_backend(&mut self, backends: &[(u128, Format, Option<u16>)]) -> usize;
}

/// Conntrack for `trace`: states taken in turn from a list, then
/// `est|trk` once it runs out (as `ovn-trace --ct` does); backends chosen
/// by `--lb-dst` or else the first.
pub struct SimulatedConntrack {
    pub states: Vec<u32>,
    pub next: usize,
    pub lb_dst: Option<(u128, Option<u16>)>,
}

impl SimulatedConntrack {
    /// `ovn-trace`'s default when `--ct` is not given.
    pub const DEFAULT_STATE: u32 = ct_state::EST | ct_state::TRK;
}

impl Conntrack for SimulatedConntrack {
    fn next_state(&mut self, _zone: u16, _key: &Key) -> u32 {
        let state = self
            .states
            .get(self.next)
            .copied()
            .unwrap_or(Self::DEFAULT_STATE);
        self.next += 1;
        state | ct_state::TRK
    }

    fn choose_backend(&mut self, backends: &[(u128, Format, Option<u16>)]) -> usize {
        let Some((ip, port)) = self.lb_dst else {
            return 0;
        };
        backends
            .iter()
            .position(|(b_ip, _, b_port)| *b_ip == ip && (port.is_none() || *b_port == port))
            .unwrap_or(0)
    }
}

/// A packet leaving the logical network through a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub port: String,
    pub datapath: String,
    /// The controller action that made this packet, if it is not the
    /// original (`icmp4`, `arp`, `tcp_reset`, …).
    pub generated_by: Option<&'static str>,
    pub key: Key,
    /// Set when the port is on another chassis: the packet goes there in a
    /// tunnel, and that chassis runs the egress pipeline.
    pub tunnel: Option<Tunnel>,
}

/// What OVN puts in a Geneve header for a packet bound elsewhere: the VNI
/// is the datapath's key, the option carries the ingress and egress port
/// keys (`man ovn-architecture`, "Tunnel Encapsulations").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub chassis: String,
    pub datapath_key: u32,
    pub inport_key: u32,
    pub outport_key: u32,
}

/// Where a logical port is, seen from the chassis running the pipeline.
enum Placement {
    Local,
    Remote(String),
    Unbound,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drop {
    pub datapath: String,
    pub reason: String,
}

/// One table visited.
#[derive(Debug, Clone)]
pub struct Step {
    /// Nesting: 0 for the original packet's first pipeline, +1 per
    /// recirculation, generated packet, clone or datapath crossed.
    pub depth: usize,
    pub datapath: String,
    pub pipeline: Pipeline,
    pub table: u8,
    pub stage: Option<String>,
    /// The datapath and the packet's logical port keys when it reached the
    /// table ([`LogicalNetwork::port_name`] names them for printing).
    pub dp: Uuid,
    pub inport: u32,
    pub outport: u32,
    /// The flow that matched; `None` for a miss (an implicit drop). Kept
    /// by reference so that tracing costs nothing until it is printed.
    pub flow: Option<Arc<CompiledFlow>>,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub outputs: Vec<Output>,
    pub drops: Vec<Drop>,
    pub steps: Vec<Step>,
    /// Every key bit some lookup depended on.
    pub consulted: Key,
    /// Every conntrack recirculation, in order.
    pub conntrack: Vec<CtUse>,
}

/// One trip through conntrack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtUse {
    pub datapath: String,
    pub zone: u16,
    /// The `ct_state` the packet came back with.
    pub state: u32,
}

/// Which of a datapath's conntrack zones an action uses.
#[derive(Clone, Copy)]
enum ZoneRole {
    /// The logical port's zone on a switch, the DNAT zone on a router.
    Default,
    Dnat,
    Snat,
}

/// Most tables one packet may visit (loops in the logical topology end
/// here rather than running forever).
const MAX_STEPS: usize = 4096;
/// Deepest nesting of resubmits.
const MAX_DEPTH: usize = 128;

/// Runs `key` into the ingress pipeline of `datapath`. The key's `inport`
/// must already hold the input port's tunnel key. With `chassis`, ports
/// bound elsewhere are reached through tunnels; without, every port is
/// local (as `ovn-trace` sees it).
pub fn run(
    program: &Program,
    net: &LogicalNetwork,
    datapath: Uuid,
    key: Key,
    ct: &mut dyn Conntrack,
    chassis: Option<&str>,
) -> Outcome {
    let mut it = Interp::new(program, net, ct, chassis);
    let mut pkt = Packet {
        key,
        dp: datapath,
        generated_by: None,
        stack: Vec::new(),
    };
    it.table(&mut pkt, Pipeline::Ingress, 0, 0);
    it.out
}

#[derive(Clone)]
struct Packet {
    key: Key,
    dp: Uuid,
    generated_by: Option<&'static str>,
    /// `push`/`pop` stack.
    stack: Vec<u128>,
}

/// What the rest of an action list should do.
#[derive(PartialEq)]
enum Flow {
    Continue,
    Stop,
}

struct Interp<'a> {
    program: &'a Program,
    net: &'a LogicalNetwork,
    ct: &'a mut dyn Conntrack,
    /// The chassis running the pipeline, if placement matters.
    chassis: Option<&'a str>,
    out: Outcome,
}

impl<'a> Interp<'a> {
    fn new(
        program: &'a Program,
        net: &'a LogicalNetwork,
        ct: &'a mut dyn Conntrack,
        chassis: Option<&'a str>,
    ) -> Self {
        Interp {
            program,
            net,
            ct,
            chassis,
            out: Outcome {
                consulted: ZERO_KEY,
                ..Default::default()
            },
        }
    }

    /// The logical port with tunnel key `key` on `dp`.
    fn port(&self, dp: Uuid, key: u32) -> Option<&'a LogicalPort> {
        let name = self.program.ports.get(&(dp, key))?;
        self.net.ports.get(name)
    }

    fn dp_name(&self, dp: Uuid) -> String {
        self.program
            .datapaths
            .get(&dp)
            .map_or_else(|| dp.to_string(), |d| d.name.clone())
    }

    fn drop(&mut self, pkt: &Packet, reason: impl Into<String>) {
        let datapath = self.dp_name(pkt.dp);
        self.out.drops.push(Drop {
            datapath,
            reason: reason.into(),
        });
    }

    /// Looks `pkt` up in one table and runs what it finds.
    fn table(&mut self, pkt: &mut Packet, pipeline: Pipeline, table: u8, depth: usize) {
        if self.out.steps.len() >= MAX_STEPS || depth > MAX_DEPTH {
            self.drop(pkt, "too many resubmits (a loop in the logical topology?)");
            return;
        }
        let program = self.program;
        let Some(dp) = program.datapaths.get(&pkt.dp) else {
            self.drop(pkt, "unknown datapath");
            return;
        };
        // The datapath's own table and those of its datapath groups hold
        // one pipeline table between them; the best priority wins.
        let idx = usize::from(table);
        let own = dp.tables(pipeline).get(idx);
        let shared = dp
            .groups
            .iter()
            .filter_map(|g| program.dp_groups.get(g))
            .filter_map(|g| g.tables(pipeline).get(idx));
        let mut stage = None;
        let mut found: Option<(u16, &Arc<CompiledFlow>)> = None;
        let mut any_table = false;
        for t in own.into_iter().chain(shared) {
            any_table = true;
            stage = stage.or(t.stage_name.as_ref());
            if let Some((p, f)) = t.classifier.lookup(&pkt.key, &mut self.out.consulted) {
                if found.is_none_or(|(best, _)| p > best) {
                    found = Some((p, f));
                }
            }
        }
        if !any_table {
            self.drop(pkt, format!("no table {table} in the {pipeline} pipeline"));
            return;
        }
        self.out.steps.push(Step {
            dp: pkt.dp,
            inport: pkt.key[KeyField::InPort.index()] as u32,
            outport: pkt.key[KeyField::OutPort.index()] as u32,
            depth,
            datapath: dp.name.clone(),
            pipeline,
            table,
            stage: stage.cloned(),
            flow: found.map(|(_, f)| f.clone()),
        });
        match found {
            None => self.drop(
                pkt,
                format!("no match in {pipeline} table {table} (implicit drop)"),
            ),
            Some((_, flow)) => {
                let flow = flow.clone();
                self.actions(&flow.actions, pkt, pipeline, table, depth);
            }
        }
    }

    fn actions(
        &mut self,
        actions: &Actions,
        pkt: &mut Packet,
        pipeline: Pipeline,
        table: u8,
        depth: usize,
    ) -> Flow {
        for a in &actions.0 {
            if self.action(a, pkt, pipeline, table, depth) == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn action(
        &mut self,
        a: &Action,
        pkt: &mut Packet,
        pipeline: Pipeline,
        table: u8,
        depth: usize,
    ) -> Flow {
        match a {
            Action::Next {
                pipeline: p,
                table: t,
            } => {
                let next_pipeline = p.unwrap_or(pipeline);
                let next_table = t.unwrap_or(table.saturating_add(1));
                self.table(pkt, next_pipeline, next_table, depth);
            }
            Action::Output => match pipeline {
                Pipeline::Ingress => self.enter_egress(pkt, depth),
                Pipeline::Egress => self.leave(pkt, depth),
            },
            Action::Drop => {
                self.drop(pkt, "drop action");
                return Flow::Stop;
            }
            Action::Assign { dst, src } => {
                let value = match src {
                    Source::Const(c) => c.value,
                    Source::Str(name) => u128::from(self.port_key(pkt.dp, name)),
                    Source::Field(f) => get(&pkt.key, f),
                };
                set(&mut pkt.key, dst, value);
            }
            Action::Exchange(x, y) => {
                let (vx, vy) = (get(&pkt.key, x), get(&pkt.key, y));
                set(&mut pkt.key, x, vy);
                set(&mut pkt.key, y, vx);
            }
            Action::Decrement(f) => {
                let ttl = get(&pkt.key, f);
                if ttl == 0 {
                    self.drop(pkt, "TTL exceeded");
                    return Flow::Stop;
                }
                set(&mut pkt.key, f, ttl - 1);
            }
            Action::Push(f) => pkt.stack.push(get(&pkt.key, f)),
            Action::Pop(f) => {
                let v = pkt.stack.pop().unwrap_or(0);
                set(&mut pkt.key, f, v);
            }
            Action::Block {
                kind: Block::CtCommit,
                body,
            } => {
                // Sets the connection's mark and label, which the packet
                // then carries too.
                self.actions(body, pkt, pipeline, table, depth);
            }
            Action::Block {
                kind: Block::Clone,
                body,
            } => {
                let mut copy = pkt.clone();
                self.actions(body, &mut copy, pipeline, table, depth + 1);
            }
            Action::Block { kind, body } => {
                let mut generated = pkt.clone();
                generate(*kind, &mut generated.key);
                // A reject is named by what it sends, as ovn-trace names it.
                generated.generated_by = Some(match kind {
                    Block::Reject => match (
                        generated.key[KeyField::IpProto.index()],
                        generated.key[KeyField::EthType.index()],
                    ) {
                        (6, _) => "tcp_reset",
                        (_, 0x86dd) => "icmp6",
                        _ => "icmp4",
                    },
                    other => other.name(),
                });
                self.actions(body, &mut generated, pipeline, table, depth + 1);
            }
            Action::CtCommitArgs(pairs) => {
                for (name, c) in pairs {
                    set(&mut pkt.key, &FieldRef::whole(name), c.value);
                }
            }
            Action::Bare(b) => match b {
                Bare::CtNext => {
                    return self.recirculate(pkt, pipeline, table, depth, 0, ZoneRole::Default)
                }
                Bare::CtClear => clear_ct(&mut pkt.key),
                Bare::CtCommitNat | Bare::CtSnatToVip => {}
                Bare::Igmp | Bare::HandleDhcpv6Reply => {
                    // Consumed by the controller.
                    self.drop(pkt, format!("sent to the controller ({})", b.name()));
                    return Flow::Stop;
                }
            },
            Action::Nat {
                kind,
                target,
                ports,
            } => {
                if let Some(ip) = target {
                    let dst = matches!(kind, Nat::Dnat | Nat::DnatInCzone);
                    rewrite_endpoint(
                        &mut pkt.key,
                        dst,
                        ip.value,
                        ip.format,
                        ports.map(|(low, _)| low),
                    );
                }
                let bit = match kind {
                    Nat::Dnat | Nat::DnatInCzone => ct_state::DNAT,
                    Nat::Snat | Nat::SnatInCzone => ct_state::SNAT,
                };
                let extra = if target.is_some() { bit } else { 0 };
                // The `_in_czone` forms share one common zone: the SNAT zone.
                let role = match kind {
                    Nat::Dnat => ZoneRole::Dnat,
                    Nat::Snat | Nat::DnatInCzone | Nat::SnatInCzone => ZoneRole::Snat,
                };
                return self.recirculate(pkt, pipeline, table, depth, extra, role);
            }
            Action::CtLb(lb) => return self.ct_lb(lb, pkt, pipeline, table, depth),
            Action::Call { result, func, args } => {
                return self.call(*func, result.as_ref(), args, pkt)
            }
        }
        Flow::Continue
    }

    /// Conntrack then the next table: the rest of this flow's actions do
    /// not run (ovn-controller puts nothing after these).
    fn recirculate(
        &mut self,
        pkt: &mut Packet,
        pipeline: Pipeline,
        table: u8,
        depth: usize,
        extra_state: u32,
        role: ZoneRole,
    ) -> Flow {
        let zone = self.zone(pkt, pipeline, role);
        let state = self.ct.next_state(zone, &pkt.key) | extra_state;
        self.record_ct(pkt, zone, state);
        set_key_field(&mut pkt.key, KeyField::CtState, u128::from(state));
        self.table(pkt, pipeline, table.saturating_add(1), depth + 1);
        Flow::Stop
    }

    fn ct_lb(
        &mut self,
        lb: &CtLb,
        pkt: &mut Packet,
        pipeline: Pipeline,
        table: u8,
        depth: usize,
    ) -> Flow {
        let Some(backends) = &lb.backends else {
            return self.recirculate(pkt, pipeline, table, depth, 0, ZoneRole::Default);
        };
        let choices: Vec<(u128, Format, Option<u16>)> = backends
            .iter()
            .map(|b| (b.ip.value, b.ip.format, b.port))
            .collect();
        let zone = self.zone(pkt, pipeline, ZoneRole::Default);
        let state = self.ct.next_state(zone, &pkt.key);
        self.record_ct(pkt, zone, state | ct_state::DNAT);
        // New or established, the packet leaves conntrack addressed to the
        // backend: a new connection gets one chosen, an established one its
        // recorded mapping (the Conntrack knows which).
        if let Some(&(ip, format, port)) = choices.get(self.ct.choose_backend(&choices)) {
            rewrite_endpoint(&mut pkt.key, true, ip, format, port);
        }
        set_key_field(
            &mut pkt.key,
            KeyField::CtState,
            u128::from(state | ct_state::DNAT),
        );
        self.table(pkt, pipeline, table.saturating_add(1), depth + 1);
        Flow::Stop
    }

    /// The zone a conntrack action uses, as ovn-controller encodes it.
    fn zone(&self, pkt: &Packet, pipeline: Pipeline, role: ZoneRole) -> u16 {
        let zones = &self.program.zones;
        let is_router = self
            .program
            .datapaths
            .get(&pkt.dp)
            .is_some_and(|d| d.is_router);
        match (is_router, role) {
            (false, _) => {
                let port = match pipeline {
                    Pipeline::Ingress => KeyField::InPort,
                    Pipeline::Egress => KeyField::OutPort,
                };
                let key = pkt.key[port.index()] as u32;
                zones.ports.get(&(pkt.dp, key)).copied().unwrap_or(0)
            }
            (true, ZoneRole::Snat) => zones.snat.get(&pkt.dp).copied().unwrap_or(0),
            (true, _) => zones.dnat.get(&pkt.dp).copied().unwrap_or(0),
        }
    }

    fn record_ct(&mut self, pkt: &Packet, zone: u16, state: u32) {
        let datapath = self.dp_name(pkt.dp);
        self.out.conntrack.push(CtUse {
            datapath,
            zone,
            state,
        });
    }

    fn call(
        &mut self,
        func: Func,
        result: Option<&FieldRef>,
        args: &Args,
        pkt: &mut Packet,
    ) -> Flow {
        let fields = match args {
            Args::Fields(f) => f.as_slice(),
            _ => &[],
        };
        let arg = |i: usize| fields.get(i).map_or(0, |f| get(&pkt.key, f));
        let value: Option<u128> = match func {
            Func::GetArp | Func::GetNd => {
                let mac = self.mac_binding(pkt.dp, arg(0) as u32, arg(1)).unwrap_or(0);
                set_key_field(&mut pkt.key, KeyField::EthDst, mac);
                None
            }
            Func::LookupArp | Func::LookupNd => {
                let known = self.mac_binding(pkt.dp, arg(0) as u32, arg(1));
                Some(u128::from(known == Some(arg(2))))
            }
            Func::LookupArpIp | Func::LookupNdIp => Some(u128::from(
                self.mac_binding(pkt.dp, arg(0) as u32, arg(1)).is_some(),
            )),
            Func::CheckInPortSec => Some(u128::from(self.violates_port_security(pkt, true))),
            Func::CheckOutPortSec => Some(u128::from(self.violates_port_security(pkt, false))),
            // The flow only asks for a port that has the options, and the
            // controller answers any well-formed request: success, as
            // ovn-trace assumes for a DHCPDISCOVER/REQUEST or an RS.
            Func::PutDhcpOpts | Func::PutDhcpv6Opts | Func::PutNdRaOpts => Some(1),
            Func::Select => match args {
                Args::Weighted(items) => items.first().map(|(v, _)| u128::from(*v)),
                _ => None,
            },
            Func::HandleSvcCheck | Func::HandleBfdMsg => {
                self.drop(pkt, format!("sent to the controller ({})", func.name()));
                return Flow::Stop;
            }
            // Learning, logging, metering and events change nothing the
            // pipeline sees; lookups of state ironflow does not simulate
            // (FDB, DHCP, DNS, hairpin, ECMP and affinity tables) miss.
            _ => result.map(|_| 0),
        };
        if let (Some(r), Some(v)) = (result, value) {
            set(&mut pkt.key, r, v);
        }
        Flow::Continue
    }
}

fn loopback_allowed(key: &Key) -> bool {
    key[KeyField::Flags.index()] & 1 != 0
}

fn clear_ct(key: &mut Key) {
    for field in [KeyField::CtState, KeyField::CtMark, KeyField::CtLabel] {
        key[field.index()] = 0;
    }
}

fn set_key_field(key: &mut Key, field: KeyField, value: u128) {
    key[field.index()] = value & field.full_mask();
}

/// Where a field reference lives: key slot, lowest bit, width.
fn place(f: &FieldRef) -> Option<(KeyField, u16, u16)> {
    let Some(Symbol::Field(field)) = lookup(&f.name) else {
        return None;
    };
    Some(match f.bits {
        Some((low, high)) => (field.key, field.low + low, high - low + 1),
        None => (field.key, field.low, field.width),
    })
}

fn get(key: &Key, f: &FieldRef) -> u128 {
    place(f).map_or(0, |(k, low, width)| (key[k.index()] >> low) & ones(width))
}

fn set(key: &mut Key, f: &FieldRef, value: u128) {
    // OVN-only fields (icmp4.frag_mtu) have no key slot; nothing matches on them.
    let Some((k, low, width)) = place(f) else {
        return;
    };
    let mask = ones(width) << low;
    let slot = &mut key[k.index()];
    *slot = (*slot & !mask) | ((value << low) & mask);
}

/// Rewrites the destination (DNAT) or source (SNAT) address and port.
fn rewrite_endpoint(key: &mut Key, dst: bool, ip: u128, format: Format, port: Option<u16>) {
    let ip_field = match (format, dst) {
        (Format::Ipv6, true) => KeyField::Ip6Dst,
        (Format::Ipv6, false) => KeyField::Ip6Src,
        (_, true) => KeyField::Nw4Dst,
        (_, false) => KeyField::Nw4Src,
    };
    set_key_field(key, ip_field, ip);
    if let Some(port) = port {
        set_key_field(
            key,
            if dst {
                KeyField::TpDst
            } else {
                KeyField::TpSrc
            },
            port.into(),
        );
    }
}

/// The packet a controller block starts from (`man ovn-sb`).
fn generate(kind: Block, key: &mut Key) {
    let k = |f: KeyField| f.index();
    match kind {
        Block::Arp => {
            key[k(KeyField::ArpOp)] = 1;
            key[k(KeyField::ArpSha)] = key[k(KeyField::EthSrc)];
            key[k(KeyField::ArpTha)] = 0;
            // arp.spa/tpa share the IPv4 address slots: already in place.
            key[k(KeyField::EthType)] = 0x806;
            key[k(KeyField::IpProto)] = 0;
        }
        Block::Icmp4 | Block::Icmp4Error => {
            key[k(KeyField::IpProto)] = 1;
            key[k(KeyField::IpFrag)] = 0;
            key[k(KeyField::IpTtl)] = 255;
            key[k(KeyField::TpSrc)] = 3;
            key[k(KeyField::TpDst)] = 1;
        }
        Block::Icmp6 | Block::Icmp6Error => {
            key[k(KeyField::IpProto)] = 58;
            key[k(KeyField::IpFrag)] = 0;
            key[k(KeyField::IpTtl)] = 255;
            key[k(KeyField::TpSrc)] = 1;
            key[k(KeyField::TpDst)] = 0;
        }
        Block::TcpReset => {
            key[k(KeyField::TcpFlags)] = 0x004;
            key[k(KeyField::IpTtl)] = 255;
        }
        Block::SctpAbort => {
            key[k(KeyField::IpTtl)] = 255;
        }
        Block::Reject => {
            // The swaps are implicit; the reply is a TCP RST or an ICMP
            // unreachable depending on the original.
            key.swap(k(KeyField::EthSrc), k(KeyField::EthDst));
            if key[k(KeyField::EthType)] == 0x86dd {
                key.swap(k(KeyField::Ip6Src), k(KeyField::Ip6Dst));
            } else {
                key.swap(k(KeyField::Nw4Src), k(KeyField::Nw4Dst));
            }
            if key[k(KeyField::IpProto)] == 6 {
                generate(Block::TcpReset, key);
            } else if key[k(KeyField::EthType)] == 0x86dd {
                generate(Block::Icmp6, key);
                key[k(KeyField::TpDst)] = 4; // port unreachable
            } else {
                generate(Block::Icmp4, key);
                key[k(KeyField::TpDst)] = 3; // port unreachable
            }
        }
        Block::NdNs => {
            key[k(KeyField::IpProto)] = 58;
            key[k(KeyField::TpSrc)] = 135;
            key[k(KeyField::TpDst)] = 0;
            key[k(KeyField::IpTtl)] = 255;
            key[k(KeyField::NdTarget)] = key[k(KeyField::Ip6Dst)];
        }
        Block::NdNa | Block::NdNaRouter => {
            key[k(KeyField::IpProto)] = 58;
            key[k(KeyField::TpSrc)] = 136;
            key[k(KeyField::TpDst)] = 0;
            key[k(KeyField::IpTtl)] = 255;
        }
        Block::Clone | Block::CtCommit => {}
    }
}

fn parse_ip(text: &str) -> Option<u128> {
    match text.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => Some(u32::from(v4).into()),
        std::net::IpAddr::V6(v6) => Some(u128::from(v6)),
    }
}

/// `10.0.0.5`, `10.0.0.0/24` or an IPv6 prefix: (network, mask, is IPv6).
fn parse_prefix(text: &str) -> Option<(u128, u128, bool)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().ok()?)),
        None => (text, None),
    };
    let v6 = addr.contains(':');
    let width = if v6 { 128 } else { 32 };
    let ip = parse_ip(addr)?;
    let mask = crate::lflow::lexer::prefix_mask(len.unwrap_or(width).min(width), width);
    Some((ip & mask, mask, v6))
}
