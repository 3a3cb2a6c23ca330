//! Training step of the latent reader: from a distorted decoded image back
//! to the latent it was decoded from.
//!
//! The autoencoder's own encoder was trained on clean scenes only, so after
//! JPEG, resizing or a brightness change its latents drift, and DDIM
//! inversion amplifies that drift into lost watermark signs. The reader
//! starts as a copy of that encoder and learns, by squared error on the
//! latent, to undo the distortions that `watermark::attack` draws.
//!
//! Some training images are also cropped or rotated and then undone the
//! way a scan undoes them (`watermark::scan::undo`): shrunk back into
//! place with a mirrored border, or rotated back. The loss then counts only
//! the latent cells that the undone image still covers, as detection does.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use image::RgbImage;

use super::StepStats;
use super::optim::{AdamW, Ema, LrSchedule};
use crate::engine::init::SeededInit;
use crate::engine::vae::{LatentReader, VaeConfig};
use crate::watermark::attack::{Attack, random_training_attack};
use crate::watermark::noise::NoiseStream;
use crate::watermark::scan::{Hypothesis, undo};

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
    /// then distorted. `covered`, shaped like `latents`, is 1 where an
    /// element's cell is still in the image and 0 where it is not. The loss
    /// is the mean squared error over the covered elements.
    pub fn step(
        &mut self,
        images: &Tensor,
        latents: &Tensor,
        covered: &Tensor,
    ) -> candle_core::Result<StepStats> {
        let step = self.adam.steps_done();
        let read = self.reader.forward(images)?;
        let count = covered.sum_all()?.to_scalar::<f32>()?.max(1.0);
        let loss = ((read - latents)?.sqr()? * covered)?
            .sum_all()?
            .affine(1.0 / f64::from(count), 0.0)?;
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

/// How often each kind of distortion is drawn for reader training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistortionMix {
    /// Share of images given a random photometric or compression change.
    pub distorted: f64,
    /// Share of images also cropped or rotated and then undone.
    pub geometric: f64,
}

/// Distorts one decoded training image for the reader. Returns the image
/// the reader should read and, per element of a latent of
/// `latent_shape`, whether that element's cell is still covered.
///
/// A geometric draw is a centre crop keeping 0.55 to 0.9 of the edge (three
/// times in four) or a rotation of 2 to 12 degrees either way. It may come
/// after a photometric change (with the share `distorted`) and be followed
/// by another (with half that share), as in a crop of a re-encoded and then
/// darkened copy. It is then undone with its own exact size or angle.
pub fn distort_for_reader(
    image: &RgbImage,
    mix: DistortionMix,
    latent_shape: (usize, usize, usize),
    rng: &mut NoiseStream,
) -> (RgbImage, Vec<bool>) {
    let (channels, rows, cols) = latent_shape;
    let mut out = if rng.next_uniform() < mix.distorted {
        random_training_attack(rng).apply(image, rng)
    } else {
        image.clone()
    };
    // No draw at all when geometric changes are off, so that such a run
    // gets the same images as one made before they existed.
    if mix.geometric <= 0.0 || rng.next_uniform() >= mix.geometric {
        return (out, vec![true; channels * rows * cols]);
    }
    let (attack, hypothesis) = if rng.next_uniform() < 0.75 {
        let share = (0.55 + 0.35 * rng.next_uniform()) as f32;
        (Attack::CentreCrop(share), Hypothesis::CentreCrop(share))
    } else {
        let magnitude = 2.0 + 10.0 * rng.next_uniform();
        let degrees = if rng.next_uniform() < 0.5 {
            magnitude
        } else {
            -magnitude
        } as f32;
        (Attack::Rotate(degrees), Hypothesis::Rotation(degrees))
    };
    out = attack.apply(&out, rng);
    if rng.next_uniform() < 0.5 * mix.distorted {
        out = random_training_attack(rng).apply(&out, rng);
    }
    undo(&out, hypothesis, latent_shape)
}

