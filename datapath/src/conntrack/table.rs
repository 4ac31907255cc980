//! The connection table: connections in slots of a type-stable arena,
//! indexed by both their original and their reply tuple in shards of
//! open-addressing hash arrays that readers search without taking a lock.
//!
//! Why this shape: a packet of an established connection is the fast
//! path's common case and must cost a few nanoseconds, so a lookup takes
//! no lock and writes nothing shared unless the connection's state really
//! changes (an `RwLock` read plus a mutex per packet were most of the
//! cost, and made threads bounce each other's cache lines).
//!
//! - **Slots.** A connection lives in a [`Slot`] of an arena that only
//!   grows (chunks are allocated on demand and freed with the table), so
//!   a reader holding a slot number can always read it, even if the
//!   connection is gone and the slot reused meanwhile. Every field is an
//!   atomic word; a per-slot sequence number (`seq`, odd while a writer
//!   changes several words) lets a reader check that what it read belongs
//!   together, and a generation number (bumped on reuse) lets writers and
//!   removers tell a slot's connections apart.
//! - **Index.** Each shard has an array of `u64` entries (hash tag, slot
//!   number, which tuple), probed linearly; readers compare the tuple in
//!   the slot, so a stale entry never matches the wrong connection.
//!   Writers (insert, remove, rebuild) hold the shard's mutex; an insert
//!   or removal is one atomic store, and a rebuild (growth, or clearing
//!   tombstones) bumps the shard's `version` around it so that readers
//!   retry instead of missing a moved entry. Arrays replaced by bigger
//!   ones stay allocated until the table is dropped (they total less than
//!   the live ones), which is what lets readers go without epochs.
//! - **Updates.** A packet whose connection's state does not change
//!   writes nothing. A later expiry alone is one compare-and-swap; a
//!   change of protocol state, mark or label takes the slot's sequence
//!   lock. A connection is killed (marked dead) under that lock, which is
//!   what makes it gone for lookups; its index entries are removed after,
//!   and whoever removes the last one frees the slot.
//! - **Counters** are per thread (striped by a small per-thread number),
//!   bumped with a plain load and store.

use super::nat::NatKind;
use super::proto::ProtoState;
use super::tuple::CtTuple;
use crate::cache::prefetch;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A 64×64→128-bit multiply folded to 64 bits: the mixing step of the
/// table's hash (as in foldhash/wyhash).
#[inline]
pub(crate) fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The table's hash of a tuple, keyed by a per-table random `seed`: the
/// tuples come from the network, so their spread over buckets must not be
/// something a sender can predict.
#[inline(always)]
pub(crate) fn hash_words(w: &[u64; 6], seed: u64) -> u64 {
    let mut h = seed;
    let mut i = 0;
    while i < w.len() {
        h = fold_mul(h ^ w[i], 0x9e37_79b9_7f4a_7c15 ^ w[i + 1]);
        i += 2;
    }
    fold_mul(h, 0x2d35_8dcc_aa6c_78a5)
}

/// What changes as a connection's packets pass: a copy read from a slot,
/// changed by the caller and written back by [`Table::with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnState {
    pub proto: ProtoState,
    pub mark: u32,
    pub label: u128,
    pub expires: u64,
    pub dead: bool,
}

impl ConnState {
    #[inline]
    pub(crate) fn live(&self, now: u64) -> bool {
        !self.dead && now < self.expires
    }

    /// The `state` word: protocol state, dead flag, mark.
    #[inline]
    fn word(&self) -> u64 {
        u64::from(self.proto.pack()) | u64::from(self.dead) << 8 | u64::from(self.mark) << 32
    }
}

/// A connection's fixed parts, as given to [`Table::insert`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewConn {
    /// `[original, reply]`: the reply tuple is the translated one for a
    /// NATed connection.
    pub keys: [CtTuple; 2],
    pub nat: NatKind,
    pub state: ConnState,
}

/// `common` word layout: zone (16 bits), IPv6 (1), NAT kind (2), index
/// entries left (2), generation (32, high half).
const IDENT_MASK: u64 = 0x1_ffff;
const NAT_SHIFT: u32 = 17;
const REFS_SHIFT: u32 = 20;
const REFS_ONE: u64 = 1 << REFS_SHIFT;
const REFS_MASK: u64 = 3 << REFS_SHIFT;
const DEAD_BIT: u64 = 1 << 8;

/// One connection's slot: two cache lines, the first holding what every
/// lookup reads (sequence, state, expiry, zone, most of the original
/// tuple).
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct Slot {
    seq: AtomicU64,
    state: AtomicU64,
    expires: AtomicU64,
    common: AtomicU64,
    /// The tuples' first five words ([`CtTuple::words`]); the sixth
    /// (zone, IP version) is in `common`.
    keys: [[AtomicU64; 5]; 2],
    label: [AtomicU64; 2],
}

