//! Attribute evaluation: reads an image of the procedural world back with
//! classical image analysis and checks it against the scene specification
//! that its caption describes.
//!
//! Each pixel is labelled background or one of the eight shape colours by its
//! hue (see `colour.rs`). Each requested object is the largest 8-connected
//! region of its colour, provided it covers at least [`MIN_AREA_FRACTION`]
//! of the image, and its shape comes from its angular symmetry and
//! bounding-box fill (see `shape.rs`). The relation of a pair follows from
//! the two regions' centroids. The evaluation is deterministic and needs no model, so the
//! same image always gets the same verdict.
//!
//! Attributes are read from the region of the requested colour only. An
//! object drawn in the wrong colour therefore fails its colour, its shape
//! and any relation that involves it.

mod colour;
mod component;
mod layout;
mod shape;
mod tally;

pub use component::Component;
pub use layout::relation_between;
pub use shape::ShapeFeatures;
pub use tally::Tally;

use image::RgbImage;

use crate::world::{Object, Relation, SceneSpec, Shape, Size};

/// Smallest share of the image that a region must cover to count as an
/// object. A small world shape covers about 1% of the image, and stray
/// misclassified edge pixels cover far less.
// NOTE: on cluttered images (an untrained model's colour noise) a blob of
// this size exists for most colours, so colour_ok is then too lenient; the
// evaluator does not yet penalise extra objects or clutter.
pub const MIN_AREA_FRACTION: f32 = 0.003;

/// Largest image that [`evaluate`] accepts, in pixels (4096x4096). The
/// evaluator keeps about 24 bytes per pixel, and imageproc's region
/// labelling panics on images of 2^32 pixels or more.
pub const MAX_PIXELS: u64 = 1 << 24;

/// Errors of the evaluator.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The image has more pixels than [`MAX_PIXELS`]; the caller should
    /// downscale it first.
    #[error(
        "image of {width}x{height} pixels is too large to evaluate (at most {max} pixels); downscale it first"
    )]
    ImageTooLarge { width: u32, height: u32, max: u64 },
}

/// The region found for one requested object.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundObject {
    /// Number of pixels of the region.
    pub area: usize,
    /// Centre of mass `(x, y)` in pixels from the top-left corner.
    pub centroid: (f32, f32),
    /// Measurements the shape was decided from.
    pub features: ShapeFeatures,
    /// The shape the region was classified as.
    pub shape: Shape,
}

/// The verdict on one image against its scene specification.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Per requested object, first one first: whether a large enough region
    /// of its colour exists.
    pub colour_ok: Vec<bool>,
    /// Per requested object: whether that region has the requested shape.
    pub shape_ok: Vec<bool>,
    /// For a pair, whether the first region lies in the requested relation
    /// to the second; `None` for a single object.
    pub relation_ok: Option<bool>,
    /// Whether every attribute above is correct.
    pub all_ok: bool,
    /// Per requested object, the region found for it, if any.
    pub found: Vec<Option<FoundObject>>,
    /// For a pair with both regions found, the relation of their centroids.
    pub found_relation: Option<Relation>,
}

/// Evaluates `image` against `spec`.
///
/// # Errors
///
/// [`EvalError::ImageTooLarge`] when the image has more than
/// [`MAX_PIXELS`] pixels. An empty image is no error: it contains no
/// objects, so every attribute fails.
pub fn evaluate(image: &RgbImage, spec: &SceneSpec) -> Result<Evaluation, EvalError> {
    let (width, height) = image.dimensions();
    check_dimensions(width, height)?;

    let objects = spec.objects();
    let labels = colour::label_pixels(image);
    let min_area = (MIN_AREA_FRACTION * width as f32 * height as f32)
        .ceil()
        .max(1.0) as usize;
    let found = layout::find_objects(&objects, &labels, width, height, min_area);

    let colour_ok: Vec<bool> = found.iter().map(Option::is_some).collect();
    let shape_ok: Vec<bool> = objects
        .iter()
        .zip(&found)
        .map(|(object, found)| found.as_ref().is_some_and(|f| f.shape == object.shape))
        .collect();
    let found_relation = match found.as_slice() {
        [Some(first), Some(second), ..] => Some(relation_between(first.centroid, second.centroid)),
        _ => None,
    };
    let relation_ok = spec
        .relation()
        .map(|(_, relation, _)| found_relation == Some(relation));
    let all_ok = colour_ok.iter().chain(&shape_ok).all(|&ok| ok) && relation_ok != Some(false);

    tracing::trace!(?colour_ok, ?shape_ok, ?relation_ok, "evaluated image");
    Ok(Evaluation {
        colour_ok,
        shape_ok,
        relation_ok,
        all_ok,
        found,
        found_relation,
    })
}

