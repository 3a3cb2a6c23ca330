//! Sign patterns and the latents drawn from them.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};

use super::WatermarkKey;
use super::noise::NoiseStream;

/// A bit vector packed into u64 words: bit `i` is bit `i % 64` of word
/// `i / 64`, and the bits past `len` in the last word are zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitPattern {
    words: Vec<u64>,
    len: usize,
}

impl BitPattern {
    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns true when the pattern has no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bit `index`, or `None` past the end.
    pub fn bit(&self, index: usize) -> Option<bool> {
        if index >= self.len {
            return None;
        }
        Some((self.words[index / 64] >> (index % 64)) & 1 == 1)
    }

    /// Packed words, in the bit order given in the type's documentation.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Counts the positions where `self` and `other` hold the same bit.
    /// When the lengths differ, only the shorter length is compared.
    pub fn agreement(&self, other: &BitPattern) -> u64 {
        let len = self.len.min(other.len);
        let full_words = len / 64;
        let mut differ: u64 = 0;
        for (a, b) in self.words[..full_words].iter().zip(&other.words) {
            differ += u64::from((a ^ b).count_ones());
        }
        let tail_bits = len % 64;
        if tail_bits > 0 {
            let mask = (1u64 << tail_bits) - 1;
            let tail = (self.words[full_words] ^ other.words[full_words]) & mask;
            differ += u64::from(tail.count_ones());
        }
        len as u64 - differ
    }

    /// Counts the positions set in `mask` where `self` agrees with a
    /// pattern given as its keystream bytes. Positions past the shortest of
    /// the three are not counted.
    #[cfg(test)]
    pub(crate) fn agreement_with_keystream_masked(&self, bytes: &[u8], mask: &BitPattern) -> u64 {
        let mut words = vec![0u64; bytes.len() / 8];
        keystream_words(bytes, &mut words);
        weighted_agreement_portable(&self.words, &mask.words, &words)
    }

    /// Packs the signs of `values`: bit `i` is set when `values[i] > 0`.
    /// Zero and NaN give a clear bit.
    pub fn from_signs(values: &[f32]) -> Self {
        let mut words = vec![0u64; values.len().div_ceil(64)];
        for (word, chunk) in words.iter_mut().zip(values.chunks(64)) {
            for (bit, &value) in chunk.iter().enumerate() {
                *word |= u64::from(value > 0.0) << bit;
            }
        }
        Self {
            words,
            len: values.len(),
        }
    }

    fn from_le_bytes(bytes: &[u8], len: usize) -> Self {
        let mut words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|chunk| {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                u64::from_le_bytes(word)
            })
            .collect();
        if !len.is_multiple_of(64)
            && let Some(last) = words.last_mut()
        {
            *last &= (1u64 << (len % 64)) - 1;
        }
        Self { words, len }
    }
}

/// Builds the sign pattern of `(key, serial)` with `len` bits.
///
/// The bits are the ChaCha20 keystream (RFC 8439, block counter from 0)
/// under the key's pattern key and the nonce `serial` (u64 little-endian)
/// followed by four zero bytes. Bit `i` is bit `i % 8` (least significant
/// first) of keystream byte `i / 8`; a set bit means a positive sign.
pub fn sign_pattern(key: &WatermarkKey, serial: u64, len: usize) -> BitPattern {
    let mut bytes = vec![0u8; pattern_bytes(len)];
    write_keystream(key, serial, &mut bytes);
    BitPattern::from_le_bytes(&bytes, len)
}

/// Reads keystream bytes as little-endian u64 words, the packing of
/// [`BitPattern`].
pub(crate) fn keystream_words(bytes: &[u8], words: &mut [u64]) {
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut buffer = [0u8; 8];
        buffer.copy_from_slice(chunk);
        *word = u64::from_le_bytes(buffer);
    }
}

/// Sums the weights of the positions where `signs` and `pattern` agree.
/// The weights come as bit planes: `planes` is a run of planes of
/// `signs.len()` words each, and plane `b` contains bit `b` of every
/// position's weight. With one plane, that plane is a mask and the sum
/// counts its agreeing bits. Bits past a pattern's length are zero in
/// every plane, so they never count.
pub(crate) type WeightedAgreement = fn(&[u64], &[u64], &[u64]) -> u64;

