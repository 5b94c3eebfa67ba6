//! Keys and key groups: how `key_by` decides which core owns a row.
//!
//! A key hashes into one of `max_parallelism` key groups; key groups map to cores in
//! contiguous ranges, as in Flink. The hash is part of the on-disk contract (state is stored
//! per key group), so it is fixed here and must never change: xxHash-style mixing of the
//! value's canonical bytes, independent of platform and process.

use crate::record::row::ValueRef;

/// Seed of the key hash; changing it would move every key to another key group.
const KEY_SEED: u64 = 0x5749_5245_4b45_5931;
const PRIME_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME_2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// A running hash over the parts of a (possibly composite) key.
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher(u64);

impl Default for KeyHasher {
    fn default() -> KeyHasher {
        KeyHasher(KEY_SEED)
    }
}

impl KeyHasher {
    /// Adds one key part. Numbers hash by value and type: `I64(1)` and `F64(1.0)` differ.
    pub fn add(&mut self, value: ValueRef<'_>) {
        match value {
            ValueRef::Null => self.word(0),
            ValueRef::I64(v) => self.tagged(1, v as u64),
            ValueRef::F64(v) => self.tagged(2, canonical_f64_bits(v)),
            ValueRef::Bool(v) => self.tagged(3, u64::from(v)),
            ValueRef::Str(v) => self.bytes(4, v.as_bytes()),
            ValueRef::Bytes(v) => self.bytes(5, v),
            ValueRef::Timestamp(v) => self.tagged(6, v as u64),
        }
    }

    /// The final 64-bit hash.
    pub fn finish(&self) -> u64 {
        avalanche(self.0)
    }

    fn tagged(&mut self, tag: u64, word: u64) {
        self.word(tag);
        self.word(word);
    }

    fn bytes(&mut self, tag: u64, bytes: &[u8]) {
        self.tagged(tag, bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(word));
        }
    }

    fn word(&mut self, word: u64) {
        let lane = word
            .wrapping_mul(PRIME_2)
            .rotate_left(31)
            .wrapping_mul(PRIME_1);
        self.0 = (self.0 ^ lane)
            .rotate_left(27)
            .wrapping_mul(PRIME_1)
            .wrapping_add(PRIME_2);
    }
}

/// Whether two key parts are the same key, as the key hash sees them: the same type and the
/// same canonical value, so `0.0` equals `-0.0` and every NaN equals every other NaN (whatever
/// its sign and payload bits), while `I64(1)` and `F64(1.0)` differ. This is the one key
/// equality: every place that groups, joins or looks up state by key uses it, so that keys
/// equal here always hash alike ([`KeyHasher::add`]) and land in one group on one core.
pub fn key_part_eq(a: ValueRef<'_>, b: ValueRef<'_>) -> bool {
    match (a, b) {
        (ValueRef::F64(a), ValueRef::F64(b)) => canonical_f64_bits(a) == canonical_f64_bits(b),
        (a, b) => a == b,
    }
}

/// Whether two composite keys are the same key, part by part ([`key_part_eq`]).
pub fn key_eq<'a, 'b>(
    a: impl IntoIterator<Item = ValueRef<'a>>,
    b: impl IntoIterator<Item = ValueRef<'b>>,
) -> bool {
    let mut a = a.into_iter();
    let mut b = b.into_iter();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if key_part_eq(x, y) => {}
            _ => return false,
        }
    }
}

/// The bits a float key hashes and compares by: `0.0` for both zeros and one NaN for all NaNs,
/// since they group alike.
pub fn canonical_f64_bits(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(PRIME_2);
    h ^= h >> 29;
    h = h.wrapping_mul(0x1656_67B1_9E37_79F9);
    h ^ (h >> 32)
}

/// The key group of a key hash.
pub fn key_group(hash: u64, max_parallelism: u32) -> u32 {
    (hash % u64::from(max_parallelism.max(1))) as u32
}

/// The core (of `cores`) that owns `key_group`: contiguous ranges of key groups per core.
pub fn key_group_owner(key_group: u32, max_parallelism: u32, cores: usize) -> usize {
    let max = u64::from(max_parallelism.max(1));
    (u64::from(key_group) * cores as u64 / max) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(values: &[ValueRef<'_>]) -> u64 {
        let mut hasher = KeyHasher::default();
        values.iter().for_each(|v| hasher.add(*v));
        hasher.finish()
    }

    #[test]
    fn the_hash_is_stable_across_releases() {
        // Pinned: state is stored per key group, so these must never change.
        let pinned = [
            hash(&[ValueRef::I64(0)]),
            hash(&[ValueRef::Str("auction")]),
            hash(&[ValueRef::I64(7), ValueRef::Str("x")]),
        ];
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [u64; 3] = [
        13_126_289_828_836_115_472,
        15_052_257_595_878_543_584,
        930_353_330_784_019_027,
    ];

    #[test]
    fn types_and_parts_are_distinguished() {
        assert_ne!(hash(&[ValueRef::I64(1)]), hash(&[ValueRef::Timestamp(1)]));
        assert_ne!(
            hash(&[ValueRef::Str("ab"), ValueRef::Str("c")]),
            hash(&[ValueRef::Str("a"), ValueRef::Str("bc")])
        );
        assert_eq!(hash(&[ValueRef::F64(0.0)]), hash(&[ValueRef::F64(-0.0)]));
    }

    #[test]
    fn equal_keys_hash_alike_and_only_they_are_equal() {
        let other_nan = f64::from_bits(0xfff8_0000_0000_0001);
        let cases = [
            (ValueRef::F64(f64::NAN), ValueRef::F64(-f64::NAN), true),
            (ValueRef::F64(f64::NAN), ValueRef::F64(other_nan), true),
            (ValueRef::F64(0.0), ValueRef::F64(-0.0), true),
            (ValueRef::F64(1.0), ValueRef::F64(1.0), true),
            (ValueRef::F64(1.0), ValueRef::F64(-1.0), false),
            (ValueRef::F64(f64::NAN), ValueRef::F64(0.0), false),
            (ValueRef::I64(1), ValueRef::F64(1.0), false),
            (ValueRef::I64(1), ValueRef::Timestamp(1), false),
            (ValueRef::Null, ValueRef::Null, true),
            (ValueRef::Str("a"), ValueRef::Str("a"), true),
        ];
        for (a, b, equal) in cases {
            assert_eq!(key_part_eq(a, b), equal, "{a:?} vs {b:?}");
            if equal {
                assert_eq!(hash(&[a]), hash(&[b]), "{a:?} vs {b:?}");
            }
        }
        assert!(key_eq(
            [ValueRef::F64(f64::NAN)],
            [ValueRef::F64(other_nan)]
        ));
        assert!(!key_eq(
            [ValueRef::I64(1)],
            [ValueRef::I64(1), ValueRef::I64(2)]
        ));
    }

    #[test]
    fn key_groups_spread_and_map_to_every_core() {
        let mut per_group = vec![0u32; 128];
        for k in 0..128_000 {
            per_group[key_group(hash(&[ValueRef::I64(k)]), 128) as usize] += 1;
        }
        assert!(
            per_group.iter().all(|&n| (800..1200).contains(&n)),
            "{per_group:?}"
        );
        for cores in 1..=8 {
            let owners: std::collections::BTreeSet<usize> =
                (0..128).map(|g| key_group_owner(g, 128, cores)).collect();
            assert_eq!(owners.len(), cores);
            assert_eq!(owners.iter().max(), Some(&(cores - 1)));
        }
    }
}
