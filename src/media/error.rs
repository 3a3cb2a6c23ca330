//! Errors of the media module.

use std::io;
use std::path::PathBuf;

use super::MediaFormat;

/// Errors from reading, decoding and encoding image files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The file could not be opened or read: missing, unreadable, or not a
    /// regular file.
    #[error("failed to read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// The file is larger than [`super::MAX_FILE_BYTES`].
    #[error(
        "{} is {size} bytes, more than the limit of {limit} bytes; \
         use a smaller or more compressed file",
        path.display()
    )]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes, or the bytes read so far when it grew.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// The data starts with none of the PNG, JPEG or WebP signatures.
    #[error(
        "not a PNG, JPEG or WebP file (it starts with bytes {start}); \
         convert it to one of those formats"
    )]
    UnknownFormat {
        /// The first bytes, in hexadecimal.
        start: String,
    },

    /// The data ends before the image is complete.
    #[error(
        "the {format} data is truncated ({detail}); \
         the file is incomplete, so copy or download it again"
    )]
    Truncated {
        /// The format named by the file's signature.
        format: MediaFormat,
        /// The decoder's description.
        detail: String,
    },

    /// The data breaks the format's rules.
    #[error("the {format} data is corrupt: {detail}; re-export the file from its source")]
    Corrupt {
        /// The format named by the file's signature.
        format: MediaFormat,
        /// The decoder's description.
        detail: String,
    },

    /// The image's dimensions exceed [`super::MAX_PIXELS`] or
    /// [`super::MAX_SIDE`]; nothing was decoded.
    #[error(
        "the {format} image is {width}x{height} pixels, more than the limit of \
         {max_pixels} pixels and {max_side} pixels a side; downscale it first"
    )]
    TooLarge {
        /// The format.
        format: MediaFormat,
        /// Width from the file's header.
        width: u32,
        /// Height from the file's header.
        height: u32,
        /// The pixel-count limit.
        max_pixels: u64,
        /// The side-length limit.
        max_side: u32,
    },

    /// The file is valid but uses a feature that the decoder lacks.
    #[error(
        "the {format} file uses a feature that cannot be decoded: {detail}; \
         convert it to an 8-bit PNG"
    )]
    Unsupported {
        /// The format.
        format: MediaFormat,
        /// The decoder's description.
        detail: String,
    },

    /// A JPEG quality outside 1..=100 was requested.
    #[error("JPEG quality {quality} is out of range; use a value from 1 to 100")]
    InvalidQuality {
        /// The requested quality.
        quality: u8,
    },

    /// The encoder rejected the image, for example one with no pixels.
    #[error("failed to encode a {width}x{height} image as {format}: {detail}")]
    Encode {
        /// The target format.
        format: MediaFormat,
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
        /// The encoder's description.
        detail: String,
    },
}