#[inline(always)]
fn weighted_agreement_body(signs: &[u64], planes: &[u64], pattern: &[u64]) -> u64 {
    let words = signs.len().min(pattern.len());
    if words == 0 {
        return 0;
    }
    // Four planes carry weights up to 15, enough for the weighted
    // readings, so more planes take the general loop.
    match planes.len() / signs.len() {
        1 => plane_sums::<1>(signs, planes, pattern, words),
        2 => plane_sums::<2>(signs, planes, pattern, words),
        3 => plane_sums::<3>(signs, planes, pattern, words),
        4 => plane_sums::<4>(signs, planes, pattern, words),
        _ => {
            let mut total = 0;
            for (bit, plane) in planes.chunks(signs.len()).enumerate() {
                let count: u64 = signs[..words]
                    .iter()
                    .zip(plane)
                    .zip(pattern)
                    .map(|((s, m), p)| u64::from((!(s ^ p) & m).count_ones()))
                    .sum();
                total += count << bit;
            }
            total
        }
    }
}

/// [`weighted_agreement_body`] for exactly `PLANES` planes: one pass over
/// the words, computing each word's agreement once for all planes.
#[inline(always)]
fn plane_sums<const PLANES: usize>(
    signs: &[u64],
    planes: &[u64],
    pattern: &[u64],
    words: usize,
) -> u64 {
    let stride = signs.len();
    let rows: [&[u64]; PLANES] =
        std::array::from_fn(|bit| &planes[bit * stride..bit * stride + words]);
    let mut counts = [0u64; PLANES];
    for (i, (s, p)) in signs[..words].iter().zip(&pattern[..words]).enumerate() {
        let agree = !(s ^ p);
        for (count, row) in counts.iter_mut().zip(&rows) {
            *count += u64::from((agree & row[i]).count_ones());
        }
    }
    counts
        .iter()
        .enumerate()
        .map(|(bit, count)| count << bit)
        .sum()
}

fn weighted_agreement_portable(signs: &[u64], planes: &[u64], pattern: &[u64]) -> u64 {
    weighted_agreement_body(signs, planes, pattern)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn weighted_agreement_popcnt(signs: &[u64], planes: &[u64], pattern: &[u64]) -> u64 {
    weighted_agreement_body(signs, planes, pattern)
}

/// [`weighted_agreement_body`] eight words at a time with AVX-512: one
/// vector population count per plane and eight words, where the scalar
/// loop counts one word at a time. Words past the last multiple of eight
/// take the scalar loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
fn weighted_agreement_avx512(signs: &[u64], planes: &[u64], pattern: &[u64]) -> u64 {
    use std::arch::x86_64::{
        __m512i, _mm_cvtsi64_si128, _mm512_add_epi64, _mm512_andnot_si512, _mm512_loadu_si512,
        _mm512_popcnt_epi64, _mm512_reduce_add_epi64, _mm512_setzero_si512, _mm512_sll_epi64,
        _mm512_xor_si512,
    };

    let stride = signs.len();
    let words = stride.min(pattern.len());
    if words == 0 {
        return 0;
    }
    let plane_count = planes.len() / stride;
    let load = |slice: &[u64], start: usize| -> __m512i {
        // The slice index checks the bounds, so the load reads eight
        // words that `slice` owns.
        let chunk = &slice[start..start + 8];
        // SAFETY: `chunk` is 64 readable bytes, and the unaligned load
        // needs no alignment.
        unsafe { _mm512_loadu_si512(chunk.as_ptr().cast()) }
    };
    let whole = words - words % 8;
    let mut total = _mm512_setzero_si512();
    for start in (0..whole).step_by(8) {
        let differ = _mm512_xor_si512(load(signs, start), load(pattern, start));
        for bit in 0..plane_count {
            let row = load(planes, bit * stride + start);
            // Agreeing positions of this plane: NOT(differ) AND row.
            let counts = _mm512_popcnt_epi64(_mm512_andnot_si512(differ, row));
            let shifted = _mm512_sll_epi64(counts, _mm_cvtsi64_si128(bit as i64));
            total = _mm512_add_epi64(total, shifted);
        }
    }
    let mut sum = _mm512_reduce_add_epi64(total) as u64;
    for start in whole..words {
        let agree = !(signs[start] ^ pattern[start]);
        for bit in 0..plane_count {
            sum += u64::from((agree & planes[bit * stride + start]).count_ones()) << bit;
        }
    }
    sum
}

/// The fastest [`WeightedAgreement`] this processor runs. The baseline
/// x86-64 target has no population-count instruction, and counting bits
/// without it made tracing through a million serials several times slower.
/// AVX-512 with vector population counts (Intel Ice Lake, AMD Zen 4 and
/// later) counts eight words per instruction.
pub(crate) fn weighted_agreement() -> WeightedAgreement {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
        && std::arch::is_x86_feature_detected!("popcnt")
    {
        // SAFETY: the processor supports the features the function
        // enables, as just checked.
        return |s, m, p| unsafe { weighted_agreement_avx512(s, m, p) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the processor supports the one feature the function
        // enables, as just checked.
        return |s, m, p| unsafe { weighted_agreement_popcnt(s, m, p) };
    }
    weighted_agreement_portable
}

/// Number of keystream bytes behind a pattern of `len` bits, whole words.
pub(crate) fn pattern_bytes(len: usize) -> usize {
    len.div_ceil(64) * 8
}

/// ChaCha20 keystream bytes that the AVX2 backend of the `chacha20` crate
/// (0.9) computes in one pass: four 64-byte blocks.
const PARALLEL_KEYSTREAM_BYTES: usize = 256;

/// Length of a keystream buffer for patterns of `len` bits, rounded up to
/// whole passes of four blocks. The AVX2 backend computes four blocks even
/// when fewer are requested and keeps one. So the two blocks of a
/// 1,024-bit pattern cost eight blocks' work when written alone, and four
/// as the start of a 256-byte buffer. The extra bytes continue the same
/// keystream and are never read as pattern bits. Other backends compute
/// one block at a time, so without AVX2 the buffer keeps the pattern's
/// length.
pub(crate) fn keystream_buffer_bytes(len: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return pattern_bytes(len).div_ceil(PARALLEL_KEYSTREAM_BYTES) * PARALLEL_KEYSTREAM_BYTES;
    }
    pattern_bytes(len)
}

/// Overwrites `bytes` with the start of the keystream of `(key, serial)`.
pub(crate) fn write_keystream(key: &WatermarkKey, serial: u64, bytes: &mut [u8]) {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&serial.to_le_bytes());
    let mut cipher = ChaCha20::new(key.pattern_key().into(), &nonce.into());

    // NOTE: ChaCha20 ends after 2^32 blocks (2^41 bits), and
    // `apply_keystream` panics past that, so patterns must stay shorter. A
    // latent that long would need 8 TiB of memory.
    bytes.fill(0);
    cipher.apply_keystream(bytes);
}

