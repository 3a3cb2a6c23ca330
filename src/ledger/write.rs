//! Writing to the ledger: serial reservations and appended records.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, Transaction, params};
use time::OffsetDateTime;
use tracing::debug;

use super::checkpoint::{self, CheckpointSigner};
use super::encoding::{self, LeafView};
use super::record::{NewRecord, Record, RecordDetails};
use super::validate::{unix_nanos, validate};
use super::{Ledger, LedgerError, Location, tree};

/// Maximum number of records that one `append_batch` call accepts, so that one
/// transaction stays well below SQLite's and memory's limits.
pub const MAX_BATCH: usize = 100_000;

impl Ledger {
    /// Reserves the next serial in its own short write transaction.
    ///
    /// Serials start at 1 and increase. SQLite's AUTOINCREMENT keeps them
    /// unique across threads and processes and never hands one out twice,
    /// even when the reserving process dies before it appends, so such a
    /// crash leaves a gap in the serials.
    pub fn reserve_serial(&mut self) -> Result<u64, LedgerError> {
        let serials = self.reserve_serials(1)?;
        Ok(serials[0])
    }

    /// Reserves `count` serials in one write transaction and returns them
    /// in increasing order. They need not be contiguous when other
    /// processes reserve at the same time.
    pub fn reserve_serials(&mut self, count: usize) -> Result<Vec<u64>, LedgerError> {
        let now = unix_nanos(OffsetDateTime::now_utc()).unwrap_or(i64::MAX);
        let (tx, at) = self.write_transaction("reserve serial")?;
        let fail = at.sql("reserve serial");
        let mut serials = Vec::with_capacity(count);
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO serials (reserved_ns) VALUES (?1)")
                .map_err(&fail)?;
            for _ in 0..count {
                insert.execute([now]).map_err(&fail)?;
                // Rowids of the serials table are positive.
                serials.push(tx.last_insert_rowid().max(0).unsigned_abs());
            }
        }
        tx.commit().map_err(&fail)?;
        debug!(count, first = serials.first(), "reserved ledger serials");
        Ok(serials)
    }

    /// Appends one record and a checkpoint of the new tree, in one
    /// transaction. See [`Ledger::append_batch`].
    pub fn append(
        &mut self,
        record: NewRecord,
        signer: &CheckpointSigner,
    ) -> Result<Record, LedgerError> {
        let mut records = self.append_batch(vec![record], signer)?;
        Ok(records.remove(0))
    }

    /// Appends records in order and signs one checkpoint of the new tree,
    /// all in one immediate transaction: either every record is durable
    /// with its subtree hashes and the checkpoint, or nothing changed.
    ///
    /// Each serial must have been reserved and have no record yet. The
    /// first checkpoint of a ledger stores the signer's origin, and later
    /// appends must use the same origin.
    pub fn append_batch(
        &mut self,
        records: Vec<NewRecord>,
        signer: &CheckpointSigner,
    ) -> Result<Vec<Record>, LedgerError> {
        if records.is_empty() || records.len() > MAX_BATCH {
            return Err(LedgerError::InvalidRecord {
                serial: records.first().map_or(0, |r| r.serial),
                field: "batch",
                reason: format!(
                    "has {} records; a batch has 1 to {MAX_BATCH}",
                    records.len()
                ),
            });
        }
        let records = records
            .into_iter()
            .map(validate)
            .collect::<Result<Vec<_>, _>>()?;

        let (tx, at) = self.write_transaction("append records")?;
        let fail = at.sql("append records");
        check_serials(&tx, at, &records)?;
        let size = tree::size(&tx).map_err(&fail)?;
        let mut frontier = tree::load_frontier(&tx, at, size)?;

        let mut stored = Vec::with_capacity(records.len());
        let mut nodes = Vec::new();
        for (record, leaf_index) in records.into_iter().zip(size..) {
            let leaf = encoding::v2::encode(&view(&record, leaf_index));
            insert_record(&tx, at, &record, leaf_index, &leaf)?;
            let leaf_hash = encoding::leaf_hash(&leaf);
            nodes.clear();
            frontier.push(leaf_hash, &mut nodes);
            tree::insert_nodes(&tx, at, &nodes)?;
            stored.push(into_record(record, leaf_index, leaf_hash));
        }
        checkpoint::store::write(&tx, at, signer, frontier.size(), &frontier.root())?;
        tx.commit().map_err(&fail)?;

        debug!(
            count = stored.len(),
            tree_size = frontier.size(),
            "appended ledger records"
        );
        Ok(stored)
    }
}

