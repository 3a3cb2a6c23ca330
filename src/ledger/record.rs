//! Ledger records: what the caller hands to `append` and what the store
//! returns.

use serde::Serialize;
use time::OffsetDateTime;

/// Kind of a ledger record. The kind is part of the canonical encoding,
/// so its numeric code never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An output of the built-in generator.
    Generation,
}

impl RecordKind {
    /// Code stored in the database and in the canonical encoding.
    pub fn code(self) -> u8 {
        match self {
            RecordKind::Generation => 1,
        }
    }

    /// The kind with this code, if it is known.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(RecordKind::Generation),
            _ => None,
        }
    }
}

/// A record to append. Its serial must come from `Ledger::reserve_serial`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewRecord {
    /// Serial reserved before the generation started; the watermark
    /// payload encodes it.
    pub serial: u64,
    /// Kind of record.
    pub kind: RecordKind,
    /// Time the output was made. The store converts it to UTC and keeps
    /// nanoseconds.
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    /// Model name, such as "mmgen-builtin-v1".
    pub model_name: String,
    /// SHA-256 of the model weights file.
    #[serde(with = "hex_bytes")]
    pub weights_sha256: [u8; 32],
    /// Prompt text, or `None` when the policy keeps only its hash.
    pub prompt: Option<String>,
    /// SHA-256 of the prompt's UTF-8 bytes. When `prompt` is present,
    /// `append` checks that they match.
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
    /// SHA-256 of the output file as released.
    #[serde(with = "hex_bytes")]
    pub output_sha256: [u8; 32],
    /// Media type of the output file, such as "image/png".
    pub output_mime: String,
    /// C2PA manifest store embedded in the output (may be empty when the
    /// output was not signed).
    #[serde(with = "base64_bytes")]
    pub manifest: Vec<u8>,
}

/// A stored record: the appended fields plus its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Position in the log, contiguous from 0; also the Merkle leaf index.
    pub leaf_index: u64,
    /// `record_hash` of the record at `leaf_index - 1`, or 32 zero bytes
    /// for the first record.
    #[serde(with = "hex_bytes")]
    pub prev_hash: [u8; 32],
    /// SHA-256 of the canonical encoding of this record.
    #[serde(with = "hex_bytes")]
    pub record_hash: [u8; 32],
    /// See [`NewRecord::serial`].
    pub serial: u64,
    /// See [`NewRecord::kind`].
    pub kind: RecordKind,
    /// See [`NewRecord::created_at`]; always UTC.
    #[serde(with = "rfc3339")]
    pub created_at: OffsetDateTime,
    /// See [`NewRecord::model_name`].
    pub model_name: String,
    /// See [`NewRecord::weights_sha256`].
    #[serde(with = "hex_bytes")]
    pub weights_sha256: [u8; 32],
    /// See [`NewRecord::prompt`].
    pub prompt: Option<String>,
    /// See [`NewRecord::prompt_sha256`].
    #[serde(with = "hex_bytes")]
    pub prompt_sha256: [u8; 32],
    /// See [`NewRecord::seed`].
    pub seed: u64,
    /// See [`NewRecord::steps`].
    pub steps: u32,
    /// See [`NewRecord::guidance`].
    pub guidance: f64,
    /// See [`NewRecord::width`].
    pub width: u32,
    /// See [`NewRecord::height`].
    pub height: u32,
    /// See [`NewRecord::watermark_key_id`].
    #[serde(with = "hex_bytes")]
    pub watermark_key_id: [u8; 8],
    /// See [`NewRecord::watermark_payload`].
    pub watermark_payload: String,
    /// See [`NewRecord::output_sha256`].
    #[serde(with = "hex_bytes")]
    pub output_sha256: [u8; 32],
    /// See [`NewRecord::output_mime`].
    pub output_mime: String,
    /// See [`NewRecord::manifest`].
    #[serde(with = "base64_bytes")]
    pub manifest: Vec<u8>,
}

impl Record {
    /// Builds a stored record from its log position and appended fields.
    pub(crate) fn from_parts(
        leaf_index: u64,
        prev_hash: [u8; 32],
        record_hash: [u8; 32],
        fields: NewRecord,
    ) -> Self {
        Self {
            leaf_index,
            prev_hash,
            record_hash,
            serial: fields.serial,
            kind: fields.kind,
            created_at: fields.created_at,
            model_name: fields.model_name,
            weights_sha256: fields.weights_sha256,
            prompt: fields.prompt,
            prompt_sha256: fields.prompt_sha256,
            seed: fields.seed,
            steps: fields.steps,
            guidance: fields.guidance,
            width: fields.width,
            height: fields.height,
            watermark_key_id: fields.watermark_key_id,
            watermark_payload: fields.watermark_payload,
            output_sha256: fields.output_sha256,
            output_mime: fields.output_mime,
            manifest: fields.manifest,
        }
    }

    /// Canonical encoding of this record: the record hash preimage and the
    /// Merkle leaf (see docs/ledger.md).
    pub fn canonical_encoding(&self) -> Vec<u8> {
        super::encoding::encode(&super::encoding::Fields::from_record(self))
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

/// Standard padded base64 for the manifest bytes in JSON.
mod base64_bytes {
    use base64::Engine;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        serializer.serialize_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use crate::ledger::test_support::{fill, temp_ledger};

    #[test]
    fn record_json_uses_hex_rfc3339_base64() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let record = fill(&mut ledger, 1).remove(0);
        let json = serde_json::to_value(&record).expect("serialize record");

        assert_eq!(json["leaf_index"], 0);
        assert_eq!(json["kind"], "generation");
        assert_eq!(json["created_at"], "2026-12-04T15:00:00Z");
        assert_eq!(json["prev_hash"], "0".repeat(64));
        assert_eq!(json["weights_sha256"], "5a".repeat(32));
        assert_eq!(json["watermark_key_id"], "0102030405060708");
        assert_eq!(
            json["record_hash"],
            crate::ledger::to_hex(&record.record_hash)
        );
        let manifest = json["manifest"].as_str().expect("manifest is a string");
        assert!(manifest.starts_with("wsLC"), "{manifest}");
        assert_eq!(json["seed"], 0);
    }
}
