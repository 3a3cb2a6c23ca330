//! Training step of the text encoder and UNet on frozen-autoencoder
//! latents: velocity (or noise) regression at uniformly drawn timesteps,
//! with the caption dropped for classifier-free guidance.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use super::StepStats;
use super::optim::{AdamW, Ema, LrSchedule};
use crate::engine::clip::{TextEncoder, TextEncoderConfig};
use crate::engine::init::SeededInit;
use crate::engine::layout::{Circle, layout_maps};
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
    /// Share of examples whose timestep is drawn from
    /// `noisy_from..train_steps`, the noisiest steps, where an image's
    /// layout is decided. The rest are drawn from every step. At 0 the
    /// random stream is the one the built-in model was trained with.
    pub noisy_share: f64,
    /// First timestep of the noisiest part; see `noisy_share`.
    pub noisy_from: usize,
    /// Probability of zeroing the layout of an example that keeps its
    /// caption, so the model still samples from text alone. Examples whose
    /// caption is dropped always lose their layout too. Used only when the
    /// UNet has layout channels.
    pub layout_dropout: f64,
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

    /// Replaces the fresh weights with `tensors` (named as exported, e.g.
    /// `unet.conv_in.weight`) and restarts the moving average from them.
    /// A convolution that now takes more input channels than the saved one
    /// gets zeros for the new channels, so a UNet widened with coordinate
    /// or layout channels starts out computing what the saved one
    /// computed. Returns the number of variables set.
    pub fn start_from(&mut self, tensors: &HashMap<String, Tensor>) -> candle_core::Result<usize> {
        let mut set = 0;
        for (name, var) in self.adam.vars() {
            let Some(saved) = tensors.get(name) else {
                candle_core::bail!(
                    "starting weights: tensor {name} is missing; export them from a model of the same shape"
                )
            };
            let saved = saved.to_dtype(var.dtype())?.to_device(var.device())?;
            let value = widen_inputs(&saved, var.dims())
                .map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?;
            var.set(&value)?;
            set += 1;
        }
        self.ema = Ema::new(self.adam.vars(), self.settings.ema_decay)?;
        Ok(set)
    }

    /// One optimisation step on clean scaled latents `(batch, c, h, w)`
    /// with one caption each.
    pub fn step<S: AsRef<str>>(
        &mut self,
        latents: &Tensor,
        captions: &[S],
    ) -> candle_core::Result<StepStats> {
        self.step_with_layouts(latents, captions, None)
    }

    /// Like [`step`](Self::step), with each example's object circles in
    /// caption order for a UNet with layout channels. Without `layouts`,
    /// such a UNet trains on zero layouts.
    pub fn step_with_layouts<S: AsRef<str>>(
        &mut self,
        latents: &Tensor,
        captions: &[S],
        layouts: Option<&[Vec<Circle>]>,
    ) -> candle_core::Result<StepStats> {
        let step = self.adam.steps_done();
        let device = latents.device();
        let batch = latents.dim(0)?;
        let mut rng = NoiseStream::with_domain(b"mmgen train diffusion", self.seed ^ step as u64);
        let layout_channels = self.unet.config().layout_channels;
        if let Some(layouts) = layouts {
            if layout_channels == 0 {
                candle_core::bail!(
                    "layouts were passed but the UNet has no layout channels; \
                     train with --layout-channels or pass no layouts"
                )
            }
            if layouts.len() != batch {
                candle_core::bail!(
                    "{batch} latents but {} layouts; pass one layout per latent",
                    layouts.len()
                )
            }
        }

        // 1. Captions, some dropped to the empty prompt. All caption draws
        // come before any layout draw, so a run without layout channels
        // draws the same stream as builds that had none.
        let dropped: Vec<bool> = (0..captions.len())
            .map(|_| rng.next_uniform() < self.settings.caption_dropout)
            .collect();
        let ids: Vec<u32> = captions
            .iter()
            .zip(&dropped)
            .flat_map(|(c, &dropped)| {
                let text = if dropped { "" } else { c.as_ref() };
                self.tokenizer.encode(text).ids
            })
            .collect();
        let ids = Tensor::from_vec(ids, (batch, self.tokenizer.max_len()), device)?;

        // Layouts, zeroed with the caption or on their own.
        let layout = if layout_channels > 0 {
            let kept: Vec<Vec<Circle>> = dropped
                .iter()
                .enumerate()
                .map(|(i, &dropped)| {
                    let keep = !dropped && rng.next_uniform() >= self.settings.layout_dropout;
                    match layouts {
                        Some(layouts) if keep => layouts[i].clone(),
                        _ => Vec::new(),
                    }
                })
                .collect();
            let (_, _, height, width) = latents.dims4()?;
            let maps = layout_maps(&kept, layout_channels, (height, width))
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            Some(maps.to_device(device)?.to_dtype(latents.dtype())?)
        } else {
            None
        };

        // 2. Timesteps and noise.
        let steps = self.schedule.train_steps() as u64;
        let timesteps = draw_timesteps(&mut rng, batch, steps, &self.settings);
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
        let output = self
            .unet
            .forward_with_layout(&noisy, &t, &context, None, layout.as_ref())?;
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

/// Draws `batch` training timesteps below `steps`: a share
/// `settings.noisy_share` from `settings.noisy_from` on, the rest from
/// every step.
fn draw_timesteps(
    rng: &mut NoiseStream,
    batch: usize,
    steps: u64,
    settings: &DiffusionTraining,
) -> Vec<usize> {
    let noisy_from = (settings.noisy_from as u64).min(steps - 1);
    (0..batch)
        .map(|_| {
            let noisy = settings.noisy_share > 0.0 && rng.next_uniform() < settings.noisy_share;
            if noisy {
                (noisy_from + rng.next_below(steps - noisy_from)) as usize
            } else {
                rng.next_below(steps) as usize
            }
        })
        .collect()
}

/// `saved` as a tensor of shape `target`: unchanged when the shapes agree,
/// or a 4-D convolution weight padded with zeros along its input channels.
fn widen_inputs(saved: &Tensor, target: &[usize]) -> candle_core::Result<Tensor> {
    let dims = saved.dims();
    if dims == target {
        return Ok(saved.clone());
    }
    let widens = dims.len() == 4
        && target.len() == 4
        && dims[0] == target[0]
        && dims[2..] == target[2..]
        && dims[1] < target[1];
    if !widens {
        candle_core::bail!(
            "saved shape {dims:?} does not fit {target:?}; start from a model of the same shape"
        )
    }
    let extra = Tensor::zeros(
        (dims[0], target[1] - dims[1], dims[2], dims[3]),
        saved.dtype(),
        saved.device(),
    )?;
    Tensor::cat(&[saved, &extra], 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::tests::max_abs_diff;
    use crate::engine::tokenizer::Tokenizer;

    fn trainer(coordinates: bool, layout_channels: usize) -> DiffusionTrainer {
        let text = TextEncoderConfig {
            vocab_size: 12,
            max_position_embeddings: 6,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            layer_norm_eps: 1e-5,
            causal: false,
        };
        let unet = UNetConfig {
            in_channels: 4,
            block_out_channels: vec![8, 8],
            cross_attention: vec![true, false],
            layers_per_block: 1,
            cross_attention_dim: 8,
            attention_heads: 2,
            norm_num_groups: 4,
            coordinate_channels: coordinates,
            layout_channels,
        };
        let tokenizer = Tokenizer::new(&["red".to_string(), "circle".to_string()], 6);
        let settings = DiffusionTraining {
            caption_dropout: 0.1,
            prediction: PredictionType::VPrediction,
            lr: LrSchedule {
                peak: 1e-3,
                floor: 1e-4,
                warmup_steps: 1,
                total_steps: 10,
            },
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            ema_decay: 0.999,
            noisy_share: 0.0,
            noisy_from: 0,
            layout_dropout: 0.1,
        };
        let schedule = NoiseSchedule::cosine(100);
        DiffusionTrainer::new(&text, &unet, tokenizer, schedule, settings, 3, &Device::Cpu).unwrap()
    }

    fn predict(trainer: &DiffusionTrainer) -> Tensor {
        predict_with_layout(trainer, None)
    }

    fn predict_with_layout(trainer: &DiffusionTrainer, layout: Option<&Tensor>) -> Tensor {
        let device = Device::Cpu;
        let latents = Tensor::arange(0f32, 256.0, &device)
            .unwrap()
            .affine(0.01, -1.0)
            .unwrap()
            .reshape((1, 4, 8, 8))
            .unwrap();
        let ids = Tensor::new(&[[1u32, 4, 5, 2, 0, 0]], &device).unwrap();
        let t = Tensor::new(&[300f32], &device).unwrap();
        let context = trainer.text_encoder.forward(&ids).unwrap();
        trainer
            .unet
            .forward_with_layout(&latents, &t, &context, None, layout)
            .unwrap()
    }

    fn saved_weights(trainer: &DiffusionTrainer) -> HashMap<String, Tensor> {
        trainer
            .adam
            .vars()
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().copy().unwrap()))
            .collect()
    }

    #[test]
    fn layout_widened_unet_keeps_saved_output() {
        let plain = trainer(false, 0);
        let saved = saved_weights(&plain);
        let mut widened = trainer(true, 3);
        let layouts = vec![vec![
            Circle {
                y: 0.3,
                x: 0.3,
                radius: 0.2,
            },
            Circle {
                y: 0.7,
                x: 0.6,
                radius: 0.15,
            },
        ]];
        let layout = layout_maps(&layouts, 3, (8, 8)).unwrap();
        let before = predict_with_layout(&widened, Some(&layout));

        assert_eq!(widened.start_from(&saved).unwrap(), saved.len());
        let expected = predict(&plain);
        let with_layout = predict_with_layout(&widened, Some(&layout));
        let without_layout = predict(&widened);
        assert!(
            max_abs_diff(&with_layout, &expected) < 1e-5,
            "zero weights on the layout moved the output"
        );
        assert!(max_abs_diff(&without_layout, &expected) < 1e-5);
        assert!(
            max_abs_diff(&before, &expected) > 1e-3,
            "fresh weights already matched"
        );
        let averaged = &widened.ema.tensors()["unet.conv_in.weight"];
        assert_eq!(averaged.dims(), &[8, 9, 3, 3]);
    }

    #[test]
    fn layout_step_trains_new_weights() {
        let plain = trainer(false, 0);
        let saved = saved_weights(&plain);
        let mut widened = trainer(false, 3);
        widened.start_from(&saved).unwrap();
        let device = Device::Cpu;
        let latents = Tensor::arange(0f32, 512.0, &device)
            .unwrap()
            .affine(0.004, -1.0)
            .unwrap()
            .reshape((2, 4, 8, 8))
            .unwrap();
        let circle = Circle {
            y: 0.5,
            x: 0.5,
            radius: 0.3,
        };
        let layouts = vec![vec![circle], vec![circle, circle]];
        widened
            .step_with_layouts(&latents, &["red circle", "circle"], Some(&layouts))
            .unwrap();
        let weight = widened.varmap.data().lock().unwrap()["unet.conv_in.weight"]
            .as_tensor()
            .clone();
        let layout_part = weight.narrow(1, 4, 3).unwrap();
        let moved: f32 = layout_part
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(moved > 0.0, "the layout weights got no update");

        let err = widened
            .step_with_layouts(&latents, &["red circle", "circle"], Some(&layouts[..1]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 latents but 1 layouts"), "{err}");
        let mut plain = trainer(false, 0);
        let err = plain
            .step_with_layouts(&latents, &["red circle", "circle"], Some(&layouts))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no layout channels"), "{err}");
    }

    #[test]
    fn widened_unet_keeps_saved_output() {
        let plain = trainer(false, 0);
        let saved: HashMap<String, Tensor> = plain
            .adam
            .vars()
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().copy().unwrap()))
            .collect();
        let mut widened = trainer(true, 0);
        let before = predict(&widened);
        assert_eq!(widened.start_from(&saved).unwrap(), saved.len());
        let after = predict(&widened);
        let expected = predict(&plain);
        assert!(
            max_abs_diff(&after, &expected) < 1e-5,
            "widened output moved"
        );
        assert!(
            max_abs_diff(&before, &expected) > 1e-3,
            "fresh weights already matched"
        );
        let averaged = &widened.ema.tensors()["unet.conv_in.weight"];
        assert_eq!(averaged.dims(), &[8, 6, 3, 3]);
    }

    #[test]
    fn noisy_share_moves_timesteps_up() {
        let mut settings = trainer(false, 0).settings;
        let mut uniform = NoiseStream::with_domain(b"timesteps", 9);
        let plain = draw_timesteps(&mut uniform, 400, 1000, &settings);
        let mut reference = NoiseStream::with_domain(b"timesteps", 9);
        let expected: Vec<usize> = (0..400)
            .map(|_| reference.next_below(1000) as usize)
            .collect();
        assert_eq!(plain, expected, "share 0 must keep the uniform stream");

        settings.noisy_share = 1.0;
        settings.noisy_from = 600;
        let mut rng = NoiseStream::with_domain(b"timesteps", 9);
        let noisy = draw_timesteps(&mut rng, 400, 1000, &settings);
        assert!(noisy.iter().all(|&t| (600..1000).contains(&t)), "{noisy:?}");

        settings.noisy_share = 0.5;
        let mut rng = NoiseStream::with_domain(b"timesteps", 9);
        let mixed = draw_timesteps(&mut rng, 400, 1000, &settings);
        let high = mixed.iter().filter(|&&t| t >= 600).count();
        // Expected share 0.5 + 0.5 * 0.4 = 0.7 of 400, with a standard deviation of about 9.
        assert!((240..320).contains(&high), "{high} of 400 at or above 600");
    }

    #[test]
    fn start_from_names_bad_tensor() {
        let mut target = trainer(false, 0);
        let err = target.start_from(&HashMap::new()).unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");
        let mut saved: HashMap<String, Tensor> = target
            .adam
            .vars()
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().copy().unwrap()))
            .collect();
        saved.insert(
            "unet.conv_out.weight".into(),
            Tensor::zeros((5, 8, 3, 3), DType::F32, &Device::Cpu).unwrap(),
        );
        let err = target.start_from(&saved).unwrap_err().to_string();
        assert!(err.contains("unet.conv_out.weight"), "{err}");
    }
}
