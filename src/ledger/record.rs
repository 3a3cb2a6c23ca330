//! Ledger records: what the caller hands to `append` and what the store
//! returns.
//!
//! Every record has the fields that any logged output has (serial, time,
//! output hash and media type, C2PA manifest) and the details of its kind:
//! a [`Generation`] by the built-in model, or a [`Stamp`] that a publisher
//! put on a file that mmgen did not generate.

use serde::Serialize;
use time::OffsetDateTime;

/// Kind of a ledger record. The kind is part of the canonical encoding,
/// so its numeric code never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An output of the built-in generator.
    Generation,
    /// A file that a publisher signed and logged, such as a photograph.
    Stamp,
}

impl RecordKind {
    /// Code stored in the database and in the canonical encoding.
    pub fn code(self) -> u8 {
        match self {
            RecordKind::Generation => 1,
            RecordKind::Stamp => 2,
        }
    }

    /// The kind with this code, if it is known.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(RecordKind::Generation),
            2 => Some(RecordKind::Stamp),
            _ => None,
        }
    }

    /// Name of the kind as JSON and the CLI print it.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Generation => "generation",
            RecordKind::Stamp => "stamp",
        }
    }
}

/// Fields of a generation record: how the built-in model made the output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    /// Model name, such as "mmgen-builtin-v1".
    pub model_name: String,
    /// SHA-256 of the model weights file.
    #[serde(with = "hex_bytes")]
    pub weights_sha256: [u8; 32],
    /// Prompt text, or `None` when the policy keeps only its hash or the
    /// prompt was redacted later. The leaf commits to `prompt_sha256` only,
    /// so redaction leaves the leaf hash unchanged.
    pub prompt: Option<String>,
    /// SHA-256 of the prompt's UTF-8 bytes. When `prompt` is present,
    /// `append` and `ledger verify` check that they match.
    #[serde(with = "hex_bytes")]
    pub prompt_sha256: [u8; 32],
    /// Seed of the initial noise.
    pub seed: u64,
    /// Number of sampler steps.
    pub steps: u32,
    /// Classifier-free guidance scale; must be finite.
    pub guidance: f64,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Identifier of the watermark key that marked the output.
    #[serde(with = "hex_bytes")]
    pub watermark_key_id: [u8; 8],
    /// Watermark payload, in the watermark module's text form.
    pub watermark_payload: String,
}

/// Fields of a stamp record: a file that mmgen did not generate, signed
/// with a C2PA manifest by its publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stamp {
    /// SHA-256 of the input file as the publisher supplied it.
    #[serde(with = "hex_bytes")]
    pub input_sha256: [u8; 32],
    /// IPTC digital source type URI declared in the manifest, such as
    /// `http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture`.
    pub digital_source_type: String,
}

/// The kind-specific part of a record. In JSON its fields sit beside the
/// common ones, with `kind` naming the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordDetails {
    /// See [`Generation`].
    Generation(Generation),
    /// See [`Stamp`].
    Stamp(Stamp),
}

impl RecordDetails {
    /// Kind of these details.
    pub fn kind(&self) -> RecordKind {
        match self {
            RecordDetails::Generation(_) => RecordKind::Generation,
            RecordDetails::Stamp(_) => RecordKind::Stamp,
        }
    }
}

/// A record to append. Its serial must come from `Ledger::reserve_serial`
/// or `Ledger::reserve_serials`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewRecord {
    /// Serial reserved before the output was made; a generation's
    /// watermark payload encodes it.
    pub serial: u64,
    /// Time the output was made. The store converts it to UTC and keeps
    /// nanoseconds.
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    /// SHA-256 of the output file as released.
    #[serde(with = "hex_bytes")]
    pub output_sha256: [u8; 32],
    /// Media type of the output file, such as "image/png".
    pub output_mime: String,
    /// C2PA manifest store embedded in the output (empty when the output
    /// was not signed).
    #[serde(with = "base64_bytes")]
    pub manifest: Vec<u8>,
    /// Fields of the record's kind.
    #[serde(flatten)]
    pub details: RecordDetails,
}

impl NewRecord {
    /// Kind of the record.
    pub fn kind(&self) -> RecordKind {
        self.details.kind()
    }
}

/// A stored record: the appended fields plus its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Position in the log, contiguous from 0; also the Merkle leaf index.
    pub leaf_index: u64,
    /// Version of the canonical encoding of this record's leaf: 2 for
    /// records appended now, 1 for records kept from a schema 1 ledger.
    pub encoding_version: u8,
    /// RFC 9162 leaf hash, SHA-256(0x00 || canonical encoding).
    #[serde(with = "hex_bytes")]
    pub leaf_hash: [u8; 32],
    /// Hash of the previous record in the hash chain of encoding version
    /// 1; `None` for version 2 records, which have no chain.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hex_option")]
    pub prev_hash: Option<[u8; 32]>,
    /// See [`NewRecord::serial`].
    pub serial: u64,
    /// See [`NewRecord::created_at`]; always UTC.
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    /// See [`NewRecord::output_sha256`].
    #[serde(with = "hex_bytes")]
    pub output_sha256: [u8; 32],
    /// See [`NewRecord::output_mime`].
    pub output_mime: String,
    /// See [`NewRecord::manifest`].
    #[serde(with = "base64_bytes")]
    pub manifest: Vec<u8>,
    /// See [`NewRecord::details`].
    #[serde(flatten)]
    pub details: RecordDetails,
}

impl Record {
    /// Kind of the record.
    pub fn kind(&self) -> RecordKind {
        self.details.kind()
    }

    /// The generation fields, if this is a generation record.
    pub fn generation(&self) -> Option<&Generation> {
        match &self.details {
            RecordDetails::Generation(generation) => Some(generation),
            RecordDetails::Stamp(_) => None,
        }
    }

    /// The stamp fields, if this is a stamp record.
    pub fn stamp(&self) -> Option<&Stamp> {
        match &self.details {
            RecordDetails::Stamp(stamp) => Some(stamp),
            RecordDetails::Generation(_) => None,
        }
    }

    /// Canonical encoding of this record: the Merkle leaf whose hash is
    /// [`Record::leaf_hash`] (layout in docs/ledger.md).
    pub fn canonical_encoding(&self) -> Vec<u8> {
        super::encoding::encode_record(self)
    }
}

/// RFC 3339 text for timestamps in JSON.
mod rfc3339 {
    use serde::Serializer;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(
        time: &OffsetDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let text = time.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

/// Lowercase hex for fixed-size hashes and key ids in JSON.
mod hex_bytes {
    use serde::Serializer;

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::ledger::to_hex(bytes))
    }
}

fn hex_option<S: serde::Serializer>(
    bytes: &Option<[u8; 32]>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(bytes) => serializer.serialize_str(&crate::ledger::to_hex(bytes)),
        None => serializer.serialize_none(),
    }
}

/// Standard padded base64 for the manifest bytes in JSON.
mod base64_bytes {
    use base64::Engine;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        serializer.serialize_str(&text)
    }
}
