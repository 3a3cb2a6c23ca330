//! Errors of manifest signing and reading.

/// Errors while signing or reading a C2PA manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The media type is not one that mmgen signs.
    #[error("cannot sign media type {0:?}; use image/png, image/jpeg or image/webp")]
    UnsupportedMime(String),
    /// The file's container has a shape that the c2pa SDK cannot parse.
    #[error("{0}")]
    UnsupportedContainer(String),
    /// The c2pa SDK failed to build or sign the manifest.
    #[error("failed to sign the C2PA manifest: {0}")]
    Sign(#[source] c2pa::Error),
    /// The signed output did not read back as a valid manifest, so it was
    /// not returned. The codes are the failure status codes of the reader.
    #[error(
        "the signed image does not validate ({codes}); check the signing \
         certificate with `mmgen keys show`"
    )]
    SignedInvalid {
        /// Failure status codes, comma-separated.
        codes: String,
    },
    /// The file's manifest store could not be parsed: a truncated,
    /// malformed or unsupported file.
    #[error(
        "cannot read the C2PA manifest: {0}; the file may be truncated or not a supported image"
    )]
    Read(#[source] c2pa::Error),
    /// The trust anchor PEM was rejected by the c2pa SDK.
    #[error("invalid trust anchors: {0}; pass a PEM file of CA certificates")]
    TrustAnchors(#[source] c2pa::Error),
}
