//! A worker's fast path: flow key, caches, actions, recirculation; the
//! slow path on a miss; tunnel decapsulation on the way in.
//!
//! Each packet runs to completion: extract its key, find its megaflow
//! (EMC, then megaflow cache, then the interpreter), run the actions, and
//! after a conntrack recirculation look it up again under the new id. A
//! worker owns its caches and packet pool; it shares the [`Engine`]
//! (config, conntrack) with the others.
//!
//! What makes a cache hit cheap: a batch is looked at before it runs
//! (keys and hashes, prefetches, bursts of one key noticed); the EMC
//! entry a pass matched says where the next pass's key was last found
//! (checked by compare, not hash) and where the connection of each of its
//! conntrack trips is; conntrack answers a burst's repeats from memory
//! when nothing changed.
//!
//! On a miss in a later pass, the slow path needs the packet as it
//! entered the first pass and its key after each conntrack trip (see
//! `ironflow_pipeline::interp::translate`); the worker keeps them while
//! the packet is in flight, in the EMC entries that matched them until a
//! lookup may write the EMC, copied out then.

use crate::cache::{same_key, CacheStats, FlowCache, FlowRef, Hit, DEFAULT_MEGAFLOWS, NO_EMC};
use crate::config::{Config, TUNNEL_IN_PORT};
use crate::conntrack::{CtHint, CtMemos};
use crate::engine::Engine;
use crate::exec::{Exec, Flow, TunnelOut};
use crate::extract::{extract_packet_into, plain_ipv4, same_headers, Status};
use crate::flow::{slots, FlowKey};
use crate::keymap::{to_flow_mask, to_logical};
use crate::packet::{Packet, PacketBatch, PacketPool, BATCH_SIZE};
use crate::port::PortId;
use crate::rewrite;
use ironflow_pipeline::classifier::Key;
use ironflow_pipeline::interp::{translate, Entry};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Passes one packet may take (conntrack recirculations + 1); OVN's
/// deepest pipelines need four.
pub const MAX_PASSES: usize = 8;

/// Counters of one worker, as plain numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub packets: u64,
    pub passes: u64,
    /// Slow-path translations (cache misses).
    pub upcalls: u64,
    /// Packets that followed the one before them in their batch (same
    /// key) without lookups: the fused path (see `Trail`).
    pub fused: u64,
    pub outputs: u64,
    pub tunnelled: u64,
    pub decapsulated: u64,
    pub to_controller: u64,
    /// Packets extraction found malformed (processed as far as they parse).
    pub malformed: u64,
    /// Packets dropped, by reason.
    pub drops: BTreeMap<Arc<str>, u64>,
    pub cache: CacheStats,
}

/// A packet the controller must handle, with what the slow path needs to
/// replay its pipelines.
pub struct Punt {
    pub packet: Packet,
    /// The key as the packet entered its first pass.
    pub first: FlowKey,
    /// The key after each conntrack trip so far.
    pub after_ct: Vec<FlowKey>,
}

/// What a packet carries between passes.
struct InFlight {
    /// The key each pass started with (the first pass's input, then the
    /// key after each conntrack trip), kept only for passes that
    /// recirculate or go to the controller: a later miss replays them.
    starts: [FlowKey; MAX_PASSES],
    /// Passes done.
    passes: usize,
    /// The zone of the packet's last conntrack trip: conntrack state is
    /// forgotten before a trip through another zone, as OVS does.
    ct_zone: Option<u16>,
    /// OVS's hash of the packet as it arrived, for Geneve source ports
    /// ([`crate::tunnel::arrival_hash`]).
    arrival_hash: u32,
    /// Passes (bits) whose start key is not in `starts` yet but in EMC
    /// entry `start_emc[pass]`: copied out only before something may
    /// change the EMC (a lookup that may insert) or needs them (a miss, the
    /// controller), which most packets never come to.
    lazy: u8,
    start_emc: [u32; MAX_PASSES],
}

