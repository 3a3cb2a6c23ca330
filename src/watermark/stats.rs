//! Tail probabilities of the fair-coin binomial distribution and of its
//! weighted form, a sum of fair coins with whole-number weights.

use std::f64::consts::{LN_2, LN_10};

/// Computes P[X >= k] for X ~ Binomial(n, 1/2) to near f64 precision.
///
/// The sum is taken relative to its first term, and that term is computed
/// in log space with a saddle-point expansion, so results stay
/// accurate down to about 1e-300 (tests check a relative error below 1e-11
/// up to n = 10^5). Smaller values underflow towards 0; use
/// [`binomial_tail_log10`] for those.
pub fn binomial_tail(n: u32, k: u32) -> f64 {
    10f64.powf(binomial_tail_log10(n, k))
}

/// log10 of P[X >= k] for X ~ Binomial(n, 1/2); `-inf` when `k > n`.
///
/// Unlike [`binomial_tail`] this does not underflow: for n = k = 4096 it
/// returns about -1233.02.
pub fn binomial_tail_log10(n: u32, k: u32) -> f64 {
    if k == 0 {
        return 0.0;
    }
    if k > n {
        return f64::NEG_INFINITY;
    }

    // Past the mean the terms shrink, so the upper tail sums directly. At
    // or below it, P[X >= k] = 1 - P[X >= n - k + 1] by symmetry, and the
    // subtracted tail is at most 1/2, so nothing cancels badly.
    if 2 * u64::from(k) > u64::from(n) {
        upper_tail_ln(n, k) / LN_10
    } else {
        let complement = upper_tail_ln(n, n - k + 1).exp();
        (-complement).ln_1p() / LN_10
    }
}

/// ln P[X >= k] for `n / 2 < k <= n`.
fn upper_tail_ln(n: u32, k: u32) -> f64 {
    let (n, k) = (f64::from(n), f64::from(k));
    let first_ln = ln_fair_pmf(n, k);

    // Sum of t_j / t_k for j = k..=n, where t_{j+1} / t_j = (n - j) / (j + 1)
    // falls below 1 and keeps falling, so the loop stops once a term no
    // longer changes the sum.
    let mut ratio_sum = 1.0;
    let mut term = 1.0;
    let mut j = k;
    while j < n {
        term *= (n - j) / (j + 1.0);
        ratio_sum += term;
        if term < ratio_sum * 1e-18 {
            break;
        }
        j += 1.0;
    }
    first_ln + ratio_sum.ln()
}

/// ln P[X = k] for X ~ Binomial(n, 1/2) and whole numbers `0 <= k <= n`.
///
/// Differences of `lgamma` lose about 1e-10 relative accuracy by n = 10^5,
/// so this uses the saddle-point form: Stirling-series remainders plus
/// deviance terms, each small and computed without cancellation.
fn ln_fair_pmf(n: f64, k: f64) -> f64 {
    if k == 0.0 || k == n {
        return -n * LN_2;
    }
    let half = n / 2.0;
    let remainders = stirling_remainder(n) - stirling_remainder(k) - stirling_remainder(n - k);
    let deviance = deviance_term(k, half) + deviance_term(n - k, half);
    let scale = 0.5 * (n / (2.0 * std::f64::consts::PI * k * (n - k))).ln();
    remainders - deviance + scale
}

/// ln(x!) - ln(sqrt(2 pi x) (x / e)^x) for a whole number `x >= 1`.
fn stirling_remainder(x: f64) -> f64 {
    if x <= 15.0 {
        // For small x, lgamma is accurate to a few ulps of a small value.
        return libm::lgamma(x + 1.0) - (x + 0.5) * x.ln() + x
            - 0.5 * (2.0 * std::f64::consts::PI).ln();
    }

    // Asymptotic series 1/(12x) - 1/(360x^3) + 1/(1260x^5) - ... For
    // x > 15 the first omitted term is below 1e-16.
    let inverse_square = 1.0 / (x * x);
    let series = 1.0 / 12.0
        - inverse_square
            * (1.0 / 360.0
                - inverse_square
                    * (1.0 / 1260.0 - inverse_square * (1.0 / 1680.0 - inverse_square / 1188.0)));
    series / x
}

