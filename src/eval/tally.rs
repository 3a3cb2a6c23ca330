//! Counts of correct attributes over many evaluated scenes.

use super::Evaluation;

/// Correct attributes over a set of evaluated scenes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Objects asked for.
    pub objects: usize,
    /// Objects found in the right colour.
    pub colour: usize,
    /// Objects found with the right shape.
    pub shape: usize,
    /// Scenes with two objects.
    pub pairs: usize,
    /// Pairs in the right relation.
    pub relation: usize,
    /// Pairs whose two regions were both found.
    pub pairs_found: usize,
    /// Pairs with both regions found and in the right relation.
    pub relation_found: usize,
    /// Scenes evaluated.
    pub scenes: usize,
    /// Scenes with every attribute right.
    pub all: usize,
}

impl Tally {
    /// Adds one scene's evaluation.
    pub fn add(&mut self, evaluation: &Evaluation) {
        self.objects += evaluation.colour_ok.len();
        self.colour += evaluation.colour_ok.iter().filter(|&&ok| ok).count();
        self.shape += evaluation.shape_ok.iter().filter(|&&ok| ok).count();
        if let Some(ok) = evaluation.relation_ok {
            self.pairs += 1;
            self.relation += usize::from(ok);
            if evaluation.found_relation.is_some() {
                self.pairs_found += 1;
                self.relation_found += usize::from(ok);
            }
        }
        self.scenes += 1;
        self.all += usize::from(evaluation.all_ok);
    }

    /// Colour accuracy in percent; `None` before any object.
    pub fn colour_percent(&self) -> Option<f64> {
        percent(self.colour, self.objects)
    }

    /// Shape accuracy in percent; `None` before any object.
    pub fn shape_percent(&self) -> Option<f64> {
        percent(self.shape, self.objects)
    }

    /// Relation accuracy in percent; `None` before any pair.
    pub fn relation_percent(&self) -> Option<f64> {
        percent(self.relation, self.pairs)
    }

    /// Share of pairs whose two regions were both found, in percent; `None`
    /// before any pair.
    pub fn pairs_found_percent(&self) -> Option<f64> {
        percent(self.pairs_found, self.pairs)
    }

    /// Relation accuracy over the pairs with both regions found, in percent.
    /// Set beside [`relation_percent`](Self::relation_percent), it separates
    /// a missing shape from a misplaced one.
    pub fn relation_found_percent(&self) -> Option<f64> {
        percent(self.relation_found, self.pairs_found)
    }

    /// Share of scenes with every attribute right, in percent.
    pub fn all_percent(&self) -> Option<f64> {
        percent(self.all, self.scenes)
    }
}

fn percent(hits: usize, total: usize) -> Option<f64> {
    (total > 0).then(|| 100.0 * hits as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::Relation;

    fn pair(found: Option<Relation>, ok: bool) -> Evaluation {
        Evaluation {
            colour_ok: vec![true, found.is_some()],
            shape_ok: vec![true, true],
            relation_ok: Some(ok),
            all_ok: ok,
            found: Vec::new(),
            found_relation: found,
        }
    }

    #[test]
    fn found_pairs_counted_apart() {
        let mut tally = Tally::default();
        tally.add(&pair(Some(Relation::Above), true));
        tally.add(&pair(Some(Relation::Below), false));
        tally.add(&pair(None, false));
        tally.add(&pair(None, false));
        assert_eq!(tally.pairs, 4);
        assert_eq!(tally.relation, 1);
        assert_eq!(tally.pairs_found, 2);
        assert_eq!(tally.relation_found, 1);
        assert_eq!(tally.relation_percent(), Some(25.0));
        assert_eq!(tally.pairs_found_percent(), Some(50.0));
        assert_eq!(tally.relation_found_percent(), Some(50.0));
    }
}
