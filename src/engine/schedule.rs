//! The cosine noise schedule and DDIM timestep selection.
//!
//! The schedule is Nichol and Dhariwal's cosine schedule ("Improved
//! Denoising Diffusion Probabilistic Models", 2021), as diffusers'
//! `squaredcos_cap_v2`: alpha_bar(s) = cos^2((s + 0.008) / 1.008 * pi / 2),
//! beta_i = min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999).
//! The division i / T is in floating point.

use serde::{Deserialize, Serialize};

/// What the UNet predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The added noise.
    Epsilon,
    /// The velocity v = sqrt(alpha_bar) * noise - sqrt(1 - alpha_bar) * x0.
    VPrediction,
}

/// Cumulative signal levels of the discrete training schedule.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// The cosine schedule over `train_steps` discrete steps.
    pub fn cosine(train_steps: usize) -> Self {
        let alpha_bar = |s: f64| {
            ((s + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        let mut product = 1.0;
        let alphas_cumprod = (0..train_steps)
            .map(|i| {
                let t1 = i as f64 / train_steps as f64;
                let t2 = (i + 1) as f64 / train_steps as f64;
                let beta = (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999);
                product *= 1.0 - beta;
                product
            })
            .collect();
        Self { alphas_cumprod }
    }

    /// Number of discrete training steps.
    pub fn train_steps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// alpha_bar at step `t` (signal variance fraction); step `t` must be
    /// below `train_steps`.
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alphas_cumprod[t.min(self.alphas_cumprod.len() - 1)]
    }

    /// `steps` sampling timesteps, descending, with "trailing" spacing so the
    /// first one is the noisiest training step: round(T - i * T / steps) - 1.
    pub fn ddim_timesteps(&self, steps: usize) -> Vec<usize> {
        let total = self.train_steps();
        let steps = steps.clamp(1, total);
        let stride = total as f64 / steps as f64;
        (0..steps)
            .map(|i| ((total as f64 - i as f64 * stride).round() as usize).saturating_sub(1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_decreases_from_one() {
        let schedule = NoiseSchedule::cosine(1000);
        assert!(schedule.alpha_bar(0) > 0.9999);
        assert!(schedule.alpha_bar(999) < 1e-4);
        for t in 1..1000 {
            assert!(schedule.alpha_bar(t) < schedule.alpha_bar(t - 1));
        }
        // Midpoint of the cosine curve, where alpha_bar is close to one half.
        let mid = schedule.alpha_bar(496);
        assert!((mid - 0.5).abs() < 0.01, "alpha_bar(496) = {mid}");
    }

    #[test]
    fn trailing_timesteps() {
        let schedule = NoiseSchedule::cosine(1000);
        let steps = schedule.ddim_timesteps(4);
        assert_eq!(steps, vec![999, 749, 499, 249]);
        assert_eq!(schedule.ddim_timesteps(1000).last(), Some(&0));
    }
}
