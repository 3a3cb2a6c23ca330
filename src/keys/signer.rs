//! The C2PA signing identity: an Ed25519 key and its certificate chain.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use time::OffsetDateTime;

/// An Ed25519 signing key with its PEM certificate chain (end-entity
/// first, then the CA). `Debug` prints the subject and expiry, never the
/// key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    chain_pem: String,
    subject: String,
    not_after: OffsetDateTime,
}

impl Signer {
    /// Combines a key with the chain whose first certificate is its own.
    /// The caller has checked that the two match.
    pub(crate) fn new(
        key: SigningKey,
        chain_pem: String,
        subject: String,
        not_after: OffsetDateTime,
    ) -> Self {
        Self {
            key,
            chain_pem,
            subject,
            not_after,
        }
    }

    /// Signs `data` and returns the 64-byte Ed25519 signature.
    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        self.key.sign(data).to_bytes()
    }

    /// The Ed25519 public key that verifies [`Signer::sign`] output.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    /// PEM certificate chain: end-entity first, then the CA.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// Subject distinguished name of the end-entity certificate.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// End of the end-entity certificate's validity period.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}
