//! The procedural world of coloured shapes that the built-in model is
//! trained on: scenes, captions in English and Chinese, and rendering.
//!
//! A scene has one to three shapes; with two or three, the caption states
//! where the first lies relative to the second, and a third shape lies
//! anywhere else. A fixed set of colour-shape pairs and relation triples
//! never appears in the training split, so that an evaluation can ask for
//! combinations the model has not seen. Every surface carries a smooth
//! grain (see `texture.rs` for why).

mod parse;
mod render;
mod texture;

pub use parse::{NamedObject, ParsedPrompt, parse_words};
pub use render::render;
pub use texture::Texture;

use crate::watermark::noise::NoiseStream;

/// A shape that a scene can contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
}

/// A named shape colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Colour {
    Red,
    Orange,
    Yellow,
    Green,
    Cyan,
    Blue,
    Purple,
    Pink,
}

/// Position of the first shape of a two-shape scene relative to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    LeftOf,
    RightOf,
    Above,
    Below,
}

/// Shape size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    Small,
    Large,
}

/// Caption language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    English,
    Chinese,
}

/// Part of the world that a scene belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Scenes without any held-out combination.
    Train,
    /// Scenes with at least one held-out combination.
    HeldOut,
}

/// All shapes, in a fixed order.
pub const SHAPES: [Shape; 4] = [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Star];

/// All colours, in a fixed order.
pub const COLOURS: [Colour; 8] = [
    Colour::Red,
    Colour::Orange,
    Colour::Yellow,
    Colour::Green,
    Colour::Cyan,
    Colour::Blue,
    Colour::Purple,
    Colour::Pink,
];

/// All relations, in a fixed order.
pub const RELATIONS: [Relation; 4] = [
    Relation::LeftOf,
    Relation::RightOf,
    Relation::Above,
    Relation::Below,
];

/// Colour-shape pairs that never occur in the training split.
pub const HELD_OUT_PAIRS: [(Colour, Shape); 4] = [
    (Colour::Purple, Shape::Triangle),
    (Colour::Cyan, Shape::Star),
    (Colour::Orange, Shape::Square),
    (Colour::Green, Shape::Circle),
];

/// (first shape, relation, second shape) triples that never occur in the
/// training split.
pub const HELD_OUT_TRIPLES: [(Shape, Relation, Shape); 3] = [
    (Shape::Star, Relation::Below, Shape::Circle),
    (Shape::Triangle, Relation::LeftOf, Shape::Square),
    (Shape::Circle, Relation::Above, Shape::Triangle),
];

impl Shape {
    fn english(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
        }
    }

    fn chinese(self) -> &'static str {
        match self {
            Shape::Circle => "圆",
            Shape::Square => "正方形",
            Shape::Triangle => "三角形",
            Shape::Star => "星",
        }
    }
}

impl Colour {
    /// Returns the colour's sRGB value in rendered images.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 30],
            Colour::Orange => [245, 140, 20],
            Colour::Yellow => [240, 225, 40],
            Colour::Green => [40, 170, 60],
            Colour::Cyan => [40, 210, 220],
            Colour::Blue => [40, 70, 220],
            Colour::Purple => [140, 50, 190],
            Colour::Pink => [250, 130, 190],
        }
    }

    fn english(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Orange => "orange",
            Colour::Yellow => "yellow",
            Colour::Green => "green",
            Colour::Cyan => "cyan",
            Colour::Blue => "blue",
            Colour::Purple => "purple",
            Colour::Pink => "pink",
        }
    }

    fn chinese(self) -> &'static str {
        match self {
            Colour::Red => "红色",
            Colour::Orange => "橙色",
            Colour::Yellow => "黄色",
            Colour::Green => "绿色",
            Colour::Cyan => "青色",
            Colour::Blue => "蓝色",
            Colour::Purple => "紫色",
            Colour::Pink => "粉色",
        }
    }
}

impl Relation {
    fn english(self) -> &'static str {
        match self {
            Relation::LeftOf => "left of",
            Relation::RightOf => "right of",
            Relation::Above => "above",
            Relation::Below => "below",
        }
    }

    fn chinese(self) -> &'static str {
        match self {
            Relation::LeftOf => "左边",
            Relation::RightOf => "右边",
            Relation::Above => "上方",
            Relation::Below => "下方",
        }
    }
}

/// One shape of a scene as its caption describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Object {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
}

