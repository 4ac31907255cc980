//! The connection table: shards of hash maps that index every connection
//! by both its original and its reply tuple.
//!
//! A connection lives in an `Arc` that both of its index entries point
//! to; the two tuples usually hash to different shards. A lookup hashes
//! the tuple once (that hash picks the shard and is the map's hash too),
//! takes the shard's read lock and the connection's own mutex, and
//! allocates nothing. Inserting takes the write locks of the (at most two)
//! shards involved in index order, so two inserters never deadlock;
//! removing takes one shard at a time. A connection is first marked dead
//! under its mutex, which is what makes it gone for lookups, then its
//! index entries are removed; a dead or expired entry that someone else
//! finds first is treated as absent and removed by whoever needs its
//! place (an insert) or sees it (a sweep).

// `Ix` holds an `Arc<Conn>`, whose state mutates behind a mutex, but it
// hashes and compares only the connection's tuples, which never change
// once it is indexed.
#![allow(clippy::mutable_key_type)]

use super::nat::NatKind;
use super::proto::ProtoState;
use super::tuple::CtTuple;
use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

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
#[inline]
pub(crate) fn hash_tuple(t: &CtTuple, seed: u64) -> u64 {
    let w = t.words();
    let mut h = seed;
    let mut i = 0;
    while i < w.len() {
        h = fold_mul(h ^ w[i], 0x9e37_79b9_7f4a_7c15 ^ w[i + 1]);
        i += 2;
    }
    fold_mul(h, 0x2d35_8dcc_aa6c_78a5)
}

/// A tuple with its hash, so maps reuse the hash the shard was picked by.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct HKey {
    pub hash: u64,
    pub tuple: CtTuple,
}

impl Hash for HKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hands the precomputed hash through.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `HKey` is hashed here, through `write_u64`; this keeps the
        // hasher total anyway.
        for &b in bytes {
            self.0 = fold_mul(self.0 ^ u64::from(b), 0x9e37_79b9_7f4a_7c15);
        }
    }
}

type Map = HashSet<Ix, BuildHasherDefault<PassThrough>>;

/// A connection. The state comes first so that a lookup touches the
/// cache line it compares the tuple in and the one it updates, no more.
#[repr(C)]
pub(crate) struct Conn {
    pub state: Mutex<ConnState>,
    pub nat: NatKind,
    /// `[original, reply]`: the reply tuple is the translated one for a
    /// NATed connection.
    pub keys: [HKey; 2],
}

/// What changes as a connection's packets pass.
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
}

impl Conn {
    /// The connection's state; a thread that panicked holding it cannot
    /// leave it half-written in a way that matters to conntrack, so a
    /// poisoned lock is used as it is.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An index entry: the connection and which of its tuples this is. The
/// tuple is not copied into the map: a bucket is 16 bytes, and comparing
/// reads the connection, which the lookup needs next anyway.
pub(crate) struct Ix {
    pub conn: Arc<Conn>,
    pub reply: bool,
}

impl Borrow<HKey> for Ix {
    #[inline]
    fn borrow(&self) -> &HKey {
        &self.conn.keys[usize::from(self.reply)]
    }
}

impl Hash for Ix {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(Borrow::<HKey>::borrow(self).hash);
    }
}

impl PartialEq for Ix {
    #[inline]
    fn eq(&self, other: &Ix) -> bool {
        Borrow::<HKey>::borrow(self) == Borrow::<HKey>::borrow(other)
    }
}

impl Eq for Ix {}

/// Counters kept per shard so threads do not share one cache line.
#[derive(Default)]
pub(crate) struct ShardStats {
    pub misses: AtomicU64,
    pub hits: AtomicU64,
    pub new: AtomicU64,
    pub committed: AtomicU64,
    pub invalid: AtomicU64,
    pub limit_drops: AtomicU64,
    pub insert_failed: AtomicU64,
    pub expired: AtomicU64,
}

