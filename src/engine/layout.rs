//! Layout guidance: where each shape of a prompt should go, imposed on the
//! UNet's cross-attention while the layout forms.
//!
//! The built-in model binds colours and shapes to their words well but
//! places them where the initial noise happens to favour, whatever
//! relation the prompt states. When a prompt reads as a scene of the
//! procedural world (`world::parse_words`), layout guidance works in three
//! parts:
//!
//! 1. **Candidates.** The world's own sampler lays the scene out
//!    `candidates` times, each layout true to the stated relation.
//! 2. **Choice.** The sampler runs the first `probe` share of its steps
//!    without guidance and decodes its estimate of the clean image. The
//!    candidate whose circles hold the most of each object's colour in
//!    that estimate wins, so the layout goes along with the noise where
//!    the relation allows.
//! 3. **Bias.** Sampling starts again from the same noise. Over the first
//!    `share` of the steps, the conditional half of classifier-free
//!    guidance gets biased cross-attention scores (see `region_biases`).
//!
//! It changes no weight, and prompts that do not parse are sampled as
//! before.

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::EngineError;
use super::tokenizer::Tokenizer;
use crate::world::{Placement, SceneSampler, parse_words};

/// Settings of layout guidance, from a model's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayoutGuidance {
    /// Bias added to, or taken from, the attention scores of an object's
    /// words.
    pub strength: f64,
    /// Share of the sampling steps, from the first, that carry the bias.
    pub share: f64,
    /// Layouts drawn per prompt; the probe picks one. With 1, or with no
    /// probe, the first is used.
    #[serde(default = "one")]
    pub candidates: usize,
    /// Share of the sampling steps run without guidance before the choice.
    #[serde(default)]
    pub probe: f64,
}

fn one() -> usize {
    1
}

impl LayoutGuidance {
    /// Number of leading steps of a `steps`-step run that carry the bias.
    pub fn active_steps(&self, steps: usize) -> usize {
        ((self.share * steps as f64).ceil() as usize).min(steps)
    }

    /// Number of probe steps of a `steps`-step run; 0 when there is no
    /// choice to make.
    pub fn probe_steps(&self, steps: usize) -> usize {
        if self.candidates < 2 {
            return 0;
        }
        ((self.probe * steps as f64).ceil() as usize).min(steps)
    }

    /// Checks that the values are usable.
    pub fn validate(&self) -> Result<(), EngineError> {
        if !(self.strength.is_finite() && self.strength >= 0.0) {
            return Err(EngineError::InvalidConfig(format!(
                "layout_guidance.strength is {}; use a finite value of at least 0",
                self.strength
            )));
        }
        for (name, value) in [("share", self.share), ("probe", self.probe)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(EngineError::InvalidConfig(format!(
                    "layout_guidance.{name} is {value}; use a value from 0 to 1"
                )));
            }
        }
        if !(1..=MAX_CANDIDATES).contains(&self.candidates) {
            return Err(EngineError::InvalidConfig(format!(
                "layout_guidance.candidates is {}; use 1 to {MAX_CANDIDATES}",
                self.candidates
            )));
        }
        Ok(())
    }
}

/// Upper bound on candidate layouts, which keeps a bad configuration from
/// stalling generation.
const MAX_CANDIDATES: usize = 256;

/// One object of a planned layout.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedObject {
    /// Token positions of the words that name the object (size, colour,
    /// shape), counting BOS as 0.
    pub tokens: Vec<usize>,
    /// Centre, in unit image coordinates (y down).
    pub y: f32,
    pub x: f32,
    /// Radius of the circle the object should fill.
    pub radius: f32,
    /// The colour the object is drawn in.
    pub rgb: [u8; 3],
}

impl PlannedObject {
    fn covers(&self, y: f32, x: f32) -> bool {
        (y - self.y).hypot(x - self.x) <= self.radius
    }
}

impl PlannedObject {
    /// The circle the object should fill.
    pub fn circle(&self) -> Circle {
        Circle {
            y: self.y,
            x: self.x,
            radius: self.radius,
        }
    }
}

/// A circle of a layout, in unit image coordinates (0 to 1, y down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub y: f32,
    pub x: f32,
    pub radius: f32,
}

impl From<&Placement> for Circle {
    fn from(placement: &Placement) -> Self {
        Self {
            y: placement.y,
            x: placement.x,
            radius: placement.radius,
        }
    }
}

