//! Conntrack in the interpreter: OVN's `ct_*` actions, the zones
//! ovn-controller gives them, the [`Conntrack`] a trace consults, and what
//! the datapath is told to do instead when translating.

use super::xlate::{FrozenState, PendingWork};
use super::*;
use crate::dpaction::{Backend, CtAction, CtNat, DpAction, NatRange};
use crate::lflow::lexer::Constant;

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

/// Which of a datapath's conntrack zones an action uses.
#[derive(Clone, Copy)]
pub(super) enum ZoneRole {
    /// The logical port's zone on a switch, the DNAT zone on a router.
    Default,
    Dnat,
    Snat,
}

/// A conntrack action that recirculates, as a flow wrote it.
pub(super) enum CtOp<'x> {
    /// `ct_next`.
    Next,
    /// `ct_commit_nat`: commit, applying the connection's NAT.
    CommitNat,
    /// `ct_dnat`, `ct_snat` and their `_in_czone` forms.
    Nat {
        kind: Nat,
        target: Option<&'x Constant>,
        ports: Option<(u16, u16)>,
    },
    /// `ct_lb_mark` / `ct_lb`.
    Lb(&'x CtLb),
}

impl CtOp<'_> {
    fn role(&self) -> ZoneRole {
        match self {
            CtOp::Nat {
                kind: Nat::Dnat, ..
            } => ZoneRole::Dnat,
            // The `_in_czone` forms share one common zone: the SNAT zone.
            CtOp::Nat { .. } => ZoneRole::Snat,
            _ => ZoneRole::Default,
        }
    }

    /// What ovn-controller would have OpenFlow's `ct()` do.
    fn datapath_action(&self, zone: u16) -> CtAction {
        let mut action = CtAction {
            zone,
            recirculates: true,
            ..Default::default()
        };
        match self {
            CtOp::Next => {}
            CtOp::CommitNat => {
                action.commit = true;
                action.nat = Some(CtNat::Existing);
            }
            CtOp::Nat {
                kind,
                target,
                ports,
            } => {
                action.nat = Some(match target {
                    None => CtNat::Existing,
                    Some(ip) => {
                        // A NAT to an address creates the mapping.
                        action.commit = true;
                        let range = NatRange {
                            ipv6: ip.format == Format::Ipv6,
                            addr_min: ip.value,
                            addr_max: ip.value,
                            ports: *ports,
                        };
                        match kind {
                            Nat::Dnat | Nat::DnatInCzone => CtNat::Dst(range),
                            Nat::Snat | Nat::SnatInCzone => CtNat::Src(range),
                        }
                    }
                });
            }
            CtOp::Lb(lb) => match &lb.backends {
                None => action.nat = Some(CtNat::Existing),
                Some(backends) => {
                    action.commit = true;
                    action.nat = Some(CtNat::DstSelect(
                        backends
                            .iter()
                            .map(|b| Backend {
                                ipv6: b.ip.format == Format::Ipv6,
                                addr: b.ip.value,
                                port: b.port,
                            })
                            .collect(),
                    ));
                    // ct_mark.natted (ct_label.natted for the old
                    // ct_lb), plus the SNAT hints the flags ask for.
                    let mut bits: u32 = 1 << 1;
                    for flag in &lb.flags {
                        match flag.as_str() {
                            "skip_snat" => bits |= 1 << 2,
                            "force_snat" => bits |= 1 << 3,
                            _ => {}
                        }
                    }
                    if lb.mark {
                        action.mark = Some((bits, bits));
                    } else {
                        action.label = Some((bits.into(), bits.into()));
                    }
                }
            },
        }
        action
    }
}

/// Bits written: (value, mask).
type Masked<T> = Option<(T, T)>;

/// The `ct_mark` and `ct_label` bits a commit writes.
pub(super) fn commit_writes(
    writes: impl IntoIterator<Item = (FieldRef, u128)>,
) -> (Masked<u32>, Masked<u128>) {
    let (mut mark, mut label): (Masked<u128>, Masked<u128>) = (None, None);
    for (f, value) in writes {
        let Some((k, low, width)) = place(&f) else {
            continue;
        };
        let m = ones(width) << low;
        let target = match k {
            KeyField::CtMark => &mut mark,
            KeyField::CtLabel => &mut label,
            _ => continue,
        };
        let (v, old) = target.unwrap_or((0, 0));
        *target = Some(((v & !m) | ((value << low) & m), old | m));
    }
    (mark.map(|(v, m)| (v as u32, m as u32)), label)
}

