//! Detection: the best-matching candidate pattern and its p-value.

use serde::Serialize;

use super::pattern::{
    BitPattern, WeightedAgreement, keystream_buffer_bytes, keystream_words, pattern_bytes,
    weighted_agreement, write_keystream,
};
use super::stats::weighted_tail_log10;
use super::{Payload, WatermarkKey};

/// Corrected p-value at or below which [`detect`] reports a watermark.
pub const DEFAULT_THRESHOLD: f64 = 1e-6;

/// One key and the ledger serials to test it with.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    /// The watermark key.
    pub key: &'a WatermarkKey,
    /// Serials that this key may have marked.
    pub serials: &'a [u64],
}

/// Outcome of a detection, with the statistics behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Whether `p_value <= threshold`.
    pub detected: bool,
    /// The best candidate's payload, present only when `detected`.
    pub payload: Option<Payload>,
    /// Signs of the best candidate that match the latent, among those the
    /// best reading counts.
    pub agreement: u32,
    /// Signs counted in the best reading.
    pub elements: u32,
    /// Summed weight of the agreeing signs in the best reading, equal to
    /// `agreement` when that reading is unweighted.
    pub score: u64,
    /// Summed weight of all signs the best reading counts.
    pub max_score: u64,
    /// Chance, before correction, that a pattern unrelated to the image
    /// scores at least `score` in the best reading: P[X >= agreement] for
    /// X ~ Binomial(elements, 1/2) when the reading is unweighted.
    pub p_value_raw: f64,
    /// Bonferroni-corrected: min(1, p_value_raw * candidates * readings).
    pub p_value: f64,
    /// log10 of `p_value`, which stays finite where `p_value` underflows.
    pub log10_p_value: f64,
    /// Number of (key, serial) patterns tested.
    pub candidates: u64,
    /// Number of readings of the image that the correction pays for
    /// (geometric hypotheses times element selections).
    pub readings: u64,
    /// Name of the reading with the best candidate.
    pub reading: String,
    /// The threshold that `p_value` was compared with.
    pub threshold: f64,
}

/// Weight units per unit of inverted magnitude in [`Reading::weighted`].
const WEIGHT_SCALE: f32 = 8.0;

/// Inverted magnitude past which a sign gets no more weight: signs with
/// larger magnitudes agree with their pattern no more often.
const MAGNITUDE_CAP: f32 = 1.5;

/// Coverage below which [`Reading::weighted`] leaves a position out.
pub const MIN_COVERAGE: f32 = 0.5;

/// One way of reading signs out of an image: the signs of an inverted
/// latent and a whole-number weight for each position (0 leaves it out).
///
/// The weights must be chosen without looking at any candidate's pattern
/// (from the geometry of a hypothesis, or from the latent's own
/// magnitudes). Then, without a watermark, each candidate's score (the
/// summed weight of the positions whose sign agrees) is a sum of fair
/// coins times fixed weights, whose tail [`weighted_tail_log10`] gives
/// exactly. With weights of 0 and 1 the score is the agreement count and
/// the tail is binomial.
#[derive(Debug, Clone)]
pub struct Reading {
    /// Name for reports, such as `identity` or `rotation -5, weighted`.
    pub name: String,
    signs: BitPattern,
    /// Positions with a weight above 0.
    counted: BitPattern,
    /// Bit planes of the weights, one run of `signs.words().len()` words
    /// per plane: plane `b` contains bit `b` of every position's weight.
    planes: Vec<u64>,
    plane_count: usize,
    /// Entry `w`: how many positions carry weight `w`.
    weight_counts: Vec<u32>,
    elements: u32,
}

impl Reading {
    /// Reads every element's sign. A latent longer than `u32::MAX` elements
    /// is read on that prefix.
    pub fn all(name: &str, latent: &[f32]) -> Self {
        let latent = &latent[..latent.len().min(u32::MAX as usize)];
        Self::with_mask(name, latent, &vec![true; latent.len()])
    }