fn check_dimensions(width: u32, height: u32) -> Result<(), EvalError> {
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(EvalError::ImageTooLarge {
            width,
            height,
            max: MAX_PIXELS,
        });
    }
    Ok(())
}

/// Checks whether a region of `area` pixels, on an image of `pixels`
/// pixels, fits `size` better than the other size class. Only ties between
/// assignments depend on it.
fn fits_size(size: Size, area: usize, pixels: f32) -> bool {
    // Circumscribed radii are 0.09-0.12 (small) and 0.16-0.19 (large) of the
    // edge, so a region's area over the image is about 0.5 r^2 (star) to
    // pi r^2 (circle); 0.03 of the image lies between the classes.
    let share = area as f32 / pixels;
    match size {
        Size::Small => share < 0.03,
        Size::Large => share >= 0.03,
    }
}

/// Scores how well a region matches an object: shape first, then size.
fn match_score(object: &Object, found: &FoundObject, pixels: f32) -> u32 {
    2 * u32::from(found.shape == object.shape)
        + u32::from(fits_size(object.size, found.area, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{Colour, Language, SceneSampler, Split, caption, render};

    /// Renders 250 scenes of each split at 64x64, optionally blurred, and
    /// tallies the evaluator's verdicts; prints every scene it gets wrong.
    fn tally_rendered(blur_sigma: Option<f32>) -> Tally {
        let mut sampler = SceneSampler::new(2024);
        let mut tally = Tally::default();
        for i in 0..500 {
            let split = if i % 2 == 0 {
                Split::Train
            } else {
                Split::HeldOut
            };
            let scene = sampler.sample(split);
            let mut image = render(&scene, 64);
            if let Some(sigma) = blur_sigma {
                image = imageproc::filter::gaussian_blur_f32(&image, sigma);
            }
            let evaluation = evaluate(&image, scene.spec()).expect("64x64 is within limits");
            if !evaluation.all_ok {
                let text = caption(scene.spec(), Language::English);
                println!("wrong: {text}: {evaluation:?}");
            }
            tally.add(&evaluation);
        }
        println!(
            "blur {blur_sigma:?}: colour {:.1}%, shape {:.1}%, relation {:.1}%, all {:.1}% \
             ({} objects, {} pairs, {} scenes)",
            tally.colour_percent().unwrap_or(0.0),
            tally.shape_percent().unwrap_or(0.0),
            tally.relation_percent().unwrap_or(0.0),
            tally.all_percent().unwrap_or(0.0),
            tally.objects,
            tally.pairs,
            tally.scenes,
        );
        tally
    }

    fn assert_accurate(tally: &Tally) {
        let colour = tally.colour_percent().unwrap_or(0.0);
        let shape = tally.shape_percent().unwrap_or(0.0);
        let relation = tally.relation_percent().unwrap_or(0.0);
        assert!(colour >= 99.0, "colour accuracy {colour:.1}% is under 99%");
        assert!(shape >= 99.0, "shape accuracy {shape:.1}% is under 99%");
        assert!(
            relation >= 99.0,
            "relation accuracy {relation:.1}% is under 99%"
        );
        assert!(
            tally.pairs > 100,
            "only {} pairs among the scenes",
            tally.pairs
        );
    }

    #[test]
    fn rendered_scenes_read_back() {
        assert_accurate(&tally_rendered(None));
    }

    #[test]
    fn blurred_scenes_read_back() {
        assert_accurate(&tally_rendered(Some(0.7)));
    }

    fn object(shape: Shape, colour: Colour, size: Size) -> Object {
        Object {
            shape,
            colour,
            size,
        }
    }

    fn pair_scene(first: Object, relation: Relation, second: Object) -> crate::world::Scene {
        SceneSampler::new(9).place(SceneSpec::Pair {
            first,
            relation,
            second,
        })
    }

    #[test]
    fn same_colour_pair_reads_back() {
        let first = object(Shape::Star, Colour::Blue, Size::Large);
        let second = object(Shape::Square, Colour::Blue, Size::Small);
        for relation in [
            Relation::LeftOf,
            Relation::RightOf,
            Relation::Above,
            Relation::Below,
        ] {
            let scene = pair_scene(first, relation, second);
            let evaluation = evaluate(&render(&scene, 64), scene.spec()).expect("within limits");
            assert!(evaluation.all_ok, "{relation:?}: {evaluation:?}");
        }
    }

    #[test]
    fn wrong_relation_fails() {
        let first = object(Shape::Circle, Colour::Red, Size::Large);
        let second = object(Shape::Triangle, Colour::Green, Size::Large);
        let scene = pair_scene(first, Relation::LeftOf, second);
        let image = render(&scene, 64);
        let requested = SceneSpec::Pair {
            first,
            relation: Relation::RightOf,
            second,
        };
        let evaluation = evaluate(&image, &requested).expect("within limits");
        assert_eq!(evaluation.colour_ok, vec![true, true]);
        assert_eq!(evaluation.shape_ok, vec![true, true]);
        assert_eq!(evaluation.relation_ok, Some(false));
        assert_eq!(evaluation.found_relation, Some(Relation::LeftOf));
        assert!(!evaluation.all_ok);
    }

    #[test]
    fn missing_object_fails_colour_shape_and_relation() {
        let present = object(Shape::Square, Colour::Yellow, Size::Large);
        let scene = SceneSampler::new(4).place(SceneSpec::Single(present));
        let image = render(&scene, 64);
        let absent = object(Shape::Circle, Colour::Purple, Size::Small);
        let requested = SceneSpec::Pair {
            first: present,
            relation: Relation::Above,
            second: absent,
        };
        let evaluation = evaluate(&image, &requested).expect("within limits");
        assert_eq!(evaluation.colour_ok, vec![true, false]);
        assert_eq!(evaluation.shape_ok, vec![true, false]);
        assert_eq!(evaluation.relation_ok, Some(false));
        assert_eq!(evaluation.found[1], None);
        assert!(!evaluation.all_ok);
    }

    #[test]
    fn wrong_shape_fails_shape_only() {
        let drawn = object(Shape::Star, Colour::Pink, Size::Large);
        let scene = SceneSampler::new(6).place(SceneSpec::Single(drawn));
        let image = render(&scene, 64);
        let requested = SceneSpec::Single(object(Shape::Circle, Colour::Pink, Size::Large));
        let evaluation = evaluate(&image, &requested).expect("within limits");
        assert_eq!(evaluation.colour_ok, vec![true]);
        assert_eq!(evaluation.shape_ok, vec![false]);
        assert_eq!(
            evaluation.found[0].as_ref().map(|f| f.shape),
            Some(Shape::Star)
        );
        assert!(!evaluation.all_ok);
    }

    #[test]
    fn grey_and_empty_images_contain_nothing() {
        let spec = SceneSpec::Single(object(Shape::Circle, Colour::Red, Size::Small));
        for image in [
            RgbImage::from_pixel(64, 64, image::Rgb([120, 120, 120])),
            RgbImage::new(0, 0),
        ] {
            let evaluation = evaluate(&image, &spec).expect("within limits");
            assert_eq!(evaluation.colour_ok, vec![false]);
            assert_eq!(evaluation.shape_ok, vec![false]);
            assert!(!evaluation.all_ok);
        }
    }

    #[test]
    fn stray_pixels_are_no_object() {
        let mut image = RgbImage::from_pixel(64, 64, image::Rgb([70, 70, 70]));
        for (x, y) in [(3, 3), (4, 3), (3, 4), (50, 20)] {
            image.put_pixel(x, y, image::Rgb(Colour::Red.rgb()));
        }
        let spec = SceneSpec::Single(object(Shape::Square, Colour::Red, Size::Small));
        let evaluation = evaluate(&image, &spec).expect("within limits");
        assert_eq!(evaluation.colour_ok, vec![false]);
    }

    #[test]
    fn oversized_image_is_rejected() {
        assert!(check_dimensions(1 << 12, 1 << 12).is_ok());
        let error = check_dimensions(1 << 16, 1 << 16).unwrap_err();
        assert!(error.to_string().contains("65536x65536"), "{error}");
    }
}
