//! Errors of the key store.

use std::path::PathBuf;

/// Errors while creating, reading or checking the local key set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key directory holds none of the key files.
    #[error("no keys in {dir}; run `mmgen keys init`")]
    Missing {
        /// Key directory that was searched.
        dir: PathBuf,
    },
    /// Some key files exist but this one does not, so the set is unusable.
    #[error(
        "incomplete key set: {path} is missing; restore it from a backup, \
         or move {dir} aside and run `mmgen keys init`"
    )]
    Incomplete {
        /// Key directory.
        dir: PathBuf,
        /// File that is missing.
        path: PathBuf,
    },
    /// `init` found key files and refuses to overwrite them.
    #[error(
        "keys already exist in {dir}; use them as they are, \
         or move the directory aside before running `mmgen keys init`"
    )]
    AlreadyExists {
        /// Key directory that already holds keys.
        dir: PathBuf,
    },
    /// A key file exists but cannot be parsed.
    #[error("invalid key file {path}: {reason}; restore it from a backup")]
    Corrupt {
        /// File that failed to parse.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A certificate does not belong to its private key or issuer.
    #[error("{cert} does not match {key}: {reason}; restore both files from one backup")]
    Mismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Private key file (or issuer certificate) it was checked against.
        key: PathBuf,
        /// Which check failed.
        reason: String,
    },
    /// Reading or writing a key file failed.
    #[error("cannot access {path}: {source}; check its permissions and free space")]
    Io {
        /// File or directory that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// A key option, such as the organisation name, is invalid.
    #[error("{0}")]
    InvalidOption(String),
    /// The signing certificate does not meet what C2PA readers require.
    #[error("{path}: {reason}; run `mmgen keys rotate` to issue a new signing certificate")]
    CertificateProfile {
        /// The certificate chain file.
        path: PathBuf,
        /// What the certificate lacks.
        reason: String,
    },
    /// The key directory could not be created.
    #[error(transparent)]
    Home(#[from] crate::home::HomeError),
    /// Certificate or key generation failed inside rcgen or the system
    /// random number generator.
    #[error("failed to generate {what}: {reason}")]
    Generate {
        /// Item being generated.
        what: &'static str,
        /// Error from the generator.
        reason: String,
    },
}