/// Builds the layout input of a UNet with layout channels: `(batch,
/// channels, height, width)`, one layout per latent. Channel `k` contains the
/// disc of the layout's `k`-th circle, which is the `k`-th object in
/// caption order. A cell counts 1 when its centre lies more than half a
/// cell inside the circle, 0 when more than half a cell outside, and
/// linearly in between. Channels without a circle, and every channel of an
/// empty layout, are zero. A layout with more circles than `channels` is
/// rejected.
pub fn layout_maps(
    layouts: &[Vec<Circle>],
    channels: usize,
    (height, width): (usize, usize),
) -> Result<Tensor, EngineError> {
    let cells = height * width;
    // Distances are measured in cells of the finer axis.
    let cells_per_unit = height.max(width) as f32;
    for (index, layout) in layouts.iter().enumerate() {
        if layout.len() > channels {
            return Err(EngineError::InvalidConfig(format!(
                "layout {index} has {} objects but the UNet has {channels} layout channels",
                layout.len()
            )));
        }
    }
    let mut maps = vec![0f32; layouts.len() * channels * cells];
    // The maximum keeps `chunks_mut` from a zero size when there is
    // nothing to fill.
    let per_latent = (channels * cells).max(1);
    for (layout, slots) in layouts.iter().zip(maps.chunks_mut(per_latent)) {
        for (circle, map) in layout.iter().zip(slots.chunks_mut(cells.max(1))) {
            for (cell, value) in map.iter_mut().enumerate() {
                let y = ((cell / width) as f32 + 0.5) / height as f32;
                let x = ((cell % width) as f32 + 0.5) / width as f32;
                let inside = circle.radius - (y - circle.y).hypot(x - circle.x);
                *value = (inside * cells_per_unit + 0.5).clamp(0.0, 1.0);
            }
        }
    }
    Tensor::from_vec(maps, (layouts.len(), channels, height, width), &Device::Cpu)
        .map_err(|source| EngineError::candle("building layout channels", source))
}

/// Draws `count` layouts of one prompt from the stream of `seed`, or none
/// when the prompt does not read as a scene of the world.
pub fn plans(
    tokenizer: &Tokenizer,
    prompt: &str,
    seed: u64,
    count: usize,
) -> Vec<Vec<PlannedObject>> {
    let words = tokenizer.words(prompt);
    let Some(parsed) = parse_words(&words) else {
        return Vec::new();
    };
    let mut sampler = SceneSampler::new(seed);
    let Some(spec) = parsed.spec(|| sampler.draw_size()) else {
        return Vec::new();
    };
    // Token 0 is BOS and the last one kept is EOS.
    let last_word_token = tokenizer.max_len() - 2;
    (0..count)
        .map(|_| {
            let scene = sampler.place(spec);
            parsed
                .objects
                .iter()
                .zip(&scene.placements)
                .map(|(object, placement)| PlannedObject {
                    tokens: object
                        .words
                        .clone()
                        .map(|word| word + 1)
                        .filter(|&token| token <= last_word_token)
                        .collect(),
                    y: placement.y,
                    x: placement.x,
                    radius: placement.radius,
                    rgb: object.colour.rgb(),
                })
                .collect()
        })
        .collect()
}

/// Returns the index of the candidate that best fits `estimate`, the
/// probe's decoded guess of the clean image: the one whose circles hold
/// the largest share of each object's colour, summed over objects. Ties
/// go to the earlier candidate.
pub fn choose(candidates: &[Vec<PlannedObject>], estimate: &RgbImage) -> usize {
    let (width, height) = estimate.dimensions();
    let mut best = (0, f32::NEG_INFINITY);
    for (index, plan) in candidates.iter().enumerate() {
        let mut score = 0.0;
        for object in plan {
            let (mut inside, mut total) = (0f32, 0f32);
            for (px, py, pixel) in estimate.enumerate_pixels() {
                let weight = colour_weight(pixel.0, object.rgb);
                total += weight;
                let y = (py as f32 + 0.5) / height as f32;
                let x = (px as f32 + 0.5) / width as f32;
                if object.covers(y, x) {
                    inside += weight;
                }
            }
            if total > 0.0 {
                score += inside / total;
            }
        }
        if score > best.1 {
            best = (index, score);
        }
    }
    best.0
}

