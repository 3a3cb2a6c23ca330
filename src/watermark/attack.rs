//! Image changes that a watermark should survive: the fixed benchmark suite
//! and the random distortions that the latent reader trains on.
//!
//! Every change maps an 8-bit RGB image to one of the same size. Values are
//! computed in [0, 1] and rounded back to 8 bits, and anything that leaves
//! the range is clipped, as a real re-encoded file would be.

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use crate::media::{self, MediaFormat};
use crate::watermark::noise::NoiseStream;

/// One change applied to an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attack {
    /// No change.
    Identity,
    /// Re-encoding as JPEG at this quality (1 to 100).
    Jpeg(u8),
    /// Scaling each edge by this factor and back to the original size.
    Resize(f32),
    /// Keeping the centre square of this share of each edge, scaled back to
    /// the original size.
    CentreCrop(f32),
    /// Gaussian blur with this sigma in pixels.
    Blur(f32),
    /// Median filter over a square of this edge (odd).
    Median(u32),
    /// Adding Gaussian noise with this sigma, in units of the full range.
    Noise(f32),
    /// Setting this share of pixels to black or white at random.
    SaltAndPepper(f32),
    /// Multiplying every value by this factor.
    Brightness(f32),
    /// Scaling the distance of every value from the image's mean grey level
    /// by this factor.
    Contrast(f32),
    /// Rotating about the centre by this many degrees, counterclockwise,
    /// filling uncovered corners with black.
    Rotate(f32),
    /// Mirroring left to right.
    FlipHorizontal,
}

/// A named sequence of changes.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackChain {
    /// Name used in reports.
    pub name: String,
    /// The changes, applied first to last.
    pub steps: Vec<Attack>,
}

impl AttackChain {
    fn one(name: &str, attack: Attack) -> Self {
        Self {
            name: name.to_string(),
            steps: vec![attack],
        }
    }

    /// Applies every step in order. `seed` drives the random steps (noise,
    /// salt and pepper), so the same seed gives the same result.
    pub fn apply(&self, image: &RgbImage, seed: u64) -> RgbImage {
        let mut rng = NoiseStream::with_domain(b"mmgen attack", seed);
        self.steps.iter().fold(image.clone(), |current, step| {
            step.apply(&current, &mut rng)
        })
    }
}

/// The benchmark's fixed suite, in report order.
pub fn benchmark_suite() -> Vec<AttackChain> {
    use Attack::*;
    vec![
        AttackChain::one("identity", Identity),
        AttackChain::one("jpeg 90", Jpeg(90)),
        AttackChain::one("jpeg 70", Jpeg(70)),
        AttackChain::one("jpeg 50", Jpeg(50)),
        AttackChain::one("jpeg 25", Jpeg(25)),
        AttackChain::one("resize 0.5", Resize(0.5)),
        AttackChain::one("resize 0.75", Resize(0.75)),
        AttackChain::one("crop 0.8", CentreCrop(0.8)),
        AttackChain::one("crop 0.6", CentreCrop(0.6)),
        AttackChain::one("blur 1", Blur(1.0)),
        AttackChain::one("blur 2", Blur(2.0)),
        AttackChain::one("median 3", Median(3)),
        AttackChain::one("noise 0.05", Noise(0.05)),
        AttackChain::one("salt+pepper 5%", SaltAndPepper(0.05)),
        AttackChain::one("brightness 0.5", Brightness(0.5)),
        AttackChain::one("brightness 1.5", Brightness(1.5)),
        AttackChain::one("contrast 0.5", Contrast(0.5)),
        AttackChain::one("contrast 1.5", Contrast(1.5)),
        AttackChain::one("rotate 5", Rotate(5.0)),
        AttackChain::one("rotate 10", Rotate(10.0)),
        AttackChain::one("flip", FlipHorizontal),
        AttackChain {
            name: "jpeg 60+crop 0.71+bright 0.5".into(),
            steps: vec![Jpeg(60), CentreCrop(0.71), Brightness(0.5)],
        },
    ]
}

