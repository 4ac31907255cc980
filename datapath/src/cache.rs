//! A worker's flow caches: the exact-match cache (EMC) in front of the
//! megaflow cache, as OVS's userspace datapath layers them.
//!
//! A *megaflow* is what one slow-path pass decided: a masked flow key (the
//! bits the pipeline looked at), the mask, and the datapath actions. The
//! megaflow cache finds one by tuple-space search: one hash table per
//! distinct mask (a subtable), each keyed by the masked key, visited until
//! one matches. Megaflows from one program never overlap (each packet has
//! exactly one answer), so the first match is the answer and the order of
//! subtables only matters for speed: they are kept busiest first.
//!
//! The EMC maps a packet's whole key to its megaflow: one hash of the key
//! (which the caller computes once per packet), two probed slots, one key
//! compare. It only points into the megaflow slab; a slot's version number
//! changes whenever its megaflow goes, so stale EMC entries miss. Each
//! entry also holds a value of the caller's (`X`, reset whenever the entry
//! is written): the worker keeps there what it learnt about packets with
//! that exact key (where their next pass's entry is, where their
//! connection is in conntrack). A caller that knows which entry a key is
//! probably in can check that one entry ([`FlowCache::follow`]) instead
//! of hashing the key.
//!
//! Caches belong to one worker and need no locks. Both are bounded: the
//! megaflow cache evicts the entry under a clock hand when full, the EMC
//! overwrites. A new compiled program flushes both (see [`FlowCache::flush`]):
//! revalidating megaflows against the new program would keep the ones that
//! did not change, at the cost of a slow-path run per megaflow; with
//! programs changing seconds apart and misses costing tens of µs, a flush is
//! cheaper and obviously correct.

use crate::flow::{FlowKey, WORDS};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// Slots in the EMC (a power of two).
pub const EMC_ENTRIES: usize = 8192;
/// Megaflows a worker keeps by default.
pub const DEFAULT_MEGAFLOWS: usize = 65536;
/// A megaflow hit puts its key in the EMC once in this many times (OVS's
/// `emc-insert-inv-prob`, same default): a flow of many packets gets in
/// soon enough, while a stream of short ones (every packet a new
/// connection) does not push everything else out, nor pay for writing
/// entries nobody reads. A slow-path translation always puts the key in.
pub const EMC_INSERT_INV_PROB: u32 = 100;

const NONE: u32 = u32::MAX;

/// Per-process hash keys, one odd multiplier per key word plus two for
/// the final mix: keys an attacker cannot know keep colliding keys from
/// being aimed at a hash chain.
struct HashKeys {
    words: [u64; WORDS],
    mix: [u64; 2],
}

fn hash_keys() -> &'static HashKeys {
    static KEYS: OnceLock<HashKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let s = RandomState::new();
        let mut next = {
            let mut i = 0usize;
            move || {
                let mut h = s.build_hasher();
                h.write_usize(i);
                i += 1;
                h.finish() | 1
            }
        };
        HashKeys {
            words: std::array::from_fn(|_| next()),
            mix: [next(), next()],
        }
    })
}

/// Asks the CPU to bring `x`'s cache line in, for a lookup soon after.
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults nor reads into
    // anything the program sees, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((x as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// 64×64→128 multiply, halves folded (wyhash's mixing step).
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a).wrapping_mul(u128::from(b));
    (p as u64) ^ ((p >> 64) as u64)
}

/// A multilinear hash: each word times its own random multiplier, summed
/// in two independent lanes (the multiplies do not wait on each other),
/// then mixed so that the high bits reach the low ones the tables index by.
#[inline(always)]
fn multilinear(k: &HashKeys, words: impl Iterator<Item = (usize, u64)>) -> u64 {
    let (mut a, mut b) = (0u64, 0u64);
    for (i, w) in words {
        let p = w.wrapping_mul(k.words[i]).rotate_left(32);
        if i & 1 == 0 {
            a = a.wrapping_add(p);
        } else {
            b = b.wrapping_add(p);
        }
    }
    fold_mul(a ^ k.mix[0], b ^ k.mix[1])
}

