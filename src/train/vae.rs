//! Training step of the autoencoder: reconstruction error of a posterior
//! sample plus a small KL penalty towards N(0, 1).

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::StepStats;
use super::optim::{AdamW, Ema, LrSchedule};
use crate::engine::init::SeededInit;
use crate::engine::vae::{AutoEncoderKl, VaeConfig};
use crate::watermark::noise::NoiseStream;

/// Settings of an autoencoder run.
#[derive(Debug, Clone, Copy)]
pub struct VaeTraining {
    /// Weight of the KL term against the per-pixel squared error.
    pub kl_weight: f64,
    /// Learning-rate schedule.
    pub lr: LrSchedule,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Global gradient norm limit.
    pub max_grad_norm: f64,
    /// Decay of the weights' moving average.
    pub ema_decay: f64,
}

/// An autoencoder being trained.
pub struct VaeTrainer {
    /// The model whose variables are trained (under the `vae.` prefix).
    pub vae: AutoEncoderKl,
    /// Every trainable variable.
    pub varmap: VarMap,
    /// The optimiser.
    pub adam: AdamW,
    /// Moving average of the weights.
    pub ema: Ema,
    settings: VaeTraining,
    seed: u64,
}

impl VaeTrainer {
    /// Initialises a fresh autoencoder from `seed`.
    pub fn new(
        config: &VaeConfig,
        settings: VaeTraining,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let varmap = VarMap::new();
        let vb = SeededInit::var_builder(&varmap, seed, device);
        let vae = AutoEncoderKl::new(config, vb.pp("vae"))?;
        let vars = super::named_vars(&varmap)?;
        let adam = AdamW::new(vars.clone(), settings.weight_decay)?;
        let ema = Ema::new(adam.vars(), settings.ema_decay)?;
        Ok(Self {
            vae,
            varmap,
            adam,
            ema,
            settings,
            seed,
        })
    }

    /// One optimisation step on images `(batch, 3, h, w)` in [-1, 1].
    pub fn step(&mut self, images: &Tensor) -> candle_core::Result<StepStats> {
        let step = self.adam.steps_done();
        let posterior = self.vae.encode(images)?;
        let mut noise = NoiseStream::with_domain(b"mmgen train vae", self.seed ^ step as u64);
        let eps = super::normal_like(&posterior.mean, &mut noise)?;
        let std = (&posterior.log_var * 0.5)?.exp()?;
        let z = (&posterior.mean + (std * eps)?)?;
        let reconstruction = self.vae.decode(&z)?;
        let recon_loss = (reconstruction - images)?.sqr()?.mean_all()?;
        let kl = ((posterior.mean.sqr()? + posterior.log_var.exp()?)? - 1.0)?;
        let kl = ((kl - &posterior.log_var)? * 0.5)?.mean_all()?;
        let loss = (&recon_loss + (&kl * self.settings.kl_weight)?)?;

        let mut grads = loss.backward()?;
        let grad_norm = self
            .adam
            .clip_gradients(&mut grads, self.settings.max_grad_norm)?;
        let lr = self.settings.lr.at(step);
        self.adam.step(&grads, lr)?;
        self.ema.update(self.adam.vars(), step)?;
        Ok(StepStats {
            step: step + 1,
            loss: loss.to_scalar::<f32>()? as f64,
            parts: vec![
                ("recon", recon_loss.to_scalar::<f32>()? as f64),
                ("kl", kl.to_scalar::<f32>()? as f64),
            ],
            grad_norm,
            lr,
        })
    }
}