    /// Reads the signs of the elements where `mask` is true, each with
    /// weight 1.
    pub fn with_mask(name: &str, latent: &[f32], mask: &[bool]) -> Self {
        let len = latent.len().min(mask.len()).min(u32::MAX as usize);
        let weights: Vec<u8> = mask[..len].iter().map(|&m| u8::from(m)).collect();
        Self::with_weights(name, &latent[..len], &weights)
    }

    /// Reads every element with `coverage` (the share of its latent cell
    /// that the image still shows) of at least [`MIN_COVERAGE`], weighted
    /// by coverage times its inverted magnitude, capped. Signs recovered
    /// with a larger margin, from cells the image shows more of, agree
    /// with their pattern more often, so they carry more weight. Non-finite
    /// values are left out.
    pub fn weighted(name: &str, latent: &[f32], coverage: &[f32]) -> Self {
        let len = latent.len().min(coverage.len()).min(u32::MAX as usize);
        let weights: Vec<u8> = latent[..len]
            .iter()
            .zip(&coverage[..len])
            .map(|(&value, &share)| {
                if !value.is_finite() || share.is_nan() || share < MIN_COVERAGE {
                    return 0;
                }
                let weight = share.min(1.0) * value.abs().min(MAGNITUDE_CAP) * WEIGHT_SCALE;
                weight.round() as u8
            })
            .collect();
        Self::with_weights(name, &latent[..len], &weights)
    }

    fn with_weights(name: &str, latent: &[f32], weights: &[u8]) -> Self {
        let heaviest = weights.iter().copied().max().unwrap_or(0);
        let plane_count = (u8::BITS - heaviest.leading_zeros()) as usize;
        let planes = (0..plane_count)
            .flat_map(|bit| {
                let plane: Vec<f32> = weights.iter().map(|&w| f32::from((w >> bit) & 1)).collect();
                BitPattern::from_signs(&plane).words().to_vec()
            })
            .collect();
        let mut weight_counts = vec![0u32; usize::from(heaviest) + 1];
        for &w in weights {
            weight_counts[usize::from(w)] += 1;
        }
        let counted: Vec<f32> = weights
            .iter()
            .map(|&w| f32::from(u8::from(w > 0)))
            .collect();
        Self {
            name: name.to_string(),
            signs: BitPattern::from_signs(latent),
            counted: BitPattern::from_signs(&counted),
            planes,
            plane_count,
            elements: weights.iter().filter(|&&w| w > 0).count() as u32,
            weight_counts,
        }
    }

    /// Number of positions counted (weight above 0).
    pub fn elements(&self) -> u32 {
        self.elements
    }

    /// Returns true when some position weighs more than 1.
    pub fn is_weighted(&self) -> bool {
        self.plane_count > 1
    }

    /// Returns the largest score a pattern can reach, the sum of all weights.
    pub fn max_score(&self) -> u64 {
        self.weight_counts
            .iter()
            .enumerate()
            .map(|(w, &n)| w as u64 * u64::from(n))
            .sum()
    }

    /// Counts the counted positions whose sign agrees with `pattern`, for
    /// measuring bit accuracy against a known pattern.
    pub fn agreement_with(&self, pattern: &BitPattern) -> u32 {
        (0..self.signs.len())
            .filter(|&i| self.counted.bit(i) == Some(true) && self.signs.bit(i) == pattern.bit(i))
            .count() as u32
    }

    /// Summed weight of the positions whose sign agrees with the pattern
    /// given as packed words.
    fn score(&self, agreement_of: WeightedAgreement, pattern: &[u64]) -> u64 {
        agreement_of(self.signs.words(), &self.planes, pattern)
    }

    /// log10 of the chance that a pattern unrelated to the image scores at
    /// least `score`.
    fn tail_log10(&self, score: u64) -> f64 {
        weighted_tail_log10(&self.weight_counts, score)
    }
}

