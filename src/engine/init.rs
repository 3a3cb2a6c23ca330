//! Reproducible weight initialisation for training.
//!
//! candle's CPU generator cannot be seeded, so a `VarMap` would initialise
//! every run differently. `SeededInit` is a `VarBuilder` backend that
//! creates the same `Var`s in a `VarMap` (so optimisers find them) but
//! draws their initial values from `NoiseStream`, keyed by the run's seed
//! and the tensor's name: the same seed gives the same weights whatever
//! order the model builds its layers in.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::{Init, VarBuilder, VarMap};
use sha2::{Digest, Sha256};

use crate::watermark::noise::NoiseStream;

/// A `VarBuilder` backend that initialises new variables from a seed.
pub struct SeededInit {
    map: VarMap,
    seed: u64,
}

impl SeededInit {
    /// A builder whose new variables are stored in `map`.
    pub fn var_builder(map: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
        let backend = Self {
            map: map.clone(),
            seed,
        };
        VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone())
    }

    fn initial_value(
        &self,
        shape: &Shape,
        name: &str,
        init: Init,
        device: &Device,
    ) -> Result<Tensor> {
        let count = shape.elem_count();
        let values: Vec<f32> = match init {
            Init::Const(value) => vec![value as f32; count],
            Init::Randn { mean, stdev } => self.normals(name, count, mean, stdev),
            Init::Uniform { lo, up } => self.uniforms(name, count, lo, up),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let fan = fan.for_shape(shape);
                let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => self.normals(name, count, 0.0, std),
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        self.uniforms(name, count, -bound, bound)
                    }
                }
            }
        };
        Tensor::from_vec(values, shape, device)
    }

    fn stream(&self, name: &str) -> NoiseStream {
        let digest = Sha256::digest(name.as_bytes());
        let mut name_bits = [0u8; 8];
        name_bits.copy_from_slice(&digest[..8]);
        NoiseStream::with_domain(b"mmgen init v1", self.seed ^ u64::from_le_bytes(name_bits))
    }

    fn normals(&self, name: &str, count: usize, mean: f64, std: f64) -> Vec<f32> {
        let mut stream = self.stream(name);
        (0..count)
            .map(|_| (mean + std * stream.next_normal()) as f32)
            .collect()
    }

    fn uniforms(&self, name: &str, count: usize, lo: f64, up: f64) -> Vec<f32> {
        let mut stream = self.stream(name);
        (0..count)
            .map(|_| (lo + (up - lo) * stream.next_uniform()) as f32)
            .collect()
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededInit {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let mut data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("var map lock poisoned".into()))?;
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!("shape mismatch on {name}: {shape:?} <> {:?}", var.shape())
            }
            return Ok(var.as_tensor().clone());
        }
        let value = self
            .initial_value(&shape, name, init, device)?
            .to_dtype(dtype)?;
        let var = Var::from_tensor(&value)?;
        let tensor = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _device: &Device) -> Result<Tensor> {
        let data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("var map lock poisoned".into()))?;
        match data.get(name) {
            Some(var) => Ok(var.as_tensor().clone()),
            None => candle_core::bail!("cannot find {name} in the var map"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .map(|data| data.contains_key(name))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(seed: u64) -> Vec<f32> {
        let map = VarMap::new();
        let vb = SeededInit::var_builder(&map, seed, &Device::Cpu);
        let linear = candle_nn::linear(8, 4, vb.pp("layer")).unwrap();
        linear.weight().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn same_seed_same_weights() {
        assert_eq!(build(5), build(5));
        assert_ne!(build(5), build(6));
    }

    #[test]
    fn variables_land_in_the_map() {
        let map = VarMap::new();
        let vb = SeededInit::var_builder(&map, 1, &Device::Cpu);
        candle_nn::linear(8, 4, vb.pp("layer")).unwrap();
        assert_eq!(map.all_vars().len(), 2);
    }
}