/// Stacks per-image coverage flags into a `(batch, channels, rows, cols)`
/// tensor of ones and zeros for [`ReaderTrainer::step`].
pub fn coverage_tensor(
    covered: &[Vec<bool>],
    latent_shape: (usize, usize, usize),
    device: &Device,
) -> candle_core::Result<Tensor> {
    let (channels, rows, cols) = latent_shape;
    let values: Vec<f32> = covered
        .iter()
        .flat_map(|flags| flags.iter().map(|&on| if on { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (covered.len(), channels, rows, cols), device)
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

    /// Builds a seeded tiny autoencoder and its tensors by name.
    fn tiny_vae(device: &Device) -> (AutoEncoderKl, HashMap<String, Tensor>) {
        let vae_map = VarMap::new();
        let vae = AutoEncoderKl::new(
            &tiny(),
            SeededInit::var_builder(&vae_map, 3, device).pp("vae"),
        )
        .unwrap();
        let tensors = super::super::named_vars(&vae_map)
            .unwrap()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        (vae, tensors)
    }

    #[test]
    fn reader_starts_as_the_encoder_and_learns() {
        let device = Device::Cpu;
        let (vae, vae_tensors) = tiny_vae(&device);
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
        let all = target.ones_like().unwrap();
        let first = trainer.step(&images, &target, &all).unwrap().loss;
        let mut last = first;
        for _ in 0..30 {
            last = trainer.step(&images, &target, &all).unwrap().loss;
        }
        assert!(last < 0.5 * first, "loss went from {first} to {last}");
        let names: Vec<String> = trainer.ema.tensors().into_keys().collect();
        assert!(names.iter().all(|n| n.starts_with("latent_reader.")));
    }

    fn smooth() -> RgbImage {
        RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
        })
    }

    #[test]
    fn clean_draw_leaves_image_and_coverage_whole() {
        let mut rng = NoiseStream::new(5);
        let mix = DistortionMix {
            distorted: 0.0,
            geometric: 0.0,
        };
        let (out, covered) = distort_for_reader(&smooth(), mix, (4, 8, 8), &mut rng);
        assert_eq!(out, smooth());
        assert_eq!(covered.len(), 256);
        assert!(covered.iter().all(|&c| c));
    }

    #[test]
    fn geometric_draws_are_undone_and_cover_less() {
        let mix = DistortionMix {
            distorted: 0.0,
            geometric: 1.0,
        };
        let original = smooth();
        for seed in 0..12 {
            let mut rng = NoiseStream::new(seed);
            let (out, covered) = distort_for_reader(&original, mix, (4, 8, 8), &mut rng);
            let kept = covered.iter().filter(|&&c| c).count();
            assert!(kept > 0, "seed {seed}: no cell covered");
            assert!(kept < 256, "seed {seed}: every cell covered");
            // Undone, each covered cell shows roughly what it showed before.
            let mut worst = 0f32;
            for (index, _) in covered.iter().enumerate().filter(|(_, c)| **c) {
                let (row, col) = ((index / 8) % 8, index % 8);
                let (x, y) = (col as u32 * 8 + 4, row as u32 * 8 + 4);
                let (a, b) = (out.get_pixel(x, y), original.get_pixel(x, y));
                for c in 0..3 {
                    worst = worst.max((a.0[c] as f32 - b.0[c] as f32).abs());
                }
            }
            assert!(
                worst < 24.0,
                "seed {seed}: a covered cell is {worst} levels off"
            );
        }
    }

    #[test]
    fn uncovered_elements_do_not_count_in_the_loss() {
        let device = Device::Cpu;
        let (_, vae_tensors) = tiny_vae(&device);

        let settings = ReaderTraining {
            lr: LrSchedule {
                peak: 1e-3,
                floor: 1e-3,
                warmup_steps: 1,
                total_steps: 10,
            },
            max_grad_norm: 10.0,
            ema_decay: 0.9,
        };

        let images = Tensor::zeros((1, 3, 16, 16), DType::F32, &device).unwrap();
        let target = Tensor::zeros((1, 4, 8, 8), DType::F32, &device).unwrap();
        let flags: Vec<bool> = (0..256).map(|i| i % 4 < 2).collect();
        let covered = coverage_tensor(&[flags], (4, 8, 8), &device).unwrap();
        // Far off only where nothing is covered.
        let off = ((covered.ones_like().unwrap() - &covered).unwrap() * 100.0).unwrap();

        let mut loss = Vec::new();
        for target in [target.clone(), (target + off).unwrap()] {
            let mut trainer =
                ReaderTrainer::from_encoder(&tiny(), &vae_tensors, settings, &device).unwrap();
            loss.push(trainer.step(&images, &target, &covered).unwrap().loss);
        }
        assert!(loss[0] > 0.0);
        assert!((loss[0] - loss[1]).abs() < 1e-6, "losses {loss:?}");
    }
}
