//! The reader's findings about one file's C2PA manifest, as data.

use serde::Serialize;

use super::GenerationAssertion;

/// Overall result of C2PA validation, from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationState {
    /// A structural, hash or signature check failed.
    Invalid,
    /// Every integrity check passed, but the signer's root is not trusted.
    Valid,
    /// Valid, and the certificate chains up to a trust anchor.
    Trusted,
}

/// Whether a status entry reports a passed check, a note or a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusKind {
    /// A check that passed.
    Success,
    /// A finding that does not make the manifest invalid, such as
    /// `signingCredential.untrusted`.
    Informational,
    /// A check that failed.
    Failure,
}

/// One C2PA validation status entry of the active manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusEntry {
    /// C2PA status code, such as `assertion.dataHash.mismatch`.
    pub code: String,
    /// Explanation from the SDK, if any.
    pub explanation: Option<String>,
    /// Success, informational or failure.
    pub kind: StatusKind,
}

/// One action of the active manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionEntry {
    /// Action name, such as `c2pa.created`.
    pub action: String,
    /// IPTC digital source type URL, if given.
    pub digital_source_type: Option<String>,
}

/// What the C2PA reader found in one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestReport {
    /// Overall validation state.
    pub state: ValidationState,
    /// Status entries of the active manifest, then of its ingredients.
    /// c2pa lists `signingCredential.untrusted` as a failure even in a
    /// Valid manifest.
    pub status: Vec<StatusEntry>,
    /// Claim generator name and version, such as `mmgen/0.1.0`.
    pub claim_generator: Option<String>,
    /// Common name of the signing certificate.
    pub signer: Option<String>,
    /// Organisation (O) of the signing certificate's subject, which c2pa
    /// 0.90 reports as the issuer.
    pub issuer: Option<String>,
    /// Signing time from a time-stamp, RFC 3339; mmgen's own manifests
    /// have none because they are signed without a time-stamp authority.
    pub signing_time: Option<String>,
    /// Manifest title.
    pub title: Option<String>,
    /// Actions of the active manifest, in order.
    pub actions: Vec<ActionEntry>,
    /// Titles of the ingredients.
    pub ingredients: Vec<String>,
    /// mmgen's own generation assertion, when present and well formed.
    pub generation: Option<GenerationAssertion>,
    /// URL of a manifest stored remotely; it is never fetched.
    pub remote_url: Option<String>,
}

impl ManifestReport {
    /// A report for a file whose manifest lives at `url`, which mmgen
    /// never fetches, so nothing could be validated.
    pub(super) fn remote(url: String) -> Self {
        Self {
            state: ValidationState::Invalid,
            status: vec![StatusEntry {
                code: "mmgen.manifest.remoteNotFetched".into(),
                explanation: Some(format!(
                    "the manifest is stored at {url} and was not fetched"
                )),
                kind: StatusKind::Informational,
            }],
            claim_generator: None,
            signer: None,
            issuer: None,
            signing_time: None,
            title: None,
            actions: Vec::new(),
            ingredients: Vec::new(),
            generation: None,
            remote_url: Some(url),
        }
    }

    /// Checks whether a status entry with `code` is present.
    pub fn has_code(&self, code: &str) -> bool {
        self.status.iter().any(|entry| entry.code == code)
    }
}
