//! Upgrade of a schema 1 ledger, whose records had one column per field
//! and a hash chain, to schema 2.
//!
//! Each record keeps its version 1 encoding as its leaf, so its hashes do
//! not change. The upgrade first checks the whole chain, because the
//! checkpoints signed afterwards would otherwise commit to a history that
//! was already edited. It runs in one transaction: a failure leaves the
//! file as it was.

use rusqlite::{Connection, Row, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tracing::info;

use super::encoding::v1;
use super::frontier::Frontier;
use super::record::{Generation, Record, RecordDetails};
use super::schema::{self, Contents, SCHEMA_VERSION};
use super::{LedgerError, Location, to_hex, tree};

/// Columns of the schema 1 `records` table, in the order [`decode_v1`]
/// reads them.
const V1_COLUMNS: &str = "leaf_index, serial, created_ns, model_name, weights_sha256, prompt, \
     prompt_sha256, seed, steps, guidance, width, height, watermark_key_id, \
     watermark_payload, output_sha256, output_mime, manifest, prev_hash, record_hash";

/// Upgrades the open schema 1 ledger and returns what it then contains.
/// Another process may have upgraded it first, which is checked under the
/// write lock.
pub(crate) fn upgrade(conn: &mut Connection, at: &Location) -> Result<Contents, LedgerError> {
    let fail = at.sql("upgrade schema");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&fail)?;
    let contents = schema::inspect(&tx).map_err(&fail)?;
    if contents != Contents::Ledger(1) {
        return Ok(contents);
    }
    tx.execute_batch(
        "DROP TRIGGER IF EXISTS records_reject_update;
         DROP TRIGGER IF EXISTS records_reject_delete;
         DROP INDEX IF EXISTS records_by_key;
         DROP INDEX IF EXISTS records_by_output;
         DROP INDEX IF EXISTS records_by_time;
         ALTER TABLE records RENAME TO records_v1;",
    )
    .map_err(&fail)?;
    tx.execute_batch(schema::TABLES_V2).map_err(&fail)?;
    let count = copy_records(&tx, at)?;
    tx.execute_batch("DROP TABLE records_v1;").map_err(&fail)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(&fail)?;
    tx.commit().map_err(&fail)?;
    info!(path = %at.path().display(), records = count, "upgraded ledger to schema 2");
    Ok(Contents::Ledger(SCHEMA_VERSION))
}

/// Copies every schema 1 row into the schema 2 tables after checking its
/// hash and chain link, and stores the tree. Returns the record count.
fn copy_records(conn: &Connection, at: &Location) -> Result<u64, LedgerError> {
    let fail = at.sql("upgrade schema");
    let broken = |leaf_index: u64, reason: String| LedgerError::UpgradeFailed {
        path: at.path().to_path_buf(),
        reason: format!("the hash chain is broken at leaf {leaf_index}: {reason}"),
    };
    let sql = format!("SELECT {V1_COLUMNS} FROM records_v1 ORDER BY leaf_index");
    let mut statement = conn.prepare(&sql).map_err(&fail)?;
    let mut rows = statement.query([]).map_err(&fail)?;
    let mut insert = conn
        .prepare(
            "INSERT INTO records (leaf_index, serial, kind, created_ns, output_sha256, \
             watermark_key_id, leaf) VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6)",
        )
        .map_err(&fail)?;

    let mut frontier = Frontier::empty();
    let mut previous = [0u8; 32];
    let mut nodes = Vec::new();
    while let Some(row) = rows.next().map_err(&fail)? {
        let expected = frontier.size();
        let (record, created_ns, record_hash) =
            decode_v1(row).map_err(|reason| broken(expected, reason))?;
        if record.leaf_index != expected {
            return Err(broken(expected, "the record is missing".into()));
        }
        if record.prev_hash != Some(previous) {
            return Err(broken(
                expected,
                "prev_hash is not the previous record's hash".into(),
            ));
        }
        let leaf = v1::encode_record(&record);
        let digest: [u8; 32] = Sha256::digest(&leaf).into();
        if digest != record_hash {
            let reason = format!(
                "the fields hash to {}, but record_hash is {}",
                to_hex(&digest),
                to_hex(&record_hash)
            );
            return Err(broken(expected, reason));
        }
        let key_id = record.generation().map(|g| g.watermark_key_id.to_vec());
        insert
            .execute(params![
                record.leaf_index as i64,
                record.serial as i64,
                created_ns,
                record.output_sha256.as_slice(),
                key_id,
                leaf,
            ])
            .map_err(&fail)?;
        nodes.clear();
        frontier.push(super::encoding::leaf_hash(&leaf), &mut nodes);
        tree::insert_nodes(conn, at, &nodes)?;
        previous = record_hash;
    }
    Ok(frontier.size())
}

