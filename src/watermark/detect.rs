//! Detection: the best-matching candidate pattern and its p-value.

use serde::Serialize;

use super::pattern::{
    BitPattern, keystream_words, masked_agreement, pattern_bytes, write_keystream,
};
use super::stats::binomial_tail_log10;
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
    /// Signs of the best candidate that match the latent.
    pub agreement: u32,
    /// Signs compared in the best reading.
    pub elements: u32,
    /// P[X >= agreement] for X ~ Binomial(elements, 1/2), before correction.
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

/// One way of reading signs out of an image: the signs of an inverted
/// latent and the positions that count.
///
/// The positions must be chosen without looking at any candidate's
/// pattern (from the geometry of a hypothesis, or from the latent's own
/// magnitudes), so that without a watermark each candidate's agreement is
/// Binomial(counted positions, 1/2).
#[derive(Debug, Clone)]
pub struct Reading {
    /// Name for reports, such as `identity` or `rotate -5, strongest half`.
    pub name: String,
    signs: BitPattern,
    counted: BitPattern,
    elements: u32,
}

impl Reading {
    /// Reads every element's sign. A latent longer than `u32::MAX` elements
    /// is read on that prefix.
    pub fn all(name: &str, latent: &[f32]) -> Self {
        let latent = &latent[..latent.len().min(u32::MAX as usize)];
        Self::with_mask(name, latent, &vec![true; latent.len()])
    }

    /// Reads the signs of the elements where `mask` is true.
    pub fn with_mask(name: &str, latent: &[f32], mask: &[bool]) -> Self {
        let len = latent.len().min(mask.len()).min(u32::MAX as usize);
        let counted: Vec<f32> = mask[..len]
            .iter()
            .map(|&m| if m { 1.0 } else { 0.0 })
            .collect();
        Self {
            name: name.to_string(),
            signs: BitPattern::from_signs(&latent[..len]),
            counted: BitPattern::from_signs(&counted),
            elements: mask[..len].iter().filter(|&&m| m).count() as u32,
        }
    }

    /// Reads the signs of the `share` of masked elements with the largest
    /// magnitude: those whose sign the inversion recovered with the most
    /// margin. The choice depends on the latent alone.
    pub fn strongest(name: &str, latent: &[f32], mask: &[bool], share: f32) -> Self {
        let len = latent.len().min(mask.len());
        let mut order: Vec<usize> = (0..len)
            .filter(|&i| mask[i] && latent[i].is_finite())
            .collect();
        order.sort_by(|&a, &b| latent[b].abs().total_cmp(&latent[a].abs()));
        let keep = ((order.len() as f32 * share).round() as usize).min(order.len());
        let mut selected = vec![false; len];
        for &index in &order[..keep] {
            selected[index] = true;
        }
        Self::with_mask(name, &latent[..len], &selected)
    }

    /// Number of positions counted.
    pub fn elements(&self) -> u32 {
        self.elements
    }

    /// Counts the counted positions whose sign agrees with `pattern`, for
    /// measuring bit accuracy against a known pattern.
    pub fn agreement_with(&self, pattern: &BitPattern) -> u32 {
        (0..self.signs.len())
            .filter(|&i| self.counted.bit(i) == Some(true) && self.signs.bit(i) == pattern.bit(i))
            .count() as u32
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

    let (agreement, elements, log10_raw) = best
        .as_ref()
        .map_or((0, 0, 0.0), |b| (b.agreement, b.elements, b.log10_raw));
    let log10_p_value = corrected_log10(log10_raw, tested.saturating_mul(planned));
    let p_value = 10f64.powf(log10_p_value);
    let detected = tested > 0 && !readings.is_empty() && p_value <= threshold;

    tracing::debug!(
        candidates = tested,
        readings = planned,
        agreement,
        elements,
        log10_p_value,
        detected,
        "watermark detection"
    );
    Detection {
        detected,
        payload: best.as_ref().filter(|_| detected).map(|b| b.payload),
        agreement,
        elements,
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
    log10_raw: f64,
}

/// Serials per parallel task in [`best_of_group`].
const SERIALS_PER_TASK: usize = 4096;

/// Finds the reading and serial with the smallest tail probability for one
/// key, spreading the serials over threads. Ties go to the earlier serial
/// and reading, whatever the thread count.
///
/// Within one reading the tail probability falls as the agreement grows,
/// so the search keeps each reading's highest agreement and evaluates the
/// tail once per reading at the end, not once per serial.
fn best_of_group(group: &Candidates, readings: &[Reading], longest: usize) -> Option<Best> {
    use rayon::prelude::*;

    if readings.is_empty() || group.serials.is_empty() {
        return None;
    }
    // Per reading: (highest agreement, position of its first serial).
    let agreement_of = masked_agreement();
    let score = |first: usize, serials: &[u64]| -> Vec<(u32, usize)> {
        let mut keystream = vec![0u8; pattern_bytes(longest)];
        let mut words = vec![0u64; keystream.len() / 8];
        let mut best = vec![(0u32, usize::MAX); readings.len()];
        for (offset, &serial) in serials.iter().enumerate() {
            write_keystream(group.key, serial, &mut keystream);
            keystream_words(&keystream, &mut words);
            for (top, reading) in best.iter_mut().zip(readings) {
                let agreement =
                    agreement_of(reading.signs.words(), reading.counted.words(), &words) as u32;
                if top.1 == usize::MAX || agreement > top.0 {
                    *top = (agreement, first + offset);
                }
            }
        }
        best
    };
    let merge = |a: Vec<(u32, usize)>, b: Vec<(u32, usize)>| -> Vec<(u32, usize)> {
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
    let (index, (agreement, position), log10_raw) = per_reading
        .into_iter()
        .enumerate()
        .map(|(index, (agreement, position))| {
            let log10 = binomial_tail_log10(readings[index].elements, agreement);
            (index, (agreement, position), log10)
        })
        .min_by(|a, b| {
            a.2.total_cmp(&b.2)
                .then(a.1.1.cmp(&b.1.1))
                .then(a.0.cmp(&b.0))
        })?;
    let reading = &readings[index];
    Some(Best {
        payload: Payload {
            key_id: group.key.id(),
            serial: group.serials[position],
        },
        reading: reading.name.clone(),
        agreement,
        elements: reading.elements,
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
    fn strongest_reading_keeps_largest_magnitudes() {
        let latent = [0.1f32, -3.0, 0.2, 2.0, -0.05, f32::NAN];
        let reading = Reading::strongest("top", &latent, &[true; 6], 0.4);
        assert_eq!(reading.elements(), 2);
        let all_but_second = [true, false, true, true, true, true];
        let reading = Reading::strongest("top", &latent, &all_but_second, 0.5);
        // Of the four finite masked values, keep 0.2 and 2.0.
        assert_eq!(reading.elements(), 2);
        assert_eq!(reading.counted.bit(3), Some(true));
        assert_eq!(reading.counted.bit(2), Some(true));
        assert_eq!(reading.counted.bit(1), Some(false));
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
                Reading::strongest("strongest half", &latent, &[true; LEN], 0.5),
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