/// The hash of a whole key, for the EMC.
#[inline]
pub fn key_hash(key: &FlowKey) -> u64 {
    multilinear(hash_keys(), key.words.iter().copied().enumerate())
}

/// Whether two keys are equal, without a call to `memcmp`.
#[inline(always)]
pub fn same_key(a: &FlowKey, b: &FlowKey) -> bool {
    a.words
        .iter()
        .zip(&b.words)
        .fold(0, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type PrehashedMap<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;

/// One distinct mask and its megaflows.
struct Subtable {
    mask: FlowKey,
    /// The words where the mask has bits: only those are hashed and compared.
    words: Vec<usize>,
    /// Masked-key hash → first megaflow with it (chained by `next`).
    map: PrehashedMap<u32>,
    hits: u64,
    flows: usize,
}

impl Subtable {
    #[inline]
    fn hash(&self, key: &FlowKey) -> u64 {
        multilinear(
            hash_keys(),
            self.words
                .iter()
                .map(|&w| (w, key.words[w] & self.mask.words[w])),
        )
    }

    #[inline]
    fn matches(&self, key: &FlowKey, masked: &FlowKey) -> bool {
        self.words
            .iter()
            .all(|&w| key.words[w] & self.mask.words[w] == masked.words[w])
    }
}

/// A cached slow-path decision.
pub struct Megaflow<A> {
    /// The key, masked.
    pub key: FlowKey,
    pub mask: FlowKey,
    pub actions: A,
    pub hits: u64,
    subtable: u32,
    hash: u64,
    next: u32,
}

struct Slot<A> {
    version: u32,
    flow: Option<Megaflow<A>>,
}

#[derive(Clone, Copy)]
struct EmcEntry<X> {
    key: FlowKey,
    flow: u32,
    version: u32,
    extra: X,
}

/// What a lookup found: the megaflow, and the EMC entry that now holds
/// the key ([`NO_EMC`] when the EMC is off), `fresh` when this lookup
/// wrote that entry (its extra value is the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub flow: FlowRef,
    pub emc: u32,
    pub fresh: bool,
}

/// No EMC entry.
pub const NO_EMC: u32 = u32::MAX;

/// Counters, OPTE-style: a plain struct the worker reports as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub emc_hits: u64,
    pub megaflow_hits: u64,
    pub misses: u64,
    pub inserted: u64,
    pub evicted: u64,
    pub flushes: u64,
    /// Subtables visited by megaflow lookups (÷ lookups = masks per lookup).
    pub subtables_visited: u64,
}

/// A handle on a megaflow, valid until the cache changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRef(u32);

/// The EMC and megaflow cache of one worker; `X` is what the caller keeps
/// per EMC entry.
pub struct FlowCache<A, X: Copy + Default = ()> {
    /// The process's hash keys, looked up once (not per packet).
    keys: &'static HashKeys,
    subtables: Vec<Subtable>,
    slots: Vec<Slot<A>>,
    free: Vec<u32>,
    capacity: usize,
    clock: usize,
    emc: Box<[EmcEntry<X>]>,
    /// The hash of each EMC entry's key, apart: a probe that misses reads
    /// only this small array, not an entry (three cache lines of a table
    /// too big for the caches).
    emc_hashes: Box<[u64]>,
    emc_inserts: bool,
    lookups_since_sort: u32,
    /// Xorshift state for [`EMC_INSERT_INV_PROB`].
    lottery: u32,
    pub stats: CacheStats,
}

impl<A, X: Copy + Default> FlowCache<A, X> {
    /// A cache of at most `megaflows` megaflows; `emc` turns the EMC on.
    pub fn new(megaflows: usize, emc: bool) -> Self {
        FlowCache {
            keys: hash_keys(),
            subtables: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            capacity: megaflows.max(1),
            clock: 0,
            emc_hashes: vec![0; if emc { EMC_ENTRIES } else { 0 }].into_boxed_slice(),
            emc: vec![
                EmcEntry {
                    key: FlowKey::ZERO,
                    flow: NONE,
                    version: 0,
                    extra: X::default(),
                };
                if emc { EMC_ENTRIES } else { 0 }
            ]
            .into_boxed_slice(),
            emc_inserts: emc,
            lookups_since_sort: 0,
            lottery: 0x9e37_79b9,
            stats: CacheStats::default(),
        }
    }

