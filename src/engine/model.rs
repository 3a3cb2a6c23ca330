//! A complete text-to-image model: tokenizer, text encoder, UNet, VAE and
//! noise schedule, loaded together from one configuration and one
//! safetensors file.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layout::LayoutGuidance;

use super::EngineError;
use super::clip::{TextEncoder, TextEncoderConfig};
use super::schedule::{NoiseSchedule, PredictionType};
use super::tokenizer::{Encoding, Tokenizer};
use super::unet::{UNet, UNetConfig};
use super::vae::{AutoEncoderKl, LatentReader, VaeConfig};

/// Everything that defines a model besides its weights; stored as
/// `config.json` next to `model.safetensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Model name recorded in the ledger and the manifest.
    pub name: String,
    /// Edge of the square images the model makes, in pixels.
    pub image_size: usize,
    /// The text encoder.
    pub text_encoder: TextEncoderConfig,
    /// The denoising UNet.
    pub unet: UNetConfig,
    /// The autoencoder.
    pub vae: VaeConfig,
    /// Tokenizer words in id order after the four special tokens.
    pub vocabulary: Vec<String>,
    /// Discrete steps of the training schedule (cosine).
    pub train_steps: usize,
    /// What the UNet predicts.
    pub prediction_type: PredictionType,
    /// Sampling steps when the caller gives none.
    pub default_steps: usize,
    /// Classifier-free guidance scale when the caller gives none.
    pub default_guidance: f64,
    /// Whether the weights include a latent reader (tensors under
    /// `latent_reader.`) for watermark detection; without one, detection
    /// reads latents with the autoencoder's encoder.
    #[serde(default)]
    pub latent_reader: bool,
    /// DDIM inversion steps of watermark detection when the caller gives
    /// none. When absent, detection uses the sampling steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inversion_steps: Option<usize>,
    /// Layout guidance for prompts that read as scenes of the procedural
    /// world (see `engine::layout`). When absent, sampling uses the prompt
    /// text alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout_guidance: Option<LayoutGuidance>,
}

impl ModelConfig {
    /// Shape `(channels, height, width)` of one latent.
    pub fn latent_shape(&self) -> (usize, usize, usize) {
        let edge = self.image_size / self.vae.downscale();
        (self.vae.latent_channels, edge, edge)
    }

    /// Returns the DDIM inversion steps of watermark detection by default.
    pub fn detection_steps(&self) -> usize {
        self.inversion_steps.unwrap_or(self.default_steps)
    }

    /// Number of elements of one latent.
    pub fn latent_len(&self) -> usize {
        let (c, h, w) = self.latent_shape();
        c * h * w
    }

    /// The tokenizer this configuration describes.
    pub fn tokenizer(&self) -> Tokenizer {
        Tokenizer::new(&self.vocabulary, self.text_encoder.max_position_embeddings)
    }
}

/// A loaded model, ready to sample, encode, decode and invert.
pub struct Model {
    pub(crate) config: ModelConfig,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) text_encoder: TextEncoder,
    pub(crate) unet: UNet,
    pub(crate) vae: AutoEncoderKl,
    pub(crate) reader: Option<LatentReader>,
    pub(crate) schedule: NoiseSchedule,
    pub(crate) device: Device,
    weights_sha256: [u8; 32],
}