#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// One shard, on cache lines of its own.
#[repr(align(128))]
pub(crate) struct Shard {
    map: RwLock<Map>,
    pub stats: ShardStats,
}

impl Shard {
    fn read(&self) -> RwLockReadGuard<'_, Map> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why an insert did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clash {
    /// A live connection already has this original tuple (another thread
    /// committed it first).
    Orig,
    /// A live connection already uses this reply tuple.
    Reply,
}

pub(crate) struct Table {
    shards: Box<[Shard]>,
    mask: usize,
    seed: u64,
    /// Live connections (not yet marked dead).
    live: AtomicUsize,
    /// Where the next sweep starts.
    cursor: AtomicUsize,
}

/// Where in the hash the shard index comes from: bits that hashbrown uses
/// neither for the bucket (low bits) nor for the tag (top 7 bits), so
/// entries in one shard still spread over its buckets.
const SHARD_SHIFT: u32 = 40;

impl Table {
    pub(crate) fn new(shards: usize, seed: u64) -> Table {
        let n = shards.clamp(1, 1 << 16).next_power_of_two();
        Table {
            shards: (0..n)
                .map(|_| Shard {
                    map: RwLock::new(Map::default()),
                    stats: ShardStats::default(),
                })
                .collect(),
            mask: n - 1,
            seed,
            live: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
        }
    }

    #[inline]
    pub(crate) fn hash(&self, t: &CtTuple) -> u64 {
        hash_tuple(t, self.seed)
    }

