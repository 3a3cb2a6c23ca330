//! Decoding and encoding image files within size limits.
//!
//! Every file is treated as hostile: its size is checked before it is read,
//! its format comes from its signature, and its header dimensions are
//! checked before pixels are allocated. A corrupt, truncated or oversized
//! file gives a [`MediaError`] that names the problem and the fix.

mod decode;
mod encode;
mod error;
mod format;
mod jpeg;
pub mod xmp;

pub use decode::{Decoded, decode, read_file};
pub use encode::{encode, to_model_input};
pub use error::MediaError;
pub use format::MediaFormat;

/// Maximum size of a file that [`read_file`] reads, in bytes.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Maximum image area that [`decode`] accepts, in pixels (width x height).
pub const MAX_PIXELS: u64 = 100_000_000;

/// Maximum side length that [`decode`] accepts, in pixels. JPEG's own maximum is
/// 65,535 and WebP's is 16,383, so only PNG can come near it.
pub const MAX_SIDE: u32 = 65_536;

#[cfg(test)]
pub(crate) mod test_images;
