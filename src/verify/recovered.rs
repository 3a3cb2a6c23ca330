//! Durable credentials: the original manifest of a traced copy, taken from
//! the ledger record and validated on its own bytes.

use serde::Serialize;

use super::evidence::LedgerFinding;
use crate::manifest::{self, ManifestReport, ValidationState};

/// Status code of a signing certificate that has expired. Without a
/// time-stamp, c2pa checks validity at reading time, so every manifest of
/// an expired certificate carries it: a sign of age, not of tampering.
pub const EXPIRED_CODE: &str = "signingCredential.expired";

/// The manifest that the ledger keeps for the record a file traces to.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RecoveredManifest {
    /// The stored manifest, validated on its own bytes.
    Validated {
        /// Ledger serial of the record that keeps it.
        serial: u64,
        /// State of the claim, its signature and the certificate; the
        /// hard binding to the original file's bytes is not part of it.
        state: ValidationState,
        /// Whether the hard binding also matches the file being verified,
        /// which happens only when the file is the original.
        matches_file: bool,
        /// Whether the manifest's soft binding names the record's
        /// watermark payload.
        soft_binding_matches: bool,
        /// The full report, hard-binding status included.
        report: Box<ManifestReport>,
    },
    /// The record keeps manifest bytes that the reader rejects.
    Unreadable {
        /// Ledger serial of the record that keeps them.
        serial: u64,
        /// The reader's error.
        error: String,
    },
}

impl RecoveredManifest {
    /// Validates the manifest of a generation record that the file was
    /// traced to by its watermark. Returns `None` for a file identical to
    /// its record (its own manifest is that manifest), for a record
    /// without a manifest, and for a stamp record.
    pub fn recover(
        ledger: Option<&LedgerFinding>,
        file: &[u8],
        trust_anchors: Option<&str>,
    ) -> Option<Self> {
        let finding = ledger.filter(|f| !f.byte_identical)?;
        let record = &finding.record;
        let generation = record.generation()?;
        if record.manifest.is_empty() {
            return None;
        }
        let serial = record.serial;
        let read = manifest::read_store(&record.manifest, &record.output_mime, file, trust_anchors);
        Some(match read {
            Ok(stored) => {
                let soft_binding_matches = stored.report.soft_bindings.iter().any(|binding| {
                    binding.alg == manifest::WATERMARK_ALGORITHM
                        && binding.values.contains(&generation.watermark_payload)
                });
                RecoveredManifest::Validated {
                    serial,
                    state: stored.report.state,
                    matches_file: stored.hard_binding_matches,
                    soft_binding_matches,
                    report: Box::new(stored.report),
                }
            }
            Err(err) => RecoveredManifest::Unreadable {
                serial,
                error: err.to_string(),
            },
        })
    }

    /// Describes what makes the stored manifest disagree with its record,
    /// if anything. An expired signing certificate alone is not counted.
    pub fn conflict(&self) -> Option<String> {
        match self {
            RecoveredManifest::Unreadable { serial, error } => Some(format!(
                "the manifest stored for generation {serial} cannot be read: {error}"
            )),
            RecoveredManifest::Validated {
                serial,
                state,
                soft_binding_matches,
                report,
                ..
            } => {
                let failures: Vec<&str> = report
                    .failure_codes()
                    .into_iter()
                    .filter(|code| !is_expected_failure(code))
                    .collect();
                if *state == ValidationState::Invalid && !failures.is_empty() {
                    return Some(format!(
                        "the manifest stored for generation {serial} fails validation ({})",
                        failures.join(", ")
                    ));
                }
                if !soft_binding_matches {
                    return Some(format!(
                        "the manifest stored for generation {serial} does not name its watermark payload"
                    ));
                }
                None
            }
        }
    }
}

/// Failures that a stored manifest may carry without contradicting its
/// record: an untrusted or expired signer, and the hard binding to bytes
/// that the verified copy no longer has.
fn is_expected_failure(code: &str) -> bool {
    matches!(
        code,
        "signingCredential.untrusted" | EXPIRED_CODE | "assertion.dataHash.mismatch"
    )
}
