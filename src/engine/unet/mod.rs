//! The denoising UNet, shaped like diffusers' `UNet2DConditionModel` and
//! using its tensor names, so that Stable Diffusion's layout maps onto it.
//!
//! Forward pass: (1) embed the timestep, (2) `conv_in`, (3) the down
//! blocks, keeping their states as skips, (4) the middle block, (5) the up
//! blocks, each consuming skips, (6) `conv_norm_out`, SiLU, `conv_out`.

mod blocks;
mod resnet;
mod transformer;

pub use resnet::{ResnetBlock2D, ResnetConfig};
pub use transformer::Attention;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::nn::{self, Conv2d, GroupNorm, Linear};
use blocks::{BlockShared, DownBlock, MidBlock, UpBlock, UpChannels};

/// Shape of the UNet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Latent channels in and out.
    pub in_channels: usize,
    /// Channels of each resolution level, highest resolution first.
    pub block_out_channels: Vec<usize>,
    /// Whether each level's down and up blocks have cross-attention.
    pub cross_attention: Vec<bool>,
    /// Residual blocks per down block (up blocks have one more).
    pub layers_per_block: usize,
    /// Width of the text encoder's hidden states.
    pub cross_attention_dim: usize,
    /// Attention heads of every transformer.
    pub attention_heads: usize,
    /// Groups of every group norm.
    pub norm_num_groups: usize,
    /// Whether `conv_in` also takes two channels containing each cell's
    /// column and row, from -1 to 1, so that attention can tell where a
    /// cell lies. Off in the built-in model; `docs/model.md` reports what a run
    /// with them gave.
    #[serde(default)]
    pub coordinate_channels: bool,
    /// Number of layout channels that `conv_in` also takes after the
    /// latent (and coordinates). Channel `k` contains the disc where the
    /// `k`-th object of the prompt should go (see
    /// `engine::layout::layout_maps`). The built-in model has 3.
    #[serde(default)]
    pub layout_channels: usize,
}

impl Default for UNetConfig {
    /// The built-in model's UNet.
    fn default() -> Self {
        Self {
            in_channels: 4,
            block_out_channels: vec![32, 64, 64],
            cross_attention: vec![true, true, false],
            layers_per_block: 1,
            cross_attention_dim: 64,
            attention_heads: 4,
            norm_num_groups: 16,
            coordinate_channels: false,
            layout_channels: 0,
        }
    }
}

/// The denoising network: predicts the noise (or velocity) in a latent
/// at a timestep, given the text encoder's hidden states.
#[derive(Debug, Clone)]
pub struct UNet {
    time_linear_1: Linear,
    time_linear_2: Linear,
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    config: UNetConfig,
}

impl UNet {
    /// Loads or initialises a UNet under `vb`.
    pub fn new(cfg: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        let channels = &cfg.block_out_channels;
        let levels = channels.len();
        if levels == 0 || cfg.cross_attention.len() != levels {
            candle_core::bail!(
                "unet: block_out_channels and cross_attention must have the same, non-zero length"
            )
        }
        let c0 = channels[0];
        let temb = 4 * c0;
        let shared = BlockShared {
            temb_channels: temb,
            context_dim: cfg.cross_attention_dim,
            heads: cfg.attention_heads,
            groups: cfg.norm_num_groups,
        };

        let mut down_blocks = Vec::with_capacity(levels);
        let mut previous = c0;
        for (i, &out) in channels.iter().enumerate() {
            let vb = vb.pp("down_blocks").pp(i);
            let block = DownBlock::new(
                previous,
                out,
                cfg.layers_per_block,
                cfg.cross_attention[i],
                i + 1 < levels,
                &shared,
                vb,
            )?;
            down_blocks.push(block);
            previous = out;
        }

        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(levels);
        for (i, &output) in reversed.iter().enumerate() {
            let up_channels = UpChannels {
                prev_output: if i == 0 { reversed[0] } else { reversed[i - 1] },
                output,
                input: reversed[(i + 1).min(levels - 1)],
            };
            let cross = cfg.cross_attention[levels - 1 - i];
            let vb = vb.pp("up_blocks").pp(i);
            up_blocks.push(UpBlock::new(
                up_channels,
                cfg.layers_per_block,
                cross,
                i + 1 < levels,
                &shared,
                vb,
            )?);
        }

        Ok(Self {
            time_linear_1: nn::linear(c0, temb, true, vb.pp("time_embedding.linear_1"))?,
            time_linear_2: nn::linear(temb, temb, true, vb.pp("time_embedding.linear_2"))?,
            conv_in: nn::conv2d(cfg.conv_in_channels(), c0, 3, 1, 1, vb.pp("conv_in"))?,
            down_blocks,
            mid_block: MidBlock::new(channels[levels - 1], &shared, vb.pp("mid_block"))?,
            up_blocks,
            conv_norm_out: GroupNorm::new(cfg.norm_num_groups, c0, 1e-5, vb.pp("conv_norm_out"))?,
            conv_out: nn::conv2d(c0, cfg.in_channels, 3, 1, 1, vb.pp("conv_out"))?,
            config: cfg.clone(),
        })
    }

