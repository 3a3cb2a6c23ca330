//! The latent diffusion engine on candle: text encoder, UNet, VAE, noise
//! schedule, DDIM sampling and inversion, and the embedded built-in model.

pub mod clip;
pub mod ddim;
pub mod init;
pub mod nn;
pub mod schedule;
pub mod tokenizer;
pub mod unet;
pub mod vae;
