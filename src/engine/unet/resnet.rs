//! `ResnetBlock2D`: two normalised 3x3 convolutions with a residual path,
//! optionally conditioned on the timestep embedding.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::engine::nn::{self, Conv2d, GroupNorm, Linear};

/// Configuration of one residual block.
#[derive(Debug, Clone, Copy)]
pub struct ResnetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Width of the timestep embedding, or `None` for the VAE's blocks.
    pub temb_channels: Option<usize>,
    /// Groups of both group norms.
    pub groups: usize,
    /// Epsilon of both group norms.
    pub eps: f64,
}

/// One residual block, with diffusers' tensor names (`norm1`, `conv1`,
/// `time_emb_proj`, `norm2`, `conv2`, `conv_shortcut`).
#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    /// Loads or initialises a block under `vb`.
    pub fn new(cfg: ResnetConfig, vb: VarBuilder) -> Result<Self> {
        let (cin, cout) = (cfg.in_channels, cfg.out_channels);
        let time_emb_proj = cfg
            .temb_channels
            .map(|t| nn::linear(t, cout, true, vb.pp("time_emb_proj")))
            .transpose()?;
        let conv_shortcut = if cin != cout {
            Some(nn::conv2d(cin, cout, 1, 1, 0, vb.pp("conv_shortcut"))?)
        } else {
            None
        };
        Ok(Self {
            norm1: GroupNorm::new(cfg.groups, cin, cfg.eps, vb.pp("norm1"))?,
            conv1: nn::conv2d(cin, cout, 3, 1, 1, vb.pp("conv1"))?,
            time_emb_proj,
            norm2: GroupNorm::new(cfg.groups, cout, cfg.eps, vb.pp("norm2"))?,
            conv2: nn::conv2d(cout, cout, 3, 1, 1, vb.pp("conv2"))?,
            conv_shortcut,
        })
    }

    /// Applies the block; `temb` is `(batch, temb_channels)` when the block
    /// was built with a timestep projection.
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self
            .conv1
            .forward(&self.norm1.forward(xs)?.apply(&nn::Silu)?)?;
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(&temb.apply(&nn::Silu)?)?;
            h = if crate::engine::ops::enabled(h.device()) {
                crate::engine::ops::bias::add_channel_bias(&h, &t)?
            } else {
                h.broadcast_add(&t.unsqueeze(2)?.unsqueeze(3)?)?
            };
        }
        let h = self
            .conv2
            .forward(&self.norm2.forward(&h)?.apply(&nn::Silu)?)?;
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(xs)?,
            None => xs.clone(),
        };
        shortcut + h
    }
}
