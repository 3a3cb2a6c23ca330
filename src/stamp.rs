//! Stamping: Content Credentials for media that mmgen did not generate,
//! shared by the command line and any other front end.
//!
//! For one file: decode it within limits and read any manifest it
//! carries. Draw the visible label if one is requested, on a copy of the
//! pixels re-encoded in the same format. Then sign a manifest with the
//! source type the publisher states. An existing manifest, or the unlabelled
//! original, becomes the parent ingredient; a manifest that fails
//! validation is not stamped over. The input bytes are never changed, and
//! writing the output is the caller's step.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::keys::Signer;
use crate::label::{self, DrawnLabel, LabelError, LabelSpec};
use crate::ledger::{NewRecord, RecordDetails, Stamp};
use crate::manifest::{self, ManifestError, ReadOutcome, SourceType, StampClaim, ValidationState};
use crate::media::{self, MediaError, MediaFormat};

/// JPEG quality of a labelled copy of a JPEG input.
pub const LABEL_JPEG_QUALITY: u8 = 95;

/// Errors that stop the stamping of one file.
#[derive(Debug, thiserror::Error)]
pub enum StampError {
    /// The file could not be decoded.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The file has a manifest store that cannot be read; stamping would
    /// drop it, so the file is left alone.
    #[error(
        "its existing manifest cannot be read ({0}); stamping would drop it, so the file \
         was skipped"
    )]
    UnreadableManifest(#[source] ManifestError),
    /// The file's manifest fails validation. Signing over it would vouch
    /// for content that was changed after its last signature.
    #[error(
        "its existing manifest fails validation ({codes}); mmgen does not stamp over \
         invalid Content Credentials, so the file was skipped"
    )]
    InvalidManifest {
        /// Failure codes of the manifest, comma-separated.
        codes: String,
    },
    /// The label could not be drawn.
    #[error(transparent)]
    Label(#[from] LabelError),
    /// Signing failed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Statements of the publisher about each file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StampOptions {
    /// Digital source type of the media.
    pub source_type: SourceType,
    /// Visible label to draw, if any.
    pub label: Option<LabelSpec>,
}

/// The manifest that the input carried before stamping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum InputManifest {
    /// No manifest.
    None,
    /// An embedded manifest, now the parent ingredient's.
    Embedded {
        /// Its validation state when it was read.
        state: ValidationState,
    },
    /// A reference to a remote manifest, which was not fetched.
    Remote {
        /// The manifest's URL.
        url: String,
    },
}

/// One stamped file, ready to be written.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// The signed output file.
    pub bytes: Vec<u8>,
    /// The manifest store embedded in it.
    pub manifest: Vec<u8>,
    /// Format of input and output.
    pub format: MediaFormat,
    /// SHA-256 of the input file.
    pub input_sha256: [u8; 32],
    /// SHA-256 of the output file.
    pub output_sha256: [u8; 32],
    /// The input's own manifest.
    pub input_manifest: InputManifest,
    /// The label drawn onto the output, if any.
    pub label: Option<DrawnLabel>,
    /// Serial of the ledger record that logs this stamp.
    pub serial: u64,
    /// Digital source type URI that the manifest states.
    pub source_type: String,
}

impl Stamped {
    /// Builds the ledger record of this stamp, to append before the output
    /// is released.
    pub fn record(&self) -> NewRecord {
        NewRecord {
            serial: self.serial,
            created_at: time::OffsetDateTime::now_utc(),
            output_sha256: self.output_sha256,
            output_mime: self.format.mime().to_string(),
            manifest: self.manifest.clone(),
            details: RecordDetails::Stamp(Stamp {
                input_sha256: self.input_sha256,
                digital_source_type: self.source_type.clone(),
            }),
        }
    }
}

/// File names that the manifest records.
#[derive(Debug, Clone, Copy)]
pub struct Titles<'a> {
    /// Name of the input file, the parent ingredient's title.
    pub input: &'a str,
    /// Name of the output file, the manifest's title.
    pub output: &'a str,
}

/// Stamps the file `input` with the publisher's manifest, which names
/// `serial`, the ledger serial reserved for the stamp's record.
pub fn stamp(
    input: &[u8],
    titles: Titles<'_>,
    options: &StampOptions,
    serial: u64,
    signer: &Signer,
) -> Result<Stamped, StampError> {
    // 1. Decode within limits and read any manifest the file carries.
    let decoded = media::decode(input)?;
    let mime = decoded.format.mime();
    let input_manifest = match manifest::read(input, mime, None) {
        Ok(ReadOutcome::Absent) => InputManifest::None,
        Ok(ReadOutcome::Remote { url }) => InputManifest::Remote { url },
        Ok(ReadOutcome::Embedded(report)) if report.state == ValidationState::Invalid => {
            let codes: Vec<&str> = report
                .failure_codes()
                .into_iter()
                .filter(|code| *code != "signingCredential.untrusted")
                .collect();
            return Err(StampError::InvalidManifest {
                codes: codes.join(", "),
            });
        }
        Ok(ReadOutcome::Embedded(report)) => InputManifest::Embedded {
            state: report.state,
        },
        Err(err) => return Err(StampError::UnreadableManifest(err)),
    };

    // 2. Draw the label on a copy of the pixels, if requested.
    let (asset, label) = match &options.label {
        Some(spec) => {
            let mut image = decoded.image;
            let drawn = label::draw(&mut image, spec)?;
            let encoded = media::encode(&image, decoded.format, LABEL_JPEG_QUALITY)?;
            (encoded, Some(drawn))
        }
        None => (input.to_vec(), None),
    };

    // 3. Sign, keeping the original as the parent ingredient when it has
    //    Content Credentials of its own or when the pixels changed.
    let input_sha256: [u8; 32] = Sha256::digest(input).into();
    let keep_parent = label.is_some() || input_manifest != InputManifest::None;
    let claim = StampClaim {
        title: titles.output.to_string(),
        parent_title: titles.input.to_string(),
        source_type: options.source_type,
        input_sha256,
        ledger_serial: serial,
        label: label.clone(),
    };
    let parent = keep_parent.then_some(input);
    let signed = manifest::sign_stamp(&asset, mime, parent, &claim, signer)?;
    let output_sha256: [u8; 32] = Sha256::digest(&signed.bytes).into();
    tracing::debug!(
        input = titles.input,
        source_type = %options.source_type,
        parent = keep_parent,
        labelled = label.is_some(),
        "stamped"
    );
    Ok(Stamped {
        bytes: signed.bytes,
        manifest: signed.manifest,
        format: decoded.format,
        input_sha256,
        output_sha256,
        input_manifest,
        label,
        serial,
        source_type: options.source_type.uri(),
    })
}

