//! The variational autoencoder between images and latents, shaped like
//! diffusers' `AutoencoderKL` and using its tensor names.
//!
//! Unlike candle-transformers' VAE, `encode` returns the posterior mean and
//! log-variance, so watermark detection can encode deterministically.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::nn::{self, Conv2d, GroupNorm, Linear};
use super::unet::{ResnetBlock2D, ResnetConfig};

/// Shape of the autoencoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Image channels (3, RGB in [-1, 1]).
    pub in_channels: usize,
    /// Channels of the latent.
    pub latent_channels: usize,
    /// Channels of each level, highest resolution first; each level after
    /// the first halves the resolution.
    pub block_out_channels: Vec<usize>,
    /// Residual blocks per encoder level (decoder levels have one more).
    pub layers_per_block: usize,
    /// Groups of every group norm.
    pub norm_num_groups: usize,
    /// Factor that gives the latents unit variance for the diffusion model.
    pub scaling_factor: f64,
}

impl Default for VaeConfig {
    /// The built-in model's autoencoder: 64x64 RGB to 4x16x16.
    fn default() -> Self {
        Self {
            in_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![32, 64, 64],
            layers_per_block: 1,
            norm_num_groups: 16,
            scaling_factor: 1.0,
        }
    }
}

impl VaeConfig {
    /// Image pixels per latent element along each edge.
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    fn resnet(&self, in_channels: usize, out_channels: usize) -> ResnetConfig {
        ResnetConfig {
            in_channels,
            out_channels,
            temb_channels: None,
            groups: self.norm_num_groups,
            eps: 1e-6,
        }
    }
}

