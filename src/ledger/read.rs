//! Reading records back: lookups by serial, time, key and output hash.
//!
//! Every read decodes the stored leaf and checks that the lookup columns
//! and any stored prompt agree with it, so a row edited outside mmgen
//! gives [`LedgerError::CorruptRecord`] instead of a wrong answer.

use rusqlite::types::FromSql;
use rusqlite::{OptionalExtension, Row, params};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::audit::AuditProblem;
use super::encoding;
use super::record::{Record, RecordDetails};
use super::validate::unix_nanos;
use super::{Ledger, LedgerError, to_hex};

/// Columns of `records` and `prompts` in the order that [`decode_row`]
/// reads them; the query must join `prompts` as `p`.
pub(crate) const RECORD_COLUMNS: &str = "r.leaf_index, r.serial, r.kind, r.created_ns, \
     r.output_sha256, r.watermark_key_id, r.leaf, p.prompt";

/// The tables that [`RECORD_COLUMNS`] reads.
pub(crate) const RECORD_TABLES: &str =
    "records AS r LEFT JOIN prompts AS p ON p.leaf_index = r.leaf_index";

/// Which records [`Ledger::list`] returns, in leaf index order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Earliest `created_at` to include (inclusive).
    pub since: Option<OffsetDateTime>,
    /// Latest `created_at` to include (exclusive).
    pub until: Option<OffsetDateTime>,
    /// Maximum number of records, counted from the oldest match.
    pub limit: Option<u64>,
}

impl Ledger {
    /// Returns the record with this serial, or `None` if it has none (not
    /// reserved, or reserved and not yet appended).
    pub fn get(&self, serial: u64) -> Result<Option<Record>, LedgerError> {
        let Ok(serial) = i64::try_from(serial) else {
            return Ok(None);
        };
        let sql = format!("SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} WHERE r.serial = ?1");
        let row = self
            .conn
            .query_row(&sql, [serial], |row| Ok(decode_row(row)))
            .optional()
            .map_err(|source| self.sql_error("read record", source))?;
        row.transpose().map_err(|fault| self.corrupt(fault))
    }

    /// Returns the record at this leaf index, if there is one.
    pub fn get_by_leaf_index(&self, leaf_index: u64) -> Result<Option<Record>, LedgerError> {
        let Ok(leaf_index) = i64::try_from(leaf_index) else {
            return Ok(None);
        };
        let sql = format!("SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} WHERE r.leaf_index = ?1");
        let row = self
            .conn
            .query_row(&sql, [leaf_index], |row| Ok(decode_row(row)))
            .optional()
            .map_err(|source| self.sql_error("read record", source))?;
        row.transpose().map_err(|fault| self.corrupt(fault))
    }

