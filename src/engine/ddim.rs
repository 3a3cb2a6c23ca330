//! Deterministic DDIM updates (eta = 0) and their inversion.
//!
//! Sampling walks the timesteps from noisiest to clean:
//! x_prev = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev) * eps_hat, where
//! (x0_hat, eps_hat) come from the UNet output at (x_t, t). Inversion walks
//! the same timesteps upwards with the same update, evaluating the UNet at
//! the current (less noisy) latent with the target timestep, which is the
//! usual first-order approximation; each inversion step can be refined by
//! fixed-point iterations that re-evaluate the UNet at the new estimate.

use candle_core::{Result, Tensor};

use super::schedule::{NoiseSchedule, PredictionType};

/// The DDIM update rules for one schedule and prediction type.
#[derive(Debug, Clone, Copy)]
pub struct Ddim<'a> {
    schedule: &'a NoiseSchedule,
    prediction: PredictionType,
}

impl<'a> Ddim<'a> {
    /// Update rules over `schedule` for a UNet that predicts `prediction`.
    pub fn new(schedule: &'a NoiseSchedule, prediction: PredictionType) -> Self {
        Self {
            schedule,
            prediction,
        }
    }

    /// alpha_bar at `t`, or 1 for the clean end of the chain.
    pub fn alpha_bar(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.schedule.alpha_bar(t))
    }

    /// Splits a UNet output at `(x, alpha_bar)` into the predicted noise
    /// and the predicted clean latent.
    pub fn split(&self, x: &Tensor, output: &Tensor, alpha_bar: f64) -> Result<(Tensor, Tensor)> {
        let (signal, noise) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        match self.prediction {
            PredictionType::Epsilon => {
                let x0 = ((x - (output * noise)?)? / signal)?;
                Ok((output.clone(), x0))
            }
            PredictionType::VPrediction => {
                let x0 = ((x * signal)? - (output * noise)?)?;
                let eps = ((x * noise)? + (output * signal)?)?;
                Ok((eps, x0))
            }
        }
    }

    /// Moves from timestep `t` to `t_prev` (`None`: the clean latent) given
    /// the UNet output at `(x_t, t)`.
    pub fn step(
        &self,
        x_t: &Tensor,
        output: &Tensor,
        t: usize,
        t_prev: Option<usize>,
    ) -> Result<Tensor> {
        let (eps, x0) = self.split(x_t, output, self.alpha_bar(Some(t)))?;
        self.combine(&eps, &x0, self.alpha_bar(t_prev))
    }

    /// Inverse step in the form that keeps the previous level's x0 fixed:
    /// `x_below` is the latent at the lower level (alpha `alpha_below`), and
    /// `output` the UNet output evaluated at `(x_eval, t_next)`.
    pub fn invert_step(
        &self,
        x_below: &Tensor,
        alpha_below: f64,
        x_eval: &Tensor,
        output: &Tensor,
        t_next: usize,
    ) -> Result<Tensor> {
        let alpha_next = self.alpha_bar(Some(t_next));
        let (eps, _) = self.split(x_eval, output, alpha_next)?;
        // Solve the sampling update x_below = sqrt(a_b) * x0 + sqrt(1 - a_b) * eps
        // for x0, then re-noise to the upper level with the same eps.
        let x0 = ((x_below - (&eps * (1.0 - alpha_below).sqrt())?)? / alpha_below.sqrt())?;
        self.combine(&eps, &x0, alpha_next)
    }

    fn combine(&self, eps: &Tensor, x0: &Tensor, alpha_bar: f64) -> Result<Tensor> {
        (x0 * alpha_bar.sqrt())? + (eps * (1.0 - alpha_bar).sqrt())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::tests::max_abs_diff;
    use candle_core::Device;

    fn tensor(values: &[f32]) -> Tensor {
        Tensor::from_slice(values, values.len(), &Device::Cpu).unwrap()
    }

    #[test]
    fn exact_noise_prediction_recovers_clean_latent() {
        let schedule = NoiseSchedule::cosine(1000);
        let ddim = Ddim::new(&schedule, PredictionType::Epsilon);
        let x0 = tensor(&[0.3, -1.2, 0.7]);
        let eps = tensor(&[1.0, 0.5, -0.4]);
        let a = schedule.alpha_bar(600);
        let x_t = ((&x0 * a.sqrt()).unwrap() + (&eps * (1.0 - a).sqrt()).unwrap()).unwrap();
        let clean = ddim.step(&x_t, &eps, 600, None).unwrap();
        assert!(max_abs_diff(&clean, &x0) < 1e-5);
    }

    #[test]
    fn velocity_split_matches_definition() {
        let schedule = NoiseSchedule::cosine(1000);
        let ddim = Ddim::new(&schedule, PredictionType::VPrediction);
        let x0 = tensor(&[0.3, -1.2, 0.7]);
        let eps = tensor(&[1.0, 0.5, -0.4]);
        let a = schedule.alpha_bar(300);
        let x_t = ((&x0 * a.sqrt()).unwrap() + (&eps * (1.0 - a).sqrt()).unwrap()).unwrap();
        let v = ((&eps * a.sqrt()).unwrap() - (&x0 * (1.0 - a).sqrt()).unwrap()).unwrap();
        let (eps_hat, x0_hat) = ddim.split(&x_t, &v, a).unwrap();
        assert!(max_abs_diff(&eps_hat, &eps) < 1e-5);
        assert!(max_abs_diff(&x0_hat, &x0) < 1e-5);
    }

    #[test]
    fn inversion_undoes_a_step_with_constant_noise() {
        // With a UNet that always predicts the same noise, one sampling step
        // and one inversion step are exact inverses.
        let schedule = NoiseSchedule::cosine(1000);
        let ddim = Ddim::new(&schedule, PredictionType::Epsilon);
        let eps = tensor(&[0.2, -0.9, 1.1]);
        let x_t = tensor(&[0.5, 0.1, -0.3]);
        let x_prev = ddim.step(&x_t, &eps, 800, Some(400)).unwrap();
        let a_prev = schedule.alpha_bar(400);
        let back = ddim
            .invert_step(&x_prev, a_prev, &x_prev, &eps, 800)
            .unwrap();
        assert!(max_abs_diff(&back, &x_t) < 1e-5);
    }
}
