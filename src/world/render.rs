//! Rasterisation of scenes with 4x4 supersampling, so that shape edges are
//! anti-aliased the same way at every image size.

use image::{Rgb, RgbImage};

use super::{Background, Placement, Scene, Shape};

/// Subsamples per pixel along each axis.
const SUPERSAMPLE: u32 = 4;

/// Renders a scene to a `size` x `size` RGB image.
pub fn render(scene: &Scene, size: u32) -> RgbImage {
    let scale = 1.0 / (size * SUPERSAMPLE) as f32;
    RgbImage::from_fn(size, size, |px, py| {
        let mut sum = [0u32; 3];
        for sy in 0..SUPERSAMPLE {
            for sx in 0..SUPERSAMPLE {
                let x = ((px * SUPERSAMPLE + sx) as f32 + 0.5) * scale;
                let y = ((py * SUPERSAMPLE + sy) as f32 + 0.5) * scale;
                let colour = colour_at(scene, x, y);
                for c in 0..3 {
                    sum[c] += colour[c] as u32;
                }
            }
        }
        let n = (SUPERSAMPLE * SUPERSAMPLE) as f32;
        let centre = (
            (px as f32 + 0.5) / size as f32,
            (py as f32 + 0.5) / size as f32,
        );
        let grain = scene.texture.offset_at(centre.0, centre.1);
        let level = |c: usize| (sum[c] as f32 / n + grain[c]).round().clamp(0.0, 255.0) as u8;
        Rgb([level(0), level(1), level(2)])
    })
}

/// Returns the colour at a point in unit coordinates. Later shapes cover
/// earlier ones.
fn colour_at(scene: &Scene, x: f32, y: f32) -> [u8; 3] {
    let mut colour = background_at(&scene.background, x, y);
    for placement in &scene.placements {
        if contains(placement, x, y) {
            colour = placement.object.colour.rgb();
        }
    }
    colour
}

fn background_at(background: &Background, x: f32, y: f32) -> [u8; 3] {
    match *background {
        Background::Plain(colour) => colour,
        Background::TwoTone {
            first,
            second,
            vertical,
            split,
        } => {
            let along = if vertical { x } else { y };
            if along < split { first } else { second }
        }
    }
}

/// Returns whether the point lies inside the placed shape.
fn contains(p: &Placement, x: f32, y: f32) -> bool {
    // Rotate the point into the shape's frame, with y up.
    let (dx, dy) = (x - p.x, p.y - y);
    let (sin, cos) = p.angle.sin_cos();
    let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
    let r = p.radius;
    match p.object.shape {
        Shape::Circle => u * u + v * v <= r * r,
        Shape::Square => {
            // A square inscribed in the circle, axis-aligned (squares are
            // not rotated, so that they stay squares and not diamonds).
            let half = r * std::f32::consts::FRAC_1_SQRT_2;
            dx.abs() <= half && dy.abs() <= half
        }
        Shape::Triangle => in_polygon(&regular_polygon(3, r, 1.0), u, v),
        Shape::Star => in_star(r, u, v),
    }
}

/// Vertices of a regular polygon with one vertex straight up.
fn regular_polygon(sides: usize, radius: f32, scale: f32) -> Vec<(f32, f32)> {
    (0..sides)
        .map(|i| {
            let theta =
                std::f32::consts::FRAC_PI_2 + i as f32 * std::f32::consts::TAU / sides as f32;
            (radius * scale * theta.cos(), radius * scale * theta.sin())
        })
        .collect()
}

/// Point-in-convex-polygon for counter-clockwise vertices.
fn in_polygon(vertices: &[(f32, f32)], u: f32, v: f32) -> bool {
    (0..vertices.len()).all(|i| {
        let (x0, y0) = vertices[i];
        let (x1, y1) = vertices[(i + 1) % vertices.len()];
        (x1 - x0) * (v - y0) - (y1 - y0) * (u - x0) >= 0.0
    })
}

/// Tests a five-pointed star: its inner pentagon plus five triangular
/// points.
fn in_star(radius: f32, u: f32, v: f32) -> bool {
    let inner = radius * 0.45;
    let step = std::f32::consts::TAU / 10.0;
    let vertex = |k: usize| {
        let theta = std::f32::consts::FRAC_PI_2 + k as f32 * step;
        let length = if k.is_multiple_of(2) { radius } else { inner };
        (length * theta.cos(), length * theta.sin())
    };
    let pentagon: Vec<(f32, f32)> = (0..5).map(|i| vertex(2 * i + 1)).collect();
    if in_polygon(&pentagon, u, v) {
        return true;
    }
    (0..5).any(|i| {
        let triangle = [vertex((2 * i + 9) % 10), vertex(2 * i), vertex(2 * i + 1)];
        // These three vertices run clockwise, so test against the reversed order.
        in_polygon(&[triangle[0], triangle[2], triangle[1]], u, v) || in_polygon(&triangle, u, v)
    })
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn scene(shape: Shape) -> Scene {
        let object = Object {
            shape,
            colour: Colour::Red,
            size: Size::Large,
        };
        Scene {
            spec: SceneSpec::Single(object),
            background: Background::Plain([20, 20, 20]),
            placements: vec![Placement {
                object,
                x: 0.5,
                y: 0.5,
                radius: 0.3,
                angle: 0.0,
            }],
            texture: Texture::none(),
        }
    }

    /// Covered area in pixels, counting partly covered edge pixels by their
    /// share (red goes from 20 on the background to 220 inside).
    fn covered(image: &image::RgbImage) -> f32 {
        image.pixels().map(|p| (p.0[0] as f32 - 20.0) / 200.0).sum()
    }

    #[test]
    fn shape_areas_match_geometry() {
        let size = 64.0f32;
        let r = 0.3 * size;
        let expected = [
            (Shape::Circle, std::f32::consts::PI * r * r),
            (Shape::Square, 2.0 * r * r),
            (Shape::Triangle, 3.0 * 3f32.sqrt() / 4.0 * r * r),
        ];
        for (shape, area) in expected {
            let found = covered(&render(&scene(shape), 64));
            assert!(
                (found - area).abs() / area < 0.02,
                "{shape:?}: {found} vs {area}"
            );
        }
        // Ten triangles between the centre, an outer and an inner vertex.
        let star_area = 10.0 * 0.5 * r * (0.45 * r) * 36f32.to_radians().sin();
        let star = covered(&render(&scene(Shape::Star), 64));
        assert!(
            (star - star_area).abs() / star_area < 0.02,
            "star: {star} vs {star_area}"
        );
    }

    #[test]
    fn background_shows_outside_shapes() {
        let image = render(&scene(Shape::Circle), 64);
        assert_eq!(image.get_pixel(0, 0).0, [20, 20, 20]);
        assert_eq!(image.get_pixel(32, 32).0, [220, 30, 30]);
    }
}