    /// Lists records created in `[since, until)`, oldest leaf first.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Record>, LedgerError> {
        let mut records = Vec::new();
        self.for_each(filter, |record| {
            records.push(record);
            Ok(())
        })?;
        Ok(records)
    }

    /// Calls `visit` with each record created in `[since, until)`, oldest
    /// leaf first, without holding them all in memory.
    pub fn for_each(
        &self,
        filter: &ListFilter,
        mut visit: impl FnMut(Record) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let since = filter.since.map_or(i64::MIN, clamp_nanos);
        let until = filter.until.map_or(i64::MAX, clamp_nanos);
        let limit = filter
            .limit
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let until_is_open = filter.until.is_none();
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} \
             WHERE r.created_ns >= ?1 AND (r.created_ns < ?2 OR ?3) \
             ORDER BY r.leaf_index LIMIT ?4"
        );
        let fail = |source| self.sql_error("read records", source);
        let mut statement = self.conn.prepare(&sql).map_err(fail)?;
        let mut rows = statement
            .query(params![since, until, until_is_open, limit])
            .map_err(fail)?;
        while let Some(row) = rows.next().map_err(fail)? {
            let record = decode_row(row).map_err(|fault| self.corrupt(fault))?;
            visit(record)?;
        }
        Ok(())
    }

    /// Serials of generation records watermarked with this key id, in
    /// increasing order.
    ///
    /// Only generation records get a `watermark_key_id` (stamps store
    /// NULL), so the query needs no `kind` filter. Without one it reads
    /// the `records_by_key` index alone. A filter on `kind` would look up
    /// every matching row in the table, which made this read two to three
    /// times slower for a million records.
    pub fn serials_for_key(&self, key_id: &[u8; 8]) -> Result<Vec<u64>, LedgerError> {
        let fail = |source| self.sql_error("look up serials by key", source);
        let mut statement = self
            .conn
            .prepare("SELECT serial FROM records WHERE watermark_key_id = ?1 ORDER BY serial")
            .map_err(fail)?;
        let rows = statement
            .query_map(params![key_id.as_slice()], |row| row.get::<_, i64>(0))
            .map_err(fail)?;
        let mut serials = Vec::new();
        for serial in rows {
            let serial = serial.map_err(fail)?;
            serials.push(serial.max(0).unsigned_abs());
        }
        Ok(serials)
    }

    /// Records whose output file has this SHA-256, oldest leaf first.
    pub fn find_by_output_sha256(&self, sha: &[u8; 32]) -> Result<Vec<Record>, LedgerError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} WHERE r.output_sha256 = ?1 \
             ORDER BY r.leaf_index"
        );
        let fail = |source| self.sql_error("read records", source);
        let mut statement = self.conn.prepare(&sql).map_err(fail)?;
        let rows = statement
            .query_map([sha.as_slice()], |row| Ok(decode_row(row)))
            .map_err(fail)?;
        let mut records = Vec::new();
        for row in rows {
            records.push(row.map_err(fail)?.map_err(|fault| self.corrupt(fault))?);
        }
        Ok(records)
    }

    /// Number of records, which is the Merkle tree size. Reads one row.
    pub fn len(&self) -> Result<u64, LedgerError> {
        super::tree::size(&self.conn).map_err(|source| self.sql_error("count records", source))
    }

    /// Whether the ledger has no records.
    pub fn is_empty(&self) -> Result<bool, LedgerError> {
        Ok(self.len()? == 0)
    }

    pub(crate) fn corrupt(&self, fault: RowFault) -> LedgerError {
        LedgerError::CorruptRecord {
            path: self.at.path.clone(),
            leaf_index: fault.leaf_index,
            reason: fault.problem.to_string(),
        }
    }
}

/// A stored row that does not decode into a record, or whose columns
/// disagree with its leaf.
#[derive(Debug)]
pub(crate) struct RowFault {
    /// `leaf_index` column of the row (-1 if unreadable).
    pub leaf_index: i64,
    /// What is wrong.
    pub problem: AuditProblem,
}

/// Decodes one row of [`RECORD_COLUMNS`] and checks its columns and
/// prompt against the leaf.
pub(crate) fn decode_row(row: &Row<'_>) -> Result<Record, RowFault> {
    let mut record = read_leaf(row)?;
    check_row(row, &mut record)?;
    Ok(record)
}

/// Decodes the leaf of a row of [`RECORD_COLUMNS`], with no other checks.
pub(crate) fn read_leaf(row: &Row<'_>) -> Result<Record, RowFault> {
    let leaf_index: i64 = value(row, 0, "leaf_index")?;
    let leaf: Vec<u8> = value(row, 6, "leaf")?;
    encoding::decode(&leaf).map_err(|error| RowFault {
        leaf_index,
        problem: AuditProblem::Unreadable {
            reason: format!("the leaf does not decode: {error}"),
        },
    })
}

/// Checks the lookup columns of a row against its decoded leaf, and adds
/// the stored prompt after checking it against the leaf's prompt hash.
pub(crate) fn check_row(row: &Row<'_>, record: &mut Record) -> Result<(), RowFault> {
    let leaf_index: i64 = value(row, 0, "leaf_index")?;
    let fault = |problem| RowFault {
        leaf_index,
        problem,
    };
    let mismatch = |column: &'static str, stored: String, in_leaf: String| {
        fault(AuditProblem::ColumnMismatch {
            column,
            stored,
            in_leaf,
        })
    };
    if leaf_index != record.leaf_index as i64 {
        return Err(mismatch(
            "leaf_index",
            leaf_index.to_string(),
            record.leaf_index.to_string(),
        ));
    }
    let serial: i64 = value(row, 1, "serial")?;
    if serial != record.serial as i64 {
        return Err(mismatch(
            "serial",
            serial.to_string(),
            record.serial.to_string(),
        ));
    }
    let kind: i64 = value(row, 2, "kind")?;
    if kind != i64::from(record.kind().code()) {
        return Err(mismatch(
            "kind",
            kind.to_string(),
            record.kind().code().to_string(),
        ));
    }
    let created_ns: i64 = value(row, 3, "created_ns")?;
    let leaf_ns = unix_nanos(record.created_at).unwrap_or_default();
    if created_ns != leaf_ns {
        return Err(mismatch(
            "created_ns",
            created_ns.to_string(),
            leaf_ns.to_string(),
        ));
    }
    let output: Vec<u8> = value(row, 4, "output_sha256")?;
    if output != record.output_sha256 {
        return Err(mismatch(
            "output_sha256",
            to_hex(&output),
            to_hex(&record.output_sha256),
        ));
    }
    let key_id: Option<Vec<u8>> = value(row, 5, "watermark_key_id")?;
    let leaf_key_id = record.generation().map(|g| g.watermark_key_id.to_vec());
    if key_id != leaf_key_id {
        let text = |id: &Option<Vec<u8>>| id.as_deref().map_or("NULL".into(), to_hex);
        return Err(mismatch(
            "watermark_key_id",
            text(&key_id),
            text(&leaf_key_id),
        ));
    }

    let prompt: Option<String> = value(row, 7, "prompt")?;
    if let Some(prompt) = prompt {
        attach_prompt(record, prompt).map_err(fault)?;
    }
    Ok(())
}

