//! Keyed latent watermark: initial-latent sampling from a secret sign
//! pattern, and detection statistics on an inverted latent.
//!
//! # Scheme
//!
//! Each generation's initial latent `x` has `x[i] = s[i] * |z[i]|`, where
//! `z[i] ~ N(0, 1)` comes from [`noise::NoiseStream`] for the generation's
//! seed, and the sign `s[i]` in {-1, +1} is bit `i` of a ChaCha20 keystream
//! (see [`sign_pattern`] for the bit order). That keystream's key is
//! HMAC-SHA256(watermark secret, "mmgen watermark pattern v1"), and its
//! 12-byte nonce is the ledger serial (u64 little-endian) followed by four
//! zero bytes.
//!
//! The signs are uniform and independent of `|z|`, so every `x[i]` is
//! exactly N(0, 1) and the sampler starts from ordinary noise. Every serial has its
//! own pattern, so averaging many outputs reveals nothing about the key.
//!
//! # Detection
//!
//! DDIM inversion of an image gives back an estimate of `x`. [`detect`]
//! counts, for each candidate (key, serial), how many signs of that estimate
//! agree with the candidate's pattern. Without the watermark the count is
//! Binomial(n, 1/2), so the best count's tail probability, multiplied by
//! the number of candidates tried (Bonferroni), is the p-value. A match
//! reports the payload `(key id, serial)`, which names the ledger record.

pub mod attack;
mod detect;
mod key;
pub mod noise;
mod pattern;
mod payload;
pub mod scan;
mod stats;

pub use detect::{Candidates, DEFAULT_THRESHOLD, Detection, Reading, detect, detect_readings};
pub use key::WatermarkKey;
pub use pattern::{BitPattern, initial_latent, plain_latent, sign_pattern};
pub use payload::Payload;
pub use stats::{binomial_tail, binomial_tail_log10, weighted_tail_log10};

/// Errors of the watermark module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatermarkError {
    /// A payload's text form could not be parsed: the caller's input is
    /// malformed.
    #[error(
        "invalid watermark payload {text:?}: {reason}; \
         expected mmgen-wm1:<16 hex digits>:<serial>"
    )]
    InvalidPayload {
        /// The rejected text, shortened when long.
        text: String,
        /// Description of the defect.
        reason: String,
    },
}
