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
use crate::dpaction::DpAction;
use crate::lflow::actions::{Action, Actions, Args, Bare, Block, CtLb, Func, Nat, Source};
use crate::lflow::cursor::FieldRef;
use crate::lflow::lexer::{parse_mac, Format};
use crate::lflow::symbols::{lookup, ones, KeyField, Symbol};
use crate::network::{LogicalNetwork, LogicalPort, Pipeline, PortType};
use crate::program::{CompiledFlow, Program};
use crate::Uuid;
use std::sync::Arc;

mod conntrack;
mod ports;
mod provenance;
mod xlate;

use conntrack::CtOp;
pub use conntrack::{ct_state, Conntrack, SimulatedConntrack};
use provenance::{Origin, Provenance, METADATA};
pub use xlate::{Entry, FrozenState, PendingWork, Translation};
use xlate::{Pending, Recorder};

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
    /// The output port's datapath and port tunnel keys (where a datapath
    /// finds the interface bound to it).
    pub datapath_key: u32,
    pub port_key: u32,
}

/// What a controller action learned from a packet, for the controller to
/// write to the Southbound database (`put_arp`, `put_nd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// A MAC_Binding row: `ip` is at `mac` behind `logical_port`.
    MacBinding {
        datapath: Uuid,
        logical_port: String,
        /// IPv4 (in the low 32 bits) or IPv6.
        ip: u128,
        ipv6: bool,
        mac: u128,
    },
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
    /// What `put_arp`/`put_nd` learned.
    pub learned: Vec<Learned>,
    /// The options of a `put_dhcp_opts`, `put_dhcpv6_opts` or
    /// `put_nd_ra_opts` the packet met: the controller answers the
    /// packet's DHCP message or router solicitation with them.
    pub answer: Option<Answer>,
}

/// What a controller answer is built from.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Dhcp4(Vec<(String, crate::lflow::actions::ArgValue)>),
    Dhcp6(Vec<(String, crate::lflow::actions::ArgValue)>),
    RouterAdvertisement(Vec<(String, crate::lflow::actions::ArgValue)>),
    /// `dns_lookup` found the query's name: the controller answers it.
    Dns,
}

/// One trip through conntrack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtUse {
    pub datapath: String,
    pub zone: u16,
    /// The `ct_state` the packet came back with.
    pub state: u32,
}

/// Most tables one packet may visit (loops in the logical topology end
/// here rather than running forever).
const MAX_STEPS: usize = 4096;
/// Deepest nesting of resubmits.
const MAX_DEPTH: usize = 128;

/// Carries out a pass the datapath handed to the controller (its
/// translation said `controller`), as ovn-controller's pinctrl does: the
/// earlier passes are replayed from `recorded` as [`translate`] replays
/// them, then this pass runs as a trace does — controller actions make
/// their packets, and every packet the pass outputs, generated or not,
/// comes back in the outcome with its final key and where it goes, with
/// what `put_arp`/`put_nd` learned. Conntrack met after the controller
/// action is answered by `ct` (the generated packets do not go through
/// the datapath's conntrack).
#[allow(clippy::too_many_arguments)]
pub fn execute(
    program: &Program,
    net: &LogicalNetwork,
    chassis: &str,
    entry: Entry,
    packet: &Key,
    recorded: &[Key],
    ct: &mut dyn Conntrack,
    dns_found: bool,
) -> Outcome {
    let mut rec = Recorder::new(recorded);
    rec.execute = true;
    if rec.active() {
        rec.begin(packet);
    }
    let mut it = Interp::new(program, net, ct, Some(chassis), Some(rec));
    it.dns_found = dns_found;
    it.enter(entry, packet);
    it.out
}

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
    let mut it = Interp::new(program, net, ct, chassis, None);
    let mut pkt = Packet::new(key, datapath, Provenance::all_input(0));
    it.table(&mut pkt, Pipeline::Ingress, 0, 0);
    it.out
}

/// Translates one pass of a packet that entered this chassis (`chassis`)
/// at `entry` into datapath actions. `packet` is the key as the packet
/// entered the first pass, with the entry's logical ports in it;
/// `recorded` holds the key after each recirculation so far, and its
/// length says which pass to translate.
pub fn translate(
    program: &Program,
    net: &LogicalNetwork,
    chassis: &str,
    entry: Entry,
    packet: &Key,
    recorded: &[Key],
) -> Translation {
    // Conntrack is not consulted: recirculations are replayed or frozen.
    let mut none = SimulatedConntrack {
        states: Vec::new(),
        next: 0,
        lb_dst: None,
    };
    let mut rec = Recorder::new(recorded);
    if rec.active() {
        rec.begin(packet);
    }
    let mut it = Interp::new(program, net, &mut none, Some(chassis), Some(rec));
    it.enter(entry, packet);
    it.rec.map(|r| r.out).unwrap_or_default()
}

