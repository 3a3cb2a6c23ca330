//! C2PA manifests (Content Credentials): build, sign, read and report.
//!
//! Every generated image gets one manifest with a single `c2pa.created`
//! action (digital source type trainedAlgorithmicMedia), mmgen's own
//! `org.mmgen.generation` assertion, and a `c2pa.soft-binding` assertion
//! that names the latent watermark and its payload. A stamped image gets
//! the source type its publisher asserts, with any earlier manifest kept
//! as the parent ingredient. Signing uses the Ed25519 key of
//! [`crate::keys::Signer`]; reading accepts any issuer and returns
//! validation results as data in a [`ManifestReport`].
//!
//! NOTE: manifests carry no time-stamp, so readers check the signature
//! against the certificate's validity at reading time; once the signing
//! certificate expires, its manifests read back Invalid.

mod claim;
mod container;
mod error;
mod read;
mod report;
mod sign;
pub mod source_type;
mod stamp;
mod summary;

pub use claim::{
    CLAIM_GENERATOR, GENERATION_LABEL, GenerationAssertion, GenerationClaim, SOFT_BINDING_LABEL,
    TRAINED_ALGORITHMIC_MEDIA, WATERMARK_ALGORITHM,
};
pub use error::ManifestError;
pub use read::{ReadOutcome, StoreReport, read, read_store};
pub use report::{
    ActionEntry, AiDisclosure, IngredientEntry, ManifestReport, ManifestSummary, SignerInfo,
    SoftBindingEntry, StatusEntry, StatusKind, ValidationState,
};
pub use sign::{SIGNABLE_MIME_TYPES, Signed, sign_generated};
pub use source_type::SourceType;
pub use stamp::{STAMP_LABEL, StampAssertion, StampClaim, sign_stamp};

#[cfg(test)]
mod testutil;