impl Attack {
    /// Applies the change; random changes draw from `rng`.
    pub fn apply(&self, image: &RgbImage, rng: &mut NoiseStream) -> RgbImage {
        match *self {
            Attack::Identity => image.clone(),
            Attack::Jpeg(quality) => jpeg(image, quality),
            Attack::Resize(factor) => resize_and_back(image, factor),
            Attack::CentreCrop(share) => centre_crop(image, share),
            Attack::Blur(sigma) if sigma > 0.0 => {
                imageproc::filter::gaussian_blur_f32(image, sigma)
            }
            Attack::Blur(_) => image.clone(),
            Attack::Median(edge) => imageproc::filter::median_filter(image, edge / 2, edge / 2),
            Attack::Noise(sigma) => map_values(image, |v| v + sigma * rng.next_normal() as f32),
            Attack::SaltAndPepper(share) => salt_and_pepper(image, share, rng),
            Attack::Brightness(factor) => map_values(image, |v| v * factor),
            Attack::Contrast(factor) => {
                let mean = mean_grey(image);
                map_values(image, |v| mean + (v - mean) * factor)
            }
            Attack::Rotate(degrees) => imageproc::geometric_transformations::rotate_about_center(
                image,
                -degrees.to_radians(),
                imageproc::geometric_transformations::Interpolation::Bilinear,
                imageproc::geometric_transformations::Border::Constant(Rgb([0, 0, 0])),
            ),
            Attack::FlipHorizontal => imageops::flip_horizontal(image),
        }
    }
}

/// Applies `f` to every channel value in [0, 1] and clips the result.
fn map_values(image: &RgbImage, mut f: impl FnMut(f32) -> f32) -> RgbImage {
    let mut out = image.clone();
    for value in out.iter_mut() {
        let v = f(*value as f32 / 255.0);
        *value = (v * 255.0).round().clamp(0.0, 255.0) as u8;
    }
    out
}

fn jpeg(image: &RgbImage, quality: u8) -> RgbImage {
    let quality = quality.clamp(1, 100);
    // Encoding and decoding an in-memory RGB image only fails on an empty
    // image, and then there is nothing to change.
    media::encode(image, MediaFormat::Jpeg, quality)
        .ok()
        .and_then(|bytes| media::decode(&bytes).ok())
        .map_or_else(|| image.clone(), |decoded| decoded.image)
}

fn resize_and_back(image: &RgbImage, factor: f32) -> RgbImage {
    let (width, height) = image.dimensions();
    let small_w = ((width as f32 * factor).round() as u32).max(1);
    let small_h = ((height as f32 * factor).round() as u32).max(1);
    let small = imageops::resize(image, small_w, small_h, FilterType::Triangle);
    imageops::resize(&small, width, height, FilterType::CatmullRom)
}

fn centre_crop(image: &RgbImage, share: f32) -> RgbImage {
    let (width, height) = image.dimensions();
    let crop_w = ((width as f32 * share).round() as u32).clamp(1, width.max(1));
    let crop_h = ((height as f32 * share).round() as u32).clamp(1, height.max(1));
    let x = (width - crop_w.min(width)) / 2;
    let y = (height - crop_h.min(height)) / 2;
    let cropped = imageops::crop_imm(image, x, y, crop_w, crop_h).to_image();
    imageops::resize(&cropped, width, height, FilterType::CatmullRom)
}

fn salt_and_pepper(image: &RgbImage, share: f32, rng: &mut NoiseStream) -> RgbImage {
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        if rng.next_uniform() < share as f64 {
            let level = if rng.next_uniform() < 0.5 { 0 } else { 255 };
            *pixel = Rgb([level; 3]);
        }
    }
    out
}

/// Mean of the luma (ITU-R BT.601 weights) over the image, in [0, 1].
fn mean_grey(image: &RgbImage) -> f32 {
    let count = (image.width() as f64 * image.height() as f64).max(1.0);
    let total: f64 = image
        .pixels()
        .map(|p| 0.299 * p.0[0] as f64 + 0.587 * p.0[1] as f64 + 0.114 * p.0[2] as f64)
        .sum();
    (total / count / 255.0) as f32
}

