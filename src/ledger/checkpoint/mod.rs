//! Signed checkpoints in the C2SP tlog-checkpoint form: a signed note
//! whose text is the log's origin, the tree size in decimal and the
//! base64 root hash, one per line.
//!
//! ```text
//! vm/mmgen-ledger/e946fca7
//! 6
//! ivd0yYa8AexcfRdXcgPFaW5X3oVb603RgkS4dyFrqtw=
//!
//! — vm/mmgen-ledger/e946fca7 <base64(key id || Ed25519 signature)>
//! ```
//!
//! The key name is the origin. [`CheckpointSigner`] writes checkpoints
//! with the home's checkpoint key, and [`CheckpointVerifier`] checks them
//! with only the public key.

pub mod note;
pub(crate) mod store;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use store::StoredCheckpoint;

use super::merkle::Hash;

/// Errors from signing, parsing or checking a checkpoint or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A key name or origin is empty or has spaces, plus signs or control
    /// characters.
    #[error(
        "invalid log origin or key name {name:?}: it must be non-empty with no spaces, \
         plus signs or control characters, such as example.com/mmgen-ledger"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// The note is not in the signed-note form.
    #[error("malformed signed note: {reason}")]
    MalformedNote {
        /// What is wrong.
        reason: String,
    },
    /// A signature line of the expected key does not verify.
    #[error(
        "the signature of key {name} on the note does not verify; \
         the note was changed after it was signed"
    )]
    BadSignature {
        /// Name of the key.
        name: String,
    },
    /// No signature line belongs to the expected key.
    #[error(
        "the note has no signature by key {name} with key id {key_id:08x}; \
         check that you have the log's verifier key"
    )]
    NoKnownSignature {
        /// Name of the expected key.
        name: String,
        /// Key id of the expected key.
        key_id: u32,
    },
    /// The signed text is not a checkpoint.
    #[error("malformed checkpoint: {reason}")]
    MalformedCheckpoint {
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint's origin line is not the verifier key's name.
    #[error("checkpoint origin {found:?} is not the log origin {expected:?}")]
    OriginMismatch {
        /// The log's origin.
        expected: String,
        /// The origin line of the checkpoint.
        found: String,
    },
    /// A verifier key text does not parse.
    #[error("invalid verifier key {text:?}: {reason}")]
    InvalidVerifierKey {
        /// The text, cut to 200 characters.
        text: String,
        /// What is wrong.
        reason: String,
    },
}

/// The text of a checkpoint: a tree head of the log named by `origin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// The log's origin, also the signing key's name.
    pub origin: String,
    /// Number of leaves.
    pub tree_size: u64,
    /// RFC 9162 root hash of the first `tree_size` leaves.
    #[serde(serialize_with = "base64_hash")]
    pub root: Hash,
}

impl Checkpoint {
    /// Formats the note text: origin, size and base64 root, each ending in
    /// a newline.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a note text. Extension lines after the root are allowed by
    /// the format and ignored.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let malformed = |reason: String| CheckpointError::MalformedCheckpoint { reason };
        let Some(body) = text.strip_suffix('\n') else {
            return Err(malformed("the text does not end in a newline".into()));
        };
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 || lines.iter().any(|line| line.is_empty()) {
            return Err(malformed(
                "expected at least three non-empty lines: origin, tree size, root hash".into(),
            ));
        }
        let origin = lines[0];
        note::check_name(origin)?;
        let tree_size = parse_size(lines[1])
            .ok_or_else(|| malformed(format!("tree size {:?} is not a decimal", lines[1])))?;
        let root: Hash = STANDARD
            .decode(lines[2])
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                malformed(format!(
                    "root hash {:?} is not 32 bytes of base64",
                    lines[2]
                ))
            })?;
        Ok(Self {
            origin: origin.to_string(),
            tree_size,
            root,
        })
    }
}

