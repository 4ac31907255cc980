//! NAT: choosing a new connection's translated tuple, and rewriting flow
//! keys with a connection's translation.
//!
//! A translated connection is recorded as OVS and Linux record it: its
//! reply tuple is what the other end's answers look like after
//! translation, so the table finds replies by that tuple and the
//! translation of a packet in one direction is the reverse of the other
//! direction's tuple. Choosing a reply tuple means finding one no other
//! connection uses: the address comes from a hash over the range; the
//! port is searched from a starting point (OVS's `nat_get_unique_tuple`):
//! the translated port range for DNAT with ports, then, or for SNAT, the
//! source port, first the packet's own when no range is given, within
//! the same class of ports (1–511, 600–1023, 1024–65535).

use super::tuple::CtTuple;
use crate::flow::{slots, FlowKey};
use ironflow_pipeline::dpaction::{Backend, CtNat, NatRange};
use ironflow_pipeline::interp::ct_state;

/// Which side of a connection its translation changes, seen from the
/// original direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    None,
    Src,
    Dst,
}

impl NatKind {
    /// The `ct_state` bit for a packet in this direction: a reply to a
    /// DNATed connection has its source changed, so it is `snat` (OVS's
    /// `nat_action_reverse`).
    pub(crate) fn state_bit(self, reply: bool) -> u32 {
        match (self, reply) {
            (NatKind::None, _) => 0,
            (NatKind::Src, false) | (NatKind::Dst, true) => ct_state::SNAT,
            (NatKind::Src, true) | (NatKind::Dst, false) => ct_state::DNAT,
        }
    }
}

/// A fixed-key mix for choices that must be the same on every run and
/// every node (load-balancer backends, NAT addresses): the table's own
/// hash is seeded at random.
pub(crate) fn stable_hash(t: &CtTuple) -> u64 {
    let mut h = 0x2545_f491_4f6c_dd1d_u64;
    let w = t.words();
    // The zone is left out so a connection picks the same backend in
    // whichever zone it is balanced.
    for x in &w[..5] {
        h = super::table::fold_mul(h ^ x, 0x9e37_79b9_7f4a_7c15);
    }
    h
}

/// A search over ports `[min, max]` from `start`, wrapping (OVS tries up
/// to 128 ports from the start, then rounds of 64, 32, 16 and 8 from
/// other starting points; here those starts come from the tuple's hash, so the
/// outcome is deterministic).
#[derive(Debug, Clone, Copy)]
struct PortSearch {
    min: u16,
    max: u16,
    curr: u16,
    left_in_round: u32,
    round_len: u32,
    seed: u64,
}

impl PortSearch {
    fn new(min: u16, max: u16, start: u16, seed: u64) -> PortSearch {
        let span = u32::from(max - min) + 1;
        let n = span.min(128);
        PortSearch {
            min,
            max,
            curr: start.clamp(min, max),
            left_in_round: n,
            round_len: n,
            seed,
        }
    }

    fn span(&self) -> u32 {
        u32::from(self.max - self.min) + 1
    }
}

impl Iterator for PortSearch {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        if self.left_in_round == 0 {
            if self.round_len >= self.span() || self.round_len < 16 {
                return None;
            }
            self.round_len /= 2;
            self.left_in_round = self.round_len;
            self.seed = super::table::fold_mul(self.seed ^ 0x5851_f42d, 0x9e37_79b9_7f4a_7c15);
            self.curr = self.min + (self.seed % u64::from(self.span())) as u16;
        }
        self.left_in_round -= 1;
        let p = self.curr;
        self.curr = if self.curr == self.max {
            self.min
        } else {
            self.curr + 1
        };
        Some(p)
    }
}

/// The class of source ports a translated source port stays in.
fn port_class(p: u16) -> (u16, u16) {
    if p < 512 {
        (1, 511)
    } else if p < 1024 {
        (600, 1023)
    } else {
        (1024, 65535)
    }
}

/// An address in `[min, max]` picked by `h`; an all-zero range means
/// "keep the address" (`nat(src)` with ports only).
fn pick_addr(r: &NatRange, keep: u128, h: u64) -> u128 {
    if r.addr_min == 0 {
        return keep;
    }
    let span = r.addr_max.saturating_sub(r.addr_min);
    if span == 0 {
        r.addr_min
    } else if span == u128::MAX {
        u128::from(h)
    } else {
        r.addr_min + u128::from(h) % (span + 1)
    }
}

/// The translation a new connection asks for, with the candidate reply
/// tuples to try in order.
pub(crate) struct Plan {
    pub kind: NatKind,
    base: CtTuple,
    dport: Option<PortSearch>,
    sport: Option<PortSearch>,
    first: bool,
}