#[cfg(test)]
mod tests {
    use image::{Rgb, RgbImage};

    use super::*;
    use crate::keys::test_support::fresh_store;
    use crate::label::{Corner, LabelKind, Language};

    fn photo(format: MediaFormat) -> Vec<u8> {
        let image = RgbImage::from_fn(320, 200, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        media::encode(&image, format, 90).unwrap()
    }

    const TITLES: Titles<'static> = Titles {
        input: "in.png",
        output: "out.png",
    };

    fn options(label: Option<LabelSpec>) -> StampOptions {
        StampOptions {
            source_type: SourceType::DigitalCapture,
            label,
        }
    }

    #[test]
    fn unlabelled_stamp_keeps_the_pixels() {
        let (_tmp, _store, keys) = fresh_store();
        for format in [MediaFormat::Png, MediaFormat::Jpeg, MediaFormat::Webp] {
            let input = photo(format);
            let stamped = stamp(&input, TITLES, &options(None), 9, &keys.signer).unwrap();
            assert_eq!(stamped.format, format);
            assert_eq!(stamped.input_manifest, InputManifest::None);
            let before = media::decode(&input).unwrap().image;
            let after = media::decode(&stamped.bytes).unwrap().image;
            assert_eq!(before, after, "{format}: pixels changed");
            assert_ne!(stamped.input_sha256, stamped.output_sha256);
        }
    }

    #[test]
    fn labelled_stamp_changes_only_the_label_area() {
        let (_tmp, _store, keys) = fresh_store();
        let input = photo(MediaFormat::Png);
        let spec = LabelSpec {
            kind: LabelKind::Modified,
            corner: Corner::TopRight,
            language: Language::Fr,
            height_fraction: 0.1,
        };
        let stamped = stamp(&input, TITLES, &options(Some(spec)), 9, &keys.signer).unwrap();
        let drawn = stamped.label.clone().unwrap();
        assert_eq!(drawn.text, "IA MODIFIÉ");
        let before = media::decode(&input).unwrap().image;
        let after = media::decode(&stamped.bytes).unwrap().image;
        for (x, y, pixel) in after.enumerate_pixels() {
            let inside = (drawn.x..drawn.x + drawn.width).contains(&x)
                && (drawn.y..drawn.y + drawn.height).contains(&y);
            if !inside {
                assert_eq!(pixel, before.get_pixel(x, y), "({x}, {y}) changed");
            }
        }
        assert_ne!(before, after);
    }

    #[test]
    fn invalid_manifest_is_not_stamped_over() {
        let (_tmp, _store, keys) = fresh_store();
        let input = crate::media::test_images::fixture_bytes("c2pa", "XCA.jpg");
        let err = stamp(&input, TITLES, &options(None), 9, &keys.signer).unwrap_err();
        let StampError::InvalidManifest { codes } = &err else {
            panic!("expected InvalidManifest, got {err}");
        };
        assert!(codes.contains("assertion.dataHash.mismatch"), "{codes}");
    }

    #[test]
    fn valid_manifest_becomes_the_parent() {
        let (_tmp, _store, keys) = fresh_store();
        let input = crate::media::test_images::fixture_bytes("c2pa", "CA.jpg");
        let stamped = stamp(&input, TITLES, &options(None), 9, &keys.signer).unwrap();
        assert_eq!(
            stamped.input_manifest,
            InputManifest::Embedded {
                state: ValidationState::Valid
            }
        );
        let report = manifest::read(&stamped.bytes, "image/jpeg", None)
            .unwrap()
            .embedded()
            .unwrap();
        assert_eq!(report.state, ValidationState::Valid, "{report:?}");
        let parent = &report.active.ingredients[0];
        assert!(parent.failures_when_added.is_empty(), "{parent:?}");
        let grandparent = &parent.manifest.as_ref().unwrap().ingredients[0];
        assert_eq!(grandparent.title.as_deref(), Some("A.jpg"));
    }

    #[test]
    fn garbage_is_a_media_error() {
        let (_tmp, _store, keys) = fresh_store();
        let err = stamp(b"not an image", TITLES, &options(None), 9, &keys.signer).unwrap_err();
        assert!(matches!(err, StampError::Media(_)), "{err}");
    }
}