/// Parses ASCII decimal with no sign and no leading zero (except "0").
fn parse_size(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// Signs checkpoints of one log with its Ed25519 checkpoint key.
#[derive(Clone)]
pub struct CheckpointSigner {
    origin: String,
    key: SigningKey,
}

impl CheckpointSigner {
    /// A signer for the log `origin`, which is also the key name.
    pub fn new(origin: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        note::check_name(origin)?;
        Ok(Self {
            origin: origin.to_string(),
            key,
        })
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Signs the checkpoint of a tree and returns the whole note.
    pub fn sign(&self, tree_size: u64, root: &Hash) -> String {
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            tree_size,
            root: *root,
        };
        note::sign(&checkpoint.text(), &self.origin, &self.key)
    }

    /// The verifier of this signer's checkpoints.
    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier {
            origin: self.origin.clone(),
            key: self.key.verifying_key(),
        }
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("origin", &self.origin)
            .field("key_id", &format!("{:08x}", self.verifier().key_id()))
            .finish_non_exhaustive()
    }
}

/// Checks checkpoints of one log with its public key alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointVerifier {
    origin: String,
    key: VerifyingKey,
}

impl CheckpointVerifier {
    /// A verifier for the log `origin` and its public key.
    pub fn new(origin: &str, key: VerifyingKey) -> Result<Self, CheckpointError> {
        note::check_name(origin)?;
        Ok(Self {
            origin: origin.to_string(),
            key,
        })
    }

    /// Parses a verifier key text, `<origin>+<key id>+<base64 key>`.
    pub fn from_text(text: &str) -> Result<Self, CheckpointError> {
        let (origin, key) = note::parse_verifier_key(text)?;
        Ok(Self { origin, key })
    }

    /// Formats the verifier key text that [`Self::from_text`] reads.
    pub fn to_text(&self) -> String {
        note::verifier_key_text(&self.origin, &self.key)
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The note key id of the key.
    pub fn key_id(&self) -> u32 {
        note::key_id(&self.origin, &self.key)
    }

    /// The public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks the note's signature and returns the checkpoint it signs,
    /// after checking that its origin is this log's.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let text = note::open(note, &self.origin, &self.key)?;
        self.parse_text(text)
    }

