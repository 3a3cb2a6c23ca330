//! Branch-free f32 approximations of `exp` and `tanh` that the compiler
//! can vectorise, for the elementwise kernels. glibc's `tanhf` is a scalar
//! call of about 15 ns here, and GELU needs one per element in each
//! direction.

/// exp(y) for y in [-80, 80], relative error below 2e-7.
///
/// Cody-Waite reduction: y = k ln 2 + r with integer k and |r| <= ln 2 / 2,
/// then exp(r) by its Taylor polynomial to degree 7 and 2^k from the
/// exponent bits.
pub fn exp(y: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that k * LN2_HI is exact for |k| < 2^10.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer
    // without a call to `round`, which the baseline x86-64 target lacks.
    const ROUND: f32 = 12_582_912.0;

    let y = y.clamp(-80.0, 80.0);
    let k = (y * LOG2_E + ROUND) - ROUND;
    let r = (y - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits(((k as i32 + 127) << 23) as u32);
    p * scale
}

/// tanh(x) = 1 - 2 / (exp(2x) + 1), absolute error below 2e-7.
pub fn tanh(x: f32) -> f32 {
    // tanh(|x| >= 10) is 1 to f32 precision, and exp(2x) stays finite.
    let e = exp(2.0 * x.clamp(-10.0, 10.0));
    1.0 - 2.0 / (e + 1.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_close_to_std() {
        let mut worst = 0.0f64;
        for i in -80_000..=80_000 {
            let y = i as f32 * 1e-3;
            let exact = (y as f64).exp();
            let relative = ((super::exp(y) as f64 - exact) / exact).abs();
            worst = worst.max(relative);
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn tanh_is_close_to_std() {
        let mut worst = 0.0f64;
        for i in -20_000..=20_000 {
            let x = i as f32 * 1e-3;
            let error = (super::tanh(x) as f64 - (x as f64).tanh()).abs();
            worst = worst.max(error);
        }
        assert!(worst < 2e-7, "worst absolute error {worst:e}");
        assert_eq!(super::tanh(50.0), 1.0);
        assert_eq!(super::tanh(-50.0), -1.0);
    }
}
