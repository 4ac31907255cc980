//! A priority classifier over flow keys, by tuple-space search.
//!
//! Rules are grouped by the set of (key field, mask) pairs they match on —
//! a *subtable* — and each subtable is a hash table from the masked key
//! values to its rules. A lookup visits subtables in order of their best
//! priority and stops as soon as no later subtable can beat what it has
//! found. Northd's tables have a handful of distinct masks each, so a
//! lookup costs a few hashes. Every subtable visited adds its masks to the
//! *consulted* mask: the bits a cached decision depends on (OVS's
//! megaflow wildcards).

use crate::keyhash::BuildKeyHasher;
use crate::lflow::normalize::Conjunction;
use crate::lflow::symbols::KeyField;
use std::collections::{HashMap, HashSet};

/// A flow key: one value per [`KeyField`], by [`KeyField::index`].
pub type Key = [u128; KeyField::COUNT];

/// An all-zero key (also the "nothing consulted" mask).
pub const ZERO_KEY: Key = [0; KeyField::COUNT];

struct Subtable<T> {
    /// (key index, mask) pairs, in key order.
    masks: Vec<(usize, u128)>,
    max_priority: u16,
    /// Masked key values → rules, best priority first. A boxed slice: the
    /// values never grow, and the capacity word is 8 bytes a rule.
    rules: HashMap<Box<[u128]>, Bucket<T>, BuildKeyHasher>,
    /// Checks of the earlier stages' fields, in stage order (none when the
    /// subtable's fields are all in one stage).
    stages: Vec<Stage>,
}

/// The rules with one masked key value, best priority first. Northd almost
/// never repeats a match at one priority, so one rule is kept inline and
/// costs no allocation of its own.
enum Bucket<T> {
    One((u16, T)),
    Many(Vec<(u16, T)>),
}

impl<T> Bucket<T> {
    fn as_slice(&self) -> &[(u16, T)] {
        match self {
            Bucket::One(rule) => std::slice::from_ref(rule),
            Bucket::Many(rules) => rules,
        }
    }

    /// Adds a rule after every rule of higher or equal priority (stable).
    fn insert(&mut self, priority: u16, value: T) {
        let many = match self {
            Bucket::Many(rules) => rules,
            Bucket::One(_) => {
                let Bucket::One(first) =
                    std::mem::replace(self, Bucket::Many(Vec::with_capacity(2)))
                else {
                    return;
                };
                let Bucket::Many(rules) = self else {
                    return;
                };
                rules.push(first);
                rules
            }
        };
        let at = many
            .iter()
            .position(|(p, _)| *p < priority)
            .unwrap_or(many.len());
        many.insert(at, (priority, value));
    }
}

/// OVS's staged lookup: a subtable's fields split into metadata, L2, L3
/// and L4 stages, and each stage but the last keeps the hashes of its rules'
/// values over that stage and the ones before. A packet whose values are
/// not among them cannot match, so the lookup stops there and only the
/// stages it read count as consulted: an IPv4 packet meeting a subtable of
/// `udp.src == 68 && udp.dst == 67` rules consults the IP protocol, not
/// the ports, and its megaflow does not pin them.
struct Stage {
    /// Fields of this stage and the earlier ones.
    fields: Vec<(usize, u128)>,
    /// Hashes of every rule's values over `fields`.
    seen: HashSet<u64, BuildKeyHasher>,
}

/// The stage a key field is looked at in.
fn stage_of(index: usize) -> u8 {
    match KeyField::ALL[index] {
        KeyField::EthSrc | KeyField::EthDst | KeyField::EthType | KeyField::VlanTci => 1,
        KeyField::IpProto
        | KeyField::IpTos
        | KeyField::IpTtl
        | KeyField::IpFrag
        | KeyField::Nw4Src
        | KeyField::Nw4Dst
        | KeyField::Ip6Src
        | KeyField::Ip6Dst
        | KeyField::Ip6Label
        | KeyField::ArpOp
        | KeyField::ArpSha
        | KeyField::ArpTha => 2,
        KeyField::NdTarget | KeyField::TpSrc | KeyField::TpDst | KeyField::TcpFlags => 3,
        // Metadata, conntrack state and the packet mark come first.
        _ => 0,
    }
}