impl InFlight {
    /// Copies the start keys still in EMC entries into `starts`.
    #[inline]
    fn keep_starts<A, X: Copy + Default>(&mut self, cache: &FlowCache<A, X>) {
        while self.lazy != 0 {
            let p = self.lazy.trailing_zeros() as usize;
            self.lazy &= self.lazy - 1;
            if let (Some(k), Some(s)) = (cache.emc_key(self.start_emc[p]), self.starts.get_mut(p)) {
                *s = *k;
            }
        }
    }
}

/// Conntrack actions per pass that keep a hint; more are rare (OVN's
/// passes have one or two) and go without.
const CT_HINTS: usize = 2;

/// What a worker learns about the packets of one exact key, kept in the
/// key's EMC entry (and forgotten with it).
#[derive(Clone, Copy, Default)]
struct Learnt {
    /// The EMC entry (+ 1; 0 unknown) where the last such packet's next
    /// pass found its flow: after a recirculation the worker checks that
    /// entry for the new key before hashing it. Only a guess (the entry
    /// is compared with the key), as any later pass of a recirculating
    /// flow usually follows the same way.
    next: u32,
    /// [`crate::tunnel::arrival_hash`] of the key (first passes only).
    arrival_hash: u32,
    /// Where the pass's conntrack actions found their connections.
    ct: [CtHint; CT_HINTS],
}

/// Conntrack answers a [`Trail`] keeps; a packet that needs more (OVN's
/// have one to three) leaves none.
const TRAIL_CTS: usize = 4;

/// The way the last packet went, for the next packet of its burst (the
/// same key, next in the batch). When nothing changed the cache while it
/// ran and every conntrack answer it got is remembered in the worker's
/// [`CtMemos`], a packet of the same key would find the same megaflows
/// and get the same answers: of all its passes' actions, only those that
/// touch the packet are left to do (rewrites, outputs, encapsulation),
/// one after the other, without a lookup or a conntrack trip. This is
/// the fused path of an established connection.
struct Trail {
    /// Passes to follow; 0 when the last packet left no trail.
    passes: usize,
    flows: [Option<FlowRef>; MAX_PASSES],
    /// The states conntrack answered, in the order the passes got them;
    /// more than [`TRAIL_CTS`] spoils the trail.
    cts: usize,
    ct: [u32; TRAIL_CTS],
    arrival_hash: u32,
    /// The actions of the passes that touch the packet, in order, worked
    /// out when a packet first follows the trail (most trails are never
    /// followed); `fused_ready` says whether they are.
    fused: Vec<Exec>,
    fused_ready: bool,
    /// Whether the last of `fused` takes the packet (sends it away).
    fused_takes: bool,
    /// Why the packet is dropped, when the last pass sends nothing.
    fused_drop: Option<Arc<str>>,
    /// Packets that followed the trail, not yet counted where their
    /// lookups and conntrack trips would have been (see `settle_trail`).
    repeats: u64,
}

impl Trail {
    fn log_ct(&mut self, key: &FlowKey) {
        if let Some(a) = self.ct.get_mut(self.cts) {
            *a = key.get(slots::CT_STATE) as u32;
        }
        self.cts += 1;
    }

    /// Works out `fused` from the megaflows of the trail's passes.
    fn fuse<X: Copy + Default>(&mut self, cache: &FlowCache<Flow, X>) -> bool {
        self.fused.clear();
        self.fused_takes = false;
        self.fused_drop = None;
        for (pass, r) in self.flows.iter().take(self.passes).enumerate() {
            let Some(flow) = r.and_then(|r| cache.megaflow(r)).map(|m| &m.actions) else {
                return false;
            };
            self.fused.extend(
                flow.actions
                    .iter()
                    .filter(|a| {
                        matches!(
                            a,
                            Exec::Set(..) | Exec::DecTtl | Exec::Output(_) | Exec::Tunnel(_)
                        )
                    })
                    .cloned(),
            );
            if pass + 1 == self.passes {
                self.fused_takes = flow.last_consumes;
                self.fused_drop = flow.drop_reason.clone();
            }
        }
        self.fused_ready = true;
        true
    }
}

/// A packet of a batch as looked at before any runs.
#[derive(Clone, Copy)]
struct Ahead {
    key: FlowKey,
    /// The same key as the packet before it in the batch.
    same: bool,
    hash: u64,
    /// The EMC entry that held the key, or [`NO_EMC`].
    emc: u32,
    malformed: bool,
    /// Decapsulation refused it (and counted why).
    dropped: bool,
    /// A clean [`plain_ipv4`] frame from a pod: a packet after it may be
    /// recognised by its header bytes.
    plain: bool,
}

