//! Canonical encoding version 1, kept to read records that a schema 1
//! ledger holds. It is never written for new records.
//!
//! A version 1 leaf contains the previous record's hash (`prev_hash`, the
//! SHA-256 of the previous leaf) and the prompt text itself. So version 1
//! records form a hash chain, and their prompts cannot be redacted without
//! changing the leaf.

use super::reader::{LeafError, Reader};
use super::{
    MAGIC, MAX_MANIFEST_BYTES, MAX_MIME_BYTES, MAX_MODEL_NAME_BYTES, MAX_PAYLOAD_BYTES,
    MAX_PROMPT_BYTES, push_time, push_var,
};
use crate::ledger::record::{Generation, Record, RecordDetails, RecordKind};

/// Version byte of this encoding.
pub const VERSION: u8 = 1;

/// Encodes a version 1 record. Version 1 has only generation records, so
/// a stamp encodes to an empty vector, which never decodes.
pub(crate) fn encode_record(record: &Record) -> Vec<u8> {
    let Some(generation) = record.generation() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(256 + record.manifest.len());

    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(RecordKind::Generation.code());
    out.extend_from_slice(&record.leaf_index.to_be_bytes());
    out.extend_from_slice(&record.serial.to_be_bytes());
    out.extend_from_slice(&record.prev_hash.unwrap_or([0; 32]));
    push_time(&mut out, record.created_at);

    push_var(&mut out, generation.model_name.as_bytes());
    out.extend_from_slice(&generation.weights_sha256);
    match &generation.prompt {
        None => out.push(0),
        Some(prompt) => {
            out.push(1);
            push_var(&mut out, prompt.as_bytes());
        }
    }
    out.extend_from_slice(&generation.prompt_sha256);

    out.extend_from_slice(&generation.seed.to_be_bytes());
    out.extend_from_slice(&generation.steps.to_be_bytes());
    out.extend_from_slice(&generation.guidance.to_bits().to_be_bytes());
    out.extend_from_slice(&generation.width.to_be_bytes());
    out.extend_from_slice(&generation.height.to_be_bytes());

    out.extend_from_slice(&generation.watermark_key_id);
    push_var(&mut out, generation.watermark_payload.as_bytes());
    out.extend_from_slice(&record.output_sha256);
    push_var(&mut out, record.output_mime.as_bytes());
    push_var(&mut out, &record.manifest);
    out
}

/// Decodes what follows the magic and the version byte. The caller sets
/// `leaf_hash` and checks for trailing bytes.
pub(crate) fn decode_body(reader: &mut Reader<'_>) -> Result<Record, LeafError> {
    let code = reader.u8("kind")?;
    if code != RecordKind::Generation.code() {
        return Err(LeafError::UnknownKind {
            version: VERSION,
            code,
        });
    }
    let leaf_index = reader.u64("leaf_index")?;
    let serial = reader.u64("serial")?;
    let prev_hash = reader.fixed("prev_hash")?;
    let created_at = reader.time("created_at")?;
    let model_name = reader.text("model_name", 1, MAX_MODEL_NAME_BYTES)?;
    let weights_sha256 = reader.fixed("weights_sha256")?;
    let flag_offset = reader.offset();
    let prompt = match reader.u8("prompt")? {
        0 => None,
        1 => Some(reader.text("prompt", 0, MAX_PROMPT_BYTES)?),
        other => {
            let reason = format!("presence flag is {other}, expected 0 or 1");
            return Err(reader.invalid("prompt", flag_offset, reason));
        }
    };
    let generation = Generation {
        model_name,
        weights_sha256,
        prompt,
        prompt_sha256: reader.fixed("prompt_sha256")?,
        seed: reader.u64("seed")?,
        steps: reader.u32("steps")?,
        guidance: reader.finite_f64("guidance")?,
        width: reader.u32("width")?,
        height: reader.u32("height")?,
        watermark_key_id: reader.fixed("watermark_key_id")?,
        watermark_payload: reader.text("watermark_payload", 1, MAX_PAYLOAD_BYTES)?,
    };
    Ok(Record {
        leaf_index,
        encoding_version: VERSION,
        leaf_hash: [0; 32],
        prev_hash: Some(prev_hash),
        serial,
        created_at,
        output_sha256: reader.fixed("output_sha256")?,
        output_mime: reader.text("output_mime", 1, MAX_MIME_BYTES)?,
        manifest: reader.var("manifest", 0, MAX_MANIFEST_BYTES)?.to_vec(),
        details: RecordDetails::Generation(generation),
    })
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};
    use time::macros::datetime;

    use super::*;
    use crate::ledger::encoding::decode;
    use crate::ledger::to_hex;

    /// The record of the version 1 known answer in docs/ledger.md.
    fn sample() -> Record {
        Record {
            leaf_index: 3,
            encoding_version: VERSION,
            leaf_hash: [0; 32],
            prev_hash: Some([0x11; 32]),
            serial: 7,
            created_at: datetime!(2026-12-04 15:00:00.5 UTC),
            output_sha256: [0xCC; 32],
            output_mime: "image/png".into(),
            manifest: vec![9, 9],
            details: RecordDetails::Generation(Generation {
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
            }),
        }
    }

    #[test]
    fn record_hash_known_answer() {
        // Computed independently with Python's struct and hashlib over the
        // layout in docs/ledger.md.
        let bytes = encode_record(&sample());

        assert_eq!(bytes.len(), 234);
        assert_eq!(
            to_hex(&Sha256::digest(&bytes)),
            "13d3fc79576bdd2449b960e49b57ad7065cdc0fbf6842def1be186a34f23d56e"
        );
    }

    #[test]
    fn decode_round_trips_with_prompt_and_chain() {
        let record = sample();
        let bytes = encode_record(&record);
        let decoded = decode(&bytes).expect("decode version 1");

        assert_eq!(decoded.prev_hash, Some([0x11; 32]));
        assert_eq!(
            decoded.generation().and_then(|g| g.prompt.as_deref()),
            Some("hi")
        );
        assert_eq!(decoded.canonical_encoding(), bytes);
        assert_eq!(decoded.details, record.details);
    }

    #[test]
    fn absent_prompt_round_trips() {
        let mut record = sample();
        if let RecordDetails::Generation(generation) = &mut record.details {
            generation.prompt = None;
        }
        let bytes = encode_record(&record);
        let prompt_flag_offset = 66 + 4 + 1 + 32;

        assert_eq!(bytes[prompt_flag_offset], 0);
        let decoded = decode(&bytes).expect("decode");
        assert_eq!(decoded.generation().map(|g| g.prompt.clone()), Some(None));
    }

    #[test]
    fn bad_prompt_flag_is_rejected() {
        let mut bytes = encode_record(&sample());
        bytes[66 + 4 + 1 + 32] = 2;
        let error = decode(&bytes).expect_err("flag 2");
        assert!(
            matches!(
                error,
                LeafError::InvalidField {
                    field: "prompt",
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
