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
use std::collections::HashMap;

/// A flow key: one value per [`KeyField`], by [`KeyField::index`].
pub type Key = [u128; KeyField::COUNT];

/// An all-zero key (also the "nothing consulted" mask).
pub const ZERO_KEY: Key = [0; KeyField::COUNT];

struct Subtable<T> {
    /// (key index, mask) pairs, in key order.
    masks: Vec<(usize, u128)>,
    max_priority: u16,
    /// Masked key values → rules, best priority first.
    rules: HashMap<Vec<u128>, Vec<(u16, T)>, BuildKeyHasher>,
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
            .and_then(|b| b.first())
    }
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
                self.subtables.push(Subtable {
                    masks: masks().collect(),
                    max_priority: 0,
                    rules: HashMap::default(),
                });
                self.subtables.len() - 1
            }
        };
        let sub = &mut self.subtables[pos];
        sub.max_priority = sub.max_priority.max(priority);
        let values: Vec<u128> = matches.0.values().map(|m| m.value).collect();
        let bucket = sub.rules.entry(values).or_default();
        // Stable: after every rule of higher or equal priority.
        let at = bucket
            .iter()
            .position(|(p, _)| *p < priority)
            .unwrap_or(bucket.len());
        bucket.insert(at, (priority, value));
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

    /// The best rule for `key`, ORing into `consulted` every mask visited.
    pub fn lookup(&self, key: &Key, consulted: &mut Key) -> Option<(u16, &T)> {
        let mut best: Option<(u16, &T)> = None;
        for sub in &self.subtables {
            if best.is_some_and(|(p, _)| p >= sub.max_priority) {
                break;
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
        Conjunction(
            fields
                .iter()
                .map(|&(k, value, mask)| (k, Masked { value, mask }))
                .collect(),
        )
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
