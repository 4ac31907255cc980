//! Userspace connection tracking: what the datapath's `ct()` action does
//! (OVS's lib/conntrack.c), for OVN's `ct_next`, `ct_commit`, `ct_dnat`,
//! `ct_snat` and `ct_lb_mark`.
//!
//! [`Conntrack::execute`] takes a packet's flow key (and its IP header
//! bytes, for ICMP), looks its connection up in a zone, moves the
//! connection's state on, commits new connections when asked, applies NAT
//! by rewriting the key's addresses and ports, and leaves `ct_state`,
//! `ct_mark` and `ct_label` in the key as the next pipeline pass sees
//! them. The executor turns the key's rewritten fields into packet edits.
//!
//! # Semantics (OVS userspace conntrack's, where it and Linux differ)
//!
//! - Every packet that passes gets `trk`. Zones never see each other's
//!   connections.
//! - No connection: `new`, or `inv` when the packet cannot open one: a
//!   TCP SYN|ACK or impossible flag combination, an ICMP echo *reply*,
//!   an ICMP error matching no connection, an ICMP type conntrack does not
//!   know (e.g. neighbour discovery), a later IP fragment (there is no
//!   reassembly), an unreadable packet. A TCP packet without SYN (a plain
//!   ACK, a FIN|ACK, an RST) *does* open a connection, as in OVS
//!   userspace (`tcp_valid_new`: connections are picked up mid-stream)
//!   and Linux with `nf_conntrack_tcp_loose`.
//! - Only `commit` creates an entry. Until the other end has answered, a
//!   committed UDP/other or ICMP connection's packets are still `new`
//!   (OVS `OTHERS_FIRST/MULTIPLE`, `ICMPS_FIRST`; Linux the same); a TCP
//!   one's non-SYN packets are `est` at once and a retransmitted SYN is
//!   `new` (OVS `tcp_conn_update`). Answers are `est|rpl`.
//! - TCP is followed by its flags only (see [`tcp`]): no sequence-window
//!   checks, so out-of-window segments are not `inv`. A SYN on a connection
//!   both ends have closed ends it and opens a new one.
//! - An ICMP/ICMPv6 error whose embedded header belongs to a connection is
//!   `rel` (with `rpl` when it travels in the reply direction), and does
//!   not touch the connection's state.
//! - `ct_mark`/`ct_label` are the connection's (0 without one); a commit
//!   writes `(value & mask) | (old & !mask)` into both the connection and
//!   the key.
//! - NAT on commit of a new connection: `CtNat::Src`, `CtNat::Dst`
//!   and `CtNat::DstSelect` choose a translated tuple no other
//!   connection uses (see [`nat`]); any NAT action on an existing
//!   connection applies its recorded translation: forward packets get the
//!   forward one, replies the reverse. The key is rewritten and `snat` or
//!   `dnat` set by which side changed (a reply to a DNATed connection is
//!   `snat`). Without commit a new connection is not translated.
//! - A packet whose incoming `ct_state` already has `snat`/`dnat` was
//!   translated by a previous `ct()` in this zone: it is looked up by its
//!   untranslated tuple and not translated again (OVS's
//!   `initial_conn_lookup`). The executor must therefore clear `ct_state`
//!   (as `ct_clear` does) before a `ct()` in a *different* zone than the
//!   packet's previous one, as OVS resets it when the zone changes.
//! - Over [`CtConfig::max_entries`] a new connection is not committed
//!   (still `new`) and counted in [`CtStats::limit_drops`].
//! - A packet that leaves its connection's state as it was moves the
//!   expiry only by more than 1/1024 of the timeout (at most a second),
//!   so a busy connection is not written by every packet: it lives at
//!   least 99.9 % of its timeout after its last packet (Linux refreshed
//!   timeouts with a second's slack for the same reason). A state change
//!   always rearms it.
//! - [`Conntrack::execute_repeated`] answers a packet that repeats one at
//!   the same time (a worker's batch) which changed nothing from memory:
//!   as if the batch had run at once, before any other thread's change.
//!
//! Not done: sequence-window tracking, fragment reassembly, checksum
//! validation, ALGs (FTP/TFTP), per-zone limits, rewriting the embedded
//! header of a NATed connection's ICMP error (only its outer address is
//! translated), and NAT of the ICMP echo identifier (it is not in the flow
//! key; ICMP connections are translated by address only).

