//! Detection: the best-matching candidate pattern and its p-value.

use serde::Serialize;

use super::pattern::{BitPattern, pattern_bytes, write_keystream};
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

/// Outcome of [`detect`], with the statistics behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Whether `p_value <= threshold`.
    pub detected: bool,
    /// The best candidate's payload, present only when `detected`.
    pub payload: Option<Payload>,
    /// Signs of the best candidate that match the latent.
    pub agreement: u32,
    /// Signs compared, the latent's length.
    pub elements: u32,
    /// P[X >= agreement] for X ~ Binomial(elements, 1/2), before correction.
    pub p_value_raw: f64,
    /// Bonferroni-corrected: min(1, p_value_raw * candidates).
    pub p_value: f64,
    /// log10 of `p_value`, which stays finite where `p_value` underflows.
    pub log10_p_value: f64,
    /// Number of (key, serial) patterns tested.
    pub candidates: u64,
    /// The threshold that `p_value` was compared with.
    pub threshold: f64,
}

/// Tests the signs of an inverted latent against every candidate (key,
/// serial) pattern, takes the best, and corrects for the number tried.
///
/// Without a watermark, each pattern is independent of the latent, so its
/// agreement is Binomial(n, 1/2) whatever the latent's values (zeros and
/// NaN included) and `p_value` is a valid bound on the false-positive rate.
/// A latent longer than `u32::MAX` elements is tested on that prefix.
pub fn detect(latent: &[f32], candidates: &[Candidates], threshold: f64) -> Detection {
    let latent = &latent[..latent.len().min(u32::MAX as usize)];
    let observed = BitPattern::from_signs(latent);
    let elements = latent.len() as u32;

    let mut best: Option<(u64, Payload)> = None;
    let mut tested: u64 = 0;
    let mut keystream = vec![0u8; pattern_bytes(latent.len())];
    for group in candidates {
        for &serial in group.serials {
            write_keystream(group.key, serial, &mut keystream);
            let agreement = observed.agreement_with_keystream(&keystream);
            tested += 1;
            if best.is_none_or(|(top, _)| agreement > top) {
                let payload = Payload {
                    key_id: group.key.id(),
                    serial,
                };
                best = Some((agreement, payload));
            }
        }
    }

    let agreement = best.map_or(0, |(agreement, _)| agreement as u32);
    let log10_raw = binomial_tail_log10(elements, agreement);
    let log10_p_value = corrected_log10(log10_raw, tested);
    let p_value = 10f64.powf(log10_p_value);
    let detected = tested > 0 && p_value <= threshold;

    tracing::debug!(
        candidates = tested,
        agreement,
        elements,
        log10_p_value,
        detected,
        "watermark detection"
    );
    Detection {
        detected,
        payload: best.filter(|_| detected).map(|(_, payload)| payload),
        agreement,
        elements,
        p_value_raw: 10f64.powf(log10_raw),
        p_value,
        log10_p_value,
        candidates: tested,
        threshold,
    }
}

/// log10 of min(1, p * tested), with no candidates giving p = 1.
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