/// Tests the signs of an inverted latent against every candidate (key,
/// serial) pattern, takes the best, and corrects for the number tried.
///
/// Without a watermark, each pattern is independent of the latent, so its
/// agreement is Binomial(n, 1/2) whatever the latent's values (zeros and
/// NaN included) and `p_value` is a valid bound on the false-positive rate.
/// A latent longer than `u32::MAX` elements is tested on that prefix.
pub fn detect(latent: &[f32], candidates: &[Candidates], threshold: f64) -> Detection {
    detect_readings(
        &[Reading::all("identity", latent)],
        1,
        candidates,
        threshold,
    )
}

/// Tests every reading against every candidate pattern and reports the
/// smallest tail probability, multiplied by `planned_readings` times the
/// number of candidates (Bonferroni).
///
/// `planned_readings` is the number of readings the caller may test in
/// all, at least `readings.len()`: a caller that stops at the first
/// detection still pays for the readings it would have gone on to.
pub fn detect_readings(
    readings: &[Reading],
    planned_readings: u64,
    candidates: &[Candidates],
    threshold: f64,
) -> Detection {
    let planned = planned_readings.max(readings.len() as u64).max(1);
    let longest = readings.iter().map(|r| r.signs.len()).max().unwrap_or(0);
    let tested: u64 = candidates.iter().map(|c| c.serials.len() as u64).sum();

    let best = candidates
        .iter()
        .filter_map(|group| best_of_group(group, readings, longest))
        .min_by(|a, b| a.log10_raw.total_cmp(&b.log10_raw));

    let (agreement, elements, score, max_score, log10_raw) =
        best.as_ref().map_or((0, 0, 0, 0, 0.0), |b| {
            (b.agreement, b.elements, b.score, b.max_score, b.log10_raw)
        });
    let log10_p_value = corrected_log10(log10_raw, tested.saturating_mul(planned));
    let p_value = 10f64.powf(log10_p_value);
    let detected = tested > 0 && !readings.is_empty() && p_value <= threshold;

    tracing::debug!(
        candidates = tested,
        readings = planned,
        agreement,
        elements,
        score,
        log10_p_value,
        detected,
        "watermark detection"
    );
    Detection {
        detected,
        payload: best.as_ref().filter(|_| detected).map(|b| b.payload),
        agreement,
        elements,
        score,
        max_score,
        p_value_raw: 10f64.powf(log10_raw),
        p_value,
        log10_p_value,
        candidates: tested,
        readings: planned,
        reading: best.map(|b| b.reading).unwrap_or_default(),
        threshold,
    }
}

/// The best (reading, serial) pair of one key.
struct Best {
    payload: Payload,
    reading: String,
    agreement: u32,
    elements: u32,
    score: u64,
    max_score: u64,
    log10_raw: f64,
}

/// Serials per parallel task in [`best_of_group`].
const SERIALS_PER_TASK: usize = 4096;