mod nat;
mod proto;
mod table;
pub mod tcp;
mod tuple;

#[cfg(test)]
mod tests;

pub use nat::NatKind;
pub use proto::CtTimeouts;
pub use tcp::TcpState;
pub use tuple::CtTuple;

use crate::flow::{slots, FlowKey};
use ironflow_pipeline::dpaction::CtAction;
use ironflow_pipeline::interp::ct_state;
use proto::{ProtoState, Update};
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering::Relaxed;
pub use table::Hint as CtHint;
use table::{bump, Clash, ConnState, Handle, NewConn, Table};
use tuple::Extracted;

/// Conntrack settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtConfig {
    /// Most connections at once (OVS's `dpctl/ct-set-maxconns`).
    pub max_entries: usize,
    /// How many independently locked parts the table has (rounded up to a
    /// power of two).
    pub shards: usize,
    pub timeouts: CtTimeouts,
    /// About how many index entries one [`Conntrack::sweep`] looks at.
    pub sweep_budget: usize,
}

impl Default for CtConfig {
    /// OVS's defaults: 3,000,000 connections, its default timeout policy.
    fn default() -> Self {
        CtConfig {
            max_entries: 3_000_000,
            shards: 256,
            timeouts: CtTimeouts::default(),
            sweep_budget: 16_384,
        }
    }
}

/// Counters since creation, summed over the shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtStats {
    /// Packets looked up in the table.
    pub lookups: u64,
    /// Of those, packets that found their connection.
    pub hits: u64,
    /// Packets answered `new`.
    pub new: u64,
    /// Connections created.
    pub committed: u64,
    /// Packets answered `inv`.
    pub invalid: u64,
    /// Commits refused because the table was full.
    pub limit_drops: u64,
    /// Commits refused because no unique reply tuple was found (NAT range
    /// exhausted, or the reply tuple is another connection's).
    pub insert_failed: u64,
    /// Connections removed because they timed out.
    pub expired: u64,
    /// Connections in the table now.
    pub entries: u64,
}

/// One connection, as `ovs-appctl dpctl/dump-conntrack` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    pub orig: CtTuple,
    /// The reply direction's tuple (translated, for NAT).
    pub reply: CtTuple,
    pub nat: NatKind,
    pub mark: u32,
    pub label: u128,
    /// Protocol state name (`ESTABLISHED`, `SYN_SENT`, … for TCP; `FIRST`,
    /// `MULTIPLE`, `BIDIR`, `REPLY` for the others).
    pub state: &'static str,
    pub tcp_state: Option<TcpState>,
    /// When it times out if idle.
    pub expires_ns: u64,
}

fn proto_name(t: &CtTuple) -> String {
    match (t.proto, t.ipv6) {
        (6, _) => "tcp".into(),
        (17, _) => "udp".into(),
        (132, _) => "sctp".into(),
        (136, _) => "udplite".into(),
        (1, false) => "icmp".into(),
        (58, true) => "icmpv6".into(),
        (p, _) => p.to_string(),
    }
}

impl fmt::Display for CtEntry {
    /// `tcp,orig=(…),reply=(…),zone=5,mark=1,labels=0x2,protoinfo=(state=ESTABLISHED)`
    /// with zone, mark and labels left out when zero, as OVS writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},orig=({}),reply=({})",
            proto_name(&self.orig),
            self.orig,
            self.reply
        )?;
        if self.orig.zone != 0 {
            write!(f, ",zone={}", self.orig.zone)?;
        }
        if self.mark != 0 {
            write!(f, ",mark={}", self.mark)?;
        }
        if self.label != 0 {
            write!(f, ",labels={:#x}", self.label)?;
        }
        if let Some(s) = self.tcp_state {
            write!(f, ",protoinfo=(state={})", s.name())?;
        }
        Ok(())
    }
}

