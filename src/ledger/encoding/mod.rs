//! Canonical byte encodings of a ledger record: the Merkle leaves.
//!
//! docs/ledger.md gives both layouts byte for byte. Fixed-width integers
//! are big-endian, and every variable-length field is preceded by its
//! length as a 4-byte big-endian integer. Version 2 ([`v2`]) is written
//! now. Version 1 ([`v1`]) is only read, for records kept from a schema 1
//! ledger, and is never changed.
//!
//! [`decode`] parses either version strictly: a leaf decodes only if it is
//! exactly what the encoder would write for the decoded record, so the
//! leaf bytes and the record are interchangeable.

mod reader;
pub(crate) mod v1;
pub(crate) mod v2;

use time::OffsetDateTime;

pub use reader::LeafError;

use super::merkle::{self, Hash};
use super::record::{Record, RecordDetails};

/// First four bytes of every encoded record, ASCII "MGLR".
pub const MAGIC: [u8; 4] = *b"MGLR";

/// Version byte of the encoding that `append` writes.
pub const ENCODING_VERSION: u8 = 2;

/// Maximum bytes of `model_name`.
pub const MAX_MODEL_NAME_BYTES: usize = 256;
/// Maximum bytes of `prompt`.
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;
/// Maximum bytes of `watermark_payload`.
pub const MAX_PAYLOAD_BYTES: usize = 256;
/// Maximum bytes of `output_mime`.
pub const MAX_MIME_BYTES: usize = 127;
/// Maximum bytes of `manifest`.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;
/// Maximum bytes of a stamp's `digital_source_type` URI.
pub const MAX_SOURCE_TYPE_BYTES: usize = 512;

/// Borrowed view of the fields that a version 2 leaf covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeafView<'a> {
    pub leaf_index: u64,
    pub serial: u64,
    pub created_at: OffsetDateTime,
    pub output_sha256: &'a [u8; 32],
    pub output_mime: &'a str,
    pub manifest: &'a [u8],
    pub details: &'a RecordDetails,
}

/// Encodes a stored record in the version it was appended with.
pub(crate) fn encode_record(record: &Record) -> Vec<u8> {
    if record.encoding_version == 1 {
        return v1::encode_record(record);
    }
    v2::encode(&LeafView {
        leaf_index: record.leaf_index,
        serial: record.serial,
        created_at: record.created_at,
        output_sha256: &record.output_sha256,
        output_mime: &record.output_mime,
        manifest: &record.manifest,
        details: &record.details,
    })
}

/// Parses a leaf of either version into a record whose `leaf_hash` is the
/// hash of `leaf`. A version 2 generation comes back without its prompt,
/// because the leaf holds only the prompt's SHA-256.
pub fn decode(leaf: &[u8]) -> Result<Record, LeafError> {
    let mut reader = reader::Reader::new(leaf);
    let magic: [u8; 4] = reader.fixed("magic")?;
    if magic != MAGIC {
        return Err(LeafError::BadMagic { found: magic });
    }
    let version = reader.u8("version")?;
    let mut record = match version {
        1 => v1::decode_body(&mut reader)?,
        2 => v2::decode_body(&mut reader)?,
        other => return Err(LeafError::UnknownVersion { version: other }),
    };
    reader.finish()?;
    record.leaf_hash = merkle::leaf_hash(leaf);
    Ok(record)
}

/// Returns the RFC 9162 leaf hash of an encoded record.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    merkle::leaf_hash(leaf)
}

/// Appends a 4-byte big-endian length and then the bytes.
///
/// The caller has checked that `bytes` is shorter than 2^32 bytes
/// (`append` enforces much smaller limits).
fn push_var(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Appends the time as i64 seconds and u32 nanoseconds since the epoch,
/// in UTC.
fn push_time(out: &mut Vec<u8>, time: OffsetDateTime) {
    let utc = time.to_offset(time::UtcOffset::UTC);
    out.extend_from_slice(&utc.unix_timestamp().to_be_bytes());
    out.extend_from_slice(&utc.nanosecond().to_be_bytes());
}
