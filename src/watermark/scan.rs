//! Watermark detection on an image: undo a few geometric changes, read
//! the latent, invert DDIM, and test the signs against every candidate.
//!
//! A crop, rotation or mirror moves every latent cell, and then no sign
//! lines up with its pattern. The scan therefore reads the image under a
//! fixed list of hypotheses, each of which undoes one such change and
//! weighs each latent cell by how much of it the undone image still shows.
//! It tests the plain image first and stops there when that already
//! detects; otherwise it reads all other hypotheses in one batch. The
//! p-value pays for every hypothesis in the list, whether or not the scan
//! reached it, so stopping early costs no validity.

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

/// How a scan reads an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSettings {
    /// DDIM inversion of each reading.
    pub inversion: InversionOptions,
    /// Corrected p-value at or below which a watermark is reported.
    pub threshold: f64,
    /// Geometric hypotheses; `Identity` should come first.
    pub hypotheses: Vec<Hypothesis>,
    /// Read each hypothesis with [`Reading::weighted`]: every mostly
    /// covered cell, weighted by coverage and inverted magnitude. When
    /// false, count the signs of the wholly covered cells instead.
    pub weighted: bool,
}

impl ScanSettings {
    /// Returns the settings `verify` uses: every default hypothesis,
    /// weighted readings, and the default threshold.
    pub fn standard(inversion: InversionOptions) -> Self {
        Self {
            inversion,
            threshold: super::DEFAULT_THRESHOLD,
            hypotheses: default_hypotheses(),
            weighted: true,
        }
    }
}

/// An image prepared under one hypothesis, with the latent elements it
/// still covers.
struct Prepared {
    hypothesis: Hypothesis,
    image: RgbImage,
    covered: Vec<bool>,
    coverage: Vec<f32>,
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
    let mut readings = Vec::with_capacity(prepared.len());
    for chunk in prepared.chunks(BATCH) {
        readings.extend(read(model, chunk, settings)?);
    }
    let per_image = settings.hypotheses.len();
    let mut grouped = Vec::with_capacity(images.len());
    let mut rest = readings.into_iter();
    for _ in images {
        grouped.push(rest.by_ref().take(per_image).collect());
    }
    Ok(grouped)
}

/// The number of readings a scan with `settings` pays for.
pub fn planned_readings(settings: &ScanSettings) -> u64 {
    settings.hypotheses.len().max(1) as u64
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
        readings.push(if settings.weighted {
            Reading::weighted(&name, &values, &p.coverage)
        } else {
            Reading::with_mask(&name, &values, &p.covered)
        });
    }
    Ok(readings)
}