/// What a packet of an existing connection came to.
enum Found {
    Done(u32, u32, u128),
    /// The connection is over; the packet starts a new one.
    Reopen(Handle),
}

/// The connection tracker, shared by all worker threads.
pub struct Conntrack {
    table: Table,
    cfg: CtConfig,
}

const NAT_BITS: u32 = ct_state::SNAT | ct_state::DNAT;

impl Conntrack {
    pub fn new(cfg: CtConfig) -> Conntrack {
        // A seed no sender can guess, from the standard library's own
        // per-process random keys.
        let seed = RandomState::new().build_hasher().finish();
        Conntrack {
            table: Table::new(cfg.shards, cfg.max_entries, seed),
            cfg,
        }
    }

    pub fn config(&self) -> &CtConfig {
        &self.cfg
    }

    /// Runs one packet through conntrack for `action` at time `now_ns`:
    /// `key` is its flow key (ct fields in, ct fields and NAT rewrites
    /// out), `l3` its bytes from the IP header on (read only for ICMP).
    /// Returns the new `ct_state`.
    pub fn execute(&self, key: &mut FlowKey, l3: &[u8], action: &CtAction, now_ns: u64) -> u32 {
        self.execute_hinted(key, l3, action, now_ns, &mut CtHint::default())
    }

    /// [`Conntrack::execute`] with a guess at where the packet's
    /// connection is (what the last call with this `hint` found): a
    /// worker keeps one per cached flow, so that the packets of an
    /// established connection find it without hashing their tuple. The
    /// guess is checked, so a wrong one costs only time.
    #[inline]
    pub fn execute_hinted(
        &self,
        key: &mut FlowKey,
        l3: &[u8],
        action: &CtAction,
        now_ns: u64,
        hint: &mut CtHint,
    ) -> u32 {
        self.execute_repeated(key, l3, action, now_ns, hint, &mut CtMemos::default())
    }

    /// [`Conntrack::execute_hinted`] for a packet that may repeat one
    /// `memos` remembers (the same connection, flags, action and time: the
    /// next packet of a burst in the same batch). A packet that found its
    /// connection and changed nothing in it (no new state, expiry, mark
    /// or label) is remembered; one that repeats it gets the same answer
    /// and is counted, without reading the table: it would change nothing
    /// either. Any call that may change a connection forgets them all.
    /// (Another thread's change to a connection meanwhile is seen after
    /// the batch, as if the batch had run before it: `now` is the batch's.)
    #[inline]
    pub fn execute_repeated(
        &self,
        key: &mut FlowKey,
        l3: &[u8],
        action: &CtAction,
        now_ns: u64,
        hint: &mut CtHint,
        memos: &mut CtMemos,
    ) -> u32 {
        if memos.now != now_ns {
            memos.forget(now_ns);
        }
        if let Some(state) = self.hit(key, action, now_ns, hint, memos) {
            return state;
        }
        memos.forget(now_ns);
        let (state, mark, label) = self.run_any(key, l3, action, now_ns);
        key.set(slots::CT_STATE, u128::from(state));
        key.set(slots::CT_MARK, u128::from(mark));
        key.set(slots::CT_LABEL, label);
        state
    }

    /// Counts `packets` the caller answered as
    /// [`Conntrack::execute_repeated`] would have from a memo: ones that
    /// follow, in the same batch, a packet of the same key whose every
    /// answer was remembered.
    #[inline]
    pub fn count_repeated(&self, state: u32, packets: u64) {
        let stats = self.table.stats();
        let add = |c: &std::sync::atomic::AtomicU64| {
            c.store(c.load(Relaxed).wrapping_add(packets), Relaxed)
        };
        add(&stats.hits);
        if state & ct_state::NEW != 0 {
            add(&stats.new);
        }
    }

