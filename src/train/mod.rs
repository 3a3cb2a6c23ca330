//! Training of the built-in model: the autoencoder first, then the text
//! encoder and UNet on its latents. `examples/train.rs` drives these
//! steps over the procedural world and writes resumable checkpoints.

pub mod checkpoint;
pub mod dataset;
pub mod diffusion;
pub mod optim;
pub mod reader;
pub mod vae;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use crate::watermark::noise::NoiseStream;

/// What one optimisation step reports.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// Steps done after this one.
    pub step: usize,
    /// The total loss.
    pub loss: f64,
    /// Named parts of the loss, where it has several.
    pub parts: Vec<(&'static str, f64)>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// The variables of a `VarMap` with their names.
pub fn named_vars(varmap: &VarMap) -> candle_core::Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("var map lock poisoned".into()))?;
    Ok(data
        .iter()
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect())
}

/// Standard normal noise shaped like `like`, from a seeded stream.
pub fn normal_like(like: &Tensor, rng: &mut NoiseStream) -> candle_core::Result<Tensor> {
    let mut values = vec![0f32; like.elem_count()];
    rng.fill_normal(&mut values);
    Tensor::from_vec(values, like.shape(), like.device())
}

#[cfg(test)]
mod gradient_tests;
