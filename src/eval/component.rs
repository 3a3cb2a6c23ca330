//! Connected regions of one colour and their measurements.

use image::{GrayImage, Luma};
use imageproc::point::Point;
use imageproc::region_labelling::{Connectivity, connected_components};

/// One 8-connected region of pixels of a single colour.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Number of pixels.
    pub area: usize,
    /// Mean pixel centre `(x, y)`, in pixels from the top-left corner.
    pub centroid: (f32, f32),
    /// Axis-aligned bounding box `(x_min, y_min, x_max, y_max)`, inclusive.
    pub bbox: (u32, u32, u32, u32),
    /// Pixel coordinates `(x, y)` of the region.
    pub pixels: Vec<(u32, u32)>,
}

impl Component {
    /// Builds the measurements of a region from its pixels; `None` when
    /// there are none.
    fn from_pixels(pixels: Vec<(u32, u32)>) -> Option<Self> {
        let first = *pixels.first()?;
        let mut bbox = (first.0, first.1, first.0, first.1);
        let (mut sum_x, mut sum_y) = (0f64, 0f64);
        for &(x, y) in &pixels {
            bbox = (bbox.0.min(x), bbox.1.min(y), bbox.2.max(x), bbox.3.max(y));
            sum_x += f64::from(x);
            sum_y += f64::from(y);
        }
        let n = pixels.len() as f64;
        Some(Self {
            area: pixels.len(),
            centroid: ((sum_x / n) as f32 + 0.5, (sum_y / n) as f32 + 0.5),
            bbox,
            pixels,
        })
    }

    /// Area of the bounding box in pixels.
    pub fn bbox_area(&self) -> usize {
        let (x0, y0, x1, y1) = self.bbox;
        (x1 - x0 + 1) as usize * (y1 - y0 + 1) as usize
    }

    /// Pixel centres as points, for hull computations.
    pub(super) fn points(&self) -> Vec<Point<i32>> {
        self.pixels
            .iter()
            .map(|&(x, y)| Point::new(x as i32, y as i32))
            .collect()
    }
}

/// Finds the 8-connected regions of the pixels whose label is `colour`,
/// largest first (ties in the order of their first pixel, row-major).
///
/// `labels` holds one label per pixel of a `width` x `height` image in
/// row-major order; the caller keeps the image under 2^32 pixels, the limit
/// of imageproc's labelling.
pub(super) fn components(
    labels: &[Option<usize>],
    width: u32,
    height: u32,
    colour: usize,
) -> Vec<Component> {
    let mask = GrayImage::from_fn(width, height, |x, y| {
        let index = y as usize * width as usize + x as usize;
        Luma([u8::from(
            labels.get(index).copied().flatten() == Some(colour),
        )])
    });
    let regions = connected_components(&mask, Connectivity::Eight, Luma([0u8]));

    let mut pixels: Vec<Vec<(u32, u32)>> = Vec::new();
    for (x, y, label) in regions.enumerate_pixels() {
        let label = label.0[0] as usize;
        if label == 0 {
            continue;
        }
        if pixels.len() < label {
            pixels.resize(label, Vec::new());
        }
        pixels[label - 1].push((x, y));
    }

    let mut found: Vec<Component> = pixels
        .into_iter()
        .filter_map(Component::from_pixels)
        .collect();
    found.sort_by_key(|c| std::cmp::Reverse(c.area));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_split_and_sort_by_area() {
        let (width, height) = (8u32, 4u32);
        let mut labels = vec![None; (width * height) as usize];
        // A 2x2 block at the left and a 3x3 block at the right, colour 1,
        // and a lone pixel of colour 2 between them.
        for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            labels[y * 8 + x] = Some(1);
        }
        for y in 0..3 {
            for x in 5..8 {
                labels[y * 8 + x] = Some(1);
            }
        }
        labels[3] = Some(2);

        let found = components(&labels, width, height, 1);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].area, 9);
        assert_eq!(found[0].bbox, (5, 0, 7, 2));
        assert_eq!(found[0].centroid, (6.5, 1.5));
        assert_eq!(found[1].area, 4);
        assert_eq!(found[1].bbox_area(), 4);

        let other = components(&labels, width, height, 2);
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].area, 1);
    }

    #[test]
    fn diagonal_pixels_join_one_component() {
        let labels = vec![Some(0), None, None, Some(0)];
        let found = components(&labels, 2, 2, 0);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].area, 2);
    }

    #[test]
    fn empty_image_has_no_components() {
        assert!(components(&[], 0, 0, 0).is_empty());
    }
}
