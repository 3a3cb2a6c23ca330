//! Per-pixel colour classification.
//!
//! The renderer mixes a shape colour with a grey background along shape
//! edges, and the decoder blurs in the same way. A pixel `p = a·C + b·(1,1,1)`
//! keeps the chroma of `C` (its component orthogonal to the grey axis),
//! scaled by the coverage `a`. So the hue angle of a pixel's chroma names its
//! colour whatever the grey behind it, and the length of the chroma relative
//! to that colour's chroma estimates how much of the pixel the shape covers.

use image::RgbImage;

use crate::world::{COLOURS, Colour};

/// Share of a pixel that a shape must cover for the pixel to count as part
/// of it. One half makes the counted area match the geometric area.
pub(super) const MIN_COVERAGE: f32 = 0.5;

/// A colour's position in the chroma plane: hue angle in radians and chroma
/// length in sRGB units.
#[derive(Debug, Clone, Copy)]
struct Chroma {
    hue: f32,
    length: f32,
}

/// Projects an sRGB value onto the plane orthogonal to the grey axis.
fn chroma(rgb: [u8; 3]) -> Chroma {
    let [r, g, b] = rgb.map(f32::from);
    let u = r - (g + b) / 2.0;
    let v = (g - b) * 3f32.sqrt() / 2.0;
    Chroma {
        hue: v.atan2(u),
        length: u.hypot(v),
    }
}

/// Smallest absolute difference between two angles, in radians.
fn angle_between(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(std::f32::consts::TAU);
    d.min(std::f32::consts::TAU - d)
}

/// Classifies one pixel: the index into [`COLOURS`] of the nearest hue, or
/// `None` where the pixel is background (its chroma, projected onto that
/// hue, covers less than [`MIN_COVERAGE`] of the colour's chroma).
pub(super) fn classify(rgb: [u8; 3]) -> Option<usize> {
    let pixel = chroma(rgb);
    if pixel.length == 0.0 {
        return None;
    }
    let (index, angle) = COLOURS
        .iter()
        .map(|c| angle_between(pixel.hue, chroma(c.rgb()).hue))
        .enumerate()
        .min_by(|x, y| x.1.total_cmp(&y.1))?;
    let reference = chroma(COLOURS[index].rgb());
    let coverage = pixel.length * angle.cos() / reference.length;
    (coverage >= MIN_COVERAGE).then_some(index)
}

/// Labels every pixel of `image` in row-major order with its colour index,
/// or `None` for background.
pub(super) fn label_pixels(image: &RgbImage) -> Vec<Option<usize>> {
    image.pixels().map(|p| classify(p.0)).collect()
}

/// The index of `colour` in [`COLOURS`].
pub(super) fn index_of(colour: Colour) -> usize {
    COLOURS
        .iter()
        .position(|&c| c == colour)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREYS: [u8; 4] = [20, 70, 120, 175];

    fn mix(colour: [u8; 3], grey: u8, coverage: f32) -> [u8; 3] {
        colour.map(|c| (coverage * c as f32 + (1.0 - coverage) * grey as f32).round() as u8)
    }

    #[test]
    fn pure_colours_classify_as_themselves() {
        for (i, colour) in COLOURS.iter().enumerate() {
            assert_eq!(classify(colour.rgb()), Some(i), "{colour:?}");
        }
    }

    #[test]
    fn greys_classify_as_background() {
        for level in 0..=255u8 {
            assert_eq!(classify([level; 3]), None, "grey {level}");
        }
    }

    #[test]
    fn edge_mixes_keep_colour_or_background() {
        for (i, colour) in COLOURS.iter().enumerate() {
            for grey in GREYS {
                let mostly = mix(colour.rgb(), grey, 0.7);
                assert_eq!(classify(mostly), Some(i), "{colour:?} 70% over {grey}");
                let faint = mix(colour.rgb(), grey, 0.3);
                assert_eq!(classify(faint), None, "{colour:?} 30% over {grey}");
            }
        }
    }

    #[test]
    fn index_of_matches_order() {
        for (i, colour) in COLOURS.iter().enumerate() {
            assert_eq!(index_of(*colour), i);
        }
    }
}
