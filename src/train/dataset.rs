//! A fixed set of training scenes encoded once to autoencoder latents.
//!
//! Rendering a batch and running the encoder took about a fifth of a
//! diffusion training step; encoding the scenes once and drawing batches
//! from memory removes that. The set is a pure function of the seed, its
//! size and the autoencoder's weights, so it can be rebuilt at any time,
//! and the file that caches it names all three.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use crate::engine::layout::Circle;
use crate::engine::model::images_to_tensor;
use crate::engine::vae::AutoEncoderKl;
use crate::watermark::noise::NoiseStream;
use crate::world::{self, Language, Scene, SceneSampler, Split};

/// Scenes encoded per call of the encoder while building.
const BUILD_BATCH: usize = 64;

/// Training scenes with their scaled latents.
pub struct LatentDataset {
    /// `(count, channels, height, width)`, scaled to unit variance.
    latents: Tensor,
    scenes: Vec<Scene>,
    seed: u64,
}

impl LatentDataset {
    /// Draws `count` training-split scenes from `seed`, in order.
    pub fn scenes(seed: u64, count: usize) -> Vec<Scene> {
        let mut sampler = SceneSampler::new(seed);
        (0..count).map(|_| sampler.sample(Split::Train)).collect()
    }

    /// Renders and encodes `count` scenes to the encoder's posterior mean
    /// times `scaling`. `on_progress` gets the number of scenes done.
    pub fn build(
        vae: &AutoEncoderKl,
        scaling: f64,
        image_size: usize,
        seed: u64,
        count: usize,
        device: &Device,
        on_progress: &mut dyn FnMut(usize),
    ) -> candle_core::Result<Self> {
        let scenes = Self::scenes(seed, count);
        let mut parts = Vec::new();
        for (index, chunk) in scenes.chunks(BUILD_BATCH).enumerate() {
            let images: Vec<_> = chunk
                .iter()
                .map(|s| world::render(s, image_size as u32))
                .collect();
            let pixels = images_to_tensor(&images, image_size, device)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            parts.push((vae.encode(&pixels)?.mean * scaling)?);
            on_progress((index * BUILD_BATCH + chunk.len()).min(count));
        }
        Ok(Self {
            latents: Tensor::cat(&parts, 0)?,
            scenes,
            seed,
        })
    }

    /// The cache file for this seed and size under `dir`, named after the
    /// autoencoder weights file `vae_weights` as well.
    pub fn cache_path(
        dir: &Path,
        vae_weights: &Path,
        seed: u64,
        count: usize,
    ) -> std::io::Result<PathBuf> {
        let digest = Sha256::digest(std::fs::read(vae_weights)?);
        let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(dir.join(format!("latents-seed{seed}-n{count}-vae{tag}.safetensors")))
    }

    /// Writes the latents (as F16) to `path`.
    pub fn save(&self, path: &Path) -> candle_core::Result<()> {
        let half = self.latents.to_dtype(DType::F16)?;
        candle_core::safetensors::save(&[("latents".to_string(), half)].into(), path)
    }

    /// Reads latents written by [`save`](Self::save) and draws the same
    /// scenes again from `seed`, so their captions and object circles need
    /// no storage of their own.
    pub fn load(path: &Path, seed: u64, device: &Device) -> candle_core::Result<Self> {
        let tensors = candle_core::safetensors::load(path, device)?;
        let Some(latents) = tensors.get("latents") else {
            candle_core::bail!("{} holds no tensor named latents", path.display())
        };
        let latents = latents.to_dtype(DType::F32)?;
        let count = latents.dim(0)?;
        Ok(Self {
            latents,
            scenes: Self::scenes(seed, count),
            seed,
        })
    }

    /// Number of scenes.
    pub fn len(&self) -> usize {
        self.scenes.len()
    }

    /// Whether the set holds no scene.
    pub fn is_empty(&self) -> bool {
        self.scenes.is_empty()
    }

    /// Every latent, `(count, channels, height, width)`.
    pub fn latents(&self) -> &Tensor {
        &self.latents
    }

    /// The batch of training step `step`: `batch` scenes drawn with
    /// replacement by a stream seeded from the set's seed and the step, so
    /// a resumed run sees the same batches. Captions alternate between
    /// English and Chinese.
    pub fn batch(&self, step: usize, batch: usize) -> candle_core::Result<(Tensor, Vec<String>)> {
        let indices = self.indices(step, batch)?;
        let captions = indices
            .iter()
            .enumerate()
            .map(|(i, &index)| {
                let language = if (step + i).is_multiple_of(2) {
                    Language::English
                } else {
                    Language::Chinese
                };
                world::caption(self.scenes[index as usize].spec(), language)
            })
            .collect();
        let index = Tensor::from_vec(indices, batch, self.latents.device())?;
        Ok((self.latents.index_select(&index, 0)?, captions))
    }