const AHEAD_NONE: Ahead = Ahead {
    key: FlowKey::ZERO,
    same: false,
    hash: 0,
    emc: NO_EMC,
    malformed: false,
    dropped: false,
    plain: false,
};

pub struct Worker {
    engine: Arc<Engine>,
    /// The connections a batch's bursts found unchanged.
    ct_memos: CtMemos,
    vouched: crate::tunnel::Vouched,
    ahead: Box<[Ahead]>,
    config: Arc<Config>,
    cache: FlowCache<Flow, Learnt>,
    pub pool: PacketPool,
    stats: WorkerStats,
    /// Packets to send after the batch, with their port.
    pub tx: Vec<(PortId, Packet)>,
    /// Packets for the controller.
    pub punted: Vec<Punt>,
    flight: InFlight,
    trail: Trail,
    /// False for [`Worker::uncached`].
    caching: bool,
}

impl Worker {
    pub fn new(engine: Arc<Engine>) -> Worker {
        Worker::with_cache(engine, DEFAULT_MEGAFLOWS, true)
    }

    /// A worker that translates every pass afresh and caches nothing: the
    /// slow path alone, to check the fast path against.
    pub fn uncached(engine: Arc<Engine>) -> Worker {
        let mut w = Worker::with_cache(engine, 1, false);
        w.caching = false;
        w
    }

    /// A worker with a megaflow cache of `megaflows`, EMC on or off.
    pub fn with_cache(engine: Arc<Engine>, megaflows: usize, emc: bool) -> Worker {
        let config = engine.config();
        Worker {
            engine,
            ct_memos: CtMemos::default(),
            vouched: Default::default(),
            ahead: Box::new([AHEAD_NONE; BATCH_SIZE]),
            config,
            cache: FlowCache::new(megaflows, emc),
            pool: PacketPool::new(1024),
            stats: WorkerStats::default(),
            tx: Vec::with_capacity(64),
            punted: Vec::new(),
            caching: true,
            flight: InFlight {
                starts: [FlowKey::ZERO; MAX_PASSES],
                passes: 0,
                ct_zone: None,
                arrival_hash: 0,
                lazy: 0,
                start_emc: [NO_EMC; MAX_PASSES],
            },
            trail: Trail {
                passes: 0,
                flows: [None; MAX_PASSES],
                cts: 0,
                ct: [0; TRAIL_CTS],
                arrival_hash: 0,
                fused: Vec::new(),
                fused_ready: false,
                fused_takes: false,
                fused_drop: None,
                repeats: 0,
            },
        }
    }

    /// Picks up a newly published config, dropping what was cached (and
    /// with it the replaced config, which may be hundreds of MiB of program
    /// and network). Every batch does; the owner of an idle worker calls
    /// it so that the worker lets go of the old config before a packet
    /// comes.
    pub fn refresh(&mut self) {
        if self.engine.generation() != self.config.generation {
            self.settle_trail();
            self.trail.passes = 0;
            self.config = self.engine.config();
            self.cache.flush();
        }
    }