/// Draws a random distortion for training the latent reader: one of
/// the photometric and compression changes, with its strength drawn from
/// a range that covers the benchmark's settings and more.
pub fn random_training_attack(rng: &mut NoiseStream) -> Attack {
    let mut uniform = |low: f32, high: f32| low + (high - low) * rng.next_uniform() as f32;
    match (uniform(0.0, 11.0)) as u32 {
        0 => Attack::Identity,
        1 | 2 => Attack::Jpeg(uniform(15.0, 95.0) as u8),
        3 => Attack::Resize(uniform(0.4, 0.9)),
        4 => Attack::Blur(uniform(0.5, 2.5)),
        5 => Attack::Median(3),
        6 => Attack::Noise(uniform(0.01, 0.08)),
        7 => Attack::SaltAndPepper(uniform(0.01, 0.08)),
        8 => Attack::Brightness(uniform(0.4, 1.6)),
        9 => Attack::Contrast(uniform(0.4, 1.6)),
        _ => Attack::Jpeg(uniform(40.0, 90.0) as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gradient with a pattern in blue that no smoothing leaves alone.
    fn gradient() -> RgbImage {
        RgbImage::from_fn(64, 64, |x, y| {
            Rgb([
                (x * 4) as u8,
                (y * 4) as u8,
                ((x * 37 + y * 91) % 256) as u8,
            ])
        })
    }

    #[test]
    fn every_suite_attack_keeps_the_size() {
        let image = gradient();
        for chain in benchmark_suite() {
            let out = chain.apply(&image, 1);
            assert_eq!(out.dimensions(), (64, 64), "{}", chain.name);
        }
    }

    #[test]
    fn identity_changes_nothing_and_others_change_something() {
        let image = gradient();
        for chain in benchmark_suite() {
            let out = chain.apply(&image, 1);
            let unchanged = out == image;
            if chain.name == "identity" {
                assert!(unchanged, "identity changed the image");
            } else {
                assert!(!unchanged, "{} left the image unchanged", chain.name);
            }
        }
    }

    #[test]
    fn brightness_clips_at_white() {
        let image = RgbImage::from_pixel(4, 4, Rgb([200, 100, 0]));
        let out = Attack::Brightness(1.5).apply(&image, &mut NoiseStream::new(0));
        assert_eq!(out.get_pixel(0, 0).0, [255, 150, 0]);
    }

    #[test]
    fn contrast_keeps_mean_grey() {
        let image = RgbImage::from_pixel(4, 4, Rgb([100, 100, 100]));
        let out = Attack::Contrast(0.5).apply(&image, &mut NoiseStream::new(0));
        assert_eq!(out.get_pixel(2, 2).0, [100, 100, 100]);
    }

    #[test]
    fn noise_is_clipped_and_seeded() {
        let image = RgbImage::from_pixel(16, 16, Rgb([250, 5, 128]));
        let chain = AttackChain::one("noise", Attack::Noise(0.05));
        let a = chain.apply(&image, 9);
        assert!(a == chain.apply(&image, 9), "same seed, different noise");
        assert!(a != chain.apply(&image, 10), "different seeds, same noise");
        let spread: u32 = a.pixels().map(|p| p.0[2].abs_diff(128) as u32).sum();
        assert!(spread > 0);
    }

    #[test]
    fn flip_mirrors() {
        let image = gradient();
        let out = Attack::FlipHorizontal.apply(&image, &mut NoiseStream::new(0));
        assert_eq!(out.get_pixel(0, 5).0, image.get_pixel(63, 5).0);
    }

    #[test]
    fn salt_and_pepper_hits_about_its_share() {
        let image = RgbImage::from_pixel(100, 100, Rgb([128, 128, 128]));
        let out = Attack::SaltAndPepper(0.05).apply(&image, &mut NoiseStream::new(3));
        let hit = out.pixels().filter(|p| p.0 != [128, 128, 128]).count();
        assert!((400..=600).contains(&hit), "{hit} of 10000 pixels changed");
    }
}