/// Draws the watermarked initial latent of one generation:
/// `x[i] = s[i] * |z[i]|` with `z` from `NoiseStream::new(seed)` and `s`
/// the sign pattern of `(key, serial)`.
pub fn initial_latent(key: &WatermarkKey, serial: u64, seed: u64, len: usize) -> Vec<f32> {
    let pattern = sign_pattern(key, serial, len);
    let mut latent = plain_latent(seed, len);
    for (index, value) in latent.iter_mut().enumerate() {
        let positive = (pattern.words[index / 64] >> (index % 64)) & 1 == 1;
        *value = if positive { value.abs() } else { -value.abs() };
    }
    latent
}

/// Draws an unwatermarked latent, `z` from `NoiseStream::new(seed)`.
pub fn plain_latent(seed: u64, len: usize) -> Vec<f32> {
    let mut latent = vec![0f32; len];
    NoiseStream::new(seed).fill_normal(&mut latent);
    latent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> WatermarkKey {
        WatermarkKey::new([5u8; 32])
    }

    #[test]
    fn pattern_is_keystream_bits() {
        let key = key();
        let serial: u64 = 0x0102_0304_0506_0708;
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&serial.to_le_bytes());
        let mut cipher = ChaCha20::new(key.pattern_key().into(), &nonce.into());
        let mut stream = [0u8; 16];
        cipher.apply_keystream(&mut stream);

        let pattern = sign_pattern(&key, serial, 128);
        for index in 0..128 {
            let expected = (stream[index / 8] >> (index % 8)) & 1 == 1;
            assert_eq!(pattern.bit(index), Some(expected), "bit {index}");
        }
    }

    #[test]
    fn pattern_prefix_is_stable() {
        let long = sign_pattern(&key(), 9, 1000);
        let short = sign_pattern(&key(), 9, 77);
        assert_eq!(short.len(), 77);
        for index in 0..77 {
            assert_eq!(short.bit(index), long.bit(index), "bit {index}");
        }
        assert_eq!(short.bit(77), None);
        assert_eq!(short.words()[1] >> 13, 0, "bits past len must be zero");
    }

    #[test]
    fn serials_give_different_patterns() {
        let a = sign_pattern(&key(), 1, 1024);
        let b = sign_pattern(&key(), 2, 1024);
        let agreement = a.agreement(&b);
        assert!((412..=612).contains(&agreement), "agreement {agreement}");
    }

    #[test]
    fn latent_signs_match_pattern() {
        for len in [1, 63, 64, 65, 1024, 1000] {
            let pattern = sign_pattern(&key(), 17, len);
            let latent = initial_latent(&key(), 17, 3, len);
            assert_eq!(latent.len(), len);
            for (index, &value) in latent.iter().enumerate() {
                assert_eq!(
                    Some(value > 0.0),
                    pattern.bit(index),
                    "len {len} bit {index}"
                );
            }
            assert_eq!(BitPattern::from_signs(&latent), pattern, "len {len}");
        }
    }

    #[test]
    fn latent_magnitudes_come_from_seed() {
        let plain = plain_latent(11, 500);
        let marked = initial_latent(&key(), 4, 11, 500);
        for (index, (a, b)) in plain.iter().zip(&marked).enumerate() {
            assert_eq!(a.abs(), b.abs(), "element {index}");
        }
    }

    /// Kolmogorov-Smirnov distance between `values` and N(0, 1).
    fn ks_distance(values: &mut [f64]) -> f64 {
        values.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let mut distance: f64 = 0.0;
        for (index, &value) in values.iter().enumerate() {
            let cdf = 0.5 * libm::erfc(-value / std::f64::consts::SQRT_2);
            let below = index as f64 / n;
            let above = (index + 1) as f64 / n;
            distance = distance.max((cdf - below).abs()).max((above - cdf).abs());
        }
        distance
    }

    #[test]
    fn latent_marginal_is_standard_normal() {
        let key = key();
        let mut values: Vec<f64> = (0..100u64)
            .flat_map(|serial| initial_latent(&key, serial, 1000 + serial, 1024))
            .map(f64::from)
            .collect();
        let n = values.len() as f64;

        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((variance - 1.0).abs() < 0.03, "variance {variance}");

        // 1.95 / sqrt(n) is the KS critical value at a level of 0.001.
        let distance = ks_distance(&mut values);
        let critical = 1.95 / n.sqrt();
        assert!(distance < critical, "KS distance {distance} >= {critical}");
    }

    /// Element-wise means of `latents`, scaled by sqrt(count) so that
    /// under independence each is standard normal.
    fn scaled_means(latents: &[Vec<f32>]) -> Vec<f64> {
        let count = latents.len() as f64;
        (0..latents[0].len())
            .map(|i| latents.iter().map(|l| f64::from(l[i])).sum::<f64>() / count.sqrt())
            .collect()
    }

    #[test]
    fn averaging_many_outputs_reveals_nothing() {
        // An attacker who averages 1,000 outputs of one key gets, per
        // element, a mean that is N(0, 1/1000) exactly as for unmarked
        // noise: the KS distance to N(0, 1) of the scaled means stays
        // under the 0.1% critical value for both sets.
        let key = key();
        let marked: Vec<Vec<f32>> = (1..=1000u64)
            .map(|serial| initial_latent(&key, serial, 5000 + serial, 1024))
            .collect();
        let plain: Vec<Vec<f32>> = (1..=1000u64)
            .map(|seed| plain_latent(9000 + seed, 1024))
            .collect();
        let critical = 1.95 / 1024f64.sqrt();
        for (name, latents) in [("marked", &marked), ("plain", &plain)] {
            let mut means = scaled_means(latents);
            let energy = means.iter().map(|m| m * m).sum::<f64>();
            // Chi-squared with 1,024 degrees of freedom: mean 1,024, sd 45.
            assert!((energy - 1024.0).abs() < 5.0 * 45.0, "{name}: {energy}");
            let distance = ks_distance(&mut means);
            assert!(distance < critical, "{name}: KS distance {distance}");
        }

        // The same test exposes a scheme that reuses one pattern.
        let reused: Vec<Vec<f32>> = (1..=1000u64)
            .map(|seed| initial_latent(&key, 1, 5000 + seed, 1024))
            .collect();
        let mut means = scaled_means(&reused);
        assert!(ks_distance(&mut means) > critical);
    }

    #[test]
    fn ks_distance_rejects_shifted_normal() {
        let mut values: Vec<f64> = plain_latent(1, 100_000)
            .into_iter()
            .map(|v| f64::from(v) + 0.05)
            .collect();
        let distance = ks_distance(&mut values);
        assert!(
            distance > 1.95 / 100_000f64.sqrt(),
            "KS distance {distance}"
        );
    }

    #[test]
    fn popcount_dispatch_matches_portable_count() {
        let signs = BitPattern::from_signs(&plain_latent(4, 500));
        let mask = BitPattern::from_signs(&plain_latent(5, 500));
        let pattern = sign_pattern(&key(), 3, 500);
        let fast = weighted_agreement()(&signs.words, &mask.words, &pattern.words);
        let portable = weighted_agreement_portable(&signs.words, &mask.words, &pattern.words);
        assert_eq!(fast, portable);
        let by_bit = (0..500)
            .filter(|&i| mask.bit(i) == Some(true) && signs.bit(i) == pattern.bit(i))
            .count() as u64;
        assert_eq!(fast, by_bit);
    }

    #[test]
    fn weighted_dispatch_matches_per_bit_sum() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let fast = weighted_agreement();
        for words in [1, 7, 8, 9, 16, 17, 33] {
            for plane_count in 1..=5 {
                let signs: Vec<u64> = (0..words).map(|_| next()).collect();
                let pattern: Vec<u64> = (0..words).map(|_| next()).collect();
                let planes: Vec<u64> = (0..words * plane_count).map(|_| next()).collect();
                let by_bit: u64 = (0..words * 64)
                    .filter(|&i| (signs[i / 64] ^ pattern[i / 64]) >> (i % 64) & 1 == 0)
                    .map(|i| {
                        (0..plane_count)
                            .map(|bit| ((planes[bit * words + i / 64] >> (i % 64)) & 1) << bit)
                            .sum::<u64>()
                    })
                    .sum();
                let case = format!("{words} words, {plane_count} planes");
                assert_eq!(fast(&signs, &planes, &pattern), by_bit, "{case}");
                assert_eq!(
                    weighted_agreement_portable(&signs, &planes, &pattern),
                    by_bit,
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn keystream_buffer_starts_with_pattern() {
        for len in [1, 64, 1000, 1024, 2049, 4096] {
            let buffer_len = keystream_buffer_bytes(len);
            assert!(buffer_len >= pattern_bytes(len), "len {len}");
            let mut exact = vec![0u8; pattern_bytes(len)];
            let mut buffer = vec![0u8; buffer_len];
            write_keystream(&key(), 9, &mut exact);
            write_keystream(&key(), 9, &mut buffer);
            assert_eq!(&buffer[..exact.len()], exact.as_slice(), "len {len}");
        }
    }

    #[test]
    fn keystream_agreement_matches_pattern() {
        let observed = BitPattern::from_signs(&plain_latent(2, 1000));
        let everything = BitPattern::from_signs(&[1.0; 1000]);
        let even: Vec<f32> = (0..1000)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
            .collect();
        let even = BitPattern::from_signs(&even);
        for serial in 0..20 {
            let pattern = sign_pattern(&key(), serial, 1000);
            let mut bytes = vec![0u8; pattern_bytes(1000)];
            write_keystream(&key(), serial, &mut bytes);
            let direct = observed.agreement(&pattern);
            assert_eq!(
                observed.agreement_with_keystream_masked(&bytes, &everything),
                direct,
                "serial {serial}"
            );
            let direct_even = (0..1000)
                .step_by(2)
                .filter(|&i| observed.bit(i) == pattern.bit(i))
                .count() as u64;
            assert_eq!(
                observed.agreement_with_keystream_masked(&bytes, &even),
                direct_even,
                "serial {serial}, even positions"
            );
        }
    }

    #[test]
    fn agreement_counts_equal_bits() {
        let a = BitPattern::from_signs(&[1.0, -1.0, 1.0, 0.0, f32::NAN]);
        let b = BitPattern::from_signs(&[1.0, 1.0, -1.0, -2.0, -1.0]);
        assert_eq!(a.agreement(&b), 3);
        assert_eq!(a.agreement(&a), 5);
    }

    #[test]
    fn empty_pattern_is_empty() {
        let pattern = sign_pattern(&key(), 1, 0);
        assert!(pattern.is_empty());
        assert!(initial_latent(&key(), 1, 1, 0).is_empty());
    }
}
