//! Parsing and checking of the stored X.509 certificates.

use std::path::Path;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::KeyError;
use super::generate::hex;

/// The facts about one certificate that the key set reports and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDetails {
    /// Subject distinguished name, such as `C=ZZ, O=..., CN=...`.
    pub subject: String,
    /// Organisation (O) of the subject, if any.
    pub organization: Option<String>,
    /// Issuer distinguished name.
    pub issuer: String,
    /// SHA-256 of the DER encoding, lower-case hex.
    pub sha256: String,
    /// Start of the validity period.
    pub not_before: OffsetDateTime,
    /// End of the validity period.
    pub not_after: OffsetDateTime,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
    /// DER of the to-be-signed part, for checking the issuer's signature.
    tbs: Vec<u8>,
    /// Signature over `tbs` by the issuer.
    signature: Vec<u8>,
}

impl CertDetails {
    /// Checks that `issuer` signed this certificate with its Ed25519 key.
    pub fn is_signed_by(&self, issuer: &CertDetails) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&issuer.public_key) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&self.signature) else {
            return false;
        };
        key.verify(&self.tbs, &signature).is_ok()
    }
}

/// Parses every certificate in the PEM text of `path`, in file order.
pub fn parse_pem_chain(path: &Path, text: &str) -> Result<Vec<CertDetails>, KeyError> {
    let corrupt = |reason: String| KeyError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut chain = Vec::new();
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|e| corrupt(format!("invalid PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            return Err(corrupt(format!(
                "found a {} block where a CERTIFICATE was expected",
                block.label
            )));
        }
        chain.push(parse_der(&block.contents).map_err(corrupt)?);
    }
    if chain.is_empty() {
        return Err(corrupt("no CERTIFICATE block found".into()));
    }
    Ok(chain)
}

fn parse_der(der: &[u8]) -> Result<CertDetails, String> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("invalid X.509 certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".into());
    }
    let key_bytes: &[u8] = &cert.public_key().subject_public_key.data;
    let public_key: [u8; 32] = key_bytes.try_into().map_err(|_| {
        format!(
            "public key is {} bytes, not an Ed25519 key",
            key_bytes.len()
        )
    })?;
    Ok(CertDetails {
        subject: cert.subject().to_string(),
        organization: cert
            .subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok())
            .map(str::to_string),
        issuer: cert.issuer().to_string(),
        sha256: hex(&Sha256::digest(der)),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        public_key,
        tbs: cert.tbs_certificate.as_ref().to_vec(),
        signature: cert.signature_value.data.to_vec(),
    })
}