/// Where a connection was found last (slot number + 1, 0 for nowhere),
/// and by which of its tuples: what a worker keeps to find it again
/// without hashing. Only ever a guess: the slot is checked before use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hint {
    slot: u32,
    reply: bool,
}

/// A connection found by a lookup: which slot, which generation, which
/// tuple it was found by, and the slot's sequence number when read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handle {
    idx: u32,
    gen: u32,
    seq: u64,
    pub reply: bool,
    pub nat: NatKind,
}

const CHUNK: usize = 1024;

/// An index entry: tag (high 32 bits of the hash), slot number + 1, and
/// whether it is the reply tuple (lowest bit). 0 is empty. The tag also
/// says where in an array the entry belongs ([`home`]), so that arrays
/// are rebuilt from their entries alone.
const EMPTY: u64 = 0;
const TOMB: u64 = u64::MAX;

#[inline]
fn entry(hash: u64, idx: u32, reply: bool) -> u64 {
    (hash & 0xffff_ffff_0000_0000) | u64::from(idx + 1) << 1 | u64::from(reply)
}

/// Where the entry for `hash` (or an entry, which has its tag in the
/// same bits) is first looked for in an array of `m + 1` entries: from
/// the tag's bits, which arrays never outgrow (2^32 entries).
#[inline(always)]
fn home(hash: u64, m: usize) -> usize {
    (hash >> 32) as usize & m
}

#[inline]
fn entry_slot(e: u64) -> (u32, bool) {
    (
        (((e & 0xffff_ffff) >> 1) as u32).wrapping_sub(1),
        e & 1 != 0,
    )
}

/// Index arrays start with this many entries.
const MIN_CAP: usize = 16;
const LEVELS: usize = 32;

/// Counters one thread bumps; each stripe on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Stripe {
    pub misses: AtomicU64,
    pub hits: AtomicU64,
    pub new: AtomicU64,
    pub invalid: AtomicU64,
    pub committed: AtomicU64,
    pub limit_drops: AtomicU64,
    pub insert_failed: AtomicU64,
    pub expired: AtomicU64,
}

/// One increment by the only thread that uses this stripe (two threads
/// share one only when more than [`STRIPES`] run at once, and then a
/// count may be lost): a plain load and store, no locked instruction.
#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

const STRIPES: usize = 64;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
/// Numbers of threads that have ended, for reuse: numbers stay as small
/// as the count of threads alive at once.
static FREE_THREAD_NOS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A thread's number, given back when the thread ends.
struct ThreadNo(usize);

impl ThreadNo {
    fn claim() -> ThreadNo {
        let reuse = FREE_THREAD_NOS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        ThreadNo(reuse.unwrap_or_else(|| NEXT_THREAD.fetch_add(1, Relaxed)))
    }
}

impl Drop for ThreadNo {
    fn drop(&mut self) {
        FREE_THREAD_NOS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.0);
    }
}

thread_local! {
    static THREAD_NO: ThreadNo = ThreadNo::claim();
}

/// This thread's small number, for picking a counter stripe (0 while the
/// thread is being torn down).
#[inline]
fn thread_no() -> usize {
    THREAD_NO.try_with(|n| n.0).unwrap_or(0)
}

/// The writers' part of a shard.
struct ShardW {
    /// Entries in use in the current array, tombstones included.
    used: usize,
    /// Live entries in the current array.
    live: usize,
    /// Slots freed here, for reuse.
    free: Vec<u32>,
}

/// One shard, on cache lines of its own: what readers read first.
#[repr(align(128))]
struct Shard {
    /// Odd while a rebuild moves entries; readers retry when it changed.
    version: AtomicU64,
    /// Which of `levels` is the current array.
    level: AtomicUsize,
    levels: [OnceLock<Box<[AtomicU64]>>; LEVELS],
    w: Mutex<ShardW>,
}

impl Shard {
    fn new() -> Shard {
        let levels: [OnceLock<Box<[AtomicU64]>>; LEVELS] = std::array::from_fn(|_| OnceLock::new());
        let _ = levels[0].set(new_array(MIN_CAP));
        Shard {
            version: AtomicU64::new(0),
            level: AtomicUsize::new(0),
            levels,
            w: Mutex::new(ShardW {
                used: 0,
                live: 0,
                free: Vec::new(),
            }),
        }
    }

    /// The current array (level 0 is always there).
    #[inline]
    fn array(&self) -> &[AtomicU64] {
        let l = self.level.load(Acquire);
        match self.levels.get(l).and_then(|a| a.get()) {
            Some(a) => a,
            None => self.levels[0].get().map_or(&[], |a| a),
        }
    }

