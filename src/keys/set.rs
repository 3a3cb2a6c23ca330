//! A loaded key set and its public summary.

use std::fmt;

use ed25519_dalek::SigningKey;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Signer;
use super::cert::CertDetails;
use super::generate::hex;

/// Every key of one mmgen home, checked for consistency on load.
/// `Debug` shows only public facts.
pub struct KeySet {
    /// C2PA signing key and certificate chain.
    pub signer: Signer,
    /// PEM certificate of the local CA, a trust anchor for readers.
    pub ca_cert_pem: String,
    /// 256-bit secret of the latent watermark.
    pub watermark_secret: [u8; 32],
    /// Ed25519 key that signs ledger checkpoints.
    pub checkpoint_key: SigningKey,
    pub(super) ca: CertDetails,
    pub(super) leaf: CertDetails,
}

/// Public summary of a key set, as `mmgen keys show` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// Subject distinguished name of the CA certificate.
    pub ca_subject: String,
    /// SHA-256 of the CA certificate's DER, lower-case hex.
    pub ca_sha256: String,
    /// Start of the CA certificate's validity, RFC 3339.
    pub ca_not_before: String,
    /// End of the CA certificate's validity, RFC 3339.
    pub ca_not_after: String,
    /// Subject distinguished name of the signing certificate.
    pub signer_subject: String,
    /// Issuer distinguished name of the signing certificate.
    pub signer_issuer: String,
    /// SHA-256 of the signing certificate's DER, lower-case hex.
    pub signer_sha256: String,
    /// Start of the signing certificate's validity, RFC 3339.
    pub signer_not_before: String,
    /// End of the signing certificate's validity, RFC 3339.
    pub signer_not_after: String,
    /// Whole days until the signing certificate expires; negative after.
    pub signer_days_left: i64,
    /// Ed25519 public key of the checkpoint key, lower-case hex.
    pub checkpoint_public_key: String,
}

impl KeySet {
    /// Summarises the public facts of this key set, with the days left
    /// counted from the current system time.
    pub fn info(&self) -> KeyInfo {
        self.info_at(OffsetDateTime::now_utc())
    }

    /// Summarises the public facts of this key set as seen at `now`.
    pub fn info_at(&self, now: OffsetDateTime) -> KeyInfo {
        KeyInfo {
            ca_subject: self.ca.subject.clone(),
            ca_sha256: self.ca.sha256.clone(),
            ca_not_before: rfc3339(self.ca.not_before),
            ca_not_after: rfc3339(self.ca.not_after),
            signer_subject: self.leaf.subject.clone(),
            signer_issuer: self.leaf.issuer.clone(),
            signer_sha256: self.leaf.sha256.clone(),
            signer_not_before: rfc3339(self.leaf.not_before),
            signer_not_after: rfc3339(self.leaf.not_after),
            signer_days_left: (self.leaf.not_after - now).whole_days(),
            checkpoint_public_key: hex(self.checkpoint_key.verifying_key().as_bytes()),
        }
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("signer", &self.signer)
            .field("ca_subject", &self.ca.subject)
            .field("ca_sha256", &self.ca.sha256)
            .finish_non_exhaustive()
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    // Certificate times are whole seconds in years 1950 to 9999, which
    // RFC 3339 can always represent.
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
