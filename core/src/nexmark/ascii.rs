//! Generated text that reads as `&str` without UTF-8 validation: the generator writes its
//! letters, digits and fixed words straight into reusable [`AsciiText`] buffers.
//!
//! # Safety contract
//! An [`AsciiText`] holds only ASCII bytes. Its buffer is private to this module and every
//! method that writes it appends either letters `a`–`z` (from [`base26_letters`]), digits
//! `0`–`9`, the bytes of an [`AsciiWord`] (checked to be ASCII when it is made, at compile
//! time for constants), or bytes copied from another [`AsciiText`] or from an [`AsciiArray`],
//! which holds only ASCII for the same reasons. ASCII is valid UTF-8, so
//! [`AsciiText::as_str`] skips the validation `std::str::from_utf8` would repeat.
#![allow(unsafe_code)]

/// Letters taken from one 64-bit draw: 26^12 < 2^64.
const LETTERS_PER_DRAW: usize = 12;

/// A fixed ASCII word, checked when it is made (at compile time in a constant).
#[derive(Debug, Clone, Copy)]
pub(super) struct AsciiWord(&'static str);

/// Fixed-length ASCII text: words concatenated (at compile time in a constant), with groups
/// of letters written over parts of it.
#[derive(Debug, Clone, Copy)]
pub(super) struct AsciiArray<const N: usize>([u8; N]);

/// A growable ASCII string, reused across events (see the module's safety contract).
#[derive(Debug, Default, Clone)]
pub(super) struct AsciiText {
    bytes: Vec<u8>,
}

impl AsciiText {
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn push_array<const N: usize>(&mut self, array: &AsciiArray<N>) {
        self.bytes.extend_from_slice(&array.0);
    }

    pub(super) fn push_word(&mut self, word: AsciiWord) {
        self.bytes.extend_from_slice(word.0.as_bytes());
    }

    /// Appends the bytes of `other` from byte `start` on.
    pub(super) fn push_tail_of(&mut self, other: &AsciiText, start: usize) {
        self.bytes.extend_from_slice(&other.bytes[start..]);
    }

    /// Appends `count` lower-case letters, 12 from each value `draw` returns (a fresh draw
    /// for the first letter and after every 12th), as base-26 digits of `draw / 2^64`.
    #[inline]
    pub(super) fn push_letters(&mut self, count: usize, mut draw: impl FnMut() -> u64) {
        let start = self.bytes.len();
        // Zeroing first and writing in place measured faster for long runs than appending
        // block by block.
        self.bytes.resize(start + count, 0);
        let (full, rest) = self.bytes[start..].as_chunks_mut::<LETTERS_PER_DRAW>();
        for chunk in full {
            *chunk = base26_letters(draw());
        }
        if !rest.is_empty() {
            let letters: [u8; LETTERS_PER_DRAW] = base26_letters(draw());
            rest.copy_from_slice(&letters[..rest.len()]);
        }
    }

    /// Appends `N` (at most 12) lower-case letters from one draw, as
    /// [`AsciiText::push_letters`] appends `N` letters.
    #[inline]
    pub(super) fn push_letter_group<const N: usize>(&mut self, bits: u64) {
        self.bytes.extend_from_slice(&base26_letters::<N>(bits));
    }

    /// Appends `value` in decimal, zero-padded to at least `width` digits (at most 20).
    pub(super) fn push_decimal(&mut self, value: u64, width: usize) {
        let mut digits = [b'0'; 20];
        let mut at = digits.len();
        let mut rest = value;
        while rest > 0 || digits.len() - at < width.clamp(1, digits.len()) {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        self.bytes.extend_from_slice(&digits[at..]);
    }

    pub(super) fn as_str(&self) -> &str {
        debug_assert!(self.bytes.is_ascii());
        // SAFETY: the module's contract: every byte appended is ASCII, so the buffer is
        // valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.bytes) }
    }

    /// The text as an owned `String`, leaving this buffer empty.
    pub(super) fn take_string(&mut self) -> String {
        let bytes = std::mem::take(&mut self.bytes);
        debug_assert!(bytes.is_ascii());
        // SAFETY: the module's contract: every byte appended is ASCII, so the buffer is
        // valid UTF-8.
        unsafe { String::from_utf8_unchecked(bytes) }
    }
}

impl AsciiWord {
    /// `word`, which must be ASCII.
    ///
    /// # Panics
    /// If `word` is not ASCII; in a constant, that fails the build.
    pub(super) const fn new(word: &'static str) -> AsciiWord {
        assert!(word.is_ascii(), "a generated word must be ASCII");
        AsciiWord(word)
    }

    pub(super) const fn as_str(self) -> &'static str {
        self.0
    }

    pub(super) const fn len(self) -> usize {
        self.0.len()
    }
}

impl<const N: usize> AsciiArray<N> {
    /// `parts` one after the other.
    ///
    /// # Panics
    /// If they do not add up to `N` bytes; in a constant, that fails the build.
    pub(super) const fn concat(parts: &[AsciiWord]) -> AsciiArray<N> {
        let mut bytes = [0u8; N];
        let (mut at, mut part) = (0, 0);
        while part < parts.len() {
            let word = parts[part].0.as_bytes();
            let mut i = 0;
            while i < word.len() {
                assert!(at < N, "the words are longer than the array");
                bytes[at] = word[i];
                at += 1;
                i += 1;
            }
            part += 1;
        }
        assert!(at == N, "the words are shorter than the array");
        AsciiArray(bytes)
    }

    /// Writes `K` (at most 12) letters from one draw over bytes `at..at + K`, the letters
    /// [`AsciiText::push_letter_group`] would append.
    #[inline]
    pub(super) fn set_letters<const K: usize>(&mut self, at: usize, bits: u64) {
        self.0[at..at + K].copy_from_slice(&base26_letters::<K>(bits));
    }
}

/// [`AsciiWord::new`] of each of `list`, for constant tables.
pub(super) const fn words<const N: usize>(list: [&'static str; N]) -> [AsciiWord; N] {
    let mut out = [AsciiWord(""); N];
    let mut i = 0;
    while i < N {
        out[i] = AsciiWord::new(list[i]);
        i += 1;
    }
    out
}

/// The leading `N` (at most 12) base-26 digits of `bits / 2^64`, as `a` to `z`.
///
/// Digit `i` is the high word of `26 * frac_i`, where `frac_i`, the fraction left after `i`
/// digits, is `bits * 26^i mod 2^64`. Two digits come from one multiply: the high word of
/// `676 * frac_i` is `26 * digit_i + digit_{i+1}` (as `676 f = 26 (digit_i + frac_{i+1})`),
/// looked up in [`LETTER_PAIRS`]. Each `frac_{2k}` is computed straight from `bits` (a
/// wrapping multiply by `676^k`) rather than from the previous pair's low word, so the pairs
/// do not wait on one another. (One letter per multiply, each waiting on the last, took
/// twice as long.)
#[inline]
pub(super) fn base26_letters<const N: usize>(bits: u64) -> [u8; N] {
    const { assert!(N <= LETTERS_PER_DRAW) };
    let mut letters = [0u8; N];
    let (pairs, odd) = letters.as_chunks_mut::<2>();
    for (k, pair) in pairs.iter_mut().enumerate() {
        let fraction = bits.wrapping_mul(POWERS_OF_676[k]);
        *pair = LETTER_PAIRS[((u128::from(fraction) * 676) >> 64) as usize];
    }
    if let [last] = odd {
        let fraction = bits.wrapping_mul(POWERS_OF_676[pairs.len()]);
        *last = b'a' + ((u128::from(fraction) * 26) >> 64) as u8;
    }
    letters
}

/// `676^k mod 2^64` for each pair `k` of a draw's letters (and the odd last letter).
const POWERS_OF_676: [u64; LETTERS_PER_DRAW / 2 + 1] = {
    let mut powers = [1u64; LETTERS_PER_DRAW / 2 + 1];
    let mut k = 1;
    while k < powers.len() {
        powers[k] = powers[k - 1].wrapping_mul(676);
        k += 1;
    }
    powers
};

/// The two letters of each pair index `26 * first + second`.
static LETTER_PAIRS: [[u8; 2]; 676] = {
    let mut pairs = [[0u8; 2]; 676];
    let mut at = 0;
    while at < 676 {
        pairs[at] = [b'a' + (at / 26) as u8, b'a' + (at % 26) as u8];
        at += 1;
    }
    pairs
};

#[cfg(test)]
mod tests {
    use super::*;

    /// One letter per multiply, each from the last one's fraction: the definition.
    fn letters_one_by_one(bits: u64, count: usize) -> Vec<u8> {
        let mut fraction = bits;
        (0..count)
            .map(|_| {
                let product = u128::from(fraction) * 26;
                fraction = product as u64;
                b'a' + (product >> 64) as u8
            })
            .collect()
    }

    #[test]
    fn letters_in_pairs_are_the_letters_one_by_one() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let edges = [0, 1, u64::MAX, u64::MAX / 26, 1 << 63, (1 << 63) - 1];
        let draws = (0..100_000).map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            state ^ (state >> 29)
        });
        for bits in edges.into_iter().chain(draws) {
            let check = |letters: &[u8]| {
                assert_eq!(
                    letters,
                    letters_one_by_one(bits, letters.len()),
                    "{bits:#x}"
                );
            };
            check(&base26_letters::<12>(bits));
            check(&base26_letters::<7>(bits));
            check(&base26_letters::<5>(bits));
            check(&base26_letters::<1>(bits));
        }
    }
}
