//! A fast hasher for classifier keys (masked flow-key words).
//!
//! SipHash guards maps whose keys an attacker chooses; classifier keys come
//! from the Southbound database, which is trusted, and packets only look
//! them up. A multiply-rotate over 64-bit words (the scheme of rustc's
//! FxHash) is several times cheaper there.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct KeyHasher {
    state: u64,
}

/// `HashMap` state for [`KeyHasher`].
pub type BuildKeyHasher = BuildHasherDefault<KeyHasher>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.state
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_u128(&mut self, n: u128) {
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash<T: Hash + ?Sized>(v: &T) -> u64 {
        BuildKeyHasher::default().hash_one(v)
    }

    #[test]
    fn slices_and_their_vecs_hash_alike_and_differ_by_content() {
        let v: Vec<u128> = vec![1, 2, 3];
        assert_eq!(hash(&v), hash(&v[..]));
        assert_ne!(hash(&[1u128, 2, 3][..]), hash(&[1u128, 2, 4][..]));
        assert_ne!(hash(&[1u128 << 64][..]), hash(&[1u128][..]));
        assert_ne!(hash(b"abcdefghi".as_slice()), hash(b"abcdefghj".as_slice()));
    }
}