/// Checks that every serial was reserved, has no record and appears once
/// in the batch.
fn check_serials(
    tx: &Transaction<'_>,
    at: &Location,
    records: &[NewRecord],
) -> Result<(), LedgerError> {
    let fail = at.sql("check serials");
    let mut reserved = tx
        .prepare_cached("SELECT 1 FROM serials WHERE serial = ?1")
        .map_err(&fail)?;
    let mut used = tx
        .prepare_cached("SELECT leaf_index FROM records WHERE serial = ?1")
        .map_err(&fail)?;
    let mut seen = HashSet::with_capacity(records.len());
    for record in records {
        let serial = record.serial;
        let not_reserved = || LedgerError::SerialNotReserved {
            path: at.path().to_path_buf(),
            serial,
        };
        let serial_sql = i64::try_from(serial).map_err(|_| not_reserved())?;
        let found: Option<i64> = reserved
            .query_row([serial_sql], |row| row.get(0))
            .optional()
            .map_err(&fail)?;
        if found.is_none() {
            return Err(not_reserved());
        }
        let existing: Option<i64> = used
            .query_row([serial_sql], |row| row.get(0))
            .optional()
            .map_err(&fail)?;
        if let Some(leaf_index) = existing {
            return Err(LedgerError::SerialAlreadyUsed {
                path: at.path().to_path_buf(),
                serial,
                leaf_index: leaf_index.max(0).unsigned_abs(),
            });
        }
        if !seen.insert(serial) {
            return Err(LedgerError::InvalidRecord {
                serial,
                field: "serial",
                reason: "appears twice in one batch".into(),
            });
        }
    }
    Ok(())
}

fn view(record: &NewRecord, leaf_index: u64) -> LeafView<'_> {
    LeafView {
        leaf_index,
        serial: record.serial,
        created_at: record.created_at,
        output_sha256: &record.output_sha256,
        output_mime: &record.output_mime,
        manifest: &record.manifest,
        details: &record.details,
    }
}