/// x ln(x / mean) + mean - x, the deviance of `x` from `mean`, without the
/// cancellation that the direct formula suffers when `x` is near `mean`.
fn deviance_term(x: f64, mean: f64) -> f64 {
    if (x - mean).abs() >= 0.1 * (x + mean) {
        return x * (x / mean).ln() + mean - x;
    }

    // With v = (x - mean) / (x + mean) the deviance is the series
    // 2x (v^3/3 + v^5/5 + ...) + (x - mean) v, which converges fast for
    // |v| < 0.1.
    let v = (x - mean) / (x + mean);
    let mut sum = (x - mean) * v;
    let mut power = 2.0 * x * v;
    let mut odd = 1.0;
    loop {
        power *= v * v;
        odd += 2.0;
        let next = sum + power / odd;
        if next == sum {
            return sum;
        }
        sum = next;
    }
}

/// Largest `positions * (total weight)` for which [`weighted_tail_log10`]
/// sums the exact distribution (a few tens of milliseconds); past it, the
/// Chernoff bound is used.
const EXACT_WORK: u64 = 100_000_000;

/// log10 of P[S >= score] for S = sum of `w * B` over the weights `w` in
/// `weight_counts` (entry `w` is how many positions carry weight `w`) and
/// independent fair coins B in {0, 1}. With every weight 1 this is
/// [`binomial_tail_log10`].
///
/// The distribution of S is built exactly, one position at a time, when
/// that is cheap enough. The Chernoff bound is returned instead where the
/// exact tail is too small for f64 (below about 1e-290, far below any
/// threshold) or the latent is too large for the exact sum. The bound is
/// never smaller than the true tail, so a detection it reports is valid.
pub fn weighted_tail_log10(weight_counts: &[u32], score: u64) -> f64 {
    let positions: u64 = weight_counts.iter().map(|&n| u64::from(n)).sum();
    let total: u64 = weight_counts
        .iter()
        .enumerate()
        .map(|(w, &n)| w as u64 * u64::from(n))
        .sum();
    if score == 0 {
        return 0.0;
    }
    if score > total {
        return f64::NEG_INFINITY;
    }
    if weight_counts.iter().skip(2).all(|&n| n == 0) {
        let ones = weight_counts.get(1).copied().unwrap_or(0);
        return binomial_tail_log10(ones, score as u32);
    }
    if positions.saturating_mul(total) <= EXACT_WORK {
        let exact = exact_weighted_tail(weight_counts, total as usize, score as usize);
        if exact > 1e-290 {
            return exact.log10();
        }
    }
    chernoff_log10(weight_counts, total, score)
}

/// P[S >= score] by building the distribution of S: adding a position of
/// weight w maps P to (P(s) + P(s - w)) / 2.
fn exact_weighted_tail(weight_counts: &[u32], total: usize, score: usize) -> f64 {
    let mut distribution = vec![0f64; total + 1];
    distribution[0] = 1.0;
    let mut reach = 0usize;
    for (weight, &count) in weight_counts.iter().enumerate().skip(1) {
        for _ in 0..count {
            for s in (weight..=reach + weight).rev() {
                distribution[s] = 0.5 * (distribution[s] + distribution[s - weight]);
            }
            for value in &mut distribution[..weight.min(reach + 1)] {
                *value *= 0.5;
            }
            reach += weight;
        }
    }
    distribution[score..].iter().sum::<f64>().min(1.0)
}

