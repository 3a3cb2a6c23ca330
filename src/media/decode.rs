//! Reading files and decoding them within the size limits.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits};

use super::jpeg::{self, JpegDefect};
use super::{MAX_FILE_BYTES, MAX_PIXELS, MAX_SIDE, MediaError, MediaFormat};

/// Decoder allocation limit: the pixel limit at 8 bytes a pixel, which
/// covers 16-bit RGBA, the widest layout that the three formats produce.
const MAX_DECODE_ALLOC: u64 = MAX_PIXELS * 8;

/// A decoded image and the format it was stored in.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Pixels, 8-bit RGB. Alpha is dropped and 16-bit samples are scaled.
    pub image: image::RgbImage,
    /// Format named by the data's signature.
    pub format: MediaFormat,
}

/// Reads a whole file of at most [`MAX_FILE_BYTES`] bytes. The size is
/// checked before reading, and again while reading in case the file grows.
pub fn read_file(path: &Path) -> Result<Vec<u8>, MediaError> {
    let read_error = |source: io::Error| MediaError::Read {
        path: path.to_path_buf(),
        source,
    };
    let too_large = |size: u64| MediaError::FileTooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_FILE_BYTES,
    };

    // Checked before opening: opening a FIFO would block until a writer
    // appears.
    if !std::fs::metadata(path).map_err(read_error)?.is_file() {
        return Err(read_error(io::Error::other("not a regular file")));
    }
    let file = File::open(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(read_error(io::Error::other("not a regular file")));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large(metadata.len()));
    }

    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Decodes a PNG, JPEG or WebP file to 8-bit RGB.
///
/// The format comes from the signature, never from a file name. The
/// dimensions in the header are checked against [`MAX_PIXELS`] and
/// [`MAX_SIDE`] before any pixel buffer is allocated.
pub fn decode(bytes: &[u8]) -> Result<Decoded, MediaError> {
    let format = MediaFormat::sniff(bytes).ok_or_else(|| MediaError::UnknownFormat {
        start: leading_hex(bytes),
    })?;

    if format == MediaFormat::Jpeg {
        check_jpeg_structure(bytes)?;
    }

    // The header is read with the allocation limit only, so that an
    // oversized image gets an error that gives its dimensions.
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    reader.limits(alloc_limits());
    let mut decoder = reader
        .into_decoder()
        .map_err(|error| decode_error(format, error))?;
    let (width, height) = decoder.dimensions();
    check_dimensions(format, width, height)?;
    decoder
        .set_limits(full_limits())
        .map_err(|error| decode_error(format, error))?;

    let image = DynamicImage::from_decoder(decoder).map_err(|error| decode_error(format, error))?;
    tracing::trace!(%format, width, height, "decoded image");
    Ok(Decoded {
        image: image.into_rgb8(),
        format,
    })
}

fn check_jpeg_structure(bytes: &[u8]) -> Result<(), MediaError> {
    let format = MediaFormat::Jpeg;
    match jpeg::check_complete(bytes) {
        Ok(()) => Ok(()),
        Err(JpegDefect::Truncated) => Err(MediaError::Truncated {
            format,
            detail: "no end-of-image marker".to_string(),
        }),
        Err(JpegDefect::BadSegmentLength) => Err(MediaError::Corrupt {
            format,
            detail: "a segment length is below 2".to_string(),
        }),
    }
}

fn alloc_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

fn full_limits() -> Limits {
    let mut limits = alloc_limits();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits
}

fn check_dimensions(format: MediaFormat, width: u32, height: u32) -> Result<(), MediaError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(MediaError::TooLarge {
            format,
            width,
            height,
            max_pixels: MAX_PIXELS,
            max_side: MAX_SIDE,
        });
    }
    Ok(())
}

/// Maps a decoder error to the variant whose message gives the right fix.
fn decode_error(format: MediaFormat, error: ImageError) -> MediaError {
    let detail = error.to_string();
    match error {
        ImageError::IoError(ref io_error) if io_error.kind() == io::ErrorKind::UnexpectedEof => {
            MediaError::Truncated { format, detail }
        }
        ImageError::Unsupported(_) => MediaError::Unsupported { format, detail },
        // The dimensions passed `check_dimensions`, so a limit error here
        // means the decoder needed more working memory than allowed.
        ImageError::Limits(_) => MediaError::Corrupt {
            format,
            detail: format!("decoding needs more memory than allowed ({detail})"),
        },
        _ if looks_truncated(&detail) => MediaError::Truncated { format, detail },
        _ => MediaError::Corrupt { format, detail },
    }
}

