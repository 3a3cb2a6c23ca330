//! Shape classification of one region from scale-free measures.
//!
//! The decision rests on angular harmonics about the centroid. A regular
//! shape with k-fold symmetry has them only at multiples of k. So the third
//! marks a triangle, the fifth a star and the fourth a square, and a disc
//! has none. They do not change under rotation and survive the blur of a
//! decoder far better than outline measures. Extent (area over the
//! axis-aligned bounding box: 1 for a square, pi/4 for a disc) and spread
//! (the normalised polar moment) separate squares whose corners blurring has
//! rounded from discs. Solidity is measured for reports only.
//!
//! Thresholds come from renders of 1,500 sampled scenes at 64x64, with and
//! without a Gaussian blur of sigma 0.7.

use imageproc::geometry::{arc_length, contour_area, convex_hull};

use super::component::Component;
use crate::world::Shape;

/// Harmonic strength above which a region has 3- or 5-fold symmetry. A
/// rendered triangle's third harmonic and star's fifth are 0.34 or more at
/// 64x64, and no other shape's reach 0.2.
const POINTED_HARMONIC: f32 = 0.25;
/// Fourth-harmonic strength above which a region is a square on its own;
/// rendered discs stay under 0.12.
const SQUARE_HARMONIC: f32 = 0.15;
/// Weaker fourth harmonic that, with [`SQUARE_EXTENT`], still marks a square
/// whose corners blurring has rounded.
const ROUNDED_SQUARE_HARMONIC: f32 = 0.08;
/// Extent above which a region with [`ROUNDED_SQUARE_HARMONIC`] may be a
/// square; a disc fills pi/4 of its bounding box.
const SQUARE_EXTENT: f32 = 0.85;
/// Spread above which a region with [`ROUNDED_SQUARE_HARMONIC`] is a square:
/// small discs measure 0.1600 to 0.1610 and squares 1/6 = 0.1667.
const SQUARE_SPREAD: f32 = 0.162;

/// Measurements that decide a region's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapeFeatures {
    /// Area over the estimated pixel count of the convex hull: about 1 for
    /// convex shapes and 0.6 to 0.85 for stars. The hull's pixel count is
    /// its area over the pixel centres plus half its perimeter plus one,
    /// which removes most of the bias of digitisation on small regions.
    pub solidity: f32,
    /// Area over the bounding box area.
    pub extent: f32,
    /// Polar second moment over the squared area, `(mu20 + mu02) / A^2`:
    /// 1/(2 pi) = 0.159 for a disc, 1/6 for a square, sqrt(3)/9 = 0.192 for
    /// an equilateral triangle, and more for shapes with long points.
    pub spread: f32,
    /// Strength of the 3-, 4- and 5-fold angular harmonics of the region
    /// about its centroid, from 0 (none) to 1 (see [`harmonics`]).
    pub harmonics: [f32; 3],
}

/// Measures a region.
pub fn features(component: &Component) -> ShapeFeatures {
    let hull = convex_hull(component.points());
    let hull_area = contour_area(&hull) + arc_length(&hull, true) / 2.0 + 1.0;
    let area = component.area as f64;
    ShapeFeatures {
        solidity: (area / hull_area) as f32,
        extent: (area / component.bbox_area() as f64) as f32,
        spread: spread(component) as f32,
        harmonics: harmonics(component),
    }
}

/// Computes `(mu20 + mu02) / A^2`, counting each pixel as a unit square
/// (which adds 1/6 per pixel to the sum of the central moments).
fn spread(component: &Component) -> f64 {
    let (cx, cy) = (
        f64::from(component.centroid.0),
        f64::from(component.centroid.1),
    );
    let sum: f64 = component
        .pixels
        .iter()
        .map(|&(x, y)| {
            let (dx, dy) = (f64::from(x) + 0.5 - cx, f64::from(y) + 0.5 - cy);
            dx * dx + dy * dy + 1.0 / 6.0
        })
        .sum();
    let area = component.area as f64;
    sum / (area * area)
}

