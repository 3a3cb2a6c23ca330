//! Writing to the ledger: serial reservations and appended records.

use std::path::Path;

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};
use tracing::debug;

use super::encoding::{self, Fields};
use super::record::{NewRecord, Record};
use super::{Ledger, LedgerError, map_sql_error};

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

impl Ledger {
    /// Reserves the next serial in its own short write transaction.
    ///
    /// Serials start at 1 and increase. SQLite's AUTOINCREMENT keeps them
    /// unique across threads and processes and never hands one out twice,
    /// even when the reserving process dies before it appends, so such a
    /// crash leaves a gap in the serials.
    pub fn reserve_serial(&mut self) -> Result<u64, LedgerError> {
        let now = unix_nanos(OffsetDateTime::now_utc()).unwrap_or(i64::MAX);
        let Ledger {
            conn,
            path,
            busy_timeout,
        } = self;
        let fail = |source| map_sql_error(path, *busy_timeout, "reserve serial", source);

        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute("INSERT INTO serials (reserved_ns) VALUES (?1)", [now])
            .map_err(fail)?;
        let serial = tx.last_insert_rowid();
        tx.commit().map_err(fail)?;

        debug!(serial, "reserved ledger serial");
        u64::try_from(serial).map_err(|_| LedgerError::CorruptRecord {
            path: path.clone(),
            leaf_index: -1,
            reason: format!("serial table returned negative serial {serial}"),
        })
    }

    /// Appends a record in one immediate transaction: checks that its
    /// serial was reserved and has no record yet, then assigns the next
    /// leaf index, links it to the previous record and stores its hash.
    pub fn append(&mut self, record: NewRecord) -> Result<Record, LedgerError> {
        let record = validate(record)?;
        let serial = record.serial;
        let created_ns = unix_nanos(record.created_at).unwrap_or_default();
        let serial_sql = i64::try_from(serial).unwrap_or(-1);
        let Ledger {
            conn,
            path,
            busy_timeout,
        } = self;
        let fail = |source| map_sql_error(path, *busy_timeout, "append record", source);

        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;

        let reserved: Option<i64> = tx
            .query_row(
                "SELECT serial FROM serials WHERE serial = ?1",
                [serial_sql],
                |row| row.get(0),
            )
            .optional()
            .map_err(fail)?;
        if reserved.is_none() {
            return Err(LedgerError::SerialNotReserved {
                path: path.clone(),
                serial,
            });
        }
        let used: Option<i64> = tx
            .query_row(
                "SELECT leaf_index FROM records WHERE serial = ?1",
                [serial_sql],
                |row| row.get(0),
            )
            .optional()
            .map_err(fail)?;
        if let Some(leaf_index) = used {
            return Err(LedgerError::SerialAlreadyUsed {
                path: path.clone(),
                serial,
                leaf_index: leaf_index.max(0).unsigned_abs(),
            });
        }

        let last: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT leaf_index, record_hash FROM records ORDER BY leaf_index DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(fail)?;
        let (leaf_index, prev_hash) = match last {
            None => (0, [0u8; 32]),
            Some((index, hash)) => next_position(path, index, &hash)?,
        };

        let record_hash = encoding::record_hash(&Fields::from_new(&record, leaf_index, &prev_hash));
        insert_record(
            &tx,
            &record,
            leaf_index,
            &prev_hash,
            &record_hash,
            created_ns,
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;

        debug!(serial, leaf_index, "appended ledger record");
        Ok(Record::from_parts(
            leaf_index,
            prev_hash,
            record_hash,
            record,
        ))
    }
}

/// Leaf index and previous hash that follow the last stored record.
fn next_position(
    path: &Path,
    last_index: i64,
    last_hash: &[u8],
) -> Result<(u64, [u8; 32]), LedgerError> {
    let corrupt = |reason: String| LedgerError::CorruptRecord {
        path: path.to_path_buf(),
        leaf_index: last_index,
        reason,
    };
    let index = u64::try_from(last_index).map_err(|_| corrupt("negative leaf index".into()))?;
    let hash: [u8; 32] = last_hash.try_into().map_err(|_| {
        corrupt(format!(
            "record_hash has {} bytes, expected 32",
            last_hash.len()
        ))
    })?;
    Ok((index + 1, hash))
}

const INSERT_SQL: &str = "INSERT INTO records (
    leaf_index, serial, kind, created_ns, model_name, weights_sha256,
    prompt, prompt_sha256, seed, steps, guidance, width, height,
    watermark_key_id, watermark_payload, output_sha256, output_mime,
    manifest, prev_hash, record_hash
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";

fn insert_record(
    tx: &rusqlite::Transaction<'_>,
    record: &NewRecord,
    leaf_index: u64,
    prev_hash: &[u8; 32],
    record_hash: &[u8; 32],
    created_ns: i64,
) -> rusqlite::Result<usize> {
    // Leaf indices and serials are below 2^63 (SQLite rowids); the seed is
    // stored as the i64 with the same bits.
    let values = params![
        leaf_index as i64,
        record.serial as i64,
        record.kind.code(),
        created_ns,
        record.model_name,
        record.weights_sha256.as_slice(),
        record.prompt,
        record.prompt_sha256.as_slice(),
        record.seed as i64,
        record.steps,
        record.guidance,
        record.width,
        record.height,
        record.watermark_key_id.as_slice(),
        record.watermark_payload,
        record.output_sha256.as_slice(),
        record.output_mime,
        record.manifest,
        prev_hash.as_slice(),
        record_hash.as_slice(),
    ];
    tx.execute(INSERT_SQL, values)
}

/// Nanoseconds since the Unix epoch, if they fit an i64 (years 1677 to
/// 2262).
pub(crate) fn unix_nanos(time: OffsetDateTime) -> Option<i64> {
    i64::try_from(time.unix_timestamp_nanos()).ok()
}

/// Checks a new record's fields and brings it to the stored form: UTC time
/// and no negative zero (SQLite would read -0.0 back as 0.0, which would
/// change the record hash).
fn validate(mut record: NewRecord) -> Result<NewRecord, LedgerError> {
    let serial = record.serial;
    let invalid = |field, reason: String| LedgerError::InvalidRecord {
        serial,
        field,
        reason,
    };

    if unix_nanos(record.created_at).is_none() {
        return Err(invalid(
            "created_at",
            "must be between the years 1678 and 2261".into(),
        ));
    }
    record.created_at = record.created_at.to_offset(UtcOffset::UTC);

    if !record.guidance.is_finite() {
        return Err(invalid(
            "guidance",
            format!("is {}; it must be finite", record.guidance),
        ));
    }
    if record.guidance == 0.0 {
        record.guidance = 0.0;
    }

    check_length(
        serial,
        "model_name",
        record.model_name.len(),
        1,
        MAX_MODEL_NAME_BYTES,
    )?;
    check_length(
        serial,
        "watermark_payload",
        record.watermark_payload.len(),
        1,
        MAX_PAYLOAD_BYTES,
    )?;
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
    if let Some(prompt) = &record.prompt {
        check_length(serial, "prompt", prompt.len(), 0, MAX_PROMPT_BYTES)?;
        let digest: [u8; 32] = Sha256::digest(prompt.as_bytes()).into();
        if digest != record.prompt_sha256 {
            return Err(invalid(
                "prompt_sha256",
                "does not match the SHA-256 of the prompt's UTF-8 bytes".into(),
            ));
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
