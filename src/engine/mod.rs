//! The latent diffusion engine on candle: text encoder, UNet, VAE, noise
//! schedule, DDIM sampling and inversion, and the embedded built-in model.

pub mod builtin;
pub mod clip;
pub mod ddim;
pub mod init;
pub mod layout;
pub mod model;
pub mod nn;
pub mod ops;
pub mod sampler;
pub mod schedule;
pub mod tokenizer;
pub mod unet;
pub mod vae;

pub use model::{Model, ModelConfig};
pub use sampler::{InversionOptions, SampleOptions};

use std::path::PathBuf;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A tensor operation failed; `op` says which stage.
    #[error("{op} failed: {source}")]
    Candle {
        /// The stage that failed.
        op: &'static str,
        /// candle's error.
        source: candle_core::Error,
    },
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A model configuration is not valid JSON of the expected shape.
    #[error("invalid model configuration {path}: {source}")]
    Config {
        /// Where the configuration came from.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A configuration or request is inconsistent.
    #[error("invalid model setup: {0}")]
    InvalidConfig(String),
    /// An image does not have the size the model works at.
    #[error(
        "image is {width}x{height} but the model works at {expected}x{expected}; resize it first"
    )]
    ImageSize {
        /// Width of the image.
        width: u32,
        /// Height of the image.
        height: u32,
        /// The model's edge.
        expected: usize,
    },
}

impl EngineError {
    pub(crate) fn candle(op: &'static str, source: candle_core::Error) -> Self {
        Self::Candle { op, source }
    }
}