/// Content of a scene as its caption states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SceneSpec {
    /// One shape.
    Single(Object),
    /// Two shapes: `first` lies `relation` `second`.
    Pair {
        first: Object,
        relation: Relation,
        second: Object,
    },
    /// Three shapes: `first` lies `relation` `second`, and `third`, whose
    /// colour differs from both, lies anywhere else.
    Triple {
        first: Object,
        relation: Relation,
        second: Object,
        third: Object,
    },
}

impl SceneSpec {
    /// Returns the objects of the scene, first one first.
    pub fn objects(&self) -> Vec<Object> {
        match *self {
            SceneSpec::Single(object) => vec![object],
            SceneSpec::Pair { first, second, .. } => vec![first, second],
            SceneSpec::Triple {
                first,
                second,
                third,
                ..
            } => vec![first, second, third],
        }
    }

    /// Returns the stated relation `(first, relation, second)`, if any.
    pub fn relation(&self) -> Option<(Object, Relation, Object)> {
        match *self {
            SceneSpec::Single(_) => None,
            SceneSpec::Pair {
                first,
                relation,
                second,
            }
            | SceneSpec::Triple {
                first,
                relation,
                second,
                ..
            } => Some((first, relation, second)),
        }
    }

    /// Returns the split this specification belongs to.
    pub fn split(&self) -> Split {
        let held_pair = self
            .objects()
            .iter()
            .any(|o| HELD_OUT_PAIRS.contains(&(o.colour, o.shape)));
        let held_triple = self.relation().is_some_and(|(first, relation, second)| {
            HELD_OUT_TRIPLES.contains(&(first.shape, relation, second.shape))
        });
        if held_pair || held_triple {
            Split::HeldOut
        } else {
            Split::Train
        }
    }
}

/// Background of a scene: one grey level, or two split along an edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Background {
    Plain([u8; 3]),
    /// Two tones; `vertical` splits left from right, otherwise top from
    /// bottom, at `split` (a fraction of the edge).
    TwoTone {
        first: [u8; 3],
        second: [u8; 3],
        vertical: bool,
        split: f32,
    },
}

/// A placed shape, in unit coordinates of the image (0 to 1, y down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub object: Object,
    /// Centre x.
    pub x: f32,
    /// Centre y.
    pub y: f32,
    /// Radius of the circumscribed circle.
    pub radius: f32,
    /// Rotation in radians (triangles and stars).
    pub angle: f32,
}

/// A scene ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    spec: SceneSpec,
    pub background: Background,
    pub placements: Vec<Placement>,
    /// Grain added over the whole image.
    pub texture: Texture,
}

impl Scene {
    /// Returns what the scene's caption describes.
    pub fn spec(&self) -> &SceneSpec {
        &self.spec
    }
}

/// Background grey levels, all far from every shape colour in saturation
/// and far enough from black and white that the grain is rarely clipped.
const GREYS: [u8; 4] = [36, 84, 132, 180];

/// Attempts at placing a third shape clear of the other two before the
/// whole layout is drawn again.
const THIRD_SHAPE_ATTEMPTS: usize = 40;

/// A deterministic generator of scenes.
pub struct SceneSampler {
    rng: NoiseStream,
}