    /// The engine this worker runs for.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn stats(&self) -> WorkerStats {
        let mut s = self.stats.clone();
        s.cache = self.cache.stats;
        s
    }

    /// Megaflows cached now, with their hits: `ironflow flows`.
    pub fn megaflows(&self) -> impl Iterator<Item = (&FlowKey, &FlowKey, &Flow, u64)> {
        self.cache
            .megaflows()
            .map(|m| (&m.key, &m.mask, &m.actions, m.hits))
    }

    /// Runs a batch that arrived on `in_port`; outputs go to [`Worker::tx`].
    ///
    /// Packets run one after the other, but first the whole batch is
    /// looked at: keys extracted and hashed, and the cache lines their
    /// first pass will read (EMC entries, the connection a first conntrack
    /// trip will look up) asked for, so that the batch waits for memory
    /// once rather than packet after packet. Packets from the underlay
    /// are decapsulated as they are looked at.
    pub fn process_batch(&mut self, in_port: PortId, batch: &mut PacketBatch) {
        self.refresh();
        self.settle_trail();
        self.trail.passes = 0;
        let now = self.engine.now_ns();
        let underlay = self.config.underlay.as_ref().map(|u| u.port);
        let from_underlay = underlay == Some(in_port);
        if !self.caching || batch.len() > BATCH_SIZE {
            for pkt in batch.drain() {
                self.process(in_port, pkt, now);
            }
            return;
        }
        // A packet of the same flow as the one before it (a burst) takes
        // that one's hash and look-ahead: one key compare instead.
        let n = batch.len().min(BATCH_SIZE);
        // Out of the worker while its packets are looked at and run, so
        // that their keys are worked on where they are rather than copied.
        let mut ahead = std::mem::replace(&mut self.ahead, Box::new([AHEAD_NONE; 0]));
        let mut prev: Option<&mut Packet> = None;
        for (i, pkt) in batch.iter_mut().enumerate().take(n) {
            let (before, rest) = ahead.split_at_mut(i);
            let Some(a) = rest.first_mut() else { break };
            // The next packet of a burst, known by its header bytes: the
            // key, layers and hash of the one before.
            if let (Some(b), Some(p)) = (before.last().filter(|b| b.plain), prev.as_ref()) {
                if same_headers(p.data(), pkt.data()) {
                    a.key = b.key;
                    a.hash = b.hash;
                    (a.same, a.plain, a.malformed, a.dropped) = (true, true, false, false);
                    pkt.set_layers(p.l3_offset(), p.l4_offset());
                    prev = Some(pkt);
                    continue;
                }
            }
            a.plain = false;
            if from_underlay {
                // Counts its own drops and malformed inner packets.
                a.dropped = !self.decapsulate(pkt, &mut a.key);
                a.malformed = false;
            } else {
                a.dropped = false;
                a.malformed = extract_packet_into(pkt, in_port, &mut a.key) != Status::Ok;
                a.plain = !a.malformed && plain_ipv4(pkt.data());
            }
            a.same = !a.dropped
                && before
                    .last()
                    .is_some_and(|b| !b.dropped && same_key(&b.key, &a.key));
            if a.same {
                a.hash = before.last().map_or(0, |b| b.hash);
            } else {
                a.hash = self.cache.key_hash(&a.key);
                self.cache.prefetch(a.hash);
            }
            prev = Some(pkt);
        }
        let mut last_emc = NO_EMC;
        for a in ahead.iter_mut().take(n) {
            if a.same {
                a.emc = last_emc;
                continue;
            }
            if a.dropped {
                continue;
            }
            a.emc = NO_EMC;
            last_emc = NO_EMC;
            let Some((flow, emc, learnt)) = self.cache.peek(&a.key, a.hash) else {
                continue;
            };
            last_emc = emc;
            a.emc = emc;
            if let Some(zone) = flow.first_ct_zone() {
                let hint = learnt.map_or(CtHint::default(), |l| l.ct[0]);
                self.engine.conntrack.prefetch(&a.key, zone, &hint);
            }
        }
        for (i, pkt) in batch.drain().enumerate() {
            // A trail is worth leaving only for a packet of the same key
            // right behind.
            let followed = ahead.get(i + 1).is_some_and(|b| b.same);
            let Some(a) = ahead.get_mut(i) else { break };
            self.stats.packets += 1;
            if a.malformed {
                self.stats.malformed += 1;
            }
            if a.dropped {
                self.pool.free(pkt);
                continue;
            }
            if a.same && self.trail.passes != 0 {
                self.replay(pkt, &mut a.key);
            } else {
                let first = (a.hash, a.emc);
                self.run(pkt, &mut a.key, Some(first), now, followed);
            }
        }
        self.ahead = ahead;
        self.settle_trail();
    }

    /// Runs one packet (the config must be current: see `process_batch`).
    pub fn process(&mut self, in_port: PortId, pkt: Packet, now_ns: u64) {
        let mut pkt = pkt;
        self.stats.packets += 1;
        let underlay = self.config.underlay.as_ref().map(|u| u.port);
        // Extracted in place: a key returned by value is copied with
        // `memcpy`, whose wide stores the hash's loads then wait for.
        let mut key = FlowKey::ZERO;
        if underlay == Some(in_port) {
            if !self.decapsulate(&mut pkt, &mut key) {
                self.pool.free(pkt);
                return;
            }
        } else if extract_packet_into(&mut pkt, in_port, &mut key) != Status::Ok {
            self.stats.malformed += 1;
        }
        self.run(pkt, &mut key, None, now_ns, false);
    }

    /// Runs the passes of a packet with `key`; `first`, when the batch
    /// looked ahead, is the key's hash and the EMC entry that held it.
    /// With `trail`, it leaves a [`Trail`] for the next packet where it
    /// can.
    fn run(
        &mut self,
        pkt: Packet,
        key: &mut FlowKey,
        first: Option<(u64, u32)>,
        now_ns: u64,
        trail: bool,
    ) {
        let mut pkt = pkt;
        // Kept in the worker: zeroing a fresh one per packet costs more
        // than the rest of a cache hit.
        let flight = &mut self.flight;
        flight.passes = 0;
        flight.ct_zone = None;
        flight.lazy = 0;
        // What would make the trail this packet leaves wrong: a change to
        // the cache (any upcall) or a conntrack answer not remembered.
        let upcalls = self.stats.upcalls;
        let epoch = self.ct_memos.epoch();
        self.settle_trail();
        self.trail.passes = 0;
        self.trail.cts = 0;
        self.trail.fused_ready = false;
        // The EMC entry of the previous pass.
        let mut prev = NO_EMC;
        loop {
            self.stats.passes += 1;
            if !self.caching {
                self.cache.flush();
                self.ct_memos = CtMemos::default();
            }
            // The entry the batch's look ahead found, or after a
            // recirculation the one the last packet like this one went on
            // to: if it still holds this key, no hash is needed.
            let (guess, known_hash) = match first {
                Some((hash, emc)) if self.flight.passes == 0 => (emc.wrapping_add(1), Some(hash)),
                _ => (self.cache.extra_mut(prev).map_or(0, |l| l.next), None),
            };
            let followed = match guess {
                0 => None,
                next => self.cache.follow(next - 1, key).map(|flow| Hit {
                    flow,
                    emc: next - 1,
                    fresh: false,
                }),
            };
            let hit = match followed {
                Some(h) => h,
                None => {
                    // The lookup may overwrite EMC entries that hold
                    // earlier passes' keys, and a miss needs them.
                    self.flight.keep_starts(&self.cache);
                    let hash = known_hash.unwrap_or_else(|| self.cache.key_hash(key));
                    let found = match self.cache.lookup_hit(key, hash) {
                        Some(h) => Some(h),
                        None => upcall(
                            &self.config,
                            &self.engine,
                            &mut self.cache,
                            &mut self.stats,
                            key,
                            hash,
                            &self.flight,
                        ),
                    };
                    let Some(h) = found else {
                        self.drop(pkt, "no logical port bound to the input port");
                        return;
                    };
                    if let Some(l) = self.cache.extra_mut(prev) {
                        l.next = h.emc.wrapping_add(1);
                    }
                    h
                }
            };
            if hit.fresh && key.recirc_id() == 0 {
                if let Some(l) = self.cache.extra_mut(hit.emc) {
                    l.arrival_hash = crate::tunnel::arrival_hash(key);
                }
            }
            if let Some(f) = self
                .trail
                .flows
                .get_mut(self.flight.passes)
                .filter(|_| trail)
            {
                *f = Some(hit.flow);
            }
            let (megaflow, learnt) = self.cache.flow_and_extra(hit.flow, hit.emc);
            let flow = &megaflow.actions;
            let mut spare = [CtHint::default(); CT_HINTS];
            let hints = match learnt {
                Some(l) => {
                    if self.flight.passes == 0 {
                        self.flight.arrival_hash = l.arrival_hash;
                    }
                    &mut l.ct
                }
                None => {
                    if self.flight.passes == 0 {
                        self.flight.arrival_hash = crate::tunnel::arrival_hash(key);
                    }
                    &mut spare
                }
            };
            if flow.keeps_key {
                // Kept only when a later pass or the controller may need
                // it: the last pass of most packets does not. While the
                // EMC entry that matched holds it, that is where it stays.
                let p = self.flight.passes;
                if hit.emc != NO_EMC {
                    self.flight.start_emc[p] = hit.emc;
                    self.flight.lazy |= 1 << p;
                } else {
                    self.flight.starts[p] = *key;
                }
            }
            let outcome = execute(
                flow,
                pkt,
                key,
                &mut self.flight,
                hints,
                &mut self.ct_memos,
                &mut self.trail,
                &self.engine,
                now_ns,
                &mut self.pool,
                &mut self.tx,
                &mut self.stats,
            );
            if trail
                && matches!(outcome, Outcome::Consumed | Outcome::Left(_))
                && self.caching
                && self.stats.upcalls == upcalls
                && self.ct_memos.epoch() == epoch
                && self.trail.cts <= TRAIL_CTS
            {
                self.trail.passes = self.flight.passes + 1;
                self.trail.arrival_hash = self.flight.arrival_hash;
            }
            match outcome {
                Outcome::Consumed => return,
                Outcome::Left(p) => {
                    let reason = flow.drop_reason.clone();
                    self.left(p, reason);
                    return;
                }
                Outcome::Controller(p) => {
                    self.stats.to_controller += 1;
                    self.flight.keep_starts(&self.cache);
                    let starts = &self.flight.starts[..=self.flight.passes];
                    self.punted.push(Punt {
                        packet: p,
                        first: starts[0],
                        after_ct: starts[1..].to_vec(),
                    });
                    return;
                }
                Outcome::Recirculate(id, p) => {
                    let flight = &mut self.flight;
                    if flight.passes + 1 >= MAX_PASSES {
                        self.drop(p, "too many recirculations");
                        return;
                    }
                    pkt = p;
                    flight.passes += 1;
                    key.set(slots::RECIRC_ID, id.into());
                    prev = hit.emc;
                }
            }
        }
    }

    /// Follows the last packet's [`Trail`] with `pkt`, of the same key:
    /// its packet edits, one after the other.
    fn replay(&mut self, pkt: Packet, key: &mut FlowKey) {
        let mut pkt = pkt;
        if !self.trail.fused_ready && !self.trail.fuse(&self.cache) {
            // Not reached: a trail is dropped when the cache changes.
            self.trail.passes = 0;
            self.run(pkt, key, None, self.engine.now_ns(), false);
            return;
        }
        self.stats.fused += 1;
        self.trail.repeats += 1;
        let t = &self.trail;
        let last = t.fused.len().wrapping_sub(1);
        // The arms repeat `execute`'s on purpose: one function for both,
        // taking and handing back the packet, measured 15 % slower here.
        for (i, action) in t.fused.iter().enumerate() {
            let take = t.fused_takes && i == last;
            match action {
                Exec::Set(field, value) => {
                    let _ = rewrite::set(&mut pkt, key, *field, *value);
                }
                Exec::DecTtl => {
                    let _ = rewrite::dec_ttl(&mut pkt, key);
                }
                Exec::Output(port) => {
                    self.stats.outputs += 1;
                    if take {
                        self.tx.push((*port, pkt));
                        return;
                    }
                    self.tx.push((*port, copy(&mut self.pool, &pkt)));
                }
                Exec::Tunnel(encap) => {
                    let (pool, tx, stats) = (&mut self.pool, &mut self.tx, &mut self.stats);
                    if take {
                        tunnel(pkt, encap, t.arrival_hash, pool, tx, stats);
                        return;
                    }
                    let out = copy(pool, &pkt);
                    tunnel(out, encap, t.arrival_hash, pool, tx, stats);
                }
                _ => {}
            }
        }
        let reason = t.fused_drop.clone();
        self.left(pkt, reason);
    }

    /// Counts the packets that followed the trail where their lookups
    /// and conntrack trips would have been counted: megaflow and EMC
    /// hits, passes, conntrack hits. Done before the trail changes, and
    /// after each batch so that what `stats` reads is whole.
    fn settle_trail(&mut self) {
        let t = &mut self.trail;
        let n = std::mem::take(&mut t.repeats);
        if n == 0 {
            return;
        }
        for r in t.flows.iter().take(t.passes).flatten() {
            self.cache.rehit(*r, n);
        }
        self.stats.passes += n * t.passes as u64;
        for &state in t.ct.iter().take(t.cts) {
            self.engine.conntrack.count_repeated(state, n);
        }
    }

    /// A packet its actions did not take: dropped (and counted) when the
    /// flow sends nothing, freed when it sent copies.
    fn left(&mut self, pkt: Packet, reason: Option<Arc<str>>) {
        match reason {
            Some(reason) => self.drop_counted(pkt, reason),
            None => self.pool.free(pkt),
        }
    }

    fn drop(&mut self, pkt: Packet, reason: &str) {
        self.drop_counted(pkt, reason.into());
    }

    fn drop_counted(&mut self, pkt: Packet, reason: Arc<str>) {
        *self.stats.drops.entry(reason).or_default() += 1;
        self.pool.free(pkt);
    }

    /// Strips the Geneve encapsulation of a packet from the underlay and
    /// extracts the inner key with the tunnel metadata in it.
    fn decapsulate(&mut self, pkt: &mut Packet, key: &mut FlowKey) -> bool {
        let d = match self.vouched.decap(pkt.data(), &self.config) {
            Ok(d) => d,
            Err(reason) => {
                *self.stats.drops.entry(reason.into()).or_default() += 1;
                return false;
            }
        };
        if pkt.pull_front(d.inner_offset).is_none() {
            return false;
        }
        if extract_packet_into(pkt, TUNNEL_IN_PORT, key) != Status::Ok {
            self.stats.malformed += 1;
        }
        key.set(slots::TUN_SRC, u32::from(d.src).into());
        key.set(slots::TUN_VNI, d.vni.into());
        key.set(
            slots::TUN_OPT,
            ((d.inport_key << 16) | d.outport_key).into(),
        );
        self.stats.decapsulated += 1;
        true
    }

    /// Sends what the batch produced, grouped by port.
    pub fn take_tx(&mut self) -> Vec<(PortId, Packet)> {
        std::mem::take(&mut self.tx)
    }
}

