//! Reading records back: lookups by serial, time, key and output hash.

use rusqlite::types::FromSql;
use rusqlite::{OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::record::{NewRecord, Record, RecordKind};
use super::{Ledger, LedgerError};

/// Columns of `records` in the order that [`decode_row`] reads them.
pub(crate) const RECORD_COLUMNS: &str = "leaf_index, serial, kind, created_ns, model_name, \
     weights_sha256, prompt, prompt_sha256, seed, steps, guidance, width, height, \
     watermark_key_id, watermark_payload, output_sha256, output_mime, manifest, \
     prev_hash, record_hash";

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
        let sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE serial = ?1");
        let row = self
            .conn
            .query_row(&sql, [serial], |row| Ok(decode_row(row)))
            .optional()
            .map_err(|source| self.sql_error("read record", source))?;
        row.transpose().map_err(|fault| self.corrupt(fault))
    }

    /// Lists records created in `[since, until)`, oldest leaf first.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Record>, LedgerError> {
        let since = filter.since.map_or(i64::MIN, clamp_nanos);
        let until = filter.until.map_or(i64::MAX, clamp_nanos);
        let limit = filter
            .limit
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let until_is_open = filter.until.is_none();
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records \
             WHERE created_ns >= ?1 AND (created_ns < ?2 OR ?3) \
             ORDER BY leaf_index LIMIT ?4"
        );
        self.query_records(&sql, params![since, until, until_is_open, limit])
    }

    /// Serials of generation records watermarked with this key id, in
    /// increasing order.
    pub fn serials_for_key(&self, key_id: &[u8; 8]) -> Result<Vec<u64>, LedgerError> {
        let fail = |source| self.sql_error("look up serials by key", source);
        let mut statement = self
            .conn
            .prepare(
                "SELECT serial FROM records WHERE watermark_key_id = ?1 AND kind = ?2 \
                 ORDER BY serial",
            )
            .map_err(fail)?;
        let rows = statement
            .query_map(
                params![key_id.as_slice(), RecordKind::Generation.code()],
                |row| row.get::<_, i64>(0),
            )
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
            "SELECT {RECORD_COLUMNS} FROM records WHERE output_sha256 = ?1 ORDER BY leaf_index"
        );
        self.query_records(&sql, [sha.as_slice()])
    }

    /// Number of records (the Merkle tree size).
    pub fn len(&self) -> Result<u64, LedgerError> {
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM records", [], |row| row.get(0))
            .map_err(|source| self.sql_error("count records", source))?;
        Ok(count.max(0).unsigned_abs())
    }

    /// Whether the ledger has no records.
    pub fn is_empty(&self) -> Result<bool, LedgerError> {
        Ok(self.len()? == 0)
    }

    fn query_records(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Record>, LedgerError> {
        let fail = |source| self.sql_error("read records", source);
        let mut statement = self.conn.prepare(sql).map_err(fail)?;
        let rows = statement
            .query_map(params, |row| Ok(decode_row(row)))
            .map_err(fail)?;
        let mut records = Vec::new();
        for row in rows {
            let record = row.map_err(fail)?.map_err(|fault| self.corrupt(fault))?;
            records.push(record);
        }
        Ok(records)
    }

    pub(crate) fn corrupt(&self, fault: RowFault) -> LedgerError {
        LedgerError::CorruptRecord {
            path: self.path.clone(),
            leaf_index: fault.leaf_index,
            reason: fault.reason,
        }
    }
}

/// A stored row that does not decode into a record.
#[derive(Debug)]
pub(crate) struct RowFault {
    /// `leaf_index` column of the row (-1 if unreadable).
    pub leaf_index: i64,
    /// Which column failed and how.
    pub reason: String,
}

/// Decodes one row of [`RECORD_COLUMNS`]. Hashes are returned as stored;
/// [`Ledger::verify_chain`] recomputes them.
pub(crate) fn decode_row(row: &Row<'_>) -> Result<Record, RowFault> {
    let leaf_index: i64 = value(row, 0, "leaf_index")?;
    let leaf = u64::try_from(leaf_index)
        .map_err(|_| row_fault(row, 0, "leaf_index", format!("negative value {leaf_index}")))?;

    let kind_code: i64 = value(row, 2, "kind")?;
    let kind = RecordKind::from_code(kind_code)
        .ok_or_else(|| row_fault(row, 2, "kind", format!("unknown kind code {kind_code}")))?;
    let created_ns: i64 = value(row, 3, "created_ns")?;
    let created_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(created_ns))
        .map_err(|error| row_fault(row, 3, "created_ns", error.to_string()))?;

    let fields = NewRecord {
        serial: unsigned(row, 1, "serial")?,
        kind,
        created_at,
        model_name: value(row, 4, "model_name")?,
        weights_sha256: fixed(row, 5, "weights_sha256")?,
        prompt: value(row, 6, "prompt")?,
        prompt_sha256: fixed(row, 7, "prompt_sha256")?,
        // The seed is stored as the i64 with the same bits.
        seed: value::<i64>(row, 8, "seed")? as u64,
        steps: narrow(row, 9, "steps")?,
        guidance: value(row, 10, "guidance")?,
        width: narrow(row, 11, "width")?,
        height: narrow(row, 12, "height")?,
        watermark_key_id: fixed(row, 13, "watermark_key_id")?,
        watermark_payload: value(row, 14, "watermark_payload")?,
        output_sha256: fixed(row, 15, "output_sha256")?,
        output_mime: value(row, 16, "output_mime")?,
        manifest: value(row, 17, "manifest")?,
    };
    let prev_hash = fixed(row, 18, "prev_hash")?;
    let record_hash = fixed(row, 19, "record_hash")?;
    Ok(Record::from_parts(leaf, prev_hash, record_hash, fields))
}

fn value<T: FromSql>(row: &Row<'_>, index: usize, name: &str) -> Result<T, RowFault> {
    row.get(index)
        .map_err(|error| row_fault(row, index, name, error.to_string()))
}

fn row_fault(row: &Row<'_>, index: usize, name: &str, detail: String) -> RowFault {
    RowFault {
        leaf_index: row.get(0).unwrap_or(-1),
        reason: format!("column {name} (#{index}): {detail}"),
    }
}

fn fixed<const N: usize>(row: &Row<'_>, index: usize, name: &str) -> Result<[u8; N], RowFault> {
    let bytes: Vec<u8> = value(row, index, name)?;
    let length = bytes.len();
    bytes
        .try_into()
        .map_err(|_| row_fault(row, index, name, format!("{length} bytes, expected {N}")))
}

fn unsigned(row: &Row<'_>, index: usize, name: &str) -> Result<u64, RowFault> {
    let number: i64 = value(row, index, name)?;
    u64::try_from(number)
        .map_err(|_| row_fault(row, index, name, format!("negative value {number}")))
}

fn narrow(row: &Row<'_>, index: usize, name: &str) -> Result<u32, RowFault> {
    let number: i64 = value(row, index, name)?;
    u32::try_from(number)
        .map_err(|_| row_fault(row, index, name, format!("{number} is out of range")))
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
    use crate::ledger::test_support::{fill, sample_record, temp_ledger};

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
                record.watermark_key_id = [9; 8];
                other_key.push(serial);
            }
            ledger.append(record).expect("append");
        }

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
             UPDATE records SET steps = -5, kind = 1;",
        )
        .expect("damage row");

        let error = ledger.get(1).expect_err("damaged row");
        assert!(
            matches!(error, LedgerError::CorruptRecord { leaf_index: 0, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("steps"));
    }
}