impl Model {
    /// Loads a model from its configuration and safetensors bytes. The
    /// weights' SHA-256 is taken over exactly these bytes.
    pub fn from_bytes(
        config: ModelConfig,
        weights: Vec<u8>,
        device: &Device,
    ) -> Result<Self, EngineError> {
        let weights_sha256: [u8; 32] = Sha256::digest(&weights).into();
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, device)
            .map_err(|source| EngineError::candle("reading the model weights", source))?;
        let mut model = Self::from_var_builder(config, vb, device)?;
        model.weights_sha256 = weights_sha256;
        Ok(model)
    }

    /// Loads `config.json` and `model.safetensors` from a directory.
    pub fn from_dir(dir: &Path) -> Result<Self, EngineError> {
        let config_path = dir.join("config.json");
        let weights_path = dir.join("model.safetensors");
        let config_bytes = std::fs::read(&config_path).map_err(|source| EngineError::Io {
            path: config_path.clone(),
            source,
        })?;
        let config =
            serde_json::from_slice(&config_bytes).map_err(|source| EngineError::Config {
                path: config_path.display().to_string(),
                source,
            })?;
        let weights = std::fs::read(&weights_path).map_err(|source| EngineError::Io {
            path: weights_path,
            source,
        })?;
        Self::from_bytes(config, weights, &Device::Cpu)
    }

    /// Builds a model from any variable source (a training `VarMap`, for
    /// instance). Its weights hash is zero until saved and reloaded.
    pub fn from_var_builder(
        config: ModelConfig,
        vb: VarBuilder,
        device: &Device,
    ) -> Result<Self, EngineError> {
        let tokenizer = config.tokenizer();
        if tokenizer.vocab_size() > config.text_encoder.vocab_size {
            return Err(EngineError::InvalidConfig(format!(
                "vocabulary has {} tokens but the text encoder only {}",
                tokenizer.vocab_size(),
                config.text_encoder.vocab_size
            )));
        }
        let build = |what: &'static str| move |source| EngineError::candle(what, source);
        let text_encoder = TextEncoder::new(&config.text_encoder, vb.clone())
            .map_err(build("loading the text encoder"))?;
        let unet = UNet::new(&config.unet, vb.pp("unet")).map_err(build("loading the UNet"))?;
        let vae =
            AutoEncoderKl::new(&config.vae, vb.pp("vae")).map_err(build("loading the VAE"))?;
        let reader = if config.latent_reader {
            Some(
                LatentReader::new(&config.vae, vb.pp("latent_reader"))
                    .map_err(build("loading the latent reader"))?,
            )
        } else {
            None
        };
        Ok(Self {
            reader,
            schedule: NoiseSchedule::cosine(config.train_steps),
            tokenizer,
            text_encoder,
            unet,
            vae,
            config,
            device: device.clone(),
            weights_sha256: [0; 32],
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Replaces the layout guidance of the configuration, for experiments
    /// that compare settings on one set of weights.
    pub fn set_layout_guidance(
        &mut self,
        guidance: Option<LayoutGuidance>,
    ) -> Result<(), EngineError> {
        if let Some(guidance) = &guidance {
            guidance.validate()?;
        }
        self.config.layout_guidance = guidance;
        Ok(())
    }

    /// SHA-256 of the safetensors file the weights came from.
    pub fn weights_sha256(&self) -> [u8; 32] {
        self.weights_sha256
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Tokenizes and encodes prompts to `(batch, len, hidden)`.
    pub fn encode_prompts<S: AsRef<str>>(
        &self,
        prompts: &[S],
    ) -> Result<(Tensor, Vec<Encoding>), EngineError> {
        let encodings: Vec<Encoding> = prompts
            .iter()
            .map(|p| self.tokenizer.encode(p.as_ref()))
            .collect();
        let len = self.tokenizer.max_len();
        let ids: Vec<u32> = encodings
            .iter()
            .flat_map(|e| e.ids.iter().copied())
            .collect();
        let ids = Tensor::from_vec(ids, (prompts.len(), len), &self.device)
            .map_err(|source| EngineError::candle("building token ids", source))?;
        let hidden = self
            .text_encoder
            .forward(&ids)
            .map_err(|source| EngineError::candle("running the text encoder", source))?;
        Ok((hidden, encodings))
    }

    /// Encodes images to scaled latents (the posterior mean times the
    /// scaling factor). Every image must be `image_size` square.
    pub fn encode_images(&self, images: &[RgbImage]) -> Result<Tensor, EngineError> {
        let pixels = images_to_tensor(images, self.config.image_size, &self.device)?;
        let posterior = self
            .vae
            .encode(&pixels)
            .map_err(|source| EngineError::candle("running the VAE encoder", source))?;
        (posterior.mean * self.config.vae.scaling_factor)
            .map_err(|source| EngineError::candle("scaling latents", source))
    }

    /// Reads scaled latents back from images for watermark detection: with
    /// the latent reader when the model has one, else as
    /// [`encode_images`](Self::encode_images). Every image must be
    /// `image_size` square.
    pub fn read_latents(&self, images: &[RgbImage]) -> Result<Tensor, EngineError> {
        let Some(reader) = &self.reader else {
            return self.encode_images(images);
        };
        let pixels = images_to_tensor(images, self.config.image_size, &self.device)?;
        let latents = reader
            .forward(&pixels)
            .map_err(|source| EngineError::candle("running the latent reader", source))?;
        (latents * self.config.vae.scaling_factor)
            .map_err(|source| EngineError::candle("scaling latents", source))
    }

    /// Refines scaled latents `start` so that they decode closer to
    /// `images`: `steps` Adam steps of size `lr` on the squared pixel
    /// error, weighted per pixel by `weights` `(batch, 1, size, size)` when
    /// given. Each image's latent moves on its own error only.
    pub fn fit_latents(
        &self,
        start: &Tensor,
        images: &[RgbImage],
        weights: Option<&Tensor>,
        steps: usize,
        lr: f64,
    ) -> Result<Tensor, EngineError> {
        use candle_nn::Optimizer;
        let err = |source| EngineError::candle("fitting latents to the image", source);
        let scale = self.config.vae.scaling_factor;
        let target = images_to_tensor(images, self.config.image_size, &self.device)?;
        let latent = candle_core::Var::from_tensor(&(start / scale).map_err(err)?).map_err(err)?;
        let params = candle_nn::ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut optimizer = candle_nn::AdamW::new(vec![latent.clone()], params).map_err(err)?;
        for _ in 0..steps {
            let decoded = self.vae.decode(latent.as_tensor()).map_err(err)?;
            let squared = (decoded - &target).and_then(|d| d.sqr()).map_err(err)?;
            let squared = match weights {
                Some(w) => squared.broadcast_mul(w).map_err(err)?,
                None => squared,
            };
            let loss = squared.sum_all().map_err(err)?;
            optimizer.backward_step(&loss).map_err(err)?;
        }
        (latent.as_tensor() * scale).map_err(err)
    }

    /// Whether detection reads latents with a trained latent reader.
    pub fn has_latent_reader(&self) -> bool {
        self.reader.is_some()
    }

    /// Decodes scaled latents to images.
    pub fn decode_latents(&self, latents: &Tensor) -> Result<Vec<RgbImage>, EngineError> {
        let unscaled = (latents / self.config.vae.scaling_factor)
            .map_err(|source| EngineError::candle("scaling latents", source))?;
        let pixels = self
            .vae
            .decode(&unscaled)
            .map_err(|source| EngineError::candle("running the VAE decoder", source))?;
        tensor_to_images(&pixels)
    }
}

/// Converts same-sized RGB images to a `(batch, 3, size, size)` tensor in
/// [-1, 1].
pub fn images_to_tensor(
    images: &[RgbImage],
    size: usize,
    device: &Device,
) -> Result<Tensor, EngineError> {
    let mut data = Vec::with_capacity(images.len() * 3 * size * size);
    for image in images {
        if image.width() as usize != size || image.height() as usize != size {
            return Err(EngineError::ImageSize {
                width: image.width(),
                height: image.height(),
                expected: size,
            });
        }
        for channel in 0..3 {
            data.extend(image.pixels().map(|p| p.0[channel] as f32 / 127.5 - 1.0));
        }
    }
    Tensor::from_vec(data, (images.len(), 3, size, size), device)
        .map_err(|source| EngineError::candle("building the image tensor", source))
}

/// Converts a `(batch, 3, h, w)` tensor in [-1, 1] to RGB images, rounding
/// to the nearest level and clamping.
pub fn tensor_to_images(pixels: &Tensor) -> Result<Vec<RgbImage>, EngineError> {
    let err = |source| EngineError::candle("reading decoded pixels", source);
    let (batch, _, height, width) = pixels.dims4().map_err(err)?;
    let values = pixels
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(err)?;
    let plane = height * width;
    let images = (0..batch)
        .map(|b| {
            let base = b * 3 * plane;
            RgbImage::from_fn(width as u32, height as u32, |x, y| {
                let i = y as usize * width + x as usize;
                let level = |c: usize| {
                    ((values[base + c * plane + i] + 1.0) * 127.5)
                        .round()
                        .clamp(0.0, 255.0) as u8
                };
                image::Rgb([level(0), level(1), level(2)])
            })
        })
        .collect();
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::builtin;
    use crate::engine::ops::tests::max_abs_diff;
    use crate::watermark::plain_latent;

    #[test]
    fn fit_latents_lowers_pixel_error() {
        let model = builtin::load(&Device::Cpu).unwrap();
        let (c, h, w) = model.config().latent_shape();
        let size = model.config().image_size;
        let shape = (2, c, h, w);
        let values: Vec<f32> = (0..2).flat_map(|s| plain_latent(s, c * h * w)).collect();
        let truth = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
        let images = model.decode_latents(&truth).unwrap();
        let nudge: Vec<f32> = (5..7).flat_map(|s| plain_latent(s, c * h * w)).collect();
        let nudge = (Tensor::from_vec(nudge, shape, &Device::Cpu).unwrap() * 0.3).unwrap();
        let start = (&truth + nudge).unwrap();
        let target = images_to_tensor(&images, size, &Device::Cpu).unwrap();
        let error = |latents: &Tensor| -> f32 {
            let scaled = (latents / model.config().vae.scaling_factor).unwrap();
            let decoded = model.vae.decode(&scaled).unwrap();
            (decoded - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };

        let fitted = model.fit_latents(&start, &images, None, 10, 0.03).unwrap();
        let (before, after) = (error(&start), error(&fitted));
        assert!(after < 0.8 * before, "pixel error {before} -> {after}");

        // Pixels of weight zero pull on nothing, so the latent stays put.
        let none = Tensor::zeros((1, 1, size, size), DType::F32, &Device::Cpu).unwrap();
        let still = model
            .fit_latents(&start, &images, Some(&none), 5, 0.03)
            .unwrap();
        assert!(max_abs_diff(&start, &still) < 1e-5);

        let wrong = [image::RgbImage::new(8, 8), image::RgbImage::new(8, 8)];
        assert!(model.fit_latents(&start, &wrong, None, 1, 0.03).is_err());
    }
}