/// The slow path: translate this pass and cache it.
#[allow(clippy::too_many_arguments)]
fn upcall(
    config: &Config,
    engine: &Engine,
    cache: &mut FlowCache<Flow, Learnt>,
    stats: &mut WorkerStats,
    key: &FlowKey,
    hash: u64,
    flight: &InFlight,
) -> Option<Hit> {
    stats.upcalls += 1;
    let entry = config.entry(key)?;
    let tunnel = matches!(entry, Entry::Tunnel { .. });
    // The first pass's input, and the key after each conntrack trip (the
    // last of which is this pass's own key).
    let first = if flight.passes == 0 {
        to_logical(key)
    } else {
        to_logical(&flight.starts[0])
    };
    let recorded: Vec<Key> = flight.starts[1..flight.passes.max(1)]
        .iter()
        .chain((flight.passes > 0).then_some(key))
        .map(to_logical)
        .collect();
    let t = translate(
        &config.program,
        &config.net,
        &config.chassis,
        entry,
        &first,
        &recorded,
    );
    let mut mask = to_flow_mask(&t.mask);
    if tunnel {
        mask.or(slots::TUN_VNI, u128::MAX);
        mask.or(slots::TUN_OPT, u128::MAX);
    }
    let flow = Flow::install(t, config, engine);
    Some(cache.insert_and_remember(key, hash, &mask, flow))
}

