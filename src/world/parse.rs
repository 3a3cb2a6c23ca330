//! Reads a prompt's words back into the scene it requests, in either
//! language, so that generation can plan where each shape goes.
//!
//! The reading is lenient. An object is an optional size, a colour and a
//! shape, in that order, next to each other or joined by "的". The first
//! relation word anywhere in the prompt relates the first object to the
//! second, which is how both languages' captions put it ("A above B",
//! "A在B的上方"). Other words are skipped, so "a red circle above a blue
//! square" reads the same as the world's own caption with its sizes left
//! out.

use std::ops::Range;

use super::{COLOURS, Colour, Object, RELATIONS, Relation, SHAPES, SceneSpec, Shape, Size};

/// An object as a prompt names it, with the words that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedObject {
    pub shape: Shape,
    pub colour: Colour,
    /// `None` when the prompt gives no size.
    pub size: Option<Size>,
    /// Indices into the word list: size (if any), colour and shape, with
    /// any "的" between them.
    pub words: Range<usize>,
}

/// The scene a prompt requests, when it reads as a scene of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPrompt {
    /// Objects in the order the prompt names them.
    pub objects: Vec<NamedObject>,
    /// The relation of the first object to the second.
    pub relation: Option<Relation>,
}

impl ParsedPrompt {
    /// Completes the prompt to a scene specification, drawing each missing
    /// size from `size`. Returns `None` for prompts the world cannot lay
    /// out: no object, more than three, or several without a relation.
    pub fn spec(&self, mut size: impl FnMut() -> Size) -> Option<SceneSpec> {
        let mut objects = self.objects.iter().map(|o| Object {
            shape: o.shape,
            colour: o.colour,
            size: o.size.unwrap_or_else(&mut size),
        });
        let count = self.objects.len();
        match (count, self.relation) {
            (1, _) => Some(SceneSpec::Single(objects.next()?)),
            (2, Some(relation)) => Some(SceneSpec::Pair {
                first: objects.next()?,
                relation,
                second: objects.next()?,
            }),
            (3, Some(relation)) => Some(SceneSpec::Triple {
                first: objects.next()?,
                relation,
                second: objects.next()?,
                third: objects.next()?,
            }),
            _ => None,
        }
    }
}

/// Reads `words` (lower-cased tokens, Chinese split into vocabulary
/// entries). Returns `None` when no object is named.
pub fn parse_words<S: AsRef<str>>(words: &[S]) -> Option<ParsedPrompt> {
    let word = |i: usize| words.get(i).map(|w| w.as_ref());
    let mut objects = Vec::new();
    let mut relation = None;
    let mut i = 0;
    while i < words.len() {
        if let Some((found, used)) = relation_at(&word, i) {
            relation = relation.or(Some(found));
            i += used;
            continue;
        }
        if let Some(object) = object_at(&word, i) {
            i = object.words.end;
            objects.push(object);
            continue;
        }
        i += 1;
    }
    if objects.is_empty() {
        return None;
    }
    Some(ParsedPrompt { objects, relation })
}

fn object_at<'a>(word: &impl Fn(usize) -> Option<&'a str>, start: usize) -> Option<NamedObject> {
    let size = word(start).and_then(size_named);
    let mut next = start + usize::from(size.is_some());
    if size.is_some() {
        next = skip_particle(word, next);
    }
    let colour = COLOURS
        .into_iter()
        .find(|c| word(next).is_some_and(|w| w == c.english() || w == c.chinese()))?;
    next = skip_particle(word, next + 1);
    let shape = SHAPES
        .into_iter()
        .find(|s| word(next).is_some_and(|w| w == s.english() || w == s.chinese()))?;
    Some(NamedObject {
        shape,
        colour,
        size,
        words: start..next + 1,
    })
}

/// Steps over a "的" at `i`, which Chinese may put between an object's
/// size, colour and shape ("红色的圆").
fn skip_particle<'a>(word: &impl Fn(usize) -> Option<&'a str>, i: usize) -> usize {
    if word(i) == Some("的") { i + 1 } else { i }
}

