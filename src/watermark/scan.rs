//! Watermark detection on an image: undo a few geometric changes, read
//! the latent, invert DDIM, and test the signs against every candidate.
//!
//! A crop, rotation or mirror moves every latent cell, and then no sign
//! lines up with its pattern. The scan therefore reads the image under a
//! fixed list of hypotheses, each of which undoes one such change and
//! keeps only the latent cells that the undone image still covers. It
//! tests the plain image first and stops there when that already detects;
//! otherwise it reads all other hypotheses in one batch. The p-value pays
//! for every hypothesis and element selection in the list, whether or not
//! the scan reached it, so stopping early costs no validity.

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use super::detect::{Candidates, Detection, Reading, detect_readings};
use crate::engine::{EngineError, InversionOptions, Model};
use crate::media;

/// A geometric change that a scan undoes before reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hypothesis {
    /// The image as it is.
    Identity,
    /// The image was mirrored left to right.
    Flip,
    /// The image was cut to its centre square of this share of the edge
    /// and scaled back up.
    CentreCrop(f32),
    /// The image was rotated this many degrees counterclockwise about its
    /// centre.
    Rotation(f32),
}

impl Hypothesis {
    /// Name for reports.
    pub fn name(&self) -> String {
        match *self {
            Hypothesis::Identity => "identity".into(),
            Hypothesis::Flip => "flip".into(),
            Hypothesis::CentreCrop(share) => format!("crop {share}"),
            Hypothesis::Rotation(degrees) => format!("rotation {degrees}"),
        }
    }
}

/// The hypotheses a scan tries by default: the mirror, centre crops to
/// 0.8, 0.71 and 0.6 of the edge, and rotations of 5 and 10 degrees either
/// way.
pub fn default_hypotheses() -> Vec<Hypothesis> {
    use Hypothesis::*;
    vec![
        Identity,
        Flip,
        CentreCrop(0.8),
        CentreCrop(0.71),
        CentreCrop(0.6),
        Rotation(5.0),
        Rotation(-5.0),
        Rotation(10.0),
        Rotation(-10.0),
    ]
}

/// Share of the covered elements, by inverted magnitude, that the default
/// scan tests besides all of them.
pub const DEFAULT_STRONGEST_SHARE: f32 = 0.5;

/// How a scan reads an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSettings {
    /// DDIM inversion of each reading.
    pub inversion: InversionOptions,
    /// Corrected p-value at or below which a watermark is reported.
    pub threshold: f64,
    /// Geometric hypotheses; `Identity` should come first.
    pub hypotheses: Vec<Hypothesis>,
    /// Besides all covered elements, also test this share of them with the
    /// largest inverted magnitudes (`None`: only all of them).
    pub strongest_share: Option<f32>,
}

impl ScanSettings {
    /// Readings per hypothesis: all covered elements, and the strongest
    /// share when set.
    fn readings_per_hypothesis(&self) -> u64 {
        1 + u64::from(self.strongest_share.is_some())
    }
}

/// An image prepared under one hypothesis, with the latent elements it
/// still covers.
struct Prepared {
    hypothesis: Hypothesis,
    image: RgbImage,
    covered: Vec<bool>,
}

/// Scans `image` for a watermark of any candidate. See the module
/// documentation for the procedure.
pub fn scan(
    model: &Model,
    image: &RgbImage,
    candidates: &[Candidates],
    settings: &ScanSettings,
) -> Result<Detection, EngineError> {
    let size = model.config().image_size as u32;
    let input = media::to_model_input(image, size);
    let planned = planned_readings(settings);
    let (first, rest) = match settings.hypotheses.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (Hypothesis::Identity, &[][..]),
    };

    let mut readings = read(model, &[prepare(model, &input, first)], settings)?;
    let detection = detect_readings(&readings, planned, candidates, settings.threshold);
    if detection.detected || rest.is_empty() {
        return Ok(detection);
    }
    let prepared: Vec<Prepared> = rest.iter().map(|&h| prepare(model, &input, h)).collect();
    readings.extend(read(model, &prepared, settings)?);
    Ok(detect_readings(
        &readings,
        planned,
        candidates,
        settings.threshold,
    ))
}

/// Prepared images per call of the latent reader and the inversion in
/// [`read_batch`].
const BATCH: usize = 64;