/// Finds the reading and serial with the smallest tail probability for one
/// key, spreading the serials over threads. Ties go to the earlier serial
/// and reading, whatever the thread count.
///
/// Within one reading the tail probability falls as the score grows, so
/// the search keeps each reading's highest score and evaluates the tail
/// once per reading at the end, not once per serial.
fn best_of_group(group: &Candidates, readings: &[Reading], longest: usize) -> Option<Best> {
    use rayon::prelude::*;

    if readings.is_empty() || group.serials.is_empty() {
        return None;
    }
    // Per reading: (highest score, position of its first serial).
    let agreement_of = weighted_agreement();
    let score = |first: usize, serials: &[u64]| -> Vec<(u64, usize)> {
        let mut keystream = vec![0u8; keystream_buffer_bytes(longest)];
        let mut words = vec![0u64; pattern_bytes(longest) / 8];
        let mut best = vec![(0u64, usize::MAX); readings.len()];
        for (offset, &serial) in serials.iter().enumerate() {
            write_keystream(group.key, serial, &mut keystream);
            keystream_words(&keystream, &mut words);
            for (top, reading) in best.iter_mut().zip(readings) {
                let score = reading.score(agreement_of, &words);
                if top.1 == usize::MAX || score > top.0 {
                    *top = (score, first + offset);
                }
            }
        }
        best
    };
    let merge = |a: Vec<(u64, usize)>, b: Vec<(u64, usize)>| -> Vec<(u64, usize)> {
        a.into_iter()
            .zip(b)
            .map(|(x, y)| {
                let x_wins = y.1 == usize::MAX
                    || (x.1 != usize::MAX && (x.0 > y.0 || (x.0 == y.0 && x.1 < y.1)));
                if x_wins { x } else { y }
            })
            .collect()
    };
    let per_reading = group
        .serials
        .par_chunks(SERIALS_PER_TASK)
        .enumerate()
        .map(|(chunk, serials)| score(chunk * SERIALS_PER_TASK, serials))
        .reduce(|| vec![(0, usize::MAX); readings.len()], merge);
    let (index, (score, position), log10_raw) = per_reading
        .into_iter()
        .enumerate()
        .map(|(index, (score, position))| {
            let log10 = readings[index].tail_log10(score);
            (index, (score, position), log10)
        })
        .min_by(|a, b| {
            a.2.total_cmp(&b.2)
                .then(a.1.1.cmp(&b.1.1))
                .then(a.0.cmp(&b.0))
        })?;
    let reading = &readings[index];
    let serial = group.serials[position];
    let mut keystream = vec![0u8; keystream_buffer_bytes(longest)];
    let mut words = vec![0u64; pattern_bytes(longest) / 8];
    write_keystream(group.key, serial, &mut keystream);
    keystream_words(&keystream, &mut words);
    let agreement = agreement_of(reading.signs.words(), reading.counted.words(), &words) as u32;
    Some(Best {
        payload: Payload {
            key_id: group.key.id(),
            serial,
        },
        reading: reading.name.clone(),
        agreement,
        elements: reading.elements,
        score,
        max_score: reading.max_score(),
        log10_raw,
    })
}