fn size_named(word: &str) -> Option<Size> {
    match word {
        "small" | "小" => Some(Size::Small),
        "large" | "大" => Some(Size::Large),
        _ => None,
    }
}

/// Returns the relation named at `i` and how many words name it.
fn relation_at<'a>(
    word: &impl Fn(usize) -> Option<&'a str>,
    i: usize,
) -> Option<(Relation, usize)> {
    let current = word(i)?;
    RELATIONS.into_iter().find_map(|r| {
        if current == r.chinese() {
            return Some((r, 1));
        }
        let english: Vec<&str> = r.english().split(' ').collect();
        let matches = english
            .iter()
            .enumerate()
            .all(|(k, part)| word(i + k) == Some(part));
        matches.then_some((r, english.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tokenizer::Tokenizer;
    use crate::world::{Language, SceneSampler, Split, caption, vocabulary};

    fn words(text: &str) -> Vec<String> {
        let tokenizer = Tokenizer::new(&vocabulary(), 32);
        tokenizer.words(text)
    }

    #[test]
    fn every_world_caption_reads_back() {
        let mut sampler = SceneSampler::new(21);
        for i in 0..400 {
            let split = if i % 3 == 0 {
                Split::HeldOut
            } else {
                Split::Train
            };
            let scene = sampler.sample(split);
            for language in [Language::English, Language::Chinese] {
                let text = caption(scene.spec(), language);
                let parsed = parse_words(&words(&text)).expect(&text);
                let spec = parsed.spec(|| panic!("{text}: size missing"));
                assert_eq!(spec.as_ref(), Some(scene.spec()), "{text}");
            }
        }
    }

    #[test]
    fn object_words_point_at_their_tokens() {
        let list = words("一个大红色圆在小蓝色正方形的上方");
        let parsed = parse_words(&list).unwrap();
        assert_eq!(parsed.relation, Some(Relation::Above));
        let named: Vec<Vec<&str>> = parsed
            .objects
            .iter()
            .map(|o| list[o.words.clone()].iter().map(String::as_str).collect())
            .collect();
        assert_eq!(named, [["大", "红色", "圆"], ["小", "蓝色", "正方形"]]);
    }

    #[test]
    fn chinese_particle_may_join_words() {
        let list = words("一个红色的圆在大的蓝色正方形的上方");
        let parsed = parse_words(&list).unwrap();
        assert_eq!(parsed.relation, Some(Relation::Above));
        assert_eq!(parsed.objects.len(), 2);
        assert_eq!(parsed.objects[0].colour, Colour::Red);
        assert_eq!(parsed.objects[0].shape, Shape::Circle);
        assert_eq!(parsed.objects[1].size, Some(Size::Large));
        assert_eq!(parsed.objects[1].shape, Shape::Square);
        assert_eq!(
            list[parsed.objects[1].words.clone()],
            ["大", "的", "蓝色", "正方形"]
        );
    }

    #[test]
    fn sizes_may_be_left_out() {
        let parsed = parse_words(&words("A red circle, left of a blue square!")).unwrap();
        assert_eq!(parsed.relation, Some(Relation::LeftOf));
        assert_eq!(parsed.objects[0].size, None);
        assert_eq!(parsed.objects[1].words, 6..8);
        let spec = parsed.spec(|| Size::Large).unwrap();
        assert_eq!(spec.objects()[1].colour, Colour::Blue);
        assert_eq!(spec.objects()[1].size, Size::Large);
    }

    #[test]
    fn prompts_outside_the_world_give_no_scene() {
        assert_eq!(parse_words(&words("a photo of a cat")), None);
        assert_eq!(parse_words(&words("")), None);
        let unrelated = parse_words(&words("a red circle and a blue square")).unwrap();
        assert_eq!(unrelated.spec(|| Size::Small), None);
        let crowded = "a red circle above a blue square and a green star and a pink star";
        let parsed = parse_words(&words(crowded)).unwrap();
        assert_eq!(parsed.objects.len(), 4);
        assert_eq!(parsed.spec(|| Size::Small), None);
    }
}