    /// Opens many notes, with the same result for each as [`Self::open`].
    /// Their signatures are checked together with Ed25519 batch
    /// verification, which costs about half as much per signature; when
    /// the batch fails, each note is checked alone to find the bad ones.
    pub fn open_batch(&self, notes: &[&str]) -> Vec<Result<Checkpoint, CheckpointError>> {
        let mut results: Vec<Option<Result<Checkpoint, CheckpointError>>> = vec![None; notes.len()];
        let mut batch = Vec::with_capacity(notes.len());
        for (i, note) in notes.iter().enumerate() {
            match note::signed_by(note, &self.origin, &self.key) {
                Some((text, signature)) => batch.push((i, text, signature)),
                None => results[i] = Some(self.open(note)),
            }
        }
        let messages: Vec<&[u8]> = batch.iter().map(|(_, text, _)| text.as_bytes()).collect();
        let signatures: Vec<_> = batch.iter().map(|(_, _, signature)| *signature).collect();
        let keys = vec![self.key; batch.len()];
        let all_valid = ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
        for (i, text, _) in batch {
            results[i] = Some(if all_valid {
                self.parse_text(text)
            } else {
                self.open(notes[i])
            });
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(CheckpointError::MalformedNote {
                        reason: "the note was not checked".into(),
                    })
                })
            })
            .collect()
    }

    fn parse_text(&self, text: &str) -> Result<Checkpoint, CheckpointError> {
        let checkpoint = Checkpoint::parse(text)?;
        if checkpoint.origin != self.origin {
            return Err(CheckpointError::OriginMismatch {
                expected: self.origin.clone(),
                found: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }
}

/// Returns the default origin of a log on `host` with checkpoint key
/// `key`: `<host>/mmgen-ledger/<first 8 hex digits of SHA-256(key)>`. The
/// key's digest keeps the logs of two homes on one host apart.
pub fn default_origin(host: &str, key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("{host}/mmgen-ledger/{}", super::to_hex(&digest[..4]))
}

/// Returns the time as nanoseconds since the epoch for the database,
/// clamped to the i64 range.
pub(crate) fn unix_nanos_clamped(time: OffsetDateTime) -> i64 {
    let nanos = time.unix_timestamp_nanos();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

fn base64_hash<S: serde::Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::new("host/mmgen-ledger/abcd", SigningKey::from_bytes(&[7; 32]))
            .expect("valid origin")
    }

    #[test]
    fn checkpoint_note_has_three_lines_and_signature() {
        let signer = signer();
        let note = signer.sign(42, &[0xAB; 32]);
        let lines: Vec<&str> = note.lines().collect();

        assert_eq!(lines[0], "host/mmgen-ledger/abcd");
        assert_eq!(lines[1], "42");
        assert_eq!(lines[2], STANDARD.encode([0xAB; 32]));
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} host/mmgen-ledger/abcd "));
        assert_eq!(lines.len(), 5);

        let opened = signer.verifier().open(&note).expect("verifies");
        assert_eq!(opened.tree_size, 42);
        assert_eq!(opened.root, [0xAB; 32]);
    }

    #[test]
    fn parse_rejects_bad_sizes_and_roots() {
        let root = STANDARD.encode([1; 32]);
        for (case, text) in [
            ("leading zero", format!("o\n042\n{root}\n")),
            ("sign", format!("o\n+4\n{root}\n")),
            ("empty size", format!("o\n\n{root}\n")),
            ("too large", format!("o\n18446744073709551616\n{root}\n")),
            ("short root", "o\n4\nAAAA\n".to_string()),
            ("two lines", "o\n4\n".to_string()),
            ("no newline", format!("o\n4\n{root}")),
        ] {
            let parsed = Checkpoint::parse(&text);
            assert!(parsed.is_err(), "{case}: {parsed:?}");
        }
        let zero = Checkpoint::parse(&format!("o\n0\n{root}\n")).expect("size 0");
        assert_eq!(zero.tree_size, 0);
        let extended = Checkpoint::parse(&format!("o\n5\n{root}\nextension\n")).expect("ext");
        assert_eq!(extended.tree_size, 5);
    }

    #[test]
    fn verifier_rejects_other_origin() {
        let signer = signer();
        let note = signer.sign(1, &[0; 32]);
        let other = CheckpointVerifier::new("other/log", *signer.verifier().public_key())
            .expect("valid name");
        assert!(matches!(
            other.open(&note),
            Err(CheckpointError::NoKnownSignature { .. })
        ));
    }

    #[test]
    fn batch_open_matches_single_open() {
        let signer = signer();
        let verifier = signer.verifier();
        let mut notes: Vec<String> = (0..20)
            .map(|size| signer.sign(size, &[size as u8; 32]))
            .collect();
        notes[7] = notes[7].replacen("\n7\n", "\n8\n", 1);
        notes[12] = "not a note".into();
        let views: Vec<&str> = notes.iter().map(String::as_str).collect();

        let batch = verifier.open_batch(&views);
        let single: Vec<_> = views.iter().map(|note| verifier.open(note)).collect();
        assert_eq!(batch, single);
        assert!(batch[7].is_err());
        assert!(batch[12].is_err());
        assert_eq!(batch.iter().filter(|result| result.is_ok()).count(), 18);

        let valid: Vec<&str> = views
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 7 && *i != 12)
            .map(|(_, n)| *n)
            .collect();
        assert!(verifier.open_batch(&valid).iter().all(Result::is_ok));
    }

    #[test]
    fn verifier_text_round_trips() {
        let verifier = signer().verifier();
        let text = verifier.to_text();
        assert_eq!(CheckpointVerifier::from_text(&text), Ok(verifier));
    }

    #[test]
    fn origin_names_are_checked() {
        let key = SigningKey::from_bytes(&[7; 32]);
        for bad in ["", "has space", "plus+sign", "tab\there"] {
            let result = CheckpointSigner::new(bad, key.clone());
            assert!(result.is_err(), "{bad:?} accepted");
        }
        let origin = default_origin("build-host", &key.verifying_key());
        assert!(origin.starts_with("build-host/mmgen-ledger/"), "{origin}");
        assert_eq!(origin.len(), "build-host/mmgen-ledger/".len() + 8);
    }
}