impl Plan {
    /// The plan for a new connection with original tuple `orig`, or
    /// `None` when `nat` translates nothing for it (`Existing`, no
    /// backend of its address family).
    pub(crate) fn new(orig: &CtTuple, nat: &CtNat) -> Option<Plan> {
        let h = stable_hash(orig);
        let rev = orig.reverse();
        match nat {
            CtNat::Existing => None,
            CtNat::Src(r) => (r.ipv6 == orig.ipv6).then(|| Plan::snat(orig, rev, r, h)),
            CtNat::Dst(r) => (r.ipv6 == orig.ipv6).then(|| Plan::dnat(orig, rev, r, h)),
            CtNat::DstSelect(backends) => {
                let b = pick_backend(backends, orig.ipv6, h)?;
                let r = NatRange {
                    ipv6: b.ipv6,
                    addr_min: b.addr,
                    addr_max: b.addr,
                    ports: b.port.map(|p| (p, p)),
                };
                Some(Plan::dnat(orig, rev, &r, h))
            }
        }
    }

    fn snat(orig: &CtTuple, mut rev: CtTuple, r: &NatRange, h: u64) -> Plan {
        rev.dst = pick_addr(r, orig.src, h);
        let sport = orig.has_ports().then(|| match r.ports {
            Some((lo, hi)) => {
                let (lo, hi) = (lo.min(hi), lo.max(hi));
                let start = lo + (h % (u64::from(hi - lo) + 1)) as u16;
                PortSearch::new(lo, hi, start, h)
            }
            None => {
                let (lo, hi) = port_class(orig.sport);
                PortSearch::new(lo, hi, orig.sport, h)
            }
        });
        Plan {
            kind: NatKind::Src,
            base: rev,
            dport: None,
            sport,
            first: true,
        }
    }

    fn dnat(orig: &CtTuple, mut rev: CtTuple, r: &NatRange, h: u64) -> Plan {
        rev.src = pick_addr(r, orig.dst, h);
        let mut dport = None;
        if orig.has_ports() {
            if let Some((lo, hi)) = r.ports {
                let (lo, hi) = (lo.min(hi), lo.max(hi));
                let start = lo + (h % (u64::from(hi - lo) + 1)) as u16;
                rev.sport = start;
                dport = Some(PortSearch::new(lo, hi, start, h));
            }
        }
        // When every destination port is taken, the source port moves,
        // as OVS does for DNAT.
        let sport = orig.has_ports().then(|| {
            let (lo, hi) = port_class(orig.sport);
            PortSearch::new(lo, hi, orig.sport, h.rotate_left(17))
        });
        Plan {
            kind: NatKind::Dst,
            base: rev,
            dport,
            sport,
            first: true,
        }
    }

    /// The next reply tuple to try, `None` when the search is over (the
    /// NAT range is exhausted for this connection).
    pub(crate) fn next_candidate(&mut self) -> Option<CtTuple> {
        if let Some(s) = &mut self.dport {
            if let Some(p) = s.next() {
                self.first = false;
                let mut t = self.base;
                t.sport = p;
                return Some(t);
            }
            self.dport = None;
        }
        if let Some(s) = &mut self.sport {
            let p = s.next()?;
            self.first = false;
            let mut t = self.base;
            t.dport = p;
            return Some(t);
        }
        // No ports to vary: the one tuple the addresses give.
        if std::mem::take(&mut self.first) {
            return Some(self.base);
        }
        None
    }
}

/// The backend of the packet's address family that `h` picks.
fn pick_backend(backends: &[Backend], ipv6: bool, h: u64) -> Option<Backend> {
    let n = backends.iter().filter(|b| b.ipv6 == ipv6).count();
    if n == 0 {
        return None;
    }
    // Fold the high half in so that a power-of-two count uses more than
    // the hash's low bits.
    let i = ((h ^ (h >> 32)) % n as u64) as usize;
    backends.iter().filter(|b| b.ipv6 == ipv6).nth(i).copied()
}

/// Rewrites `key` as the packet looks after translation: `to` is the
/// translated tuple (the reverse of the other direction's tuple). Ports
/// change only for protocols whose ports the key holds; an ICMP error
/// (`related`) has only its outer address on the translated side changed,
/// as OVS does (its embedded header is left to the executor).
pub(crate) fn rewrite(key: &mut FlowKey, to: &CtTuple, manip_src: bool, related: bool) {
    if related {
        if manip_src {
            key.set(slots::IP_SRC, to.src);
        } else {
            key.set(slots::IP_DST, to.dst);
        }
        return;
    }
    key.set(slots::IP_SRC, to.src);
    key.set(slots::IP_DST, to.dst);
    if to.has_ports() {
        key.set(slots::TP_SRC, u128::from(to.sport));
        key.set(slots::TP_DST, u128::from(to.dport));
    }
}
