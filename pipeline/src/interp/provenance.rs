//! Where each key slot's current value came from, so that a cached
//! decision depends on exactly the input bits it should.
//!
//! The classifier reports which bits of the *current* key a lookup read;
//! the fast path caches by bits of the packet as it *entered* the pass.
//! The two differ once actions write: a router's `reg0 = ip4.dst` then a
//! lookup on `reg0` depends on the input's `ip4.dst`, while a lookup on a
//! register set to a constant depends on nothing the earlier lookups did
//! not already pin down. Each slot therefore carries an [`Origin`], and
//! [`Provenance::fold`] turns the bits a lookup read into input bits.

use crate::classifier::Key;
use crate::lflow::symbols::KeyField;

/// What a key slot's value is a function of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Origin {
    /// Still the input value, bit for bit.
    Input,
    /// Fixed by the decisions taken so far (constants, logical metadata).
    Fixed,
    /// The input value less this much (`ip.ttl--`): the datapath can
    /// decrement rather than store a value.
    Dec(u8),
    /// Some function of these input slots (a bit set of key indexes).
    Derived(u32),
}

impl Origin {
    /// The input slots this value depends on, when it sits in `slot`.
    pub(crate) fn deps(self, slot: usize) -> u32 {
        match self {
            Origin::Input | Origin::Dec(_) => 1 << slot,
            Origin::Fixed => 0,
            Origin::Derived(d) => d,
        }
    }

    /// This value (held in `slot`) moved somewhere else.
    pub(crate) fn moved_from(self, slot: usize) -> Origin {
        match self {
            Origin::Fixed => Origin::Fixed,
            other => Origin::Derived(other.deps(slot)),
        }
    }
}

/// Slots that are logical metadata rather than packet headers: on a
/// pass's entry they follow from the input port or the frozen state.
pub(crate) const METADATA: [KeyField; 6] = [
    KeyField::Xxreg(0),
    KeyField::Xxreg(1),
    KeyField::Xreg4,
    KeyField::Flags,
    KeyField::InPort,
    KeyField::OutPort,
];

/// The origin of every slot of one packet copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Provenance {
    /// The pass these origins are relative to: a copy made in an earlier
    /// pass is wholly fixed by that pass's frozen state.
    pub pass: u8,
    pub slots: [Origin; KeyField::COUNT],
}

impl Provenance {
    /// Every slot is input (a trace: the microflow is all there is).
    pub(crate) fn all_input(pass: u8) -> Self {
        Provenance {
            pass,
            slots: [Origin::Input; KeyField::COUNT],
        }
    }

    /// Headers are input; metadata is fixed (a datapath pass).
    pub(crate) fn headers_input(pass: u8) -> Self {
        let mut p = Self::all_input(pass);
        for f in METADATA {
            p.slots[f.index()] = Origin::Fixed;
        }
        p
    }

    /// Records a write of `src` into `slot`, the whole slot or part of it.
    pub(crate) fn write(&mut self, slot: usize, whole: bool, src: Origin) {
        let old = self.slots[slot];
        self.slots[slot] = if whole {
            src
        } else {
            match (old, src) {
                (Origin::Fixed, Origin::Fixed) => Origin::Fixed,
                // Part input, part something else: depends on all of it.
                _ => Origin::Derived(old.deps(slot) | src.deps(slot)),
            }
        };
    }

    /// The origin of a value read from several slots at once (a function's
    /// arguments): fixed only if all of them are.
    pub(crate) fn combined(&self, slots: impl IntoIterator<Item = usize>) -> Origin {
        let deps = slots
            .into_iter()
            .fold(0, |acc, s| acc | self.slots[s].deps(s));
        if deps == 0 {
            Origin::Fixed
        } else {
            Origin::Derived(deps)
        }
    }

    /// Adds to `mask` the input bits that `read` (bits of the current key
    /// some lookup looked at) depend on. A copy from another pass adds
    /// nothing: its values are in the frozen state, matched exactly.
    pub(crate) fn fold(&self, pass: u8, read: &Key, mask: &mut Key) {
        if self.pass != pass {
            return;
        }
        for (slot, &bits) in read.iter().enumerate() {
            if bits == 0 {
                continue;
            }
            match self.slots[slot] {
                Origin::Input => mask[slot] |= bits,
                Origin::Fixed => {}
                other => unwildcard(other.deps(slot), mask),
            }
        }
    }
}

/// Makes every bit of the slots in `deps` count.
pub(crate) fn unwildcard(deps: u32, mask: &mut Key) {
    for (i, field) in KeyField::ALL.iter().enumerate() {
        if deps & (1 << i) != 0 {
            mask[i] = field.full_mask();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::ZERO_KEY;

    #[test]
    fn folds_reads_back_to_input_bits() {
        let mut p = Provenance::headers_input(0);
        let dst = KeyField::Nw4Dst.index();
        let reg = KeyField::Xxreg(0).index();
        let ttl = KeyField::IpTtl.index();
        // reg0 = ip4.dst; ip.ttl--; eth.dst = constant.
        p.write(reg, false, p.slots[dst].moved_from(dst));
        p.write(ttl, true, Origin::Dec(1));
        p.write(KeyField::EthDst.index(), true, Origin::Fixed);

        let mut read = ZERO_KEY;
        read[reg] = 0xff;
        read[KeyField::EthDst.index()] = u128::MAX;
        read[KeyField::Nw4Src.index()] = 0xffff_ff00;
        let mut mask = ZERO_KEY;
        p.fold(0, &read, &mut mask);
        assert_eq!(mask[dst], 0xffff_ffff, "a register read pins its source");
        assert_eq!(mask[KeyField::EthDst.index()], 0, "a constant pins nothing");
        assert_eq!(
            mask[KeyField::Nw4Src.index()],
            0xffff_ff00,
            "input bits as read"
        );
        assert_eq!(mask[reg], 0, "metadata is not in the datapath key");

        let mut other_pass = ZERO_KEY;
        p.fold(1, &read, &mut other_pass);
        assert_eq!(other_pass, ZERO_KEY);
    }

    #[test]
    fn partial_writes_mix_origins() {
        let mut p = Provenance::headers_input(0);
        let reg = KeyField::Xxreg(0).index();
        p.write(reg, false, Origin::Fixed);
        assert_eq!(p.slots[reg], Origin::Fixed);
        let src = KeyField::EthSrc.index();
        p.write(src, false, Origin::Fixed);
        assert_eq!(p.slots[src], Origin::Derived(1 << src));
        assert_eq!(p.combined([reg]), Origin::Fixed);
        assert_eq!(p.combined([reg, src]), Origin::Derived(1 << src));
    }
}