/// Reads every image under every hypothesis, in batches, without testing
/// anything: returns each image's readings in the order of `hypotheses`.
/// Benchmarks use it to test many images at once; [`scan`] gives the same
/// detections, but stops after the first hypothesis when that detects.
pub fn read_batch(
    model: &Model,
    images: &[RgbImage],
    settings: &ScanSettings,
) -> Result<Vec<Vec<Reading>>, EngineError> {
    let size = model.config().image_size as u32;
    let prepared: Vec<Prepared> = images
        .iter()
        .flat_map(|image| {
            let input = media::to_model_input(image, size);
            settings
                .hypotheses
                .iter()
                .map(move |&h| prepare(model, &input, h))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut readings = Vec::with_capacity(prepared.len() * 2);
    for chunk in prepared.chunks(BATCH) {
        readings.extend(read(model, chunk, settings)?);
    }
    let per_image = settings.hypotheses.len() * settings.readings_per_hypothesis() as usize;
    let mut grouped = Vec::with_capacity(images.len());
    let mut rest = readings.into_iter();
    for _ in images {
        grouped.push(rest.by_ref().take(per_image).collect());
    }
    Ok(grouped)
}

/// The number of readings a scan with `settings` pays for.
pub fn planned_readings(settings: &ScanSettings) -> u64 {
    settings.hypotheses.len().max(1) as u64 * settings.readings_per_hypothesis()
}

/// Reads and inverts a batch of prepared images and makes their readings.
fn read(
    model: &Model,
    prepared: &[Prepared],
    settings: &ScanSettings,
) -> Result<Vec<Reading>, EngineError> {
    let images: Vec<RgbImage> = prepared.iter().map(|p| p.image.clone()).collect();
    let latents = model.read_latents(&images)?;
    let noise = model.invert(&latents, &settings.inversion)?;
    let err = |source| EngineError::candle("reading the inverted latents", source);
    let mut readings = Vec::new();
    for (index, p) in prepared.iter().enumerate() {
        let values: Vec<f32> = noise
            .get(index)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .map_err(err)?;
        let name = p.hypothesis.name();
        readings.push(Reading::with_mask(&name, &values, &p.covered));
        if let Some(share) = settings.strongest_share {
            readings.push(Reading::strongest(
                &format!("{name}, strongest {share}"),
                &values,
                &p.covered,
                share,
            ));
        }
    }
    Ok(readings)
}

/// Undoes one hypothesis on a model-sized image for `model`.
fn prepare(model: &Model, input: &RgbImage, hypothesis: Hypothesis) -> Prepared {
    let (image, covered) = undo(input, hypothesis, model.config().latent_shape());
    Prepared {
        hypothesis,
        image,
        covered,
    }
}

/// Undoes one hypothesis on a square model-sized image. Returns the undone
/// image and, for each element of a `(channels, rows, cols)` latent in
/// row-major order, whether its cell lies wholly in what the undone image
/// still shows. Reader training uses the same undo, so that the reader
/// learns the images that detection gives it.
pub fn undo(
    input: &RgbImage,
    hypothesis: Hypothesis,
    (channels, rows, cols): (usize, usize, usize),
) -> (RgbImage, Vec<bool>) {
    let size = input.width();
    let cell = size as f32 / cols as f32;
    let (image, inside): (RgbImage, Box<dyn Fn(f32, f32) -> bool>) = match hypothesis {
        Hypothesis::Identity => (input.clone(), Box::new(|_, _| true)),
        Hypothesis::Flip => (imageops::flip_horizontal(input), Box::new(|_, _| true)),
        Hypothesis::CentreCrop(share) => {
            let (image, low, high) = uncrop(input, share);
            let inside = move |x: f32, y: f32| x >= low && x <= high && y >= low && y <= high;
            (image, Box::new(inside))
        }
        Hypothesis::Rotation(degrees) => {
            let image = rotate(input, -degrees);
            let centre = size as f32 / 2.0;
            let (sin, cos) = degrees.to_radians().sin_cos();
            // A point of the undone image came from inside the frame when
            // rotating it by the hypothesis lands inside the frame.
            let inside = move |x: f32, y: f32| {
                let (dx, dy) = (x - centre, y - centre);
                let (rx, ry) = (cos * dx + sin * dy + centre, -sin * dx + cos * dy + centre);
                (0.0..=size as f32).contains(&rx) && (0.0..=size as f32).contains(&ry)
            };
            (image, Box::new(inside))
        }
    };
    let mut covered = Vec::with_capacity(channels * rows * cols);
    for _ in 0..channels {
        for row in 0..rows {
            for col in 0..cols {
                let (x0, y0) = (col as f32 * cell, row as f32 * cell);
                let (x1, y1) = (x0 + cell, y0 + cell);
                covered.push(inside(x0, y0) && inside(x1, y0) && inside(x0, y1) && inside(x1, y1));
            }
        }
    }
    (image, covered)
}

/// Shrinks the image back to the centre square it would have come from
/// and fills the rest by mirroring that square at its edges. Mirrored
/// content keeps the texture statistics the model was trained on. So the
/// square's own cells invert better than next to a flat fill, by about 2
/// points of agreement after a 0.6 crop. Returns the image and the
/// square's first and last pixel coordinate.
fn uncrop(input: &RgbImage, share: f32) -> (RgbImage, f32, f32) {
    let size = input.width();
    let inner = ((size as f32 * share).round() as u32).clamp(1, size);
    let offset = (size - inner) / 2;
    let small = imageops::resize(input, inner, inner, FilterType::Triangle);
    let canvas = RgbImage::from_fn(size, size, |x, y| {
        let (sx, sy) = (mirror(x, offset, inner), mirror(y, offset, inner));
        *small.get_pixel(sx, sy)
    });
    (canvas, offset as f32, (offset + inner) as f32)
}

/// Maps canvas coordinate `at` to the square of `len` pixels that starts
/// at `start`, reflecting at the square's edges (edge pixels repeated).
fn mirror(at: u32, start: u32, len: u32) -> u32 {
    let period = 2 * i64::from(len);
    let folded = (i64::from(at) - i64::from(start)).rem_euclid(period);
    let inside = if folded < i64::from(len) {
        folded
    } else {
        period - 1 - folded
    };
    inside as u32
}

/// Rotates counterclockwise by `degrees`, filling with the mean colour.
fn rotate(input: &RgbImage, degrees: f32) -> RgbImage {
    use imageproc::geometric_transformations::{Border, Interpolation, rotate_about_center};
    rotate_about_center(
        input,
        -degrees.to_radians(),
        Interpolation::Bilinear,
        Border::Constant(mean_colour(input)),
    )
}

fn mean_colour(image: &RgbImage) -> Rgb<u8> {
    let count = (image.width() as u64 * image.height() as u64).max(1);
    let mut sum = [0u64; 3];
    for pixel in image.pixels() {
        for c in 0..3 {
            sum[c] += u64::from(pixel.0[c]);
        }
    }
    Rgb(sum.map(|s| (s / count) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncrop_places_the_image_in_the_centre() {
        let input = RgbImage::from_pixel(64, 64, Rgb([200, 10, 10]));
        let (image, low, high) = uncrop(&input, 0.5);
        assert_eq!((low, high), (16.0, 48.0));
        assert_eq!(image.get_pixel(32, 32).0, [200, 10, 10]);
        assert_eq!(image.get_pixel(2, 2).0, [200, 10, 10]);
    }

    #[test]
    fn uncrop_mirrors_the_square_outward() {
        let input = RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 0]));
        let (image, low, high) = uncrop(&input, 0.5);
        let (low, high) = (low as u32, high as u32);
        for k in 0..low {
            // Left of the square, pixel low-1-k mirrors pixel low+k.
            assert_eq!(
                image.get_pixel(low - 1 - k, 30),
                image.get_pixel(low + k, 30)
            );
            // Right of it, pixel high+k mirrors pixel high-1-k.
            assert_eq!(
                image.get_pixel(high + k, 30),
                image.get_pixel(high - 1 - k, 30)
            );
        }
    }

    #[test]
    fn mirror_reflects_at_both_edges() {
        let mapped: Vec<u32> = (0..10).map(|at| mirror(at, 3, 4)).collect();
        assert_eq!(mapped, [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
    }

    #[test]
    fn rotation_undo_restores_the_centre() {
        let input = RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 0]));
        let there = rotate(&input, 10.0);
        let back = rotate(&there, -10.0);
        for (x, y) in [(32, 32), (28, 36), (40, 30)] {
            let (a, b) = (input.get_pixel(x, y).0, back.get_pixel(x, y).0);
            for c in 0..2 {
                assert!(a[c].abs_diff(b[c]) <= 8, "({x}, {y}): {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn hypothesis_names_are_distinct() {
        let names: std::collections::HashSet<String> =
            default_hypotheses().iter().map(Hypothesis::name).collect();
        assert_eq!(names.len(), default_hypotheses().len());
    }
}