    /// Asks for the cache lines [`Conntrack::execute_hinted`] will read
    /// for a packet with `key` in `zone`: the hinted slot, or where the
    /// tuple's index entry is. A worker calls it for a whole batch before
    /// running any of it, so that the misses overlap.
    #[inline]
    pub fn prefetch(&self, key: &FlowKey, zone: u16, hint: &CtHint) {
        if *hint != CtHint::default() {
            self.table.prefetch_hint(hint);
        } else if let Some(w) = tuple::fast_words(key, zone) {
            self.table.prefetch_home(self.table.hash_words(&w));
        }
    }

    /// The common case on its own, small enough for the compiler to keep
    /// in registers: a TCP/UDP/SCTP packet, not translated yet in this
    /// zone, of a live connection that needs no translation. Writes the
    /// ct fields into `key` and returns the state; `None` (with nothing
    /// changed) for anything else, which [`Conntrack::run_any`] handles.
    #[inline(always)]
    fn hit(
        &self,
        key: &mut FlowKey,
        action: &CtAction,
        now: u64,
        hint: &mut CtHint,
        memos: &mut CtMemos,
    ) -> Option<u32> {
        let prev = key.get(slots::CT_STATE) as u32;
        if prev & NAT_BITS != 0 {
            return None;
        }
        let w = tuple::fast_words(key, action.zone)?;
        let flags = key.get(slots::TCP_FLAGS) as u16;
        let asked = MemoAction::of(action);
        let seen = memos.len.min(MEMOS);
        if let Some(memo) = memos.list[..seen].iter().find(|m| {
            // Word by word: an array compare is a call to `memcmp`.
            let diff = m.w.iter().zip(&w).fold(0, |acc, (a, b)| acc | (a ^ b));
            diff == 0 && m.flags == flags && m.action == asked
        }) {
            let stats = self.table.stats();
            bump(&stats.hits);
            if memo.state & ct_state::NEW != 0 {
                bump(&stats.new);
            }
            key.set(slots::CT_STATE, u128::from(memo.state));
            key.set(slots::CT_MARK, u128::from(memo.mark));
            key.set(slots::CT_LABEL, memo.label);
            return Some(memo.state);
        }
        let hash = || self.table.hash_words(&w);
        // The closure's answer is the state, 0 to leave the packet to the
        // general path with nothing written; mark and label go through
        // `ml` (small results keep the closure's value in registers).
        let mut ml = (0u32, 0u128);
        let mut quiet = false;
        let state = self.table.with_hint(&w, hint, hash, now, |h, st| {
            let before = (st.proto.pack(), st.expires, st.mark, st.label);
            if action.nat.is_some() && h.nat != NatKind::None {
                return Some(0);
            }
            let rpl = if h.reply { ct_state::RPL } else { 0 };
            let (proto, (u, tm)) = {
                let mut p = st.proto;
                let r = p.update(h.reply, flags);
                (p, r)
            };
            let state = match u {
                Update::Valid => ct_state::EST | rpl,
                Update::ValidNew => ct_state::NEW,
                // Rare: left to the general path, which counts it.
                Update::Invalid | Update::Reopen => return Some(0),
            };
            // As packed bytes: a compare of the enums is a chain of branches.
            let moved = st.proto.pack() != proto.pack();
            st.proto = proto;
            if let Some(tm) = tm {
                rearm(st, self.cfg.timeouts.get(tm), now, moved);
            }
            if action.commit {
                apply_masks(action, &mut st.mark, &mut st.label);
            }
            ml = (st.mark, st.label);
            quiet = before == (st.proto.pack(), st.expires, st.mark, st.label);
            Some(state | ct_state::TRK)
        })?;
        if state == 0 {
            return None;
        }
        let stats = self.table.stats();
        bump(&stats.hits);
        if state & ct_state::NEW != 0 {
            bump(&stats.new);
        }
        key.set(slots::CT_STATE, u128::from(state));
        key.set(slots::CT_MARK, u128::from(ml.0));
        key.set(slots::CT_LABEL, ml.1);
        if !quiet {
            memos.forget(now);
        } else if let Some(m) = memos.list.get_mut(memos.len) {
            *m = CtMemo {
                state,
                w,
                flags,
                action: asked,
                mark: ml.0,
                label: ml.1,
            };
            memos.len += 1;
        } else {
            memos.epoch = memos.epoch.wrapping_add(1);
        }
        Some(state)
    }

