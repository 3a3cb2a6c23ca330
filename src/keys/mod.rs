//! Key material: the signing CA and certificate, the watermark key and
//! the ledger checkpoint key, kept in the mmgen home.
//!
//! `<home>/keys/` holds six files. Private keys are PKCS#8 PEM (Ed25519),
//! certificates are PEM, and the watermark secret is 64 hex digits:
//!
//! | file | mode | contents |
//! |---|---|---|
//! | `ca.key.pem` | 0600 | private key of the local CA |
//! | `ca.cert.pem` | 0644 | CA certificate, valid 20 years |
//! | `signer.key.pem` | 0600 | private key of the C2PA signer |
//! | `signer.chain.pem` | 0644 | signer certificate (3 years), then the CA |
//! | `retired/<time>/` | 0700 | signing keys and chains replaced by `rotate` |
//! | `watermark.key` | 0600 | 256-bit watermark secret |
//! | `checkpoint.key.pem` | 0600 | key that signs ledger checkpoints |
//!
//! Loading checks that every certificate matches its private key and that
//! the CA issued the signer certificate. No operation overwrites a file.

mod cert;
mod error;
mod files;
mod generate;
mod rotate;
mod set;
mod signer;
mod store;

pub use error::KeyError;
pub use generate::{CA_LIFETIME, KeyOptions, SIGNER_LIFETIME};
pub use rotate::{RENEWAL_WARNING, Rotation, SignerExpiry};
pub use set::{KeyInfo, KeySet};
pub use signer::Signer;
pub use store::KeyStore;

#[cfg(test)]
pub(crate) mod test_support;
