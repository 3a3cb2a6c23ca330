//! IPTC digital source types: how a piece of media came to be.
//!
//! The names and URIs are those of the IPTC NewsCodes vocabulary
//! "Digital Source Type" (<http://cv.iptc.org/newscodes/digitalsourcetype/>),
//! which C2PA actions carry in their `digitalSourceType` field. Terms that
//! IPTC has retired (minorHumanEdits, softwareImage, digitalArt) are left
//! out of what mmgen writes, but any URI is read back as it is.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Namespace of every IPTC digital source type URI.
pub const IPTC_NAMESPACE: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/";

/// A digital source type that `mmgen stamp` can assert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SourceType {
    /// Captured from the real world with a digital camera or recorder.
    DigitalCapture,
    /// Several captured frames merged by signal processing or
    /// non-generative AI, such as HDR in a phone camera.
    ComputationalCapture,
    /// Digitised from a negative film.
    NegativeFilm,
    /// Digitised from a positive film or transparency.
    PositiveFilm,
    /// Digitised from a print or other non-transparent medium.
    Print,
    /// Edited by people with non-generative tools.
    HumanEdits,
    /// Edited with a generative AI model, such as inpainting.
    CompositeWithTrainedAlgorithmicMedia,
    /// Changed by an algorithm without changing the main content, such as
    /// sharpening.
    AlgorithmicallyEnhanced,
    /// Made by a person with digital tools.
    DigitalCreation,
    /// Rendered from data, such as a chart or a satellite image.
    DataDrivenMedia,
    /// Made by a generative AI model trained on sampled content.
    TrainedAlgorithmicMedia,
    /// Made by an algorithm without a trained model, such as a fractal.
    AlgorithmicMedia,
    /// A capture of a screen.
    ScreenCapture,
    /// A recording of a virtual event, such as a video game.
    VirtualRecording,
    /// A composite of elements of several kinds.
    Composite,
    /// A composite of captured elements only.
    CompositeCapture,
    /// A composite that includes generated elements.
    CompositeSynthetic,
}

/// Every source type, in the IPTC list's order.
const ALL: [SourceType; 17] = [
    SourceType::DigitalCapture,
    SourceType::ComputationalCapture,
    SourceType::NegativeFilm,
    SourceType::PositiveFilm,
    SourceType::Print,
    SourceType::HumanEdits,
    SourceType::CompositeWithTrainedAlgorithmicMedia,
    SourceType::AlgorithmicallyEnhanced,
    SourceType::DigitalCreation,
    SourceType::DataDrivenMedia,
    SourceType::TrainedAlgorithmicMedia,
    SourceType::AlgorithmicMedia,
    SourceType::ScreenCapture,
    SourceType::VirtualRecording,
    SourceType::Composite,
    SourceType::CompositeCapture,
    SourceType::CompositeSynthetic,
];

/// Error of parsing a source type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown digital source type {name:?}; use one of: {}", SourceType::names().join(", "))]
pub struct UnknownSourceType {
    /// The name as given.
    pub name: String,
}

impl SourceType {
    /// Returns the IPTC term name, such as `digitalCapture`.
    pub fn name(self) -> &'static str {
        match self {
            SourceType::DigitalCapture => "digitalCapture",
            SourceType::ComputationalCapture => "computationalCapture",
            SourceType::NegativeFilm => "negativeFilm",
            SourceType::PositiveFilm => "positiveFilm",
            SourceType::Print => "print",
            SourceType::HumanEdits => "humanEdits",
            SourceType::CompositeWithTrainedAlgorithmicMedia => {
                "compositeWithTrainedAlgorithmicMedia"
            }
            SourceType::AlgorithmicallyEnhanced => "algorithmicallyEnhanced",
            SourceType::DigitalCreation => "digitalCreation",
            SourceType::DataDrivenMedia => "dataDrivenMedia",
            SourceType::TrainedAlgorithmicMedia => "trainedAlgorithmicMedia",
            SourceType::AlgorithmicMedia => "algorithmicMedia",
            SourceType::ScreenCapture => "screenCapture",
            SourceType::VirtualRecording => "virtualRecording",
            SourceType::Composite => "composite",
            SourceType::CompositeCapture => "compositeCapture",
            SourceType::CompositeSynthetic => "compositeSynthetic",
        }
    }

    /// Returns the full IPTC URI, as C2PA actions carry it.
    pub fn uri(self) -> String {
        format!("{IPTC_NAMESPACE}{}", self.name())
    }

    /// Returns every term name, in the IPTC list's order.
    pub fn names() -> Vec<&'static str> {
        ALL.iter().map(|kind| kind.name()).collect()
    }
}

impl FromStr for SourceType {
    type Err = UnknownSourceType;

    /// Parses a term name (`digitalCapture`) or a full IPTC URI.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let name = text.strip_prefix(IPTC_NAMESPACE).unwrap_or(text);
        ALL.iter()
            .find(|kind| kind.name() == name)
            .copied()
            .ok_or_else(|| UnknownSourceType {
                name: text.to_string(),
            })
    }
}

impl fmt::Display for SourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks whether a digital source type URI (or bare term name) states
/// that a generative model made the media or part of it:
/// trainedAlgorithmicMedia or compositeWithTrainedAlgorithmicMedia.
/// C2PA's own namespace (`http://c2pa.org/digitalsourcetype/`) is
/// accepted as well as IPTC's.
pub fn is_ai_generated(uri: &str) -> bool {
    let term = uri.rsplit('/').next().unwrap_or(uri);
    matches!(
        term,
        "trainedAlgorithmicMedia" | "compositeWithTrainedAlgorithmicMedia"
    )
}

/// Returns the term name of a source type URI (its last path segment), or
/// the URI itself when it ends in a slash. Used for short human output.
pub fn term_of(uri: &str) -> &str {
    uri.rsplit('/')
        .next()
        .filter(|t| !t.is_empty())
        .unwrap_or(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_uris_round_trip() {
        for name in SourceType::names() {
            let kind: SourceType = name.parse().unwrap();
            assert_eq!(kind.name(), name);
            assert_eq!(kind.uri().parse::<SourceType>().unwrap(), kind);
            assert!(kind.uri().starts_with(IPTC_NAMESPACE));
        }
        assert_eq!(SourceType::names().len(), 17);
    }

    #[test]
    fn unknown_name_lists_the_choices() {
        let err = "photo".parse::<SourceType>().unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"photo\""), "{message}");
        assert!(message.contains("digitalCapture"), "{message}");
        assert!(message.contains("trainedAlgorithmicMedia"), "{message}");
    }

    #[test]
    fn ai_types_are_recognised() {
        assert!(is_ai_generated(&SourceType::TrainedAlgorithmicMedia.uri()));
        assert!(is_ai_generated(
            &SourceType::CompositeWithTrainedAlgorithmicMedia.uri()
        ));
        assert!(is_ai_generated("trainedAlgorithmicMedia"));
        assert!(!is_ai_generated(&SourceType::DigitalCapture.uri()));
        assert!(!is_ai_generated(&SourceType::AlgorithmicMedia.uri()));
        assert!(!is_ai_generated(
            "http://c2pa.org/digitalsourcetype/trainedAlgorithmicData"
        ));
    }

    #[test]
    fn term_of_strips_the_namespace() {
        assert_eq!(term_of(&SourceType::ScreenCapture.uri()), "screenCapture");
        assert_eq!(term_of("plain"), "plain");
    }
}
