//! Text-to-latent sampling with classifier-free guidance, and the DDIM
//! inversion that watermark detection runs on suspect images.

use candle_core::{D, Tensor};

use super::EngineError;
use super::ddim::Ddim;
use super::model::Model;

/// Settings of one sampling run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleOptions {
    /// DDIM steps.
    pub steps: usize,
    /// Classifier-free guidance scale; 1 disables guidance.
    pub guidance: f64,
}

/// Settings of one inversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InversionOptions {
    /// DDIM steps from the clean latent up to the noisiest timestep.
    pub steps: usize,
    /// Fixed-point refinements per step (0: the plain first-order inversion).
    pub refinements: usize,
}

impl Model {
    /// Denoises `noise` `(batch, c, h, w)` into clean scaled latents, one
    /// prompt per latent. `on_step` is called after each step with the
    /// number of steps done.
    pub fn sample<S: AsRef<str>>(
        &self,
        noise: &Tensor,
        prompts: &[S],
        options: &SampleOptions,
        on_step: &mut dyn FnMut(usize),
    ) -> Result<Tensor, EngineError> {
        let err = |source| EngineError::candle("sampling", source);
        let batch = noise.dim(0).map_err(err)?;
        if batch != prompts.len() {
            return Err(EngineError::InvalidConfig(format!(
                "{batch} latents but {} prompts",
                prompts.len()
            )));
        }
        let guided = options.guidance != 1.0;
        let (cond, _) = self.encode_prompts(prompts)?;
        let context = if guided {
            let (uncond, _) = self.encode_prompts(&vec![""; batch])?;
            Tensor::cat(&[&uncond, &cond], 0).map_err(err)?
        } else {
            cond
        };
        let ddim = Ddim::new(&self.schedule, self.config.prediction_type);
        let timesteps = self.schedule.ddim_timesteps(options.steps);
        let mut x = noise.clone();
        for (i, &t) in timesteps.iter().enumerate() {
            let output = if guided {
                let input = Tensor::cat(&[&x, &x], 0).map_err(err)?;
                let out = self.unet_at(&input, t, &context)?;
                let uncond = out.narrow(0, 0, batch).map_err(err)?;
                let cond = out.narrow(0, batch, batch).map_err(err)?;
                (&uncond + ((cond - &uncond).map_err(err)? * options.guidance).map_err(err)?)
                    .map_err(err)?
            } else {
                self.unet_at(&x, t, &context)?
            };
            x = ddim
                .step(&x, &output, t, timesteps.get(i + 1).copied())
                .map_err(err)?;
            tracing::trace!(step = i + 1, timestep = t, "ddim step");
            on_step(i + 1);
        }
        Ok(x)
    }

    /// Estimates the initial noise that produced clean scaled `latents`, by
    /// DDIM inversion with the empty prompt and no guidance.
    pub fn invert(
        &self,
        latents: &Tensor,
        options: &InversionOptions,
    ) -> Result<Tensor, EngineError> {
        let err = |source| EngineError::candle("inverting", source);
        let batch = latents.dim(0).map_err(err)?;
        let (context, _) = self.encode_prompts(&vec![""; batch])?;
        let ddim = Ddim::new(&self.schedule, self.config.prediction_type);
        let mut timesteps = self.schedule.ddim_timesteps(options.steps);
        timesteps.reverse();
        let mut x = latents.clone();
        let mut alpha_below = 1.0;
        for &t in &timesteps {
            let output = self.unet_at(&x, t, &context)?;
            let mut estimate = ddim
                .invert_step(&x, alpha_below, &x, &output, t)
                .map_err(err)?;
            for _ in 0..options.refinements {
                let output = self.unet_at(&estimate, t, &context)?;
                estimate = ddim
                    .invert_step(&x, alpha_below, &estimate, &output, t)
                    .map_err(err)?;
            }
            x = estimate;
            alpha_below = ddim.alpha_bar(Some(t));
        }
        Ok(x)
    }

    /// Runs the UNet at one timestep for the whole batch.
    fn unet_at(&self, x: &Tensor, t: usize, context: &Tensor) -> Result<Tensor, EngineError> {
        let err = |source| EngineError::candle("running the UNet", source);
        let batch = x.dim(0).map_err(err)?;
        let timesteps = Tensor::full(t as f32, batch, &self.device).map_err(err)?;
        self.unet.forward(x, &timesteps, context).map_err(err)
    }
}

/// Per-latent standard deviation, a cheap sanity figure for logs.
pub fn latent_std(latents: &Tensor) -> Result<Vec<f32>, EngineError> {
    let err = |source| EngineError::candle("measuring latents", source);
    let flat = latents.flatten_from(1).map_err(err)?;
    let mean = flat.mean_keepdim(D::Minus1).map_err(err)?;
    let var = flat
        .broadcast_sub(&mean)
        .and_then(|c| c.sqr())
        .and_then(|s| s.mean(D::Minus1))
        .map_err(err)?;
    var.sqrt().and_then(|s| s.to_vec1()).map_err(err)
}
