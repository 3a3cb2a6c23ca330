//! `Transformer2DModel`: self-attention over the feature map, then
//! cross-attention to the text encoder's hidden states, then a GEGLU
//! feed-forward layer, with diffusers' tensor names.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::engine::nn::{self, GroupNorm, LayerNorm, Linear};

/// `Attention` with `to_q`, `to_k`, `to_v` (no bias) and `to_out.0`.
#[derive(Debug, Clone)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl Attention {
    /// `context_dim` is the key/value input width: the query width for
    /// self-attention, the text width for cross-attention.
    pub fn new(query_dim: usize, context_dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            to_q: nn::linear(query_dim, query_dim, false, vb.pp("to_q"))?,
            to_k: nn::linear(context_dim, query_dim, false, vb.pp("to_k"))?,
            to_v: nn::linear(context_dim, query_dim, false, vb.pp("to_v"))?,
            to_out: nn::linear(query_dim, query_dim, true, vb.pp("to_out.0"))?,
            heads,
        })
    }

    /// Attends from `xs` to `context` (or to itself when `None`), with
    /// `bias` `(batch, query_len, key_len)` added to every head's scores.
    pub fn forward(
        &self,
        xs: &Tensor,
        context: Option<&Tensor>,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let context = context.unwrap_or(xs);
        let q = self.to_q.forward(xs)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        let bias = match bias {
            Some(bias) => {
                let (batch, q_len, kv_len) = bias.dims3()?;
                Some(
                    bias.unsqueeze(1)?
                        .broadcast_as((batch, self.heads, q_len, kv_len))?
                        .reshape((batch * self.heads, q_len, kv_len))?,
                )
            }
            None => None,
        };
        self.to_out
            .forward(&nn::attention(&q, &k, &v, self.heads, bias.as_ref())?)
    }
}

/// `BasicTransformerBlock`.
#[derive(Debug, Clone)]
struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_proj: Linear,
    ff_out: Linear,
}

impl BasicTransformerBlock {
    fn new(dim: usize, context_dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let ff_inner = 4 * dim;
        Ok(Self {
            norm1: LayerNorm::new(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(dim, dim, heads, vb.pp("attn1"))?,
            norm2: LayerNorm::new(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(dim, context_dim, heads, vb.pp("attn2"))?,
            norm3: LayerNorm::new(dim, 1e-5, vb.pp("norm3"))?,
            ff_proj: nn::linear(dim, 2 * ff_inner, true, vb.pp("ff.net.0.proj"))?,
            ff_out: nn::linear(ff_inner, dim, true, vb.pp("ff.net.2"))?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let xs = (xs + self.attn1.forward(&self.norm1.forward(xs)?, None, None)?)?;
        let xs = (&xs
            + self
                .attn2
                .forward(&self.norm2.forward(&xs)?, Some(context), bias)?)?;
        let projected = self.ff_proj.forward(&self.norm3.forward(&xs)?)?;
        let ff = self.ff_out.forward(&nn::geglu(&projected)?)?;
        xs + ff
    }
}

/// `Transformer2DModel` with a linear input/output projection and one
/// transformer block.
#[derive(Debug, Clone)]
pub struct Transformer2D {
    norm: GroupNorm,
    proj_in: Linear,
    block: BasicTransformerBlock,
    proj_out: Linear,
}

impl Transformer2D {
    /// `channels` must divide into `heads` and `groups`.
    pub fn new(
        channels: usize,
        context_dim: usize,
        heads: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm: GroupNorm::new(groups, channels, 1e-6, vb.pp("norm"))?,
            proj_in: nn::linear(channels, channels, true, vb.pp("proj_in"))?,
            block: BasicTransformerBlock::new(
                channels,
                context_dim,
                heads,
                vb.pp("transformer_blocks.0"),
            )?,
            proj_out: nn::linear(channels, channels, true, vb.pp("proj_out"))?,
        })
    }

    /// `xs`: `(batch, channels, height, width)`; `context`: `(batch, len,
    /// context_dim)`; `regions`: `(batch, len, h, w)` cross-attention
    /// biases on a grid that `height` and `width` divide (see
    /// `UNet::forward_with_regions`).
    pub fn forward(
        &self,
        xs: &Tensor,
        context: &Tensor,
        regions: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let bias = match regions {
            Some(regions) => Some(region_bias(regions, height, width)?),
            None => None,
        };
        let h = self.norm.forward(xs)?;
        let h = h.flatten_from(2)?.transpose(1, 2)?;
        let h = self.proj_in.forward(&h)?;
        let h = self.block.forward(&h, context, bias.as_ref())?;
        let h = self.proj_out.forward(&h)?;
        let h = h
            .transpose(1, 2)?
            .reshape((batch, channels, height, width))?;
        h + xs
    }
}

/// Averages `(batch, len, h, w)` region biases down to `height x width`
/// and lays them out as `(batch, height * width, len)` attention biases.
fn region_bias(regions: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (_, _, h, w) = regions.dims4()?;
    if h % height != 0 || w % width != 0 || h / height != w / width {
        candle_core::bail!("regions of {h}x{w} do not pool to a {height}x{width} feature map");
    }
    let pooled = if h == height {
        regions.clone()
    } else {
        regions.avg_pool2d(h / height)?
    };
    pooled.flatten_from(2)?.transpose(1, 2)?.contiguous()
}
