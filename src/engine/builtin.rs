//! The built-in model, compiled into the binary so that no download is
//! ever needed. `examples/train.rs` regenerates `builtin/` from a fixed
//! seed; `docs/model.md` describes the model and how it was trained.

use std::path::Path;

use candle_core::Device;

use super::EngineError;
use super::model::{Model, ModelConfig};

/// Configuration of the built-in model, as exported by the training program.
const CONFIG_JSON: &str = include_str!("builtin/config.json");

/// Weights of the built-in model (safetensors, F16).
const WEIGHTS: &[u8] = include_bytes!("builtin/model.safetensors");

/// The built-in model's configuration.
pub fn config() -> Result<ModelConfig, EngineError> {
    serde_json::from_str(CONFIG_JSON).map_err(|source| EngineError::Config {
        path: "built-in model".into(),
        source,
    })
}

/// Loads the built-in model on `device`.
pub fn load(device: &Device) -> Result<Model, EngineError> {
    Model::from_bytes(config()?, WEIGHTS.to_vec(), device)
}

/// Loads the model exported to `dir` (config.json and model.safetensors)
/// or, without a directory, the built-in model on the CPU. Errors name the
/// file that could not be read.
pub fn load_dir_or_builtin(dir: Option<&Path>) -> Result<Model, EngineError> {
    match dir {
        Some(dir) => Model::from_dir(dir),
        None => load(&Device::Cpu),
    }
}

/// Size of the embedded weights in bytes.
pub fn weights_len() -> usize {
    WEIGHTS.len()
}