/// Puts a stored prompt into a version 2 generation record after checking
/// it against the leaf's `prompt_sha256`.
fn attach_prompt(record: &mut Record, prompt: String) -> Result<(), AuditProblem> {
    let version = record.encoding_version;
    let RecordDetails::Generation(generation) = &mut record.details else {
        return Err(AuditProblem::PromptMismatch {
            reason: "a stamp record has a stored prompt".into(),
        });
    };
    if version == 1 {
        return Err(AuditProblem::PromptMismatch {
            reason: "a version 1 record keeps its prompt in the leaf, but has a stored prompt"
                .into(),
        });
    }
    let digest: [u8; 32] = Sha256::digest(prompt.as_bytes()).into();
    if digest != generation.prompt_sha256 {
        return Err(AuditProblem::PromptMismatch {
            reason: format!(
                "the stored prompt hashes to {}, but the leaf commits to {}",
                to_hex(&digest),
                to_hex(&generation.prompt_sha256)
            ),
        });
    }
    generation.prompt = Some(prompt);
    Ok(())
}

fn value<T: FromSql>(row: &Row<'_>, index: usize, name: &str) -> Result<T, RowFault> {
    row.get(index).map_err(|error| RowFault {
        leaf_index: row.get(0).unwrap_or(-1),
        problem: AuditProblem::Unreadable {
            reason: format!("column {name} (#{index}): {error}"),
        },
    })
}