/// log10 of min(1, p * tested), with no tests giving p = 1.
fn corrected_log10(log10_raw: f64, tested: u64) -> f64 {
    if tested == 0 {
        return 0.0;
    }
    (log10_raw + (tested as f64).log10()).min(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::{initial_latent, plain_latent};

    const LEN: usize = 1024;

    fn key_a() -> WatermarkKey {
        WatermarkKey::new([0xa1; 32])
    }

    fn key_b() -> WatermarkKey {
        WatermarkKey::new([0xb2; 32])
    }

    /// Flips the signs of elements whose index is 1 or 3 mod 10, which
    /// leaves 80% of the signs in agreement with the pattern.
    fn keep_80_percent(latent: &mut [f32]) {
        for (index, value) in latent.iter_mut().enumerate() {
            if index % 10 == 1 || index % 10 == 3 {
                *value = -*value;
            }
        }
    }

    #[test]
    fn finds_serial_among_1000() {
        let key = key_a();
        let serials: Vec<u64> = (5000..6000).collect();
        let mut latent = initial_latent(&key, 5737, 99, LEN);
        keep_80_percent(&mut latent);
        let expected_agreement = (0..LEN).filter(|i| i % 10 != 1 && i % 10 != 3).count();

        let groups = [Candidates {
            key: &key,
            serials: &serials,
        }];
        let detection = detect(&latent, &groups, DEFAULT_THRESHOLD);
        assert!(detection.detected, "{detection:?}");
        let payload = detection.payload.expect("payload of a detection");
        assert_eq!(payload.serial, 5737);
        assert_eq!(payload.key_id, key.id());
        assert_eq!(detection.agreement as usize, expected_agreement);
        assert_eq!(detection.elements as usize, LEN);
        assert_eq!(detection.candidates, 1000);
        assert!(detection.p_value < 1e-50, "p {}", detection.p_value);
    }

    #[test]
    fn p_value_is_bonferroni_corrected() {
        let key = key_a();
        let serials: Vec<u64> = (0..1000).collect();
        let latent = initial_latent(&key, 3, 1, LEN);
        let groups = [Candidates {
            key: &key,
            serials: &serials,
        }];
        let detection = detect(&latent, &groups, DEFAULT_THRESHOLD);
        let ratio = detection.p_value / detection.p_value_raw;
        assert!((ratio - 1000.0).abs() < 1e-6, "ratio {ratio}");
    }

    #[test]
    fn plain_latents_give_no_false_positives() {
        let key = key_a();
        let serials: Vec<u64> = (0..100).collect();
        let groups = [Candidates {
            key: &key,
            serials: &serials,
        }];
        let mut false_positives = 0;
        let mut smallest_p: f64 = 1.0;
        for seed in 0..1000 {
            let detection = detect(&plain_latent(seed, LEN), &groups, DEFAULT_THRESHOLD);
            if detection.detected || detection.payload.is_some() {
                false_positives += 1;
            }
            smallest_p = smallest_p.min(detection.p_value);
        }
        assert_eq!(false_positives, 0);
        assert!(smallest_p > DEFAULT_THRESHOLD, "smallest p {smallest_p}");
    }

    #[test]
    fn other_key_never_detects() {
        let (a, b) = (key_a(), key_b());
        let serials: Vec<u64> = (0..50).collect();
        let groups = [Candidates {
            key: &b,
            serials: &serials,
        }];
        for serial in 0..50 {
            let latent = initial_latent(&a, serial, serial + 7, LEN);
            let detection = detect(&latent, &groups, DEFAULT_THRESHOLD);
            assert!(!detection.detected, "serial {serial}: {detection:?}");
        }
    }

    #[test]
    fn picks_right_key_of_two() {
        let (a, b) = (key_a(), key_b());
        let serials = [1, 2, 3];
        let latent = initial_latent(&b, 2, 8, LEN);
        let groups = [
            Candidates {
                key: &a,
                serials: &serials,
            },
            Candidates {
                key: &b,
                serials: &serials,
            },
        ];
        let detection = detect(&latent, &groups, DEFAULT_THRESHOLD);
        let payload = detection.payload.expect("payload of a detection");
        assert_eq!(
            payload,
            Payload {
                key_id: b.id(),
                serial: 2
            }
        );
        assert_eq!(detection.candidates, 6);
    }

    #[test]
    fn no_candidates_no_detection() {
        let detection = detect(&plain_latent(1, LEN), &[], DEFAULT_THRESHOLD);
        assert!(!detection.detected);
        assert_eq!(detection.candidates, 0);
        assert_eq!(detection.p_value, 1.0);
    }

    #[test]
    fn empty_and_odd_latents_are_safe() {
        let key = key_a();
        let groups = [Candidates {
            key: &key,
            serials: &[1, 2],
        }];
        let empty = detect(&[], &groups, DEFAULT_THRESHOLD);
        assert!(!empty.detected);
        assert_eq!(empty.elements, 0);
        assert_eq!(empty.p_value, 1.0);

        let odd = detect(&[f32::NAN, 0.0, f32::INFINITY], &groups, DEFAULT_THRESHOLD);
        assert!(!odd.detected);
        assert_eq!(odd.elements, 3);
    }

    #[test]
    fn strong_match_keeps_finite_log10() {
        let key = key_a();
        let len = 4096;
        let latent = initial_latent(&key, 1, 1, len);
        let groups = [Candidates {
            key: &key,
            serials: &[1],
        }];
        let detection = detect(&latent, &groups, DEFAULT_THRESHOLD);
        assert_eq!(detection.agreement as usize, len);
        assert_eq!(detection.p_value, 0.0, "2^-4096 underflows");
        assert!((detection.log10_p_value + 1233.018_862).abs() < 1e-5);
    }

    #[test]
    fn readings_multiply_the_correction() {
        let key = key_a();
        let latent = initial_latent(&key, 4, 4, LEN);
        let groups = [Candidates {
            key: &key,
            serials: &[1, 2, 3, 4],
        }];
        let one = detect_readings(
            &[Reading::all("all", &latent)],
            1,
            &groups,
            DEFAULT_THRESHOLD,
        );
        let ten = detect_readings(
            &[Reading::all("all", &latent)],
            10,
            &groups,
            DEFAULT_THRESHOLD,
        );
        assert_eq!(one.readings, 1);
        assert_eq!(ten.readings, 10);
        assert!((ten.log10_p_value - one.log10_p_value - 1.0).abs() < 1e-9);
    }

    #[test]
    fn masked_reading_counts_only_masked_positions() {
        let key = key_a();
        let mut latent = initial_latent(&key, 7, 3, LEN);
        // Destroy the second half; a mask over the first half still finds
        // every sign there.
        for value in &mut latent[LEN / 2..] {
            *value = 0.0;
        }
        let mask: Vec<bool> = (0..LEN).map(|i| i < LEN / 2).collect();
        let reading = Reading::with_mask("first half", &latent, &mask);
        assert_eq!(reading.elements(), (LEN / 2) as u32);
        let groups = [Candidates {
            key: &key,
            serials: &[6, 7, 8],
        }];
        let detection = detect_readings(&[reading], 1, &groups, DEFAULT_THRESHOLD);
        assert!(detection.detected);
        assert_eq!(detection.agreement as usize, LEN / 2);
        assert_eq!(detection.reading, "first half");
        assert_eq!(detection.payload.map(|p| p.serial), Some(7));
    }

    #[test]
    fn weighted_reading_follows_magnitude_and_coverage() {
        let latent = [0.1f32, -3.0, 0.5, 1.0, -0.05, f32::NAN, 1.0, 1.0];
        let coverage = [1.0f32, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.25];
        let reading = Reading::weighted("w", &latent, &coverage);
        // Weights: 8 * coverage * min(|x|, 1.5), rounded; NaN and a cell
        // under half shown count nothing.
        assert_eq!(
            reading.weight_counts,
            [3, 1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1]
        );
        assert_eq!(reading.elements(), 5);
        assert_eq!(reading.max_score(), 1 + 4 + 6 + 8 + 12);
        assert!(reading.is_weighted());
        assert!(!Reading::all("a", &latent).is_weighted());
    }

    #[test]
    fn weighted_score_sums_agreeing_weights() {
        let key = key_a();
        let pattern = crate::watermark::sign_pattern(&key, 3, LEN);
        let magnitudes = plain_latent(11, LEN);
        // Right sign wherever the magnitude is above 0.7, wrong below.
        let latent: Vec<f32> = (0..LEN)
            .map(|i| {
                let right = if pattern.bit(i) == Some(true) {
                    1.0
                } else {
                    -1.0
                };
                let size = magnitudes[i].abs();
                if size > 0.7 {
                    right * size
                } else {
                    -right * size
                }
            })
            .collect();
        let reading = Reading::weighted("w", &latent, &vec![1.0; LEN]);
        let mut words = pattern.words().to_vec();
        words.resize(LEN / 64, 0);
        let expected: u64 = latent
            .iter()
            .filter(|v| v.abs() > 0.7)
            .map(|v| (v.abs().min(MAGNITUDE_CAP) * WEIGHT_SCALE).round() as u64)
            .sum();
        assert_eq!(reading.score(weighted_agreement(), &words), expected);
    }

    #[test]
    fn weighting_finds_a_mark_that_counting_misses() {
        let key = key_a();
        let serials: Vec<u64> = (0..100).collect();
        let groups = [Candidates {
            key: &key,
            serials: &serials,
        }];
        let mut latent = initial_latent(&key, 42, 5, LEN);
        // Keep the signs of large values and flip most small ones: the
        // count alone is near chance, the large values still agree.
        for (index, value) in latent.iter_mut().enumerate() {
            if value.abs() < 0.8 && index % 5 != 0 {
                *value = -*value;
            }
        }

        let counted = detect_readings(
            &[Reading::all("all", &latent)],
            2,
            &groups,
            DEFAULT_THRESHOLD,
        );
        assert!(!counted.detected, "{counted:?}");

        let whole = vec![1.0; LEN];
        let weighted = detect_readings(
            &[Reading::weighted("weighted", &latent, &whole)],
            2,
            &groups,
            DEFAULT_THRESHOLD,
        );
        assert!(weighted.detected, "{weighted:?}");
        assert_eq!(weighted.payload.map(|p| p.serial), Some(42));
        assert!(weighted.score > u64::from(weighted.agreement));
    }

    #[test]
    fn weighted_p_values_are_calibrated_without_a_mark() {
        // Without a watermark, P[p_raw <= a] must not exceed a. With 2,000
        // plain latents against one pattern each, the share below 0.05
        // and 0.01 stays within three standard errors of those levels.
        let key = key_a();
        let whole = vec![1.0; LEN];
        let trials = 2000;
        let (mut below_5, mut below_1) = (0usize, 0usize);
        for seed in 0..trials {
            let latent = plain_latent(seed, LEN);
            let serial = [seed];
            let groups = [Candidates {
                key: &key,
                serials: &serial,
            }];
            let detection = detect_readings(
                &[Reading::weighted("w", &latent, &whole)],
                1,
                &groups,
                DEFAULT_THRESHOLD,
            );
            below_5 += usize::from(detection.p_value_raw <= 0.05);
            below_1 += usize::from(detection.p_value_raw <= 0.01);
        }

        let bound = |a: f64| a * trials as f64 + 3.0 * (a * (1.0 - a) * trials as f64).sqrt();
        assert!(
            (below_5 as f64) < bound(0.05),
            "{below_5} of {trials} below 0.05"
        );
        assert!(
            (below_1 as f64) < bound(0.01),
            "{below_1} of {trials} below 0.01"
        );
        // And the test is not simply conservative: about 5% do fall below.
        assert!(below_5 > 60, "{below_5} of {trials} below 0.05");
    }

    #[test]
    fn plain_latents_stay_undetected_with_many_readings() {
        let key = key_a();
        let serials: Vec<u64> = (0..200).collect();
        let groups = [Candidates {
            key: &key,
            serials: &serials,
        }];
        let mut smallest: f64 = 1.0;
        for seed in 0..300 {
            let latent = plain_latent(seed, LEN);
            let mask: Vec<bool> = (0..LEN).map(|i| i % 3 != 0).collect();
            let readings = [
                Reading::all("all", &latent),
                Reading::weighted("weighted", &latent, &[1.0; LEN]),
                Reading::with_mask("two thirds", &latent, &mask),
            ];
            let detection = detect_readings(&readings, 3, &groups, DEFAULT_THRESHOLD);
            assert!(!detection.detected, "seed {seed}: {detection:?}");
            smallest = smallest.min(detection.p_value);
        }
        assert!(smallest > DEFAULT_THRESHOLD, "smallest p {smallest}");
    }

    #[test]
    fn parallel_search_picks_the_first_best_serial() {
        // Two serials with the same pattern cannot exist, but two equally
        // good ones can: a latent of zeros agrees with no positive sign.
        let key = key_a();
        let serials: Vec<u64> = (0..(3 * SERIALS_PER_TASK as u64)).collect();
        let groups = [Candidates {
            key: &key,
            serials: &serials,
        }];
        let target = 2 * SERIALS_PER_TASK as u64 + 17;
        let latent = initial_latent(&key, target, 5, LEN);
        let detection = detect(&latent, &groups, DEFAULT_THRESHOLD);
        assert_eq!(detection.payload.map(|p| p.serial), Some(target));
        assert_eq!(detection.candidates, serials.len() as u64);
    }

    #[test]
    fn detection_serializes_to_json() {
        let key = key_a();
        let latent = initial_latent(&key, 9, 9, LEN);
        let groups = [Candidates {
            key: &key,
            serials: &[9],
        }];
        let json = serde_json::to_value(detect(&latent, &groups, DEFAULT_THRESHOLD)).unwrap();
        assert_eq!(json["detected"], true);
        assert_eq!(json["payload"]["serial"], 9);
        assert_eq!(json["candidates"], 1);
    }
}
