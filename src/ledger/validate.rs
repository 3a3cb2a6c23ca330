//! Checks on a new record before it is encoded and stored.

use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

use super::LedgerError;
use super::encoding::{
    MAX_MANIFEST_BYTES, MAX_MIME_BYTES, MAX_MODEL_NAME_BYTES, MAX_PAYLOAD_BYTES, MAX_PROMPT_BYTES,
    MAX_SOURCE_TYPE_BYTES,
};
use super::record::{NewRecord, RecordDetails};

/// Nanoseconds since the Unix epoch, if they fit an i64 (years 1677 to
/// 2262).
pub(crate) fn unix_nanos(time: OffsetDateTime) -> Option<i64> {
    i64::try_from(time.unix_timestamp_nanos()).ok()
}

/// Checks a new record's fields and brings it to the stored form: UTC
/// time, and 0.0 for a guidance of -0.0 so that equal settings give equal
/// leaves.
pub(crate) fn validate(mut record: NewRecord) -> Result<NewRecord, LedgerError> {
    let serial = record.serial;
    let invalid = |field, reason: String| LedgerError::InvalidRecord {
        serial,
        field,
        reason,
    };

    if unix_nanos(record.created_at).is_none() {
        return Err(invalid(
            "created_at",
            "must be between 1677-09-22 and 2262-04-11 UTC".into(),
        ));
    }
    record.created_at = record.created_at.to_offset(UtcOffset::UTC);
    check_length(
        serial,
        "output_mime",
        record.output_mime.len(),
        1,
        MAX_MIME_BYTES,
    )?;
    check_length(
        serial,
        "manifest",
        record.manifest.len(),
        0,
        MAX_MANIFEST_BYTES,
    )?;

    match &mut record.details {
        RecordDetails::Generation(generation) => {
            if !generation.guidance.is_finite() {
                return Err(invalid(
                    "guidance",
                    format!("is {}; it must be finite", generation.guidance),
                ));
            }
            if generation.guidance == 0.0 {
                generation.guidance = 0.0;
            }
            let name_length = generation.model_name.len();
            check_length(serial, "model_name", name_length, 1, MAX_MODEL_NAME_BYTES)?;
            let payload_length = generation.watermark_payload.len();
            check_length(
                serial,
                "watermark_payload",
                payload_length,
                1,
                MAX_PAYLOAD_BYTES,
            )?;
            if let Some(prompt) = &generation.prompt {
                check_length(serial, "prompt", prompt.len(), 0, MAX_PROMPT_BYTES)?;
                let digest: [u8; 32] = Sha256::digest(prompt.as_bytes()).into();
                if digest != generation.prompt_sha256 {
                    return Err(invalid(
                        "prompt_sha256",
                        "does not match the SHA-256 of the prompt's UTF-8 bytes".into(),
                    ));
                }
            }
        }
        RecordDetails::Stamp(stamp) => {
            let uri_length = stamp.digital_source_type.len();
            check_length(
                serial,
                "digital_source_type",
                uri_length,
                1,
                MAX_SOURCE_TYPE_BYTES,
            )?;
            if stamp.digital_source_type.chars().any(char::is_control) {
                return Err(invalid(
                    "digital_source_type",
                    "contains a control character; it must be a URI".into(),
                ));
            }
        }
    }
    Ok(record)
}

fn check_length(
    serial: u64,
    field: &'static str,
    length: usize,
    min: usize,
    max: usize,
) -> Result<(), LedgerError> {
    if (min..=max).contains(&length) {
        return Ok(());
    }
    Err(LedgerError::InvalidRecord {
        serial,
        field,
        reason: format!("has {length} bytes; it must have {min} to {max}"),
    })
}
