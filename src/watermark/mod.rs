//! Keyed latent watermark: initial-latent sampling from a secret sign
//! pattern, and detection statistics on an inverted latent.
pub mod noise;