/// The hash of `values` (masked already) for a stage check.
fn stage_hash(values: impl Iterator<Item = u128>) -> u64 {
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for v in values {
        h = (h.rotate_left(5) ^ (v as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h = (h.rotate_left(5) ^ ((v >> 64) as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h
}

impl Stage {
    fn admits(&self, key: &Key) -> bool {
        let h = stage_hash(self.fields.iter().map(|&(i, m)| key[i] & m));
        self.seen.contains(&h)
    }
}

/// The stage checks for a subtable with these fields.
fn stages_for(masks: &[(usize, u128)]) -> Vec<Stage> {
    let last = masks.iter().map(|&(i, _)| stage_of(i)).max().unwrap_or(0);
    (0..last)
        .filter(|&s| masks.iter().any(|&(i, _)| stage_of(i) == s))
        .map(|s| Stage {
            fields: masks
                .iter()
                .copied()
                .filter(|&(i, _)| stage_of(i) <= s)
                .collect(),
            seen: HashSet::default(),
        })
        .collect()
}

impl<T> Subtable<T> {
    /// The rules whose masked values equal `key`'s, without allocating:
    /// the masked key is built on the stack and looked up as a slice.
    fn find(&self, key: &Key) -> Option<&(u16, T)> {
        let mut buf = [0u128; KeyField::COUNT];
        for (slot, &(i, m)) in buf.iter_mut().zip(&self.masks) {
            *slot = key[i] & m;
        }
        self.rules
            .get(&buf[..self.masks.len()])
            .and_then(|b| b.as_slice().first())
    }
}

/// One rule as [`Classifier::rules`] shows it.
pub struct RuleRef<'a, T> {
    /// Position of its subtable in lookup order.
    pub subtable: usize,
    /// (key index, mask) pairs it matches on.
    pub masks: &'a [(usize, u128)],
    /// The masked values, one per mask.
    pub values: &'a [u128],
    /// Place among the rules with the same values (0: looked at first).
    pub rank: usize,
    pub priority: u16,
    pub value: &'a T,
}

pub struct Classifier<T> {
    subtables: Vec<Subtable<T>>,
    rules: usize,
}

impl<T> Default for Classifier<T> {
    fn default() -> Self {
        Classifier {
            subtables: Vec::new(),
            rules: 0,
        }
    }
}

impl<T> Classifier<T> {
    /// Adds a rule. Rules of equal priority that overlap are ambiguous in
    /// OVN too; the one added first wins here.
    pub fn insert(&mut self, matches: &Conjunction, priority: u16, value: T) {
        let masks = || matches.0.iter().map(|(k, m)| (k.index(), m.mask));
        let pos = match self
            .subtables
            .iter()
            .position(|s| s.masks.iter().copied().eq(masks()))
        {
            Some(pos) => pos,
            None => {
                let masks: Vec<(usize, u128)> = masks().collect();
                self.subtables.push(Subtable {
                    stages: stages_for(&masks),
                    masks,
                    max_priority: 0,
                    rules: HashMap::default(),
                });
                self.subtables.len() - 1
            }
        };
        let sub = &mut self.subtables[pos];
        sub.max_priority = sub.max_priority.max(priority);
        let values: Box<[u128]> = matches.0.iter().map(|(_, m)| m.value).collect();
        for stage in &mut sub.stages {
            let prefix = stage.fields.iter().map(|&(i, _)| {
                sub.masks
                    .iter()
                    .position(|&(j, _)| j == i)
                    .map_or(0, |at| values[at])
            });
            stage.seen.insert(stage_hash(prefix));
        }
        match sub.rules.entry(values) {
            std::collections::hash_map::Entry::Occupied(mut bucket) => {
                bucket.get_mut().insert(priority, value)
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Bucket::One((priority, value)));
            }
        }
        // Keep subtables best-first: only this one can have moved up.
        let mut i = pos;
        while i > 0 && self.subtables[i - 1].max_priority < self.subtables[i].max_priority {
            self.subtables.swap(i - 1, i);
            i -= 1;
        }
        self.rules += 1;
    }

    pub fn len(&self) -> usize {
        self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }

    pub fn subtables(&self) -> usize {
        self.subtables.len()
    }

    /// Every rule, subtable by subtable (in lookup order), for dumps and
    /// for checking that two classifiers hold the same rules.
    pub fn rules(&self) -> impl Iterator<Item = RuleRef<'_, T>> {
        self.subtables
            .iter()
            .enumerate()
            .flat_map(|(subtable, sub)| {
                sub.rules.iter().flat_map(move |(values, bucket)| {
                    bucket
                        .as_slice()
                        .iter()
                        .enumerate()
                        .map(move |(rank, (priority, value))| RuleRef {
                            subtable,
                            masks: &sub.masks,
                            values,
                            rank,
                            priority: *priority,
                            value,
                        })
                })
            })
    }

    /// The best rule for `key`, ORing into `consulted` every mask visited.
    pub fn lookup(&self, key: &Key, consulted: &mut Key) -> Option<(u16, &T)> {
        let mut best: Option<(u16, &T)> = None;
        for sub in &self.subtables {
            if best.is_some_and(|(p, _)| p >= sub.max_priority) {
                break;
            }
            if !sub.stages.iter().all(|stage| {
                for &(i, m) in &stage.fields {
                    consulted[i] |= m;
                }
                stage.admits(key)
            }) {
                continue;
            }
            for &(i, m) in &sub.masks {
                consulted[i] |= m;
            }
            if let Some((p, v)) = sub.find(key) {
                if best.is_none_or(|(bp, _)| *p > bp) {
                    best = Some((*p, v));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lflow::normalize::Masked;

    fn conj(fields: &[(KeyField, u128, u128)]) -> Conjunction {
        Conjunction::of(
            fields
                .iter()
                .map(|&(k, value, mask)| (k, Masked { value, mask })),
        )
        .expect("no contradiction")
    }

    #[test]
    fn finds_the_highest_priority_match() {
        let mut c = Classifier::default();
        c.insert(&conj(&[]), 0, "default");
        c.insert(&conj(&[(KeyField::EthType, 0x800, 0xffff)]), 50, "ip4");
        c.insert(
            &conj(&[
                (KeyField::EthType, 0x800, 0xffff),
                (KeyField::IpProto, 6, 0xff),
            ]),
            100,
            "tcp",
        );
        c.insert(
            &conj(&[(KeyField::Nw4Dst, 0x0a000000, 0xff000000)]),
            70,
            "10/8",
        );
        let mut key = ZERO_KEY;
        key[KeyField::EthType.index()] = 0x800;
        key[KeyField::IpProto.index()] = 17;
        let mut consulted = ZERO_KEY;
        assert_eq!(c.lookup(&key, &mut consulted).map(|(_, v)| *v), Some("ip4"));
        assert_eq!(
            consulted[KeyField::IpProto.index()],
            0xff,
            "the TCP subtable was looked at"
        );
        key[KeyField::Nw4Dst.index()] = 0x0a010203;
        assert_eq!(
            c.lookup(&key, &mut ZERO_KEY.clone()).map(|(_, v)| *v),
            Some("10/8")
        );
        key[KeyField::IpProto.index()] = 6;
        assert_eq!(
            c.lookup(&key, &mut ZERO_KEY.clone()).map(|(p, v)| (p, *v)),
            Some((100, "tcp"))
        );
        key[KeyField::EthType.index()] = 0x86dd;
        key[KeyField::Nw4Dst.index()] = 0;
        assert_eq!(
            c.lookup(&key, &mut ZERO_KEY.clone()).map(|(_, v)| *v),
            Some("default")
        );
        assert_eq!((c.len(), c.subtables()), (4, 4));
    }

    #[test]
    fn staged_lookup_leaves_later_stages_unconsulted() {
        let mut c = Classifier::default();
        c.insert(
            &conj(&[
                (KeyField::EthType, 0x800, 0xffff),
                (KeyField::IpProto, 17, 0xff),
                (KeyField::TpSrc, 68, 0xffff),
                (KeyField::TpDst, 67, 0xffff),
            ]),
            100,
            "dhcp",
        );
        c.insert(&conj(&[]), 0, "default");
        let mut key = ZERO_KEY;
        key[KeyField::EthType.index()] = 0x800;
        key[KeyField::IpProto.index()] = 6;
        key[KeyField::TpSrc.index()] = 40000;
        let mut consulted = ZERO_KEY;
        assert_eq!(
            c.lookup(&key, &mut consulted).map(|(_, v)| *v),
            Some("default")
        );
        assert_eq!(consulted[KeyField::IpProto.index()], 0xff);
        assert_eq!(
            consulted[KeyField::TpSrc.index()],
            0,
            "TCP never reaches L4"
        );
        // UDP does reach the ports, and matches.
        key[KeyField::IpProto.index()] = 17;
        key[KeyField::TpSrc.index()] = 68;
        key[KeyField::TpDst.index()] = 67;
        let mut consulted = ZERO_KEY;
        assert_eq!(
            c.lookup(&key, &mut consulted).map(|(_, v)| *v),
            Some("dhcp")
        );
        assert_eq!(consulted[KeyField::TpSrc.index()], 0xffff);
    }

    #[test]
    fn stops_early_and_records_only_what_it_visited() {
        let mut c = Classifier::default();
        c.insert(&conj(&[(KeyField::InPort, 1, 0xffff_ffff)]), 100, "in1");
        c.insert(
            &conj(&[(KeyField::EthSrc, 5, u128::from(u64::MAX >> 16))]),
            50,
            "mac",
        );
        let mut key = ZERO_KEY;
        key[KeyField::InPort.index()] = 1;
        let mut consulted = ZERO_KEY;
        assert_eq!(c.lookup(&key, &mut consulted).map(|(_, v)| *v), Some("in1"));
        assert_eq!(
            consulted[KeyField::EthSrc.index()],
            0,
            "the lower subtable was skipped"
        );
        let mut c2: Classifier<u8> = Classifier::default();
        assert!(c2.lookup(&key, &mut consulted).is_none());
        c2.insert(&conj(&[]), 1, 7);
        assert!(!c2.is_empty());
    }
}