/// Reads one schema 1 row into a version 1 record, its `created_ns` and
/// its stored `record_hash`.
fn decode_v1(row: &Row<'_>) -> Result<(Record, i64, [u8; 32]), String> {
    let get_i64 = |index: usize| row.get::<_, i64>(index).map_err(|e| e.to_string());
    let fixed = |index: usize| -> Result<Vec<u8>, String> {
        row.get::<_, Vec<u8>>(index).map_err(|e| e.to_string())
    };
    let hash = |index: usize| -> Result<[u8; 32], String> {
        fixed(index)?
            .try_into()
            .map_err(|_| format!("column #{index} is not 32 bytes"))
    };
    let text = |index: usize| row.get::<_, String>(index).map_err(|e| e.to_string());
    let narrow = |index: usize| -> Result<u32, String> {
        u32::try_from(get_i64(index)?).map_err(|_| format!("column #{index} is out of range"))
    };

    let created_ns = get_i64(2)?;
    let created_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(created_ns))
        .map_err(|e| e.to_string())?;
    let generation = Generation {
        model_name: text(3)?,
        weights_sha256: hash(4)?,
        prompt: row.get(5).map_err(|e| e.to_string())?,
        prompt_sha256: hash(6)?,
        // The seed was stored as the i64 with the same bits.
        seed: get_i64(7)? as u64,
        steps: narrow(8)?,
        guidance: row.get(9).map_err(|e| e.to_string())?,
        width: narrow(10)?,
        height: narrow(11)?,
        watermark_key_id: fixed(12)?
            .try_into()
            .map_err(|_| "watermark_key_id is not 8 bytes".to_string())?,
        watermark_payload: text(13)?,
    };
    let record = Record {
        leaf_index: get_i64(0)?.max(0).unsigned_abs(),
        encoding_version: v1::VERSION,
        leaf_hash: [0; 32],
        prev_hash: Some(hash(17)?),
        serial: get_i64(1)?.max(0).unsigned_abs(),
        created_at,
        output_sha256: hash(14)?,
        output_mime: text(15)?,
        manifest: fixed(16)?,
        details: RecordDetails::Generation(generation),
    };
    Ok((record, created_ns, hash(18)?))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::ledger::Ledger;
    use crate::ledger::test_support::test_signer;

    /// The schema 1 tables, as the previous release created them.
    const SCHEMA_V1: &str = "
        CREATE TABLE serials (serial INTEGER PRIMARY KEY AUTOINCREMENT, reserved_ns INTEGER NOT NULL);
        CREATE TABLE records (
            leaf_index INTEGER PRIMARY KEY, serial INTEGER NOT NULL UNIQUE REFERENCES serials(serial),
            kind INTEGER NOT NULL, created_ns INTEGER NOT NULL, model_name TEXT NOT NULL,
            weights_sha256 BLOB NOT NULL, prompt TEXT, prompt_sha256 BLOB NOT NULL,
            seed INTEGER NOT NULL, steps INTEGER NOT NULL, guidance REAL NOT NULL,
            width INTEGER NOT NULL, height INTEGER NOT NULL, watermark_key_id BLOB NOT NULL,
            watermark_payload TEXT NOT NULL, output_sha256 BLOB NOT NULL, output_mime TEXT NOT NULL,
            manifest BLOB NOT NULL, prev_hash BLOB NOT NULL, record_hash BLOB NOT NULL);
        CREATE INDEX records_by_key ON records (watermark_key_id, serial);
        CREATE INDEX records_by_output ON records (output_sha256);
        CREATE INDEX records_by_time ON records (created_ns);
        CREATE TRIGGER records_reject_update BEFORE UPDATE ON records
        BEGIN SELECT RAISE(ABORT, 'ledger records are immutable'); END;
        CREATE TRIGGER records_reject_delete BEFORE DELETE ON records
        BEGIN SELECT RAISE(ABORT, 'ledger records are immutable'); END;
        PRAGMA application_id = 1835879495;
        PRAGMA user_version = 1;";

    /// Writes a schema 1 ledger of `count` chained records and returns
    /// their version 1 leaves.
    fn write_v1(path: &std::path::Path, count: u64) -> Vec<Vec<u8>> {
        let conn = Connection::open(path).expect("create schema 1 file");
        conn.execute_batch(SCHEMA_V1).expect("schema 1");
        let mut previous = [0u8; 32];
        let mut leaves = Vec::new();
        for i in 0..count {
            let fields = crate::ledger::test_support::sample_record(i + 1, i);
            let RecordDetails::Generation(generation) = fields.details.clone() else {
                unreachable!("sample records are generations")
            };
            let record = Record {
                leaf_index: i,
                encoding_version: 1,
                leaf_hash: [0; 32],
                prev_hash: Some(previous),
                serial: i + 1,
                created_at: fields.created_at,
                output_sha256: fields.output_sha256,
                output_mime: fields.output_mime.clone(),
                manifest: fields.manifest.clone(),
                details: RecordDetails::Generation(generation.clone()),
            };
            let leaf = v1::encode_record(&record);
            let hash: [u8; 32] = Sha256::digest(&leaf).into();
            conn.execute("INSERT INTO serials (reserved_ns) VALUES (0)", [])
                .expect("serial");
            conn.execute(
                "INSERT INTO records VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
                 ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                params![
                    i as i64,
                    (i + 1) as i64,
                    fields.created_at.unix_timestamp_nanos() as i64,
                    generation.model_name,
                    generation.weights_sha256.as_slice(),
                    generation.prompt,
                    generation.prompt_sha256.as_slice(),
                    generation.seed as i64,
                    generation.steps,
                    generation.guidance,
                    generation.width,
                    generation.height,
                    generation.watermark_key_id.as_slice(),
                    generation.watermark_payload,
                    fields.output_sha256.as_slice(),
                    fields.output_mime,
                    fields.manifest,
                    previous.as_slice(),
                    hash.as_slice(),
                ],
            )
            .expect("schema 1 row");
            previous = hash;
            leaves.push(leaf);
        }
        leaves
    }

    #[test]
    fn schema_1_ledger_upgrades_keeping_leaves() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.sqlite");
        let leaves = write_v1(&path, 5);

        let mut ledger = Ledger::open(&path).expect("open upgrades");
        let records = ledger.list(&Default::default()).expect("list");
        assert_eq!(records.len(), 5);
        for (record, leaf) in records.iter().zip(&leaves) {
            assert_eq!(record.encoding_version, 1);
            assert_eq!(&record.canonical_encoding(), leaf);
            assert_eq!(record.leaf_hash, crate::ledger::merkle::leaf_hash(leaf));
        }
        let signer = test_signer();
        let report = ledger.audit(&signer.verifier()).expect("audit");
        assert!(
            matches!(
                report.first_fault().map(|f| &f.problem),
                Some(crate::ledger::AuditProblem::Uncovered { covered: 0, .. })
            ),
            "{report:?}"
        );

        ledger.sign_checkpoint(&signer).expect("sign");
        let serial = ledger.reserve_serial().expect("reserve");
        let appended = ledger
            .append(
                crate::ledger::test_support::sample_record(serial, 9),
                &signer,
            )
            .expect("append after upgrade");
        assert_eq!(appended.leaf_index, 5);
        assert_eq!(appended.encoding_version, 2);
        let report = ledger.audit(&signer.verifier()).expect("audit");
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.records, 6);
    }

    #[test]
    fn broken_schema_1_chain_is_not_upgraded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.sqlite");
        write_v1(&path, 3);
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "DROP TRIGGER records_reject_update; UPDATE records SET seed = 99 WHERE leaf_index = 2;",
        )
        .expect("edit");
        drop(conn);
        let before = std::fs::read(&path).expect("read");

        let error = Ledger::open(&path).expect_err("broken chain");
        assert!(
            matches!(error, LedgerError::UpgradeFailed { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("leaf 2"), "{error}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }
}
