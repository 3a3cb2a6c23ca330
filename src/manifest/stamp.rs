//! The manifest of a stamped image: media that mmgen did not generate,
//! signed by its publisher with the digital source type they state.
//!
//! A file without Content Credentials and without a label gets a single
//! `c2pa.created` action with that source type. A file that already has a
//! manifest, or that gets a visible label, keeps its original bytes as
//! the parent ingredient (with their manifest, if any). Its manifest gets
//! a `c2pa.opened` action with the source type, and a label adds a
//! `c2pa.edited` action that describes it.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::claim;
use super::container;
use super::sign::{Signed, check_mime, new_builder, sign_with};
use super::{ManifestError, SourceType};
use crate::keys::Signer;
use crate::label::DrawnLabel;

/// Label of mmgen's own assertion about a stamp.
pub const STAMP_LABEL: &str = "org.mmgen.stamp";

/// The facts of one stamp that go into its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct StampClaim {
    /// Manifest title, usually the output file name.
    pub title: String,
    /// Title of the parent ingredient, usually the input file name.
    pub parent_title: String,
    /// Digital source type that the publisher states.
    pub source_type: SourceType,
    /// SHA-256 of the input file as it was read.
    pub input_sha256: [u8; 32],
    /// Serial of the ledger record that logs this stamp.
    pub ledger_serial: u64,
    /// The visible label drawn onto the image, if any.
    pub label: Option<DrawnLabel>,
}

/// The `org.mmgen.stamp` assertion as stored in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampAssertion {
    /// Digital source type URI.
    pub source_type: String,
    /// SHA-256 of the input file, lower-case hex.
    pub input_sha256: String,
    /// Serial of the ledger record that logs this stamp.
    pub ledger_serial: u64,
    /// The text of the visible label, if one was drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_text: Option<String>,
    /// Corner of the visible label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_corner: Option<String>,
}

impl From<&StampClaim> for StampAssertion {
    fn from(claim: &StampClaim) -> Self {
        Self {
            source_type: claim.source_type.uri(),
            input_sha256: crate::generation::hex(&claim.input_sha256),
            ledger_serial: claim.ledger_serial,
            label_text: claim.label.as_ref().map(|l| l.text.clone()),
            label_corner: claim.label.as_ref().map(|l| l.corner.name().to_string()),
        }
    }
}

/// Signs `asset`, a file of `mime`, with a stamp manifest. `parent` is
/// the original input when it must be kept as the parent ingredient: it
/// has a manifest of its own, or `asset` is a labelled copy of it. The
/// output is read back first, as for generated images.
pub fn sign_stamp(
    asset: &[u8],
    mime: &str,
    parent: Option<&[u8]>,
    claim: &StampClaim,
    signer: &Signer,
) -> Result<Signed, ManifestError> {
    check_mime(mime)?;
    let source_type = claim.source_type.uri();
    let definition = claim::definition(&claim.title);
    let mut builder = match parent {
        Some(original) => {
            container::check_container(original, mime)?;
            let mut builder = new_builder(definition, Some(&source_type))?;
            let ingredient = json!({ "title": claim.parent_title, "relationship": "parentOf" });
            builder
                .add_ingredient_from_stream(
                    ingredient.to_string(),
                    mime,
                    &mut Cursor::new(original),
                )
                .map_err(ManifestError::Sign)?;
            builder
        }
        None => {
            let mut builder = new_builder(definition, None)?;
            builder
                .add_action(json!({
                    "action": "c2pa.created",
                    "digitalSourceType": source_type,
                    "description": "source type stated by the publisher",
                }))
                .map_err(ManifestError::Sign)?;
            builder
        }
    };
    if let Some(label) = &claim.label {
        builder
            .add_action(json!({
                "action": "c2pa.edited",
                "description": label_description(label),
            }))
            .map_err(ManifestError::Sign)?;
    }
    builder
        .add_assertion(STAMP_LABEL, &StampAssertion::from(claim))
        .map_err(ManifestError::Sign)?;
    sign_with(builder, asset, mime, signer)
}

/// Describes a drawn label for the `c2pa.edited` action.
fn label_description(label: &DrawnLabel) -> String {
    format!(
        "drew a visible \"{}\" label ({}) in the {} corner, {}x{} pixels at ({}, {})",
        label.text, label.language, label.corner, label.width, label.height, label.x, label.y
    )
}

#[cfg(test)]
mod tests {
    use image::ImageFormat;

    use super::super::sign::read_back;
    use super::super::testutil::{claim as generation_claim, fixture, image_bytes, key_set};
    use super::super::{ValidationState, sign_generated};
    use super::*;
    use crate::label::{Corner, LabelKind, Language};