    #[inline]
    pub(crate) fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> SHARD_SHIFT) as usize & self.mask]
    }

    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    pub(crate) fn len(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Runs `f` on the live connection that has tuple `t` (with `hash`),
    /// with whether `t` is its reply tuple, under the connection's lock.
    #[inline]
    pub(crate) fn with<R>(
        &self,
        t: &CtTuple,
        hash: u64,
        now: u64,
        f: impl FnOnce(&Arc<Conn>, bool, &mut ConnState) -> R,
    ) -> Option<R> {
        let map = self.shard(hash).read();
        let e = map.get(&HKey { hash, tuple: *t })?;
        let mut st = e.conn.lock();
        if !st.live(now) {
            return None;
        }
        Some(f(&e.conn, e.reply, &mut st))
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

    /// Marks `conn` dead (once: the first caller gets `true` and the live
    /// count goes down).
    fn kill(&self, st: &mut ConnState) -> bool {
        if st.dead {
            return false;
        }
        st.dead = true;
        self.live.fetch_sub(1, Relaxed);
        true
    }

    /// Ends a connection now (a TCP connection reopened on its tuple).
    pub(crate) fn end(&self, conn: &Arc<Conn>) {
        {
            let mut st = conn.lock();
            self.kill(&mut st);
        }
        self.unindex(conn);
    }

    /// Removes `conn`'s index entries (those that still point to it).
    fn unindex(&self, conn: &Arc<Conn>) {
        for i in 0..2 {
            if i == 1 && conn.keys[1].tuple == conn.keys[0].tuple {
                break;
            }
            let key = conn.keys[i];
            let mut map = self.shard(key.hash).write();
            if map.get(&key).is_some_and(|e| Arc::ptr_eq(&e.conn, conn)) {
                map.remove(&key);
            }
        }
    }

    /// Whether the entry at `key` in `map` is free to take: absent, or a
    /// connection that is dead or expired (which is then killed, counted
    /// and pushed on `evicted` for its other entry to be removed).
    fn free(
        &self,
        map: &mut Map,
        key: &HKey,
        now: u64,
        stats: &ShardStats,
        evicted: &mut Vec<Arc<Conn>>,
    ) -> bool {
        let Some(e) = map.get(key) else {
            return true;
        };
        let conn = e.conn.clone();
        {
            let mut st = conn.lock();
            if st.live(now) {
                return false;
            }
            if self.kill(&mut st) {
                bump(&stats.expired);
            }
        }
        map.remove(key);
        evicted.push(conn);
        true
    }

    /// Indexes a new connection by both tuples, unless a live connection
    /// holds either. The caller has reserved room with [`Table::reserve`].
    pub(crate) fn insert(&self, conn: &Arc<Conn>, now: u64) -> Result<(), Clash> {
        let keys = conn.keys;
        let same_tuple = keys[0].tuple == keys[1].tuple;
        let idx = keys.map(|k| (k.hash >> SHARD_SHIFT) as usize & self.mask);
        let mut evicted = Vec::new();
        let result = if idx[0] == idx[1] {
            let shard = &self.shards[idx[0]];
            let mut map = shard.write();
            if !self.free(&mut map, &keys[0], now, &shard.stats, &mut evicted) {
                Err(Clash::Orig)
            } else if !same_tuple && !self.free(&mut map, &keys[1], now, &shard.stats, &mut evicted)
            {
                Err(Clash::Reply)
            } else {
                map.insert(Ix {
                    conn: conn.clone(),
                    reply: false,
                });
                if !same_tuple {
                    map.insert(Ix {
                        conn: conn.clone(),
                        reply: true,
                    });
                }
                Ok(())
            }
        } else {
            let (s0, s1) = (&self.shards[idx[0]], &self.shards[idx[1]]);
            // Lower index first: every two-shard holder agrees on the order.
            let (mut m0, mut m1) = if idx[0] < idx[1] {
                let a = s0.write();
                (a, s1.write())
            } else {
                let b = s1.write();
                (s0.write(), b)
            };
            if !self.free(&mut m0, &keys[0], now, &s0.stats, &mut evicted) {
                Err(Clash::Orig)
            } else if !self.free(&mut m1, &keys[1], now, &s1.stats, &mut evicted) {
                Err(Clash::Reply)
            } else {
                m0.insert(Ix {
                    conn: conn.clone(),
                    reply: false,
                });
                m1.insert(Ix {
                    conn: conn.clone(),
                    reply: true,
                });
                Ok(())
            }
        };
        for c in &evicted {
            self.unindex(c);
        }
        result
    }

    /// Whether a live connection has tuple `t` (NAT's uniqueness test for
    /// a candidate reply tuple).
    pub(crate) fn taken(&self, t: &CtTuple, now: u64) -> bool {
        let hash = self.hash(t);
        let map = self.shard(hash).read();
        map.get(&HKey { hash, tuple: *t })
            .is_some_and(|e| e.conn.lock().live(now))
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
            let shard = &self.shards[i];
            {
                let map = shard.read();
                seen += map.len();
                victims.extend(
                    map.iter()
                        .filter(|e| !e.conn.lock().live(now))
                        .map(|e| e.conn.clone()),
                );
            }
            for c in victims.drain(..) {
                let dead = {
                    let mut st = c.lock();
                    if !st.dead && now >= st.expires && self.kill(&mut st) {
                        expired += 1;
                        bump(&shard.stats.expired);
                    }
                    st.dead
                };
                if dead {
                    self.unindex(&c);
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
        for shard in self.shards.iter() {
            let mut map = shard.write();
            map.retain(|e| {
                let hit = match zone {
                    Some(z) => e.conn.keys[0].tuple.zone == z,
                    None => true,
                };
                if hit && !e.reply {
                    gone.push(e.conn.clone());
                }
                !hit
            });
        }
        for c in &gone {
            {
                let mut st = c.lock();
                self.kill(&mut st);
            }
            self.unindex(c);
        }
    }

    /// Calls `f` on every live connection, one shard at a time.
    pub(crate) fn for_each(&self, now: u64, mut f: impl FnMut(&Conn, &ConnState)) {
        for shard in self.shards.iter() {
            let map = shard.read();
            for e in map.iter().filter(|e| !e.reply) {
                let st = e.conn.lock();
                if st.live(now) {
                    f(&e.conn, &st);
                }
            }
        }
    }
}