/// Single-head self-attention over the feature map (the VAE's middle).
#[derive(Debug, Clone)]
struct SpatialAttention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl SpatialAttention {
    fn new(channels: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            group_norm: GroupNorm::new(groups, channels, 1e-6, vb.pp("group_norm"))?,
            to_q: nn::linear(channels, channels, true, vb.pp("to_q"))?,
            to_k: nn::linear(channels, channels, true, vb.pp("to_k"))?,
            to_v: nn::linear(channels, channels, true, vb.pp("to_v"))?,
            to_out: nn::linear(channels, channels, true, vb.pp("to_out.0"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let h = self
            .group_norm
            .forward(xs)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let (q, k, v) = (
            self.to_q.forward(&h)?,
            self.to_k.forward(&h)?,
            self.to_v.forward(&h)?,
        );
        let out = self.to_out.forward(&nn::attention(&q, &k, &v, 1, None)?)?;
        let out = out
            .transpose(1, 2)?
            .reshape((batch, channels, height, width))?;
        out + xs
    }
}

/// Resnet, attention, resnet at the lowest resolution.
#[derive(Debug, Clone)]
struct VaeMidBlock {
    first: ResnetBlock2D,
    attention: SpatialAttention,
    second: ResnetBlock2D,
}

impl VaeMidBlock {
    fn new(cfg: &VaeConfig, channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            first: ResnetBlock2D::new(cfg.resnet(channels, channels), vb.pp("resnets.0"))?,
            attention: SpatialAttention::new(channels, cfg.norm_num_groups, vb.pp("attentions.0"))?,
            second: ResnetBlock2D::new(cfg.resnet(channels, channels), vb.pp("resnets.1"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.first.forward(xs, None)?;
        let xs = self.attention.forward(&xs)?;
        self.second.forward(&xs, None)
    }
}

/// One resolution level: residual blocks, then an optional resampler.
#[derive(Debug, Clone)]
struct Level {
    resnets: Vec<ResnetBlock2D>,
    resampler: Option<Conv2d>,
}

/// Image to posterior parameters.
#[derive(Debug, Clone)]
struct Encoder {
    conv_in: Conv2d,
    levels: Vec<Level>,
    mid_block: VaeMidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let channels = &cfg.block_out_channels;
        let last = *channels.last().unwrap_or(&1);
        let mut levels = Vec::with_capacity(channels.len());
        let mut previous = channels[0];
        for (i, &out) in channels.iter().enumerate() {
            let vb = vb.pp("down_blocks").pp(i);
            let resnets = (0..cfg.layers_per_block)
                .map(|j| {
                    ResnetBlock2D::new(
                        cfg.resnet(if j == 0 { previous } else { out }, out),
                        vb.pp("resnets").pp(j),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let resampler = if i + 1 < channels.len() {
                Some(nn::conv2d(out, out, 3, 2, 0, vb.pp("downsamplers.0.conv"))?)
            } else {
                None
            };
            levels.push(Level { resnets, resampler });
            previous = out;
        }
        Ok(Self {
            conv_in: nn::conv2d(cfg.in_channels, channels[0], 3, 1, 1, vb.pp("conv_in"))?,
            levels,
            mid_block: VaeMidBlock::new(cfg, last, vb.pp("mid_block"))?,
            conv_norm_out: GroupNorm::new(cfg.norm_num_groups, last, 1e-6, vb.pp("conv_norm_out"))?,
            conv_out: nn::conv2d(last, 2 * cfg.latent_channels, 3, 1, 1, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = self.conv_in.forward(xs)?;
        for level in &self.levels {
            for resnet in &level.resnets {
                xs = resnet.forward(&xs, None)?;
            }
            if let Some(conv) = &level.resampler {
                // Asymmetric padding (right and bottom only), as diffusers' VAE.
                xs = conv.forward(&xs.pad_with_zeros(D::Minus1, 0, 1)?.pad_with_zeros(
                    D::Minus2,
                    0,
                    1,
                )?)?;
            }
        }
        let xs = self.mid_block.forward(&xs)?;
        self.conv_out
            .forward(&self.conv_norm_out.forward(&xs)?.apply(&nn::Silu)?)
    }
}

/// Latent to image.
#[derive(Debug, Clone)]
struct Decoder {
    conv_in: Conv2d,
    mid_block: VaeMidBlock,
    levels: Vec<Level>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let reversed: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let first = reversed[0];
        let mut levels = Vec::with_capacity(reversed.len());
        let mut previous = first;
        for (i, &out) in reversed.iter().enumerate() {
            let vb = vb.pp("up_blocks").pp(i);
            let resnets = (0..=cfg.layers_per_block)
                .map(|j| {
                    ResnetBlock2D::new(
                        cfg.resnet(if j == 0 { previous } else { out }, out),
                        vb.pp("resnets").pp(j),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let resampler = if i + 1 < reversed.len() {
                Some(nn::conv2d(out, out, 3, 1, 1, vb.pp("upsamplers.0.conv"))?)
            } else {
                None
            };
            levels.push(Level { resnets, resampler });
            previous = out;
        }
        let c0 = cfg.block_out_channels[0];
        Ok(Self {
            conv_in: nn::conv2d(cfg.latent_channels, first, 3, 1, 1, vb.pp("conv_in"))?,
            mid_block: VaeMidBlock::new(cfg, first, vb.pp("mid_block"))?,
            levels,
            conv_norm_out: GroupNorm::new(cfg.norm_num_groups, c0, 1e-6, vb.pp("conv_norm_out"))?,
            conv_out: nn::conv2d(c0, cfg.in_channels, 3, 1, 1, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = self.mid_block.forward(&self.conv_in.forward(xs)?)?;
        for level in &self.levels {
            for resnet in &level.resnets {
                xs = resnet.forward(&xs, None)?;
            }
            if let Some(conv) = &level.resampler {
                let (_, _, h, w) = xs.dims4()?;
                xs = conv.forward(&xs.upsample_nearest2d(2 * h, 2 * w)?)?;
            }
        }
        self.conv_out
            .forward(&self.conv_norm_out.forward(&xs)?.apply(&nn::Silu)?)
    }
}

/// Posterior of the encoder for a batch of images, in unscaled latent units.
#[derive(Debug, Clone)]
pub struct Posterior {
    /// Mean, `(batch, latent_channels, h / f, w / f)`.
    pub mean: Tensor,
    /// Log-variance, same shape, clamped to [-30, 20] as diffusers does.
    pub log_var: Tensor,
}

/// The autoencoder.
#[derive(Debug, Clone)]
pub struct AutoEncoderKl {
    encoder: Encoder,
    quant_conv: Conv2d,
    post_quant_conv: Conv2d,
    decoder: Decoder,
    config: VaeConfig,
}

impl AutoEncoderKl {
    /// Loads or initialises the autoencoder under `vb`.
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.block_out_channels.is_empty() {
            candle_core::bail!("vae: block_out_channels must not be empty")
        }
        let l = cfg.latent_channels;
        Ok(Self {
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            quant_conv: nn::conv2d(2 * l, 2 * l, 1, 1, 0, vb.pp("quant_conv"))?,
            post_quant_conv: nn::conv2d(l, l, 1, 1, 0, vb.pp("post_quant_conv"))?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
            config: cfg.clone(),
        })
    }

    /// The configuration this autoencoder was built with.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Encodes images `(batch, 3, h, w)` in [-1, 1] to the posterior.
    pub fn encode(&self, images: &Tensor) -> Result<Posterior> {
        let moments = self.quant_conv.forward(&self.encoder.forward(images)?)?;
        let l = self.config.latent_channels;
        Ok(Posterior {
            mean: moments.narrow(1, 0, l)?,
            log_var: moments.narrow(1, l, l)?.clamp(-30f32, 20f32)?,
        })
    }

    /// Decodes unscaled latents to images in (about) [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.decoder
            .forward(&self.post_quant_conv.forward(latents)?)
    }
}

/// A second encoder of the autoencoder's shape, trained to read the latent
/// of a decoded image back after the image was re-encoded, resized,
/// blurred or recoloured. Watermark detection uses it; generation and the
/// diffusion model's training never do. Its tensors are named as the
/// autoencoder's `encoder.*` and `quant_conv.*`, so that training can start
/// from the autoencoder's own encoder.
#[derive(Debug, Clone)]
pub struct LatentReader {
    encoder: Encoder,
    quant_conv: Conv2d,
    latent_channels: usize,
}

impl LatentReader {
    /// Loads or initialises the reader under `vb`.
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let l = cfg.latent_channels;
        Ok(Self {
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            quant_conv: nn::conv2d(2 * l, 2 * l, 1, 1, 0, vb.pp("quant_conv"))?,
            latent_channels: l,
        })
    }

    /// Reads unscaled latents from images `(batch, 3, h, w)` in [-1, 1].
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let moments = self.quant_conv.forward(&self.encoder.forward(images)?)?;
        moments.narrow(1, 0, self.latent_channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn reader_with_encoder_weights_matches_posterior_mean() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let vae = AutoEncoderKl::new(&tiny(), vb.clone()).unwrap();
        // The reader under the root prefix shares the autoencoder's encoder
        // and quant_conv tensors by name.
        let reader = LatentReader::new(&tiny(), vb).unwrap();
        let images = (Tensor::arange(0f32, 2.0 * 3.0 * 32.0 * 32.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 3, 32, 32))
            .unwrap()
            / 3000.0)
            .unwrap();
        let mean = vae.encode(&images).unwrap().mean;
        let read = reader.forward(&images).unwrap();
        let diff: f32 = (mean - read)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-6, "reader and encoder differ by {diff}");
    }

    fn tiny() -> VaeConfig {
        VaeConfig {
            in_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![8, 16, 16],
            layers_per_block: 1,
            norm_num_groups: 4,
            scaling_factor: 1.0,
        }
    }

    #[test]
    fn round_trip_shapes() {
        let map = VarMap::new();
        let vae = AutoEncoderKl::new(
            &tiny(),
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let images = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let posterior = vae.encode(&images).unwrap();
        assert_eq!(posterior.mean.dims(), &[2, 4, 8, 8]);
        assert_eq!(posterior.log_var.dims(), &[2, 4, 8, 8]);
        assert_eq!(vae.decode(&posterior.mean).unwrap().dims(), &[2, 3, 32, 32]);
        assert_eq!(tiny().downscale(), 4);
    }

    #[test]
    fn tensor_names_follow_diffusers() {
        let map = VarMap::new();
        AutoEncoderKl::new(
            &tiny(),
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let data = map.data().lock().unwrap();
        for name in [
            "encoder.conv_in.weight",
            "encoder.down_blocks.0.downsamplers.0.conv.weight",
            "encoder.mid_block.attentions.0.to_q.weight",
            "encoder.conv_out.weight",
            "quant_conv.weight",
            "post_quant_conv.weight",
            "decoder.up_blocks.0.resnets.1.conv1.weight",
            "decoder.up_blocks.1.upsamplers.0.conv.weight",
            "decoder.conv_out.bias",
        ] {
            assert!(data.contains_key(name), "missing {name}");
        }
    }
}
