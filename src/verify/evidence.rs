//! The evidence of each layer, as it appears in a verification report.

use serde::Serialize;

use crate::ledger::{Ledger, LedgerError, Record};
use crate::manifest::{self, ManifestReport, ValidationState};
use crate::watermark::Detection;

use super::recovered::RecoveredManifest;

/// Evidence of the C2PA layer.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ManifestFinding {
    /// The file carries no manifest.
    None,
    /// The file's XMP points to a manifest stored elsewhere, which mmgen
    /// never fetches, so nothing was validated.
    Remote {
        /// The manifest's URL.
        url: String,
    },
    /// A manifest was read and validated.
    Found(Box<ManifestReport>),
    /// A manifest is present but could not be read.
    Unreadable {
        /// The reader's error.
        error: String,
    },
}

impl ManifestFinding {
    /// Reads and validates the manifest of a file's bytes.
    pub fn read(bytes: &[u8], mime: &str, trust_anchors: Option<&str>) -> Self {
        match manifest::read(bytes, mime, trust_anchors) {
            Ok(manifest::ReadOutcome::Absent) => ManifestFinding::None,
            Ok(manifest::ReadOutcome::Remote { url }) => ManifestFinding::Remote { url },
            Ok(manifest::ReadOutcome::Embedded(report)) => ManifestFinding::Found(report),
            Err(err) => ManifestFinding::Unreadable {
                error: err.to_string(),
            },
        }
    }

    /// Returns the validation state, when a manifest was read.
    pub fn state(&self) -> Option<ValidationState> {
        match self {
            ManifestFinding::Found(report) => Some(report.state),
            _ => None,
        }
    }

    /// Returns whether a manifest was read and fails validation. A manifest
    /// stored remotely is not fetched, so it is not counted as failing.
    pub fn is_invalid(&self) -> bool {
        matches!(self, ManifestFinding::Found(r) if r.state == ValidationState::Invalid)
    }

    /// Returns the report of an embedded manifest that was read.
    pub fn report(&self) -> Option<&ManifestReport> {
        match self {
            ManifestFinding::Found(report) => Some(report),
            _ => None,
        }
    }

    /// Returns the mmgen generation assertion's serial, when present.
    fn serial(&self) -> Option<u64> {
        match self {
            ManifestFinding::Found(report) => report.generation.as_ref().map(|g| g.serial),
            _ => None,
        }
    }
}

/// Evidence of the watermark layer.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum WatermarkFinding {
    /// Not tested, and why.
    Skipped {
        /// The reason, in words.
        reason: String,
    },
    /// Tested against every known key and serial.
    Checked(Detection),
}

impl WatermarkFinding {
    /// Returns whether a watermark was found below the threshold.
    pub fn detected(&self) -> bool {
        matches!(self, WatermarkFinding::Checked(d) if d.detected)
    }

    fn serial(&self) -> Option<u64> {
        match self {
            WatermarkFinding::Checked(d) if d.detected => d.payload.as_ref().map(|p| p.serial),
            _ => None,
        }
    }
}

/// The ledger record that a file points to.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerFinding {
    /// Lookup that found the record: "file hash" or "watermark".
    pub found_by: &'static str,
    /// Whether the file is byte-identical to the released output.
    pub byte_identical: bool,
    /// The record.
    pub record: Record,
}

impl LedgerFinding {
    /// Looks the file up by its SHA-256, then by the watermark's serial.
    pub fn look_up(
        ledger: &Ledger,
        sha256: &[u8; 32],
        watermark: &WatermarkFinding,
    ) -> Result<Option<Self>, LedgerError> {
        if let Some(record) = ledger.find_by_output_sha256(sha256)?.into_iter().next() {
            return Ok(Some(Self {
                found_by: "file hash",
                byte_identical: true,
                record,
            }));
        }
        let Some(serial) = watermark.serial() else {
            return Ok(None);
        };
        Ok(ledger.get(serial)?.map(|record| Self {
            found_by: "watermark",
            byte_identical: false,
            record,
        }))
    }
}

/// Lists the ways in which the layers contradict each other.
pub fn conflicts(
    manifest: &ManifestFinding,
    watermark: &WatermarkFinding,
    ledger: Option<&LedgerFinding>,
    recovered: Option<&RecoveredManifest>,
) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(conflict) = recovered.and_then(RecoveredManifest::conflict) {
        found.push(conflict);
    }
    if let (Some(in_manifest), Some(in_watermark)) = (manifest.serial(), watermark.serial())
        && in_manifest != in_watermark
    {
        found.push(format!(
                "the manifest names generation {in_manifest} but the watermark traces to generation {in_watermark}"
            ));
    }
    if let (Some(in_manifest), Some(finding)) = (manifest.serial(), ledger)
        && finding.byte_identical
        && in_manifest != finding.record.serial
    {
        found.push(format!(
                "the manifest names generation {in_manifest} but the file is the output of generation {}",
                finding.record.serial
            ));
    }
    if manifest.is_invalid()
        && let Some(finding) = ledger.filter(|f| !f.byte_identical)
    {
        found.push(format!(
                "the manifest fails validation and the file differs from the released output of generation {}",
                finding.record.serial
            ));
    }
    found
}