/// Nanoseconds since the epoch, clamped to the i64 range of `created_ns`.
fn clamp_nanos(time: OffsetDateTime) -> i64 {
    let nanos = time.unix_timestamp_nanos();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::ledger::test_support::{
        fill, sample_record, sample_stamp, temp_ledger, test_signer,
    };

    fn serials(records: &[Record]) -> Vec<u64> {
        records.iter().map(|record| record.serial).collect()
    }

    #[test]
    fn list_filters_by_time_and_limit() {
        let (_dir, _path, mut ledger) = temp_ledger();
        // Record i is created at 15:00:00 + i seconds.
        fill(&mut ledger, 5);
        let at = |second: i64| datetime!(2026-12-04 15:00:00 UTC) + time::Duration::seconds(second);

        let all = ledger.list(&ListFilter::default()).expect("list all");
        assert_eq!(serials(&all), vec![1, 2, 3, 4, 5]);

        let window = ListFilter {
            since: Some(at(1)),
            until: Some(at(3)),
            limit: None,
        };
        assert_eq!(
            serials(&ledger.list(&window).expect("list window")),
            vec![2, 3]
        );

        let limited = ListFilter {
            since: Some(at(2)),
            limit: Some(2),
            ..ListFilter::default()
        };
        assert_eq!(
            serials(&ledger.list(&limited).expect("list limited")),
            vec![3, 4]
        );

        let far = ListFilter {
            since: Some(datetime!(9999-01-01 0:00 UTC)),
            ..ListFilter::default()
        };
        assert!(ledger.list(&far).expect("list future").is_empty());
    }

    #[test]
    fn serials_for_key_selects_one_key() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let mut other_key = Vec::new();
        for i in 0..4 {
            let serial = ledger.reserve_serial().expect("reserve");
            let mut record = sample_record(serial, i);
            if i % 2 == 1 {
                if let RecordDetails::Generation(generation) = &mut record.details {
                    generation.watermark_key_id = [9; 8];
                }
                other_key.push(serial);
            }
            ledger.append(record, &test_signer()).expect("append");
        }
        // A stamp between them has no watermark key and is never listed.
        let serial = ledger.reserve_serial().expect("reserve");
        ledger
            .append(sample_stamp(serial, 0), &test_signer())
            .expect("append stamp");

        assert_eq!(ledger.serials_for_key(&[9; 8]).expect("look up"), other_key);
        assert_eq!(
            ledger
                .serials_for_key(&[1, 2, 3, 4, 5, 6, 7, 8])
                .expect("look up"),
            vec![1, 3]
        );
        assert!(ledger.serials_for_key(&[0; 8]).expect("look up").is_empty());
    }

    #[test]
    fn find_by_output_returns_matches() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let records = fill(&mut ledger, 3);

        let found = ledger
            .find_by_output_sha256(&records[1].output_sha256)
            .expect("find");
        assert_eq!(found, vec![records[1].clone()]);
        assert!(
            ledger
                .find_by_output_sha256(&[0; 32])
                .expect("find")
                .is_empty()
        );
    }

    #[test]
    fn get_missing_serials_is_none() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let reserved = ledger.reserve_serial().expect("reserve");

        assert_eq!(ledger.get(reserved).expect("get reserved"), None);
        assert_eq!(ledger.get(0).expect("get zero"), None);
        assert_eq!(ledger.get(u64::MAX).expect("get huge"), None);
        assert!(ledger.is_empty().expect("is empty"));
    }

    #[test]
    fn get_damaged_row_is_corrupt_record() {
        let (_dir, path, mut ledger) = temp_ledger();
        fill(&mut ledger, 1);
        let conn = rusqlite::Connection::open(&path).expect("open directly");
        conn.execute_batch(
            "DROP TRIGGER records_reject_update;
             UPDATE records SET leaf = substr(leaf, 1, 40);",
        )
        .expect("damage row");

        let error = ledger.get(1).expect_err("damaged row");
        assert!(
            matches!(error, LedgerError::CorruptRecord { leaf_index: 0, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("leaf ends"), "{error}");
    }

    #[test]
    fn edited_lookup_column_is_corrupt_record() {
        let (_dir, path, mut ledger) = temp_ledger();
        let records = fill(&mut ledger, 2);
        let conn = rusqlite::Connection::open(&path).expect("open directly");
        conn.execute("DROP TRIGGER records_reject_update", [])
            .expect("drop trigger");
        conn.execute(
            "UPDATE records SET output_sha256 = ?1 WHERE leaf_index = 0",
            [records[1].output_sha256.as_slice()],
        )
        .expect("edit column");

        let error = ledger
            .find_by_output_sha256(&records[1].output_sha256)
            .expect_err("the edited row must not be returned as a match");
        assert!(error.to_string().contains("output_sha256"), "{error}");
    }

    #[test]
    fn stamps_and_generations_list_together() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let serials = ledger.reserve_serials(2).expect("reserve");
        let batch = vec![sample_record(serials[0], 0), sample_stamp(serials[1], 1)];
        ledger.append_batch(batch, &test_signer()).expect("append");

        let all = ledger.list(&ListFilter::default()).expect("list");
        assert_eq!(all.len(), 2);
        assert!(all[0].generation().is_some());
        assert_eq!(
            all[1].stamp().map(|s| s.digital_source_type.as_str()),
            Some("http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture")
        );
        assert_eq!(
            ledger
                .serials_for_key(&[1, 2, 3, 4, 5, 6, 7, 8])
                .expect("look up"),
            vec![1]
        );
    }

    #[test]
    fn record_json_uses_hex_rfc3339_base64() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let record = fill(&mut ledger, 1).remove(0);
        let json = serde_json::to_value(&record).expect("serialize record");

        assert_eq!(json["leaf_index"], 0);
        assert_eq!(json["kind"], "generation");
        assert_eq!(json["encoding_version"], 2);
        assert_eq!(json["created_at"], "2026-12-04T15:00:00Z");
        assert_eq!(json["weights_sha256"], "5a".repeat(32));
        assert_eq!(json["watermark_key_id"], "0102030405060708");
        assert_eq!(json["leaf_hash"], to_hex(&record.leaf_hash));
        assert!(json.get("prev_hash").is_none(), "{json}");
        let manifest = json["manifest"].as_str().expect("manifest is a string");
        assert!(manifest.starts_with("wsLC"), "{manifest}");
        assert_eq!(json["seed"], 0);
    }
}