impl SceneSampler {
    /// Starts the generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: NoiseStream::with_domain(b"mmgen world v2", seed),
        }
    }

    /// Draws scenes until one of `split` comes up and returns it.
    pub fn sample(&mut self, split: Split) -> Scene {
        loop {
            let spec = self.sample_spec();
            if spec.split() == split {
                return self.place(spec);
            }
        }
    }

    /// Lays out a given specification with random positions, background
    /// and grain.
    pub fn place(&mut self, spec: SceneSpec) -> Scene {
        let background = self.sample_background();
        let placements = match spec {
            SceneSpec::Single(object) => vec![self.place_single(object)],
            SceneSpec::Pair {
                first,
                relation,
                second,
            } => self.place_pair(first, relation, second),
            SceneSpec::Triple {
                first,
                relation,
                second,
                third,
            } => self.place_triple(first, relation, second, third),
        };
        let strength = self.uniform(0.7, 1.3);
        let texture = Texture::sample(&mut self.rng, strength);
        Scene {
            spec,
            background,
            placements,
            texture,
        }
    }

    fn sample_spec(&mut self) -> SceneSpec {
        let first = self.sample_object();
        let count = match self.rng.next_below(10) {
            0..=2 => 1,
            3..=6 => 2,
            _ => 3,
        };
        if count == 1 {
            return SceneSpec::Single(first);
        }
        let second = loop {
            let candidate = self.sample_object();
            if (candidate.shape, candidate.colour) != (first.shape, first.colour) {
                break candidate;
            }
        };
        let relation = RELATIONS[self.rng.next_below(4) as usize];
        if count == 2 {
            return SceneSpec::Pair {
                first,
                relation,
                second,
            };
        }
        let third = loop {
            let candidate = self.sample_object();
            if candidate.colour != first.colour && candidate.colour != second.colour {
                break candidate;
            }
        };
        SceneSpec::Triple {
            first,
            relation,
            second,
            third,
        }
    }

    fn place_single(&mut self, object: Object) -> Placement {
        let radius = self.radius(object.size);
        let margin = radius + 0.04;
        Placement {
            object,
            x: self.uniform(margin, 1.0 - margin),
            y: self.uniform(margin, 1.0 - margin),
            radius,
            angle: self.angle(),
        }
    }

    /// Places a related pair, then the third shape where it overlaps
    /// neither; when no such place turns up, the pair is placed again.
    fn place_triple(
        &mut self,
        first: Object,
        relation: Relation,
        second: Object,
        third: Object,
    ) -> Vec<Placement> {
        loop {
            let mut placements = self.place_pair(first, relation, second);
            for _ in 0..THIRD_SHAPE_ATTEMPTS {
                let candidate = self.place_single(third);
                let clear = placements.iter().all(|p| {
                    let distance = (p.x - candidate.x).hypot(p.y - candidate.y);
                    distance > p.radius + candidate.radius + 0.03
                });
                if clear {
                    placements.push(candidate);
                    return placements;
                }
            }
        }
    }

    fn sample_object(&mut self) -> Object {
        Object {
            shape: SHAPES[self.rng.next_below(4) as usize],
            colour: COLOURS[self.rng.next_below(8) as usize],
            size: self.draw_size(),
        }
    }

    fn sample_background(&mut self) -> Background {
        let grey = |level: u8| [level, level, level];
        let first = GREYS[self.rng.next_below(4) as usize];
        if self.rng.next_below(2) == 0 {
            return Background::Plain(grey(first));
        }
        let second = loop {
            let level = GREYS[self.rng.next_below(4) as usize];
            if level != first {
                break level;
            }
        };
        Background::TwoTone {
            first: grey(first),
            second: grey(second),
            vertical: self.rng.next_below(2) == 0,
            split: self.uniform(0.3, 0.7),
        }
    }

    /// Places two shapes so that the relation is true with a clear margin:
    /// along its axis the centres are at least the two radii apart, and
    /// across it they differ by less than that.
    fn place_pair(&mut self, first: Object, relation: Relation, second: Object) -> Vec<Placement> {
        let (r1, r2) = (self.radius(first.size), self.radius(second.size));
        let gap = self.uniform(0.03, 0.10);
        let along = r1 + r2 + gap;
        let across = self.uniform(-0.08, 0.08);
        // Offset of the first centre from the second, in image axes.
        let (dx, dy) = match relation {
            Relation::LeftOf => (-along, across),
            Relation::RightOf => (along, across),
            Relation::Above => (across, -along),
            Relation::Below => (across, along),
        };
        let margin = 0.03;
        let x_low = (margin + r2).max(margin + r1 - dx);
        let x_high = (1.0 - margin - r2).min(1.0 - margin - r1 - dx);
        let y_low = (margin + r2).max(margin + r1 - dy);
        let y_high = (1.0 - margin - r2).min(1.0 - margin - r1 - dy);
        let x2 = self.uniform(x_low, x_high.max(x_low));
        let y2 = self.uniform(y_low, y_high.max(y_low));
        vec![
            Placement {
                object: first,
                x: x2 + dx,
                y: y2 + dy,
                radius: r1,
                angle: self.angle(),
            },
            Placement {
                object: second,
                x: x2,
                y: y2,
                radius: r2,
                angle: self.angle(),
            },
        ]
    }

    /// Draws a size, each one equally likely, for objects whose size a
    /// prompt leaves open.
    pub fn draw_size(&mut self) -> Size {
        if self.rng.next_below(2) == 0 {
            Size::Small
        } else {
            Size::Large
        }
    }

    fn radius(&mut self, size: Size) -> f32 {
        match size {
            Size::Small => self.uniform(0.09, 0.12),
            Size::Large => self.uniform(0.16, 0.19),
        }
    }

    /// Draws a small random rotation, so that triangles and stars stay
    /// upright enough to be named by their shape.
    fn angle(&mut self) -> f32 {
        self.uniform(-0.3, 0.3)
    }

    fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.rng.next_uniform() as f32
    }
}