    /// [`key_hash`] of `key`.
    #[inline]
    pub fn key_hash(&self, key: &FlowKey) -> u64 {
        multilinear(self.keys, key.words.iter().copied().enumerate())
    }

    /// Finds the megaflow for `key` (whose [`key_hash`] is `hash`).
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: u64) -> Option<FlowRef> {
        self.lookup_hit(key, hash).map(|h| h.flow)
    }

    /// [`FlowCache::lookup`], saying which EMC entry holds the key now.
    #[inline]
    pub fn lookup_hit(&mut self, key: &FlowKey, hash: u64) -> Option<Hit> {
        if !self.emc.is_empty() {
            for probe in [hash as usize, (hash >> 32) as usize] {
                let at = probe & (EMC_ENTRIES - 1);
                if self.emc_hashes[at] == hash && same_key(&self.emc[at].key, key) {
                    if let Some(flow) = self.emc_live(at) {
                        return Some(Hit {
                            flow,
                            emc: at as u32,
                            fresh: false,
                        });
                    }
                }
            }
        }
        let found = self.megaflow_lookup(key)?;
        self.stats.megaflow_hits += 1;
        let mut x = self.lottery;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.lottery = x;
        let emc = if x <= u32::MAX / EMC_INSERT_INV_PROB {
            self.emc_insert(key, hash, found)
        } else {
            NO_EMC
        };
        Some(Hit {
            flow: FlowRef(found),
            emc,
            fresh: true,
        })
    }

    /// Asks for the cache lines a lookup of a key with `hash` starts with,
    /// so that a batch's lookups wait for memory together rather than one
    /// after the other.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if self.emc.is_empty() {
            return;
        }
        let at = hash as usize & (EMC_ENTRIES - 1);
        prefetch(&self.emc_hashes[at]);
        prefetch(&self.emc_hashes[(hash >> 32) as usize & (EMC_ENTRIES - 1)]);
        prefetch(&self.emc[at]);
    }

    /// What a lookup would probably find for `key`, without counting or
    /// changing anything: the megaflow's actions, and the EMC entry that
    /// holds a key with the same hash, with the caller's value there, if
    /// one does. For looking ahead (what to prefetch): the keys are not
    /// compared (the caller's lookup will, through [`FlowCache::follow`]),
    /// and the answer is only good until the cache changes.
    #[inline]
    pub fn peek(&self, key: &FlowKey, hash: u64) -> Option<(&A, u32, Option<&X>)> {
        if !self.emc.is_empty() {
            for probe in [hash as usize, (hash >> 32) as usize] {
                let at = probe & (EMC_ENTRIES - 1);
                if self.emc_hashes[at] == hash {
                    let e = &self.emc[at];
                    let slot = self.slots.get(e.flow as usize)?;
                    if slot.version == e.version {
                        let f = slot.flow.as_ref()?;
                        return Some((&f.actions, at as u32, Some(&e.extra)));
                    }
                }
            }
        }
        for (i, sub) in self.subtables.iter().enumerate() {
            let h = sub.hash(key);
            let mut idx = sub.map.get(&h).copied().unwrap_or(NONE);
            while let Some(f) = self.slots.get(idx as usize).and_then(|s| s.flow.as_ref()) {
                if f.hash == h && f.subtable == i as u32 && sub.matches(key, &f.key) {
                    return Some((&f.actions, NO_EMC, None));
                }
                idx = f.next;
            }
        }
        None
    }

    /// The megaflow of EMC entry `at` if it is still cached, counted as
    /// an EMC hit.
    #[inline(always)]
    fn emc_live(&mut self, at: usize) -> Option<FlowRef> {
        let e = &self.emc[at];
        let slot = self.slots.get_mut(e.flow as usize)?;
        if slot.version != e.version {
            return None;
        }
        let f = slot.flow.as_mut()?;
        f.hits += 1;
        self.stats.emc_hits += 1;
        Some(FlowRef(e.flow))
    }

    /// The megaflow for `key` if EMC entry `emc` holds it: a lookup
    /// without hashing, for a caller that knows where `key` probably is.
    /// `None` says nothing about other entries.
    #[inline]
    pub fn follow(&mut self, emc: u32, key: &FlowKey) -> Option<FlowRef> {
        let at = emc as usize;
        if !same_key(&self.emc.get(at)?.key, key) {
            return None;
        }
        self.emc_live(at)
    }

    /// Megaflow `r`.
    #[inline]
    pub fn megaflow(&self, r: FlowRef) -> Option<&Megaflow<A>> {
        self.slots.get(r.0 as usize)?.flow.as_ref()
    }

    /// Counts `n` packets that went to megaflow `r` known to match it (the
    /// rest of a burst that went the way its first packet went) as the
    /// EMC hits their lookups would have been.
    #[inline]
    pub fn rehit(&mut self, r: FlowRef, n: u64) {
        if let Some(f) = self
            .slots
            .get_mut(r.0 as usize)
            .and_then(|s| s.flow.as_mut())
        {
            f.hits += n;
            self.stats.emc_hits += n;
        }
    }

    /// The key EMC entry `emc` holds (whether or not its flow is still
    /// cached).
    #[inline]
    pub fn emc_key(&self, emc: u32) -> Option<&FlowKey> {
        self.emc.get(emc as usize).map(|e| &e.key)
    }

    /// The caller's value in EMC entry `emc`.
    #[inline]
    pub fn extra_mut(&mut self, emc: u32) -> Option<&mut X> {
        self.emc.get_mut(emc as usize).map(|e| &mut e.extra)
    }

    /// A megaflow and the caller's value in EMC entry `emc`, together.
    #[inline]
    pub fn flow_and_extra(&mut self, r: FlowRef, emc: u32) -> (&Megaflow<A>, Option<&mut X>) {
        let flow = self.slots[r.0 as usize]
            .flow
            .as_ref()
            .expect("a FlowRef is used before the cache changes");
        (flow, self.emc.get_mut(emc as usize).map(|e| &mut e.extra))
    }

    fn megaflow_lookup(&mut self, key: &FlowKey) -> Option<u32> {
        self.lookups_since_sort += 1;
        if self.lookups_since_sort >= 1 << 20 {
            self.sort_subtables();
        }
        for (i, sub) in self.subtables.iter_mut().enumerate() {
            self.stats.subtables_visited += 1;
            let h = sub.hash(key);
            let mut idx = sub.map.get(&h).copied().unwrap_or(NONE);
            while idx != NONE {
                let Some(f) = self.slots[idx as usize].flow.as_mut() else {
                    break;
                };
                if f.hash == h && f.subtable == i as u32 && sub.matches(key, &f.key) {
                    f.hits += 1;
                    sub.hits += 1;
                    return Some(idx);
                }
                idx = f.next;
            }
        }
        self.stats.misses += 1;
        None
    }

    /// Points the EMC at megaflow `flow` for `key`; where it went.
    fn emc_insert(&mut self, key: &FlowKey, hash: u64, flow: u32) -> u32 {
        if !self.emc_inserts {
            return NO_EMC;
        }
        let version = self.slots[flow as usize].version;
        // Of the two slots, take an empty or stale one, else the first.
        let probes = [
            hash as usize & (EMC_ENTRIES - 1),
            (hash >> 32) as usize & (EMC_ENTRIES - 1),
        ];
        let live = |e: &EmcEntry<X>, slots: &[Slot<A>]| {
            e.flow != NONE && slots[e.flow as usize].version == e.version
        };
        let at = probes
            .into_iter()
            .find(|&p| !live(&self.emc[p], &self.slots))
            .unwrap_or(probes[0]);
        self.emc_hashes[at] = hash;
        self.emc[at] = EmcEntry {
            key: *key,
            flow,
            version,
            extra: X::default(),
        };
        at as u32
    }

    /// The megaflow a lookup found.
    #[inline]
    pub fn get(&self, r: FlowRef) -> &Megaflow<A> {
        self.slots[r.0 as usize]
            .flow
            .as_ref()
            .expect("a FlowRef is used before the cache changes")
    }

    /// Caches a slow-path decision for every key that agrees with `key`
    /// on `mask`, evicting one if the cache is full.
    pub fn insert(&mut self, key: &FlowKey, mask: &FlowKey, actions: A) -> FlowRef {
        if self.len() >= self.capacity {
            self.evict_one();
        }
        let masked = key.masked(mask);
        let sub_idx = match self.subtables.iter().position(|s| s.mask == *mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable {
                    mask: *mask,
                    words: (0..WORDS).filter(|&w| mask.words[w] != 0).collect(),
                    map: PrehashedMap::default(),
                    hits: 0,
                    flows: 0,
                });
                self.subtables.len() - 1
            }
        };
        let sub = &mut self.subtables[sub_idx];
        let hash = sub.hash(&masked);
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    version: 0,
                    flow: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let next = sub.map.insert(hash, idx).unwrap_or(NONE);
        sub.flows += 1;
        self.slots[idx as usize].flow = Some(Megaflow {
            key: masked,
            mask: *mask,
            actions,
            hits: 0,
            subtable: sub_idx as u32,
            hash,
            next,
        });
        self.stats.inserted += 1;
        FlowRef(idx)
    }

    /// Like [`FlowCache::insert`], and points the EMC at it for `key`.
    pub fn insert_and_remember(
        &mut self,
        key: &FlowKey,
        hash: u64,
        mask: &FlowKey,
        actions: A,
    ) -> Hit {
        let r = self.insert(key, mask, actions);
        let emc = self.emc_insert(key, hash, r.0);
        // The packet that made it counts, as in OVS.
        if let Some(f) = &mut self.slots[r.0 as usize].flow {
            f.hits = 1;
        }
        Hit {
            flow: r,
            emc,
            fresh: true,
        }
    }

    fn evict_one(&mut self) {
        let n = self.slots.len();
        for _ in 0..n {
            self.clock = (self.clock + 1) % n;
            if self.slots[self.clock].flow.is_some() {
                self.remove(self.clock as u32);
                self.stats.evicted += 1;
                return;
            }
        }
    }

    fn remove(&mut self, idx: u32) {
        let Some(f) = self.slots[idx as usize].flow.take() else {
            return;
        };
        self.slots[idx as usize].version = self.slots[idx as usize].version.wrapping_add(1);
        self.free.push(idx);
        let sub = &mut self.subtables[f.subtable as usize];
        sub.flows -= 1;
        // Unlink from the hash chain.
        let head = sub.map.get(&f.hash).copied().unwrap_or(NONE);
        if head == idx {
            if f.next == NONE {
                sub.map.remove(&f.hash);
            } else {
                sub.map.insert(f.hash, f.next);
            }
        } else {
            let mut cur = head;
            while cur != NONE {
                let Some(c) = self.slots[cur as usize].flow.as_mut() else {
                    break;
                };
                if c.next == idx {
                    c.next = f.next;
                    break;
                }
                cur = c.next;
            }
        }
    }

    /// Drops every megaflow (a new program is in force).
    pub fn flush(&mut self) {
        self.subtables.clear();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.flow.take().is_some() {
                slot.version = slot.version.wrapping_add(1);
                self.free.push(i as u32);
            }
        }
        for e in self.emc.iter_mut() {
            e.flow = NONE;
        }
        self.stats.flushes += 1;
    }

    /// Busiest subtables first, so hits stop early.
    fn sort_subtables(&mut self) {
        self.lookups_since_sort = 0;
        let mut order: Vec<usize> = (0..self.subtables.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.subtables[i].hits));
        let mut remap = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            remap[old] = new as u32;
        }
        let mut old: Vec<Option<Subtable>> = self.subtables.drain(..).map(Some).collect();
        for &i in &order {
            if let Some(mut s) = old[i].take() {
                s.hits /= 2;
                self.subtables.push(s);
            }
        }
        for slot in &mut self.slots {
            if let Some(f) = &mut slot.flow {
                f.subtable = remap[f.subtable as usize];
            }
        }
    }

    /// Megaflows cached.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct masks in use.
    pub fn masks(&self) -> usize {
        self.subtables.len()
    }

    /// Every megaflow, for `ironflow flows`.
    pub fn megaflows(&self) -> impl Iterator<Item = &Megaflow<A>> {
        self.slots.iter().filter_map(|s| s.flow.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::slots;

    fn key(dst: u128, port: u128) -> FlowKey {
        let mut k = FlowKey::ZERO;
        k.set(slots::IN_PORT, 1);
        k.set(slots::ETH_TYPE, 0x0800);
        k.set(slots::IP_DST, dst);
        k.set(slots::TP_DST, port);
        k
    }

    fn mask(dst: u128) -> FlowKey {
        let mut m = FlowKey::ZERO;
        m.or(slots::IN_PORT, u128::MAX);
        m.or(slots::ETH_TYPE, u128::MAX);
        m.or(slots::IP_DST, dst);
        m
    }

    #[test]
    fn megaflows_cover_what_their_mask_leaves_out() {
        let mut c: FlowCache<&str> = FlowCache::new(16, true);
        let k = key(0x0a00_0001, 80);
        assert!(c.lookup(&k, key_hash(&k)).is_none());
        c.insert(&k, &mask(0xffff_ff00), "subnet");
        // Another host in the /24 and another port: the same megaflow.
        let other = key(0x0a00_0063, 443);
        let r = c.lookup(&other, key_hash(&other)).expect("hit");
        assert_eq!(c.get(r).actions, "subnet");
        assert_eq!(c.stats.megaflow_hits, 1);
        // In the EMC after a lottery won once in EMC_INSERT_INV_PROB
        // megaflow hits, then found there.
        for _ in 0..20 * EMC_INSERT_INV_PROB {
            if c.stats.emc_hits > 0 {
                break;
            }
            let r2 = c.lookup(&other, key_hash(&other)).expect("hit");
            assert_eq!(r, r2);
        }
        assert_eq!(c.stats.emc_hits, 1, "{:?}", c.stats);
        assert!(c.stats.megaflow_hits > 1, "{:?}", c.stats);
        let hits = c.stats.megaflow_hits;
        c.lookup(&other, key_hash(&other)).expect("hit");
        assert_eq!((c.stats.emc_hits, c.stats.megaflow_hits), (2, hits));
        let outside = key(0x0b00_0001, 80);
        assert!(c.lookup(&outside, key_hash(&outside)).is_none());
    }

    #[test]
    fn eviction_and_flush_invalidate_the_emc() {
        let mut c: FlowCache<u32> = FlowCache::new(2, true);
        let keys: Vec<FlowKey> = (0..3).map(|i| key(0x0a00_0000 + i, 1)).collect();
        for (i, k) in keys.iter().enumerate() {
            c.insert_and_remember(k, key_hash(k), &mask(u128::MAX), i as u32);
        }
        assert_eq!(c.len(), 2);
        assert_eq!(c.stats.evicted, 1);
        let hits = keys
            .iter()
            .filter(|k| c.lookup(k, key_hash(k)).is_some())
            .count();
        assert_eq!(hits, 2, "the evicted one misses, EMC included");
        for k in &keys {
            if let Some(r) = c.lookup(k, key_hash(k)) {
                let ip = k.get(slots::IP_DST) as u32 - 0x0a00_0000;
                assert_eq!(c.get(r).actions, ip);
            }
        }
        c.flush();
        assert!(keys.iter().all(|k| c.lookup(k, key_hash(k)).is_none()));
        assert!(c.is_empty());
    }

    #[test]
    fn colliding_megaflows_in_one_subtable_chain() {
        let mut c: FlowCache<u32> = FlowCache::new(1024, false);
        for i in 0..500u32 {
            let k = key(u128::from(i), 0);
            c.insert(&k, &mask(u128::MAX), i);
        }
        for i in 0..500u32 {
            let k = key(u128::from(i), 7);
            let r = c.lookup(&k, key_hash(&k)).expect("hit");
            assert_eq!(c.get(r).actions, i);
        }
        for i in (0..500).step_by(2) {
            c.remove(i);
        }
        let hits = (0..500u32)
            .filter(|&i| {
                let k = key(u128::from(i), 0);
                c.lookup(&k, key_hash(&k)).is_some()
            })
            .count();
        assert_eq!(hits, 250);
        assert_eq!(c.masks(), 1);
    }
}