impl<'a> Interp<'a> {
    /// Conntrack then the next table: the rest of this flow's actions do
    /// not run (ovn-controller puts nothing after these). Tracing asks the
    /// [`Conntrack`]; translating replays what the datapath's conntrack
    /// did in an earlier pass, or ends the pass here.
    pub(super) fn conntrack(
        &mut self,
        op: CtOp,
        pkt: &mut Packet,
        pipeline: Pipeline,
        table: u8,
        depth: usize,
    ) -> Flow {
        let zone = self.zone(pkt, pipeline, op.role());
        let resume = table.saturating_add(1);
        let executing = self.executing();
        if let Some(rec) = self.rec.as_mut().filter(|r| !(executing && r.active())) {
            let n = rec.uses;
            rec.uses += 1;
            if let Some(after) = rec.replayed(n) {
                // Headers and conntrack state are what the datapath had
                // after this recirculation; metadata is the interpreter's.
                let after = *after;
                for (slot, value) in pkt.key.iter_mut().enumerate() {
                    if !METADATA.iter().any(|f| f.index() == slot) {
                        *value = after[slot];
                    }
                }
                let pass = u8::try_from(n + 1).unwrap_or(u8::MAX);
                pkt.prov = Provenance::headers_input(pass);
                if rec.active() {
                    rec.begin(&pkt.key);
                }
                self.table(pkt, pipeline, resume, depth + 1);
                return Flow::Stop;
            }
            rec.commit(&pkt.key, &pkt.prov);
            rec.emit(DpAction::Ct(op.datapath_action(zone)));
            let stack_origins: Vec<Origin> = pkt.stack.iter().map(|(_, o)| *o).collect();
            rec.pin_frozen(&pkt.prov, pkt.id, &stack_origins);
            let mut metadata = [0; METADATA.len()];
            for (m, f) in metadata.iter_mut().zip(METADATA) {
                *m = pkt.key[f.index()];
            }
            rec.out.freeze = Some(FrozenState {
                pass: u8::try_from(n + 1).unwrap_or(u8::MAX),
                datapath: pkt.dp,
                pipeline,
                table: resume,
                depth: u16::try_from(depth + 1).unwrap_or(u16::MAX),
                metadata,
                stack: pkt.stack.iter().map(|(v, _)| *v).collect(),
                pending: rec
                    .pending
                    .iter()
                    .map(|p| PendingWork {
                        site: p.site,
                        context: p.context,
                        index: p.index,
                        packet: (p.packet_id != pkt.id).then(|| Box::new(p.key)),
                    })
                    .collect(),
            });
            return Flow::Stop;
        }
        let mut state = self.ct.next_state(zone, &pkt.key);
        match op {
            CtOp::Next | CtOp::CommitNat => {}
            CtOp::Nat {
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
                    state |= if dst { ct_state::DNAT } else { ct_state::SNAT };
                }
            }
            CtOp::Lb(lb) => {
                if let Some(backends) = &lb.backends {
                    let choices: Vec<(u128, Format, Option<u16>)> = backends
                        .iter()
                        .map(|b| (b.ip.value, b.ip.format, b.port))
                        .collect();
                    // New or established, the packet leaves conntrack
                    // addressed to the backend: a new connection gets one
                    // chosen, an established one its recorded mapping (the
                    // Conntrack knows which).
                    let chosen = self.ct.choose_backend(&choices);
                    if let Some(&(ip, format, port)) = choices.get(chosen) {
                        rewrite_endpoint(&mut pkt.key, true, ip, format, port);
                    }
                    state |= ct_state::DNAT;
                }
            }
        }
        self.record_ct(pkt, zone, state);
        set_key_field(&mut pkt.key, KeyField::CtState, u128::from(state));
        self.table(pkt, pipeline, resume, depth + 1);
        Flow::Stop
    }

    /// A conntrack action that does not recirculate (`ct_commit`): the
    /// datapath runs it in place; a trace just sets the fields.
    pub(super) fn ct_commit(
        &mut self,
        pkt: &Packet,
        pipeline: Pipeline,
        writes: Vec<(FieldRef, u128)>,
    ) {
        // ovn-controller encodes `ct_commit { }` in the DNAT zone on a
        // router (a gateway router's lr_out_post_undnat commits there what
        // lr_out_undnat's ct_dnat tracked), in the port's zone on a switch.
        let zone = self.zone(pkt, pipeline, ZoneRole::Default);
        if let Some(rec) = self.recording() {
            let (mark, label) = commit_writes(writes);
            rec.commit(&pkt.key, &pkt.prov);
            rec.emit(DpAction::Ct(CtAction {
                zone,
                commit: true,
                mark,
                label,
                ..Default::default()
            }));
            rec.conntrack_done();
        }
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
}
