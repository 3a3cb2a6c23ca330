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
    // Leaf indices and serials are SQLite rowids, so they are below 2^63.
    // The seed is stored as the i64 with the same bits.
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
            "must be between 1677-09-22 and 2262-04-11 UTC".into(),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::ledger::test_support::{fill, sample_record, temp_ledger};

    #[test]
    fn append_then_get_round_trips() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let first_serial = ledger.reserve_serial().expect("reserve");
        let second_serial = ledger.reserve_serial().expect("reserve");
        let first = ledger
            .append(sample_record(first_serial, 1))
            .expect("append first");
        let second = ledger
            .append(sample_record(second_serial, 2))
            .expect("append second");

        assert_eq!(first.leaf_index, 0);
        assert_eq!(first.prev_hash, [0; 32]);
        assert_eq!(second.leaf_index, 1);
        assert_eq!(second.prev_hash, first.record_hash);
        assert_eq!(ledger.get(first_serial).expect("get"), Some(first));
        assert_eq!(ledger.get(second_serial).expect("get"), Some(second));
    }

    #[test]
    fn serials_start_at_one_and_increase() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let serials: Vec<u64> = (0..3)
            .map(|_| ledger.reserve_serial().expect("reserve"))
            .collect();
        assert_eq!(serials, vec![1, 2, 3]);
    }

    #[test]
    fn append_unreserved_serial_is_rejected() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let error = ledger
            .append(sample_record(99, 0))
            .expect_err("unreserved serial");
        assert!(
            matches!(error, LedgerError::SerialNotReserved { serial: 99, .. }),
            "{error:?}"
        );
        assert_eq!(ledger.len().expect("count"), 0);

        let huge = ledger
            .append(sample_record(u64::MAX, 0))
            .expect_err("huge serial");
        assert!(
            matches!(huge, LedgerError::SerialNotReserved { .. }),
            "{huge:?}"
        );
    }

    #[test]
    fn append_used_serial_is_rejected() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let stored = fill(&mut ledger, 1).remove(0);
        let error = ledger
            .append(sample_record(stored.serial, 5))
            .expect_err("used serial");
        assert!(
            matches!(error, LedgerError::SerialAlreadyUsed { leaf_index: 0, .. }),
            "{error:?}"
        );
        assert_eq!(ledger.len().expect("count"), 1);
    }

    #[test]
    fn append_invalid_fields_are_rejected() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let serial = ledger.reserve_serial().expect("reserve");
        let cases: Vec<(&str, Box<dyn Fn(&mut NewRecord)>)> = vec![
            ("guidance", Box::new(|r| r.guidance = f64::NAN)),
            ("guidance", Box::new(|r| r.guidance = f64::INFINITY)),
            ("prompt_sha256", Box::new(|r| r.prompt_sha256 = [0; 32])),
            ("model_name", Box::new(|r| r.model_name.clear())),
            (
                "watermark_payload",
                Box::new(|r| r.watermark_payload = "x".repeat(257)),
            ),
            ("output_mime", Box::new(|r| r.output_mime = "m".repeat(128))),
            (
                "manifest",
                Box::new(|r| r.manifest = vec![0; MAX_MANIFEST_BYTES + 1]),
            ),
            (
                "created_at",
                Box::new(|r| r.created_at = time::macros::datetime!(2300-01-01 0:00 UTC)),
            ),
        ];
        for (field, change) in cases {
            let mut record = sample_record(serial, 0);
            change(&mut record);
            let error = ledger.append(record).expect_err(field);
            match error {
                LedgerError::InvalidRecord { field: got, .. } => assert_eq!(got, field),
                other => panic!("{field}: expected InvalidRecord, got {other:?}"),
            }
        }
        assert_eq!(ledger.len().expect("count"), 0);
    }

    #[test]
    fn append_normalizes_time_and_zero() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let serial = ledger.reserve_serial().expect("reserve");
        let mut record = sample_record(serial, 0);
        let instant = record.created_at;
        record.created_at = instant.to_offset(time::macros::offset!(+02:00));
        record.guidance = -0.0;
        record.seed = u64::MAX;
        record.prompt = None;

        let stored = ledger.append(record).expect("append");
        let read = ledger.get(serial).expect("get").expect("record exists");
        assert_eq!(read, stored);
        assert_eq!(read.created_at, instant);
        assert_eq!(read.created_at.offset(), UtcOffset::UTC);
        assert_eq!(read.guidance.to_bits(), 0.0_f64.to_bits());
        assert_eq!(read.seed, u64::MAX);
        assert!(ledger.verify_chain().expect("verify").is_intact());
    }

    #[test]
    fn locked_ledger_gives_busy_error() {
        let (_dir, path, mut ledger) = temp_ledger();
        ledger
            .set_busy_timeout(Duration::from_millis(100))
            .expect("set timeout");
        let other = rusqlite::Connection::open(&path).expect("second connection");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("take write lock");

        let error = ledger.reserve_serial().expect_err("locked ledger");
        assert!(matches!(error, LedgerError::Busy { .. }), "{error:?}");
        assert!(error.to_string().contains(&path.display().to_string()));

        other.execute_batch("ROLLBACK").expect("release lock");
        assert_eq!(ledger.reserve_serial().expect("reserve after unlock"), 1);
    }

    #[test]
    fn records_reject_update_and_delete() {
        let (_dir, path, mut ledger) = temp_ledger();
        fill(&mut ledger, 1);
        let conn = rusqlite::Connection::open(&path).expect("second connection");

        let update = conn.execute("UPDATE records SET seed = 1", []);
        assert!(update.is_err(), "update must be rejected");
        let delete = conn.execute("DELETE FROM records", []);
        assert!(delete.is_err(), "delete must be rejected");
        assert_eq!(ledger.len().expect("count"), 1);
    }

    #[test]
    fn serials_unique_across_threads() {
        let (_dir, path, _ledger) = temp_ledger();
        let handles: Vec<_> = (0..4)
            .map(|thread| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut ledger = Ledger::open(&path).expect("open per thread");
                    let mut serials = Vec::new();
                    for i in 0..25 {
                        let serial = ledger.reserve_serial().expect("reserve");
                        ledger
                            .append(sample_record(serial, thread * 100 + i))
                            .expect("append");
                        serials.push(serial);
                    }
                    serials
                })
            })
            .collect();

        let mut all = BTreeSet::new();
        for handle in handles {
            for serial in handle.join().expect("thread panicked") {
                assert!(all.insert(serial), "serial {serial} returned twice");
            }
        }
        let ledger = Ledger::open_existing(&path).expect("reopen");
        assert_eq!(all.len(), 100);
        assert_eq!(ledger.len().expect("count"), 100);
        assert!(ledger.verify_chain().expect("verify").is_intact());
    }

    const CHILD_LEDGER_ENV: &str = "MMGEN_TEST_CHILD_LEDGER";

    /// Child half of `serials_unique_across_processes`: run only when that
    /// test starts this binary with the environment variable set.
    #[test]
    #[ignore = "started by serials_unique_across_processes"]
    fn child_reserves_serials() {
        let path = std::env::var_os(CHILD_LEDGER_ENV).expect("child needs the ledger path");
        let path = std::path::PathBuf::from(path);
        let mut ledger = Ledger::open(&path).expect("open in child");
        let mut lines = String::new();
        for i in 0..20 {
            let serial = ledger.reserve_serial().expect("reserve in child");
            ledger
                .append(sample_record(serial, i))
                .expect("append in child");
            lines.push_str(&format!("{serial}\n"));
        }
        let out = path.with_extension(format!("serials-{}", std::process::id()));
        std::fs::write(out, lines).expect("write serials");
    }

    #[test]
    fn serials_unique_across_processes() {
        let (dir, path, _ledger) = temp_ledger();
        let exe = std::env::current_exe().expect("test binary path");
        let children: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["--exact", "ledger::write::tests::child_reserves_serials"])
                    .args(["--ignored", "--test-threads=1", "--quiet"])
                    .env(CHILD_LEDGER_ENV, &path)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("start child process")
            })
            .collect();
        for mut child in children {
            assert!(child.wait().expect("wait for child").success());
        }

        let mut all = BTreeSet::new();
        let mut files = 0;
        for entry in std::fs::read_dir(dir.path()).expect("list temp dir") {
            let entry = entry.expect("dir entry");
            if !entry.file_name().to_string_lossy().contains("serials-") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(entry.path()).expect("read serials");
            for line in text.lines() {
                let serial: u64 = line.parse().expect("serial line");
                assert!(all.insert(serial), "serial {serial} returned twice");
            }
        }
        assert_eq!(files, 3, "every child must report its serials");
        assert_eq!(all.len(), 60);
        let ledger = Ledger::open_existing(&path).expect("reopen");
        assert!(ledger.verify_chain().expect("verify").is_intact());
    }
}
