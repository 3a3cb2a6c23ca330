//! Canonical encoding version 2, the leaf of every record appended now.
//!
//! Unlike version 1 it has no hash chain and commits to the prompt only
//! through its SHA-256, so a prompt can be redacted without changing the
//! leaf, and a batch of leaves can be encoded without waiting for each
//! other's hashes.

use super::reader::{LeafError, Reader};
use super::{
    LeafView, MAGIC, MAX_MANIFEST_BYTES, MAX_MIME_BYTES, MAX_MODEL_NAME_BYTES, MAX_PAYLOAD_BYTES,
    MAX_SOURCE_TYPE_BYTES, push_time, push_var,
};
use crate::ledger::record::{Generation, Record, RecordDetails, RecordKind, Stamp};

/// Version byte of this encoding.
pub const VERSION: u8 = 2;

/// Encodes a leaf in version 2.
pub(crate) fn encode(leaf: &LeafView<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(200 + leaf.manifest.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(leaf.details.kind().code());
    out.extend_from_slice(&leaf.leaf_index.to_be_bytes());
    out.extend_from_slice(&leaf.serial.to_be_bytes());
    push_time(&mut out, leaf.created_at);
    out.extend_from_slice(leaf.output_sha256);
    push_var(&mut out, leaf.output_mime.as_bytes());
    push_var(&mut out, leaf.manifest);

    match leaf.details {
        RecordDetails::Generation(generation) => push_generation(&mut out, generation),
        RecordDetails::Stamp(stamp) => {
            out.extend_from_slice(&stamp.input_sha256);
            push_var(&mut out, stamp.digital_source_type.as_bytes());
        }
    }
    out
}

fn push_generation(out: &mut Vec<u8>, generation: &Generation) {
    push_var(out, generation.model_name.as_bytes());
    out.extend_from_slice(&generation.weights_sha256);
    out.extend_from_slice(&generation.prompt_sha256);
    out.extend_from_slice(&generation.seed.to_be_bytes());
    out.extend_from_slice(&generation.steps.to_be_bytes());
    out.extend_from_slice(&generation.guidance.to_bits().to_be_bytes());
    out.extend_from_slice(&generation.width.to_be_bytes());
    out.extend_from_slice(&generation.height.to_be_bytes());
    out.extend_from_slice(&generation.watermark_key_id);
    push_var(out, generation.watermark_payload.as_bytes());
}

/// Decodes what follows the magic and the version byte. The caller sets
/// `leaf_hash` and checks for trailing bytes.
pub(crate) fn decode_body(reader: &mut Reader<'_>) -> Result<Record, LeafError> {
    let code = reader.u8("kind")?;
    let kind = RecordKind::from_code(i64::from(code)).ok_or(LeafError::UnknownKind {
        version: VERSION,
        code,
    })?;
    let leaf_index = reader.u64("leaf_index")?;
    let serial = reader.u64("serial")?;
    let created_at = reader.time("created_at")?;
    let output_sha256 = reader.fixed("output_sha256")?;
    let output_mime = reader.text("output_mime", 1, MAX_MIME_BYTES)?;
    let manifest = reader.var("manifest", 0, MAX_MANIFEST_BYTES)?.to_vec();

    let details = match kind {
        RecordKind::Generation => RecordDetails::Generation(decode_generation(reader)?),
        RecordKind::Stamp => RecordDetails::Stamp(Stamp {
            input_sha256: reader.fixed("input_sha256")?,
            digital_source_type: reader.text("digital_source_type", 1, MAX_SOURCE_TYPE_BYTES)?,
        }),
    };
    Ok(Record {
        leaf_index,
        encoding_version: VERSION,
        leaf_hash: [0; 32],
        prev_hash: None,
        serial,
        created_at,
        output_sha256,
        output_mime,
        manifest,
        details,
    })
}

fn decode_generation(reader: &mut Reader<'_>) -> Result<Generation, LeafError> {
    Ok(Generation {
        model_name: reader.text("model_name", 1, MAX_MODEL_NAME_BYTES)?,
        weights_sha256: reader.fixed("weights_sha256")?,
        prompt: None,
        prompt_sha256: reader.fixed("prompt_sha256")?,
        seed: reader.u64("seed")?,
        steps: reader.u32("steps")?,
        guidance: reader.finite_f64("guidance")?,
        width: reader.u32("width")?,
        height: reader.u32("height")?,
        watermark_key_id: reader.fixed("watermark_key_id")?,
        watermark_payload: reader.text("watermark_payload", 1, MAX_PAYLOAD_BYTES)?,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::ledger::encoding::{decode, leaf_hash};
    use crate::ledger::to_hex;

    fn generation() -> RecordDetails {
        RecordDetails::Generation(Generation {
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
        })
    }

    fn stamp() -> RecordDetails {
        RecordDetails::Stamp(Stamp {
            input_sha256: [0xDD; 32],
            digital_source_type: "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
                .into(),
        })
    }

    fn view(details: &RecordDetails) -> LeafView<'_> {
        LeafView {
            leaf_index: 3,
            serial: 7,
            created_at: datetime!(2026-12-04 15:00:00.5 UTC),
            output_sha256: &[0xCC; 32],
            output_mime: "image/png",
            manifest: &[9, 9],
            details,
        }
    }

    /// The bytes every version 2 leaf of `view` starts with, up to the
    /// kind-specific fields.
    fn common_prefix(kind: u8) -> Vec<u8> {
        let mut expected = Vec::new();
        expected.extend_from_slice(b"MGLR");
        expected.extend_from_slice(&[2, kind]);
        expected.extend_from_slice(&3_u64.to_be_bytes());
        expected.extend_from_slice(&7_u64.to_be_bytes());
        expected.extend_from_slice(&1_796_396_400_i64.to_be_bytes());
        expected.extend_from_slice(&500_000_000_u32.to_be_bytes());
        expected.extend_from_slice(&[0xCC; 32]);
        expected.extend_from_slice(&[0, 0, 0, 9]);
        expected.extend_from_slice(b"image/png");
        expected.extend_from_slice(&[0, 0, 0, 2, 9, 9]);
        expected
    }

    #[test]
    fn generation_matches_documented_layout() {
        let details = generation();
        let bytes = encode(&view(&details));

        let mut expected = common_prefix(1);
        expected.extend_from_slice(&[0, 0, 0, 1, b'm']);
        expected.extend_from_slice(&[0xAA; 32]);
        expected.extend_from_slice(&[0xBB; 32]);
        expected.extend_from_slice(&42_u64.to_be_bytes());
        expected.extend_from_slice(&20_u32.to_be_bytes());
        expected.extend_from_slice(&[0x40, 0x1E, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&64_u32.to_be_bytes());
        expected.extend_from_slice(&32_u32.to_be_bytes());
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&[0, 0, 0, 1, b'p']);

        assert_eq!(bytes, expected);
        assert!(
            !bytes.windows(2).any(|pair| pair == b"hi"),
            "the prompt text must not be in the leaf"
        );
    }

    #[test]
    fn stamp_matches_documented_layout() {
        let details = stamp();
        let bytes = encode(&view(&details));

        let mut expected = common_prefix(2);
        expected.extend_from_slice(&[0xDD; 32]);
        let uri = b"http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture";
        expected.extend_from_slice(&(uri.len() as u32).to_be_bytes());
        expected.extend_from_slice(uri);

        assert_eq!(bytes, expected);
    }

    #[test]
    fn leaf_hash_known_answers() {
        // Computed independently with Python's struct and hashlib over the
        // layouts in docs/ledger.md: SHA-256(0x00 || leaf).
        let details = generation();
        let bytes = encode(&view(&details));
        assert_eq!(bytes.len(), 195);
        assert_eq!(
            to_hex(&leaf_hash(&bytes)),
            "2f4834562131900e70061e066c3fb7f71715e72f0a47ae593c52a74be40a96af"
        );

        let details = stamp();
        let bytes = encode(&view(&details));
        assert_eq!(bytes.len(), 182);
        assert_eq!(
            to_hex(&leaf_hash(&bytes)),
            "733403dfaf2cdcb3aee5ebb1bef6097291df47a739580cf8f9201e276d4a3884"
        );
    }

    #[test]
    fn decode_round_trips_both_kinds() {
        for details in [generation(), stamp()] {
            let bytes = encode(&view(&details));
            let record = decode(&bytes).expect("decode");

            assert_eq!(record.leaf_index, 3);
            assert_eq!(record.serial, 7);
            assert_eq!(record.encoding_version, 2);
            assert_eq!(record.leaf_hash, leaf_hash(&bytes));
            assert_eq!(record.created_at, datetime!(2026-12-04 15:00:00.5 UTC));
            assert_eq!(record.manifest, vec![9, 9]);
            assert_eq!(record.canonical_encoding(), bytes);
            let mut expected = details.clone();
            if let RecordDetails::Generation(generation) = &mut expected {
                generation.prompt = None;
            }
            assert_eq!(record.details, expected);
        }
    }

    #[test]
    fn decode_rejects_every_truncation() {
        let details = generation();
        let bytes = encode(&view(&details));
        for length in 0..bytes.len() {
            let result = decode(&bytes[..length]);
            assert!(result.is_err(), "prefix of {length} bytes decoded");
        }
    }

    #[test]
    fn decode_rejects_malformed_leaves() {
        let details = generation();
        let good = encode(&view(&details));
        let with = |offset: usize, value: u8| {
            let mut bytes = good.clone();
            bytes[offset] = value;
            bytes
        };
        let mut long = good.clone();
        long.push(0);

        assert!(matches!(
            decode(&with(0, b'X')),
            Err(LeafError::BadMagic { .. })
        ));
        assert!(matches!(
            decode(&with(4, 3)),
            Err(LeafError::UnknownVersion { version: 3 })
        ));
        assert!(matches!(
            decode(&with(5, 9)),
            Err(LeafError::UnknownKind { code: 9, .. })
        ));
        assert_eq!(decode(&long), Err(LeafError::TrailingBytes { extra: 1 }));
        // Nanoseconds at bytes 30..34: 0xFF.. is above 999999999.
        let bad_time = with(30, 0xFF);
        assert!(matches!(
            decode(&bad_time),
            Err(LeafError::InvalidField {
                field: "created_at",
                ..
            })
        ));
        // The MIME type's length at bytes 66..70: zero is below the minimum.
        let mut empty_mime = good.clone();
        empty_mime[66..70].copy_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            decode(&empty_mime),
            Err(LeafError::InvalidField {
                field: "output_mime",
                ..
            })
        ));
    }
}
