//! Down, middle and up blocks of the UNet (`CrossAttnDownBlock2D`,
//! `DownBlock2D`, `UNetMidBlock2DCrossAttn`, `CrossAttnUpBlock2D`,
//! `UpBlock2D`), with their resamplers.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::resnet::{ResnetBlock2D, ResnetConfig};
use super::transformer::Transformer2D;
use crate::engine::nn::{self, Conv2d};

/// What every block of one UNet shares.
#[derive(Debug, Clone, Copy)]
pub struct BlockShared {
    /// Width of the timestep embedding.
    pub temb_channels: usize,
    /// Width of the text encoder's hidden states.
    pub context_dim: usize,
    /// Attention heads of every transformer.
    pub heads: usize,
    /// Groups of every group norm.
    pub groups: usize,
}

impl BlockShared {
    fn resnet(&self, in_channels: usize, out_channels: usize) -> ResnetConfig {
        ResnetConfig {
            in_channels,
            out_channels,
            temb_channels: Some(self.temb_channels),
            groups: self.groups,
            eps: 1e-5,
        }
    }
}

/// One level of the contracting path.
#[derive(Debug, Clone)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    downsampler: Option<Conv2d>,
}

impl DownBlock {
    /// `cross_attention` picks `CrossAttnDownBlock2D` over `DownBlock2D`;
    /// `downsample` adds the stride-2 convolution at the end.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        layers: usize,
        cross_attention: bool,
        downsample: bool,
        shared: &BlockShared,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut resnets = Vec::with_capacity(layers);
        let mut attentions = Vec::new();
        for i in 0..layers {
            let cin = if i == 0 { in_channels } else { out_channels };
            resnets.push(ResnetBlock2D::new(
                shared.resnet(cin, out_channels),
                vb.pp("resnets").pp(i),
            )?);
            if cross_attention {
                let vb = vb.pp("attentions").pp(i);
                attentions.push(Transformer2D::new(
                    out_channels,
                    shared.context_dim,
                    shared.heads,
                    shared.groups,
                    vb,
                )?);
            }
        }
        let downsampler = if downsample {
            Some(nn::conv2d(
                out_channels,
                out_channels,
                3,
                2,
                1,
                vb.pp("downsamplers.0.conv"),
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// Returns the block output and every intermediate state the up path
    /// concatenates back (one per layer, plus the downsampled map).
    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        regions: Option<&Tensor>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut xs = xs.clone();
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            xs = resnet.forward(&xs, Some(temb))?;
            if let Some(attention) = self.attentions.get(i) {
                xs = attention.forward(&xs, context, regions)?;
            }
            skips.push(xs.clone());
        }
        if let Some(conv) = &self.downsampler {
            xs = conv.forward(&xs)?;
            skips.push(xs.clone());
        }
        Ok((xs, skips))
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, transformer, resnet.
#[derive(Debug, Clone)]
pub struct MidBlock {
    first: ResnetBlock2D,
    attention: Transformer2D,
    second: ResnetBlock2D,
}

impl MidBlock {
    /// Loads or initialises the middle block.
    pub fn new(channels: usize, shared: &BlockShared, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            first: ResnetBlock2D::new(shared.resnet(channels, channels), vb.pp("resnets.0"))?,
            attention: Transformer2D::new(
                channels,
                shared.context_dim,
                shared.heads,
                shared.groups,
                vb.pp("attentions.0"),
            )?,
            second: ResnetBlock2D::new(shared.resnet(channels, channels), vb.pp("resnets.1"))?,
        })
    }

    /// Applies the block.
    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        regions: Option<&Tensor>,
    ) -> Result<Tensor> {
        let xs = self.first.forward(xs, Some(temb))?;
        let xs = self.attention.forward(&xs, context, regions)?;
        self.second.forward(&xs, Some(temb))
    }
}

/// Channel counts of one up block, as diffusers derives them.
#[derive(Debug, Clone, Copy)]
pub struct UpChannels {
    /// Output channels of the previous (deeper) up block.
    pub prev_output: usize,
    /// Output channels of this block.
    pub output: usize,
    /// Channels of the skip that the last resnet of this block consumes.
    pub input: usize,
}

/// One level of the expanding path.
#[derive(Debug, Clone)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    upsampler: Option<Conv2d>,
}

impl UpBlock {
    /// `layers + 1` resnets, each fed the previous output concatenated
    /// with one skip from the down path.
    pub fn new(
        channels: UpChannels,
        layers: usize,
        cross_attention: bool,
        upsample: bool,
        shared: &BlockShared,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut resnets = Vec::with_capacity(layers + 1);
        let mut attentions = Vec::new();
        for i in 0..=layers {
            let skip = if i == layers {
                channels.input
            } else {
                channels.output
            };
            let from = if i == 0 {
                channels.prev_output
            } else {
                channels.output
            };
            let cfg = shared.resnet(from + skip, channels.output);
            resnets.push(ResnetBlock2D::new(cfg, vb.pp("resnets").pp(i))?);
            if cross_attention {
                let vb = vb.pp("attentions").pp(i);
                attentions.push(Transformer2D::new(
                    channels.output,
                    shared.context_dim,
                    shared.heads,
                    shared.groups,
                    vb,
                )?);
            }
        }
        let upsampler = if upsample {
            Some(nn::conv2d(
                channels.output,
                channels.output,
                3,
                1,
                1,
                vb.pp("upsamplers.0.conv"),
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            upsampler,
        })
    }

    /// Applies the block, taking skips from the end of `skips`.
    pub fn forward(
        &self,
        xs: &Tensor,
        skips: &mut Vec<Tensor>,
        temb: &Tensor,
        context: &Tensor,
        regions: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut xs = xs.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            let Some(skip) = skips.pop() else {
                candle_core::bail!("unet: up block ran out of skip connections")
            };
            xs = resnet.forward(&Tensor::cat(&[&xs, &skip], 1)?, Some(temb))?;
            if let Some(attention) = self.attentions.get(i) {
                xs = attention.forward(&xs, context, regions)?;
            }
        }
        if let Some(conv) = &self.upsampler {
            let (_, _, h, w) = xs.dims4()?;
            xs = conv.forward(&xs.upsample_nearest2d(2 * h, 2 * w)?)?;
        }
        Ok(xs)
    }
}