/// Scores how much a pixel looks like `target`: 1 at the same colour,
/// falling linearly to 0 at a Euclidean RGB distance of `COLOUR_REACH`.
fn colour_weight(pixel: [u8; 3], target: [u8; 3]) -> f32 {
    let distance = pixel
        .iter()
        .zip(target)
        .map(|(&a, b)| (a as f32 - b as f32).powi(2))
        .sum::<f32>()
        .sqrt();
    (1.0 - distance / COLOUR_REACH).max(0.0)
}

/// RGB distance at which a pixel stops counting as an object's colour.
/// Most named colours lie further apart than this, but a few pairs (yellow
/// and orange) and the lightest grey with pink lie closer.
const COLOUR_REACH: f32 = 90.0;

/// Builds the region biases of a batch, one layout per latent (empty for
/// prompts without one), as `(batch, 2 * len, height, width)`. The first
/// `len` token slots are the prompt's and the last `len` the empty
/// prompt's, which the sampler appends to the context:
///
/// - a cell inside an object's circle adds `strength` to that object's
///   words and takes it from the other objects' words and from the empty
///   prompt's tokens;
/// - any other cell takes `strength` from every object's words, and reads
///   the prompt's other words and the empty prompt evenly, which keeps the
///   objects' colours out of the background.
///
/// Words that name no object keep their scores inside objects. A latent
/// without a layout shuts the empty prompt's slots.
pub fn region_biases(
    layouts: &[Vec<PlannedObject>],
    len: usize,
    (height, width): (usize, usize),
    strength: f64,
) -> Result<Tensor, EngineError> {
    let cells = height * width;
    let strength = strength as f32;
    let mut biases = vec![0f32; layouts.len() * 2 * len * cells];
    for (layout, slots) in layouts.iter().zip(biases.chunks_mut(2 * len * cells)) {
        if layout.is_empty() {
            // Without a layout, the appended empty-prompt tokens get no
            // attention at all, and the prompt reads as it would alone.
            slots[len * cells..].fill(SHUT);
            continue;
        }
        for cell in 0..cells {
            let y = ((cell / width) as f32 + 0.5) / height as f32;
            let x = ((cell % width) as f32 + 0.5) / width as f32;
            let in_object = layout.iter().any(|o| o.covers(y, x));
            if in_object {
                for token in len..2 * len {
                    slots[token * cells + cell] = -strength;
                }
            }
            for object in layout {
                let bias = if object.covers(y, x) {
                    strength
                } else {
                    -strength
                };
                for &token in &object.tokens {
                    slots[token * cells + cell] = bias;
                }
            }
        }
    }
    Tensor::from_vec(
        biases,
        (layouts.len(), 2 * len, height, width),
        &Device::Cpu,
    )
    .map_err(|source| EngineError::candle("planning layouts", source))
}

/// A bias that leaves a token's attention weight at exactly zero in f32
/// and f16 alike.
const SHUT: f32 = -1.0e4;