/// Writes the caption of a scene in one language.
pub fn caption(spec: &SceneSpec, language: Language) -> String {
    match language {
        Language::English => english_caption(spec),
        Language::Chinese => chinese_caption(spec),
    }
}

/// Writes one caption per id for benchmarks, from a scene sampler started
/// at `seed`: Chinese for odd ids and English for even ones, with held-out
/// scenes for ids divisible by four and training scenes otherwise.
pub fn benchmark_captions(ids: &[u64], seed: u64) -> Vec<String> {
    let mut sampler = SceneSampler::new(seed);
    ids.iter()
        .map(|&id| {
            let split = if id % 4 == 0 {
                Split::HeldOut
            } else {
                Split::Train
            };
            let language = if id % 2 == 0 {
                Language::English
            } else {
                Language::Chinese
            };
            caption(sampler.sample(split).spec(), language)
        })
        .collect()
}

fn english_caption(spec: &SceneSpec) -> String {
    let phrase = |o: &Object| {
        let size = match o.size {
            Size::Small => "small",
            Size::Large => "large",
        };
        format!("a {size} {} {}", o.colour.english(), o.shape.english())
    };
    match spec {
        SceneSpec::Single(object) => phrase(object),
        SceneSpec::Pair {
            first,
            relation,
            second,
        } => format!(
            "{} {} {}",
            phrase(first),
            relation.english(),
            phrase(second)
        ),
        SceneSpec::Triple {
            first,
            relation,
            second,
            third,
        } => format!(
            "{} {} {} and {}",
            phrase(first),
            relation.english(),
            phrase(second),
            phrase(third)
        ),
    }
}

fn chinese_caption(spec: &SceneSpec) -> String {
    let phrase = |o: &Object| {
        let size = match o.size {
            Size::Small => "小",
            Size::Large => "大",
        };
        format!("{size}{}{}", o.colour.chinese(), o.shape.chinese())
    };
    match spec {
        SceneSpec::Single(object) => format!("一个{}", phrase(object)),
        SceneSpec::Pair {
            first,
            relation,
            second,
        } => format!(
            "一个{}在{}的{}",
            phrase(first),
            phrase(second),
            relation.chinese()
        ),
        SceneSpec::Triple {
            first,
            relation,
            second,
            third,
        } => format!(
            "一个{}在{}的{}，还有一个{}",
            phrase(first),
            phrase(second),
            relation.chinese(),
            phrase(third)
        ),
    }
}

