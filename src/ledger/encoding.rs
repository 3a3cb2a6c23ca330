//! Canonical byte encoding of a ledger record, version 1.
//!
//! The encoding is the preimage of `record_hash` and is meant to be the
//! leaf input of the RFC 6962 Merkle tree, so it must never change for
//! version 1. docs/ledger.md gives the layout byte for byte: fixed-width
//! integers are big-endian, and every variable-length field is preceded by
//! its length as a 4-byte big-endian integer.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::record::{NewRecord, Record, RecordKind};

/// First four bytes of every encoded record, ASCII "MGLR".
pub const MAGIC: [u8; 4] = *b"MGLR";

/// Version byte that follows the magic.
pub const ENCODING_VERSION: u8 = 1;

/// Borrowed view of the fields that the encoding covers.
pub(crate) struct Fields<'a> {
    pub leaf_index: u64,
    pub prev_hash: &'a [u8; 32],
    pub serial: u64,
    pub kind: RecordKind,
    pub created_at: OffsetDateTime,
    pub model_name: &'a str,
    pub weights_sha256: &'a [u8; 32],
    pub prompt: Option<&'a str>,
    pub prompt_sha256: &'a [u8; 32],
    pub seed: u64,
    pub steps: u32,
    pub guidance: f64,
    pub width: u32,
    pub height: u32,
    pub watermark_key_id: &'a [u8; 8],
    pub watermark_payload: &'a str,
    pub output_sha256: &'a [u8; 32],
    pub output_mime: &'a str,
    pub manifest: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The view of a record that is about to get `leaf_index`.
    pub fn from_new(record: &'a NewRecord, leaf_index: u64, prev_hash: &'a [u8; 32]) -> Self {
        Self {
            leaf_index,
            prev_hash,
            serial: record.serial,
            kind: record.kind,
            created_at: record.created_at,
            model_name: &record.model_name,
            weights_sha256: &record.weights_sha256,
            prompt: record.prompt.as_deref(),
            prompt_sha256: &record.prompt_sha256,
            seed: record.seed,
            steps: record.steps,
            guidance: record.guidance,
            width: record.width,
            height: record.height,
            watermark_key_id: &record.watermark_key_id,
            watermark_payload: &record.watermark_payload,
            output_sha256: &record.output_sha256,
            output_mime: &record.output_mime,
            manifest: &record.manifest,
        }
    }

    /// The view of a stored record.
    pub fn from_record(record: &'a Record) -> Self {
        Self {
            leaf_index: record.leaf_index,
            prev_hash: &record.prev_hash,
            serial: record.serial,
            kind: record.kind,
            created_at: record.created_at,
            model_name: &record.model_name,
            weights_sha256: &record.weights_sha256,
            prompt: record.prompt.as_deref(),
            prompt_sha256: &record.prompt_sha256,
            seed: record.seed,
            steps: record.steps,
            guidance: record.guidance,
            width: record.width,
            height: record.height,
            watermark_key_id: &record.watermark_key_id,
            watermark_payload: &record.watermark_payload,
            output_sha256: &record.output_sha256,
            output_mime: &record.output_mime,
            manifest: &record.manifest,
        }
    }
}

/// Encodes the record in canonical form, version 1.
///
/// The caller has checked that every variable-length field is shorter than
/// 2^32 bytes (`append` enforces much smaller limits).
pub(crate) fn encode(fields: &Fields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + fields.manifest.len());

    out.extend_from_slice(&MAGIC);
    out.push(ENCODING_VERSION);
    out.push(fields.kind.code());
    out.extend_from_slice(&fields.leaf_index.to_be_bytes());
    out.extend_from_slice(&fields.serial.to_be_bytes());
    out.extend_from_slice(fields.prev_hash);

    let utc = fields.created_at.to_offset(time::UtcOffset::UTC);
    out.extend_from_slice(&utc.unix_timestamp().to_be_bytes());
    out.extend_from_slice(&utc.nanosecond().to_be_bytes());

    push_bytes(&mut out, fields.model_name.as_bytes());
    out.extend_from_slice(fields.weights_sha256);
    match fields.prompt {
        None => out.push(0),
        Some(prompt) => {
            out.push(1);
            push_bytes(&mut out, prompt.as_bytes());
        }
    }
    out.extend_from_slice(fields.prompt_sha256);

    out.extend_from_slice(&fields.seed.to_be_bytes());
    out.extend_from_slice(&fields.steps.to_be_bytes());
    out.extend_from_slice(&fields.guidance.to_bits().to_be_bytes());
    out.extend_from_slice(&fields.width.to_be_bytes());
    out.extend_from_slice(&fields.height.to_be_bytes());

    out.extend_from_slice(fields.watermark_key_id);
    push_bytes(&mut out, fields.watermark_payload.as_bytes());
    out.extend_from_slice(fields.output_sha256);
    push_bytes(&mut out, fields.output_mime.as_bytes());
    push_bytes(&mut out, fields.manifest);
    out
}