    /// The configuration this UNet was built with.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Predicts from `latents` `(batch, in_channels, h, w)` at `timesteps`
    /// `(batch,)` (f32 steps of the training schedule) with `context`
    /// `(batch, len, cross_attention_dim)`. `h` and `w` must be divisible by
    /// 2 to the power of (levels - 1).
    pub fn forward(
        &self,
        latents: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
    ) -> Result<Tensor> {
        self.forward_with_regions(latents, timesteps, context, None)
    }

    /// Like `forward`, with `regions` `(batch, len, h, w)` added to every
    /// cross-attention logit: entry `(b, j, y, x)` is added to the score of
    /// text token `j` for latent cell `(y, x)`, averaged over the cells
    /// that each coarser level merges.
    pub fn forward_with_regions(
        &self,
        latents: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        regions: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.forward_with_layout(latents, timesteps, context, regions, None)
    }

    /// Like `forward_with_regions`, with `layout` `(batch, layout_channels,
    /// h, w)` fed to `conv_in` after the latent. Without `layout`, a UNet
    /// with layout channels gets zeros there, as training does for dropped
    /// layouts. Passing a layout to a UNet without layout channels, or one
    /// of another shape, is an error.
    ///
    /// NOTE: zeros also mean "no object in this cell", so a UNet trained
    /// with layouts on 90% of captioned examples samples worse without
    /// one. After 1,200 steps from the mmgen-shapes-2 weights, colour
    /// accuracy from text alone on 60 held-out scenes fell from 92% to
    /// about 74%.
    pub fn forward_with_layout(
        &self,
        latents: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        regions: Option<&Tensor>,
        layout: Option<&Tensor>,
    ) -> Result<Tensor> {
        // 1. Timestep embedding.
        let temb = timestep_embedding(timesteps, self.config.block_out_channels[0])?
            .to_dtype(latents.dtype())?;
        let temb = self
            .time_linear_2
            .forward(&self.time_linear_1.forward(&temb)?.apply(&nn::Silu)?)?;

        // 2. Input convolution, with the cells' coordinates and the layout
        // if configured.
        let mut xs = self
            .conv_in
            .forward(&self.conv_in_input(latents, layout)?)?;
        let mut skips = vec![xs.clone()];

        // 3. Contracting path.
        for block in &self.down_blocks {
            let (out, block_skips) = block.forward(&xs, &temb, context, regions)?;
            xs = out;
            skips.extend(block_skips);
        }

        // 4. Middle.
        xs = self.mid_block.forward(&xs, &temb, context, regions)?;

        // 5. Expanding path.
        for block in &self.up_blocks {
            xs = block.forward(&xs, &mut skips, &temb, context, regions)?;
        }

        // 6. Output head.
        self.conv_out
            .forward(&self.conv_norm_out.forward(&xs)?.apply(&nn::Silu)?)
    }
}

impl UNet {
    /// Joins the latent with the extra input channels that the
    /// configuration requests: coordinates, then the layout.
    fn conv_in_input(&self, latents: &Tensor, layout: Option<&Tensor>) -> Result<Tensor> {
        let (batch, _, h, w) = latents.dims4()?;
        let channels = self.config.layout_channels;
        let mut parts = vec![latents.clone()];
        if self.config.coordinate_channels {
            parts.push(coordinate_grid(latents)?);
        }
        match layout {
            Some(_) if channels == 0 => {
                candle_core::bail!(
                    "unet: a layout was passed but the UNet has no layout channels; \
                     pass no layout, or use a model trained with layout channels"
                )
            }
            Some(layout) => {
                if layout.dims() != [batch, channels, h, w] {
                    candle_core::bail!(
                        "unet: layout has shape {:?}, expected [{batch}, {channels}, {h}, {w}]",
                        layout.dims()
                    )
                }
                parts.push(layout.to_dtype(latents.dtype())?);
            }
            None if channels > 0 => {
                parts.push(Tensor::zeros(
                    (batch, channels, h, w),
                    latents.dtype(),
                    latents.device(),
                )?);
            }
            None => {}
        }
        if parts.len() == 1 {
            return Ok(latents.clone());
        }
        Tensor::cat(&parts, 1)
    }
}