    /// The writers' lock; a thread that panicked holding it leaves the
    /// index consistent (every change is one store), so a poisoned lock
    /// is used as it is.
    fn lock(&self) -> MutexGuard<'_, ShardW> {
        self.w.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn new_array(cap: usize) -> Box<[AtomicU64]> {
    (0..cap).map(|_| AtomicU64::new(EMPTY)).collect()
}

/// Why an insert did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clash {
    /// A live connection already has this original tuple (another thread
    /// committed it first).
    Orig,
    /// A live connection already uses this reply tuple.
    Reply,
    /// No slot is left (the arena is full of connections and of dead
    /// ones not yet removed).
    Full,
}

pub(crate) struct Table {
    shards: Box<[Shard]>,
    mask: usize,
    seed: u64,
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    /// Slots handed out so far (the arena's high-water mark).
    next_slot: AtomicU32,
    stripes: Box<[Stripe]>,
    /// Live connections (not yet marked dead).
    live: AtomicUsize,
    /// Where the next sweep starts.
    cursor: AtomicUsize,
}

/// Where in the hash the shard index comes from: bits below the tag (the
/// high 32, which also place entries in arrays), so that entries in one
/// shard still spread over its array.
const SHARD_SHIFT: u32 = 20;

/// Why a slot read failed: the slot changed under the reader.
struct Torn;

impl Table {
    /// A table of `shards` shards with room for `max_entries` connections
    /// (plus some slack for dead ones not yet removed).
    pub(crate) fn new(shards: usize, max_entries: usize, seed: u64) -> Table {
        let n = shards.clamp(1, 1 << 12).next_power_of_two();
        let slots = max_entries
            .saturating_add(4 * CHUNK)
            .min(u32::MAX as usize / 2);
        Table {
            shards: (0..n).map(|_| Shard::new()).collect(),
            mask: n - 1,
            seed,
            chunks: (0..slots.div_ceil(CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
            next_slot: AtomicU32::new(0),
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            live: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
        }
    }

    #[inline]
    pub(crate) fn hash(&self, t: &CtTuple) -> u64 {
        hash_words(&t.words(), self.seed)
    }

    /// The hash of the tuple with words `w` ([`CtTuple::words`]).
    #[inline(always)]
    pub(crate) fn hash_words(&self, w: &[u64; 6]) -> u64 {
        hash_words(w, self.seed)
    }

    /// Prefetches the slot `hint` names (its first line, which a hinted
    /// lookup reads first).
    #[inline]
    pub(crate) fn prefetch_hint(&self, hint: &Hint) {
        if let Some(s) = hint.slot.checked_sub(1).and_then(|i| self.slot(i)) {
            prefetch(s);
        }
    }

    /// Prefetches where a lookup of the tuple with `hash` starts: for a
    /// connection about to be committed, whose reply tuple's place in a
    /// big table is a cache miss.
    #[inline]
    pub(crate) fn prefetch_home(&self, hash: u64) {
        let a = self.shard(hash).array();
        if let Some(e) = a.get(home(hash, a.len().wrapping_sub(1))) {
            prefetch(e);
        }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> SHARD_SHIFT) as usize & self.mask]
    }

    /// This thread's counters.
    #[inline]
    pub(crate) fn stats(&self) -> &Stripe {
        &self.stripes[thread_no() % STRIPES]
    }

    pub(crate) fn stripes(&self) -> &[Stripe] {
        &self.stripes
    }

    pub(crate) fn len(&self) -> usize {
        self.live.load(Relaxed)
    }

    #[inline]
    fn slot(&self, idx: u32) -> Option<&Slot> {
        let i = idx as usize;
        self.chunks.get(i / CHUNK)?.get()?.get(i % CHUNK)
    }

    /// Reads slot `idx` if it holds tuple `t` (as its reply tuple when
    /// `reply`): the handle and the state, or `None` when it holds
    /// another tuple. `Torn` when a writer is at work on it.
    #[inline(always)]
    fn read(
        &self,
        idx: u32,
        reply: bool,
        t: &[u64; 6],
    ) -> Result<Option<(Handle, ConnState)>, Torn> {
        let Some(s) = self.slot(idx) else {
            return Ok(None);
        };
        let seq = s.seq.load(Acquire);
        if seq & 1 != 0 {
            return Err(Torn);
        }
        let k = &s.keys[usize::from(reply)];
        let common = s.common.load(Relaxed);
        if common & IDENT_MASK != t[5] || (0..5).any(|i| k[i].load(Relaxed) != t[i]) {
            return Ok(None);
        }
        let word = s.state.load(Relaxed);
        let st = ConnState {
            proto: ProtoState::unpack(word as u8),
            dead: word & DEAD_BIT != 0,
            mark: (word >> 32) as u32,
            label: u128::from(s.label[1].load(Relaxed)) << 64
                | u128::from(s.label[0].load(Relaxed)),
            expires: s.expires.load(Relaxed),
        };
        fence(Acquire);
        if s.seq.load(Relaxed) != seq {
            return Err(Torn);
        }
        let h = Handle {
            idx,
            gen: (common >> 32) as u32,
            seq,
            reply,
            nat: nat_from(common >> NAT_SHIFT),
        };
        Ok(Some((h, st)))
    }