/// Undoes one hypothesis on a model-sized image for `model`.
fn prepare(model: &Model, input: &RgbImage, hypothesis: Hypothesis) -> Prepared {
    let shape = model.config().latent_shape();
    let (image, covered) = undo(input, hypothesis, shape);
    Prepared {
        hypothesis,
        image,
        covered,
        coverage: coverage(input.width(), hypothesis, shape),
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
    shape: (usize, usize, usize),
) -> (RgbImage, Vec<bool>) {
    let image = match hypothesis {
        Hypothesis::Identity => input.clone(),
        Hypothesis::Flip => imageops::flip_horizontal(input),
        Hypothesis::CentreCrop(share) => uncrop(input, share),
        Hypothesis::Rotation(degrees) => rotate(input, -degrees),
    };
    let inside = shown(input.width(), hypothesis);
    let covered = per_cell(input.width(), shape, |x0, y0, x1, y1| {
        inside(x0, y0) && inside(x1, y0) && inside(x0, y1) && inside(x1, y1)
    });
    (image, covered)
}

/// Sample points per cell edge in [`coverage`].
const COVERAGE_SAMPLES: usize = 8;

/// Computes, for each element of a `(channels, rows, cols)` latent of a
/// `size`-pixel image undone by `hypothesis`, the share of its cell that
/// the undone image still shows, from an 8x8 grid of points in the cell.
/// Weighted readings use it, because a cell at the edge of a crop still
/// carries most of its sign.
pub fn coverage(size: u32, hypothesis: Hypothesis, shape: (usize, usize, usize)) -> Vec<f32> {
    let inside = shown(size, hypothesis);
    let samples = COVERAGE_SAMPLES;
    per_cell(size, shape, |x0, y0, x1, y1| {
        let mut hits = 0usize;
        for j in 0..samples {
            for i in 0..samples {
                let x = x0 + (x1 - x0) * (i as f32 + 0.5) / samples as f32;
                let y = y0 + (y1 - y0) * (j as f32 + 0.5) / samples as f32;
                hits += usize::from(inside(x, y));
            }
        }
        hits as f32 / (samples * samples) as f32
    })
}

/// Applies `cell` to the pixel bounds `(x0, y0, x1, y1)` of every latent
/// cell, repeated for each channel, in row-major element order.
fn per_cell<T: Clone>(
    size: u32,
    (channels, rows, cols): (usize, usize, usize),
    cell: impl Fn(f32, f32, f32, f32) -> T,
) -> Vec<T> {
    let edge = size as f32 / cols.max(1) as f32;
    let one_channel: Vec<T> = (0..rows)
        .flat_map(|row| (0..cols).map(move |col| (row, col)))
        .map(|(row, col)| {
            let (x0, y0) = (col as f32 * edge, row as f32 * edge);
            cell(x0, y0, x0 + edge, y0 + edge)
        })
        .collect();
    (0..channels).flat_map(|_| one_channel.clone()).collect()
}

/// Returns a test of whether a point of a `size`-pixel image undone by
/// `hypothesis` shows what the suspect image showed, rather than a fill.
fn shown(size: u32, hypothesis: Hypothesis) -> Box<dyn Fn(f32, f32) -> bool> {
    match hypothesis {
        Hypothesis::Identity | Hypothesis::Flip => Box::new(|_, _| true),
        Hypothesis::CentreCrop(share) => {
            let (offset, inner) = crop_square(size, share);
            let (low, high) = (offset as f32, (offset + inner) as f32);
            Box::new(move |x, y| x >= low && x <= high && y >= low && y <= high)
        }
        Hypothesis::Rotation(degrees) => {
            let centre = size as f32 / 2.0;
            let (sin, cos) = degrees.to_radians().sin_cos();
            // A point of the undone image came from inside the frame when
            // rotating it by the hypothesis lands inside the frame.
            Box::new(move |x, y| {
                let (dx, dy) = (x - centre, y - centre);
                let (rx, ry) = (cos * dx + sin * dy + centre, -sin * dx + cos * dy + centre);
                (0.0..=size as f32).contains(&rx) && (0.0..=size as f32).contains(&ry)
            })
        }
    }
}

/// Returns the centre square that a crop to `share` of the edge came
/// from, as its first pixel and its edge in pixels of a `size`-pixel image.
fn crop_square(size: u32, share: f32) -> (u32, u32) {
    let inner = ((size as f32 * share).round() as u32).clamp(1, size);
    ((size - inner) / 2, inner)
}

/// Shrinks the image back to the centre square it would have come from
/// and fills the rest by mirroring that square at its edges. Mirrored
/// content keeps the texture statistics the model was trained on. So the
/// square's own cells invert better than next to a flat fill, by about 2
/// points of agreement after a 0.6 crop.
fn uncrop(input: &RgbImage, share: f32) -> RgbImage {
    let size = input.width();
    let (offset, inner) = crop_square(size, share);
    let small = imageops::resize(input, inner, inner, FilterType::Triangle);
    RgbImage::from_fn(size, size, |x, y| {
        let (sx, sy) = (mirror(x, offset, inner), mirror(y, offset, inner));
        *small.get_pixel(sx, sy)
    })
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
        assert_eq!(crop_square(64, 0.5), (16, 32));
        let image = uncrop(&input, 0.5);
        assert_eq!(image.get_pixel(32, 32).0, [200, 10, 10]);
        assert_eq!(image.get_pixel(2, 2).0, [200, 10, 10]);
    }

    #[test]
    fn uncrop_mirrors_the_square_outward() {
        let input = RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 0]));
        let image = uncrop(&input, 0.5);
        let (low, high) = (16, 48);
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

    #[test]
    fn coverage_counts_the_shown_share_of_each_cell() {
        // A 0.6 crop of 64 pixels came from pixels 13 to 51; cells are 4
        // pixels wide, so cell 3 (12 to 16) shows three quarters.
        let shape = (2, 16, 16);
        let shares = coverage(64, Hypothesis::CentreCrop(0.6), shape);
        assert_eq!(shares.len(), 2 * 16 * 16);
        let at = |channel: usize, row: usize, col: usize| shares[channel * 256 + row * 16 + col];
        assert_eq!(at(0, 8, 8), 1.0);
        assert_eq!(at(0, 8, 3), 0.75);
        assert_eq!(at(1, 12, 8), 0.75);
        assert_eq!(at(0, 3, 3), 0.5625);
        assert_eq!(at(1, 0, 0), 0.0);
        assert_eq!(at(0, 8, 2), 0.0);

        // Whole cells are exactly those with full coverage here.
        let (_, covered) = undo(&RgbImage::new(64, 64), Hypothesis::CentreCrop(0.6), shape);
        for (share, whole) in shares.iter().zip(&covered) {
            assert_eq!(*share == 1.0, *whole);
        }
        assert!(
            coverage(64, Hypothesis::Flip, shape)
                .iter()
                .all(|&s| s == 1.0)
        );
    }

    #[test]
    fn rotation_coverage_falls_towards_the_corners() {
        let shares = coverage(64, Hypothesis::Rotation(10.0), (1, 16, 16));
        let at = |row: usize, col: usize| shares[row * 16 + col];
        assert_eq!(at(8, 8), 1.0);
        assert!(at(0, 0) < 0.5, "corner {}", at(0, 0));
        assert!(at(0, 8) > 0.5, "top edge {}", at(0, 8));
    }

    /// Marked outputs of the built-in model, cropped or rotated as the
    /// default hypotheses expect, are traced to their serials among 50;
    /// an unmarked output cropped the same way is not detected.
    #[test]
    fn cropped_and_rotated_outputs_are_traced() {
        use crate::engine::{SampleOptions, builtin};
        use crate::watermark::attack::Attack;
        use crate::watermark::noise::NoiseStream;
        use crate::watermark::{WatermarkKey, initial_latent, plain_latent};
        use candle_core::{Device, Tensor};

        let model = builtin::load(&Device::Cpu).unwrap();
        let config = model.config();
        let (c, h, w) = config.latent_shape();
        let key = WatermarkKey::new([3; 32]);
        let values: Vec<f32> = [
            initial_latent(&key, 11, 111, c * h * w),
            initial_latent(&key, 12, 112, c * h * w),
            plain_latent(113, c * h * w),
        ]
        .concat();
        let noise = Tensor::from_vec(values, (3, c, h, w), &Device::Cpu).unwrap();
        let prompts = [
            "a red circle above a blue square",
            "a yellow star left of a green triangle",
            "a red circle above a blue square",
        ];
        let options = SampleOptions {
            steps: config.default_steps,
            guidance: config.default_guidance,
            layout: true,
        };
        let latents = model
            .sample(&noise, &prompts, &options, &mut |_| {})
            .unwrap();
        let images = model.decode_latents(&latents).unwrap();

        let serials: Vec<u64> = (1..=50).collect();
        let candidates = [Candidates {
            key: &key,
            serials: &serials,
        }];
        let settings = ScanSettings::standard(InversionOptions {
            steps: config.detection_steps(),
            refinements: 0,
        });
        let mut rng = NoiseStream::new(5);
        let cases = [
            (0, Attack::CentreCrop(0.8), Some(11)),
            (1, Attack::Rotate(5.0), Some(12)),
            (2, Attack::CentreCrop(0.8), None),
        ];
        for (index, attack, serial) in cases {
            let attacked = attack.apply(&images[index], &mut rng);
            let detection = scan(&model, &attacked, &candidates, &settings).unwrap();
            assert_eq!(detection.readings, 9);
            assert_eq!(
                detection.payload.map(|p| p.serial),
                serial,
                "image {index} under {attack:?}: {detection:?}"
            );
        }
    }
}