#[derive(Clone)]
struct Packet {
    key: Key,
    dp: Uuid,
    generated_by: Option<&'static str>,
    /// `push`/`pop` stack, with where each value came from.
    stack: Vec<(u128, Origin)>,
    prov: Provenance,
    /// Tells copies apart (multicast members, clones, patch crossings).
    id: u32,
}

impl Packet {
    fn new(key: Key, dp: Uuid, prov: Provenance) -> Self {
        Packet {
            key,
            dp,
            generated_by: None,
            stack: Vec::new(),
            prov,
            id: 0,
        }
    }

    /// Writes `value` into the bits `f` names, from a value of `origin`.
    fn write(&mut self, f: &FieldRef, value: u128, origin: Origin) {
        // OVN-only fields (icmp4.frag_mtu) have no key slot; nothing matches on them.
        let Some((k, low, width)) = place(f) else {
            return;
        };
        let mask = ones(width) << low;
        let slot = &mut self.key[k.index()];
        *slot = (*slot & !mask) | ((value << low) & mask);
        self.prov
            .write(k.index(), low == 0 && width >= k.width(), origin);
    }

    /// Sets a whole slot to a value fixed by the path taken.
    fn fix(&mut self, field: KeyField, value: u128) {
        self.key[field.index()] = value & field.full_mask();
        self.prov.write(field.index(), true, Origin::Fixed);
    }

    /// Where the value in `f` came from, as a source for a write elsewhere.
    fn origin_of(&self, f: &FieldRef) -> Origin {
        place(f).map_or(Origin::Fixed, |(k, _, _)| {
            self.prov.slots[k.index()].moved_from(k.index())
        })
    }
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
    /// Set when translating for the datapath rather than tracing.
    rec: Option<Recorder<'a>>,
    /// Tables visited (a bound on loops).
    visits: usize,
    /// The last packet copy's id.
    copies: u32,
    /// What `dns_lookup` answers when carrying out a controller pass
    /// (the controller looked the query up; the interpreter never sees
    /// payloads).
    dns_found: bool,
}

