//! Training step of the latent reader: from a distorted decoded image back
//! to the latent it was decoded from.
//!
//! The autoencoder's own encoder was trained on clean scenes only, so after
//! JPEG, resizing or a brightness change its latents drift, and DDIM
//! inversion amplifies that drift into lost watermark signs. The reader
//! starts as a copy of that encoder and learns, by squared error on the
//! latent, to undo the distortions that `watermark::attack` draws.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use super::StepStats;
use super::optim::{AdamW, Ema, LrSchedule};
use crate::engine::init::SeededInit;
use crate::engine::vae::{LatentReader, VaeConfig};

/// Settings of a reader run.
#[derive(Debug, Clone, Copy)]
pub struct ReaderTraining {
    /// Learning-rate schedule.
    pub lr: LrSchedule,
    /// Global gradient norm limit.
    pub max_grad_norm: f64,
    /// Decay of the weights' moving average.
    pub ema_decay: f64,
}

/// A latent reader being trained.
pub struct ReaderTrainer {
    /// The reader (variables under `latent_reader.`).
    pub reader: LatentReader,
    /// Every trainable variable.
    pub varmap: VarMap,
    /// The optimiser.
    pub adam: AdamW,
    /// Moving average of the weights.
    pub ema: Ema,
    settings: ReaderTraining,
}

impl ReaderTrainer {
    /// Builds a reader whose weights start as the autoencoder's encoder:
    /// `vae_tensors` are the autoencoder's tensors, named `vae.encoder.*`
    /// and `vae.quant_conv.*`.
    pub fn from_encoder(
        config: &VaeConfig,
        vae_tensors: &HashMap<String, Tensor>,
        settings: ReaderTraining,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let varmap = VarMap::new();
        let vb = SeededInit::var_builder(&varmap, 0, device);
        let reader = LatentReader::new(config, vb.pp("latent_reader"))?;
        for (name, var) in super::named_vars(&varmap)? {
            let source = name.replacen("latent_reader.", "vae.", 1);
            let Some(tensor) = vae_tensors.get(&source) else {
                candle_core::bail!("the autoencoder has no tensor {source} for {name}")
            };
            var.set(&tensor.to_dtype(DType::F32)?)?;
        }
        let adam = AdamW::new(super::named_vars(&varmap)?, 0.0)?;
        let ema = Ema::new(adam.vars(), settings.ema_decay)?;
        Ok(Self {
            reader,
            varmap,
            adam,
            ema,
            settings,
        })
    }

    /// One optimisation step: `images` `(batch, 3, h, w)` in [-1, 1], each
    /// decoded from the unscaled latent at the same index of `latents` and
    /// then distorted.
    pub fn step(&mut self, images: &Tensor, latents: &Tensor) -> candle_core::Result<StepStats> {
        let step = self.adam.steps_done();
        let read = self.reader.forward(images)?;
        let loss = (read - latents)?.sqr()?.mean_all()?;
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
            parts: Vec::new(),
            grad_norm,
            lr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::vae::AutoEncoderKl;

    fn tiny() -> VaeConfig {
        VaeConfig {
            in_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![8, 8],
            layers_per_block: 1,
            norm_num_groups: 4,
            scaling_factor: 1.0,
        }
    }

    #[test]
    fn reader_starts_as_the_encoder_and_learns() {
        let device = Device::Cpu;
        let vae_map = VarMap::new();
        let vae = AutoEncoderKl::new(
            &tiny(),
            SeededInit::var_builder(&vae_map, 3, &device).pp("vae"),
        )
        .unwrap();
        let vae_tensors: HashMap<String, Tensor> = super::super::named_vars(&vae_map)
            .unwrap()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        let settings = ReaderTraining {
            lr: LrSchedule {
                peak: 3e-3,
                floor: 3e-3,
                warmup_steps: 1,
                total_steps: 100,
            },
            max_grad_norm: 10.0,
            ema_decay: 0.9,
        };
        let mut trainer =
            ReaderTrainer::from_encoder(&tiny(), &vae_tensors, settings, &device).unwrap();
        let images = (Tensor::arange(0f32, 2.0 * 3.0 * 16.0 * 16.0, &device)
            .unwrap()
            .reshape((2, 3, 16, 16))
            .unwrap()
            / 1536.0)
            .unwrap();
        let mean = vae.encode(&images).unwrap().mean;
        let read = trainer.reader.forward(&images).unwrap();
        let start_diff: f32 = (&mean - read)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(
            start_diff < 1e-6,
            "reader starts {start_diff} away from the encoder"
        );

        let target = (mean + 0.5).unwrap();
        let first = trainer.step(&images, &target).unwrap().loss;
        let mut last = first;
        for _ in 0..30 {
            last = trainer.step(&images, &target).unwrap().loss;
        }
        assert!(last < 0.5 * first, "loss went from {first} to {last}");
        let names: Vec<String> = trainer.ema.tensors().into_keys().collect();
        assert!(names.iter().all(|n| n.starts_with("latent_reader.")));
    }
}