fn insert_record(
    tx: &Transaction<'_>,
    at: &Location,
    record: &NewRecord,
    leaf_index: u64,
    leaf: &[u8],
) -> Result<(), LedgerError> {
    let fail = at.sql("append record");
    let key_id = match &record.details {
        RecordDetails::Generation(generation) => Some(generation.watermark_key_id.to_vec()),
        RecordDetails::Stamp(_) => None,
    };
    // Leaf indices and serials are SQLite rowids, so they are below 2^63,
    // and `validate` checked that the time fits i64 nanoseconds.
    let values = params![
        leaf_index as i64,
        record.serial as i64,
        record.kind().code(),
        unix_nanos(record.created_at).unwrap_or_default(),
        record.output_sha256.as_slice(),
        key_id,
        leaf,
    ];
    tx.prepare_cached(
        "INSERT INTO records (leaf_index, serial, kind, created_ns, output_sha256, \
         watermark_key_id, leaf) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut statement| statement.execute(values))
    .map_err(&fail)?;

    if let RecordDetails::Generation(generation) = &record.details
        && let Some(prompt) = &generation.prompt
    {
        tx.prepare_cached("INSERT INTO prompts (leaf_index, prompt) VALUES (?1, ?2)")
            .and_then(|mut statement| statement.execute(params![leaf_index as i64, prompt]))
            .map_err(&fail)?;
    }
    Ok(())
}

fn into_record(record: NewRecord, leaf_index: u64, leaf_hash: [u8; 32]) -> Record {
    Record {
        leaf_index,
        encoding_version: encoding::ENCODING_VERSION,
        leaf_hash,
        prev_hash: None,
        serial: record.serial,
        created_at: record.created_at,
        output_sha256: record.output_sha256,
        output_mime: record.output_mime,
        manifest: record.manifest,
        details: record.details,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::ledger::test_support::{
        fill, sample_record, sample_stamp, temp_ledger, test_signer,
    };

    #[test]
    fn append_then_get_round_trips() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let signer = test_signer();
        let first_serial = ledger.reserve_serial().expect("reserve");
        let second_serial = ledger.reserve_serial().expect("reserve");
        let first = ledger
            .append(sample_record(first_serial, 1), &signer)
            .expect("append first");
        let second = ledger
            .append(sample_stamp(second_serial, 2), &signer)
            .expect("append second");

        assert_eq!(first.leaf_index, 0);
        assert_eq!(second.leaf_index, 1);
        assert_eq!(first.encoding_version, 2);
        assert_eq!(first.prev_hash, None);
        assert_eq!(second.kind(), crate::ledger::RecordKind::Stamp);
        assert_eq!(ledger.get(first_serial).expect("get"), Some(first));
        assert_eq!(ledger.get(second_serial).expect("get"), Some(second));
    }

    #[test]
    fn append_writes_tree_and_checkpoint() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let records = fill(&mut ledger, 5);
        let leaves: Vec<[u8; 32]> = records.iter().map(|r| r.leaf_hash).collect();

        let latest = ledger.latest_checkpoint().expect("read").expect("exists");
        assert_eq!(latest.id, 5);
        assert_eq!(latest.tree_size, 5);
        let checkpoint = test_signer()
            .verifier()
            .open(&latest.note)
            .expect("verifies");
        assert_eq!(checkpoint.root, crate::ledger::merkle::root(&leaves));
        assert_eq!(
            ledger.origin().expect("origin").as_deref(),
            Some(test_signer().origin())
        );
    }

    #[test]
    fn batch_appends_share_one_checkpoint() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let serials = ledger.reserve_serials(10).expect("reserve");
        assert_eq!(serials, (1..=10).collect::<Vec<_>>());
        let batch = serials
            .iter()
            .map(|&serial| sample_record(serial, serial))
            .collect();

        let stored = ledger.append_batch(batch, &test_signer()).expect("append");
        assert_eq!(stored.len(), 10);
        assert_eq!(stored[9].leaf_index, 9);
        let checkpoints = ledger.checkpoints(&Default::default()).expect("list");
        assert_eq!(checkpoints.len(), 1);
        assert_eq!(checkpoints[0].tree_size, 10);
        let report = ledger.audit(&test_signer().verifier()).expect("audit");
        assert!(report.is_intact(), "{report:?}");
    }

    #[test]
    fn failed_batch_writes_nothing() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let serials = ledger.reserve_serials(2).expect("reserve");
        let batch = vec![sample_record(serials[0], 0), sample_record(99, 1)];

        let error = ledger
            .append_batch(batch, &test_signer())
            .expect_err("second serial is not reserved");
        assert!(
            matches!(error, LedgerError::SerialNotReserved { serial: 99, .. }),
            "{error:?}"
        );
        assert_eq!(ledger.len().expect("count"), 0);
        assert_eq!(ledger.latest_checkpoint().expect("read"), None);

        let twice = vec![sample_record(serials[1], 0), sample_record(serials[1], 1)];
        let error = ledger
            .append_batch(twice, &test_signer())
            .expect_err("serial twice");
        assert!(
            matches!(
                error,
                LedgerError::InvalidRecord {
                    field: "serial",
                    ..
                }
            ),
            "{error:?}"
        );
        let empty = ledger.append_batch(Vec::new(), &test_signer());
        assert!(empty.is_err(), "an empty batch must be rejected");
    }

    #[test]
    fn other_origin_is_rejected() {
        let (_dir, _path, mut ledger) = temp_ledger();
        fill(&mut ledger, 1);
        let other = CheckpointSigner::new(
            "elsewhere/mmgen-ledger/1",
            ed25519_dalek::SigningKey::from_bytes(&[42; 32]),
        )
        .expect("valid origin");
        let serial = ledger.reserve_serial().expect("reserve");

        let error = ledger
            .append(sample_record(serial, 5), &other)
            .expect_err("origin differs");
        assert!(
            matches!(error, LedgerError::OriginMismatch { .. }),
            "{error:?}"
        );
        assert_eq!(ledger.len().expect("count"), 1);
    }

    #[test]
    fn other_checkpoint_key_is_rejected() {
        let (_dir, _path, mut ledger) = temp_ledger();
        fill(&mut ledger, 1);
        let replaced_key = CheckpointSigner::new(
            test_signer().origin(),
            ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        )
        .expect("valid origin");
        let serial = ledger.reserve_serial().expect("reserve");

        let error = ledger
            .append(sample_record(serial, 5), &replaced_key)
            .expect_err("the key differs from the one that signed the log");
        assert!(
            matches!(error, LedgerError::CheckpointKeyMismatch { .. }),
            "{error:?}"
        );
        assert_eq!(ledger.len().expect("count"), 1);
        let checkpoints = ledger.checkpoints(&Default::default()).expect("list");
        assert_eq!(checkpoints.len(), 1);
    }

    #[test]
    fn append_unreserved_serial_is_rejected() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let signer = test_signer();
        let error = ledger
            .append(sample_record(99, 0), &signer)
            .expect_err("unreserved serial");
        assert!(
            matches!(error, LedgerError::SerialNotReserved { serial: 99, .. }),
            "{error:?}"
        );
        let huge = ledger
            .append(sample_record(u64::MAX, 0), &signer)
            .expect_err("huge serial");
        assert!(
            matches!(huge, LedgerError::SerialNotReserved { .. }),
            "{huge:?}"
        );
        assert_eq!(ledger.len().expect("count"), 0);
    }

    #[test]
    fn append_used_serial_is_rejected() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let stored = fill(&mut ledger, 1).remove(0);
        let error = ledger
            .append(sample_record(stored.serial, 5), &test_signer())
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
        let generation = |change: fn(&mut crate::ledger::Generation)| {
            move |record: &mut NewRecord| {
                if let RecordDetails::Generation(g) = &mut record.details {
                    change(g);
                }
            }
        };
        type Change = Box<dyn Fn(&mut NewRecord)>;
        let cases: Vec<(&str, Change)> = vec![
            ("guidance", Box::new(generation(|g| g.guidance = f64::NAN))),
            (
                "guidance",
                Box::new(generation(|g| g.guidance = f64::INFINITY)),
            ),
            (
                "prompt_sha256",
                Box::new(generation(|g| g.prompt_sha256 = [0; 32])),
            ),
            ("model_name", Box::new(generation(|g| g.model_name.clear()))),
            (
                "watermark_payload",
                Box::new(generation(|g| g.watermark_payload = "x".repeat(257))),
            ),
            ("output_mime", Box::new(|r| r.output_mime = "m".repeat(128))),
            (
                "manifest",
                Box::new(|r| r.manifest = vec![0; crate::ledger::MAX_MANIFEST_BYTES + 1]),
            ),
            (
                "created_at",
                Box::new(|r| r.created_at = time::macros::datetime!(2300-01-01 0:00 UTC)),
            ),
            (
                "digital_source_type",
                Box::new(|r| *r = sample_stamp(r.serial, 0).with_source_type("")),
            ),
        ];
        for (field, change) in cases {
            let mut record = sample_record(serial, 0);
            change(&mut record);
            let error = ledger.append(record, &test_signer()).expect_err(field);
            match error {
                LedgerError::InvalidRecord { field: got, .. } => assert_eq!(got, field),
                other => panic!("{field}: expected InvalidRecord, got {other:?}"),
            }
        }
        assert_eq!(ledger.len().expect("count"), 0);
    }

    impl NewRecord {
        fn with_source_type(mut self, uri: &str) -> Self {
            if let RecordDetails::Stamp(stamp) = &mut self.details {
                stamp.digital_source_type = uri.into();
            }
            self
        }
    }

    #[test]
    fn append_normalizes_time_and_zero() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let serial = ledger.reserve_serial().expect("reserve");
        let mut record = sample_record(serial, 0);
        let instant = record.created_at;
        record.created_at = instant.to_offset(time::macros::offset!(+02:00));
        if let RecordDetails::Generation(g) = &mut record.details {
            g.guidance = -0.0;
            g.seed = u64::MAX;
            g.prompt = None;
        }

        let stored = ledger.append(record, &test_signer()).expect("append");
        let read = ledger.get(serial).expect("get").expect("record exists");
        assert_eq!(read, stored);
        assert_eq!(read.created_at, instant);
        assert_eq!(read.created_at.offset(), time::UtcOffset::UTC);
        let generation = read.generation().expect("generation");
        assert_eq!(generation.guidance.to_bits(), 0.0_f64.to_bits());
        assert_eq!(generation.seed, u64::MAX);
        assert_eq!(generation.prompt, None);
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
    fn tables_reject_update_and_delete() {
        let (_dir, path, mut ledger) = temp_ledger();
        fill(&mut ledger, 1);
        let conn = rusqlite::Connection::open(&path).expect("second connection");

        for statement in [
            "UPDATE records SET serial = 5",
            "DELETE FROM records",
            "UPDATE tree SET hash = x'00'",
            "DELETE FROM tree",
            "UPDATE checkpoints SET note = ''",
            "DELETE FROM checkpoints",
            "UPDATE prompts SET prompt = 'other'",
            "DELETE FROM serials",
            "UPDATE meta SET value = 'other'",
        ] {
            let result = conn.execute(statement, []);
            assert!(result.is_err(), "{statement} must be rejected");
        }
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
                    let signer = test_signer();
                    let mut serials = Vec::new();
                    for i in 0..25 {
                        let serial = ledger.reserve_serial().expect("reserve");
                        ledger
                            .append(sample_record(serial, thread * 100 + i), &signer)
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
        let report = ledger.audit(&test_signer().verifier()).expect("audit");
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.checkpoints, 100);
    }
}