impl<'a> Interp<'a> {
    fn new(
        program: &'a Program,
        net: &'a LogicalNetwork,
        ct: &'a mut dyn Conntrack,
        chassis: Option<&'a str>,
        rec: Option<Recorder<'a>>,
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
            rec,
            visits: 0,
            copies: 0,
            dns_found: false,
        }
    }

    /// A copy of `pkt` that goes its own way.
    fn fork(&mut self, pkt: &Packet) -> Packet {
        self.copies += 1;
        let mut copy = pkt.clone();
        copy.id = self.copies;
        copy
    }

    /// Whether the walk is over for the datapath (frozen at a
    /// recirculation or handed to the controller).
    fn stopped(&self) -> bool {
        self.rec.as_ref().is_some_and(Recorder::stopped)
    }

    /// Walks `packet` in from where it entered this chassis: a port's
    /// ingress pipeline, or a tunnel's egress.
    fn enter(&mut self, entry: Entry, packet: &Key) {
        let mut pkt = Packet::new(*packet, Uuid::default(), Provenance::headers_input(0));
        match entry {
            Entry::Port { datapath, inport } => {
                pkt.dp = datapath;
                pkt.key[KeyField::InPort.index()] = inport.into();
                self.table(&mut pkt, Pipeline::Ingress, 0, 0);
            }
            Entry::Tunnel {
                datapath,
                inport,
                outport,
            } => {
                pkt.dp = datapath;
                pkt.key[KeyField::InPort.index()] = inport.into();
                pkt.key[KeyField::OutPort.index()] = outport.into();
                self.tunnel_arrival(&pkt, outport);
            }
        }
    }

    /// The recorder, when the pass being walked is the one recorded.
    fn recording(&mut self) -> Option<&mut Recorder<'a>> {
        self.rec.as_mut().filter(|r| r.active() && !r.execute)
    }

    /// Whether the walk replays an earlier pass (the datapath did its
    /// outputs already).
    fn replaying(&self) -> bool {
        self.rec.as_ref().is_some_and(|r| !r.active())
    }

    /// Whether the walk carries out a controller pass ([`execute`]): it
    /// behaves as a trace.
    fn executing(&self) -> bool {
        self.rec.as_ref().is_some_and(|r| r.active() && r.execute)
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
        if !self.executing() {
            if let Some(rec) = &mut self.rec {
                rec.drop(|| reason.into());
                return;
            }
        }
        let datapath = self.dp_name(pkt.dp);
        self.out.drops.push(Drop {
            datapath,
            reason: reason.into(),
        });
    }

    /// Hands the packet to the controller: the datapath cannot do what
    /// the pass needs. False when tracing (the interpreter does it).
    fn hand_to_controller(&mut self) -> bool {
        match self.recording() {
            Some(rec) => {
                rec.out.controller = true;
                true
            }
            None => self.replaying(),
        }
    }

    /// Looks `pkt` up in one table and runs what it finds.
    fn table(&mut self, pkt: &mut Packet, pipeline: Pipeline, table: u8, depth: usize) {
        if self.stopped() {
            return;
        }
        self.visits += 1;
        if self.visits > MAX_STEPS || depth > MAX_DEPTH {
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
        let mut read = ZERO_KEY;
        for t in own.into_iter().chain(shared) {
            any_table = true;
            stage = stage.or(t.stage_name.as_ref());
            if let Some((p, f)) = t.classifier.lookup(&pkt.key, &mut read) {
                if found.is_none_or(|(best, _)| p > best) {
                    found = Some((p, f));
                }
            }
        }
        match &mut self.rec {
            Some(rec) => pkt.prov.fold(rec.target, &read, &mut rec.out.mask),
            None => pkt.prov.fold(0, &read, &mut self.out.consulted),
        }
        if !any_table {
            self.drop(pkt, format!("no table {table} in the {pipeline} pipeline"));
            return;
        }
        if self.rec.is_none() {
            self.out.steps.push(Step {
                dp: pkt.dp,
                inport: pkt.key[KeyField::InPort.index()] as u32,
                outport: pkt.key[KeyField::OutPort.index()] as u32,
                depth,
                datapath: dp.name.clone(),
                pipeline,
                table,
                stage: stage.map(|s| s.to_string()),
                flow: found.map(|(_, f)| f.clone()),
            });
        }
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
        let last = actions.0.len().saturating_sub(1);
        for (i, a) in actions.0.iter().enumerate() {
            // The rest of this list is work a recirculation inside `a`
            // would have to come back to.
            // Action lists are shared among flows with the same text: the table
            // they run in tells the rest apart.
            let context = (pipeline as u16) << 8 | u16::from(table);
            let pushed =
                i < last && self.push_pending(actions as *const _ as usize, context, i, pkt);
            let flow = self.action(a, pkt, pipeline, table, depth);
            if pushed {
                self.pop_pending();
            }
            if flow == Flow::Stop || self.stopped() {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Notes work left in a frame, when translating for the datapath.
    fn push_pending(&mut self, site: usize, context: u16, index: usize, pkt: &Packet) -> bool {
        let Some(rec) = &mut self.rec else {
            return false;
        };
        rec.pending.push(Pending {
            site,
            context,
            index: index as u32,
            packet_id: pkt.id,
            key: pkt.key,
            prov: pkt.prov.clone(),
        });
        true
    }

    fn pop_pending(&mut self) {
        if let Some(rec) = &mut self.rec {
            rec.pending.pop();
        }
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
                let (value, origin) = match src {
                    Source::Const(c) => (c.value, Origin::Fixed),
                    Source::Str(name) => (u128::from(self.port_key(pkt.dp, name)), Origin::Fixed),
                    Source::Field(f) => (get(&pkt.key, f), pkt.origin_of(f)),
                };
                pkt.write(dst, value, origin);
            }
            Action::Exchange(x, y) => {
                let (vx, vy) = (get(&pkt.key, x), get(&pkt.key, y));
                let (ox, oy) = (pkt.origin_of(x), pkt.origin_of(y));
                pkt.write(x, vy, oy);
                pkt.write(y, vx, ox);
            }
            Action::Decrement(f) => {
                let ttl = get(&pkt.key, f);
                if ttl == 0 {
                    self.drop(pkt, "TTL exceeded");
                    return Flow::Stop;
                }
                let origin = match place(f).map(|(k, _, _)| pkt.prov.slots[k.index()]) {
                    Some(Origin::Input) => Origin::Dec(1),
                    Some(Origin::Dec(n)) => Origin::Dec(n.saturating_add(1)),
                    _ => pkt.origin_of(f),
                };
                pkt.write(f, ttl - 1, origin);
            }
            Action::Push(f) => {
                let origin = pkt.origin_of(f);
                pkt.stack.push((get(&pkt.key, f), origin));
            }
            Action::Pop(f) => {
                let (v, origin) = pkt.stack.pop().unwrap_or((0, Origin::Fixed));
                pkt.write(f, v, origin);
            }
            Action::Block {
                kind: Block::CtCommit,
                body,
            } => {
                // Sets the connection's mark and label, which the packet
                // then carries too.
                let writes = body.0.iter().filter_map(|a| match a {
                    Action::Assign {
                        dst,
                        src: Source::Const(c),
                    } => Some((dst.clone(), c.value)),
                    _ => None,
                });
                self.ct_commit(pkt, pipeline, writes.collect());
                self.actions(body, pkt, pipeline, table, depth);
            }
            Action::Block {
                kind: Block::Clone,
                body,
            } => {
                let mut copy = self.fork(pkt);
                self.actions(body, &mut copy, pipeline, table, depth + 1);
            }
            Action::Block { kind, body } => {
                if self.hand_to_controller() {
                    return Flow::Stop;
                }
                let mut generated = self.fork(pkt);
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
                let writes = pairs
                    .iter()
                    .map(|(name, c)| (FieldRef::whole(name), c.value))
                    .collect();
                self.ct_commit(pkt, pipeline, writes);
                for (name, c) in pairs {
                    pkt.write(&FieldRef::whole(name), c.value, Origin::Fixed);
                }
            }
            Action::Bare(b) => match b {
                Bare::CtNext => return self.conntrack(CtOp::Next, pkt, pipeline, table, depth),
                Bare::CtCommitNat => {
                    return self.conntrack(CtOp::CommitNat, pkt, pipeline, table, depth)
                }
                Bare::CtClear => {
                    if let Some(rec) = self.recording() {
                        rec.emit(DpAction::CtClear);
                    }
                    for f in [KeyField::CtState, KeyField::CtMark, KeyField::CtLabel] {
                        pkt.fix(f, 0);
                    }
                }
                Bare::CtSnatToVip => {}
                Bare::Igmp | Bare::HandleDhcpv6Reply => {
                    // Consumed by the controller.
                    if !self.hand_to_controller() {
                        self.drop(pkt, format!("sent to the controller ({})", b.name()));
                    }
                    return Flow::Stop;
                }
            },
            Action::Nat {
                kind,
                target,
                ports,
            } => {
                let op = CtOp::Nat {
                    kind: *kind,
                    target: target.as_ref(),
                    ports: ports.map(|(low, high)| (low, high.unwrap_or(low))),
                };
                return self.conntrack(op, pkt, pipeline, table, depth);
            }
            Action::CtLb(lb) => return self.conntrack(CtOp::Lb(lb), pkt, pipeline, table, depth),
            Action::Call { result, func, args } => {
                return self.call(*func, result.as_ref(), args, pkt)
            }
        }
        Flow::Continue
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
        // What the datapath cannot do: make packets or learn from them.
        let needs_controller = matches!(
            func,
            Func::PutArp
                | Func::PutNd
                | Func::PutFdb
                | Func::PutDhcpOpts
                | Func::PutDhcpv6Opts
                | Func::PutNdRaOpts
                | Func::DnsLookup
                | Func::HandleSvcCheck
                | Func::HandleBfdMsg
                | Func::BindVport
                | Func::TriggerEvent
        );
        if needs_controller && self.hand_to_controller() {
            return Flow::Stop;
        }
        let arg = |i: usize| fields.get(i).map_or(0, |f| get(&pkt.key, f));
        // A lookup's answer depends on the slots its arguments came from.
        let args_origin = pkt.prov.combined(
            fields
                .iter()
                .filter_map(|f| place(f).map(|(k, _, _)| k.index())),
        );
        if !self.replaying() {
            if let Args::KeyValues(kv) = args {
                let answer = match func {
                    Func::PutDhcpOpts => Some(Answer::Dhcp4(kv.clone())),
                    Func::PutDhcpv6Opts => Some(Answer::Dhcp6(kv.clone())),
                    Func::PutNdRaOpts => Some(Answer::RouterAdvertisement(kv.clone())),
                    _ => None,
                };
                if answer.is_some() {
                    self.out.answer = answer;
                }
            }
        }
        if matches!(func, Func::PutArp | Func::PutNd) && !self.replaying() {
            if let Some(port) = self.port(pkt.dp, arg(0) as u32) {
                self.out.learned.push(Learned::MacBinding {
                    datapath: pkt.dp,
                    logical_port: port.name.clone(),
                    ip: arg(1),
                    ipv6: func == Func::PutNd,
                    mac: arg(2),
                });
            }
        }
        let value: Option<(u128, Origin)> = match func {
            Func::GetArp | Func::GetNd => {
                let mac = self.mac_binding(pkt.dp, arg(0) as u32, arg(1)).unwrap_or(0);
                pkt.key[KeyField::EthDst.index()] = mac;
                pkt.prov.write(KeyField::EthDst.index(), true, args_origin);
                None
            }
            Func::LookupArp | Func::LookupNd => {
                let known = self.mac_binding(pkt.dp, arg(0) as u32, arg(1));
                Some((u128::from(known == Some(arg(2))), args_origin))
            }
            Func::LookupArpIp | Func::LookupNdIp => Some((
                u128::from(self.mac_binding(pkt.dp, arg(0) as u32, arg(1)).is_some()),
                args_origin,
            )),
            Func::CheckInPortSec | Func::CheckOutPortSec => {
                let ingress = func == Func::CheckInPortSec;
                let (violates, read) = self.violates_port_security(pkt, ingress);
                Some((
                    u128::from(violates),
                    pkt.prov.combined(read.iter().map(|f| f.index())),
                ))
            }
            // The flow only asks for a port that has the options, and the
            // controller answers any well-formed request: success, as
            // ovn-trace assumes for a DHCPDISCOVER/REQUEST or an RS.
            Func::PutDhcpOpts | Func::PutDhcpv6Opts => Some((1, Origin::Fixed)),
            Func::DnsLookup if self.executing() => {
                if self.dns_found {
                    self.out.answer = Some(Answer::Dns);
                }
                Some((u128::from(self.dns_found), Origin::Fixed))
            }
            // The controller turns the solicitation into the advertisement
            // the next stage (lr_in_nd_ra_response, `nd_ra && …`) sends.
            Func::PutNdRaOpts => {
                pkt.fix(KeyField::TpSrc, 134);
                pkt.fix(KeyField::TpDst, 0);
                Some((1, Origin::Fixed))
            }
            Func::Select => match args {
                Args::Weighted(items) => {
                    items.first().map(|(v, _)| (u128::from(*v), Origin::Fixed))
                }
                _ => None,
            },
            Func::HandleSvcCheck | Func::HandleBfdMsg => {
                self.drop(pkt, format!("sent to the controller ({})", func.name()));
                return Flow::Stop;
            }
            // Learning, logging, metering and events change nothing the
            // pipeline sees; lookups of state ironflow does not simulate
            // (FDB, DHCP, DNS, hairpin, ECMP and affinity tables) miss.
            _ => result.map(|_| (0, Origin::Fixed)),
        };
        if let (Some(r), Some((v, origin))) = (result, value) {
            pkt.write(r, v, origin);
        }
        Flow::Continue
    }
}

fn loopback_allowed(key: &Key) -> bool {
    key[KeyField::Flags.index()] & 1 != 0
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
            // A solicitation for the destination, to its solicited-node
            // multicast group (RFC 4861 §7.2.2), from the packet's source
            // link-layer address, as pinctrl composes it before the nested
            // actions run.
            let target = key[k(KeyField::Ip6Dst)];
            key[k(KeyField::IpProto)] = 58;
            key[k(KeyField::TpSrc)] = 135;
            key[k(KeyField::TpDst)] = 0;
            key[k(KeyField::IpTtl)] = 255;
            key[k(KeyField::NdTarget)] = target;
            key[k(KeyField::Ip6Dst)] = 0xff02_u128 << 112 | 0x1_ff00_0000 | (target & 0xff_ffff);
            key[k(KeyField::EthDst)] = 0x3333_ff00_0000 | (target & 0xff_ffff);
            key[k(KeyField::ArpSha)] = key[k(KeyField::EthSrc)];
            key[k(KeyField::ArpTha)] = 0;
        }
        Block::NdNa | Block::NdNaRouter => {
            // An advertisement back to the solicitation's sender (all
            // nodes when it came from the unspecified address).
            key[k(KeyField::IpProto)] = 58;
            key[k(KeyField::TpSrc)] = 136;
            key[k(KeyField::TpDst)] = 0;
            key[k(KeyField::IpTtl)] = 255;
            key[k(KeyField::EthDst)] = key[k(KeyField::EthSrc)];
            key[k(KeyField::Ip6Dst)] = match key[k(KeyField::Ip6Src)] {
                0 => 0xff02_u128 << 112 | 1,
                src => src,
            };
            key[k(KeyField::ArpSha)] = 0;
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