/// What a pass's actions did with the packet.
enum Outcome {
    /// Sent away (the last action took it).
    Consumed,
    /// Still here: copies went out, or nothing did (a drop).
    Left(Packet),
    /// Look it up again under this recirculation id.
    Recirculate(u32, Packet),
    /// The controller takes it.
    Controller(Packet),
}

/// Runs one pass's actions on `pkt`. Outputs before the last action send
/// copies; the last one takes the packet itself.
#[allow(clippy::too_many_arguments)]
fn execute(
    flow: &Flow,
    mut pkt: Packet,
    key: &mut FlowKey,
    flight: &mut InFlight,
    hints: &mut [CtHint; CT_HINTS],
    memos: &mut CtMemos,
    log: &mut Trail,
    engine: &Engine,
    now_ns: u64,
    pool: &mut PacketPool,
    tx: &mut Vec<(PortId, Packet)>,
    stats: &mut WorkerStats,
) -> Outcome {
    let last = flow.actions.len().saturating_sub(1);
    let mut cts = 0;
    let mut spare = CtHint::default();
    for (i, action) in flow.actions.iter().enumerate() {
        let take = flow.last_consumes && i == last;
        match action {
            Exec::Set(field, value) => {
                // A field the packet lacks stays as it is, as in OVS.
                let _ = rewrite::set(&mut pkt, key, *field, *value);
            }
            Exec::DecTtl => {
                let _ = rewrite::dec_ttl(&mut pkt, key);
            }
            Exec::Output(port) => {
                stats.outputs += 1;
                if take {
                    tx.push((*port, pkt));
                    return Outcome::Consumed;
                }
                tx.push((*port, copy(pool, &pkt)));
            }
            Exec::Tunnel(encap) => {
                let hash = flight.arrival_hash;
                if take {
                    tunnel(pkt, encap, hash, pool, tx, stats);
                    return Outcome::Consumed;
                }
                let out = copy(pool, &pkt);
                tunnel(out, encap, hash, pool, tx, stats);
            }
            Exec::Ct(ct) => {
                if flight.ct_zone.is_some_and(|z| z != ct.zone) {
                    clear_ct(key);
                }
                // NAT changes only the address and port words; keep those
                // rather than a whole key, and patch the packet only if
                // they changed.
                let mut saved = [0u64; NAT_WORDS.end - NAT_WORDS.start];
                saved.copy_from_slice(&key.words[NAT_WORDS]);
                let l3 = pkt.l3().unwrap_or(&[]);
                let hint = hints.get_mut(cts).unwrap_or(&mut spare);
                cts += 1;
                engine
                    .conntrack
                    .execute_repeated(key, l3, ct, now_ns, hint, memos);
                // Word by word: a slice compare is a call to `memcmp`.
                let changed = key.words[NAT_WORDS]
                    .iter()
                    .zip(&saved)
                    .fold(0, |acc, (a, b)| acc | (a ^ b));
                if changed != 0 {
                    let mut before = *key;
                    before.words[NAT_WORDS].copy_from_slice(&saved);
                    let _ = rewrite::rewrite_from_key_diff(&mut pkt, &before, key);
                }
                log.log_ct(key);
                flight.ct_zone = Some(ct.zone);
            }
            Exec::CtClear => {
                clear_ct(key);
                flight.ct_zone = None;
            }
            Exec::Recirc(id) => return Outcome::Recirculate(*id, pkt),
            Exec::Controller => return Outcome::Controller(pkt),
        }
    }
    Outcome::Left(pkt)
}

/// Encapsulates `out` towards another chassis and queues it.
fn tunnel(
    mut out: Packet,
    t: &TunnelOut,
    hash: u32,
    pool: &mut PacketPool,
    tx: &mut Vec<(PortId, Packet)>,
    stats: &mut WorkerStats,
) {
    if crate::tunnel::encap(&mut out, t, hash) {
        stats.tunnelled += 1;
        tx.push((t.encap.port, out));
    } else {
        *stats
            .drops
            .entry("no headroom to encapsulate".into())
            .or_default() += 1;
        pool.free(out);
    }
}

/// The flow-key words NAT can change: ports (word 3) and addresses.
const NAT_WORDS: std::ops::Range<usize> = slots::TP_SRC.word..slots::IP_DST.word + 2;

fn clear_ct(key: &mut FlowKey) {
    key.set(slots::CT_STATE, 0);
    key.set(slots::CT_MARK, 0);
    key.set(slots::CT_LABEL, 0);
}

/// A copy of `pkt` in a frame from the pool, header offsets included.
fn copy(pool: &mut PacketPool, pkt: &Packet) -> Packet {
    let mut p = pool.alloc();
    p.set_data(pkt.data());
    p.set_layers(pkt.l3_offset(), pkt.l4_offset());
    p
}
