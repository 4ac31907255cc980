//! Translation of one pass of a packet into datapath actions, with the mask
//! of input bits they depend on: what the fast path caches as a megaflow.
//!
//! A pass ends where a conntrack action recirculates. The datapath runs
//! the packet through its conntrack, then looks it up again under the id
//! of the frozen state ([`FrozenState`]: where in the pipelines to resume,
//! the registers and logical ports, the work still pending). On a miss in
//! a later pass the datapath asks again with the packet as it entered the
//! first pass and what conntrack made of it each time: the interpreter
//! replays the earlier passes with those results and records only the pass
//! asked for. Replaying keeps the interpreter a plain recursive walk, and a
//! miss is the slow path anyway.
//!
//! Header rewrites are emitted lazily, as OVS commits them: just before an
//! output or a conntrack action, each header slot whose value differs from
//! what the datapath's packet holds becomes a `Set` (or a `DecTtl` where the
//! value is the input less one), and a value computed from input slots
//! pins those slots in the mask.

use super::provenance::{unwildcard, Origin, Provenance, METADATA};
use crate::classifier::{Key, ZERO_KEY};
use crate::dpaction::DpAction;
use crate::lflow::symbols::KeyField;
use crate::network::Pipeline;
use crate::Uuid;

/// Where a packet enters the logical network on this chassis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// From a local port: the ingress pipeline of its datapath.
    Port { datapath: Uuid, inport: u32 },
    /// From a tunnel: the egress pipeline of the datapath the VNI names,
    /// for the port (or multicast group) the Geneve option names.
    Tunnel {
        datapath: Uuid,
        inport: u32,
        outport: u32,
    },
}

/// One pass, translated.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// What the datapath does, in order. Empty: the packet is dropped.
    pub actions: Vec<DpAction>,
    /// The input bits the actions depend on (header and conntrack slots;
    /// metadata follows from the input port or the frozen state).
    pub mask: Key,
    /// Set when the pass ends in a recirculation: the state to resume,
    /// which the datapath names with a recirculation id.
    pub freeze: Option<FrozenState>,
    /// The pass needs the controller (it generates or learns from the
    /// packet): every packet of it goes there, as it entered the pass.
    pub controller: bool,
    /// Why the packet was dropped, if it was.
    pub drop_reason: Option<String>,
}

/// Everything a later pass depends on that is not in the packet's
/// headers or conntrack state (OVS's frozen state).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrozenState {
    /// The pass that resumes (1 after the first recirculation).
    pub pass: u8,
    pub datapath: Uuid,
    pub pipeline: Pipeline,
    /// The table the pass resumes at.
    pub table: u8,
    pub depth: u16,
    /// The registers, flags and logical ports ([`METADATA`]).
    pub metadata: [u128; METADATA.len()],
    pub stack: Vec<u128>,
    /// Work left in enclosing frames, innermost last.
    pub pending: Vec<PendingWork>,
}

/// A frame with work left after the recirculation: the rest of an action
/// list, or the rest of a multicast group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PendingWork {
    /// Which action list or group (its address within the program).
    pub site: usize,
    /// The pipeline and table an action list runs in (one list may serve
    /// several flows).
    pub context: u16,
    pub index: u32,
    /// The packet that work runs on, when it is another copy than the
    /// one that recirculated (its values are then part of the state).
    pub packet: Option<Box<Key>>,
}

/// A frame pushed while the interpreter is inside it.
pub(super) struct Pending {
    pub site: usize,
    pub context: u16,
    pub index: u32,
    pub packet_id: u32,
    pub key: Key,
    pub prov: Provenance,
}

/// Header slots the datapath can rewrite (conntrack slots change only
/// through conntrack).
fn rewritable(slot: usize) -> bool {
    !METADATA.iter().any(|f| f.index() == slot)
        && ![KeyField::CtState, KeyField::CtMark, KeyField::CtLabel]
            .iter()
            .any(|f| f.index() == slot)
}

/// The recording side of a datapath-mode interpreter run.
pub(super) struct Recorder<'r> {
    /// The pass to record.
    pub target: u8,
    /// The key after each earlier pass's conntrack.
    recorded: &'r [Key],
    /// Recirculating conntrack actions met so far.
    pub uses: usize,
    pub pending: Vec<Pending>,
    pub out: Translation,
    /// The packet as the datapath holds it, and where its values came
    /// from, as far as the emitted actions go.
    held: Key,
    held_origin: [Origin; KeyField::COUNT],
    /// The pass is carried out rather than recorded (`interp::execute`).
    pub execute: bool,
}