/// Lists every word that a caption can contain, English and Chinese, in a
/// fixed order. It is the tokenizer vocabulary of models trained on this
/// world.
pub fn vocabulary() -> Vec<&'static str> {
    let mut words = vec![
        "a", "small", "large", "left", "right", "of", "above", "below", "and",
    ];
    words.extend(COLOURS.iter().map(|c| c.english()));
    words.extend(SHAPES.iter().map(|s| s.english()));
    words.extend(["一个", "小", "大", "在", "的", "，", "还有"]);
    words.extend(COLOURS.iter().map(|c| c.chinese()));
    words.extend(SHAPES.iter().map(|s| s.chinese()));
    words.extend(RELATIONS.iter().map(|r| r.chinese()));
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tokenizer::{Tokenizer, UNK};

    #[test]
    fn captions_in_both_languages() {
        let spec = SceneSpec::Pair {
            first: Object {
                shape: Shape::Circle,
                colour: Colour::Red,
                size: Size::Large,
            },
            relation: Relation::Above,
            second: Object {
                shape: Shape::Square,
                colour: Colour::Blue,
                size: Size::Small,
            },
        };
        assert_eq!(
            caption(&spec, Language::English),
            "a large red circle above a small blue square"
        );
        assert_eq!(
            caption(&spec, Language::Chinese),
            "一个大红色圆在小蓝色正方形的上方"
        );
    }

    #[test]
    fn triple_captions_in_both_languages() {
        let object = |shape, colour, size| Object {
            shape,
            colour,
            size,
        };
        let spec = SceneSpec::Triple {
            first: object(Shape::Circle, Colour::Red, Size::Small),
            relation: Relation::LeftOf,
            second: object(Shape::Square, Colour::Blue, Size::Large),
            third: object(Shape::Star, Colour::Green, Size::Small),
        };
        assert_eq!(
            caption(&spec, Language::English),
            "a small red circle left of a large blue square and a small green star"
        );
        assert_eq!(
            caption(&spec, Language::Chinese),
            "一个小红色圆在大蓝色正方形的左边，还有一个小绿色星"
        );
    }

    #[test]
    fn third_shape_overlaps_neither() {
        let mut sampler = SceneSampler::new(8);
        let mut triples = 0;
        for _ in 0..400 {
            let scene = sampler.sample(Split::Train);
            let SceneSpec::Triple {
                first,
                second,
                third,
                ..
            } = *scene.spec()
            else {
                continue;
            };
            triples += 1;
            assert_ne!(third.colour, first.colour);
            assert_ne!(third.colour, second.colour);
            let c = scene.placements[2];
            for p in &scene.placements[..2] {
                let distance = (p.x - c.x).hypot(p.y - c.y);
                assert!(distance > p.radius + c.radius, "{p:?} {c:?}");
            }
        }
        assert!(triples > 60, "only {triples} triples in 400 scenes");
    }

    #[test]
    fn vocabulary_covers_every_caption() {
        let tokenizer = Tokenizer::new(&vocabulary(), 32);
        let mut sampler = SceneSampler::new(7);
        for i in 0..300 {
            let split = if i % 2 == 0 {
                Split::Train
            } else {
                Split::HeldOut
            };
            let scene = sampler.sample(split);
            for language in [Language::English, Language::Chinese] {
                let text = caption(scene.spec(), language);
                let encoding = tokenizer.encode(&text);
                assert!(
                    encoding.unknown.is_empty(),
                    "{text}: {:?}",
                    encoding.unknown
                );
                assert!(!encoding.ids.contains(&UNK), "{text}");
                assert!(!encoding.truncated, "{text}");
            }
        }
    }

    #[test]
    fn benchmark_captions_alternate_language() {
        let ids: Vec<u64> = (1..=8).collect();
        let captions = benchmark_captions(&ids, 5);
        assert_eq!(captions.len(), ids.len());
        let mut sampler = SceneSampler::new(5);
        for (&id, text) in ids.iter().zip(&captions) {
            let (split, language) = match (id % 4 == 0, id % 2 == 0) {
                (true, _) => (Split::HeldOut, Language::English),
                (false, true) => (Split::Train, Language::English),
                (false, false) => (Split::Train, Language::Chinese),
            };
            assert_eq!(text, &caption(sampler.sample(split).spec(), language));
            assert_eq!(text.is_ascii(), language == Language::English, "{text}");
        }
    }

    #[test]
    fn sampler_respects_split() {
        let mut sampler = SceneSampler::new(3);
        for _ in 0..500 {
            assert_eq!(sampler.sample(Split::Train).spec().split(), Split::Train);
            assert_eq!(
                sampler.sample(Split::HeldOut).spec().split(),
                Split::HeldOut
            );
        }
    }

    #[test]
    fn sampler_is_deterministic() {
        let a: Vec<Scene> = {
            let mut s = SceneSampler::new(11);
            (0..20).map(|_| s.sample(Split::Train)).collect()
        };
        let b: Vec<Scene> = {
            let mut s = SceneSampler::new(11);
            (0..20).map(|_| s.sample(Split::Train)).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn pair_placement_keeps_relation_and_bounds() {
        let mut sampler = SceneSampler::new(5);
        for _ in 0..500 {
            let scene = sampler.sample(Split::Train);
            for p in &scene.placements {
                assert!(p.x - p.radius >= 0.0 && p.x + p.radius <= 1.0, "{p:?}");
                assert!(p.y - p.radius >= 0.0 && p.y + p.radius <= 1.0, "{p:?}");
            }
            if let Some((_, relation, _)) = scene.spec().relation() {
                let (a, b) = (scene.placements[0], scene.placements[1]);
                let holds = match relation {
                    Relation::LeftOf => a.x < b.x && (a.x - b.x).abs() > (a.y - b.y).abs(),
                    Relation::RightOf => a.x > b.x && (a.x - b.x).abs() > (a.y - b.y).abs(),
                    Relation::Above => a.y < b.y && (a.y - b.y).abs() > (a.x - b.x).abs(),
                    Relation::Below => a.y > b.y && (a.y - b.y).abs() > (a.x - b.x).abs(),
                };
                assert!(holds, "{relation:?}: {a:?} {b:?}");
            }
        }
    }
}