/// Seed of a latent's layouts: the first eight bytes of the SHA-256 of its
/// values as little-endian f32, so that the layout follows from the same
/// record fields as the latent itself.
pub fn layout_seed(latent: &[f32]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(b"mmgen layout v1");
    for value in latent {
        hasher.update(value.to_le_bytes());
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::vocabulary;
    use image::Rgb;

    fn tokenizer() -> Tokenizer {
        Tokenizer::new(&vocabulary(), 32)
    }

    fn object(tokens: &[usize], y: f32, x: f32, rgb: [u8; 3]) -> PlannedObject {
        PlannedObject {
            tokens: tokens.to_vec(),
            y,
            x,
            radius: 0.15,
            rgb,
        }
    }

    #[test]
    fn plans_keep_the_stated_relation() {
        let tokenizer = tokenizer();
        let plans = plans(&tokenizer, "a red circle above a large blue square", 9, 50);
        assert_eq!(plans.len(), 50);
        for plan in &plans {
            // BOS, then: a red circle above a large blue square.
            assert_eq!(plan[0].tokens, [2, 3]);
            assert_eq!(plan[1].tokens, [6, 7, 8]);
            assert_eq!(plan[0].rgb, crate::world::Colour::Red.rgb());
            assert!(plan[0].y < plan[1].y, "{plan:?}");
            assert!(
                plan[1].radius >= 0.16,
                "a large shape got radius {}",
                plan[1].radius
            );
        }
        assert_ne!(plans[0], plans[1], "candidates should differ");
        let chinese = &plans_of("一个红色圆在蓝色正方形的下方")[0];
        assert_eq!(chinese.len(), 2);
        assert!(chinese[0].y > chinese[1].y, "{chinese:?}");
    }

    fn plans_of(prompt: &str) -> Vec<Vec<PlannedObject>> {
        plans(&tokenizer(), prompt, 3, 4)
    }

    #[test]
    fn prompts_outside_the_world_have_no_plan() {
        assert!(plans_of("a photo of a cat").is_empty());
        assert!(plans_of("a red circle and a blue square").is_empty());
        assert_eq!(plans_of("a green star").len(), 4);
    }

    #[test]
    fn biases_favour_words_inside_circles() {
        let layout = vec![
            object(&[2, 3], 0.3, 0.25, [255, 0, 0]),
            object(&[6, 7], 0.3, 0.75, [0, 0, 255]),
        ];
        let biases = region_biases(&[Vec::new(), layout], 32, (16, 16), 3.0).unwrap();
        assert_eq!(biases.dims(), &[2, 64, 16, 16]);
        let maps = biases.flatten_from(2).unwrap().to_vec3::<f32>().unwrap();
        assert!(maps[0][..32].iter().flatten().all(|&v| v == 0.0));
        assert!(maps[0][32..].iter().flatten().all(|&v| v == SHUT));
        let maps = &maps[1];
        // Cell (row 4, column 4) lies in the first circle, (4, 12) in the
        // second and (13, 8) in neither.
        let (first, second, background) = (4 * 16 + 4, 4 * 16 + 12, 13 * 16 + 8);
        for token in [2, 3] {
            assert_eq!(maps[token][first], 3.0);
            assert_eq!(maps[token][second], -3.0);
            assert_eq!(maps[token][background], -3.0);
        }
        assert_eq!(maps[6][second], 3.0);
        for token in [0, 1, 4, 5, 8, 31] {
            assert!(maps[token].iter().all(|&v| v == 0.0), "token {token}");
        }
        for empty_prompt_slot in &maps[32..64] {
            assert_eq!(empty_prompt_slot[first], -3.0);
            assert_eq!(empty_prompt_slot[background], 0.0);
        }
        let inside = maps[2].iter().filter(|&&v| v > 0.0).count();
        // A circle of radius 0.15 covers about 0.07 of the grid's 256 cells.
        assert!((14..=22).contains(&inside), "{inside} cells inside");
    }

    #[test]
    fn choice_follows_the_colours_of_the_estimate() {
        let mut estimate = RgbImage::from_pixel(64, 64, Rgb([90, 90, 90]));
        for (x, y, pixel) in estimate.enumerate_pixels_mut() {
            let near = |cx: f32, cy: f32| (x as f32 - cx).hypot(y as f32 - cy) < 8.0;
            if near(16.0, 48.0) {
                *pixel = Rgb([220, 30, 30]);
            } else if near(48.0, 16.0) {
                *pixel = Rgb([40, 70, 220]);
            }
        }
        let red = [220, 30, 30];
        let blue = [40, 70, 220];
        let fits = vec![
            object(&[2], 0.75, 0.25, red),
            object(&[5], 0.25, 0.75, blue),
        ];
        let swapped = vec![
            object(&[2], 0.25, 0.75, red),
            object(&[5], 0.75, 0.25, blue),
        ];
        let elsewhere = vec![object(&[2], 0.2, 0.2, red), object(&[5], 0.8, 0.8, blue)];
        let candidates = [swapped.clone(), elsewhere.clone(), fits.clone()];
        assert_eq!(choose(&candidates, &estimate), 2);
        assert_eq!(choose(&[fits, swapped, elsewhere.clone()], &estimate), 0);
        let grey = RgbImage::from_pixel(64, 64, Rgb([90, 90, 90]));
        assert_eq!(choose(&[elsewhere.clone(), elsewhere], &grey), 0);
    }

    fn circle(y: f32, x: f32, radius: f32) -> Circle {
        Circle { y, x, radius }
    }

    #[test]
    fn layout_maps_put_each_disc_in_its_channel() {
        let layouts = vec![
            vec![circle(0.25, 0.25, 0.15), circle(0.75, 0.75, 0.1)],
            Vec::new(),
            vec![
                circle(0.5, 0.5, 0.2),
                circle(0.2, 0.8, 0.1),
                circle(0.8, 0.2, 0.1),
            ],
        ];
        let maps = layout_maps(&layouts, 3, (16, 16)).unwrap();
        assert_eq!(maps.dims(), &[3, 3, 16, 16]);
        let maps = maps.flatten_from(2).unwrap().to_vec3::<f32>().unwrap();
        let at = |row: usize, column: usize| row * 16 + column;

        // First latent: object 0 at cells around (4, 4), object 1 around
        // (12, 12), nothing in channel 2.
        let first = &maps[0];
        assert_eq!(first[0][at(3, 3)], 1.0);
        assert_eq!(first[0][at(4, 4)], 1.0);
        assert_eq!(first[0][at(12, 12)], 0.0);
        assert_eq!(first[1][at(12, 12)], 1.0);
        assert_eq!(first[1][at(4, 4)], 0.0);
        assert_eq!(first[0][at(0, 15)], 0.0);
        assert!(first[2].iter().all(|&v| v == 0.0));
        // A radius of 0.15 covers about pi * 2.4^2 = 18 cells.
        let area: f32 = first[0].iter().sum();
        assert!((14.0..=23.0).contains(&area), "disc area {area}");
        assert!(first[0].iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(
            first[0].iter().any(|&v| v > 0.0 && v < 1.0),
            "the edge should be soft"
        );

        assert!(maps[1].iter().flatten().all(|&v| v == 0.0));

        let third = &maps[2];
        assert_eq!(third[0][at(8, 8)], 1.0);
        assert_eq!(third[1][at(3, 12)], 1.0);
        assert_eq!(third[1][at(12, 3)], 0.0);
        assert_eq!(third[2][at(12, 3)], 1.0);
        assert_eq!(third[2][at(3, 12)], 0.0);
    }

    #[test]
    fn layout_maps_reject_extra_objects() {
        let layout = vec![vec![circle(0.5, 0.5, 0.1); 4]];
        let err = layout_maps(&layout, 3, (16, 16)).unwrap_err().to_string();
        assert!(err.contains("4 objects"), "{err}");
        assert!(err.contains("3 layout channels"), "{err}");
    }

    #[test]
    fn planned_circles_follow_caption_order() {
        let plan = &plans_of("a red circle left of a blue square and a green star")[0];
        let circles: Vec<Circle> = plan.iter().map(PlannedObject::circle).collect();
        assert_eq!(circles.len(), 3);
        assert!(circles[0].x < circles[1].x, "{circles:?}");
        let maps = layout_maps(&[circles.clone()], 3, (16, 16)).unwrap();
        let maps = maps.flatten_from(2).unwrap().to_vec3::<f32>().unwrap();
        for (k, c) in circles.iter().enumerate() {
            let row = ((c.y * 16.0) as usize).min(15);
            let column = ((c.x * 16.0) as usize).min(15);
            assert!(maps[0][k][row * 16 + column] > 0.9, "object {k} at {c:?}");
        }
    }

    #[test]
    fn layout_seed_follows_the_latent() {
        let latent: Vec<f32> = (0..1024).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut other = latent.clone();
        other[1000] = -other[1000];
        assert_eq!(layout_seed(&latent), layout_seed(&latent.clone()));
        assert_ne!(layout_seed(&latent), layout_seed(&other));
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let good = LayoutGuidance {
            strength: 3.0,
            share: 0.5,
            candidates: 8,
            probe: 0.2,
        };
        good.validate().unwrap();
        let message = |bad: LayoutGuidance| bad.validate().unwrap_err().to_string();
        assert!(
            message(LayoutGuidance {
                strength: -1.0,
                ..good
            })
            .contains("strength is -1")
        );
        assert!(message(LayoutGuidance { share: 1.5, ..good }).contains("share is 1.5"));
        assert!(
            message(LayoutGuidance {
                probe: -0.1,
                ..good
            })
            .contains("probe is -0.1")
        );
        assert!(
            message(LayoutGuidance {
                candidates: 0,
                ..good
            })
            .contains("candidates is 0")
        );
        assert_eq!(good.active_steps(25), 13);
        assert_eq!(good.probe_steps(25), 5);
        assert_eq!(
            LayoutGuidance {
                candidates: 1,
                ..good
            }
            .probe_steps(25),
            0
        );
        assert_eq!(LayoutGuidance { share: 0.0, ..good }.active_steps(25), 0);
    }
}
