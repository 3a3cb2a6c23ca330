//! The image formats that mmgen reads and writes, identified by their
//! leading bytes.

use std::fmt;

use serde::Serialize;

/// PNG signature (PNG specification, section 5.2).
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// JPEG start-of-image marker followed by the first byte of the next marker.
const JPEG_SIGNATURE: &[u8] = &[0xff, 0xd8, 0xff];

/// An image file format that mmgen decodes and encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaFormat {
    /// Portable Network Graphics, lossless.
    Png,
    /// JPEG (JFIF or Exif), lossy.
    Jpeg,
    /// WebP in a RIFF container; mmgen writes it lossless.
    Webp,
}

impl MediaFormat {
    /// Returns the MIME type, as C2PA and HTTP use it.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    /// Returns the usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }

    /// Detects the format from the file's leading bytes, or `None` when
    /// they match none of the three.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(PNG_SIGNATURE) {
            return Some(Self::Png);
        }
        if bytes.starts_with(JPEG_SIGNATURE) {
            return Some(Self::Jpeg);
        }
        // RIFF header: "RIFF", a 32-bit chunk size, then the form type.
        if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            return Some(Self::Webp);
        }
        None
    }

    pub(crate) fn image_format(self) -> image::ImageFormat {
        match self {
            Self::Png => image::ImageFormat::Png,
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Webp => image::ImageFormat::WebP,
        }
    }
}

impl fmt::Display for MediaFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Png => "PNG",
            Self::Jpeg => "JPEG",
            Self::Webp => "WebP",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_reads_magic_bytes() {
        assert_eq!(
            MediaFormat::sniff(b"\x89PNG\r\n\x1a\nrest"),
            Some(MediaFormat::Png)
        );
        assert_eq!(
            MediaFormat::sniff(&[0xff, 0xd8, 0xff, 0xe0]),
            Some(MediaFormat::Jpeg)
        );
        assert_eq!(
            MediaFormat::sniff(b"RIFF\x10\0\0\0WEBPVP8L"),
            Some(MediaFormat::Webp)
        );
    }

    #[test]
    fn sniff_rejects_other_bytes() {
        let cases: [&[u8]; 7] = [
            b"",
            b"\x89PNG\r\n\x1a",
            &[0xff, 0xd8],
            b"RIFF\x10\0\0\0WAVEfmt ",
            b"RIFF\x10\0\0\0WEB",
            b"GIF89a",
            b"<svg xmlns",
        ];
        for bytes in cases {
            assert_eq!(MediaFormat::sniff(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn names_and_types() {
        let table = [
            (MediaFormat::Png, "image/png", "png", "PNG"),
            (MediaFormat::Jpeg, "image/jpeg", "jpg", "JPEG"),
            (MediaFormat::Webp, "image/webp", "webp", "WebP"),
        ];
        for (format, mime, extension, name) in table {
            assert_eq!(format.mime(), mime);
            assert_eq!(format.extension(), extension);
            assert_eq!(format.to_string(), name);
        }
    }
}