    /// The connection with tuple `t` (hash `hash`), live or not, and its
    /// state, without taking a lock.
    #[inline(always)]
    fn find(&self, w: &[u64; 6], hash: u64) -> Option<(Handle, ConnState)> {
        let shard = self.shard(hash);
        let tag = hash & 0xffff_ffff_0000_0000;
        'retry: loop {
            let v = shard.version.load(Acquire);
            if v & 1 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let a = shard.array();
            let m = a.len().wrapping_sub(1);
            let mut p = home(hash, m);
            let mut found = None;
            for _ in 0..a.len() {
                let e = a[p].load(Acquire);
                if e == EMPTY {
                    break;
                }
                if e != TOMB && e & 0xffff_ffff_0000_0000 == tag {
                    let (idx, reply) = entry_slot(e);
                    match self.read(idx, reply, w) {
                        Ok(Some(x)) => {
                            found = Some(x);
                            break;
                        }
                        Ok(None) => {}
                        Err(Torn) => {
                            std::hint::spin_loop();
                            continue 'retry;
                        }
                    }
                }
                p = (p + 1) & m;
            }
            // A rebuild may have moved the entry past where this looked.
            fence(Acquire);
            if shard.version.load(Relaxed) != v {
                continue;
            }
            return found;
        }
    }

    /// Runs `f` on the live connection whose tuple has words `t` (with
    /// `hash`),
    /// on a copy of its state, then writes back what `f` changed (nothing
    /// when nothing did). `f` may run more than once when another thread
    /// changes the connection at the same time, or when it returns `None`
    /// (it saw the connection change). `None` when there is no live
    /// connection with that tuple.
    #[inline(always)]
    pub(crate) fn with<R>(
        &self,
        t: &[u64; 6],
        hash: u64,
        now: u64,
        mut f: impl FnMut(&Handle, &mut ConnState) -> Option<R>,
    ) -> Option<R> {
        loop {
            let (h, old) = self.find(t, hash)?;
            if !old.live(now) {
                return None;
            }
            let mut st = old;
            let Some(r) = f(&h, &mut st) else {
                continue;
            };
            if self.store(&h, &old, &st) {
                return Some(r);
            }
        }
    }

    /// [`Table::with`], trying slot `hint` first: a worker that found the
    /// connection there before skips the hash and the index. The slot is
    /// only taken when it holds tuple `t` and is live, which is what the
    /// index would have found (a tuple is indexed once, by its live
    /// connection or by a dead one that a lookup passes over). `hint` is
    /// updated to where the connection was found.
    #[inline(always)]
    pub(crate) fn with_hint<R>(
        &self,
        t: &[u64; 6],
        hint: &mut Hint,
        hash: impl FnOnce() -> u64,
        now: u64,
        mut f: impl FnMut(&Handle, &mut ConnState) -> Option<R>,
    ) -> Option<R> {
        let mut try_hint = hint.slot != 0;
        let mut hash = Some(hash);
        let mut hv = 0;
        // One call of `f` in the loop, so that it is inlined.
        loop {
            let mut found = None;
            if try_hint {
                try_hint = false;
                if let Ok(Some((h, old))) = self.read(hint.slot - 1, hint.reply, t) {
                    if old.live(now) {
                        found = Some((h, old));
                    }
                }
            }
            let (h, old) = match found {
                Some(x) => x,
                None => {
                    if let Some(hash) = hash.take() {
                        hv = hash();
                    }
                    let (h, old) = self.find(t, hv)?;
                    *hint = Hint {
                        slot: h.idx + 1,
                        reply: h.reply,
                    };
                    if !old.live(now) {
                        return None;
                    }
                    (h, old)
                }
            };
            let mut st = old;
            let Some(r) = f(&h, &mut st) else {
                continue;
            };
            if self.store(&h, &old, &st) {
                return Some(r);
            }
        }
    }

    /// Writes `new` over `old` in `h`'s slot; `false` when the slot
    /// changed since `h` was read (the caller starts over).
    #[inline(always)]
    fn store(&self, h: &Handle, old: &ConnState, new: &ConnState) -> bool {
        let Some(s) = self.slot(h.idx) else {
            return false;
        };
        // Compared as the words the slot holds (the derived comparison
        // walks the protocol state's enums).
        let same_word = new.word() == old.word();
        if same_word && new.expires == old.expires && new.label == old.label {
            return true;
        }
        if new.expires > old.expires && same_word && new.label == old.label {
            // A later expiry alone: one compare-and-swap. It fails when
            // anyone changed the expiry since `old` was read; a slot
            // reused meanwhile has a new expiry of its own, so this cannot
            // touch another connection unless that expiry is the very same
            // nanosecond.
            return s
                .expires
                .compare_exchange(old.expires, new.expires, Relaxed, Relaxed)
                .is_ok();
        }
        if s.seq
            .compare_exchange(h.seq, h.seq + 1, Acquire, Relaxed)
            .is_err()
        {
            return false;
        }
        fence(Release);
        s.state.store(new.word(), Relaxed);
        s.expires.store(new.expires, Relaxed);
        s.label[0].store(new.label as u64, Relaxed);
        s.label[1].store((new.label >> 64) as u64, Relaxed);
        s.seq.store(h.seq + 2, Release);
        true
    }

    /// Reserves room for one more connection under `limit`.
    pub(crate) fn reserve(&self, limit: usize) -> bool {
        if self.live.fetch_add(1, Relaxed) >= limit {
            self.live.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    /// Gives back a reservation that did not become a connection.
    pub(crate) fn unreserve(&self) {
        self.live.fetch_sub(1, Relaxed);
    }

    /// Marks the connection in slot `idx` of generation `gen` dead if
    /// `why` says so of its state (under the slot's sequence lock). The
    /// first to kill it gets `true` (and the live count goes down);
    /// `false` too when it is another generation's now.
    fn kill(&self, idx: u32, gen: u32, why: impl Fn(&ConnState) -> bool) -> bool {
        let Some(s) = self.slot(idx) else {
            return false;
        };
        loop {
            let seq = s.seq.load(Acquire);
            if seq & 1 != 0 {
                std::hint::spin_loop();
                continue;
            }
            if s.seq
                .compare_exchange(seq, seq + 1, Acquire, Relaxed)
                .is_err()
            {
                continue;
            }
            fence(Release);
            let word = s.state.load(Relaxed);
            let st = ConnState {
                proto: ProtoState::unpack(word as u8),
                dead: word & DEAD_BIT != 0,
                mark: (word >> 32) as u32,
                label: 0,
                expires: s.expires.load(Relaxed),
            };
            let killed = (s.common.load(Relaxed) >> 32) as u32 == gen && !st.dead && why(&st);
            if killed {
                s.state.store(word | DEAD_BIT, Relaxed);
                self.live.fetch_sub(1, Relaxed);
            }
            s.seq.store(seq + 2, Release);
            return killed;
        }
    }

    /// Whether slot `idx` (generation `gen`) is dead or gone.
    fn is_dead(&self, idx: u32, gen: u32) -> bool {
        self.slot(idx).is_none_or(|s| {
            (s.common.load(Acquire) >> 32) as u32 != gen || s.state.load(Acquire) & DEAD_BIT != 0
        })
    }

    /// Ends a connection now (a TCP connection reopened on its tuple).
    pub(crate) fn end(&self, h: &Handle) {
        self.kill(h.idx, h.gen, |_| true);
        if self.is_dead(h.idx, h.gen) {
            self.unindex(h.idx, h.gen);
        }
    }

    /// The tuple `which` (0 original, 1 reply) of slot `idx`, read under
    /// its sequence number; `None` if it is another generation's now.
    fn tuple_of(&self, idx: u32, gen: u32, which: usize) -> Option<CtTuple> {
        let s = self.slot(idx)?;
        loop {
            let seq = s.seq.load(Acquire);
            if seq & 1 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let common = s.common.load(Relaxed);
            let mut w = [0; 6];
            for (i, x) in s.keys[which].iter().enumerate() {
                w[i] = x.load(Relaxed);
            }
            w[5] = common & IDENT_MASK;
            fence(Acquire);
            if s.seq.load(Relaxed) != seq {
                continue;
            }
            return ((common >> 32) as u32 == gen).then(|| CtTuple::from_words(&w));
        }
    }

    /// The other tuple of `h`'s connection (the original one when `h`
    /// was found by its reply tuple); `None` when the slot changed.
    pub(crate) fn other_tuple(&self, h: &Handle) -> Option<CtTuple> {
        let t = self.tuple_of(h.idx, h.gen, usize::from(!h.reply))?;
        let s = self.slot(h.idx)?;
        (s.seq.load(Acquire) == h.seq).then_some(t)
    }

    /// Removes the index entries of slot `idx` (generation `gen`) that
    /// are still there; whoever removes the last one frees the slot.
    fn unindex(&self, idx: u32, gen: u32) {
        for which in 0..2 {
            let Some(t) = self.tuple_of(idx, gen, which) else {
                return;
            };
            let hash = self.hash(&t);
            let shard = self.shard(hash);
            let mut w = shard.lock();
            // Under the shard's lock the slot cannot be freed while this
            // entry still points to it, so checking the generation here
            // is enough.
            if self
                .slot(idx)
                .is_none_or(|s| (s.common.load(Acquire) >> 32) as u32 != gen)
            {
                return;
            }
            let a = shard.array();
            let want = entry(hash, idx, which == 1);
            let m = a.len() - 1;
            let mut p = home(hash, m);
            for _ in 0..a.len() {
                let e = a[p].load(Relaxed);
                if e == EMPTY {
                    break;
                }
                if e == want {
                    a[p].store(TOMB, Release);
                    w.live -= 1;
                    self.drop_ref(idx, &mut w);
                    break;
                }
                p = (p + 1) & m;
            }
        }
    }

    /// One index entry of slot `idx` is gone; frees the slot (onto `w`'s
    /// free list) when it was the last.
    fn drop_ref(&self, idx: u32, w: &mut ShardW) {
        if let Some(s) = self.slot(idx) {
            let before = s.common.fetch_sub(REFS_ONE, AcqRel);
            if before & REFS_MASK == REFS_ONE {
                w.free.push(idx);
            }
        }
    }

    /// A slot for a new connection: from `w`'s free list, the arena, or
    /// (when the arena is used up) another shard's free list.
    fn alloc(&self, w: &mut ShardW, skip: &[usize]) -> Option<u32> {
        if let Some(i) = w.free.pop() {
            return Some(i);
        }
        let cap = (self.chunks.len() * CHUNK) as u32;
        let mut n = self.next_slot.load(Relaxed);
        while n < cap {
            match self
                .next_slot
                .compare_exchange_weak(n, n + 1, Relaxed, Relaxed)
            {
                Ok(_) => {
                    let c = &self.chunks[n as usize / CHUNK];
                    c.get_or_init(|| (0..CHUNK).map(|_| Slot::default()).collect());
                    return Some(n);
                }
                Err(x) => n = x,
            }
        }
        for (i, s) in self.shards.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            if let Ok(mut o) = s.w.try_lock() {
                if let Some(x) = o.free.pop() {
                    return Some(x);
                }
            }
        }
        None
    }

    /// Where tuple `t` (hash `hash`) is in `a`: its entry's position and
    /// slot, if indexed.
    fn position(&self, a: &[AtomicU64], t: &CtTuple, hash: u64) -> Option<(usize, u32, bool)> {
        let w = t.words();
        let tag = hash & 0xffff_ffff_0000_0000;
        let m = a.len() - 1;
        let mut p = home(hash, m);
        for _ in 0..a.len() {
            let e = a[p].load(Relaxed);
            if e == EMPTY {
                return None;
            }
            if e != TOMB && e & 0xffff_ffff_0000_0000 == tag {
                let (idx, reply) = entry_slot(e);
                let s = self.slot(idx)?;
                // Writers of slot identities hold this shard's lock or
                // have not indexed the slot yet: no need for `seq` here.
                let k = &s.keys[usize::from(reply)];
                if s.common.load(Acquire) & IDENT_MASK == w[5]
                    && (0..5).all(|i| k[i].load(Relaxed) == w[i])
                {
                    return Some((p, idx, reply));
                }
            }
            p = (p + 1) & m;
        }
        None
    }

    /// Whether `t`'s place in a locked shard is free to take: not indexed,
    /// or indexed by a connection that is dead or has expired (which is
    /// then killed, counted, and its entry removed; its other entry is
    /// left for the caller to remove, through `evicted`).
    fn free(
        &self,
        shard: &Shard,
        w: &mut ShardW,
        t: &CtTuple,
        hash: u64,
        now: u64,
        evicted: &mut Vec<(u32, u32)>,
    ) -> bool {
        let a = shard.array();
        let Some((p, idx, _)) = self.position(a, t, hash) else {
            return true;
        };
        let Some(s) = self.slot(idx) else {
            return true;
        };
        let gen = (s.common.load(Acquire) >> 32) as u32;
        if self.kill(idx, gen, |st| !st.live(now)) {
            bump(&self.stats().expired);
        } else if !self.is_dead(idx, gen) {
            return false;
        }
        a[p].store(TOMB, Release);
        w.live -= 1;
        self.drop_ref(idx, w);
        evicted.push((idx, gen));
        true
    }

    /// Puts an entry for slot `idx` into a locked shard, growing or
    /// rebuilding its array first when it is getting full.
    fn put(&self, shard: &Shard, w: &mut ShardW, hash: u64, idx: u32, reply: bool) {
        let cap = shard.array().len();
        if (w.used + 1) * 4 > cap * 3 {
            self.rebuild(shard, w);
        }
        let a = shard.array();
        let m = a.len() - 1;
        let mut p = home(hash, m);
        loop {
            let e = a[p].load(Relaxed);
            if e == EMPTY || e == TOMB {
                if e == EMPTY {
                    w.used += 1;
                }
                w.live += 1;
                a[p].store(entry(hash, idx, reply), Release);
                return;
            }
            p = (p + 1) & m;
        }
    }

    /// Rehashes a locked shard's live entries: into an array twice the
    /// size when more than a third full of live ones, else into the same
    /// one (to clear tombstones). Readers retry while it runs.
    fn rebuild(&self, shard: &Shard, w: &mut ShardW) {
        let old = shard.array();
        let live: Vec<u64> = old
            .iter()
            .map(|e| e.load(Relaxed))
            .filter(|&e| e != EMPTY && e != TOMB)
            .collect();
        let level = shard.level.load(Relaxed);
        let grow = live.len() * 3 >= old.len() && level + 1 < shard.levels.len();
        shard.version.fetch_add(1, AcqRel);
        fence(Release);
        let a: &[AtomicU64] = if grow {
            let a = shard.levels[level + 1].get_or_init(|| new_array(old.len() * 2));
            shard.level.store(level + 1, Release);
            a
        } else {
            for e in old {
                e.store(EMPTY, Relaxed);
            }
            old
        };
        let m = a.len() - 1;
        // An entry's tag is where its home is: no slot is read (each would
        // be a cache miss in a big table).
        for &e in &live {
            let mut p = home(e, m);
            while a[p].load(Relaxed) != EMPTY {
                p = (p + 1) & m;
            }
            a[p].store(e, Relaxed);
        }
        w.used = live.len();
        w.live = live.len();
        shard.version.fetch_add(1, Release);
    }

    /// Indexes a new connection by both tuples, unless a live connection
    /// holds either. The caller has reserved room with [`Table::reserve`].
    /// `hash` is the original tuple's.
    pub(crate) fn insert(&self, c: &NewConn, hash: u64, now: u64) -> Result<(), Clash> {
        let same_tuple = c.keys[0] == c.keys[1];
        let hashes = [hash, self.hash(&c.keys[1])];
        let idx = hashes.map(|h| (h >> SHARD_SHIFT) as usize & self.mask);
        let mut evicted = Vec::new();
        let result = if idx[0] == idx[1] {
            let shard = &self.shards[idx[0]];
            let mut w = shard.lock();
            if !self.free(shard, &mut w, &c.keys[0], hashes[0], now, &mut evicted) {
                Err(Clash::Orig)
            } else if !same_tuple
                && !self.free(shard, &mut w, &c.keys[1], hashes[1], now, &mut evicted)
            {
                Err(Clash::Reply)
            } else if let Some(i) = self.alloc(&mut w, &idx) {
                self.fill(i, c, same_tuple);
                self.put(shard, &mut w, hashes[0], i, false);
                if !same_tuple {
                    self.put(shard, &mut w, hashes[1], i, true);
                }
                Ok(())
            } else {
                Err(Clash::Full)
            }
        } else {
            let (s0, s1) = (&self.shards[idx[0]], &self.shards[idx[1]]);
            // Lower index first: every two-shard holder agrees on the order.
            let (mut w0, mut w1) = if idx[0] < idx[1] {
                let a = s0.lock();
                (a, s1.lock())
            } else {
                let b = s1.lock();
                (s0.lock(), b)
            };
            if !self.free(s0, &mut w0, &c.keys[0], hashes[0], now, &mut evicted) {
                Err(Clash::Orig)
            } else if !self.free(s1, &mut w1, &c.keys[1], hashes[1], now, &mut evicted) {
                Err(Clash::Reply)
            } else if let Some(i) = self.alloc(&mut w0, &idx) {
                self.fill(i, c, false);
                self.put(s0, &mut w0, hashes[0], i, false);
                self.put(s1, &mut w1, hashes[1], i, true);
                Ok(())
            } else {
                Err(Clash::Full)
            }
        };
        for (i, gen) in evicted {
            self.unindex(i, gen);
        }
        result
    }

    /// Writes a new connection into free slot `i` (no reader can match it
    /// until it is indexed; a reader that still has an entry of its last
    /// connection sees the sequence move).
    fn fill(&self, i: u32, c: &NewConn, same_tuple: bool) {
        let Some(s) = self.slot(i) else {
            return;
        };
        let seq = s.seq.load(Relaxed);
        s.seq.store(seq | 1, Relaxed);
        fence(Release);
        let gen = (s.common.load(Relaxed) >> 32).wrapping_add(1);
        let refs = if same_tuple { 1 } else { 2 };
        let w0 = c.keys[0].words();
        s.common.store(
            gen << 32 | refs << REFS_SHIFT | nat_bits(c.nat) << NAT_SHIFT | w0[5],
            Relaxed,
        );
        for (k, t) in s.keys.iter().zip(&c.keys) {
            for (x, v) in k.iter().zip(t.words()) {
                x.store(v, Relaxed);
            }
        }
        s.state.store(c.state.word(), Relaxed);
        s.expires.store(c.state.expires, Relaxed);
        s.label[0].store(c.state.label as u64, Relaxed);
        s.label[1].store((c.state.label >> 64) as u64, Relaxed);
        s.seq.store((seq | 1) + 1, Release);
    }

    /// Whether a live connection has tuple `t` (NAT's uniqueness test for
    /// a candidate reply tuple).
    pub(crate) fn taken(&self, t: &CtTuple, now: u64) -> bool {
        self.find(&t.words(), self.hash(t))
            .is_some_and(|(_, st)| st.live(now))
    }

    /// Calls `f` with every connection indexed in shard `i` whose entry
    /// `pick` accepts: slot, generation, tuples, NAT kind and state.
    fn scan(
        &self,
        i: usize,
        pick: impl Fn(bool) -> bool,
        mut f: impl FnMut(u32, u32, [CtTuple; 2], NatKind, &ConnState),
    ) {
        let shard = &self.shards[i];
        let _w = shard.lock();
        for e in shard.array() {
            let e = e.load(Relaxed);
            if e == EMPTY || e == TOMB {
                continue;
            }
            let (idx, reply) = entry_slot(e);
            if !pick(reply) {
                continue;
            }
            let Some(s) = self.slot(idx) else {
                continue;
            };
            loop {
                let seq = s.seq.load(Acquire);
                if seq & 1 != 0 {
                    std::hint::spin_loop();
                    continue;
                }
                let common = s.common.load(Relaxed);
                let mut k = [[0; 6]; 2];
                for (w, x) in k.iter_mut().zip(&s.keys) {
                    for (a, b) in w.iter_mut().zip(x) {
                        *a = b.load(Relaxed);
                    }
                    w[5] = common & IDENT_MASK;
                }
                let word = s.state.load(Relaxed);
                let st = ConnState {
                    proto: ProtoState::unpack(word as u8),
                    dead: word & DEAD_BIT != 0,
                    mark: (word >> 32) as u32,
                    label: u128::from(s.label[1].load(Relaxed)) << 64
                        | u128::from(s.label[0].load(Relaxed)),
                    expires: s.expires.load(Relaxed),
                };
                fence(Acquire);
                if s.seq.load(Relaxed) != seq {
                    continue;
                }
                let tuples = k.map(|w| CtTuple::from_words(&w));
                f(
                    idx,
                    (common >> 32) as u32,
                    tuples,
                    nat_from(common >> NAT_SHIFT),
                    &st,
                );
                break;
            }
        }
    }

    /// Removes expired connections, visiting whole shards from where the
    /// last sweep stopped until about `budget` entries have been looked
    /// at. Returns how many connections expired.
    pub(crate) fn sweep(&self, now: u64, budget: usize) -> usize {
        let mut seen = 0;
        let mut expired = 0;
        let mut victims = Vec::new();
        for _ in 0..self.shards.len() {
            let i = self.cursor.fetch_add(1, Relaxed) & self.mask;
            self.scan(
                i,
                |_| true,
                |idx, gen, _, _, st| {
                    seen += 1;
                    if !st.live(now) {
                        victims.push((idx, gen));
                    }
                },
            );
            for (idx, gen) in victims.drain(..) {
                if self.kill(idx, gen, |st| now >= st.expires) {
                    expired += 1;
                    bump(&self.stats().expired);
                }
                if self.is_dead(idx, gen) {
                    self.unindex(idx, gen);
                }
            }
            if seen >= budget {
                break;
            }
        }
        expired
    }

    /// Removes every connection (of `zone`, when given).
    pub(crate) fn flush(&self, zone: Option<u16>) {
        let mut gone = Vec::new();
        for i in 0..self.shards.len() {
            self.scan(
                i,
                |reply| !reply,
                |idx, gen, keys, _, _| {
                    if zone.is_none_or(|z| keys[0].zone == z) {
                        gone.push((idx, gen));
                    }
                },
            );
        }
        for (idx, gen) in gone {
            self.kill(idx, gen, |_| true);
            if self.is_dead(idx, gen) {
                self.unindex(idx, gen);
            }
        }
    }

    /// Calls `f` on every live connection (tuples, NAT kind, state), one
    /// shard at a time.
    pub(crate) fn for_each(&self, now: u64, mut f: impl FnMut(&[CtTuple; 2], NatKind, &ConnState)) {
        for i in 0..self.shards.len() {
            self.scan(
                i,
                |reply| !reply,
                |_, _, keys, nat, st| {
                    if st.live(now) {
                        f(&keys, nat, st);
                    }
                },
            );
        }
    }
}

fn nat_bits(n: NatKind) -> u64 {
    match n {
        NatKind::None => 0,
        NatKind::Src => 1,
        NatKind::Dst => 2,
    }
}

#[inline]
fn nat_from(bits: u64) -> NatKind {
    match bits & 3 {
        1 => NatKind::Src,
        2 => NatKind::Dst,
        _ => NatKind::None,
    }
}
