//! Training step of the text encoder and UNet on frozen-autoencoder
//! latents: velocity (or noise) regression at uniformly drawn timesteps,
//! with the caption dropped for classifier-free guidance.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use super::StepStats;
use super::optim::{AdamW, Ema, LrSchedule};
use crate::engine::clip::{TextEncoder, TextEncoderConfig};
use crate::engine::init::SeededInit;
use crate::engine::schedule::{NoiseSchedule, PredictionType};
use crate::engine::tokenizer::Tokenizer;
use crate::engine::unet::{UNet, UNetConfig};
use crate::watermark::noise::NoiseStream;

/// Settings of a diffusion run.
#[derive(Debug, Clone, Copy)]
pub struct DiffusionTraining {
    /// Probability of replacing a caption with the empty prompt.
    pub caption_dropout: f64,
    /// What the UNet learns to predict.
    pub prediction: PredictionType,
    /// Learning-rate schedule.
    pub lr: LrSchedule,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Global gradient norm limit.
    pub max_grad_norm: f64,
    /// Decay of the weights' moving average.
    pub ema_decay: f64,
}

/// A text encoder and UNet being trained together.
pub struct DiffusionTrainer {
    /// The text encoder (variables under `text_model.`).
    pub text_encoder: TextEncoder,
    /// The UNet (variables under `unet.`).
    pub unet: UNet,
    /// Every trainable variable.
    pub varmap: VarMap,
    /// The optimiser.
    pub adam: AdamW,
    /// Moving average of the weights.
    pub ema: Ema,
    tokenizer: Tokenizer,
    schedule: NoiseSchedule,
    settings: DiffusionTraining,
    seed: u64,
}

impl DiffusionTrainer {
    /// Initialises fresh networks from `seed`.
    pub fn new(
        text: &TextEncoderConfig,
        unet: &UNetConfig,
        tokenizer: Tokenizer,
        schedule: NoiseSchedule,
        settings: DiffusionTraining,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let varmap = VarMap::new();
        let vb = SeededInit::var_builder(&varmap, seed, device);
        let text_encoder = TextEncoder::new(text, vb.clone())?;
        let unet = UNet::new(unet, vb.pp("unet"))?;
        let adam = AdamW::new(super::named_vars(&varmap)?, settings.weight_decay)?;
        let ema = Ema::new(adam.vars(), settings.ema_decay)?;
        Ok(Self {
            text_encoder,
            unet,
            varmap,
            adam,
            ema,
            tokenizer,
            schedule,
            settings,
            seed,
        })
    }

    /// One optimisation step on clean scaled latents `(batch, c, h, w)`
    /// with one caption each.
    pub fn step<S: AsRef<str>>(
        &mut self,
        latents: &Tensor,
        captions: &[S],
    ) -> candle_core::Result<StepStats> {
        let step = self.adam.steps_done();
        let device = latents.device();
        let batch = latents.dim(0)?;
        let mut rng = NoiseStream::with_domain(b"mmgen train diffusion", self.seed ^ step as u64);

        // 1. Captions, some dropped to the empty prompt.
        let ids: Vec<u32> = captions
            .iter()
            .flat_map(|c| {
                let text = if rng.next_uniform() < self.settings.caption_dropout {
                    ""
                } else {
                    c.as_ref()
                };
                self.tokenizer.encode(text).ids
            })
            .collect();
        let ids = Tensor::from_vec(ids, (batch, self.tokenizer.max_len()), device)?;

        // 2. Timesteps and noise.
        let steps = self.schedule.train_steps() as u64;
        let timesteps: Vec<usize> = (0..batch).map(|_| rng.next_below(steps) as usize).collect();
        let signal: Vec<f32> = timesteps
            .iter()
            .map(|&t| self.schedule.alpha_bar(t).sqrt() as f32)
            .collect();
        let sigma: Vec<f32> = timesteps
            .iter()
            .map(|&t| (1.0 - self.schedule.alpha_bar(t)).sqrt() as f32)
            .collect();
        let signal = Tensor::from_vec(signal, (batch, 1, 1, 1), device)?;
        let sigma = Tensor::from_vec(sigma, (batch, 1, 1, 1), device)?;
        let noise = super::normal_like(latents, &mut rng)?;
        let noisy = (latents.broadcast_mul(&signal)? + noise.broadcast_mul(&sigma)?)?;
        let target = match self.settings.prediction {
            PredictionType::Epsilon => noise.clone(),
            PredictionType::VPrediction => {
                (noise.broadcast_mul(&signal)? - latents.broadcast_mul(&sigma)?)?
            }
        };

        // 3. Forward, loss, update.
        let t = Tensor::from_vec(
            timesteps.iter().map(|&t| t as f32).collect::<Vec<_>>(),
            batch,
            device,
        )?;
        let context = self.text_encoder.forward(&ids)?;
        let output = self.unet.forward(&noisy, &t, &context)?;
        let loss = (output - target)?.sqr()?.mean_all()?;
        let mut grads = loss.backward()?;
        let grad_norm = self
            .adam
            .clip_gradients(&mut grads, self.settings.max_grad_norm)?;
        let lr = self.settings.lr.at(step);
        self.adam.step(&grads, lr)?;
        self.ema.update(self.adam.vars(), step)?;
        Ok(StepStats {
            step: step + 1,
            loss: loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
            parts: Vec::new(),
            grad_norm,
            lr,
        })
    }
}
