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
    /// A finding that does not make the manifest invalid.
    Informational,
    /// A check that failed. c2pa 0.90 files `signingCredential.untrusted`
    /// here even though it leaves the state Valid.
    Failure,
}

/// One C2PA validation status entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusEntry {
    /// C2PA status code, such as `assertion.dataHash.mismatch`.
    pub code: String,
    /// Explanation from the SDK, if any.
    pub explanation: Option<String>,
    /// Success, informational or failure.
    pub kind: StatusKind,
}

/// One action of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionEntry {
    /// Action name, such as `c2pa.created`.
    pub action: String,
    /// Digital source type URI, if given.
    pub digital_source_type: Option<String>,
    /// Free-text description, if given.
    pub description: Option<String>,
}

/// Signer of a manifest, from its signing certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SignerInfo {
    /// Common name (CN) of the signing certificate's subject.
    pub name: Option<String>,
    /// Organisation (O) of the signing certificate's subject.
    pub organization: Option<String>,
    /// Organisation, else common name, of the certificate's issuer (the
    /// CA that issued the signing certificate).
    pub issuer: Option<String>,
    /// End of the signing certificate's validity, RFC 3339.
    pub certificate_expires: Option<String>,
    /// Signing time from a trusted time-stamp, RFC 3339. mmgen's own
    /// manifests have none because they are signed without a time-stamp
    /// authority.
    pub signing_time: Option<String>,
}

impl SignerInfo {
    /// Returns the name a report attributes claims to: the signer's
    /// organisation, else its common name.
    pub fn display_name(&self) -> Option<&str> {
        self.organization.as_deref().or(self.name.as_deref())
    }
}

/// The facts of one manifest in a manifest store, active or ingredient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestSummary {
    /// Manifest label (a URN).
    pub label: Option<String>,
    /// Claim generator name and version, such as `mmgen/0.1.0`.
    pub claim_generator: Option<String>,
    /// The signer, from the signing certificate.
    pub signer: SignerInfo,
    /// Manifest title.
    pub title: Option<String>,
    /// Actions, in order.
    pub actions: Vec<ActionEntry>,
    /// Ingredients, each with its own manifest when it had one.
    pub ingredients: Vec<IngredientEntry>,
}

/// One ingredient of a manifest: an asset it was made from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngredientEntry {
    /// Ingredient title, usually its file name.
    pub title: Option<String>,
    /// `parentOf`, `componentOf` or `inputTo`.
    pub relationship: String,
    /// Media type of the ingredient.
    pub format: Option<String>,
    /// The ingredient's own manifest, when it carried Content Credentials.
    pub manifest: Option<Box<ManifestSummary>>,
    /// Failure codes that the ingredient's manifest had when it was added,
    /// as the signer of the parent recorded them; an untrusted signer is
    /// not counted.
    pub failures_when_added: Vec<String>,
}

/// A claim, in some manifest of the store, that generative AI made the
/// media or part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AiDisclosure {
    /// Party that makes the claim: the signer's organisation, else its
    /// name, else the claim generator.
    pub according_to: String,
    /// The digital source type URI that states it.
    pub digital_source_type: String,
    /// The action that carries it.
    pub action: String,
    /// Whether the claim sits in an ingredient's manifest rather than the
    /// active one.
    pub in_ingredient: bool,
}

/// A `c2pa.soft-binding` assertion: a watermark or fingerprint that
/// identifies the content without the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SoftBindingEntry {
    /// Algorithm identifier, such as `org.mmgen.latent-watermark.1`.
    pub alg: String,
    /// Values of the assertion's blocks.
    pub values: Vec<String>,
}

/// Findings of the C2PA reader about one file's embedded manifest store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestReport {
    /// Overall validation state.
    pub state: ValidationState,
    /// Status entries of the active manifest, then of its ingredients.
    pub status: Vec<StatusEntry>,
    /// The active manifest.
    #[serde(flatten)]
    pub active: ManifestSummary,
    /// Claims of generative AI anywhere in the manifest chain.
    pub ai_disclosures: Vec<AiDisclosure>,
    /// Soft bindings of the active manifest.
    pub soft_bindings: Vec<SoftBindingEntry>,
    /// mmgen's own generation assertion, when present and well formed.
    pub generation: Option<GenerationAssertion>,
}

impl ManifestReport {
    /// Checks whether a status entry with `code` is present.
    pub fn has_code(&self, code: &str) -> bool {
        self.status.iter().any(|entry| entry.code == code)
    }

    /// Returns the codes of the failure entries, in order.
    pub fn failure_codes(&self) -> Vec<&str> {
        self.status
            .iter()
            .filter(|entry| entry.kind == StatusKind::Failure)
            .map(|entry| entry.code.as_str())
            .collect()
    }
}