/// Measures the 3-, 4- and 5-fold symmetry of a region as
/// `|sum r^2 e^(i k theta)| / sum r^2` over its pixels, in polar coordinates
/// about the centroid. A shape with k-fold symmetry has harmonics only at
/// multiples of k, so a triangle shows the third and no fifth, a star the
/// fifth and no third, a square the fourth, and a disc none. The measure
/// does not change under rotation.
fn harmonics(component: &Component) -> [f32; 3] {
    let (cx, cy) = (
        f64::from(component.centroid.0),
        f64::from(component.centroid.1),
    );
    let mut sums = [(0f64, 0f64); 3];
    let mut total = 0f64;
    for &(x, y) in &component.pixels {
        let (dx, dy) = (f64::from(x) + 0.5 - cx, f64::from(y) + 0.5 - cy);
        let weight = dx * dx + dy * dy;
        let theta = dy.atan2(dx);
        total += weight;
        for (k, sum) in (3..).zip(&mut sums) {
            let (sin, cos) = (f64::from(k) * theta).sin_cos();
            sum.0 += weight * cos;
            sum.1 += weight * sin;
        }
    }
    if total == 0.0 {
        return [0.0; 3];
    }
    sums.map(|(re, im)| (re.hypot(im) / total) as f32)
}

/// Names the shape that the measurements fit best: a star or triangle by
/// its 5- or 3-fold symmetry, then a square by its 4-fold symmetry and
/// filled bounding box, and otherwise a circle.
pub fn classify(features: ShapeFeatures) -> Shape {
    let [third, fourth, fifth] = features.harmonics;
    if fifth >= POINTED_HARMONIC && fifth > third {
        Shape::Star
    } else if third >= POINTED_HARMONIC {
        Shape::Triangle
    } else if fourth >= SQUARE_HARMONIC
        || (fourth >= ROUNDED_SQUARE_HARMONIC
            && features.extent >= SQUARE_EXTENT
            && features.spread >= SQUARE_SPREAD)
    {
        Shape::Square
    } else {
        Shape::Circle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::component::components;

    fn region(inside: impl Fn(f32, f32) -> bool) -> Component {
        let size = 64u32;
        let labels: Vec<Option<usize>> = (0..size * size)
            .map(|i| {
                let (x, y) = ((i % size) as f32 + 0.5, (i / size) as f32 + 0.5);
                inside(x - 32.0, y - 32.0).then_some(0)
            })
            .collect();
        components(&labels, size, size, 0).swap_remove(0)
    }

    #[test]
    fn disc_is_circle() {
        let f = features(&region(|x, y| x * x + y * y <= 100.0));
        assert!(f.solidity > 0.9, "{f:?}");
        assert_eq!(classify(f), Shape::Circle, "{f:?}");
    }

    #[test]
    fn block_is_square() {
        let f = features(&region(|x, y| x.abs() <= 7.0 && y.abs() <= 7.0));
        assert!(f.extent > 0.99, "{f:?}");
        assert_eq!(classify(f), Shape::Square, "{f:?}");
    }

    #[test]
    fn upright_triangle_is_triangle() {
        // Apex at the top, base 20 pixels wide and 18 tall.
        let f = features(&region(|x, y| {
            y <= 9.0 && y >= -9.0 && x.abs() <= (y + 9.0) * 10.0 / 18.0
        }));
        assert_eq!(classify(f), Shape::Triangle, "{f:?}");
    }

    #[test]
    fn cross_has_low_solidity() {
        let f = features(&region(|x, y| {
            (x.abs() <= 3.0 && y.abs() <= 12.0) || (y.abs() <= 3.0 && x.abs() <= 12.0)
        }));
        assert!(f.solidity < 0.7, "{f:?}");
    }

    #[test]
    fn five_pointed_region_is_star() {
        // The radius swings between 4 and 12 pixels five times around.
        let f = features(&region(|x, y| {
            let r = 8.0 + 4.0 * (5.0 * y.atan2(x)).cos();
            x * x + y * y <= r * r
        }));
        assert!(f.harmonics[2] > 0.3, "{f:?}");
        assert!(f.harmonics[0] < 0.1, "{f:?}");
        assert_eq!(classify(f), Shape::Star, "{f:?}");
    }
}