impl<'r> Recorder<'r> {
    pub(super) fn new(recorded: &'r [Key]) -> Self {
        Recorder {
            target: u8::try_from(recorded.len()).unwrap_or(u8::MAX),
            recorded,
            uses: 0,
            pending: Vec::new(),
            out: Translation {
                mask: ZERO_KEY,
                ..Default::default()
            },
            held: ZERO_KEY,
            held_origin: [Origin::Input; KeyField::COUNT],
            execute: false,
        }
    }

    /// Whether the pass being walked is the one recorded.
    pub(super) fn active(&self) -> bool {
        self.uses == usize::from(self.target)
    }

    /// Whether the walk is over (frozen or handed to the controller).
    pub(super) fn stopped(&self) -> bool {
        self.out.freeze.is_some() || self.out.controller
    }

    /// The recorded pass starts with the datapath's packet equal to `key`.
    pub(super) fn begin(&mut self, key: &Key) {
        self.held = *key;
        self.held_origin = Provenance::headers_input(self.target).slots;
    }

    /// What conntrack made of the packet at recirculation `n`, if that
    /// recirculation is replayed rather than recorded.
    pub(super) fn replayed(&self, n: usize) -> Option<&Key> {
        self.recorded.get(n)
    }

    pub(super) fn emit(&mut self, action: DpAction) {
        // Crossing several datapaths clears conntrack state each time;
        // once is enough.
        if action == DpAction::CtClear && self.out.actions.last() == Some(&DpAction::CtClear) {
            return;
        }
        self.out.actions.push(action);
    }

    pub(super) fn drop(&mut self, reason: impl FnOnce() -> String) {
        if self.active() && self.out.drop_reason.is_none() {
            self.out.drop_reason = Some(reason());
        }
    }

    /// Emits the rewrites that make the datapath's packet hold `key`'s
    /// header values.
    pub(super) fn commit(&mut self, key: &Key, prov: &Provenance) {
        let current = prov.pass == self.target;
        for slot in (0..KeyField::COUNT).filter(|&s| rewritable(s)) {
            let value = key[slot];
            // A copy from an earlier pass is fixed by the frozen state.
            let origin = if current {
                prov.slots[slot]
            } else {
                Origin::Fixed
            };
            let held = self.held_origin[slot];
            let same = match (origin, held) {
                (Origin::Input, Origin::Input) => true,
                (Origin::Fixed, Origin::Fixed) | (Origin::Dec(_), Origin::Dec(_)) => {
                    value == self.held[slot] && origin == held
                }
                _ => false,
            };
            if same {
                continue;
            }
            let field = KeyField::ALL[slot];
            match (origin, held) {
                (Origin::Dec(n), Origin::Input) if field == KeyField::IpTtl => {
                    for _ in 0..n {
                        self.out.actions.push(DpAction::DecTtl);
                    }
                }
                _ => {
                    self.out.actions.push(DpAction::Set { field, value });
                    unwildcard(origin.deps(slot), &mut self.out.mask);
                }
            }
            self.held[slot] = value;
            self.held_origin[slot] = origin;
        }
    }

    /// Pins the input slots a value of `origin` in `slot`, read from a copy
    /// with provenance `prov`, depends on: a value that goes into the
    /// frozen state (and so into the recirculation id) must be the same
    /// for every packet the megaflow covers.
    pub(super) fn pin(&mut self, prov: &Provenance, slot: usize) {
        if prov.pass == self.target {
            unwildcard(prov.slots[slot].deps(slot), &mut self.out.mask);
        }
    }

    /// Pins what a frozen state holds: the recirculating packet's metadata
    /// and stack, and every slot of the other copies that work is pending
    /// on.
    pub(super) fn pin_frozen(&mut self, current: &Provenance, current_id: u32, stack: &[Origin]) {
        for f in METADATA {
            self.pin(current, f.index());
        }
        if current.pass == self.target {
            // Pushed values were moved out of their slots: fixed, or
            // derived from input slots.
            for o in stack {
                if let Origin::Derived(deps) = o {
                    unwildcard(*deps, &mut self.out.mask);
                }
            }
        }
        let others: Vec<Provenance> = self
            .pending
            .iter()
            .filter(|p| p.packet_id != current_id)
            .map(|p| p.prov.clone())
            .collect();
        for prov in others {
            for slot in 0..KeyField::COUNT {
                self.pin(&prov, slot);
            }
        }
    }

    /// The conntrack slots after a conntrack action the datapath runs:
    /// whatever it answers, the packet holds.
    pub(super) fn conntrack_done(&mut self) {
        for f in [KeyField::CtState, KeyField::CtMark, KeyField::CtLabel] {
            self.held_origin[f.index()] = Origin::Input;
        }
    }
}