    /// Every packet [`Conntrack::hit`] leaves.
    #[inline(never)]
    fn run_any(
        &self,
        key: &mut FlowKey,
        l3: &[u8],
        action: &CtAction,
        now: u64,
    ) -> (u32, u32, u128) {
        let prev = key.get(slots::CT_STATE) as u32;
        // The tuple as the words the table hashes and compares; most
        // packets' come straight from the key.
        let (w, related) = match tuple::fast_words(key, action.zone) {
            Some(w) => (w, false),
            None => match tuple::extract(key, l3, action.zone) {
                Extracted::Own(t) => (t.words(), false),
                Extracted::Related(t) => (t.words(), true),
                Extracted::Invalid => {
                    bump(&self.table.stats().invalid);
                    return (ct_state::INV | ct_state::TRK, 0, 0);
                }
            },
        };
        let flags = key.get(slots::TCP_FLAGS) as u16;
        let natted = !related && prev & ct_state::TRK != 0 && prev & NAT_BITS != 0;
        let hash = self.table.hash_words(&w);
        let stats = self.table.stats();
        // A commit can lose a race with another thread committing the same
        // connection; it then finds that one on the next round.
        for _ in 0..3 {
            let mut found = None;
            if natted {
                let r = tuple::reverse_words(&w);
                found = self
                    .table
                    .with(&r, self.table.hash_words(&r), now, |h, st| {
                        self.existing(
                            key,
                            h,
                            !h.reply,
                            st,
                            action,
                            flags,
                            now,
                            Some(prev & NAT_BITS),
                            false,
                        )
                    });
            }
            if found.is_none() {
                found = self.table.with(&w, hash, now, |h, st| {
                    self.existing(key, h, h.reply, st, action, flags, now, None, related)
                });
            }
            match found {
                Some(Found::Done(state, mark, label)) => {
                    bump(&stats.hits);
                    if state & ct_state::NEW != 0 {
                        bump(&stats.new);
                    }
                    if state & ct_state::INV != 0 {
                        bump(&stats.invalid);
                    }
                    return (state, mark, label);
                }
                Some(Found::Reopen(h)) => {
                    bump(&stats.hits);
                    self.table.end(&h);
                }
                // Lookups are hits plus misses: one counter per packet.
                None => bump(&stats.misses),
            }
            if related {
                bump(&stats.invalid);
                return (ct_state::INV | ct_state::TRK, 0, 0);
            }
            if let Some(out) = self.open(key, &CtTuple::from_words(&w), hash, action, flags, now) {
                if out.0 & ct_state::NEW != 0 {
                    bump(&stats.new);
                } else {
                    bump(&stats.invalid);
                }
                return out;
            }
        }
        bump(&stats.new);
        (ct_state::NEW | ct_state::TRK, 0, 0)
    }

