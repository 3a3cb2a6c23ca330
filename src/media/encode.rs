//! Encoding images to files, and resizing them for the model.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::{self, FilterType};
use image::{ExtendedColorType, ImageEncoder, RgbImage};

use super::{MediaError, MediaFormat};

/// Encodes an 8-bit RGB image.
///
/// PNG output depends only on the pixels (no time or other metadata is
/// written), so the same image always gives the same bytes. WebP is
/// lossless. `jpeg_quality` (1 to 100) is used only for JPEG but is
/// checked for every format, so a bad setting fails early.
pub fn encode(
    image: &RgbImage,
    format: MediaFormat,
    jpeg_quality: u8,
) -> Result<Vec<u8>, MediaError> {
    if !(1..=100).contains(&jpeg_quality) {
        return Err(MediaError::InvalidQuality {
            quality: jpeg_quality,
        });
    }

    let (width, height) = image.dimensions();
    let mut out = Vec::new();
    let pixels = image.as_raw().as_slice();
    let color = ExtendedColorType::Rgb8;
    let result = match format {
        MediaFormat::Png => PngEncoder::new(&mut out).write_image(pixels, width, height, color),
        MediaFormat::Jpeg => JpegEncoder::new_with_quality(&mut out, jpeg_quality)
            .write_image(pixels, width, height, color),
        MediaFormat::Webp => {
            WebPEncoder::new_lossless(&mut out).write_image(pixels, width, height, color)
        }
    };
    result.map_err(|error| MediaError::Encode {
        format,
        width,
        height,
        detail: error.to_string(),
    })?;
    Ok(out)
}

/// Resizes to the model's square input (`size` x `size`) for watermark
/// detection. The aspect ratio is not kept, because the model's input is
/// square and so are the images it generates.
///
/// A shrinking image uses the Triangle filter, whose support the `image`
/// crate widens by the scale factor, so every source pixel contributes (an
/// area-like average). A growing one uses Catmull-Rom. An image with no
/// pixels gives a black square.
pub fn to_model_input(image: &RgbImage, size: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 || size == 0 {
        return RgbImage::new(size, size);
    }
    if width == size && height == size {
        return image.clone();
    }
    let shrinks = u64::from(width) * u64::from(height) >= u64::from(size) * u64::from(size);
    let filter = if shrinks {
        FilterType::Triangle
    } else {
        FilterType::CatmullRom
    };
    imageops::resize(image, size, size, filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::decode;
    use crate::media::test_images::gradient;

    fn mean_abs_difference(a: &RgbImage, b: &RgbImage) -> f64 {
        let total: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(&x, &y)| u64::from(x.abs_diff(y)))
            .sum();
        total as f64 / a.as_raw().len() as f64
    }

    #[test]
    fn lossless_formats_round_trip() {
        let image = gradient(37, 21);
        for format in [MediaFormat::Png, MediaFormat::Webp] {
            let bytes = encode(&image, format, 90).unwrap();
            let decoded = decode(&bytes).unwrap();
            assert_eq!(decoded.image, image, "{format}");
        }
    }

    #[test]
    fn jpeg_round_trip_is_close() {
        let image = gradient(64, 48);
        let bytes = encode(&image, MediaFormat::Jpeg, 95).unwrap();
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.image.dimensions(), (64, 48));
        let difference = mean_abs_difference(&decoded.image, &image);
        assert!(difference < 4.0, "mean difference {difference}");
    }

    #[test]
    fn jpeg_quality_changes_size() {
        let image = gradient(64, 64);
        let low = encode(&image, MediaFormat::Jpeg, 10).unwrap();
        let high = encode(&image, MediaFormat::Jpeg, 100).unwrap();
        assert!(
            low.len() < high.len(),
            "{} vs {} bytes",
            low.len(),
            high.len()
        );
    }

    #[test]
    fn png_is_deterministic() {
        let image = gradient(50, 50);
        let first = encode(&image, MediaFormat::Png, 90).unwrap();
        let second = encode(&image, MediaFormat::Png, 90).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn bad_quality_is_rejected() {
        for quality in [0, 101, 255] {
            let error = encode(&gradient(4, 4), MediaFormat::Jpeg, quality).unwrap_err();
            assert!(
                matches!(error, MediaError::InvalidQuality { .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains("1 to 100"), "{error}");
        }
    }

    #[test]
    fn empty_image_is_error_not_panic() {
        for format in [MediaFormat::Png, MediaFormat::Jpeg, MediaFormat::Webp] {
            let error = encode(&RgbImage::new(0, 0), format, 90).unwrap_err();
            assert!(
                matches!(error, MediaError::Encode { .. }),
                "{format}: {error:?}"
            );
            assert!(error.to_string().contains("0x0"), "{format}: {error}");
        }
    }

    #[test]
    fn model_input_has_requested_size() {
        for (width, height) in [(512, 512), (640, 427), (7, 5), (16, 16), (1, 300)] {
            let resized = to_model_input(&gradient(width, height), 128);
            assert_eq!(resized.dimensions(), (128, 128), "{width}x{height}");
        }
        assert_eq!(to_model_input(&RgbImage::new(0, 0), 8).dimensions(), (8, 8));
    }

    #[test]
    fn shrinking_averages_fine_detail() {
        // A one-pixel checkerboard of black and white must average to grey,
        // which a point-sampling filter would miss.
        let board = RgbImage::from_fn(256, 256, |x, y| {
            let value = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([value; 3])
        });
        let small = to_model_input(&board, 16);
        for pixel in small.pixels() {
            let value = i32::from(pixel.0[0]);
            assert!((value - 128).abs() <= 3, "pixel {value}");
        }
    }

    #[test]
    fn growing_keeps_flat_colour() {
        let flat = RgbImage::from_pixel(4, 4, image::Rgb([10, 200, 30]));
        let large = to_model_input(&flat, 32);
        assert!(large.pixels().all(|pixel| pixel.0 == [10, 200, 30]));
    }
}
