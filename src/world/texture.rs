//! Surface grain: smooth random fields added to every rendered pixel.
//!
//! A latent watermark lives in whatever part of an image depends on the
//! sampler's initial noise. In flat colour fields nothing does, so a model
//! trained on them has no room for one: its outputs for different initial
//! latents differ only in a few shape positions, and inversion recovers few
//! of the latent's signs. The grain gives every image content that a model
//! must draw from its noise. It is smooth at the scale of the autoencoder's
//! latent cells (four pixels at 64x64), where re-encoding and resizing keep
//! it. The grey part of the grain leaves a pixel's chroma unchanged, so the
//! evaluator's colour classification does not see it.

use crate::watermark::noise::NoiseStream;

/// Cells across the image of each grey octave, and its weight.
const GREY_OCTAVES: [(usize, f32); 2] = [(8, 1.0), (16, 0.6)];
/// Cells across the image of the chroma fields.
const CHROMA_CELLS: usize = 8;
/// Standard deviation of the grey grain, in 8-bit levels.
pub const GREY_LEVELS: f32 = 14.0;
/// Standard deviation of each chroma component, in 8-bit levels.
pub const CHROMA_LEVELS: f32 = 3.0;

/// Standard deviation of a smoothed lattice of unit-variance values,
/// averaged over the cell. Along one axis the weights (1 - s, s) with
/// s = 3t^2 - 2t^3 give a variance of 1 - 2 E[s] + 2 E[s^2] = 26/35. The
/// two axes multiply, so the variance is (26/35)^2.
const SMOOTHED_STD: f32 = 26.0 / 35.0;

/// Lattice values of one smooth random field on the unit square.
#[derive(Debug, Clone, PartialEq)]
struct Lattice {
    cells: usize,
    /// `(cells + 1)^2` values, row-major.
    values: Vec<f32>,
}

impl Lattice {
    fn sample(cells: usize, rng: &mut NoiseStream) -> Self {
        let values = (0..(cells + 1) * (cells + 1))
            .map(|_| rng.next_normal() as f32)
            .collect();
        Self { cells, values }
    }

    /// Value at `(x, y)` in unit coordinates, by bicubic-smoothed bilinear
    /// interpolation (continuous with a continuous slope).
    fn at(&self, x: f32, y: f32) -> f32 {
        let n = self.cells;
        let (fx, fy) = (x.clamp(0.0, 1.0) * n as f32, y.clamp(0.0, 1.0) * n as f32);
        let (ix, iy) = ((fx as usize).min(n - 1), (fy as usize).min(n - 1));
        let (tx, ty) = (smooth(fx - ix as f32), smooth(fy - iy as f32));
        let v = |i: usize, j: usize| self.values[j * (n + 1) + i];
        let top = v(ix, iy) * (1.0 - tx) + v(ix + 1, iy) * tx;
        let bottom = v(ix, iy + 1) * (1.0 - tx) + v(ix + 1, iy + 1) * tx;
        top * (1.0 - ty) + bottom * ty
    }
}

/// The smoothstep weight 3t^2 - 2t^3.
fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// The grain of one scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Texture {
    grey: Vec<(Lattice, f32)>,
    /// Two fields along the chroma plane's axes.
    chroma: [Lattice; 2],
    /// Scale of the whole grain for this scene (0 draws none).
    strength: f32,
}

impl Texture {
    /// Draws a scene's grain. `strength` scales it (1 is the world's usual
    /// grain).
    pub fn sample(rng: &mut NoiseStream, strength: f32) -> Self {
        let grey = GREY_OCTAVES
            .iter()
            .map(|&(cells, weight)| (Lattice::sample(cells, rng), weight))
            .collect();
        let chroma = [
            Lattice::sample(CHROMA_CELLS, rng),
            Lattice::sample(CHROMA_CELLS, rng),
        ];
        Self {
            grey,
            chroma,
            strength,
        }
    }

    /// A texture that adds nothing.
    pub fn none() -> Self {
        Self {
            grey: Vec::new(),
            chroma: [
                Lattice {
                    cells: 1,
                    values: vec![0.0; 4],
                },
                Lattice {
                    cells: 1,
                    values: vec![0.0; 4],
                },
            ],
            strength: 0.0,
        }
    }

    /// The offset, in 8-bit levels per RGB channel, at `(x, y)`.
    pub fn offset_at(&self, x: f32, y: f32) -> [f32; 3] {
        if self.strength == 0.0 {
            return [0.0; 3];
        }
        let norm: f32 = GREY_OCTAVES.iter().map(|(_, w)| w * w).sum::<f32>().sqrt() * SMOOTHED_STD;
        let grey: f32 = self.grey.iter().map(|(l, w)| w * l.at(x, y)).sum::<f32>() / norm;
        let grey = grey * GREY_LEVELS;
        let (u, v) = (
            self.chroma[0].at(x, y) / SMOOTHED_STD * CHROMA_LEVELS,
            self.chroma[1].at(x, y) / SMOOTHED_STD * CHROMA_LEVELS,
        );
        // (u, v) are coordinates in the plane orthogonal to grey: u along
        // (2, -1, -1) / sqrt(6) and v along (0, 1, -1) / sqrt(2).
        let (a, b) = (u / 6f32.sqrt(), v / 2f32.sqrt());
        let s = self.strength;
        [s * (grey + 2.0 * a), s * (grey - a + b), s * (grey - a - b)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grain_has_its_nominal_spread() {
        let mut rng = NoiseStream::new(3);
        let mut sum = 0.0f64;
        let mut sum_sq = 0.0f64;
        let mut count = 0.0f64;
        for _ in 0..40 {
            let texture = Texture::sample(&mut rng, 1.0);
            for j in 0..32 {
                for i in 0..32 {
                    let [r, g, b] = texture.offset_at(i as f32 / 31.0, j as f32 / 31.0);
                    let grey = ((r + g + b) / 3.0) as f64;
                    sum += grey;
                    sum_sq += grey * grey;
                    count += 1.0;
                }
            }
        }
        let std = (sum_sq / count - (sum / count).powi(2)).sqrt();
        assert!(
            (std - GREY_LEVELS as f64).abs() < 0.25 * GREY_LEVELS as f64,
            "grey spread {std}"
        );
    }

    #[test]
    fn grain_is_smooth() {
        let texture = Texture::sample(&mut NoiseStream::new(5), 1.0);
        let a = texture.offset_at(0.500, 0.5);
        let b = texture.offset_at(0.501, 0.5);
        for c in 0..3 {
            assert!((a[c] - b[c]).abs() < 1.0, "{a:?} {b:?}");
        }
    }

    #[test]
    fn no_texture_adds_nothing() {
        assert_eq!(Texture::none().offset_at(0.3, 0.7), [0.0; 3]);
    }
}