    /// A packet of connection `c`, in the reply direction when `reply`,
    /// moving `st` (a copy of its state) on. `keep` holds the NAT bits of
    /// a packet already translated in this zone. `None` when the
    /// connection changed under it (the caller reads it again).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn existing(
        &self,
        key: &mut FlowKey,
        c: &Handle,
        reply: bool,
        st: &mut ConnState,
        action: &CtAction,
        flags: u16,
        now: u64,
        keep: Option<u32>,
        related: bool,
    ) -> Option<Found> {
        let rpl = if reply { ct_state::RPL } else { 0 };
        let mut state = if related {
            ct_state::REL | rpl
        } else {
            let before = st.proto.pack();
            let (u, tm) = st.proto.update(reply, flags);
            if let Some(tm) = tm {
                rearm(
                    st,
                    self.cfg.timeouts.get(tm),
                    now,
                    st.proto.pack() != before,
                );
            }
            match u {
                Update::Valid => ct_state::EST | rpl,
                Update::ValidNew => ct_state::NEW,
                Update::Invalid => ct_state::INV,
                Update::Reopen => return Some(Found::Reopen(*c)),
            }
        };
        if let Some(bits) = keep {
            state |= bits;
        } else if action.nat.is_some() && c.nat != NatKind::None {
            let bit = c.nat.state_bit(reply);
            // `c` was found by one of its tuples; the translation is the
            // reverse of the other direction's.
            let to = self.table.other_tuple(c)?.reverse();
            nat::rewrite(key, &to, bit == ct_state::SNAT, related);
            state |= bit;
        }
        if action.commit {
            apply_masks(action, &mut st.mark, &mut st.label);
        }
        Some(Found::Done(state | ct_state::TRK, st.mark, st.label))
    }

    /// A packet with no connection. `None` when a commit lost a race.
    fn open(
        &self,
        key: &mut FlowKey,
        t: &CtTuple,
        hash: u64,
        action: &CtAction,
        flags: u16,
        now: u64,
    ) -> Option<(u32, u32, u128)> {
        let Some((proto, tm)) = ProtoState::open(t, flags) else {
            return Some((ct_state::INV | ct_state::TRK, 0, 0));
        };
        let uncommitted = Some((ct_state::NEW | ct_state::TRK, 0, 0));
        if !action.commit {
            // A later pass may commit it (OVN's stateful stage does): the
            // reply tuple's index entry is then a cache miss in a big
            // table, so its line is asked for now.
            self.table.prefetch_home(self.table.hash(&t.reverse()));
            return uncommitted;
        }
        let stats = self.table.stats();
        if !self.table.reserve(self.cfg.max_entries) {
            bump(&stats.limit_drops);
            return uncommitted;
        }
        let (mut mark, mut label) = (0, 0);
        apply_masks(action, &mut mark, &mut label);
        let mut plan = action.nat.as_ref().and_then(|n| nat::Plan::new(t, n));
        let kind = plan.as_ref().map_or(NatKind::None, |p| p.kind);
        let mut conn = NewConn {
            keys: [*t, t.reverse()],
            nat: kind,
            state: ConnState {
                proto,
                mark,
                label,
                expires: now.saturating_add(self.cfg.timeouts.get(tm)),
                dead: false,
            },
        };
        loop {
            let rev = match &mut plan {
                None => t.reverse(),
                Some(p) => match p.next_candidate() {
                    Some(r) if self.table.taken(&r, now) => continue,
                    Some(r) => r,
                    None => {
                        self.table.unreserve();
                        bump(&stats.insert_failed);
                        return uncommitted;
                    }
                },
            };
            conn.keys[1] = rev;
            match self.table.insert(&conn, hash, now) {
                Ok(()) => break,
                Err(Clash::Orig) => {
                    self.table.unreserve();
                    return None;
                }
                Err(Clash::Reply) if plan.is_some() => continue,
                Err(Clash::Reply) => {
                    self.table.unreserve();
                    bump(&stats.insert_failed);
                    return uncommitted;
                }
                Err(Clash::Full) => {
                    self.table.unreserve();
                    bump(&stats.limit_drops);
                    return uncommitted;
                }
            }
        }
        bump(&stats.committed);
        let mut state = ct_state::NEW | ct_state::TRK;
        if kind != NatKind::None {
            nat::rewrite(key, &conn.keys[1].reverse(), kind == NatKind::Src, false);
            state |= kind.state_bit(false);
        }
        Some((state, mark, label))
    }

    /// Removes connections that have timed out by `now_ns`, looking at
    /// about [`CtConfig::sweep_budget`] index entries (whole shards, from
    /// where the last sweep stopped). Returns how many expired; call it
    /// periodically (OVS sweeps every few seconds).
    pub fn sweep(&self, now_ns: u64) -> usize {
        self.table.sweep(now_ns, self.cfg.sweep_budget)
    }

    /// Connections in the table (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every connection (`dpctl/flush-conntrack`).
    pub fn flush(&self) {
        self.table.flush(None);
    }

    /// Removes the connections of one zone (`dpctl/flush-conntrack zone=N`).
    pub fn flush_zone(&self, zone: u16) {
        self.table.flush(Some(zone));
    }

    /// Every connection alive at `now_ns` (`dpctl/dump-conntrack`), in no
    /// particular order.
    pub fn entries(&self, now_ns: u64) -> Vec<CtEntry> {
        let mut out = Vec::new();
        self.table.for_each(now_ns, |keys, nat, st| {
            out.push(CtEntry {
                orig: keys[0],
                reply: keys[1],
                nat,
                mark: st.mark,
                label: st.label,
                state: st.proto.name(),
                tcp_state: st.proto.tcp(),
                expires_ns: st.expires,
            })
        });
        out
    }

    pub fn stats(&self) -> CtStats {
        let mut s = CtStats::default();
        for x in self.table.stripes() {
            s.hits += x.hits.load(Relaxed);
            s.lookups += x.hits.load(Relaxed) + x.misses.load(Relaxed);
            s.new += x.new.load(Relaxed);
            s.committed += x.committed.load(Relaxed);
            s.invalid += x.invalid.load(Relaxed);
            s.limit_drops += x.limit_drops.load(Relaxed);
            s.insert_failed += x.insert_failed.load(Relaxed);
            s.expired += x.expired.load(Relaxed);
        }
        s.entries = self.len() as u64;
        s
    }
}

