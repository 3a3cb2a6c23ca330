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

    /// Share of scenes with every attribute right, in percent.
    pub fn all_percent(&self) -> Option<f64> {
        percent(self.all, self.scenes)
    }
}

fn percent(hits: usize, total: usize) -> Option<f64> {
    (total > 0).then(|| 100.0 * hits as f64 / total as f64)
}