    /// Returns the object circles of the scenes in [`batch`](Self::batch)
    /// of the same step and size: each scene's shapes in caption order
    /// (the first named, the one it is related to, then the third).
    pub fn layouts(&self, step: usize, batch: usize) -> candle_core::Result<Vec<Vec<Circle>>> {
        let indices = self.indices(step, batch)?;
        Ok(indices
            .iter()
            .map(|&index| {
                self.scenes[index as usize]
                    .placements
                    .iter()
                    .map(Circle::from)
                    .collect()
            })
            .collect())
    }

    /// Indices of the scenes of step `step`'s batch.
    fn indices(&self, step: usize, batch: usize) -> candle_core::Result<Vec<u32>> {
        if self.is_empty() {
            candle_core::bail!("the latent set is empty")
        }
        let mut rng = NoiseStream::with_domain(b"mmgen latent batches", self.seed ^ step as u64);
        Ok((0..batch)
            .map(|_| rng.next_below(self.len() as u64) as u32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::vae::VaeConfig;
    use candle_nn::{VarBuilder, VarMap};

    fn tiny_vae() -> AutoEncoderKl {
        let config = VaeConfig {
            in_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![8, 8],
            layers_per_block: 1,
            norm_num_groups: 4,
            scaling_factor: 1.0,
        };
        let map = VarMap::new();
        AutoEncoderKl::new(
            &config,
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        )
        .unwrap()
    }

    #[test]
    fn saved_set_loads_with_the_same_batches() {
        let vae = tiny_vae();
        let mut done = 0;
        let set =
            LatentDataset::build(&vae, 2.0, 16, 5, 70, &Device::Cpu, &mut |n| done = n).unwrap();
        assert_eq!(done, 70);
        assert_eq!(set.latents().dims(), &[70, 4, 8, 8]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.safetensors");
        set.save(&path).unwrap();
        let loaded = LatentDataset::load(&path, 5, &Device::Cpu).unwrap();
        let (a, captions_a) = set.batch(3, 8).unwrap();
        let (b, captions_b) = loaded.batch(3, 8).unwrap();
        assert_eq!(captions_a, captions_b);
        let diff: f32 = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        // F16 storage rounds to about three decimal digits.
        assert!(diff < 1e-2, "loaded latents differ by {diff}");
    }

    #[test]
    fn layouts_match_captions_of_the_batch() {
        let vae = tiny_vae();
        let set = LatentDataset::build(&vae, 1.0, 16, 7, 60, &Device::Cpu, &mut |_| {}).unwrap();
        let (_, captions) = set.batch(4, 40).unwrap();
        let layouts = set.layouts(4, 40).unwrap();
        assert_eq!(layouts.len(), 40);
        let mut related = 0;
        for (caption, circles) in captions.iter().zip(&layouts) {
            // English captions start each object with "a". Chinese ones
            // name the related object after 在 without a 一个 of its own.
            let objects = if caption.starts_with("a ") {
                1 + caption.matches(" a ").count()
            } else {
                caption.matches("一个").count() + usize::from(caption.contains('在'))
            };
            assert_eq!(circles.len(), objects, "{caption}");
            if circles.len() < 2 {
                continue;
            }
            related += 1;
            let (first, second) = (circles[0], circles[1]);
            let has = |english: &str, chinese: &str| {
                caption.contains(english) || caption.contains(chinese)
            };
            if has("left of", "左边") {
                assert!(first.x < second.x, "{caption}: {circles:?}");
            } else if has("right of", "右边") {
                assert!(first.x > second.x, "{caption}: {circles:?}");
            } else if has("above", "上方") {
                assert!(first.y < second.y, "{caption}: {circles:?}");
            } else if has("below", "下方") {
                assert!(first.y > second.y, "{caption}: {circles:?}");
            } else {
                panic!("no relation word in {caption}");
            }
        }
        assert!(related >= 10, "only {related} relations checked");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.safetensors");
        set.save(&path).unwrap();
        let loaded = LatentDataset::load(&path, 7, &Device::Cpu).unwrap();
        assert_eq!(loaded.layouts(4, 40).unwrap(), layouts);
    }

    #[test]
    fn batches_differ_between_steps() {
        let vae = tiny_vae();
        let set = LatentDataset::build(&vae, 1.0, 16, 1, 40, &Device::Cpu, &mut |_| {}).unwrap();
        let (_, first) = set.batch(0, 6).unwrap();
        let (_, second) = set.batch(1, 6).unwrap();
        assert_ne!(first, second);
    }
}