impl UNetConfig {
    /// Input channels of `conv_in`: the latent's, plus two coordinate
    /// channels and the layout channels when configured.
    pub fn conv_in_channels(&self) -> usize {
        let coordinates = if self.coordinate_channels { 2 } else { 0 };
        self.in_channels + coordinates + self.layout_channels
    }
}

/// Column and row of every cell of `like` `(batch, c, h, w)`, each from -1
/// at the first cell to 1 at the last: `(batch, 2, h, w)` in its dtype.
fn coordinate_grid(like: &Tensor) -> Result<Tensor> {
    let (batch, _, h, w) = like.dims4()?;
    let axis = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| {
                if n > 1 {
                    2.0 * i as f32 / (n - 1) as f32 - 1.0
                } else {
                    0.0
                }
            })
            .collect()
    };
    let (cols, rows) = (axis(w), axis(h));
    let mut values = Vec::with_capacity(2 * h * w);
    for _ in 0..h {
        values.extend_from_slice(&cols);
    }
    for &row in &rows {
        values.extend(std::iter::repeat_n(row, w));
    }
    Tensor::from_vec(values, (1, 2, h, w), like.device())?
        .to_dtype(like.dtype())?
        .repeat((batch, 1, 1, 1))
}

/// Sinusoidal timestep features as diffusers' `Timesteps` with
/// `flip_sin_to_cos = true` and `downscale_freq_shift = 0`: `[cos, sin]`
/// of `t * 10000^(-i / half)`.
pub fn timestep_embedding(timesteps: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let device = timesteps.device();
    let exponent: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(exponent, (1, half), device)?;
    let args = timesteps
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs)?;
    Tensor::cat(&[args.cos()?, args.sin()?], 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::tests::max_abs_diff;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn tiny() -> UNetConfig {
        UNetConfig {
            in_channels: 4,
            block_out_channels: vec![8, 16],
            cross_attention: vec![true, false],
            layers_per_block: 1,
            cross_attention_dim: 12,
            attention_heads: 2,
            norm_num_groups: 4,
            coordinate_channels: false,
            layout_channels: 0,
        }
    }

    #[test]
    fn output_has_latent_shape() {
        let map = VarMap::new();
        let unet = UNet::new(
            &tiny(),
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let x = Tensor::zeros((2, 4, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[10f32, 500.0], &Device::Cpu).unwrap();
        let ctx = Tensor::zeros((2, 5, 12), DType::F32, &Device::Cpu).unwrap();
        let out = unet.forward(&x, &t, &ctx).unwrap();
        assert_eq!(out.dims(), &[2, 4, 8, 8]);
    }

    #[test]
    fn region_biases_steer_cross_attention() {
        let map = VarMap::new();
        let unet = UNet::new(
            &tiny(),
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let ramp = |n: usize, scale: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32) * scale).sin()).collect()
        };
        let x = Tensor::from_vec(ramp(256, 0.3), (1, 4, 8, 8), &Device::Cpu).unwrap();
        let t = Tensor::new(&[400f32], &Device::Cpu).unwrap();
        let ctx = Tensor::from_vec(ramp(60, 0.7), (1, 5, 12), &Device::Cpu).unwrap();
        let plain = unet.forward(&x, &t, &ctx).unwrap();

        let zero = Tensor::zeros((1, 5, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let unbiased = unet
            .forward_with_regions(&x, &t, &ctx, Some(&zero))
            .unwrap();
        assert!(max_abs_diff(&plain, &unbiased) < 1e-6);

        let mut values = vec![0f32; 5 * 64];
        values[2 * 64..3 * 64].fill(-6.0);
        let biased = Tensor::from_vec(values, (1, 5, 8, 8), &Device::Cpu).unwrap();
        let steered = unet
            .forward_with_regions(&x, &t, &ctx, Some(&biased))
            .unwrap();
        assert!(max_abs_diff(&plain, &steered) > 1e-4);

        let coarse = Tensor::zeros((1, 5, 6, 6), DType::F32, &Device::Cpu).unwrap();
        let err = unet
            .forward_with_regions(&x, &t, &ctx, Some(&coarse))
            .unwrap_err();
        assert!(err.to_string().contains("6x6"), "{err}");
    }

    #[test]
    fn tensor_names_follow_diffusers() {
        let map = VarMap::new();
        UNet::new(
            &tiny(),
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let data = map.data().lock().unwrap();
        for name in [
            "conv_in.weight",
            "time_embedding.linear_1.weight",
            "down_blocks.0.resnets.0.conv1.weight",
            "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
            "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
            "down_blocks.0.downsamplers.0.conv.weight",
            "mid_block.attentions.0.proj_in.weight",
            "up_blocks.0.resnets.1.conv_shortcut.weight",
            "up_blocks.0.upsamplers.0.conv.weight",
            "up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_out.0.bias",
            "conv_norm_out.weight",
            "conv_out.bias",
        ] {
            assert!(data.contains_key(name), "missing {name}");
        }
    }

    #[test]
    fn coordinate_channels_widen_conv_in() {
        let map = VarMap::new();
        let cfg = UNetConfig {
            coordinate_channels: true,
            ..tiny()
        };
        let unet = UNet::new(
            &cfg,
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let weight = map.data().lock().unwrap()["conv_in.weight"]
            .as_tensor()
            .clone();
        assert_eq!(weight.dims(), &[8, 6, 3, 3]);
        let x = Tensor::zeros((2, 4, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[10f32, 500.0], &Device::Cpu).unwrap();
        let ctx = Tensor::zeros((2, 5, 12), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(unet.forward(&x, &t, &ctx).unwrap().dims(), &[2, 4, 8, 8]);
    }

    #[test]
    fn layout_channels_feed_conv_in() {
        let map = VarMap::new();
        let cfg = UNetConfig {
            coordinate_channels: true,
            layout_channels: 3,
            ..tiny()
        };
        let unet = UNet::new(
            &cfg,
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let weight = map.data().lock().unwrap()["conv_in.weight"]
            .as_tensor()
            .clone();
        assert_eq!(weight.dims(), &[8, 9, 3, 3]);

        let x = Tensor::ones((2, 4, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[10f32, 500.0], &Device::Cpu).unwrap();
        let ctx = Tensor::zeros((2, 5, 12), DType::F32, &Device::Cpu).unwrap();
        let plain = unet.forward(&x, &t, &ctx).unwrap();
        let zero = Tensor::zeros((2, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let with_zero = unet
            .forward_with_layout(&x, &t, &ctx, None, Some(&zero))
            .unwrap();
        assert!(
            max_abs_diff(&plain, &with_zero) < 1e-6,
            "no layout must mean zeros"
        );
        let disc = Tensor::ones((2, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let with_disc = unet
            .forward_with_layout(&x, &t, &ctx, None, Some(&disc))
            .unwrap();
        assert!(
            max_abs_diff(&plain, &with_disc) > 1e-4,
            "the layout changed nothing"
        );

        let wrong = Tensor::zeros((2, 2, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let err = unet
            .forward_with_layout(&x, &t, &ctx, None, Some(&wrong))
            .unwrap_err();
        assert!(err.to_string().contains("[2, 3, 8, 8]"), "{err}");
    }

    #[test]
    fn layout_needs_layout_channels() {
        let map = VarMap::new();
        let unet = UNet::new(
            &tiny(),
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let x = Tensor::zeros((1, 4, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::new(&[10f32], &Device::Cpu).unwrap();
        let ctx = Tensor::zeros((1, 5, 12), DType::F32, &Device::Cpu).unwrap();
        let layout = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let err = unet
            .forward_with_layout(&x, &t, &ctx, None, Some(&layout))
            .unwrap_err();
        assert!(err.to_string().contains("no layout channels"), "{err}");
    }

    #[test]
    fn config_without_layout_field_loads() {
        let json = r#"{"in_channels": 4, "block_out_channels": [32, 64, 64],
            "cross_attention": [true, true, false], "layers_per_block": 1,
            "cross_attention_dim": 64, "attention_heads": 4, "norm_num_groups": 16}"#;
        let cfg: UNetConfig = serde_json::from_str(json).unwrap();
        assert_eq!(cfg.layout_channels, 0);
        assert!(!cfg.coordinate_channels);
        assert_eq!(cfg.conv_in_channels(), 4);
        assert_eq!(cfg, UNetConfig::default());
    }

    #[test]
    fn coordinate_grid_runs_from_minus_one_to_one() {
        let like = Tensor::zeros((3, 4, 2, 5), DType::F32, &Device::Cpu).unwrap();
        let grid = coordinate_grid(&like).unwrap();
        assert_eq!(grid.dims(), &[3, 2, 2, 5]);
        let first = grid.get(2).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(first[0][0], [-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(first[0][1], first[0][0]);
        assert_eq!(first[1][0], [-1.0; 5]);
        assert_eq!(first[1][1], [1.0; 5]);
    }

    #[test]
    fn timestep_embedding_starts_with_cos() {
        let t = Tensor::new(&[0f32], &Device::Cpu).unwrap();
        let emb = timestep_embedding(&t, 8).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(emb[0][..4], [1.0, 1.0, 1.0, 1.0]);
        assert_eq!(emb[0][4..], [0.0, 0.0, 0.0, 0.0]);
    }
}
