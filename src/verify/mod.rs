//! Verification: combines the evidence of every layer into one report.
//!
//! For one file: decode it within limits, read any C2PA manifest (any
//! issuer) and any IPTC digital source type in its XMP, test the
//! DDIM-inverted latent against every known watermark key and ledger
//! serial, and look the file and the watermark payload up in the ledger.
//! A copy traced by its watermark gets its original manifest back from
//! the ledger record, validated on its own bytes. All of it is reduced to
//! one [`Verdict`]; the command line renders the same [`Report`] for
//! people and as JSON.

mod evidence;
mod recovered;

pub use evidence::{LedgerFinding, ManifestFinding, WatermarkFinding};
pub use recovered::{EXPIRED_CODE, RecoveredManifest};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::{EngineError, InversionOptions, Model};
use crate::ledger::{Ledger, LedgerError};
use crate::manifest::ValidationState;
use crate::media::{self, MediaError};
use crate::watermark::scan::{self, ScanSettings};
use crate::watermark::{Candidates, WatermarkKey};

/// Errors that stop the verification of one file.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read or decoded.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The engine failed while inverting the image.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The overall conclusion about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Provenance found and every layer present agrees: a valid manifest,
    /// or a file byte-identical to a ledger record.
    Intact,
    /// Provenance found through the watermark and the ledger, but the file
    /// has been changed since generation (re-encoded, resized, stripped of
    /// its metadata) and carries no valid manifest of its own.
    ModifiedCopy,
    /// No manifest, no watermark and no ledger record; at most a reference
    /// to a remote manifest (never fetched) or unsigned IPTC metadata.
    NothingFound,
    /// Evidence of tampering: a manifest that fails validation, or layers
    /// that contradict each other.
    Tampered,
}

impl Verdict {
    /// Returns the process exit status documented for `mmgen verify`.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Intact | Verdict::ModifiedCopy => 0,
            Verdict::NothingFound => 1,
            Verdict::Tampered => 3,
        }
    }
}

/// Everything verification found out about one file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The file as given.
    pub file: String,
    /// Detected container format.
    pub format: String,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// SHA-256 of the file bytes, hex.
    pub sha256: String,
    /// C2PA manifest.
    pub manifest: ManifestFinding,
    /// IPTC digital source type in the file's XMP, outside C2PA. It is not
    /// signed, so it records what someone wrote but not who.
    pub xmp_source_type: Option<String>,
    /// Latent watermark.
    pub watermark: WatermarkFinding,
    /// The ledger record the file or its watermark points to.
    pub ledger: Option<LedgerFinding>,
    /// The original manifest of a traced copy, from its ledger record.
    pub recovered_manifest: Option<RecoveredManifest>,
    /// Contradictions between layers, in words.
    pub conflicts: Vec<String>,
    /// The conclusion.
    pub verdict: Verdict,
}

/// Keys, ledger and settings that verification checks against.
pub struct Verifier<'a> {
    /// The model whose inversion reads the watermark.
    pub model: &'a Model,
    /// The provider's ledger, if one is available.
    pub ledger: Option<&'a Ledger>,
    /// Watermark keys to test; empty skips the watermark.
    pub keys: &'a [WatermarkKey],
    /// PEM root certificates that make a manifest "trusted".
    pub trust_anchors: Option<&'a str>,
    /// DDIM inversion settings.
    pub inversion: InversionOptions,
    /// Corrected p-value at or below which a watermark is reported.
    pub threshold: f64,
}

impl Verifier<'_> {
    /// Verifies one file's bytes; `name` is how the report names it.
    pub fn verify(&self, name: &str, bytes: &[u8]) -> Result<Report, VerifyError> {
        let decoded = media::decode(bytes)?;
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        let manifest = ManifestFinding::read(bytes, decoded.format.mime(), self.trust_anchors);
        let xmp_source_type =
            media::xmp::xmp_packet(bytes).and_then(|xmp| media::xmp::digital_source_type(&xmp));
        let watermark = self.check_watermark(&decoded.image)?;
        let ledger = match self.ledger {
            Some(ledger) => LedgerFinding::look_up(ledger, &sha256, &watermark)?,
            None => None,
        };
        let recovered_manifest =
            RecoveredManifest::recover(ledger.as_ref(), bytes, self.trust_anchors);
        let conflicts = evidence::conflicts(
            &manifest,
            &watermark,
            ledger.as_ref(),
            recovered_manifest.as_ref(),
        );
        let verdict = reduce(&manifest, &watermark, ledger.as_ref(), &conflicts);
        Ok(Report {
            file: name.to_string(),
            format: decoded.format.mime().to_string(),
            width: decoded.image.width(),
            height: decoded.image.height(),
            sha256: crate::generation::hex(&sha256),
            manifest,
            xmp_source_type,
            watermark,
            ledger,
            recovered_manifest,
            conflicts,
            verdict,
        })
    }

    fn check_watermark(&self, image: &image::RgbImage) -> Result<WatermarkFinding, VerifyError> {
        if self.keys.is_empty() {
            return Ok(WatermarkFinding::Skipped {
                reason:
                    "no watermark key in this mmgen home; run verify where the provider's keys are"
                        .into(),
            });
        }
        let Some(ledger) = self.ledger else {
            return Ok(WatermarkFinding::Skipped {
                reason: "no ledger in this mmgen home, so there are no serials to test".into(),
            });
        };
        let mut serials = Vec::with_capacity(self.keys.len());
        for key in self.keys {
            serials.push(ledger.serials_for_key(&key.id())?);
        }
        let candidates: Vec<Candidates> = self
            .keys
            .iter()
            .zip(&serials)
            .map(|(key, serials)| Candidates { key, serials })
            .collect();
        let settings = ScanSettings {
            threshold: self.threshold,
            ..ScanSettings::standard(self.inversion)
        };
        let detection = scan::scan(self.model, image, &candidates, &settings)?;
        tracing::debug!(
            p_value = detection.p_value,
            candidates = detection.candidates,
            "watermark tested"
        );
        Ok(WatermarkFinding::Checked(detection))
    }
}

fn reduce(
    manifest: &ManifestFinding,
    watermark: &WatermarkFinding,
    ledger: Option<&LedgerFinding>,
    conflicts: &[String],
) -> Verdict {
    if manifest.is_invalid() || !conflicts.is_empty() {
        return Verdict::Tampered;
    }
    if matches!(manifest, ManifestFinding::Unreadable { .. }) {
        return Verdict::Tampered;
    }
    let valid_manifest = matches!(
        manifest.state(),
        Some(ValidationState::Valid | ValidationState::Trusted)
    );
    if ledger.is_some_and(|l| l.byte_identical) || valid_manifest {
        return Verdict::Intact;
    }
    if watermark.detected() && ledger.is_some() {
        return Verdict::ModifiedCopy;
    }
    Verdict::NothingFound
}
