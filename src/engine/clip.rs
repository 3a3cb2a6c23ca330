//! The text encoder: a CLIP-shaped transformer.
//!
//! Tensor names follow Hugging Face's `CLIPTextModel`
//! (`text_model.embeddings.token_embedding.weight`, ...), so a CLIP text
//! checkpoint's layout maps onto it. The built-in model attends in both
//! directions and masks padding; CLIP checkpoints use a causal mask
//! instead (`causal: true`).

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use serde::{Deserialize, Serialize};

use super::nn::{self, LayerNorm, Linear};

/// Shape of the text encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEncoderConfig {
    /// Number of token ids.
    pub vocab_size: usize,
    /// Tokens per prompt, BOS and EOS included.
    pub max_position_embeddings: usize,
    /// Width of every token vector; the UNet's cross-attention input.
    pub hidden_size: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
    /// Causal attention as in CLIP; false attends both ways and masks padding.
    pub causal: bool,
}

impl Default for TextEncoderConfig {
    /// The built-in model's encoder.
    fn default() -> Self {
        Self {
            vocab_size: 128,
            max_position_embeddings: 32,
            hidden_size: 64,
            intermediate_size: 256,
            num_hidden_layers: 3,
            num_attention_heads: 4,
            layer_norm_eps: 1e-5,
            causal: false,
        }
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
}

impl EncoderLayer {
    fn new(cfg: &TextEncoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let attn = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        Ok(Self {
            layer_norm1: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            q_proj: nn::linear(d, d, true, attn.pp("q_proj"))?,
            k_proj: nn::linear(d, d, true, attn.pp("k_proj"))?,
            v_proj: nn::linear(d, d, true, attn.pp("v_proj"))?,
            out_proj: nn::linear(d, d, true, attn.pp("out_proj"))?,
            layer_norm2: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: nn::linear(d, cfg.intermediate_size, true, mlp.pp("fc1"))?,
            fc2: nn::linear(cfg.intermediate_size, d, true, mlp.pp("fc2"))?,
            heads: cfg.num_attention_heads,
        })
    }

    fn forward(&self, xs: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let h = self.layer_norm1.forward(xs)?;
        let (q, k, v) = (
            self.q_proj.forward(&h)?,
            self.k_proj.forward(&h)?,
            self.v_proj.forward(&h)?,
        );
        let attended = nn::attention(&q, &k, &v, self.heads, Some(mask))?;
        let xs = (xs + self.out_proj.forward(&attended)?)?;
        let h = self.layer_norm2.forward(&xs)?;
        let h = self.fc2.forward(&nn::gelu(&self.fc1.forward(&h)?)?)?;
        xs + h
    }
}

/// The text encoder: token ids `(batch, len)` to hidden states
/// `(batch, len, hidden_size)`.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    token_embedding: Embedding,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    config: TextEncoderConfig,
}

impl TextEncoder {
    /// Loads or initialises the encoder under `vb` (the `text_model` prefix
    /// is added here).
    pub fn new(cfg: &TextEncoderConfig, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("text_model");
        let emb = vb.pp("embeddings");
        let init = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let token_weight = emb.pp("token_embedding").get_with_hints(
            (cfg.vocab_size, cfg.hidden_size),
            "weight",
            init,
        )?;
        let position_embedding = emb.pp("position_embedding").get_with_hints(
            (cfg.max_position_embeddings, cfg.hidden_size),
            "weight",
            init,
        )?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(cfg, vb.pp("encoder.layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token_embedding: Embedding::new(token_weight, cfg.hidden_size),
            position_embedding,
            layers,
            final_layer_norm: LayerNorm::new(
                cfg.hidden_size,
                cfg.layer_norm_eps,
                vb.pp("final_layer_norm"),
            )?,
            config: cfg.clone(),
        })
    }

    /// The configuration this encoder was built with.
    pub fn config(&self) -> &TextEncoderConfig {
        &self.config
    }

    /// Encodes token ids of shape `(batch, len)`, `len <= max_position_embeddings`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (batch, len) = ids.dims2()?;
        let positions = self.position_embedding.narrow(0, 0, len)?;
        let mut xs = self
            .token_embedding
            .forward(ids)?
            .broadcast_add(&positions)?;
        let mask = self
            .attention_bias(ids, batch, len)?
            .to_dtype(self.position_embedding.dtype())?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &mask)?;
        }
        self.final_layer_norm.forward(&xs)
    }

    /// Additive attention bias, broadcastable to `(batch * heads, len, len)`:
    /// a large negative value where a query may not look.
    fn attention_bias(&self, ids: &Tensor, batch: usize, len: usize) -> Result<Tensor> {
        let heads = self.config.num_attention_heads;
        let device = ids.device();
        if self.config.causal {
            return causal_bias(len, device);
        }
        let ids = ids.to_vec2::<u32>()?;
        let mut bias = Vec::with_capacity(batch * heads * len);
        for row in &ids {
            let keys: Vec<f32> = row
                .iter()
                .map(|&id| {
                    if id == super::tokenizer::PAD {
                        -1e4
                    } else {
                        0.0
                    }
                })
                .collect();
            for _ in 0..heads {
                bias.extend_from_slice(&keys);
            }
        }
        Tensor::from_vec(bias, (batch * heads, 1, len), device)
    }
}

fn causal_bias(len: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..len)
        .flat_map(|q| (0..len).map(move |k| if k > q { -1e4 } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (1, len, len), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::VarMap;

    fn tiny() -> TextEncoderConfig {
        TextEncoderConfig {
            vocab_size: 20,
            max_position_embeddings: 8,
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            layer_norm_eps: 1e-5,
            causal: false,
        }
    }

    #[test]
    fn padding_does_not_change_content_tokens() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let encoder = TextEncoder::new(&tiny(), vb).unwrap();
        let a = Tensor::new(&[[1u32, 5, 6, 2, 0, 0, 0, 0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[1u32, 5, 6, 2, 0, 0]], &Device::Cpu).unwrap();
        let out_a = encoder.forward(&a).unwrap().narrow(1, 0, 4).unwrap();
        let out_b = encoder.forward(&b).unwrap().narrow(1, 0, 4).unwrap();
        let diff = crate::engine::ops::tests::max_abs_diff(&out_a, &out_b);
        assert!(diff < 1e-4, "padding leaked into content tokens: {diff}");
    }

    #[test]
    fn tensor_names_follow_clip() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        TextEncoder::new(&tiny(), vb).unwrap();
        let data = map.data().lock().unwrap();
        for name in [
            "text_model.embeddings.token_embedding.weight",
            "text_model.embeddings.position_embedding.weight",
            "text_model.encoder.layers.1.self_attn.q_proj.weight",
            "text_model.encoder.layers.0.mlp.fc2.bias",
            "text_model.final_layer_norm.weight",
        ] {
            assert!(data.contains_key(name), "missing {name}");
        }
    }
}