/// log10 of the Chernoff bound min over t > 0 of E[exp(t S)] exp(-t score),
/// which bounds P[S >= score] from above.
fn chernoff_log10(weight_counts: &[u32], total: u64, score: u64) -> f64 {
    let mean = total as f64 / 2.0;
    if (score as f64) <= mean {
        return 0.0;
    }
    // ln E[exp(t S)] - t score is convex in t, so its minimum is found by
    // bisection on the derivative sum n_w w / (1 + exp(-t w)) - score.
    let derivative = |t: f64| -> f64 {
        weight_counts
            .iter()
            .enumerate()
            .map(|(w, &n)| f64::from(n) * w as f64 / (1.0 + (-t * w as f64).exp()))
            .sum::<f64>()
            - score as f64
    };
    let (mut low, mut high) = (0.0f64, 1.0f64);
    while derivative(high) < 0.0 && high < 1e6 {
        high *= 2.0;
    }
    for _ in 0..100 {
        let middle = 0.5 * (low + high);
        if derivative(middle) < 0.0 {
            low = middle;
        } else {
            high = middle;
        }
    }
    let t = high;
    let ln_bound: f64 = weight_counts
        .iter()
        .enumerate()
        .map(|(w, &n)| {
            // ln((1 + exp(t w)) / 2), written to stay finite for large t w.
            let x = t * w as f64;
            f64::from(n) * (x.max(0.0) + (-x.abs()).exp().ln_1p() - LN_2)
        })
        .sum::<f64>()
        - t * score as f64;
    (ln_bound / LN_10).min(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row `n` of Pascal's triangle divided by 2^n, built by halving sums.
    fn probability_row(n: usize) -> Vec<f64> {
        let mut row = vec![1.0];
        for _ in 0..n {
            let mut next = vec![0.0; row.len() + 1];
            for (j, &p) in row.iter().enumerate() {
                next[j] += p / 2.0;
                next[j + 1] += p / 2.0;
            }
            row = next;
        }
        row
    }

    fn assert_close(actual: f64, expected: f64, tolerance: f64, case: &str) {
        let error = ((actual - expected) / expected).abs();
        assert!(error < tolerance, "{case}: {actual} vs {expected}");
    }

    #[test]
    fn tail_matches_direct_sums() {
        for n in [1usize, 2, 3, 10, 31, 64, 100] {
            let row = probability_row(n);
            for k in 0..=n {
                let direct: f64 = row[k..].iter().sum();
                let case = format!("n {n} k {k}");
                assert_close(binomial_tail(n as u32, k as u32), direct, 1e-11, &case);
            }
        }
    }

    #[test]
    fn tail_matches_known_values() {
        // Exact values from integer sums of C(n, j) / 2^n.
        let cases = [
            (1024, 512, 5.124_639_029_464_898e-1),
            (1024, 600, 2.105_661_787_006_680_9e-8),
            (1024, 700, 1.007_618_610_961_194_7e-32),
            (4096, 3000, 3.606_895_302_903_384_4e-202),
            (100_000, 50_500, 7.911_799_394_257_978e-4),
            (100_000, 51_000, 1.294_358_019_173_449e-10),
            (100_000, 52_000, 5.765_469_333_361_488e-37),
            (10, 3, 9.453_125e-1),
            (2, 1, 0.75),
        ];
        for (n, k, expected) in cases {
            let case = format!("n {n} k {k}");
            assert_close(binomial_tail(n, k), expected, 1e-11, &case);
        }
    }

    #[test]
    fn log10_tail_below_underflow() {
        let cases = [
            (1024, 1024, -308.254_715_559_916_74),
            (4096, 4096, -1233.018_862_239_666_9),
            (4096, 3000, -201.442_866_463_734_1),
            (100_000, 60_000, -876.586_404_784_110_3),
        ];
        for (n, k, expected) in cases {
            let actual = binomial_tail_log10(n, k);
            assert!((actual - expected).abs() < 1e-9, "n {n} k {k}: {actual}");
        }
    }

    #[test]
    fn tail_edges() {
        assert_eq!(binomial_tail(0, 0), 1.0);
        assert_eq!(binomial_tail(5, 0), 1.0);
        assert_eq!(binomial_tail(5, 6), 0.0);
        assert_eq!(binomial_tail_log10(5, 6), f64::NEG_INFINITY);
        assert_close(binomial_tail(1, 1), 0.5, 1e-15, "n 1 k 1");
    }

    #[test]
    fn tail_decreases_in_k() {
        let mut previous = 1.0;
        for k in 0..=1024 {
            let tail = binomial_tail_log10(1024, k);
            assert!(tail <= previous, "k {k}: {tail} > {previous}");
            previous = tail;
        }
    }

    #[test]
    fn tail_handles_large_n() {
        let n = u32::MAX;
        let half = binomial_tail(n, n / 2 + 1);
        assert!((half - 0.5).abs() < 1e-3, "tail at the mean {half}");
        let all = binomial_tail_log10(n, n);
        let expected = -f64::from(n) * 2f64.log10();
        assert!(
            ((all - expected) / expected).abs() < 1e-12,
            "tail at n {all}"
        );
    }

    /// P[S >= score] by listing all 2^n outcomes of the coins.
    fn enumerated_tail(weights: &[u32], score: u64) -> f64 {
        let n = weights.len();
        let hits = (0u32..1 << n)
            .filter(|outcome| {
                let sum: u64 = (0..n)
                    .filter(|&i| outcome >> i & 1 == 1)
                    .map(|i| u64::from(weights[i]))
                    .sum();
                sum >= score
            })
            .count();
        hits as f64 / f64::from(1u32 << n)
    }

    fn counts_of(weights: &[u32]) -> Vec<u32> {
        let mut counts = vec![0u32; 1 + *weights.iter().max().unwrap_or(&0) as usize];
        for &w in weights {
            counts[w as usize] += 1;
        }
        counts
    }

    #[test]
    fn weighted_tail_matches_enumeration() {
        let sets: [&[u32]; 4] = [
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            &[0, 0, 3, 3, 3, 7, 12, 1, 1, 2, 5, 9, 4, 4],
            &[12, 12, 12, 1],
            &[2, 2, 2, 2, 2, 2],
        ];
        for weights in sets {
            let counts = counts_of(weights);
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            for score in 0..=total + 1 {
                let expected = enumerated_tail(weights, score);
                let actual = 10f64.powf(weighted_tail_log10(&counts, score));
                let case = format!("weights {weights:?} score {score}");
                if expected == 0.0 {
                    assert_eq!(actual, 0.0, "{case}");
                } else {
                    assert_close(actual, expected, 1e-12, &case);
                }
            }
        }
    }

    #[test]
    fn unit_weights_give_the_binomial_tail() {
        for (n, k) in [(1024u32, 600u64), (256, 170), (100, 50)] {
            let weighted = weighted_tail_log10(&[0, n], k);
            assert_eq!(weighted, binomial_tail_log10(n, k as u32));
            // The same distribution written with weight 2 on every
            // position: scores are doubled.
            let doubled = weighted_tail_log10(&[0, 0, n], 2 * k);
            assert!((doubled - weighted).abs() < 1e-9, "n {n} k {k}: {doubled}");
        }
    }

    #[test]
    fn chernoff_bound_lies_above_the_exact_tail() {
        let counts = [40u32, 100, 90, 80, 70, 60, 50, 40, 30, 20, 15, 10, 5];
        let total: u64 = counts
            .iter()
            .enumerate()
            .map(|(w, &n)| w as u64 * u64::from(n))
            .sum();
        for score in [
            total / 2 + 1,
            total * 6 / 10,
            total * 7 / 10,
            total * 9 / 10,
        ] {
            let exact = exact_weighted_tail(&counts, total as usize, score as usize).log10();
            let bound = chernoff_log10(&counts, total, score);
            assert!(
                bound >= exact,
                "score {score}: bound {bound} < exact {exact}"
            );
            // The bound is loose by a modest factor, not by orders.
            assert!(bound - exact < 2.0, "score {score}: {bound} vs {exact}");
        }
    }

    #[test]
    fn weighted_tail_stays_finite_past_underflow() {
        // 4096 positions of weight 12, every coin agreeing: the true tail
        // is 2^-4096, far below f64's range.
        let mut counts = vec![0u32; 13];
        counts[12] = 4096;
        counts[3] = 10;
        let log10 = weighted_tail_log10(&counts, 12 * 4096 + 30);
        assert!(log10.is_finite(), "{log10}");
        assert!(log10 < -1000.0, "{log10}");
        assert!(log10 >= -1233.02 - 4.0, "not below the true tail: {log10}");
    }
}