/// Recognises end-of-data errors that decoders report as format errors.
fn looks_truncated(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    [
        "unexpected end",
        "unexpected eof",
        "no more bytes",
        "truncated",
    ]
    .iter()
    .any(|phrase| detail.contains(phrase))
}

/// Hexadecimal of the first 8 bytes, for an unknown-format message.
fn leading_hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(none, the data is empty)".to_string();
    }
    let digits: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    digits.join(" ")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::media::encode;
    use crate::media::test_images::{fixtures_dir, gradient};

    /// CRC-32 (ISO-HDLC, as PNG uses it), bit by bit.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xedb8_8320 & mask);
            }
        }
        !crc
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
        chunk.extend_from_slice(kind);
        chunk.extend_from_slice(data);
        let mut covered = kind.to_vec();
        covered.extend_from_slice(data);
        chunk.extend_from_slice(&crc32(&covered).to_be_bytes());
        chunk
    }

    /// Builds a PNG whose header claims `width` x `height` 8-bit RGB pixels, with
    /// a few bytes of image data that could never fill it.
    fn png_header_only(width: u32, height: u32) -> Vec<u8> {
        let mut header = width.to_be_bytes().to_vec();
        header.extend_from_slice(&height.to_be_bytes());
        header.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(png_chunk(b"IHDR", &header));
        png.extend(png_chunk(
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ));
        png.extend(png_chunk(b"IEND", &[]));
        png
    }

    #[test]
    fn crc32_matches_known_vector() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn decode_reports_format_and_size() {
        let image = gradient(40, 30);
        for format in [MediaFormat::Png, MediaFormat::Jpeg, MediaFormat::Webp] {
            let bytes = encode(&image, format, 90).unwrap();
            let decoded = decode(&bytes).unwrap();
            assert_eq!(decoded.format, format);
            assert_eq!(decoded.image.dimensions(), (40, 30), "{format}");
        }
    }

    #[test]
    fn truncated_files_are_errors() {
        let image = gradient(64, 64);
        for format in [MediaFormat::Png, MediaFormat::Jpeg, MediaFormat::Webp] {
            let bytes = encode(&image, format, 90).unwrap();
            let len = bytes.len();
            for cut in [0, 2, 8, 16, 33, 100, len / 3, len / 2, len - 40, len - 20] {
                let result = decode(&bytes[..cut]);
                assert!(result.is_err(), "{format} cut at {cut} of {len} decoded");
            }
        }
    }

    #[test]
    fn truncated_png_names_truncation() {
        let bytes = encode(&gradient(64, 64), MediaFormat::Png, 90).unwrap();
        let error = decode(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(
            matches!(
                error,
                MediaError::Truncated {
                    format: MediaFormat::Png,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("PNG data is truncated"),
            "{error}"
        );
    }

    #[test]
    fn garbage_is_unknown_format() {
        let mut noise = crate::watermark::noise::NoiseStream::new(5);
        let garbage: Vec<u8> = (0..4096).map(|_| noise.next_u64() as u8).collect();
        let error = decode(&garbage).unwrap_err();
        assert!(
            matches!(error, MediaError::UnknownFormat { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("not a PNG, JPEG or WebP file"),
            "{error}"
        );

        let empty = decode(&[]).unwrap_err();
        assert!(
            matches!(empty, MediaError::UnknownFormat { .. }),
            "{empty:?}"
        );
    }

    #[test]
    fn garbage_after_signature_is_error() {
        let mut noise = crate::watermark::noise::NoiseStream::new(6);
        let signatures: [&[u8]; 3] = [
            b"\x89PNG\r\n\x1a\n",
            &[0xff, 0xd8, 0xff],
            b"RIFF\0\x10\0\0WEBP",
        ];
        for signature in signatures {
            for _ in 0..20 {
                let mut bytes = signature.to_vec();
                bytes.extend((0..2000).map(|_| noise.next_u64() as u8));
                let result = decode(&bytes);
                assert!(result.is_err(), "{signature:?} with garbage decoded");
            }
        }
    }

    #[test]
    fn huge_png_header_rejected_quickly() {
        let bytes = png_header_only(100_000, 100_000);
        let start = Instant::now();
        let error = decode(&bytes).unwrap_err();
        let elapsed = start.elapsed();
        let MediaError::TooLarge { width, height, .. } = error else {
            panic!("expected TooLarge, got {error:?}");
        };
        assert_eq!((width, height), (100_000, 100_000));
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
        let message = error_message(&bytes);
        assert!(message.contains("100000x100000"), "{message}");
        assert!(message.contains("100000000 pixels"), "{message}");
    }

    fn error_message(bytes: &[u8]) -> String {
        decode(bytes).unwrap_err().to_string()
    }

    #[test]
    fn too_many_pixels_or_too_wide() {
        for (width, height) in [(20_000, 20_000), (70_000, 1), (1, 70_000)] {
            let error = decode(&png_header_only(width, height)).unwrap_err();
            assert!(
                matches!(error, MediaError::TooLarge { .. }),
                "{width}x{height}: {error:?}"
            );
        }
        let small = decode(&png_header_only(100, 100)).unwrap_err();
        assert!(!matches!(small, MediaError::TooLarge { .. }), "{small:?}");
    }

    #[test]
    fn photos_decode() {
        let expected = [
            ("astronaut.png", MediaFormat::Png, (512, 512)),
            ("camera.png", MediaFormat::Png, (512, 512)),
            ("chelsea.png", MediaFormat::Png, (451, 300)),
            ("coffee.png", MediaFormat::Png, (600, 400)),
            ("rocket.jpg", MediaFormat::Jpeg, (640, 427)),
            ("china.jpg", MediaFormat::Jpeg, (640, 427)),
        ];
        let dir = fixtures_dir("photos");
        for (name, format, size) in expected {
            let bytes = read_file(&dir.join(name)).unwrap();
            let decoded = decode(&bytes).unwrap();
            assert_eq!(decoded.format, format, "{name}");
            assert_eq!(decoded.image.dimensions(), size, "{name}");
        }
    }

    #[test]
    fn c2pa_fixtures_decode() {
        let expected = [
            ("C.jpg", MediaFormat::Jpeg),
            ("CA.jpg", MediaFormat::Jpeg),
            ("CACA.jpg", MediaFormat::Jpeg),
            ("E-sig-CA.jpg", MediaFormat::Jpeg),
            ("XCA.jpg", MediaFormat::Jpeg),
            ("no_manifest.jpg", MediaFormat::Jpeg),
            ("libpng-test.png", MediaFormat::Png),
            ("sample1.png", MediaFormat::Png),
            ("test.webp", MediaFormat::Webp),
        ];
        let dir = fixtures_dir("c2pa");
        for (name, format) in expected {
            let bytes = read_file(&dir.join(name)).unwrap();
            let decoded = decode(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(decoded.format, format, "{name}");
            assert!(decoded.image.width() > 0, "{name}");
        }
    }

    #[test]
    fn read_file_names_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.png");
        let error = read_file(&path).unwrap_err();
        assert!(matches!(error, MediaError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.png"), "{error}");
    }

    #[test]
    fn read_file_rejects_directory() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_file(dir.path()).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn read_file_checks_size_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.png");
        let file = File::create(&path).unwrap();
        // A sparse file: the size is set without writing 256 MiB.
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let error = read_file(&path).unwrap_err();
        let MediaError::FileTooLarge { size, limit, .. } = &error else {
            panic!("expected FileTooLarge, got {error:?}");
        };
        assert_eq!(*size, MAX_FILE_BYTES + 1);
        assert_eq!(*limit, MAX_FILE_BYTES);
        assert!(error.to_string().contains("huge.png"), "{error}");
    }

    #[test]
    fn read_file_returns_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.bin");
        std::fs::write(&path, b"contents").unwrap();
        assert_eq!(read_file(&path).unwrap(), b"contents");
    }
}