    fn stamp_claim(source_type: SourceType) -> StampClaim {
        StampClaim {
            title: "stamped.png".into(),
            parent_title: "input.png".into(),
            source_type,
            input_sha256: [3; 32],
            ledger_serial: 7,
            label: None,
        }
    }

    #[test]
    fn plain_file_gets_one_created_action() {
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let claim = stamp_claim(SourceType::DigitalCapture);
        let signed = sign_stamp(&png, "image/png", None, &claim, &keys.signer).unwrap();
        let report = read_back(&signed.bytes, "image/png");
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        let actions = &report.active.actions;
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(actions[0].action, "c2pa.created");
        assert_eq!(
            actions[0].digital_source_type.as_deref(),
            Some(SourceType::DigitalCapture.uri().as_str())
        );
        assert!(report.active.ingredients.is_empty());
        assert!(report.ai_disclosures.is_empty());
        assert_eq!(report.generation, None);
    }

    #[test]
    fn signed_file_becomes_the_parent() {
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let generated = sign_generated(&png, "image/png", &generation_claim(), &keys.signer)
            .unwrap()
            .bytes;
        let claim = stamp_claim(SourceType::TrainedAlgorithmicMedia);
        let signed = sign_stamp(
            &generated,
            "image/png",
            Some(&generated),
            &claim,
            &keys.signer,
        )
        .unwrap();
        let report = read_back(&signed.bytes, "image/png");
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        assert_eq!(report.active.actions[0].action, "c2pa.opened");
        assert_eq!(
            report.active.actions[0].digital_source_type.as_deref(),
            Some(SourceType::TrainedAlgorithmicMedia.uri().as_str())
        );
        let parent = &report.active.ingredients[0];
        assert_eq!(parent.relationship, "parentOf");
        assert_eq!(parent.title.as_deref(), Some("input.png"));
        let parent_manifest = parent.manifest.as_ref().expect("parent keeps its manifest");
        assert_eq!(parent_manifest.actions[0].action, "c2pa.created");
        // One claim in the active manifest, one in the parent's.
        assert_eq!(report.ai_disclosures.len(), 2, "{report:?}");
        assert!(report.ai_disclosures[1].in_ingredient);
    }

    #[test]
    fn third_party_jpeg_becomes_the_parent() {
        let (_tmp, keys) = key_set();
        let jpeg = fixture("C.jpg");
        let mut claim = stamp_claim(SourceType::AlgorithmicMedia);
        claim.parent_title = "C.jpg".into();
        let signed = sign_stamp(&jpeg, "image/jpeg", Some(&jpeg), &claim, &keys.signer).unwrap();
        let report = read_back(&signed.bytes, "image/jpeg");
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        let parent = report.active.ingredients[0].manifest.as_ref().unwrap();
        assert_eq!(
            parent.signer.organization.as_deref(),
            Some("C2PA Test Signing Cert")
        );
        let failures: Vec<&str> = report
            .failure_codes()
            .into_iter()
            .filter(|code| *code != "signingCredential.untrusted")
            .collect();
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn invalid_parent_is_recorded_as_failed() {
        // `stamp` refuses such a parent; a reader must still show what
        // another signer did with one.
        let (_tmp, keys) = key_set();
        let jpeg = fixture("XCA.jpg");
        let claim = stamp_claim(SourceType::DigitalCapture);
        let signed = sign_stamp(&jpeg, "image/jpeg", Some(&jpeg), &claim, &keys.signer).unwrap();
        let report = read_back(&signed.bytes, "image/jpeg");
        let parent = &report.active.ingredients[0];
        assert!(
            parent
                .failures_when_added
                .contains(&"assertion.dataHash.mismatch".to_string()),
            "{parent:?}"
        );
    }

    #[test]
    fn label_is_recorded_as_an_edit() {
        let (_tmp, keys) = key_set();
        let png = image_bytes(ImageFormat::Png);
        let mut claim = stamp_claim(SourceType::TrainedAlgorithmicMedia);
        claim.label = Some(DrawnLabel {
            kind: LabelKind::Generated,
            text: "AI GENERATED".into(),
            language: Language::En,
            corner: Corner::BottomRight,
            x: 10,
            y: 40,
            width: 50,
            height: 12,
        });
        let signed = sign_stamp(&png, "image/png", Some(&png), &claim, &keys.signer).unwrap();
        let report = read_back(&signed.bytes, "image/png");
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        let names: Vec<&str> = report
            .active
            .actions
            .iter()
            .map(|a| a.action.as_str())
            .collect();
        assert_eq!(names, ["c2pa.opened", "c2pa.edited"]);
        let description = report.active.actions[1].description.as_deref().unwrap();
        assert!(description.contains("\"AI GENERATED\""), "{description}");
        assert!(description.contains("bottom-right"), "{description}");
        assert!(report.active.ingredients[0].manifest.is_none());
    }
}