/// Moves a connection's expiry to `timeout` after `now`, except when its
/// state did not change (`moved` false) and the expiry would move forward
/// by less than 1/1024 of the timeout (at most a second): then it stays,
/// so that a busy connection's packets do not each write the shared slot
/// (a compare-and-swap apiece). A connection so lives at least 99.9 % of
/// its timeout after its last packet; Linux refreshed timeouts with the
/// same kind of slack (a second) for the same reason.
#[inline(always)]
fn rearm(st: &mut ConnState, timeout: u64, now: u64, moved: bool) {
    let expires = now.saturating_add(timeout);
    let slack = (timeout >> 10).min(1_000_000_000);
    if moved || expires < st.expires || expires - st.expires > slack {
        st.expires = expires;
    }
}

/// Connections a burst's packets are remembered for.
const MEMOS: usize = 4;

/// What [`Conntrack::execute_repeated`] remembers, for one worker: the
/// packets (at one time) that found their connection and changed nothing
/// in it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CtMemos {
    now: u64,
    len: usize,
    list: [CtMemo; MEMOS],
    /// Bumped whenever a connection a packet found is not remembered
    /// after it (forgotten, or no room): a worker that sees it unchanged
    /// over a packet's passes knows the next packet of the same key would
    /// get every answer from memory.
    epoch: u32,
}

impl CtMemos {
    #[inline]
    fn forget(&mut self, now: u64) {
        self.now = now;
        self.len = 0;
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// See [`CtMemos::epoch`]'s field.
    #[inline]
    pub fn epoch(&self) -> u32 {
        self.epoch
    }
}

/// One packet [`CtMemos`] remembers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CtMemo {
    /// The answer.
    state: u32,
    /// The tuple's words (zone included) and TCP flags.
    w: [u64; 6],
    flags: u16,
    action: MemoAction,
    mark: u32,
    label: u128,
}

/// What of a `ct()` action the fast path's answer depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct MemoAction {
    nat: bool,
    commit: bool,
    mark: Option<(u32, u32)>,
    label: Option<(u128, u128)>,
}

impl MemoAction {
    #[inline(always)]
    fn of(a: &CtAction) -> MemoAction {
        MemoAction {
            nat: a.nat.is_some(),
            commit: a.commit,
            mark: a.mark,
            label: a.label,
        }
    }
}

/// Writes a commit's `ct_mark`/`ct_label` (value, mask) over the old ones.
fn apply_masks(action: &CtAction, mark: &mut u32, label: &mut u128) {
    if let Some((v, m)) = action.mark {
        *mark = (v & m) | (*mark & !m);
    }
    if let Some((v, m)) = action.label {
        *label = (v & m) | (*label & !m);
    }
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack::new(CtConfig::default())
    }
}

impl fmt::Debug for Conntrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conntrack")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats())
            .finish()
    }
}