/// SHA-256 of the canonical encoding.
pub(crate) fn record_hash(fields: &Fields<'_>) -> [u8; 32] {
    Sha256::digest(encode(fields)).into()
}

/// Appends a 4-byte big-endian length and then the bytes.
fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::to_hex;
    use time::macros::datetime;

    fn sample() -> NewRecord {
        NewRecord {
            serial: 7,
            kind: RecordKind::Generation,
            created_at: datetime!(2026-12-04 15:00:00.5 UTC),
            model_name: "m".into(),
            weights_sha256: [0xAA; 32],
            prompt: Some("hi".into()),
            prompt_sha256: [0xBB; 32],
            seed: 42,
            steps: 20,
            guidance: 7.5,
            width: 64,
            height: 32,
            watermark_key_id: [1, 2, 3, 4, 5, 6, 7, 8],
            watermark_payload: "p".into(),
            output_sha256: [0xCC; 32],
            output_mime: "image/png".into(),
            manifest: vec![9, 9],
        }
    }

    #[test]
    fn encoding_matches_documented_layout() {
        let record = sample();
        let prev = [0x11; 32];
        let bytes = encode(&Fields::from_new(&record, 3, &prev));

        let mut expected = Vec::new();
        expected.extend_from_slice(b"MGLR");
        expected.extend_from_slice(&[1, 1]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
        expected.extend_from_slice(&[0x11; 32]);
        expected.extend_from_slice(&1_796_396_400_i64.to_be_bytes());
        expected.extend_from_slice(&500_000_000_u32.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 1, b'm']);
        expected.extend_from_slice(&[0xAA; 32]);
        expected.extend_from_slice(&[1, 0, 0, 0, 2, b'h', b'i']);
        expected.extend_from_slice(&[0xBB; 32]);
        expected.extend_from_slice(&42_u64.to_be_bytes());
        expected.extend_from_slice(&20_u32.to_be_bytes());
        expected.extend_from_slice(&[0x40, 0x1E, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&64_u32.to_be_bytes());
        expected.extend_from_slice(&32_u32.to_be_bytes());
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&[0, 0, 0, 1, b'p']);
        expected.extend_from_slice(&[0xCC; 32]);
        expected.extend_from_slice(&[0, 0, 0, 9]);
        expected.extend_from_slice(b"image/png");
        expected.extend_from_slice(&[0, 0, 0, 2, 9, 9]);

        assert_eq!(bytes, expected);
    }

    #[test]
    fn absent_prompt_encodes_as_zero_flag() {
        let mut record = sample();
        record.prompt = None;
        let prev = [0; 32];
        let bytes = encode(&Fields::from_new(&record, 0, &prev));

        let prompt_flag_offset = 66 + 4 + 1 + 32;
        assert_eq!(bytes[prompt_flag_offset], 0);
        assert_eq!(
            bytes[prompt_flag_offset + 1..prompt_flag_offset + 33],
            [0xBB; 32]
        );
    }

    #[test]
    fn length_prefix_separates_adjacent_fields() {
        let prev = [0; 32];
        let mut first = sample();
        first.watermark_payload = "ab".into();
        first.output_mime = "c".into();
        let mut second = sample();
        second.watermark_payload = "a".into();
        second.output_mime = "bc".into();

        let first_hash = record_hash(&Fields::from_new(&first, 0, &prev));
        let second_hash = record_hash(&Fields::from_new(&second, 0, &prev));
        assert_ne!(first_hash, second_hash);
    }

    #[test]
    fn record_hash_known_answer() {
        // Computed independently with Python's struct and hashlib over the
        // layout in docs/ledger.md.
        let record = sample();
        let prev = [0x11; 32];
        let fields = Fields::from_new(&record, 3, &prev);

        assert_eq!(encode(&fields).len(), 234);
        assert_eq!(
            to_hex(&record_hash(&fields)),
            "13d3fc79576bdd2449b960e49b57ad7065cdc0fbf6842def1be186a34f23d56e"
        );
    }
}
